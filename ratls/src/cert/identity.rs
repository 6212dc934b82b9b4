//! Our own RA-TLS identity: a fresh key, a quote committing to it, a self-signed certificate.
//!
//! Guarantees: a minted certificate is in Occlum's form (raw quote in `1.2.840.113741.1`,
//! `report_data = SHA-256(SPKI DER) ‖ 0³²`) and passes [`super::extract_bound`] before it is
//! returned; the PKCS#8 private key we hold is zeroized on drop and never printed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256, PublicKeyData as _, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

use super::{CertError, EvidenceFormat, MAX_CERT_LEN, extract_bound};

/// Why our own RA-TLS identity could not be minted or loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// The requested validity is zero or longer than [`MAX_VALIDITY`].
    Validity { requested_secs: u64, max_secs: u64 },
    /// `now` plus the validity (or minus [`CLOCK_SKEW_ALLOWANCE`]) is not a representable date.
    ValidityOutOfRange,
    /// The system random generator gave no serial number.
    Randomness,
    /// rcgen could not generate the key pair.
    KeyGeneration(rcgen::Error),
    /// rcgen could not self-sign the certificate.
    SelfSigning(rcgen::Error),
    /// The quote source failed.
    QuoteSource(quote_source::QuoteError),
    /// The minted or loaded certificate is not one a verifier accepts.
    Certificate(CertError),
    /// The minted certificate does not carry the quote it was made with.
    QuoteNotCarried,
    /// A PEM input is malformed.
    Pem { what: &'static str, detail: String },
    /// The private key does not belong to the certificate.
    KeyMismatch,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Validity {
                requested_secs,
                max_secs,
            } => write!(
                f,
                "certificate minting failed: validity of {requested_secs}s is outside 1s..={max_secs}s"
            ),
            Self::ValidityOutOfRange => {
                write!(
                    f,
                    "certificate minting failed: validity period out of range"
                )
            }
            Self::Randomness => write!(
                f,
                "certificate minting failed: no randomness for the serial number"
            ),
            Self::KeyGeneration(e) => write!(f, "certificate minting failed: key generation: {e}"),
            Self::SelfSigning(e) => write!(f, "certificate minting failed: self-signing: {e}"),
            Self::QuoteSource(e) => write!(f, "quote for a new certificate failed: {e}"),
            // The verifier's own words: the same text a peer would see.
            Self::Certificate(e) => write!(f, "{e}"),
            Self::QuoteNotCarried => write!(
                f,
                "certificate minting failed: minted certificate does not carry its quote"
            ),
            Self::Pem { what, detail } => write!(f, "{what} pem unreadable: {detail}"),
            Self::KeyMismatch => write!(
                f,
                "private key does not match the certificate: public keys differ"
            ),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::KeyGeneration(e) | Self::SelfSigning(e) => Some(e),
            Self::QuoteSource(e) => Some(e),
            Self::Certificate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CertError> for IdentityError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e)
    }
}

/// How long a minted certificate is valid by default: 24 hours.
///
/// The quote is evaluated against current collateral at every handshake, so a longer lifetime
/// would not extend trust in the platform; what the bound limits is how long a leaked key and
/// certificate (a debug enclave's memory, a core file) can impersonate the enclave. Long-running
/// servers re-mint before [`RaTlsIdentity::not_after`].
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest validity [`RaTlsIdentity::mint_valid_for`] accepts: 398 days, the CA/Browser
/// Forum ceiling for TLS server certificates.
pub const MAX_VALIDITY: Duration = Duration::from_secs(398 * 24 * 60 * 60);

/// How far `notBefore` is backdated, so peers whose clocks lag ours accept a fresh certificate.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60 * 60);

/// Subject and issuer common name of minted certificates.
pub const COMMON_NAME: &str = "Occlum RA-TLS";

/// Largest PEM text accepted by [`RaTlsIdentity::from_pem`], per input.
const MAX_PEM_LEN: usize = 2 * MAX_CERT_LEN;

/// Occlum's quote extension OID as arcs, for rcgen.
const OCCLUM_QUOTE_ARCS: &[u64] = &[1, 2, 840, 113741, 1];

