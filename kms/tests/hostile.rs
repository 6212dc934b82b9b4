//! Hostile clients against the real `kms` on loopback: floods of refused calls are aggregated
//! in the audit log without losing a release; refusals do not tell an unauthenticated peer
//! what the policy expects; a client certificate too large for gRPC core's TLS 1.3 session
//! tickets is audited, not silently dropped; boots from one address are not throttled once
//! each attests, while a peer that never attests is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::Kms;
use common::*;
use grpcio::RpcStatusCode;
use quote_source::QuoteSource as _;
use rcgen::PublicKeyData as _;
use sgx_sim::{Identity, SimQuoteSource};
use sha2::{Digest as _, Sha256};

/// Every refusal counted, whether written in full or as a summary's `repeated`.
fn refusals_accounted(audit: &[serde_json::Value]) -> u64 {
    audit
        .iter()
        .filter(|r| r["event"] == "refusal")
        .map(|r| r["repeated"].as_u64().unwrap_or(1))
        .sum()
}

#[test]
fn thousands_of_refused_calls_on_one_connection_write_a_few_records_and_keep_every_release() {
    let mut fx = Fixture::start("flood-audit");
    let anonymous = GrpcClient::connect(&fx.kms, None);
    const CALLS: u64 = 3000;
    for _ in 0..CALLS {
        assert_refused(
            anonymous.get("flask_key"),
            RpcStatusCode::UNAUTHENTICATED,
            "no client certificate",
        );
    }
    // A legitimate client in the middle of the flood.
    let app = fx.client(&fx.app);
    for (name, _, _) in secrets().iter().filter(|(_, _, allow)| allow.is_none()) {
        app.get(name).unwrap();
    }
    for _ in 0..CALLS {
        let _ = anonymous.get("flask_key");
    }
    drop(anonymous);
    drop(app);
    assert!(fx.kms.stop().success());
    let audit = fx.kms.audit();
    let refusals = audit.iter().filter(|r| r["event"] == "refusal").count();
    assert!(
        refusals <= 10,
        "{refusals} refusal records for {} refused calls",
        2 * CALLS
    );
    assert_eq!(refusals_accounted(&audit), 2 * CALLS, "{audit:#?}");
    let released = audit.iter().filter(|r| r["event"] == "release").count();
    let open_secrets = secrets()
        .iter()
        .filter(|(_, _, allow)| allow.is_none())
        .count();
    assert_eq!(released, open_secrets, "every release is recorded");
    let summary = audit
        .iter()
        .find(|r| r["repeated"].is_u64())
        .expect("a summary record");
    assert!(summary["first"].is_string() && summary["last"].is_string());
    assert_eq!(summary["status"], "UNAUTHENTICATED");
}

#[test]
fn a_measurement_refusal_does_not_tell_the_peer_what_the_policy_expects() {
    let fx = Fixture::start("no-disclosure");
    let mut impostor = fx.app.clone();
    impostor.mr_enclave[0] ^= 1;
    let expected = hex::encode(fx.app.mr_enclave);
    let (code, message) = fx.client(&impostor).get("flask_cert").unwrap_err();
    assert_eq!(code, RpcStatusCode::UNAUTHENTICATED, "{message}");
    assert!(message.contains("measurement-policy"), "{message}");
    assert!(message.contains("mr_enclave"), "names the field: {message}");
    assert!(
        message.contains(&hex::encode(impostor.mr_enclave)),
        "the peer's own value may be shown: {message}"
    );
    assert!(
        !message.contains(&expected),
        "the expected mr_enclave leaked to the peer: {message}"
    );
    // The operator still sees everything.
    let rec = fx.kms.wait_audit(|r| {
        r["event"] == "attestation"
            && r["verdict"] == "rejected"
            && r["reason"].as_str().unwrap_or_default().contains(&expected)
    });
    assert_eq!(rec["status"], "UNAUTHENTICATED");
}

/// An RA-TLS certificate for `identity` padded with a `pad`-byte private extension.
fn padded_cert(sim: &Sim, identity: &Identity, pad: usize) -> (ClientCert, usize) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&Sha256::digest(key.subject_public_key_info()));
    let source = SimQuoteSource {
        platform: Arc::clone(&sim.platform),
        identity: identity.clone(),
    };
    let quote = source.quote(&report_data).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.custom_extensions = vec![
        rcgen::CustomExtension::from_oid_content(&[1, 2, 840, 113741, 1], quote),
        // A private arc: ignored by the verifier, there only for size.
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x5a; pad]),
    ];
    let cert = params.self_signed(&key).unwrap();
    let der_len = cert.der().len();
    (
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        der_len,
    )
}

