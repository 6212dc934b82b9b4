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
    pub fn mint(source: &dyn occlum_dcap::QuoteSource) -> Result<Self, CertError> {
        Self::mint_valid_for(source, SystemTime::now(), DEFAULT_VALIDITY)
    }

    /// Mints a new identity valid from `now - CLOCK_SKEW_ALLOWANCE` to `now + validity`.
    ///
    /// Generates an ECDSA P-256 key, asks `source` for a quote over
    /// `SHA-256(SPKI DER) ‖ 0³²`, and self-signs a certificate carrying the raw quote in the
    /// non-critical extension `1.2.840.113741.1`.
    pub fn mint_valid_for(
        source: &dyn occlum_dcap::QuoteSource,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Self, CertError> {
        Self::mint_stapled(source, now, validity, |_| None)
    }

    /// Like [`Self::mint_valid_for`], also carrying `staple(quote)` (when it returns bytes) in
    /// the non-critical stapled-collateral extension ([`crate::collateral::staple`]): the
    /// collateral of the platform that made `quote`, encoded with
    /// [`crate::collateral::staple::encode`].
    pub fn mint_stapled(
        source: &dyn occlum_dcap::QuoteSource,
        now: SystemTime,
        validity: Duration,
        staple: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Self, CertError> {
        if validity.is_zero() || validity > MAX_VALIDITY {
            return Err(CertError::Mint {
                detail: format!(
                    "validity of {}s is outside 1s..={}s",
                    validity.as_secs(),
                    MAX_VALIDITY.as_secs()
                ),
            });
        }
        let mint_err = |what: &str, e: rcgen::Error| CertError::Mint {
            detail: format!("{what}: {e}"),
        };
        let mut key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| mint_err("key generation", e))?;
        let key_pkcs8 = Zeroizing::new(key.serialized_der().to_vec());

        let mut report_data = [0u8; 64];
        let (committed, _) = report_data.split_at_mut(32);
        committed.copy_from_slice(&Sha256::digest(key.subject_public_key_info()));
        let quote = source.quote(&report_data).map_err(CertError::QuoteSource)?;

        let staple = staple(&quote);
        let params = certificate_params(now, validity, quote.clone(), staple)?;
        let signed = params
            .self_signed(&key)
            .map_err(|e| mint_err("self-signing", e));
        key.zeroize();
        let cert_der = signed?.der().to_vec();

        // The certificate must be exactly what a verifier accepts; checking costs one parse and
        // one signature verification.
        let evidence = extract_bound(&cert_der)?;
        if evidence.format != EvidenceFormat::Occlum || evidence.quote_bytes != quote {
            return Err(CertError::Mint {
                detail: "minted certificate does not carry its quote".into(),
            });
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
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let cert_der = pem_decode("certificate", "CERTIFICATE", cert_pem)?;
        let key_pkcs8 = pem_decode("private key", "PRIVATE KEY", key_pem)?;
        let evidence = extract_bound(&cert_der)?;
        let mut key = KeyPair::try_from(key_pkcs8.as_slice()).map_err(|e| CertError::Pem {
            what: "private key",
            detail: e.to_string(),
        })?;
        let matches = key.subject_public_key_info() == evidence.spki_der;
        key.zeroize();
        if !matches {
            return Err(CertError::KeyMismatch);
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
) -> Result<CertificateParams, CertError> {
    let time_err = || CertError::Mint {
        detail: "validity period out of range".into(),
    };
    let now = time::OffsetDateTime::from(now)
        .replace_nanosecond(0)
        .map_err(|_| time_err())?;
    let skew = time::Duration::try_from(CLOCK_SKEW_ALLOWANCE).map_err(|_| time_err())?;
    let validity = time::Duration::try_from(validity).map_err(|_| time_err())?;

    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| CertError::Mint {
            detail: "no randomness for the serial number".into(),
        })?;
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

/// PEM (RFC 7468) with 64-column base64, built in one allocation so no partial copy of a secret
/// is left behind by a reallocation.
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
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

/// Decodes the first `label` block of a PEM text (at most `2 * MAX_CERT_LEN` bytes).
pub(super) fn pem_decode(
    what: &'static str,
    label: &str,
    text: &str,
) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let fail = |detail: String| CertError::Pem { what, detail };
    if text.len() > MAX_PEM_LEN {
        return Err(fail(format!("{} bytes, at most {MAX_PEM_LEN}", text.len())));
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(begin.as_str())
        .and_then(|(_, rest)| rest.split_once(end.as_str()))
        .map(|(body, _)| body)
        .ok_or_else(|| fail(format!("no {begin} ... {end} block")))?;
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
        .map_err(|e| fail(format!("base64: {e}")))?;
    Ok(der)
}
