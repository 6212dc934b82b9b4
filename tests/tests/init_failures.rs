//! End to end, host mode: every way a boot must fail, fails with the documented exit code, a
//! message that says why, and nothing written — and a KMS that starts late is waited for, and
//! a connection cut after the handshake is made again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // Generous (the 2 s deadline plus 18 s for a loaded machine), and still well under the
    // 30 s default deadline init would use had it ignored --connect-deadline.
    assert!(
        out.took < Duration::from_secs(20),
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
    assert!(
        !out.stderr.contains("attesting again"),
        "a refusal is final:\n{}",
        out.stderr
    );
    assert_nothing_written(&d);
}

/// A TCP relay to `upstream` whose first connection carries the ClientHello and the KMS's
/// answer, then dies when the client sends its next flight (its last TLS flight and every
/// request): as when the KMS restarts mid-boot. Later connections are relayed whole.
/// Returns the relay's address and its connection count.
fn relay_cutting_the_first_connection(upstream: String) -> (String, Arc<AtomicUsize>) {
    relay_cutting(upstream, 1)
}

/// [`relay_cutting_the_first_connection`] cutting the first `cuts` connections.
fn relay_cutting(upstream: String, cuts: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let cut = seen.fetch_add(1, Ordering::SeqCst) < cuts;
            let upstream = upstream.clone();
            thread::spawn(move || relay(client, &upstream, cut));
        }
    });
    (addr, count)
}

fn relay(mut client: TcpStream, upstream: &str, cut: bool) {
    let mut server = TcpStream::connect(upstream).unwrap();
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let back = thread::spawn(move || {
        let _ = io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    if cut {
        let mut buf = vec![0u8; 64 * 1024];
        let n = client.read(&mut buf).unwrap_or(0);
        let _ = server.write_all(&buf[..n]);
        let _ = client.read(&mut buf);
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    } else {
        let _ = io::copy(&mut client, &mut server);
        let _ = server.shutdown(Shutdown::Write);
    }
    let _ = back.join();
}

#[test]
fn a_connection_cut_after_the_handshake_is_attested_again_and_the_boot_completes() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let (relay, connections) = relay_cutting_the_first_connection(kms.addr.clone());
    let out = d.run_init(&relay, &[], &[]);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("the connection failed before every secret arrived")
            && out.stderr.contains("attesting again"),
        "the cut is logged:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("] handshake ").count(),
        2,
        "{}",
        out.stderr
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.crt")).unwrap(),
        b"cert\n"
    );
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.key")).unwrap(),
        b"key\n"
    );
    // The cut connection never reached the KMS's calls: one attestation, one release each.
    let audit = d.audit();
    let count = |event: &str| audit.iter().filter(|r| r["event"] == event).count();
    assert_eq!(count("attestation"), 1, "{audit:#?}");
    assert_eq!(count("release"), 3, "image_key and two secrets: {audit:#?}");
}

/// What init sees when Occlum's C++ server refuses it by policy: the handshake completes, then
/// the server closes without a reply, on every connection. Init stops after three such
/// connections, well inside its 30 s deadline, with the refusal code and a message saying so.
#[test]
fn a_kms_that_closes_every_connection_after_the_handshake_is_taken_as_refusing() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let (relay, connections) = relay_cutting(kms.addr.clone(), usize::MAX);
    let out = d.run_init(&relay, &[], &[]);
    out.expect_code(EXIT_SECRETS);
    assert!(
        out.stderr
            .contains("closed the connection before any reply 3 times in a row")
            && out.stderr.contains("most likely refuses this enclave"),
        "{}",
        out.stderr
    );
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    assert!(out.took < Duration::from_secs(15), "took {:?}", out.took);
    assert_nothing_written(&d);
}
