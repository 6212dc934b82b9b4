//! The KMS against clients whose certificates have the form Occlum's C++ `grpc_ratls` makes:
//! X.509 v1 (no version field) carrying extension `1.2.840.113741.1` with the raw quote,
//! RSA-2048, sha1WithRSAEncryption, `report_data = SHA-256(SPKI)`. The real KMS binary over
//! loopback.
//!
//! - The main port (gRPC core's TLS): the default build's BoringSSL (inside grpcio-sys 0.13)
//!   refuses such a certificate in the handshake; a test pins that, so a grpcio upgrade that
//!   accepts them shows up here. The KMS feature `occlum-cpp-clients` (gRPC core on OpenSSL)
//!   accepts them at a CPU cost; its two tests run only with it:
//!   `cargo test --release --workspace --features kms/simulation,init/simulation,kms/occlum-cpp-clients --test occlum_client`.
//! - The Occlum-compat port (`--occlum-compat-listen`, TLS by rustls in the KMS, default
//!   build): such clients get their secrets over TLS 1.3 and 1.2, and every refusal path of
//!   that port is driven here (policy, no certificate, no possession of the key, the
//!   connection cap, the handshake deadline), plus a large secret through the relay and the
//!   certificate re-mint. The clients are rustls (grpc-unary, init's stack) sending SNI `RATLS`
//!   as Occlum's client does: grpcio's BoringSSL cannot even load a v1 client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use grpcio::RpcStatusCode;
use ratls::cert::RaTlsIdentity;
use rustls_pki_types::ServerName;
use test_kit::danger::AnyServerCert;

#[test]
#[cfg_attr(
    not(feature = "occlum-cpp-clients"),
    ignore = "needs the KMS feature occlum-cpp-clients: grpcio's BoringSSL refuses X.509 v1 with extensions"
)]
fn an_occlum_form_client_the_policy_admits_gets_its_secrets() {
    let fx = Fixture::start("occlum-client-ok");
    let client = GrpcClient::connect(&fx.kms, Some(&fx.sim.occlum_client(&fx.app)));
    assert_eq!(client.get_decoded("flask_key").unwrap(), secrets()[1].1);
    assert_eq!(client.get_decoded("image_key").unwrap(), secrets()[2].1);
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "attestation" && r["verdict"] == "ok");
    assert_eq!(rec["matched"], "app", "{rec}");
}

#[test]
#[cfg_attr(
    not(feature = "occlum-cpp-clients"),
    ignore = "needs the KMS feature occlum-cpp-clients: grpcio's BoringSSL refuses X.509 v1 with extensions"
)]
fn an_occlum_form_client_the_policy_does_not_admit_is_refused_by_the_measurement_policy() {
    let fx = Fixture::start("occlum-client-refused");
    let mut stranger = fx.app.clone();
    stranger.mr_enclave[0] ^= 1;
    let client = GrpcClient::connect(&fx.kms, Some(&fx.sim.occlum_client(&stranger)));
    let (code, message) = client.get("flask_key").unwrap_err();
    assert_eq!(code, RpcStatusCode::UNAUTHENTICATED, "{message}");
    assert!(message.contains("measurement-policy"), "{message}");
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "attestation" && r["verdict"] == "rejected");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("mr_enclave"),
        "{rec}"
    );
}

