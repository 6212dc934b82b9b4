//! rustls certificate verifiers that run the attestation pipeline inside the TLS handshake.
//!
//! RA-TLS peers present self-signed certificates: trust comes from the quote inside, not from a
//! CA, and the server name is irrelevant. So the verifiers below ignore names and chains and
//! call [`Verifier::verify_certificate`] on the end-entity certificate; the handshake itself
//! proves the peer holds the certificate's private key (TLS 1.3 CertificateVerify, or TLS 1.2
//! for Occlum's C++ peers). After the handshake, [`RaTlsServerVerifier::peer`] and
//! [`RaTlsClientVerifier::peer`] return the cached [`VerifiedPeer`] for the peer's certificate,
//! and [`HandshakePeers::take`] (from [`attested_client_config`]) hands over exactly what the
//! handshake verified, with no second look at the clock: a verification in the collateral's grace
//! period, or in the last second of a validity window, is still the verification that happened.
//!
//! Neither side resumes sessions: every connection presents, and has verified, its evidence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::cert::RaTlsIdentity;
use crate::verify::{VerifiedPeer, Verifier, VerifyError};

/// Verifies a server's RA-TLS certificate; for clients (init) connecting to an attested server.
#[derive(Clone)]
pub struct RaTlsServerVerifier {
    inner: Checker,
}

/// Verifies a client's RA-TLS certificate; for rustls servers that require attested clients.
#[derive(Clone)]
pub struct RaTlsClientVerifier {
    inner: Checker,
}

#[derive(Clone)]
struct Checker {
    verifier: Arc<Verifier>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Where handshake results go, when someone asked for them ([`attested_client_config`]).
    peers: Option<HandshakePeers>,
}

/// The [`VerifiedPeer`]s handshakes produced, by SHA-256 of the certificate, until taken.
#[derive(Clone, Default)]
pub struct HandshakePeers {
    slots: Arc<Mutex<HashMap<[u8; 32], VerifiedPeer>>>,
}

/// At most this many handshake results wait to be taken (a client makes one connection at a
/// time; the bound only keeps a misuse from growing without limit).
const MAX_PENDING_PEERS: usize = 64;

impl HandshakePeers {
    /// The peer a handshake verified with `cert_der` as the server's end-entity certificate,
    /// removed from the slots. `None` if no handshake verified that certificate.
    pub fn take(&self, cert_der: &[u8]) -> Option<VerifiedPeer> {
        lock(&self.slots).remove(&digest(cert_der))
    }

    fn put(&self, cert_der: &[u8], peer: VerifiedPeer) {
        let mut slots = lock(&self.slots);
        if slots.len() >= MAX_PENDING_PEERS {
            slots.clear();
        }
        slots.insert(digest(cert_der), peer);
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One insert or remove per update: a poisoned map is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RaTlsServerVerifier {
    /// Runs `verifier`'s pipeline on every server certificate.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            inner: Checker::new(verifier),
        }
    }

    /// The verified peer for `cert_der` (the server's end-entity certificate) at `now`.
    pub fn peer(&self, cert_der: &[u8], now: u64) -> Option<VerifiedPeer> {
        self.inner.verifier.cached(cert_der, now)
    }
}

impl RaTlsClientVerifier {
    /// Runs `verifier`'s pipeline on every client certificate; clients must present one.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            inner: Checker::new(verifier),
        }
    }

    /// The verified peer for `cert_der` (the client's end-entity certificate) at `now`.
    pub fn peer(&self, cert_der: &[u8], now: u64) -> Option<VerifiedPeer> {
        self.inner.verifier.cached(cert_der, now)
    }
}

/// Recovers the attestation failure from a rustls handshake error, if that was the cause.
pub fn attestation_error(error: &rustls::Error) -> Option<&VerifyError> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<VerifyError>()
        }
        _ => None,
    }
}

/// A TLS 1.3/1.2 client configuration (ring provider) that attests the server with `verifier`
/// and presents `identity` as its own RA-TLS certificate.
pub fn client_config(
    verifier: Arc<Verifier>,
    identity: &RaTlsIdentity,
) -> Result<rustls::ClientConfig, rustls::Error> {
    client_config_with(RaTlsServerVerifier::new(verifier), identity)
}

