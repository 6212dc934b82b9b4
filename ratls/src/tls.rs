//! rustls certificate verifiers that run the attestation pipeline inside the TLS handshake.
//!
//! RA-TLS peers present self-signed certificates: trust comes from the quote inside, not from a
//! CA, and the server name is irrelevant. So the verifiers below ignore names and chains and
//! call [`Verifier::verify_certificate`] on the end-entity certificate; the handshake itself
//! proves the peer holds the certificate's private key (TLS 1.3 CertificateVerify, or TLS 1.2
//! for Occlum's C++ peers).
//!
//! Handshake signatures are checked under the public key of OUR parse of the certificate
//! ([`crate::cert::public_key_info`]), not through webpki's end-entity parser: Occlum's C++
//! RA-TLS certificates are X.509 v1 that still carry extensions (`occlum_get_key_cert` never
//! calls `X509_set_version`), which webpki refuses as `UnsupportedCertVersion`. The signature
//! schemes and their algorithms are exactly rustls's ring provider's (its
//! `signature_verification_algorithms`, with rustls's own rules: TLS 1.3 takes a scheme's first
//! algorithm and only schemes valid in TLS 1.3, TLS 1.2 tries each candidate whose key type
//! matches), so a v3 certificate is held to what rustls would check. The signature check runs
//! after the attestation pipeline accepted the same certificate. After the handshake, [`RaTlsServerVerifier::peer`] and
//! [`RaTlsClientVerifier::peer`] return the cached [`VerifiedPeer`] for the peer's certificate,
//! and [`HandshakePeers::take`] (from [`attested_client_config`]) hands over exactly what the
//! handshake verified, with no second look at the clock: a verification in the collateral's grace
//! period, or in the last second of a validity window, is still the verification that happened.
//!
//! Neither side resumes sessions: every connection presents, and has verified, its evidence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerMisbehaved,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};

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

/// For servers that attest clients AFTER the handshake, as gRPC core does for the KMS
/// (`RequestClientCertificateButDontVerify`, then the service's pipeline on the certificate):
/// asks for a client certificate, lets a client without one through (the caller refuses it,
/// naming the problem), and checks only that a client holds the key of the certificate it
/// presents (the handshake signature, under the key of our parse, so Occlum's X.509 v1
/// certificates pass). It does NOT attest: a connection it admits carries an unverified
/// certificate, which the caller must put through [`Verifier`] before it trusts anything.
#[derive(Clone)]
pub struct PossessionOnlyClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl Default for PossessionOnlyClientVerifier {
    fn default() -> Self {
        Self {
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
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
    let provider = provider();
    let certified = certified_key(identity, &provider)?;
    client_config_certified(server_verifier, provider, certified)
}

fn client_config_for(
    server_verifier: RaTlsServerVerifier,
    cert: CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    // An ordinary (operator's) certificate: rustls's own key-match check applies.
    let certified = Arc::new(CertifiedKey::from_der(vec![cert], key, &provider)?);
    client_config_certified(server_verifier, provider, certified)
}

fn client_config_certified(
    server_verifier: RaTlsServerVerifier,
    provider: Arc<rustls::crypto::CryptoProvider>,
    certified: Arc<CertifiedKey>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(server_verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
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
    let provider = provider();
    let certified = certified_key(identity, &provider)?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(RaTlsClientVerifier::new(verifier)))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Ok(no_resumption(config))
}

/// ALPN `h2` and no resumption. As on the client: a resumed session (TLS 1.3 ticket or 1.2
/// session ID) would admit the client on its old certificate without its evidence being
/// presented again.
fn no_resumption(mut config: rustls::ServerConfig) -> rustls::ServerConfig {
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.ticketer = Arc::new(NoTickets);
    config.send_tls13_tickets = 0;
    config
}

/// A TLS 1.3/1.2 server configuration (ring provider) that presents `identity` and leaves
/// the client's attestation to the caller ([`PossessionOnlyClientVerifier`]): for a server
/// that hands the connection to a pipeline that attests the certificate itself. No session
/// resumption, ALPN `h2`, as [`server_config`].
pub fn deferred_server_config(
    identity: &RaTlsIdentity,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let certified = certified_key(identity, &provider)?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(PossessionOnlyClientVerifier::default()))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Ok(no_resumption(config))
}

/// `identity`'s certificate and signing key for rustls, without rustls's key-match check
/// (`CertifiedKey::from_der`), which parses the certificate with webpki and so refuses the
/// X.509 v1 form Occlum's peers use. The check is not lost: [`RaTlsIdentity`] is only built by
/// minting from its own key or by `RaTlsIdentity::from_pem`, which compares the key's SPKI
/// with the certificate's.
pub fn certified_key(
    identity: &RaTlsIdentity,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let (cert, key) = identity.rustls_pair();
    let signer = provider.key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signer)))
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
        self.handshake_signature(message, cert, dss, false)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake_signature(message, cert, dss, true)
    }

    fn handshake_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.algorithms, message, cert, dss, tls13)
    }
}

/// Verifies a handshake signature under the key of our parse of `cert` (see the module
/// docs), with the candidates rustls's provider maps `dss.scheme` to.
fn handshake_signature(
    algorithms: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let unadvertised =
        || rustls::Error::from(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme);
    if tls13 && !scheme_in_tls13(dss.scheme) {
        return Err(unadvertised());
    }
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(unadvertised)?;
    // TLS 1.3 schemes name the curve: only the first algorithm applies (as in rustls).
    let candidates = if tls13 {
        candidates.get(..1).unwrap_or_default()
    } else {
        candidates
    };
    let spki = crate::cert::public_key_info(cert).map_err(|e| {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            VerifyError::Evidence(e),
        ))))
    })?;
    let spki = SubjectPublicKeyInfoDer::from(spki.as_slice());
    let key = dcap_qvl_webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    for alg in candidates {
        match key.verify_signature(*alg, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            // A TLS 1.2 ECDSA scheme maps to both curves: try the one that fits the key.
            Err(dcap_qvl_webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {}
            Err(dcap_qvl_webpki::Error::InvalidSignatureForPublicKey) => {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature,
                ));
            }
            Err(e) => {
                return Err(rustls::Error::General(format!(
                    "handshake signature ({:?}): {e:?}",
                    dss.scheme
                )));
            }
        }
    }
    Err(rustls::Error::General(format!(
        "handshake signature scheme {:?} does not fit the certificate's key",
        dss.scheme
    )))
}

/// Whether RFC 8446 section 4.2.3 allows `scheme` in TLS 1.3 CertificateVerify (rustls's own
/// list, which it does not export): no PKCS#1 v1.5, no SHA-1, ECDSA with the curve named.
fn scheme_in_tls13(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::ECDSA_NISTP256_SHA256
            | SignatureScheme::ECDSA_NISTP384_SHA384
            | SignatureScheme::ECDSA_NISTP521_SHA512
            | SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PSS_SHA384
            | SignatureScheme::RSA_PSS_SHA512
            | SignatureScheme::ED25519
            | SignatureScheme::ED448
    )
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

impl ClientCertVerifier for PossessionOnlyClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    /// Accepted unverified: the caller attests it (see the type's documentation). Its key is
    /// still checked against the handshake signature below.
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.algorithms, message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.algorithms, message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl std::fmt::Debug for PossessionOnlyClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PossessionOnlyClientVerifier")
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