#[test]
#[cfg(not(feature = "occlum-cpp-clients"))]
fn the_default_build_refuses_an_occlum_form_client_in_the_tls_handshake() {
    let fx = Fixture::start("occlum-client-default");
    let client = GrpcClient::connect(&fx.kms, Some(&fx.sim.occlum_client(&fx.app)));
    let (code, message) = client.get("flask_key").unwrap_err();
    // Refused by BoringSSL before any of the KMS's code runs: no attestation record, no release.
    assert_eq!(code, RpcStatusCode::UNAVAILABLE, "{message}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let audit = fx.kms.audit();
    assert!(
        !audit
            .iter()
            .any(|r| r["event"] == "attestation" || r["event"] == "release"),
        "the handshake should have failed before attestation: {audit:?}"
    );
}

// ---- The Occlum-compat listener (`--occlum-compat-listen`): the default build, TLS by rustls.

/// A fixture whose KMS also serves the Occlum-compat listener on an ephemeral port.
fn compat_fixture(tag: &str) -> (Fixture, String) {
    let fx = Fixture::start_with(
        tag,
        |_| {},
        vec!["--occlum-compat-listen".into(), "127.0.0.1:0".into()],
    );
    let addr = compat_addr(&fx);
    (fx, addr)
}

/// The compat listener's address, from the KMS's start record.
fn compat_addr(fx: &Fixture) -> String {
    let start = fx.kms.wait_audit(|r| r["event"] == "start");
    let reason = start["reason"].as_str().unwrap().to_owned();
    reason
        .split("; ")
        .find_map(|part| {
            part.strip_prefix("Occlum C++ clients on ")
                .and_then(|rest| rest.strip_suffix(" (--occlum-compat-listen)"))
        })
        .unwrap_or_else(|| panic!("no compat address in the start record: {reason}"))
        .to_owned()
}

/// What a client presents on the compat port: Occlum's C++ client sends SNI `RATLS`
/// (`SslTargetNameOverride("RATLS")` in Occlum's gRPC patch).
struct Presents<'a> {
    cert: Option<&'a RaTlsIdentity>,
    /// Signs the handshake with this identity's key instead of `cert`'s.
    key_of: Option<&'a RaTlsIdentity>,
    version: &'static rustls::SupportedProtocolVersion,
}

impl<'a> Presents<'a> {
    fn cert(cert: &'a RaTlsIdentity) -> Self {
        Presents {
            cert: Some(cert),
            key_of: None,
            version: &rustls::version::TLS13,
        }
    }
}

/// GetSecret `name` over the compat port with a rustls client (TLS by rustls on both ends),
/// the reply decoded from Occlum's quoted base64.
fn compat_get(addr: &str, presents: &Presents<'_>, name: &str) -> Result<Vec<u8>, String> {
    let config = rustls_client(presents.cert, presents.key_of, &[presents.version]);
    let mut channel = grpc_unary::Channel::connect(
        addr,
        ServerName::try_from("RATLS").unwrap(),
        Arc::new(config),
        &grpc_unary::ClientConfig::builder().build(),
    )
    .map_err(|e| e.to_string())?;
    let reply = channel
        .unary(
            grsecret::GET_SECRET,
            &grsecret::client::encode_string_field1(name),
        )
        .map_err(|e| e.to_string())?;
    let text = grsecret::client::decode_string_field1(&reply).map_err(|e| e.to_string())?;
    grsecret::client::decode_secret(text.as_bytes()).map(|v| v.to_vec())
}

fn occlum_form(fx: &Fixture, who: &sgx_sim::Identity) -> RaTlsIdentity {
    let cert = fx.sim.occlum_client(who);
    RaTlsIdentity::from_pem(&cert.cert_pem, &cert.key_pem).unwrap()
}

#[test]
fn an_occlum_form_client_gets_its_secrets_on_the_compat_port() {
    let (fx, addr) = compat_fixture("compat-ok");
    let me = occlum_form(&fx, &fx.app);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let presents = Presents {
            version,
            ..Presents::cert(&me)
        };
        assert_eq!(
            compat_get(&addr, &presents, "flask_key").unwrap(),
            secrets()[1].1,
            "{version:?}"
        );
        assert_eq!(
            compat_get(&addr, &presents, "image_key").unwrap(),
            secrets()[2].1
        );
    }
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "attestation" && r["verdict"] == "ok");
    assert_eq!(rec["matched"], "app", "{rec}");
    // The client's own address, not gRPC core's name for the socket pair (`fd:N`).
    let peer = rec["peer"].as_str().unwrap();
    assert!(peer.starts_with("ipv4:127.0.0.1:"), "{rec}");
    let release = fx.kms.wait_audit(|r| r["event"] == "release");
    assert!(
        release["peer"]
            .as_str()
            .unwrap()
            .starts_with("ipv4:127.0.0.1:"),
        "{release}"
    );
}

