//! Operating the KMS: SIGHUP reload, sealed secrets, Occlum's `server <addr>` form, the
//! production default (no simulation unless asked), and the key-material tools.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use grpcio::RpcStatusCode;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn sighup_serves_a_changed_secret_and_keeps_the_old_one_if_the_file_breaks() {
    let fx = Fixture::start("reload");
    let client = fx.client(&fx.app);
    let mut changed = secrets();
    assert_eq!(client.get_decoded("flask_key").unwrap(), changed[1].1);

    changed[1].1 = b"rotated-flask-key-3e8d0c".to_vec();
    std::fs::write(
        fx.dir.path().join("secret_config.json"),
        secrets_json(&changed),
    )
    .unwrap();
    fx.kms.signal(1);
    wait_for("the reload", || {
        fx.kms
            .audit()
            .iter()
            .any(|r| r["event"] == "reload" && r["verdict"] == "ok")
    });
    assert_eq!(
        client.get_decoded("flask_key").unwrap(),
        b"rotated-flask-key-3e8d0c"
    );

    std::fs::write(
        fx.dir.path().join("secret_config.json"),
        "{\"flask_key\": \"not base64!\"",
    )
    .unwrap();
    fx.kms.signal(1);
    wait_for("the rejected reload", || {
        fx.kms
            .audit()
            .iter()
            .any(|r| r["event"] == "reload" && r["verdict"] == "rejected")
    });
    assert_eq!(
        client.get_decoded("flask_key").unwrap(),
        b"rotated-flask-key-3e8d0c"
    );

    // A valid secrets file whose ACL names an entry the policy lacks is refused as a whole.
    let mut bad_acl = changed.clone();
    bad_acl[1].1 = b"must-not-be-served-6f1a".to_vec();
    bad_acl[2].2 = Some(vec!["nobody"]);
    std::fs::write(
        fx.dir.path().join("secret_config.json"),
        secrets_json(&bad_acl),
    )
    .unwrap();
    fx.kms.signal(1);
    wait_for("the second rejected reload", || {
        fx.kms
            .audit()
            .iter()
            .filter(|r| r["event"] == "reload" && r["verdict"] == "rejected")
            .count()
            == 2
    });
    let rec = fx
        .kms
        .audit()
        .into_iter()
        .rfind(|r| r["event"] == "reload")
        .unwrap();
    assert!(
        rec["reason"].as_str().unwrap().contains("\"nobody\""),
        "{rec}"
    );
    assert_eq!(
        client.get_decoded("flask_key").unwrap(),
        b"rotated-flask-key-3e8d0c"
    );

    let mut all = secrets();
    all.extend(changed);
    all.extend(bad_acl);
    assert_logs_clean(&fx.kms, &all);
}

#[test]
fn sighup_reloads_the_policy_too() {
    let fx = Fixture::start("reload-policy");
    let mut other = fx.app.clone();
    other.isv_svn = 90;
    assert!(fx.client(&other).get("flask_key").is_err());
    let mut allowed = fx.app.clone();
    allowed.isv_svn = 90;
    std::fs::write(
        fx.dir.path().join("ra_config.json"),
        policy_json(&allowed, &fx.tool),
    )
    .unwrap();
    fx.kms.signal(1);
    wait_for("the reload", || {
        fx.kms
            .audit()
            .iter()
            .any(|r| r["event"] == "reload" && r["verdict"] == "ok")
    });
    // A new connection (new certificate) is verified under the new policy.
    assert_eq!(
        fx.client(&other).get_decoded("flask_key").unwrap(),
        secrets()[1].1
    );
}

