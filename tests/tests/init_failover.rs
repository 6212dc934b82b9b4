//! End to end, host mode: init given several KMS addresses (`kms_servers`, a comma-separated
//! `--kms-server` / `OCCLUM_INIT_RA_KMS_SERVER`, a name resolving to several addresses) boots
//! from the first one that answers, gives up with the "unreachable" code when none does within
//! its deadline, and does not take a refusal by an attested KMS to the next address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use e2e_tests::{Deployment, EnclaveId, KmsOptions, run};

const EXIT_UNREACHABLE: i32 = 5;
const EXIT_SECRETS: i32 = 7;

fn deployment() -> Deployment {
    Deployment::new(&[("flask_key", "/etc/flask.key", b"key\n")])
}

/// A loopback address nothing listens on (connecting is refused at once): a port free on
/// 127.0.0.2, where no test server listens (they bind 127.0.0.1), so a KMS of a test running
/// alongside cannot take it between this call and the boot, as it could on 127.0.0.1.
fn dead() -> String {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

fn assert_booted(d: &Deployment) {
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.key")).unwrap(),
        b"key\n"
    );
}

#[test]
fn a_dead_first_address_in_kms_servers_is_skipped_and_the_second_boots() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let first = dead();
    d.write_init_conf(|conf| {
        conf["kms_server"] = first.clone().into();
        conf["kms_servers"] = serde_json::json!([kms.addr]);
    });
    // No --kms-server: the file's addresses are used.
    let out = run(&mut d.init_command_from_config(&[], &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_booted(&d);
    assert!(
        stderr.contains(&format!("kms {first}: attempt 1 failed"))
            && stderr.contains(&format!("trying {}", kms.addr)),
        "moves on at once, saying so:\n{stderr}"
    );
    assert!(
        !stderr.contains("retrying in"),
        "no pause before the second address:\n{stderr}"
    );
    assert!(
        stderr.contains("kms_servers[0]") && stderr.contains("attested in attempt 2"),
        "names where the address came from:\n{stderr}"
    );
}

/// A loopback listener that accepts every connection and closes it at once, before any TLS
/// byte: a replica whose process is going away, or a proxy with no backend.
fn closing_at_once() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    addr
}

#[test]
fn a_connection_closed_before_the_handshake_moves_on_to_the_next_address() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let closing = closing_at_once();
    let out = d.run_init(&format!("{closing},{}", kms.addr), &[], &[]);
    out.expect_code(0);
    assert_booted(&d);
    assert!(
        out.stderr
            .contains(&format!("kms {closing}: attempt 1 failed"))
            && out.stderr.contains(&format!("trying {}", kms.addr))
            && out.stderr.contains("attested in attempt 2"),
        "{}",
        out.stderr
    );
}

/// A relay to `upstream` that lets the handshake through (the ClientHello and the KMS's
/// answer), then cuts the connection when the client sends its next flight (its last TLS
/// flight and the requests): a replica killed mid-boot. Every connection is cut.
fn relay_cutting_after_the_handshake(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { break };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut server = TcpStream::connect(&upstream).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let n = client.read(&mut buf).unwrap_or(0);
                let _ = server.write_all(&buf[..n]);
                let mut from_server = server.try_clone().unwrap();
                let mut to_client = client.try_clone().unwrap();
                let back = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                });
                let _ = client.read(&mut buf);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                let _ = back.join();
            });
        }
    });
    addr
}

#[test]
fn a_session_cut_after_the_handshake_is_made_again_with_the_next_address_at_once() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let cutting = relay_cutting_after_the_handshake(kms.addr.clone());
    let out = d.run_init(&format!("{cutting},{}", kms.addr), &[], &[]);
    out.expect_code(0);
    assert_booted(&d);
    assert!(
        out.stderr.contains(&format!(
            "kms {cutting}: the connection failed before every secret arrived"
        )) && out.stderr.contains("attesting again with the next address")
            && out.stderr.contains(&format!("KMS {} (", kms.addr)),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("attesting again in"),
        "no pause while an address is untried:\n{}",
        out.stderr
    );
}