#[test]
fn an_ordinary_ra_tls_client_works_on_the_compat_port_too() {
    let (fx, addr) = compat_fixture("compat-v3");
    let cert = fx.sim.client(&fx.app);
    let me = RaTlsIdentity::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    assert_eq!(
        compat_get(&addr, &Presents::cert(&me), "flask_key").unwrap(),
        secrets()[1].1
    );
}

#[test]
fn an_occlum_form_client_the_policy_does_not_admit_is_refused_on_the_compat_port() {
    let (fx, addr) = compat_fixture("compat-refused");
    let mut stranger = fx.app.clone();
    stranger.mr_enclave[0] ^= 1;
    let me = occlum_form(&fx, &stranger);
    let message = compat_get(&addr, &Presents::cert(&me), "flask_key").unwrap_err();
    assert!(message.contains("UNAUTHENTICATED"), "{message}");
    assert!(message.contains("measurement-policy"), "{message}");
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "attestation" && r["verdict"] == "rejected");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("mr_enclave"),
        "{rec}"
    );
    assert!(!fx.kms.audit().iter().any(|r| r["event"] == "release"));
}

#[test]
fn a_client_without_a_certificate_is_refused_on_the_compat_port() {
    let (fx, addr) = compat_fixture("compat-nocert");
    let presents = Presents {
        cert: None,
        key_of: None,
        version: &rustls::version::TLS13,
    };
    let message = compat_get(&addr, &presents, "flask_key").unwrap_err();
    assert!(message.contains("UNAUTHENTICATED"), "{message}");
    assert!(message.contains("certificate"), "{message}");
    assert!(!fx.kms.audit().iter().any(|r| r["event"] == "release"));
}

#[test]
fn a_client_that_does_not_hold_its_certificates_key_fails_the_compat_handshake() {
    let (fx, addr) = compat_fixture("compat-possession");
    // The admitted app's certificates, with the handshake signed by another key: an Occlum
    // form (RSA) one signed with a P-256 key, and an ordinary (P-256) one with another P-256 key.
    let v3 = |fx: &Fixture| {
        let c = fx.sim.client(&fx.app);
        RaTlsIdentity::from_pem(&c.cert_pem, &c.key_pem).unwrap()
    };
    let (occlum, ordinary, other) = (occlum_form(&fx, &fx.app), v3(&fx), v3(&fx));
    for (claimed, held) in [(&occlum, &other), (&ordinary, &other)] {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let presents = Presents {
                cert: Some(claimed),
                key_of: Some(held),
                version,
            };
            let refused = compat_get(&addr, &presents, "flask_key");
            assert!(refused.is_err(), "{version:?}: a reply without possession");
        }
    }
    // Audited (refusals of one kind from one address are aggregated: the first in full).
    let rec = fx.kms.wait_audit(|r| {
        r["event"] == "refusal"
            && r["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("occlum-compat-tls: TLS handshake failed")
    });
    assert_eq!(rec["status"], "UNAVAILABLE", "{rec}");
    assert!(
        !fx.kms
            .audit()
            .iter()
            .any(|r| r["event"] == "attestation" || r["event"] == "release"),
        "nothing past the handshake: {:?}",
        fx.kms.audit()
    );
}

#[test]
fn the_compat_port_caps_connections_and_handshakes_time_out() {
    let (fx, addr) = compat_fixture("compat-cap");
    // 256 connections that never start a handshake fill the cap; the next is refused at accept.
    let idle: Vec<std::net::TcpStream> = (0..256)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    let rec = fx.kms.wait_audit(|r| {
        r["event"] == "refusal"
            && r["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("256 connections are open on --occlum-compat-listen")
    });
    assert_eq!(rec["status"], "UNAVAILABLE", "{rec}");
    // The refused one is closed: reading it ends.
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut extra, &mut byte).unwrap(), 0);
    // The idle ones lose their connections at the handshake deadline (10 s), audited.
    let rec = fx
        .kms
        .wait_audit_for(std::time::Duration::from_secs(20), |r| {
            r["event"] == "refusal"
                && r["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("TLS handshake failed: not finished within 10 s")
        });
    assert!(rec["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.1:"));
    drop(idle);
    // And the port serves again.
    let me = occlum_form(&fx, &fx.app);
    assert_eq!(
        compat_get(&addr, &Presents::cert(&me), "flask_key").unwrap(),
        secrets()[1].1
    );
}

