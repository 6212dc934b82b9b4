//! RA-TLS certificates: minting our own (Occlum form) and extracting and binding a peer's evidence.
//!
//! Guarantees: [`extract_bound`] returns [`Evidence`] only when the certificate parses strictly,
//! verifies under its own key, and EVERY quote it carries commits to that key under its format's
//! rule (and all quotes describe the same enclave). Parsing is bounded ([`MAX_CERT_LEN`]) and
//! never panics on peer input. Nothing here checks the quote's signature chain or the enclave's
//! measurements: that is the verifier's next step, which starts from [`Evidence::quote`].
//!
//! # Evidence formats
//!
//! | format | extension | value | binding |
//! |---|---|---|---|
//! | [`EvidenceFormat::Occlum`] | `1.2.840.113741.1` | raw quote | `report_data = SHA-256(SPKI) ‖ 0³²` |
//! | [`EvidenceFormat::TcgDice`] | `2.23.133.5.4.9` | CBOR `60000([quote, claims])` | `report_data = SHA-256(claims) ‖ 0³²`, claim `pubkey-hash = [alg, H(SPKI)]` |
//! | [`EvidenceFormat::GramineLegacy`] | `1.2.840.113741.1337.6` | raw quote | as Occlum |
//!
//! SPKI is the DER `SubjectPublicKeyInfo` exactly as it appears in the certificate. Gramine's
//! legacy extension is found under both encodings Gramine's own verifier matches: the OID it
//! actually emits (content bytes `06 09 2A 86 48 86 F8 4D 8A 39 06`, which decode as
//! `0.6.9.42.840.113741.1337.6` because Gramine put the OID's tag and length inside its value)
//! and the correctly encoded `1.2.840.113741.1337.6`.
//!
//! DICE evidence follows the CCC "Interoperable RA-TLS" documents (SGX/TDX evidence formats:
//! tag 60000 = Intel TEE quote, definite-length array of quote and serialized claims; claims a
//! map of text keys to byte strings; `pubkey-hash` a serialized `[hash-alg-id, hash]` with IANA
//! Named Information ids 1 = SHA-256, 7 = SHA-384, 8 = SHA-512). The spec fixes the claims hash
//! in `report_data` to SHA-256; all three CCC interop vectors carry zeros in bytes 32..64 and we
//! require that, as for the Occlum form. We require exactly one `pubkey-hash` claim (Gramine's
//! verifier accepts a claims map without one, which would bind nothing).
//!
//! # Several formats in one certificate
//!
//! Gramine emits both its legacy extension and DICE. When more than one evidence extension is
//! present, the primary one (whose quote the verifier checks against DCAP and policy) is chosen by
//! a fixed precedence, never by which one passes: DICE first (the interoperable standard; Gramine's
//! own verifier also prefers it), then Occlum, then Gramine legacy. The others are not ignored:
//! each must parse, bind to the same key, and describe the same enclave (every report-body field
//! except `report_data` equal), or the certificate is rejected. The same extension twice is a
//! parse error (RFC 5280 section 4.2). Other extensions that merely look like quotes (Intel's SGX
//! SDK also copies its quote into `1.2.840.113741.1.13.1`) are not evidence here and are ignored
//! unless critical.

use std::fmt;

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::quote::{Quote, QuoteError, ReportBody};

mod cbor;
mod identity;
mod parse;
mod signature;

pub use cbor::CborError;
pub use identity::{DEFAULT_VALIDITY, IdentityError, MAX_VALIDITY, RaTlsIdentity, pem_encode};
pub use parse::DiceError;

/// Largest certificate accepted, in DER bytes. Real RA-TLS certificates are 5 to 10 KiB; this
/// leaves room for three maximum-size quotes ([`crate::quote::MAX_QUOTE_LEN`]) and endorsements.
pub const MAX_CERT_LEN: usize = 256 * 1024;

/// Largest serialized DICE claims map accepted. Real ones are under 100 bytes.
pub const MAX_CLAIMS_LEN: usize = 16 * 1024;

/// Most entries accepted in a DICE claims map.
pub const MAX_CLAIMS: usize = 32;

