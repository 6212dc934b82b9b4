//! The client init runs (rustls with the `ratls` configuration, `grpc-unary`) against the real
//! `kms` (gRPC C-core with BoringSSL): one round trip for the key exchange, the cheap suite,
//! and secrets byte-exact. The platform is SIMULATED.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::TcpStream;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::Verifier;
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use sgx_sim::SimQuoteSource;

/// A verifier that accepts exactly the running KMS's enclave on the fixture's platform.
fn kms_verifier(fx: &Fixture) -> Arc<Verifier> {
    let der = ratls::cert::der_from_pem(&fx.kms.cert_pem).unwrap();
    let body = ratls::cert::extract(&der).unwrap().quote.body;
    let policy = serde_json::json!({
        "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
        "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
        "sgx_mrs": [{ "mr_enclave": hex::encode(body.mr_enclave), "mr_signer": hex::encode(body.mr_signer),
                      "isv_prod_id": body.isv_prod_id, "isv_svn": body.isv_svn,
                      "config_svn": body.config_svn, "debuggable": false }]
    });
    Arc::new(Verifier::new(
        ratls::danger::simulated_root(fx.sim.platform.root_ca_der().to_vec(), "test".into()),
        Arc::new(StaticCollateral::new(fx.sim.platform.collateral(), "sim")),
        RaPolicy::from_json(policy.to_string().as_bytes(), "kms policy").unwrap(),
    ))
}

fn app_tls(fx: &Fixture) -> rustls::ClientConfig {
    let source = SimQuoteSource {
        platform: Arc::clone(&fx.sim.platform),
        identity: fx.app.clone(),
    };
    let identity = RaTlsIdentity::mint(&source).unwrap();
    ratls::tls::client_config(kms_verifier(fx), &identity).unwrap()
}

#[test]
fn inits_handshake_with_the_kms_needs_no_hello_retry_and_uses_p256_and_aes_128_gcm() {
    let fx = Fixture::start("init-client-hs");
    let name = ServerName::try_from("kms").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(app_tls(&fx)), name).unwrap();
    let mut tcp = TcpStream::connect(&fx.kms.addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(
        conn.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::secp256r1)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
}

#[test]
fn inits_grpc_client_gets_every_secret_byte_exact_over_one_connection() {
    let fx = Fixture::start("init-client-get");
    let server = ServerName::try_from("kms").unwrap();
    let cfg = grpc_unary::ClientConfig::builder().build();
    let mut channel =
        grpc_unary::Channel::connect(&fx.kms.addr, server, Arc::new(app_tls(&fx)), &cfg).unwrap();
    let released = secrets()
        .into_iter()
        .filter(|(_, _, allow)| allow.as_ref().is_none_or(|a| a.contains(&"app")));
    for (name, value, _) in released {
        let request = grsecret::client::encode_string_field1(name);
        let reply = channel
            .unary("/ratls.GrSecret/GetSecret", &request)
            .unwrap();
        let text = String::from_utf8(decode_field1(&reply)).unwrap();
        let inner = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .expect("Occlum's quoted form");
        assert_eq!(B64.decode(inner).unwrap(), value, "{name}");
    }
    channel.close().unwrap();
}

/// init sends all its GetSecret calls at once (concurrent streams with its last TLS flight):
/// every secret comes back byte-exact, and each connection's new certificate is verified and
/// audited once, however its calls were spread over the KMS's threads (the race itself is
/// pinned by the `service` unit test `concurrent_calls_with_one_new_certificate_verify_it_once`).
#[test]
fn a_batch_of_calls_on_a_new_certificate_is_one_attestation() {
    let fx = Fixture::start("init-client-batch");
    let cfg = grpc_unary::ClientConfig::builder().build();
    let released: Vec<_> = secrets()
        .into_iter()
        .filter(|(_, _, allow)| allow.as_ref().is_none_or(|a| a.contains(&"app")))
        .collect();
    let requests: Vec<Vec<u8>> = released
        .iter()
        .map(|(name, _, _)| grsecret::client::encode_string_field1(name))
        .collect();
    let batch: Vec<(&str, &[u8])> = requests
        .iter()
        .map(|r| ("/ratls.GrSecret/GetSecret", r.as_slice()))
        .collect();
    const CONNECTIONS: usize = 40;
    for _ in 0..CONNECTIONS {
        let server = ServerName::try_from("kms").unwrap();
        let mut channel =
            grpc_unary::Channel::connect(&fx.kms.addr, server, Arc::new(app_tls(&fx)), &cfg)
                .unwrap();
        let replies = channel.unary_many(&batch).unwrap();
        for ((name, value, _), reply) in released.iter().zip(replies) {
            let text = String::from_utf8(decode_field1(&reply.unwrap())).unwrap();
            let inner = text.trim_matches('"');
            assert_eq!(B64.decode(inner).unwrap(), *value, "{name}");
        }
        channel.close().unwrap();
    }
    let audit = fx.kms.audit();
    let count = |event: &str| audit.iter().filter(|r| r["event"] == event).count();
    assert_eq!(
        count("attestation"),
        CONNECTIONS,
        "one verification per certificate"
    );
    assert_eq!(count("release"), CONNECTIONS * released.len());
    assert_eq!(count("refusal"), 0);
}
