//! Interop with Occlum's C++ `grpc_ratls`, whose RA-TLS certificates are X.509 v1 with the
//! quote extension `1.2.840.113741.1`, RSA-2048 and sha1WithRSA: a certificate Occlum's own
//! server made (testdata/occlum-cpp) through the verifier init uses for the KMS, and full
//! rustls handshakes, both directions and both TLS versions, with certificates of that form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::{PolicyField, RaPolicy};
use ratls::tls::{RaTlsServerVerifier, attestation_error, client_config, server_config};
use ratls::verify::{Verifier, VerifyError};
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

const VECTOR_PEM: &str = include_str!("../testdata/occlum-cpp/occlum-cpp-server-v1.pem");
const VECTOR_ROOT: &str = include_str!("../testdata/occlum-cpp/sim-root-ca.pem");
const VECTOR_COLLATERAL: &str = include_str!("../testdata/occlum-cpp/sim-collateral.json");
const VECTOR_IDENTITY: &str =
    include_str!("../testdata/occlum-cpp/occlum-cpp-server-identity.json");
/// 2026-12-06T00:00:00Z: inside the vector's certificate (from 2026-12-05T15:19:50Z) and
/// collateral (2026-12-04T15:19:43Z .. 2027-01-04T15:19:43Z) windows.
const VECTOR_NOW: u64 = 1_796_515_200;

fn policy(mr_enclave: &str, mr_signer: &str, isv_prod_id: u64, isv_svn: u64) -> RaPolicy {
    let json = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"name": "occlum-cpp", "mr_enclave": "{mr_enclave}",
                         "mr_signer": "{mr_signer}", "isv_prod_id": {isv_prod_id},
                         "isv_svn": {isv_svn}, "config_svn": 0, "debuggable": false}}]}}"#
    );
    RaPolicy::from_json(json.as_bytes(), "test").unwrap()
}

/// A policy naming the vector's identity; `mr_enclave` replaced when `other_enclave` is set.
fn vector_policy(other_enclave: bool) -> RaPolicy {
    let id: serde_json::Value = serde_json::from_str(VECTOR_IDENTITY).unwrap();
    let mr_enclave = if other_enclave {
        "00".repeat(32)
    } else {
        id["mr_enclave"].as_str().unwrap().to_string()
    };
    policy(
        &mr_enclave,
        id["mr_signer"].as_str().unwrap(),
        id["isv_prod_id"].as_u64().unwrap(),
        id["isv_svn"].as_u64().unwrap(),
    )
}

fn vector_verifier(policy: RaPolicy) -> RaTlsServerVerifier {
    let root = ratls::cert::der_from_pem(VECTOR_ROOT).unwrap();
    let collateral = serde_json::from_str(VECTOR_COLLATERAL).unwrap();
    RaTlsServerVerifier::new(Arc::new(Verifier::new(
        ratls::danger::simulated_root(root, "occlum-cpp vector".into()),
        Arc::new(StaticCollateral::new(collateral, "occlum-cpp vector")),
        policy,
    )))
}

fn check_vector(verifier: &RaTlsServerVerifier) -> Result<(), rustls::Error> {
    let der = CertificateDer::from(ratls::cert::der_from_pem(VECTOR_PEM).unwrap());
    verifier
        .verify_server_cert(
            &der,
            &[],
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(VECTOR_NOW)),
        )
        .map(|_| ())
}

#[test]
fn the_vector_is_x509_v1_with_the_occlum_quote_extension() {
    let der = ratls::cert::der_from_pem(VECTOR_PEM).unwrap();
    // tbsCertificate's first element is the serial INTEGER, not the [0] version tag (0xa0).
    let (_, tbs_start) = (der[1] & 0x7f, 2 + usize::from(der[1] & 0x7f));
    let after_tbs_header = tbs_start + 2 + usize::from(der[tbs_start + 1] & 0x7f);
    assert_eq!(
        der[after_tbs_header], 0x02,
        "a v1 certificate starts with the serial"
    );
    let evidence = ratls::cert::extract_bound(&der).unwrap();
    assert_eq!(evidence.format, ratls::cert::EvidenceFormat::Occlum);
    assert_eq!(
        evidence.key_algorithm,
        ratls::cert::KeyAlgorithm::Rsa { bits: 2048 }
    );
}