/// A self-signed RA-TLS certificate and its private key.
pub struct RaTlsIdentity {
    cert_der: Vec<u8>,
    key_pkcs8: Zeroizing<Vec<u8>>,
    quote: Vec<u8>,
    not_after: SystemTime,
}

impl RaTlsIdentity {
    /// Mints a new identity valid from now for [`DEFAULT_VALIDITY`].
    pub fn mint(source: &dyn quote_source::QuoteSource) -> Result<Self, IdentityError> {
        Self::mint_valid_for(source, SystemTime::now(), DEFAULT_VALIDITY)
    }

    /// Mints a new identity valid from `now - CLOCK_SKEW_ALLOWANCE` to `now + validity`.
    ///
    /// Generates an ECDSA P-256 key, asks `source` for a quote over
    /// `SHA-256(SPKI DER) ‖ 0³²`, and self-signs a certificate carrying the raw quote in the
    /// non-critical extension `1.2.840.113741.1`.
    pub fn mint_valid_for(
        source: &dyn quote_source::QuoteSource,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Self, IdentityError> {
        Self::mint_stapled(source, now, validity, |_| None)
    }

    /// Like [`Self::mint_valid_for`], also carrying `staple(quote)` (when it returns bytes) in
    /// the non-critical stapled-collateral extension ([`crate::collateral::staple`]): the
    /// collateral of the platform that made `quote`, encoded with
    /// [`crate::collateral::staple::encode`].
    pub fn mint_stapled(
        source: &dyn quote_source::QuoteSource,
        now: SystemTime,
        validity: Duration,
        staple: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Self, IdentityError> {
        if validity.is_zero() || validity > MAX_VALIDITY {
            return Err(IdentityError::Validity {
                requested_secs: validity.as_secs(),
                max_secs: MAX_VALIDITY.as_secs(),
            });
        }
        let mut key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IdentityError::KeyGeneration)?;
        let key_pkcs8 = Zeroizing::new(key.serialized_der().to_vec());

        let mut report_data = [0u8; 64];
        let (committed, _) = report_data.split_at_mut(32);
        committed.copy_from_slice(&Sha256::digest(key.subject_public_key_info()));
        let quote = source
            .quote(&report_data)
            .map_err(IdentityError::QuoteSource)?;

        let staple = staple(&quote);
        let params = certificate_params(now, validity, quote.clone(), staple)?;
        let signed = params.self_signed(&key).map_err(IdentityError::SelfSigning);
        key.zeroize();
        let cert_der = signed?.der().to_vec();

        // The certificate must be exactly what a verifier accepts; checking costs one parse and
        // one signature verification.
        let evidence = extract_bound(&cert_der)?;
        if evidence.format != EvidenceFormat::Occlum || evidence.quote_bytes != quote {
            return Err(IdentityError::QuoteNotCarried);
        }
        let not_after = unix_time(evidence.not_after_unix);
        Ok(Self {
            cert_der,
            key_pkcs8,
            quote,
            not_after,
        })
    }

    /// Loads an identity written to disk ([`Self::cert_pem`] and [`Self::key_pem`]).
    ///
    /// The certificate must pass [`extract_bound`] (any evidence format) and the PKCS#8 key
    /// (`PRIVATE KEY` PEM) must belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let pem = |what| move |detail| IdentityError::Pem { what, detail };
        let cert_der = pem_decode("CERTIFICATE", cert_pem).map_err(pem("certificate"))?;
        let key_pkcs8 = pem_decode("PRIVATE KEY", key_pem).map_err(pem("private key"))?;
        let evidence = extract_bound(&cert_der)?;
        let mut key = KeyPair::try_from(key_pkcs8.as_slice())
            .map_err(|e| pem("private key")(e.to_string()))?;
        let matches = key.subject_public_key_info() == evidence.spki_der;
        key.zeroize();
        if !matches {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(Self {
            cert_der: cert_der.to_vec(),
            key_pkcs8,
            quote: evidence.quote_bytes,
            not_after: unix_time(evidence.not_after_unix),
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM (`CERTIFICATE`).
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der).to_string()
    }

    /// The private key, PKCS#8 DER. Secret: do not log or persist unprotected.
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The private key, PKCS#8 PEM (`PRIVATE KEY`), zeroized when dropped.
    pub fn key_pem(&self) -> Zeroizing<String> {
        pem_encode("PRIVATE KEY", &self.key_pkcs8)
    }

    /// The raw quote the certificate carries.
    pub fn quote(&self) -> &[u8] {
        &self.quote
    }

    /// When the certificate expires; re-mint before then.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate and key for a rustls config. The key copy belongs to the caller (rustls
    /// keeps its own); `PrivateKeyDer` implements `Zeroize` but does not zeroize on drop.
    pub fn rustls_pair(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (
            CertificateDer::from(self.cert_der.clone()),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec())),
        )
    }
}

