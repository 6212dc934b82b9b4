//! Switches no production client may use, named for the risk as rustls names its own: a
//! server certificate verifier that accepts every certificate. For test and bench clients that
//! play an impostor or an attacker against our servers, or that test a server's side of the
//! handshake, where who the server is does not matter; the servers under test still verify
//! their clients.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts any server certificate; checks the handshake signature under it only if made with
/// [`AnyServerCert::checking_signatures`].
#[derive(Debug)]
pub struct AnyServerCert {
    signatures: Option<Arc<CryptoProvider>>,
}

impl AnyServerCert {
    /// No certificate check and no signature check (ring's schemes offered).
    pub fn accepting_any_signature() -> Self {
        Self { signatures: None }
    }

    /// No certificate check, but the server must sign the handshake with the key of the
    /// certificate it presents (verified with `provider`'s algorithms).
    pub fn checking_signatures(provider: Arc<CryptoProvider>) -> Self {
        Self {
            signatures: Some(provider),
        }
    }
}

impl AnyServerCert {
    /// Runs `verify` with the provider's algorithms, or accepts if signatures go unchecked.
    fn check(
        &self,
        verify: impl FnOnce(
            &WebPkiSupportedAlgorithms,
        ) -> Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.signatures {
            Some(p) => verify(&p.signature_verification_algorithms),
            None => Ok(HandshakeSignatureValid::assertion()),
        }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check(|algs| verify_tls12_signature(message, cert, dss, algs))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check(|algs| verify_tls13_signature(message, cert, dss, algs))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.signatures {
            Some(p) => p.signature_verification_algorithms.supported_schemes(),
            None => rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}
