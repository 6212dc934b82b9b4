//! The KMS against clients whose certificates have the form Occlum's C++ `grpc_ratls` makes:
//! X.509 v1 (no version field) carrying extension `1.2.840.113741.1` with the raw quote,
//! RSA-2048, sha1WithRSAEncryption, `report_data = SHA-256(SPKI)`. The real KMS binary over
//! loopback, its TLS stack (grpcio's) included: the TLS library must accept such a
//! certificate in the handshake before the KMS's own attestation pipeline can judge it.
//!
//! The default build's BoringSSL (inside grpcio-sys 0.13) refuses X.509 v1 certificates that
//! carry extensions in the handshake: the last test pins that, so a grpcio upgrade that
//! accepts them shows up here. The KMS feature `occlum-cpp-clients` builds gRPC core on
//! OpenSSL instead (grpcio's `openssl-vendored`), which accepts them; it is opt-in because it
//! costs the KMS more CPU per attestation (README, "Compatibility with Occlum's C++
//! `grpc_ratls`"). The first two tests run only with it:
//! `cargo test --release --workspace --features kms/simulation,init/simulation,kms/occlum-cpp-clients --test occlum_client`.

mod common;

use common::*;
use grpcio::RpcStatusCode;

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