/// Occlum's quote extension, `1.2.840.113741.1`, as the DER content bytes of the OID.
pub const OID_OCCLUM_QUOTE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01];
/// The TCG DICE tagged-evidence extension, `2.23.133.5.4.9`.
pub const OID_TCG_DICE_EVIDENCE: &[u8] = &[0x67, 0x81, 0x05, 0x05, 0x04, 0x09];
/// Gramine's legacy quote extension as Gramine emits it (decodes as `0.6.9.42.840.113741.1337.6`).
pub const OID_GRAMINE_LEGACY_WIRE: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x8a, 0x39, 0x06,
];
/// Gramine's legacy quote extension correctly encoded, `1.2.840.113741.1337.6`.
pub const OID_GRAMINE_LEGACY: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x8a, 0x39, 0x06];

/// CBOR tag of the CCC "Intel TEE quote" evidence.
pub const CBOR_TAG_TEE_QUOTE: u64 = 60000;

/// Where a certificate carries its evidence. Ordered by precedence (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvidenceFormat {
    /// TCG DICE tagged evidence (`2.23.133.5.4.9`) with CBOR tag 60000.
    TcgDice,
    /// Occlum's raw quote extension (`1.2.840.113741.1`).
    Occlum,
    /// Gramine's legacy raw quote extension (`1.2.840.113741.1337.6`, mis-encoded on the wire).
    GramineLegacy,
}

impl EvidenceFormat {
    /// The extension OID in dotted form, as the format intends it.
    pub fn oid(self) -> &'static str {
        match self {
            Self::TcgDice => "2.23.133.5.4.9",
            Self::Occlum => "1.2.840.113741.1",
            Self::GramineLegacy => "1.2.840.113741.1337.6",
        }
    }

    /// Which format an extension OID (its DER content bytes) belongs to, if any.
    pub fn from_oid_bytes(oid: &[u8]) -> Option<Self> {
        match oid {
            OID_TCG_DICE_EVIDENCE => Some(Self::TcgDice),
            OID_OCCLUM_QUOTE => Some(Self::Occlum),
            OID_GRAMINE_LEGACY_WIRE | OID_GRAMINE_LEGACY => Some(Self::GramineLegacy),
            _ => None,
        }
    }
}

impl fmt::Display for EvidenceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::TcgDice => "tcg-dice",
            Self::Occlum => "occlum",
            Self::GramineLegacy => "gramine-legacy",
        };
        write!(f, "{name} ({})", self.oid())
    }
}

/// The certificate's public key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (what we mint).
    EcdsaP256,
    /// ECDSA on NIST P-384 (Gramine, Intel SGX SDK).
    EcdsaP384,
    /// RSA (Occlum's C++ RA-TLS uses 2048 bits).
    Rsa { bits: usize },
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ecdsa p-256"),
            Self::EcdsaP384 => f.write_str("ecdsa p-384"),
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
        }
    }
}

/// Attestation evidence found in an RA-TLS certificate.
///
/// Built only by [`extract`] / [`extract_bound`]. Fields describe the primary evidence (see the
/// module docs for the precedence); [`Evidence::check_binding`] also checks every other evidence
/// extension the certificate carried.
#[derive(Clone)]
pub struct Evidence {
    /// Which extension the primary quote came from.
    pub format: EvidenceFormat,
    /// The primary quote, exactly as carried.
    pub quote_bytes: Vec<u8>,
    /// The primary quote, parsed (structure only; not yet DCAP-verified).
    pub quote: Quote,
    /// The certificate's DER `SubjectPublicKeyInfo`, the key the quote must commit to.
    pub spki_der: Vec<u8>,
    /// The certificate's key type.
    pub key_algorithm: KeyAlgorithm,
    /// Certificate `notBefore`, seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// Certificate `notAfter`, seconds since the Unix epoch.
    pub not_after_unix: i64,
    commitment: Commitment,
    others: Vec<Secondary>,
    staple: Option<Vec<u8>>,
}

/// Another evidence extension in the same certificate.
#[derive(Debug, Clone)]
struct Secondary {
    format: EvidenceFormat,
    quote: Quote,
    commitment: Commitment,
}