#[test]
fn occlums_own_v1_server_certificate_passes_when_the_policy_admits_its_identity() {
    check_vector(&vector_verifier(vector_policy(false))).unwrap();
}

#[test]
fn occlums_own_v1_server_certificate_is_refused_by_the_measurement_policy_otherwise() {
    let err = check_vector(&vector_verifier(vector_policy(true))).unwrap_err();
    let cause = attestation_error(&err).expect("an attestation failure");
    assert_eq!(cause.check(), "measurement-policy");
    assert!(
        matches!(cause, VerifyError::Policy(r)
            if r.mismatches().first().map(|m| m.field()) == Some(PolicyField::MrEnclave)),
        "{cause:?}"
    );
}

struct World {
    _dir: tempfile::TempDir,
    platform: SimPlatform,
    /// Occlum form: v1, RSA-2048, sha1WithRSA.
    occlum: RaTlsIdentity,
    occlum_id: Identity,
    /// Ours: v3, P-256.
    ours: RaTlsIdentity,
    ours_id: Identity,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let platform =
        SimPlatform::create(&dir.path().join("platform"), &PlatformOptions::new(now())).unwrap();
    let source =
        |id: &Identity| SimQuoteSource::new(SimPlatform::open(platform.dir()).unwrap(), id.clone());
    let occlum_id = Identity::random(Some(11)).unwrap();
    let ours_id = Identity::random(Some(12)).unwrap();
    let occlum =
        sgx_sim::occlum_form::identity(&source(&occlum_id), now() as i64 - 60, 3600).unwrap();
    let ours = RaTlsIdentity::mint(&source(&ours_id)).unwrap();
    World {
        _dir: dir,
        platform,
        occlum,
        occlum_id,
        ours,
        ours_id,
    }
}

fn admit(id: &Identity) -> RaPolicy {
    policy(
        &hex::encode(id.mr_enclave),
        &hex::encode(id.mr_signer),
        u64::from(id.isv_prod_id),
        u64::from(id.isv_svn),
    )
}

fn verifier(w: &World, policy: RaPolicy) -> Arc<Verifier> {
    Arc::new(Verifier::new(
        ratls::danger::simulated_root(w.platform.root_ca_der().to_vec(), "test".into()),
        Arc::new(StaticCollateral::new(w.platform.collateral(), "sim")),
        policy,
    ))
}

/// One handshake and a one-byte exchange; the client's and the server's results.
fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> (Result<(), rustls::Error>, Result<(), rustls::Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte)
            .and_then(|()| tls.write_all(&byte))
            .and_then(|()| tls.flush())
            .map_err(tls_cause)
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let result = tls
        .write_all(&[7])
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read_exact(&mut [0u8; 1]));
    let client_result = result.map_err(tls_cause);
    drop(tls);
    (client_result, server_thread.join().unwrap())
}

/// The rustls error inside an I/O error from a TLS stream.
fn tls_cause(e: std::io::Error) -> rustls::Error {
    e.into_inner()
        .and_then(|e| e.downcast::<rustls::Error>().ok())
        .map_or(
            rustls::Error::General("io error without a TLS cause".into()),
            |e| *e,
        )
}

/// A TLS 1.2-only client (as Occlum's C++ peers may negotiate) presenting `me`.
fn tls12_only(w: &World, policy: RaPolicy, me: &RaTlsIdentity) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = ratls::tls::certified_key(me, &provider).unwrap();
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RaTlsServerVerifier::new(verifier(w, policy))))
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
}