/// [`client_config`], plus the [`HandshakePeers`] its handshakes deliver their verified server
/// to: take it after connecting, instead of looking the certificate up in the verifier's cache
/// (whose entries expire with the collateral).
pub fn attested_client_config(
    verifier: Arc<Verifier>,
    identity: &RaTlsIdentity,
) -> Result<(rustls::ClientConfig, HandshakePeers), rustls::Error> {
    let peers = HandshakePeers::default();
    let mut server_verifier = RaTlsServerVerifier::new(verifier);
    server_verifier.inner.peers = Some(peers.clone());
    Ok((client_config_with(server_verifier, identity)?, peers))
}

/// [`attested_client_config`] for a client that authenticates with an ordinary certificate
/// and key instead of an RA-TLS identity (the KMS's operators, whose keys the KMS pins): the
/// server is still attested with `verifier` before anything is sent.
pub fn attested_client_config_with_key(
    verifier: Arc<Verifier>,
    cert: CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<(rustls::ClientConfig, HandshakePeers), rustls::Error> {
    let peers = HandshakePeers::default();
    let mut server_verifier = RaTlsServerVerifier::new(verifier);
    server_verifier.inner.peers = Some(peers.clone());
    Ok((client_config_for(server_verifier, cert, key)?, peers))
}

fn client_config_with(
    server_verifier: RaTlsServerVerifier,
    identity: &RaTlsIdentity,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let (cert, key) = identity.rustls_pair();
    client_config_for(server_verifier, cert, key)
}

fn client_config_for(
    server_verifier: RaTlsServerVerifier,
    cert: CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(server_verifier))
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Every connection attests the server afresh: a resumed TLS 1.3 session would carry the
    // old peer's certificate without presenting its evidence again.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A TLS 1.3/1.2 server configuration (ring provider) that requires clients to attest with
/// `verifier` and presents `identity`.
pub fn server_config(
    verifier: Arc<Verifier>,
    identity: &RaTlsIdentity,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let (cert, key) = identity.rustls_pair();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(RaTlsClientVerifier::new(verifier)))
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // As on the client: a resumed session (TLS 1.3 ticket or 1.2 session ID) would admit the
    // client on its old certificate without its evidence being presented again.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.ticketer = Arc::new(NoTickets);
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// ring's provider with P-256 as the first key exchange group and TLS_AES_128_GCM_SHA256 as
/// the first TLS 1.3 suite. Nothing is removed: a peer that only speaks another group or
/// suite still connects.
///
/// - gRPC C-core servers (our KMS, Occlum's C++ server) offer only P-256 for key exchange
///   (`SSL_CTX_set_tmp_ecdh` with prime256v1 in its TSI layer). With rustls's default X25519
///   key share every handshake took a HelloRetryRequest: a second round trip and a second
///   ClientHello, on every boot.
/// - The signatures are P-256, a 128-bit security level, so AES-256 and SHA-384 add nothing to
///   the connection's strength; TLS_AES_128_GCM_SHA256 is RFC 8446's mandatory suite, and
///   SHA-256 has hardware support (SHA-NI) where SHA-384 has none. Every handshake hashes two
///   certificates that carry quotes, on both ends.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .kx_groups
        .sort_by_key(|group| group.name() != rustls::NamedGroup::secp256r1);
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// A ticketer that never issues a ticket (rustls's default server ticketer is the same; it is
/// spelled out so a changed default cannot turn resumption on).
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

impl Checker {
    fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            peers: None,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        match self.verifier.verify_certificate(end_entity, now.as_secs()) {
            Ok(peer) => {
                if let Some(peers) = &self.peers {
                    peers.put(end_entity, peer);
                }
                Ok(())
            }
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(e)),
            ))),
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for RaTlsServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .check(end_entity, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for RaTlsClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .check(end_entity, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}

impl std::fmt::Debug for RaTlsServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RaTlsServerVerifier({})",
            self.inner.verifier.trust_anchor().describe()
        )
    }
}

impl std::fmt::Debug for RaTlsClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RaTlsClientVerifier({})",
            self.inner.verifier.trust_anchor().describe()
        )
    }
}