#[test]
#[cfg_attr(
    feature = "occlum-cpp-clients",
    ignore = "gRPC core on OpenSSL (feature occlum-cpp-clients) carries a 32 KB client certificate: it is then judged by attestation like any other"
)]
fn a_client_certificate_of_32_kb_over_tls13_is_refused_with_an_audit_record() {
    let fx = Fixture::start("big-cert");
    // A padded certificate that still passes attestation is released to as usual when small.
    let (small, small_len) = padded_cert(&fx.sim, &fx.app, 1024);
    assert!(small_len < 7 * 1024, "{small_len}");
    GrpcClient::connect(&fx.kms, Some(&small))
        .get("flask_cert")
        .unwrap();
    let (big, big_len) = padded_cert(&fx.sim, &fx.app, 32 * 1024);
    assert!(big_len > 32 * 1024, "{big_len}");
    let result = GrpcClient::connect(&fx.kms, Some(&big)).get("flask_cert");
    let (code, message) = result.expect_err("gRPC core 1.56 cannot carry this certificate");
    assert_eq!(code, RpcStatusCode::UNAVAILABLE, "{message}");
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "refusal" && r["status"] == "UNAVAILABLE");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("client certificate is too large") && reason.contains("TLS 1.2"),
        "{reason}"
    );
    let releases = fx
        .kms
        .audit()
        .iter()
        .filter(|r| r["event"] == "release")
        .count();
    assert_eq!(
        releases, 1,
        "only the small certificate's call was answered"
    );
}

/// A TCP connection to the KMS from 127.0.0.`octet` (the connection gate counts per address).
fn connect_from(octet: u8, kms: &Kms) -> std::net::TcpStream {
    let s = common::loopback::connect_from(
        std::net::Ipv4Addr::new(127, 0, 0, octet),
        kms.addr.parse().unwrap(),
    )
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s
}

/// Local and remote ports of this host's IPv4 TCP sockets (`/proc/net/tcp`).
fn tcp_sockets() -> Vec<(u16, u16)> {
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (port(f[1]), port(f[2]))
        })
        .collect()
}

#[test]
fn the_gate_closes_a_peers_connections_over_its_cap_and_audits_real_client_addresses() {
    use std::io::Read as _;
    let mut fx = Fixture::start_with(
        "gate",
        |_| {},
        vec!["--max-connections-per-peer".into(), "3".into()],
    );
    let _held: Vec<_> = (0..3).map(|_| connect_from(2, &fx.kms)).collect();
    let mut fourth = connect_from(2, &fx.kms);
    let mut b = [0u8; 1];
    assert!(
        matches!(fourth.read(&mut b), Ok(0) | Err(_)),
        "a fourth connection from 127.0.0.2 should be closed"
    );
    let refusal = fx.kms.wait_audit(|r| {
        r["event"] == "refusal"
            && r["reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("connection limit: 3 connections"))
    });
    assert!(
        refusal["peer"]
            .as_str()
            .unwrap()
            .starts_with("ipv4:127.0.0.2:")
    );

    // Another address is served in full while 127.0.0.2 holds its three.
    let app = fx.client(&fx.app);
    for (name, value, allow) in secrets() {
        if allow.is_none() {
            assert_eq!(app.get_decoded(name).unwrap(), value, "{name}");
        }
    }

    // gRPC core sees the gate's loopback connection; the audit names the client's own: the
    // KMS's public port has a socket connected to it (an unmapped name would be the gate's
    // socket to gRPC core's port instead).
    let anonymous = GrpcClient::connect(&fx.kms, None);
    assert_refused(
        anonymous.get("flask_key"),
        RpcStatusCode::UNAUTHENTICATED,
        "no client certificate",
    );
    let rec = fx.kms.wait_audit(|r| {
        r["event"] == "refusal"
            && r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("no client certificate"))
    });
    let peer = rec["peer"].as_str().unwrap();
    let port: u16 = peer.rsplit(':').next().unwrap().parse().unwrap();
    let public: u16 = fx.kms.addr.rsplit(':').next().unwrap().parse().unwrap();
    let sockets = tcp_sockets();
    assert!(
        sockets.contains(&(public, port)),
        "{peer} is not a client of the KMS's port {public}: {:?}",
        sockets
            .iter()
            .filter(|s| s.0 == port || s.1 == port)
            .collect::<Vec<_>>()
    );
    drop(anonymous);
    assert!(fx.kms.stop().success());
}

#[test]
fn boots_from_one_address_are_never_throttled_once_each_attests_but_an_unattested_peer_is() {
    // 16 KiB/s of unattested ingress in total, bursts of 512 KiB: 150 boots of several KB
    // each send more than that, and would be throttled if attested connections kept what
    // they spent.
    let mut fx = Fixture::start_with(
        "boot-storm",
        |_| {},
        vec!["--max-ingress".into(), "16".into()],
    );
    let cert = fx.sim.client(&fx.app);
    for _ in 0..150 {
        let app = GrpcClient::connect(&fx.kms, Some(&cert));
        app.get("flask_key").unwrap();
    }
    assert!(
        !fx.kms.audit().iter().any(|r| r["event"] == "throttle"),
        "a boot was throttled"
    );
    // A connection that sends without ever attesting (no client certificate: every call is
    // refused) is held to the budget and audited, from the same address.
    let anonymous = std::thread::spawn({
        let kms = Kms::view(&fx.kms);
        move || {
            let anonymous = GrpcClient::connect(&kms, None);
            for _ in 0..16 {
                let _ = anonymous.call_raw(&GET_SECRET, encode_field1(&[b'x'; 64 * 1024]));
            }
        }
    });
    let throttle = fx.kms.wait_audit(|r| r["event"] == "throttle");
    assert!(
        throttle["peer"]
            .as_str()
            .unwrap()
            .starts_with("ipv4:127.0.0.1:")
    );
    assert!(fx.kms.stop().success());
    anonymous.join().unwrap();
}