#[test]
fn sealed_secrets_round_trip_through_the_server() {
    let dir = temp_dir("sealed");
    let sim = Sim::good(&dir);
    let key = dir.path().join("seal.key");
    let plain = dir.path().join("plain.json");
    let sealed = dir.path().join("secrets.sealed");
    std::fs::write(&plain, secrets_json(&secrets())).unwrap();
    run_ok(&["gen-seal-key", "--out", key.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    run_ok(&[
        "seal",
        "--seal-key-file",
        key.to_str().unwrap(),
        "--in",
        plain.to_str().unwrap(),
        "--out",
        sealed.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&sealed).unwrap();
    assert_eq!(&bytes[..8], b"OCKMSSEA");
    for (_, value, _) in secrets() {
        assert!(
            !bytes
                .windows(16)
                .any(|w| value.len() >= 16 && w == &value[..16])
        );
    }
    // unseal gives back the same JSON.
    let back = dir.path().join("back.json");
    run_ok(&[
        "unseal",
        "--seal-key-file",
        key.to_str().unwrap(),
        "--in",
        sealed.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    let app = app_identity();
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool_identity()),
        secrets: "{}".into(), // the plain file is not used
        extra: vec![
            "--sealed-secrets".into(),
            sealed.display().to_string(),
            "--seal-key-file".into(),
            key.display().to_string(),
        ],
    });
    let client = GrpcClient::connect(&kms, Some(&sim.client(&app)));
    assert_eq!(client.get_decoded("image_key").unwrap(), secrets()[2].1);
    assert_logs_clean(&kms, &secrets());
}

#[test]
fn a_wrong_seal_key_is_a_clear_start_error() {
    let dir = temp_dir("wrongkey");
    let sim = Sim::good(&dir);
    let (key, other) = (dir.path().join("a.key"), dir.path().join("b.key"));
    let (plain, sealed) = (
        dir.path().join("plain.json"),
        dir.path().join("secrets.sealed"),
    );
    std::fs::write(&plain, secrets_json(&secrets())).unwrap();
    run_ok(&["gen-seal-key", "--out", key.to_str().unwrap()]);
    run_ok(&["gen-seal-key", "--out", other.to_str().unwrap()]);
    run_ok(&[
        "seal",
        "--seal-key-file",
        key.to_str().unwrap(),
        "--in",
        plain.to_str().unwrap(),
        "--out",
        sealed.to_str().unwrap(),
    ]);

    let out = kms(&[
        "unseal",
        "--seal-key-file",
        other.to_str().unwrap(),
        "--in",
        sealed.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrong seal key, or the file was modified"),
        "{stderr}"
    );
    assert!(!dir.path().join("x").exists());

    std::fs::write(
        dir.path().join("ra_config.json"),
        policy_json(&app_identity(), &tool_identity()),
    )
    .unwrap();
    let identity = sim.kms_identity(&dir);
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ra-config",
        dir.path().join("ra_config.json").to_str().unwrap(),
        "--sealed-secrets",
        sealed.to_str().unwrap(),
        "--seal-key-file",
        other.to_str().unwrap(),
        "--sim-platform",
        sim.dir.to_str().unwrap(),
        "--sim-identity",
        identity.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let err = try_spawn_kms(&dir, &args)
        .err()
        .expect("the KMS must not start");
    assert!(
        err.contains("wrong seal key, or the file was modified"),
        "{err}"
    );
}

#[test]
fn occlums_server_form_reads_the_working_directory() {
    let dir = temp_dir("compat");
    let sim = Sim::good(&dir);
    let app = app_identity();
    std::fs::write(
        dir.path().join("dynamic_config.json"),
        policy_json(&app, &tool_identity()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("secret_config.json"),
        secrets_json(&secrets()),
    )
    .unwrap();
    let identity = sim.kms_identity(&dir);
    for first in [&["server", "127.0.0.1:0"][..], &["127.0.0.1:0"]] {
        let mut args: Vec<String> = first.iter().map(|s| s.to_string()).collect();
        args.extend(["--sim-platform".into(), sim.dir.display().to_string()]);
        args.extend(["--sim-identity".into(), identity.display().to_string()]);
        let kms = spawn_kms(&dir, &args);
        let client = GrpcClient::connect(&kms, Some(&sim.client(&app)));
        assert_eq!(client.get_decoded("flask_cert").unwrap(), secrets()[0].1);
        let stderr = std::fs::read_to_string(&kms.stderr_log).unwrap();
        assert!(
            stderr.contains("SIMULATED"),
            "the simulation must be announced: {stderr}"
        );
    }
}

#[test]
fn without_simulation_flags_the_kms_needs_real_sgx() {
    let dir = temp_dir("nosgx");
    std::fs::write(
        dir.path().join("dynamic_config.json"),
        policy_json(&app_identity(), &tool_identity()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("secret_config.json"),
        secrets_json(&secrets()),
    )
    .unwrap();
    let err = try_spawn_kms(&dir, &["127.0.0.1:0".to_owned()])
        .err()
        .expect("no SGX here: must not start");
    assert!(err.contains("SGX quote device"), "{err}");
    assert!(!err.contains("listening"), "{err}");
}

#[test]
fn a_policy_and_secrets_that_disagree_do_not_start() {
    let dir = temp_dir("badacl");
    let sim = Sim::good(&dir);
    let mut s = secrets();
    s[2].2 = Some(vec!["ghost"]);
    let identity = sim.kms_identity(&dir);
    std::fs::write(
        dir.path().join("ra_config.json"),
        policy_json(&app_identity(), &tool_identity()),
    )
    .unwrap();
    std::fs::write(dir.path().join("secret_config.json"), secrets_json(&s)).unwrap();
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ra-config",
        "ra_config.json",
        "--secrets",
        "secret_config.json",
        "--sim-platform",
        sim.dir.to_str().unwrap(),
        "--sim-identity",
        identity.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let err = try_spawn_kms(&dir, &args).err().unwrap();
    assert!(
        err.contains("secret \"image_key\"") && err.contains("\"ghost\""),
        "{err}"
    );
}

#[test]
fn gen_image_key_writes_occlums_format() {
    let dir = temp_dir("imagekey");
    let a = dir.path().join("image_key");
    run_ok(&["gen-image-key", a.to_str().unwrap()]);
    let text = std::fs::read_to_string(&a).unwrap();
    let body = text.strip_suffix('\n').expect("trailing newline");
    let bytes: Vec<&str> = body.split('-').collect();
    assert_eq!(bytes.len(), 16, "{text:?}");
    assert!(bytes.iter().all(|b| {
        b.len() == 2
            && b.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }));
    assert_eq!(
        std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwrites.
    assert_eq!(
        kms(&["gen-image-key", "--out", a.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    let b = dir.path().join("second");
    run_ok(&["gen-image-key", "--out", b.to_str().unwrap()]);
    assert_ne!(std::fs::read(&b).unwrap(), text.as_bytes());
}

#[test]
fn gen_cert_writes_a_localhost_certificate_and_a_private_key() {
    let dir = temp_dir("gencert");
    let (crt, key) = (dir.path().join("flask.crt"), dir.path().join("flask.key"));
    run_ok(&[
        "gen-cert",
        "--cn",
        "localhost",
        "--out-cert",
        crt.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    let pem = std::fs::read_to_string(&crt).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|d: rustls_pki_types::CertificateDer<'_>| d.to_vec())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = format!(
        "{:?}",
        cert.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
    );
    assert!(
        san.contains("\"localhost\"") && san.contains("[127, 0, 0, 1]"),
        "{san}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = kms(&["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing --listen"));
    let out = kms(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kms server <ADDR>"));
}

fn kms(args: &[&str]) -> std::process::Output {
    Command::new(KMS).args(args).output().unwrap()
}

fn run_ok(args: &[&str]) {
    let out = kms(args);
    assert!(
        out.status.success(),
        "kms {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn collateral_is_fetched_from_a_pccs_and_cached_on_disk() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = temp_dir("pccs");
    let sim = Sim::good(&dir);
    let pccs = Arc::new(sgx_sim::pccs::Pccs::for_platform(&sim.platform));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/sgx/certification/v4/",
        listener.local_addr().unwrap()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let server = {
        let (stop, requests) = (Arc::clone(&stop), Arc::clone(&requests));
        std::thread::spawn(move || {
            let log: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |_: &str| {
                requests.fetch_add(1, Ordering::SeqCst);
            });
            pccs.serve(listener, &stop, log).unwrap();
        })
    };
    let cache = dir.path().join("collateral-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let app = app_identity();
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool_identity()),
        secrets: secrets_json(&secrets()),
        extra: vec![
            "--pccs-url".into(),
            url,
            "--collateral-cache".into(),
            cache.display().to_string(),
        ],
    });
    let client = GrpcClient::connect(&kms, Some(&sim.client(&app)));
    assert_eq!(client.get_decoded("flask_key").unwrap(), secrets()[1].1);
    let fetched = requests.load(Ordering::SeqCst);
    assert!(
        fetched >= 4,
        "PCK CRL, TCB info, QE identity, root CRL: {fetched} requests"
    );
    // A second client on the same platform is verified from the in-memory cache.
    let second = GrpcClient::connect(&kms, Some(&sim.client(&app)));
    assert_eq!(second.get_decoded("image_key").unwrap(), secrets()[2].1);
    assert_eq!(requests.load(Ordering::SeqCst), fetched);
    assert!(
        std::fs::read_dir(&cache).unwrap().next().is_some(),
        "collateral cached on disk"
    );
    let start = kms
        .audit()
        .into_iter()
        .find(|r| r["event"] == "start")
        .unwrap();
    assert!(
        start["reason"].as_str().unwrap().contains("127.0.0.1"),
        "{start}"
    );
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_logs_clean(&kms, &secrets());
}

#[test]
fn the_kms_certificate_is_re_minted_at_half_life() {
    let fx = Fixture::start_with(
        "rotation",
        |_| {},
        vec!["--cert-lifetime".into(), "10".into()],
    );
    let before = GrpcClient::connect(&fx.kms, Some(&fx.sim.client(&fx.app)));
    assert_eq!(before.get_decoded("flask_key").unwrap(), secrets()[1].1);
    let old_pem = fx.kms.cert_pem.clone();
    let rotated = fx
        .kms
        .wait_audit_for(Duration::from_secs(15), |r| r["event"] == "rotation");
    assert_eq!(rotated["verdict"], "ok");
    let new_pem = std::fs::read_to_string(fx.dir.path().join("kms-cert.pem")).unwrap();
    assert_ne!(
        new_pem, old_pem,
        "--cert-out is rewritten with the new certificate"
    );

    // New connections get the new certificate: pinning it works, pinning the old one fails.
    let mut renewed = Kms::view(&fx.kms);
    renewed.cert_pem = new_pem;
    let after = GrpcClient::connect(&renewed, Some(&fx.sim.client(&fx.app)));
    assert_eq!(after.get_decoded("image_key").unwrap(), secrets()[2].1);
    let stale = GrpcClient::connect(&fx.kms, Some(&fx.sim.client(&fx.app)));
    assert_refused(stale.get("flask_key"), RpcStatusCode::UNAVAILABLE, "");
    // The connection made before the rotation keeps working.
    assert_eq!(before.get_decoded("flask_key").unwrap(), secrets()[1].1);
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_narrowing_reload_refuses_a_cached_clients_next_call() {
    let fx = Fixture::start("reload-narrow");
    // One connection, verified and cached: its calls cost a hash.
    let client = fx.client(&fx.app);
    assert_eq!(client.get_decoded("flask_key").unwrap(), secrets()[1].1);
    assert_eq!(client.get_decoded("flask_key").unwrap(), secrets()[1].1);
    // The new policy admits only the tool.
    let mut only_tool = fx.app.clone();
    only_tool.isv_svn = fx.app.isv_svn + 1;
    std::fs::write(
        fx.dir.path().join("ra_config.json"),
        policy_json(&only_tool, &fx.tool),
    )
    .unwrap();
    fx.kms.signal(1);
    wait_for("the reload", || {
        fx.kms
            .audit()
            .iter()
            .any(|r| r["event"] == "reload" && r["verdict"] == "ok")
    });
    // The same connection and certificate: verified again under the new policy, and refused.
    assert_refused(
        client.get("flask_key"),
        grpcio::RpcStatusCode::UNAUTHENTICATED,
        "measurement-policy",
    );
}