/// What a format's `report_data` commits to.
#[derive(Debug, Clone)]
enum Commitment {
    /// `report_data[0..32] = SHA-256(SPKI DER)`, `[32..64]` zero (Occlum, Gramine legacy).
    PublicKey,
    /// `report_data[0..32] = SHA-256(claims)`, `[32..64]` zero, and the claims' `pubkey-hash`
    /// equals the hash of the SPKI DER (TCG DICE).
    Claims {
        claims: Vec<u8>,
        pubkey_hash: PubkeyHash,
    },
}

/// The DICE `pubkey-hash` claim: `[hash-alg-id, hash]`.
#[derive(Debug, Clone)]
struct PubkeyHash {
    alg: HashAlg,
    value: Vec<u8>,
}

/// Hash algorithms of the IANA "Named Information Hash Algorithm Registry" that DICE claims use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_iana(id: u64) -> Option<Self> {
        match id {
            1 => Some(Self::Sha256),
            7 => Some(Self::Sha384),
            8 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// Parses a certificate and finds its evidence, without checking its signature or binding.
///
/// Use [`extract_bound`] unless you check both yourself.
pub fn extract(cert_der: &[u8]) -> Result<Evidence, CertError> {
    let cert = parse::certificate(cert_der)?;
    parse::evidence(&cert)
}

/// Checks that a certificate verifies under its own public key.
///
/// Only for self-signed RA-TLS certificates, whose signature proves possession of the key the
/// quote commits to — it says nothing about who issued the certificate. For that reason, and
/// only here, RSA PKCS#1 v1.5 with SHA-1 is accepted: Occlum's C++ RA-TLS peers sign that way.
/// Also accepted: ECDSA P-256/P-384 with SHA-256/SHA-384, RSA PKCS#1 v1.5 with
/// SHA-256/384/512, RSASSA-PSS with SHA-256/384/512 (MGF1 with the same hash, salt = hash
/// length). RSA keys must be 2048 to 8192 bits.
pub fn check_self_signature(cert_der: &[u8]) -> Result<(), CertError> {
    let cert = parse::certificate(cert_der)?;
    signature::check(&cert)
}

/// The DER `SubjectPublicKeyInfo` of a certificate, parsed strictly (any X.509 version, as
/// [`extract`] parses it) and of a key type this crate accepts: the key TLS handshake
/// signatures are checked under ([`crate::tls`]), for Occlum's v1 certificates too.
pub fn public_key_info(cert_der: &[u8]) -> Result<Vec<u8>, CertError> {
    let cert = parse::certificate(cert_der)?;
    parse::key_algorithm(cert.public_key())?;
    Ok(cert.public_key().raw.to_vec())
}

/// Decodes the first `CERTIFICATE` block of a PEM text, such as the peer certificate grpcio
/// reports under `x509_pem_cert`.
pub fn der_from_pem(pem: &str) -> Result<Vec<u8>, CertError> {
    identity::pem_decode("CERTIFICATE", pem)
        .map(|der| der.to_vec())
        .map_err(|detail| CertError::Pem {
            what: "certificate",
            detail,
        })
}

/// Extracts the evidence, checks the self-signature, and checks every quote's binding to the
/// certificate's key: the one call the verifier makes before DCAP verification and policy.
pub fn extract_bound(cert_der: &[u8]) -> Result<Evidence, CertError> {
    let cert = parse::certificate(cert_der)?;
    let evidence = parse::evidence(&cert)?;
    signature::check(&cert)?;
    evidence.check_binding()?;
    Ok(evidence)
}

impl Evidence {
    /// The raw value of the stapled-collateral extension, if the certificate carries one
    /// ([`crate::collateral::staple`]). Untrusted and not yet decoded.
    pub fn stapled_collateral(&self) -> Option<&[u8]> {
        self.staple.as_deref()
    }

    /// Checks that every quote in the certificate commits to the certificate's public key under
    /// its format's rule, and that all quotes describe the same enclave.
    pub fn check_binding(&self) -> Result<(), CertError> {
        bind(
            self.format,
            &self.quote.body,
            &self.commitment,
            &self.spki_der,
        )?;
        for other in &self.others {
            bind(
                other.format,
                &other.quote.body,
                &other.commitment,
                &self.spki_der,
            )?;
            agree(
                self.format,
                &self.quote.body,
                other.format,
                &other.quote.body,
            )?;
        }
        Ok(())
    }

    /// Checks `notBefore <= now <= notAfter` (seconds since the Unix epoch).
    pub fn check_validity(&self, now_unix: u64) -> Result<(), CertError> {
        let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
        if now < self.not_before_unix || now > self.not_after_unix {
            return Err(CertError::Validity {
                not_before: self.not_before_unix,
                not_after: self.not_after_unix,
                now: now_unix,
            });
        }
        Ok(())
    }

    /// The formats of the other evidence extensions in the certificate, in precedence order.
    pub fn additional_formats(&self) -> Vec<EvidenceFormat> {
        self.others.iter().map(|o| o.format).collect()
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("format", &self.format)
            .field("quote_len", &self.quote_bytes.len())
            .field("report_body", &self.quote.body)
            .field("key_algorithm", &self.key_algorithm)
            .field("spki_sha256", &hex::encode(Sha256::digest(&self.spki_der)))
            .field("additional_formats", &self.additional_formats())
            .finish_non_exhaustive()
    }
}

/// Applies one format's binding rule.
fn bind(
    format: EvidenceFormat,
    body: &ReportBody,
    commitment: &Commitment,
    spki_der: &[u8],
) -> Result<(), CertError> {
    let (committed, rest) = body.report_data.split_at(32);
    let fail = |rule, expected: &[u8], actual: &[u8]| CertError::Binding {
        format,
        rule,
        expected: hex::encode(expected),
        actual: hex::encode(actual),
    };
    match commitment {
        Commitment::PublicKey => {
            let want = Sha256::digest(spki_der);
            if committed != want.as_slice() {
                return Err(fail(
                    "report_data[0..32] = SHA-256(SPKI DER)",
                    &want,
                    committed,
                ));
            }
        }
        Commitment::Claims {
            claims,
            pubkey_hash,
        } => {
            let want = Sha256::digest(claims);
            if committed != want.as_slice() {
                return Err(fail(
                    "report_data[0..32] = SHA-256(claims)",
                    &want,
                    committed,
                ));
            }
            let want = pubkey_hash.alg.digest(spki_der);
            if pubkey_hash.value != want {
                let rule = match pubkey_hash.alg {
                    HashAlg::Sha256 => "claim pubkey-hash = SHA-256(SPKI DER)",
                    HashAlg::Sha384 => "claim pubkey-hash = SHA-384(SPKI DER)",
                    HashAlg::Sha512 => "claim pubkey-hash = SHA-512(SPKI DER)",
                };
                return Err(fail(rule, &want, &pubkey_hash.value));
            }
        }
    }
    if rest.iter().any(|b| *b != 0) {
        return Err(fail("report_data[32..64] = zero", &[0u8; 32], rest));
    }
    Ok(())
}

/// Requires a secondary quote to describe the same enclave as the primary one.
fn agree(
    primary: EvidenceFormat,
    a: &ReportBody,
    format: EvidenceFormat,
    b: &ReportBody,
) -> Result<(), CertError> {
    let fields: [(&'static str, &[u8], &[u8]); 12] = [
        ("cpu_svn", &a.cpu_svn, &b.cpu_svn),
        (
            "misc_select",
            &a.misc_select.to_le_bytes(),
            &b.misc_select.to_le_bytes(),
        ),
        ("isv_ext_prod_id", &a.isv_ext_prod_id, &b.isv_ext_prod_id),
        (
            "attributes.flags",
            &a.attributes_flags.to_le_bytes(),
            &b.attributes_flags.to_le_bytes(),
        ),
        (
            "attributes.xfrm",
            &a.attributes_xfrm.to_le_bytes(),
            &b.attributes_xfrm.to_le_bytes(),
        ),
        ("mr_enclave", &a.mr_enclave, &b.mr_enclave),
        ("mr_signer", &a.mr_signer, &b.mr_signer),
        ("config_id", &a.config_id, &b.config_id),
        (
            "isv_prod_id",
            &a.isv_prod_id.to_le_bytes(),
            &b.isv_prod_id.to_le_bytes(),
        ),
        (
            "isv_svn",
            &a.isv_svn.to_le_bytes(),
            &b.isv_svn.to_le_bytes(),
        ),
        (
            "config_svn",
            &a.config_svn.to_le_bytes(),
            &b.config_svn.to_le_bytes(),
        ),
        ("isv_family_id", &a.isv_family_id, &b.isv_family_id),
    ];
    for (field, x, y) in fields {
        if x != y {
            return Err(CertError::Disagreement {
                format,
                primary,
                field,
                expected: hex::encode(x),
                actual: hex::encode(y),
            });
        }
    }
    Ok(())
}

/// Why a certificate was not accepted as RA-TLS evidence.
///
/// Only about the certificate in hand (a peer's, or one loaded from disk); failing to make our
/// own is [`IdentityError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CertError {
    /// Input longer than [`MAX_CERT_LEN`].
    TooLarge { len: usize, max: usize },
    /// Not a well-formed X.509 certificate (or trailing bytes, duplicate extensions).
    Parse { detail: String },
    /// None of the evidence extensions is present.
    NoEvidence,
    /// A critical extension this crate does not understand (RFC 5280 section 4.2).
    CriticalExtension { oid: String },
    /// A public key type or encoding that RA-TLS certificates do not use.
    UnsupportedKey { detail: String },
    /// The evidence extension's encoding is malformed (CBOR structure, claims).
    Encoding {
        format: EvidenceFormat,
        source: DiceError,
    },
    /// The evidence extension does not hold a quote v3 we accept.
    Evidence {
        format: EvidenceFormat,
        source: QuoteError,
    },
    /// A quote does not commit to the certificate's key.
    Binding {
        format: EvidenceFormat,
        rule: &'static str,
        expected: String,
        actual: String,
    },
    /// A secondary quote describes another enclave than the primary one.
    Disagreement {
        format: EvidenceFormat,
        primary: EvidenceFormat,
        field: &'static str,
        expected: String,
        actual: String,
    },
    /// The certificate does not verify under its own key, or uses an algorithm not allowed.
    SelfSignature {
        algorithm: String,
        reason: &'static str,
    },
    /// `now` is outside the certificate's validity period.
    Validity {
        not_before: i64,
        not_after: i64,
        now: u64,
    },
    /// A PEM input is malformed.
    Pem { what: &'static str, detail: String },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "certificate too large: {len} bytes, at most {max}")
            }
            Self::Parse { detail } => write!(f, "certificate unparsable: {detail}"),
            Self::NoEvidence => write!(
                f,
                "no attestation evidence in certificate: none of the extensions {}, {}, {}",
                EvidenceFormat::Occlum,
                EvidenceFormat::TcgDice,
                EvidenceFormat::GramineLegacy
            ),
            Self::CriticalExtension { oid } => {
                write!(
                    f,
                    "certificate has an unrecognized critical extension: {oid}"
                )
            }
            Self::UnsupportedKey { detail } => write!(f, "unsupported certificate key: {detail}"),
            Self::Encoding { format, source } => write!(f, "{format} evidence malformed: {source}"),
            Self::Evidence { format, source } => {
                write!(f, "{format} evidence holds no acceptable quote: {source}")
            }
            Self::Binding {
                format,
                rule,
                expected,
                actual,
            } => write!(
                f,
                "{format} evidence not bound to the certificate key: {rule}: expected {expected}, got {actual}"
            ),
            Self::Disagreement {
                format,
                primary,
                field,
                expected,
                actual,
            } => write!(
                f,
                "{format} evidence disagrees with {primary} evidence: {field}: expected {expected}, got {actual}"
            ),
            Self::SelfSignature { algorithm, reason } => {
                write!(
                    f,
                    "certificate self-signature rejected: {algorithm}: {reason}"
                )
            }
            Self::Validity {
                not_before,
                not_after,
                now,
            } => write!(
                f,
                "certificate not valid now: now {now}, valid from {not_before} to {not_after} (unix seconds)"
            ),
            Self::Pem { what, detail } => write!(f, "{what} pem unreadable: {detail}"),
        }
    }
}

impl std::error::Error for CertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Evidence { source, .. } => Some(source),
            Self::Encoding { source, .. } => Some(source),
            _ => None,
        }
    }
}
