//! End to end, host mode: the real `kms` and the musl `init` on loopback with a simulated
//! platform. A boot delivers every secret byte-exact with mode 0600 into the unpacked rootfs,
//! the exec'd app sees them, and the whole boot is ONE TLS handshake whatever the number of
//! secrets (the KMS's audit log shows one attestation and every release from one connection).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

use e2e_tests::{Deployment, tree};
use sha2::Digest as _;

const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB...test\n-----END CERTIFICATE-----\n";
const KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIIE...test\n-----END PRIVATE KEY-----\n";

fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

fn deployment() -> Deployment {
    let blob = all_bytes();
    Deployment::new(&[
        ("flask_cert", "/etc/flask.crt", CERT),
        ("flask_key", "/etc/flask.key", KEY),
        ("blob", "/var/lib/app/keys/blob.bin", &blob),
    ])
}

/// The app: lists every regular file of the rootfs with its mode and SHA-256.
const APP_SCRIPT: &str = "#!/bin/sh\nset -eu\ncd \"$1\"\nfind . -type f | sort | while read -r f; do\n  printf '%s %s %s\\n' \"$f\" \"$(stat -c %a \"$f\")\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\"\ndone\n";

#[test]
fn every_secret_lands_byte_exact_with_mode_0600_and_the_app_sees_it() {
    let d = deployment();
    d.write_image(|src| {
        std::fs::write(src.join("bin/list.sh"), APP_SCRIPT).unwrap();
        std::fs::set_permissions(
            src.join("bin/list.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    });
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &["{rootfs}/bin/list.sh", "{rootfs}"]);
    out.expect_code(0);

    let rootfs = d.rootfs();
    for (name, path) in &d.kms_keys {
        let file = rootfs.join(path.trim_start_matches('/'));
        assert_eq!(
            std::fs::read(&file).unwrap(),
            d.secrets[name],
            "{name} at {path}"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{name} mode");
    }
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"occlum-app\n"
    );
    assert!(
        !rootfs.join("image_key").exists()
            && !tree(&rootfs).iter().any(|p| p.contains("image_key"))
    );

    // The app ran from the unpacked rootfs and saw every secret with the right mode and hash.
    let seen: BTreeMap<&str, (&str, &str)> = out
        .stdout
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            (
                parts.next().unwrap(),
                (parts.next().unwrap(), parts.next().unwrap()),
            )
        })
        .collect();
    for (name, path) in &d.kms_keys {
        let key = format!(".{path}");
        let (mode, hash) = seen
            .get(key.as_str())
            .unwrap_or_else(|| panic!("app did not see {key}:\n{}", out.stdout));
        assert_eq!(*mode, "600");
        assert_eq!(*hash, hex::encode(sha2::Sha256::digest(&d.secrets[name])));
    }
    assert!(seen.contains_key("./bin/hello.txt"));
}

#[test]
fn the_log_has_one_line_per_step_and_never_a_secret() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(0);

    let steps: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("init: ["))
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(' ').map(|(step, _)| step))
        .filter(|step| {
            [
                "config",
                "quote",
                "handshake",
                "secrets",
                "mount",
                "write",
                "handover",
            ]
            .contains(step)
        })
        .collect();
    assert_eq!(
        steps,
        [
            "config",
            "quote",
            "handshake",
            "secrets",
            "mount",
            "write",
            "write",
            "write",
            "handover"
        ],
        "{}",
        out.stderr
    );
    for name in ["image_key", "flask_cert", "flask_key", "blob"] {
        assert!(
            out.stderr.contains(&format!(" {name} (")),
            "{name} not logged:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("SIMULATED"),
        "host mode must say it is simulated:\n{}",
        out.stderr
    );

    use base64::Engine as _;
    for value in d.secrets.values() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let text = String::from_utf8_lossy(value);
        let probe = text.lines().nth(1).unwrap_or(&text).trim();
        assert!(
            !out.stderr.contains(&b64),
            "a secret's base64 reached the log"
        );
        if probe.len() >= 8 {
            assert!(!out.stderr.contains(probe), "a secret reached the log");
        }
    }
    let key_text = String::from_utf8_lossy(&d.secrets["image_key"])
        .trim()
        .to_owned();
    assert!(!out.stderr.contains(&key_text) && !out.stderr.contains(&key_text[..8]));
}

#[test]
fn one_tls_handshake_serves_every_secret() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    d.run_init(&kms.addr, &[], &[]).expect_code(0);

    let records = d.audit();
    let of = |event: &str| {
        records
            .iter()
            .filter(|r| r["event"] == event)
            .collect::<Vec<_>>()
    };
    let attestations = of("attestation");
    let releases = of("release");
    assert_eq!(
        attestations.len(),
        1,
        "one attestation per boot: {records:#?}"
    );
    assert_eq!(
        releases.len(),
        1 + d.kms_keys.len(),
        "image_key and every kms_keys secret: {records:#?}"
    );
    let peer = &attestations[0]["peer"];
    assert!(
        peer.as_str().is_some_and(|p| p.contains("127.0.0.1:")),
        "{peer}"
    );
    for release in &releases {
        assert_eq!(
            &release["peer"], peer,
            "every release over the attested connection: {records:#?}"
        );
    }
    let mut released: Vec<&str> = releases
        .iter()
        .map(|r| r["secret"].as_str().unwrap())
        .collect();
    released.sort_unstable();
    assert_eq!(released, ["blob", "flask_cert", "flask_key", "image_key"]);

    // A second boot is a second connection: a new peer port, again exactly one attestation
    // (init mints a fresh certificate, so the KMS's verification cache cannot hide a handshake).
    d.run_init(&kms.addr, &[], &[]).expect_code(0);
    let records = d.audit();
    let attestations: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "attestation")
        .collect();
    assert_eq!(attestations.len(), 2, "{records:#?}");
    assert_ne!(attestations[0]["peer"], attestations[1]["peer"]);
}

#[test]
fn an_integrity_only_image_boots_without_fetching_image_key() {
    let d = deployment();
    std::fs::write(
        d.path("initfs/etc/image_config.json"),
        br#"{"image_type": "integrity-only"}"#,
    )
    .unwrap();
    e2e_tests::run_ok(
        std::process::Command::new(e2e_tests::init_bin())
            .args(["pack-image", "--integrity-only", "--in"])
            .arg(d.path("image-src"))
            .arg("--out")
            .arg(d.path("rootfs.img")),
    );
    let kms = d.start_kms("127.0.0.1:0");
    d.run_init(&kms.addr, &[], &[]).expect_code(0);
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.key")).unwrap(),
        KEY
    );
    let released: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "release")
        .collect();
    assert_eq!(
        released.len(),
        d.kms_keys.len(),
        "no image_key for an integrity-only image"
    );
    assert!(released.iter().all(|r| r["secret"] != "image_key"));

    // The same image under image_config "encrypted" is refused: the seal must match.
    std::fs::write(
        d.path("initfs/etc/image_config.json"),
        br#"{"image_type": "encrypted"}"#,
    )
    .unwrap();
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(8);
    assert!(out.stderr.contains("integrity-only"), "{}", out.stderr);
}