impl fmt::Debug for RaTlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsIdentity")
            .field("cert_sha256", &hex::encode(Sha256::digest(&self.cert_der)))
            .field("quote_len", &self.quote.len())
            .field("not_after", &self.not_after)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn certificate_params(
    now: SystemTime,
    validity: Duration,
    quote: Vec<u8>,
    staple: Option<Vec<u8>>,
) -> Result<CertificateParams, IdentityError> {
    let time_err = || IdentityError::ValidityOutOfRange;
    let now = time::OffsetDateTime::from(now)
        .replace_nanosecond(0)
        .map_err(|_| time_err())?;
    let skew = time::Duration::try_from(CLOCK_SKEW_ALLOWANCE).map_err(|_| time_err())?;
    let validity = time::Duration::try_from(validity).map_err(|_| time_err())?;

    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| IdentityError::Randomness)?;
    // A positive INTEGER (RFC 5280 section 4.1.2.2): clear the sign bit, keep it non-zero.
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }

    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, COMMON_NAME);
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.not_before = now.checked_sub(skew).ok_or_else(time_err)?;
    params.not_after = now.checked_add(validity).ok_or_else(time_err)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.custom_extensions = vec![CustomExtension::from_oid_content(OCCLUM_QUOTE_ARCS, quote)];
    if let Some(staple) = staple {
        // Non-critical (rcgen's default): peers that do not know it ignore it.
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                crate::collateral::staple::STAPLE_OID_ARCS,
                staple,
            ));
    }
    Ok(params)
}

fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// PEM (RFC 7468) of `der` under `label` (`CERTIFICATE`, `PRIVATE KEY`, `X509 CRL`): 64-column
/// base64 and `\n` endings, as Intel's PCS formats chains; built in one allocation so no partial
/// copy of a secret is left behind by a reallocation. The workspace's one PEM encoder (sgx-sim
/// uses it too); decoding goes through [`rustls_pki_types::pem`] or this module's bounded,
/// zeroizing decoder for key material.
pub fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let begin = format!("-----BEGIN {label}-----\n");
    let end = format!("-----END {label}-----\n");
    let lines = der.len().div_ceil(48);
    let body = der.len().div_ceil(3) * 4 + lines;
    let mut out = Zeroizing::new(String::with_capacity(begin.len() + body + end.len()));
    out.push_str(&begin);
    for chunk in der.chunks(48) {
        BASE64.encode_string(chunk, &mut out);
        out.push('\n');
    }
    out.push_str(&end);
    out
}

/// Decodes the first `label` block of a PEM text (at most `2 * MAX_CERT_LEN` bytes). The error
/// is the detail of a `Pem` variant, which the caller names ([`CertError`], [`IdentityError`]).
pub(super) fn pem_decode(label: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    if text.len() > MAX_PEM_LEN {
        return Err(format!("{} bytes, at most {MAX_PEM_LEN}", text.len()));
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(begin.as_str())
        .and_then(|(_, rest)| rest.split_once(end.as_str()))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("no {begin} ... {end} block"))?;
    // Bytes, not chars: base64 is ASCII, so any other byte fails the decode below anyway.
    // Lines are copied whole unless they hold inner whitespace (PEM writers never put it there,
    // RFC 7468's lax parsers accept it).
    let mut compact = Zeroizing::new(Vec::with_capacity(body.len()));
    for line in body.as_bytes().split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.iter().any(u8::is_ascii_whitespace) {
            compact.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
        } else {
            compact.extend_from_slice(line);
        }
    }
    let mut der = Zeroizing::new(Vec::with_capacity(compact.len() / 4 * 3 + 3));
    BASE64
        .decode_vec(compact.as_slice(), &mut der)
        .map_err(|e| format!("base64: {e}"))?;
    Ok(der)
}