#[test]
fn a_large_secret_crosses_the_compat_relay_intact() {
    // Larger than every buffer on the way (rustls's 64 KiB, the relay's 16 KiB chunks, the
    // socket pair's), so each side fills and drains several times.
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dir = temp_dir("compat-large");
    let sim = Sim::new(&dir, "platform", |_| {});
    let (app, tool) = (app_identity(), tool_identity());
    let mut all = secrets();
    all.push(("big", big.clone(), None));
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool),
        secrets: secrets_json(&all),
        extra: vec!["--occlum-compat-listen".into(), "127.0.0.1:0".into()],
    });
    let fx = Fixture {
        dir,
        sim,
        app,
        tool,
        kms,
    };
    let addr = compat_addr(&fx);
    let me = occlum_form(&fx, &fx.app);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let got = compat_get(
            &addr,
            &Presents {
                version,
                ..Presents::cert(&me)
            },
            "big",
        )
        .unwrap();
        assert!(got == big, "{version:?}: {} bytes back", got.len());
    }
}

#[test]
fn the_compat_port_presents_the_re_minted_certificate() {
    let fx = Fixture::start_with(
        "compat-rotation",
        |_| {},
        vec![
            "--occlum-compat-listen".into(),
            "127.0.0.1:0".into(),
            "--cert-lifetime".into(),
            "10".into(),
        ],
    );
    let addr = compat_addr(&fx);
    let me = occlum_form(&fx, &fx.app);
    let presented = || {
        let config = rustls_client(Some(&me), None, &[&rustls::version::TLS13]);
        let mut channel = grpc_unary::Channel::connect(
            &addr,
            ServerName::try_from("RATLS").unwrap(),
            Arc::new(config),
            &grpc_unary::ClientConfig::builder().build(),
        )
        .unwrap();
        // The handshake is complete once a call has been answered.
        channel
            .unary(
                grsecret::GET_SECRET,
                &grsecret::client::encode_string_field1("flask_key"),
            )
            .unwrap();
        channel.peer_certificates().unwrap()[0].to_vec()
    };
    let pem_der = |pem: &str| ratls::cert::der_from_pem(pem).unwrap();
    assert!(
        presented() == pem_der(&fx.kms.cert_pem),
        "the compat port presents the KMS's certificate"
    );
    let rotated = fx
        .kms
        .wait_audit_for(std::time::Duration::from_secs(15), |r| {
            r["event"] == "rotation"
        });
    assert_eq!(rotated["verdict"], "ok");
    let new_pem = std::fs::read_to_string(fx.dir.path().join("kms-cert.pem")).unwrap();
    assert_ne!(new_pem, fx.kms.cert_pem);
    assert!(
        presented() == pem_der(&new_pem),
        "after the re-mint, the compat port presents the new certificate"
    );
}

#[test]
fn a_bad_compat_address_is_a_usage_error() {
    assert_usage_error("--occlum-compat-listen", "localhost", "IP:PORT");
}

#[test]
fn a_compat_address_in_use_stops_the_start_naming_the_flag() {
    let (addr, err) = start_error_with_address_taken("compat-taken", "--occlum-compat-listen");
    assert!(
        err.contains(&format!(
            "serving Occlum's C++ clients on {addr} (--occlum-compat-listen)"
        )),
        "{err}"
    );
}

/// A rustls client for the compat port: presents `identity`'s certificate, signs with
/// `signer`'s key (default: its own), trusts whatever the server presents (the KMS's side is
/// under test, not init's verifier).
fn rustls_client(
    identity: Option<&RaTlsIdentity>,
    signer: Option<&RaTlsIdentity>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::checking_signatures(
            Arc::clone(&provider),
        )));
    let mut config = match identity {
        Some(identity) => {
            let (cert, _) = identity.rustls_pair();
            let (_, key) = signer.unwrap_or(identity).rustls_pair();
            let key = provider.key_provider.load_private_key(key).unwrap();
            let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], key));
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}
