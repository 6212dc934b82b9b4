//! Proof of possession, both directions: a genuine RA-TLS certificate (its quote verifies and
//! binds its public key) presented by someone without its private key is refused, by the KMS
//! (a client) and by init (a server). The TLS handshake's CertificateVerify is what proves
//! possession; these tests sign it with another key and expect the peer to hang up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::{Deployment, tree};
use ratls::cert::RaTlsIdentity;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sgx_sim::{Identity, SimPlatform, SimQuoteSource};
// The impostor client does not care who the server is.
use test_kit::danger::AnyServerCert;

/// A genuine RA-TLS certificate minted on the deployment's platform for `identity`.
fn genuine(d: &Deployment, identity: &std::path::Path) -> RaTlsIdentity {
    let platform = SimPlatform::open(&d.sim.dir).unwrap();
    let identity = Identity::load(identity).unwrap();
    RaTlsIdentity::mint(&SimQuoteSource::new(platform, identity)).unwrap()
}

/// `cert` paired with a fresh P-256 key that is not its own.
fn with_wrong_key(cert: &RaTlsIdentity) -> Arc<CertifiedKey> {
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(other.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key).unwrap();
    // CertifiedKey::new does not check that the key matches: exactly the impostor's setup.
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.cert_der().to_vec())],
        signer,
    ))
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[test]
fn the_kms_refuses_a_genuine_client_certificate_presented_without_its_key() {
    let d = Deployment::new(&[("flask_key", "/etc/flask.key", b"key\n")]);
    let kms = d.start_kms("127.0.0.1:0");
    let cert = genuine(&d, &d.app_identity);

    // Control: with its own key the same certificate gets the secret.
    let honest = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::accepting_any_signature()))
        .with_client_auth_cert(vec![cert.rustls_pair().0], cert.rustls_pair().1)
        .unwrap();
    let cfg = grpc_unary::ClientConfig::builder()
        .call_timeout(Duration::from_secs(10))
        .build();
    let name = ServerName::try_from("kms").unwrap();
    let request = grsecret::client::encode_string_field1("flask_key");
    let mut channel =
        grpc_unary::Channel::connect(&kms.addr, name.clone(), Arc::new(honest), &cfg).unwrap();
    channel
        .unary("/ratls.GrSecret/GetSecret", &request)
        .expect("the honest client gets its secret");

    let impostor = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::accepting_any_signature()))
        .with_client_cert_resolver(Arc::new(Fixed(with_wrong_key(&cert))));
    let result = grpc_unary::Channel::connect(&kms.addr, name, Arc::new(impostor), &cfg)
        .and_then(|mut channel| channel.unary("/ratls.GrSecret/GetSecret", &request));
    let error = result.expect_err("a certificate without its key must be refused");
    assert!(
        matches!(
            error,
            grpc_unary::Error::Tls { .. }
                | grpc_unary::Error::ConnectionClosed { .. }
                | grpc_unary::Error::Io { .. }
        ),
        "{error}"
    );
    let released = d.audit().iter().filter(|r| r["event"] == "release").count();
    assert_eq!(released, 1, "only the honest call released a secret");
}

#[test]
fn init_refuses_a_genuine_kms_certificate_presented_without_its_key() {
    let d = Deployment::new(&[("flask_key", "/etc/flask.key", b"key\n")]);
    let cert = genuine(&d, &d.kms_identity);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(with_wrong_key(&cert))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let mut handshakes = 0;
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut stream);
            let mut buf = [0u8; 1024];
            // The handshake completes on our side only if init accepted our CertificateVerify.
            if tls.read(&mut buf).is_ok() {
                handshakes += 1;
                let _ = tls.write_all(b"");
            }
        }
        handshakes
    });
    let out = d.run_init(&addr, &["--connect-deadline", "3"], &[]);
    assert_ne!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.to_ascii_lowercase().contains("signature")
            || out.stderr.to_ascii_lowercase().contains("handshake"),
        "{}",
        out.stderr
    );
    assert_eq!(server.join().unwrap(), 0, "init completed a handshake");
    assert!(
        !d.rootfs().exists(),
        "rootfs created: {:#?}",
        tree(d.tmp.path())
    );
}