#[test]
fn a_comma_separated_kms_server_list_fails_over_the_same_way() {
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let list = format!("{},{}, {}", dead(), dead(), kms.addr);
    let out = d.run_init(&list, &[], &[]);
    out.expect_code(0);
    assert_booted(&d);
    assert!(
        out.stderr.contains("attested in attempt 3"),
        "{}",
        out.stderr
    );
    // The env var Occlum documents takes the same list.
    let d = deployment();
    let kms = d.start_kms("127.0.0.1:0");
    let mut cmd = d.init_command_from_config(&[], &[]);
    cmd.env(
        "OCCLUM_INIT_RA_KMS_SERVER",
        format!("{},{}", dead(), kms.addr),
    );
    let out = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("env OCCLUM_INIT_RA_KMS_SERVER [1]"),
        "{stderr}"
    );
}

#[test]
fn every_address_a_name_resolves_to_is_tried() {
    // `localhost` resolves to 127.0.0.1 first, then ::1 (grpc-unary's RFC 6761 mapping). The
    // KMS listens on ::1 only, so 127.0.0.1 refuses the connection and ::1 must be tried.
    let d = deployment();
    let kms = d.start_kms("[::1]:0");
    let port = kms.addr.rsplit_once(':').unwrap().1.to_owned();
    if TcpListener::bind(format!("127.0.0.1:{port}")).is_err() {
        eprintln!("127.0.0.1:{port} is taken by another process; test not meaningful, skipped");
        return;
    }
    let out = d.run_init(&format!("localhost:{port}"), &[], &[]);
    out.expect_code(0);
    assert_booted(&d);
    assert!(
        out.stderr.contains(&format!(
            "kms localhost:{port} (127.0.0.1:{port}): attempt 1 failed"
        )) && out
            .stderr
            .contains(&format!("KMS localhost:{port} ([::1]:{port})")),
        "{}",
        out.stderr
    );
}

#[test]
fn when_every_address_is_dead_init_exits_unreachable_within_its_deadline() {
    let d = deployment();
    let (a, b) = (dead(), dead());
    let out = d.run_init(&format!("{a},{b}"), &["--connect-deadline", "2"], &[]);
    out.expect_code(EXIT_UNREACHABLE);
    assert!(
        out.took >= Duration::from_secs(2),
        "gave up early: {:?}",
        out.took
    );
    assert!(
        out.took < Duration::from_secs(20),
        "overran the deadline: {:?}",
        out.took
    );
    assert!(
        out.stderr.contains(&format!("KMS {a}, {b} unreachable"))
            && out.stderr.contains("connect_deadline_secs"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.matches(&format!("kms {a}: attempt")).count() >= 3
            && out.stderr.matches(&format!("kms {b}: attempt")).count() >= 3,
        "both addresses are tried in every round:\n{}",
        out.stderr
    );
    assert!(!d.rootfs().exists());
}

/// Replicas of one KMS share its policy: a KMS that refuses this enclave (UNAUTHENTICATED, its
/// policy does not admit the app) is an answer, not an outage, and the next address is not
/// asked. Here the second address would have released the secrets.
#[test]
fn a_refusal_by_an_attested_kms_is_not_taken_to_the_next_address() {
    let d = deployment();
    let other = EnclaveId::new("another-app");
    e2e_tests::write_json(&d.path("refusing/ra_config.json"), &other.policy());
    let refusing = KmsOptions {
        ra_config: d.path("refusing/ra_config.json"),
        audit_log: d.path("refusing/audit.log"),
        ..d.kms_options("127.0.0.1:0")
    }
    .start();
    let good = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&format!("{},{}", refusing.addr, good.addr), &[], &[]);
    out.expect_code(EXIT_SECRETS);
    assert!(out.stderr.contains("UNAUTHENTICATED"), "{}", out.stderr);
    assert!(!d.rootfs().exists());
    assert!(
        d.audit().iter().all(|r| r["event"] != "attestation"),
        "the second KMS was asked: {:#?}",
        d.audit()
    );
}