#[test]
fn an_occlum_form_server_is_attested_by_our_client_in_tls_1_3_and_1_2() {
    let w = world();
    for tls12 in [false, true] {
        let client = if tls12 {
            tls12_only(&w, admit(&w.occlum_id), &w.ours)
        } else {
            client_config(verifier(&w, admit(&w.occlum_id)), &w.ours).unwrap()
        };
        let mut server = server_config(verifier(&w, admit(&w.ours_id)), &w.occlum).unwrap();
        server.alpn_protocols.clear();
        let (c, s) = handshake(client, server);
        c.unwrap_or_else(|e| panic!("tls12={tls12}: {e}"));
        s.unwrap();
    }
}

#[test]
fn an_occlum_form_client_is_attested_by_our_server_in_tls_1_3_and_1_2() {
    let w = world();
    for tls12 in [false, true] {
        let client = if tls12 {
            tls12_only(&w, admit(&w.ours_id), &w.occlum)
        } else {
            client_config(verifier(&w, admit(&w.ours_id)), &w.occlum).unwrap()
        };
        let mut server = server_config(verifier(&w, admit(&w.occlum_id)), &w.ours).unwrap();
        server.alpn_protocols.clear();
        let (c, s) = handshake(client, server);
        c.unwrap_or_else(|e| panic!("tls12={tls12}: {e}"));
        s.unwrap();
    }
}

#[test]
fn an_occlum_form_server_outside_the_policy_is_refused_by_the_measurement_policy() {
    let w = world();
    // The client admits only our own enclave, not the Occlum-form server's.
    let client = client_config(verifier(&w, admit(&w.ours_id)), &w.ours).unwrap();
    let server = server_config(verifier(&w, admit(&w.ours_id)), &w.occlum).unwrap();
    let (c, _) = handshake(client, server);
    let err = c.expect_err("the handshake must fail");
    let cause = attestation_error(&err).expect("an attestation failure");
    assert_eq!(cause.check(), "measurement-policy");
}

#[test]
fn an_occlum_form_client_outside_the_policy_is_refused_by_our_server() {
    let w = world();
    let client = client_config(verifier(&w, admit(&w.ours_id)), &w.occlum).unwrap();
    // The server admits only its own enclave.
    let server = server_config(verifier(&w, admit(&w.ours_id)), &w.ours).unwrap();
    let (c, s) = handshake(client, server);
    assert!(c.is_err());
    let s = s.expect_err("the server must refuse");
    let cause = attestation_error(&s).expect("an attestation failure");
    assert_eq!(cause.check(), "measurement-policy");
}

#[test]
fn a_server_without_its_certificates_key_fails_the_handshake_signature() {
    let w = world();
    // The server presents our attested certificate but signs with the Occlum-form key, and
    // then with another P-256 key: the certificate passes the pipeline, the signature does not.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let other = RaTlsIdentity::mint(&SimQuoteSource::new(
        SimPlatform::open(w.platform.dir()).unwrap(),
        w.ours_id.clone(),
    ))
    .unwrap();
    for (wrong_key, same_type) in [(&w.occlum, false), (&other, true)] {
        for tls12 in [false, true] {
            let (cert, _) = w.ours.rustls_pair();
            let (_, key) = wrong_key.rustls_pair();
            let signer = provider.key_provider.load_private_key(key).unwrap();
            let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer));
            let mut server = server_config(verifier(&w, admit(&w.ours_id)), &w.ours).unwrap();
            server.cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
            server.alpn_protocols.clear();
            let client = if tls12 {
                tls12_only(&w, admit(&w.ours_id), &w.ours)
            } else {
                client_config(verifier(&w, admit(&w.ours_id)), &w.ours).unwrap()
            };
            let (c, _) = handshake(client, server);
            let err = c.expect_err("a signature under the wrong key must fail");
            // Same key type: the signature is checked and fails. RSA key under a P-256
            // certificate: no algorithm of the scheme fits the certificate's key.
            let expected = if same_type {
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                )
            } else {
                matches!(&err, rustls::Error::General(m) if m.contains("does not fit"))
            };
            assert!(expected, "tls12={tls12} same_type={same_type}: {err:?}");
        }
    }
}
