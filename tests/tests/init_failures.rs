//! End to end, host mode: every way a boot must fail, fails with the documented exit code, a
//! message that says why, and nothing written — and a KMS that starts late is waited for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use e2e_tests::{Deployment, EnclaveId, free_port, image_key_text, tree};

const EXIT_UNREACHABLE: i32 = 5;
const EXIT_ATTESTATION: i32 = 6;
const EXIT_SECRETS: i32 = 7;
const EXIT_MOUNT: i32 = 8;

fn deployment() -> Deployment {
    Deployment::new(&[
        ("flask_cert", "/etc/flask.crt", b"cert\n"),
        ("flask_key", "/etc/flask.key", b"key\n"),
    ])
}

/// Nothing of the rootfs or any secret exists anywhere in the deployment directory.
fn assert_nothing_written(d: &Deployment) {
    assert!(!d.rootfs().exists(), "rootfs was created");
    let files = tree(d.tmp.path());
    assert!(
        !files
            .iter()
            .any(|f| f.contains("flask") || f.contains("rootfs.") && !f.ends_with("rootfs.img")),
        "left behind: {files:#?}"
    );
}

#[test]
fn a_kms_outside_the_policy_is_refused_naming_the_failing_field() {
    let d = deployment();
    let impostor = EnclaveId::new("some-other-kms");
    d.write_init_conf(|conf| conf["ra_config"] = impostor.policy());
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_ATTESTATION);
    assert!(
        out.stderr.contains("measurement-policy"),
        "names the check:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("mr_enclave"),
        "names the field:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("not retried"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("retrying"),
        "attestation failures are not retried:\n{}",
        out.stderr
    );
    assert_nothing_written(&d);
    assert!(
        d.audit().iter().all(|r| r["event"] != "release"),
        "the KMS released something"
    );
}

#[test]
fn an_unreachable_kms_is_retried_then_fails_within_the_deadline() {
    let d = deployment();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = d.run_init(&addr, &["--connect-deadline", "2"], &[]);
    out.expect_code(EXIT_UNREACHABLE);
    assert!(
        out.took >= Duration::from_secs(2),
        "gave up early: {:?}",
        out.took
    );
    assert!(
        out.took < Duration::from_secs(6),
        "overran the deadline: {:?}",
        out.took
    );
    assert!(
        out.stderr.matches("retrying").count() >= 3,
        "backoff retries are logged:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("unreachable") && out.stderr.contains(&addr),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("connect_deadline_secs"),
        "says which knob to raise:\n{}",
        out.stderr
    );
    assert_nothing_written(&d);
}

#[test]
fn a_kms_that_starts_a_few_seconds_late_is_waited_for() {
    let d = deployment();
    let addr = format!("127.0.0.1:{}", free_port());
    let init = d
        .init_command(&addr, &["--connect-deadline", "30"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(3));
    let _kms = d.start_kms(&addr);
    let out = init.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying"), "init had to wait:\n{stderr}");
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.key")).unwrap(),
        b"key\n"
    );
}

#[test]
fn a_wrong_image_key_is_refused_and_nothing_is_written() {
    let mut d = deployment();
    d.secrets
        .insert("image_key".into(), image_key_text(&[0x42; 16]).into_bytes());
    d.write_kms_files();
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_MOUNT);
    assert!(
        out.stderr.contains("image_key does not open this image"),
        "{}",
        out.stderr
    );
    assert_nothing_written(&d);
}

#[test]
fn one_flipped_byte_in_the_image_is_refused() {
    let d = deployment();
    let image = d.path("rootfs.img");
    let mut bytes = std::fs::read(&image).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&image, bytes).unwrap();
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_MOUNT);
    assert!(
        out.stderr.contains("failed authentication") || out.stderr.contains("truncated"),
        "{}",
        out.stderr
    );
    assert_nothing_written(&d);
}

#[test]
fn a_secret_the_kms_does_not_have_is_named() {
    let mut d = deployment();
    d.kms_keys
        .push(("no_such_secret".into(), "/etc/nope".into()));
    d.write_init_conf(|_| {});
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_SECRETS);
    assert!(
        out.stderr.contains("\"no_such_secret\"") && out.stderr.contains("NOT_FOUND"),
        "{}",
        out.stderr
    );
    assert_nothing_written(&d);
}

#[test]
fn an_enclave_the_kms_does_not_admit_is_told_the_kms_reason() {
    let d = deployment();
    let other = EnclaveId::new("another-app");
    e2e_tests::write_json(&d.path("kms/ra_config.json"), &other.policy());
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_SECRETS);
    assert!(out.stderr.contains("UNAUTHENTICATED"), "{}", out.stderr);
    assert!(
        out.stderr.contains("measurement-policy"),
        "the KMS's reason is shown:\n{}",
        out.stderr
    );
    assert_nothing_written(&d);
}
