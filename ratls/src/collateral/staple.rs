//! Collateral stapled to an RA-TLS certificate: the KMS carries the DCAP collateral of its own
//! platform in its certificate, so init verifies the KMS without asking a PCCS.
//!
//! # Why it is safe on an untrusted path
//!
//! Every part of the collateral is signed by Intel (TCB info and QE identity by the TCB signing
//! key, the CRLs by their CAs, all chaining to the trust anchor), and the verifier checks those
//! signatures and every `nextUpdate` exactly as it does for collateral from a PCCS. A staple
//! therefore decides nothing by itself: a tampered one fails `dcap-signature`, a stale or
//! foreign one is not used ([`Stapled`] falls back to its PCCS). The certificate's
//! self-signature additionally ties the staple to the enclave key, but nothing relies on it.
//!
//! # Wire form
//!
//! A non-critical X.509 extension, OID [`OID_STAPLED_COLLATERAL`] (`1.3.6.1.3.7283.1`, in
//! IANA's `experimental` arc of RFC 1155: the project has no Private Enterprise Number, and
//! rcgen cannot encode a 128-bit `2.25` UUID arc). Peers that do not know it ignore it
//! (RFC 5280 section 4.2: a non-critical extension that is not recognised may be ignored). Its
//! value (the extnValue OCTET STRING's contents):
//!
//! ```text
//! magic  "OCST"          4 bytes
//! version 2              1 byte
//! 8 fields, in this order, each a u32 little-endian length and that many bytes:
//!   root_ca_crl (DER)     pck_crl (DER)
//!   tcb_signer (DER certificate)   tcb_info (raw DEFLATE of the JSON)   tcb_info_signature
//!   qe_signer (DER certificate, or empty: the same as tcb_signer)
//!   qe_identity (raw DEFLATE of the JSON)   qe_identity_signature
//! ```
//!
//! It decodes to dcap-qvl's `QuoteCollateralV3` (TCB info and QE identity as the exact signed
//! bytes) with each issuer chain reduced to its signing certificate, and it is verified exactly
//! as before: version 1 carried the three issuer chains as PEM, root included (17,100 bytes of
//! certificate PEM with sgx-sim's collateral, more than the 16,000-byte buffer Occlum's C++
//! client copies a peer's PEM into), but nothing in them decided anything the chain's signer
//! does not:
//! - the root certificate: dcap-qvl builds every path to the verifier's own trust anchor, never
//!   to a root in the collateral, and requires the TCB signer to be issued directly by it;
//! - `pck_crl_issuer_chain`: dcap-qvl 0.7.1's verification never reads it (the PCK CRL is
//!   checked against the PCK CA in the quote's own certification chain), so it decodes empty;
//! - PEM: the same certificate in DER, a third smaller;
//! - the JSON: inflated (at most [`MAX_JSON_LEN`] bytes each, a bound on decompression bombs)
//!   to exactly the bytes Intel signed, whose signature is checked as before. Intel's TCB info
//!   is 4.5 KB for one platform and more for newer ones; deflated it is a fifth of that. Without
//!   it a staple of Intel's real collateral still made a 16,400-byte certificate PEM.
//!
//! The whole value is at most [`MAX_STAPLE_LEN`] bytes, and nothing may follow the last field.

use std::fmt;
use std::sync::{Arc, Mutex};

use dcap_qvl::QuoteCollateralV3;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;

use super::{CollateralError, CollateralSource, next_update, platform_key};
use crate::cert::pem_encode;
use crate::quote::Quote;
use crate::reader::Reader;

/// The stapled-collateral extension OID as arcs (`1.3.6.1.3.7283.1`).
pub const STAPLE_OID_ARCS: &[u64] = &[1, 3, 6, 1, 3, 7283, 1];
/// The same OID as DER content bytes, as x509-parser reports it.
pub const OID_STAPLED_COLLATERAL: &[u8] = &[0x2b, 0x06, 0x01, 0x03, 0xb8, 0x73, 0x01];
/// The OID in dotted form, for messages and documentation.
pub const STAPLE_OID: &str = "1.3.6.1.3.7283.1";

/// Largest staple minted or accepted, in bytes. rustls refuses a handshake message over
/// 64 KiB, and the certificate also carries a quote (~5 KiB): a larger staple would make the
/// KMS's certificate unacceptable to rustls clients. Real collateral is 10 to 30 KiB.
pub const MAX_STAPLE_LEN: usize = 48 * 1024;

/// Largest TCB info or QE identity JSON a staple inflates to, in bytes.
pub const MAX_JSON_LEN: usize = 64 * 1024;

const MAGIC: &[u8; 4] = b"OCST";
const VERSION: u8 = 2;

/// Why a staple was not made or not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StapleError {
    /// Encoded, it would exceed [`MAX_STAPLE_LEN`].
    TooLarge { len: usize, max: usize },
    /// The first four bytes are not `OCST`.
    Magic,
    /// A version this build does not read.
    Version { found: u8 },
    /// A field runs past the end of the value.
    Truncated {
        field: &'static str,
        needed: usize,
        left: usize,
    },
    /// A field's length does not fit this machine's `usize`.
    Length { field: &'static str, len: u32 },
    /// A text field (issuer chains, TCB info, QE identity) is not UTF-8.
    NotUtf8 { field: &'static str },
    /// An issuer chain to staple has no certificate (or not a PEM one) to take its signer from.
    Chain { field: &'static str },
    /// A deflated JSON field does not inflate within [`MAX_JSON_LEN`] bytes.
    Inflate { field: &'static str },
    /// Bytes follow the last field.
    Trailing { extra: usize },
}

impl fmt::Display for StapleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "stapled collateral is {len} bytes, at most {max}")
            }
            Self::Magic => write!(f, "stapled collateral: magic is not \"OCST\""),
            Self::Version { found } => write!(
                f,
                "stapled collateral: version {found} (this build reads {VERSION})"
            ),
            Self::Truncated {
                field,
                needed,
                left,
            } => write!(
                f,
                "stapled collateral: {field} truncated: needs {needed} bytes, {left} left"
            ),
            Self::Length { field, len } => {
                write!(f, "stapled collateral: {field}: length {len}")
            }
            Self::NotUtf8 { field } => write!(f, "stapled collateral: {field} is not UTF-8"),
            Self::Chain { field } => {
                write!(f, "stapled collateral: {field} has no PEM certificate")
            }
            Self::Inflate { field } => write!(
                f,
                "stapled collateral: {field} does not inflate to at most {MAX_JSON_LEN} bytes"
            ),
            Self::Trailing { extra } => write!(f, "stapled collateral: {extra} trailing bytes"),
        }
    }
}

impl std::error::Error for StapleError {}

/// Encodes `collateral` as a staple (the extension value), refusing one over [`MAX_STAPLE_LEN`].
pub fn encode(collateral: &QuoteCollateralV3) -> Result<Vec<u8>, StapleError> {
    let tcb_signer = signer("tcb_info_issuer_chain", &collateral.tcb_info_issuer_chain)?;
    let qe_signer = signer(
        "qe_identity_issuer_chain",
        &collateral.qe_identity_issuer_chain,
    )?;
    // Intel signs both with one certificate: store it once.
    let qe_signer: &[u8] = if qe_signer == tcb_signer {
        &[]
    } else {
        &qe_signer
    };
    let tcb_info = deflate(collateral.tcb_info.as_bytes());
    let qe_identity = deflate(collateral.qe_identity.as_bytes());
    let fields: [&[u8]; 8] = [
        &collateral.root_ca_crl,
        &collateral.pck_crl,
        &tcb_signer,
        &tcb_info,
        &collateral.tcb_info_signature,
        qe_signer,
        &qe_identity,
        &collateral.qe_identity_signature,
    ];
    let len = MAGIC.len() + 1 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    if len > MAX_STAPLE_LEN {
        return Err(StapleError::TooLarge {
            len,
            max: MAX_STAPLE_LEN,
        });
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for field in fields {
        // Each field is shorter than MAX_STAPLE_LEN (checked above), so it fits a u32.
        let n = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(field);
    }
    Ok(out)
}

/// Raw DEFLATE at the best ratio (a staple is made once per certificate rotation).
fn deflate(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(bytes, 10)
}

/// The first certificate of a PEM issuer chain (Intel's order: the signer, then the root), DER.
fn signer(field: &'static str, chain_pem: &str) -> Result<Vec<u8>, StapleError> {
    match CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next() {
        Some(Ok(cert)) => Ok(cert.to_vec()),
        _ => Err(StapleError::Chain { field }),
    }
}

/// Decodes a staple (untrusted bytes: bounded, strict, never panics).
pub fn decode(bytes: &[u8]) -> Result<QuoteCollateralV3, StapleError> {
    if bytes.len() > MAX_STAPLE_LEN {
        return Err(StapleError::TooLarge {
            len: bytes.len(),
            max: MAX_STAPLE_LEN,
        });
    }
    let mut r = Reader::new(bytes);
    let truncated = |t: crate::reader::Truncated| StapleError::Truncated {
        field: t.field,
        needed: t.needed,
        left: t.left,
    };
    if r.take("magic", MAGIC.len()).map_err(truncated)? != MAGIC {
        return Err(StapleError::Magic);
    }
    let [version] = r.array::<1>("version").map_err(truncated)?;
    if version != VERSION {
        return Err(StapleError::Version { found: version });
    }
    let mut field = |name: &'static str| -> Result<Vec<u8>, StapleError> {
        let len = r.u32_le(name).map_err(truncated)?;
        let len = usize::try_from(len).map_err(|_| StapleError::Length { field: name, len })?;
        Ok(r.take(name, len).map_err(truncated)?.to_vec())
    };
    let text = |name: &'static str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| StapleError::NotUtf8 { field: name })
    };
    let root_ca_crl = field("root_ca_crl")?;
    let pck_crl = field("pck_crl")?;
    let tcb_signer = field("tcb_signer")?;
    let tcb_info = text("tcb_info", inflate("tcb_info", &field("tcb_info")?)?)?;
    let tcb_info_signature = field("tcb_info_signature")?;
    let qe_signer = field("qe_signer")?;
    let qe_identity = text(
        "qe_identity",
        inflate("qe_identity", &field("qe_identity")?)?,
    )?;
    let qe_identity_signature = field("qe_identity_signature")?;
    if let Err(extra) = r.expect_end() {
        return Err(StapleError::Trailing { extra });
    }
    let tcb_info_issuer_chain = pem_encode("CERTIFICATE", &tcb_signer).to_string();
    let qe_identity_issuer_chain = if qe_signer.is_empty() {
        tcb_info_issuer_chain.clone()
    } else {
        pem_encode("CERTIFICATE", &qe_signer).to_string()
    };
    Ok(QuoteCollateralV3 {
        // Not read by the verification (see the module docs).
        pck_crl_issuer_chain: String::new(),
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    })
}

/// Inflates a raw DEFLATE field to at most [`MAX_JSON_LEN`] bytes.
fn inflate(field: &'static str, bytes: &[u8]) -> Result<Vec<u8>, StapleError> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(bytes, MAX_JSON_LEN)
        .map_err(|_| StapleError::Inflate { field })
}

/// A collateral source that uses a peer's stapled collateral when it covers the quote's
/// platform and is fresh, and asks `fallback` (a PCCS) otherwise.
///
/// "Fresh" means the staple's earliest `nextUpdate` is after `now`; "covers" means its TCB
/// info names the quote's FMSPC and its PCK CRL was issued by the CA that issued the quote's
/// PCK certificate. Neither is a security decision (the verifier checks signatures and
/// windows either way); they pick the source that can succeed. What happened last is kept for
/// the log ([`Stapled::last_outcome`]).
pub struct Stapled {
    fallback: Arc<dyn CollateralSource>,
    last: Mutex<Option<String>>,
}

impl Stapled {
    /// Uses staples when good, `fallback` otherwise.
    pub fn new(fallback: Arc<dyn CollateralSource>) -> Self {
        Self {
            fallback,
            last: Mutex::new(None),
        }
    }

    /// A line saying which collateral the last verification used, and why.
    pub fn last_outcome(&self) -> Option<String> {
        super::lock(&self.last).clone()
    }

    fn record(&self, outcome: String) {
        *super::lock(&self.last) = Some(outcome);
    }

    fn usable(
        &self,
        quote: &Quote,
        staple: &[u8],
        now: u64,
    ) -> Result<QuoteCollateralV3, Unusable> {
        let collateral = decode(staple).map_err(Unusable::Decode)?;
        let next_update = next_update(&collateral).map_err(Unusable::Window)?;
        if next_update <= now {
            return Err(Unusable::Stale { next_update, now });
        }
        let key = platform_key(quote).map_err(Unusable::Platform)?;
        let fmspc = staple_fmspc(&collateral.tcb_info)?;
        if !fmspc.eq_ignore_ascii_case(&key.fmspc) {
            return Err(Unusable::OtherPlatform {
                stapled: fmspc,
                quote: key.fmspc,
            });
        }
        if !same_issuer(quote, &collateral.pck_crl)? {
            return Err(Unusable::OtherCa { ca: key.ca });
        }
        Ok(collateral)
    }
}

/// Why a peer's staple was not used for its quote (the fallback is asked instead). None of
/// these is a verdict on the peer: they pick the source that can succeed.
#[derive(Debug)]
enum Unusable {
    /// Not a staple ([`decode`]).
    Decode(StapleError),
    /// Its validity window is unreadable.
    Window(super::WindowError),
    /// Its earliest `nextUpdate` has passed.
    Stale { next_update: u64, now: u64 },
    /// The quote's own PCK certificate does not name its platform.
    Platform(CollateralError),
    /// Its TCB info does not name an FMSPC (the JSON error).
    TcbInfo { detail: String },
    /// Its TCB info is for another platform.
    OtherPlatform { stapled: String, quote: String },
    /// Its PCK CRL is not a DER CRL (the parser's error).
    PckCrl { detail: String },
    /// The quote's PCK certificate could not be read for its issuer.
    QuotePck { detail: String },
    /// Its PCK CRL is from another CA than the one that issued the quote's PCK certificate.
    OtherCa { ca: &'static str },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "{e}"),
            Self::Window(e) => write!(f, "stapled collateral: {e}"),
            Self::Stale { next_update, now } => write!(
                f,
                "stapled collateral is stale: nextUpdate {next_update}, now {now}"
            ),
            Self::Platform(e) => write!(f, "{e}"),
            Self::TcbInfo { detail } => write!(f, "stapled TCB info: {detail}"),
            Self::OtherPlatform { stapled, quote } => write!(
                f,
                "stapled TCB info is for FMSPC {stapled}, the quote's platform is {quote}"
            ),
            Self::PckCrl { detail } => write!(f, "stapled PCK CRL is not a DER CRL: {detail}"),
            Self::QuotePck { detail } => write!(f, "{detail}"),
            Self::OtherCa { ca } => write!(
                f,
                "stapled PCK CRL is not from the CA ({ca}) that issued the quote's PCK certificate"
            ),
        }
    }
}

impl CollateralSource for Stapled {
    fn collateral(
        &self,
        quote: &Quote,
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        self.record(format!(
            "no stapled collateral: {}",
            self.fallback.describe()
        ));
        self.fallback.collateral(quote, now)
    }

    fn collateral_with_staple(
        &self,
        quote: &Quote,
        staple: &[u8],
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        match self.usable(quote, staple, now) {
            Ok(collateral) => {
                let until = next_update(&collateral).unwrap_or_default();
                self.record(format!(
                    "collateral stapled by the peer ({} bytes, nextUpdate {until}); no PCCS request",
                    staple.len()
                ));
                Ok(Arc::new(collateral))
            }
            Err(why) => {
                self.record(format!(
                    "stapled collateral not used ({why}): {}",
                    self.fallback.describe()
                ));
                self.fallback.collateral(quote, now)
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "collateral stapled by the peer, else {}",
            self.fallback.describe()
        )
    }
}

/// The FMSPC a TCB info JSON names.
fn staple_fmspc(tcb_info: &str) -> Result<String, Unusable> {
    #[derive(Deserialize)]
    struct Fmspc {
        fmspc: String,
    }
    serde_json::from_str::<Fmspc>(tcb_info)
        .map(|f| f.fmspc)
        .map_err(|e| Unusable::TcbInfo {
            detail: e.to_string(),
        })
}

/// True when `crl_der`'s issuer is the issuer of the quote's PCK certificate.
fn same_issuer(quote: &Quote, crl_der: &[u8]) -> Result<bool, Unusable> {
    let (_, crl) = x509_parser::parse_x509_crl(crl_der).map_err(|e| Unusable::PckCrl {
        detail: e.to_string(),
    })?;
    let pck = |detail: String| Unusable::QuotePck { detail };
    let leaf = CertificateDer::pem_slice_iter(&quote.signature.cert_data)
        .next()
        .ok_or_else(|| pck("the quote's PCK chain has no certificate".into()))?
        .map_err(|e| pck(format!("the quote's PCK chain: {e}")))?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| pck(format!("the quote's PCK certificate: {e}")))?;
    Ok(crl.issuer().as_raw() == leaf.issuer().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QuoteCollateralV3 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/dcap-sample/sgx_quote_collateral.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_staple_round_trips_every_field_the_verification_reads() {
        let c = sample();
        let bytes = encode(&c).unwrap();
        assert!(bytes.len() < MAX_STAPLE_LEN, "{}", bytes.len());
        let back = decode(&bytes).unwrap();
        // Each issuer chain comes back as its signer alone, and the PCK CRL issuer chain
        // (which the verification never reads) empty.
        let signer_pem = |chain: &str| {
            let end = "-----END CERTIFICATE-----";
            let first = &chain[..chain.find(end).unwrap() + end.len()];
            pem_encode("CERTIFICATE", &crate::cert::der_from_pem(first).unwrap()).to_string()
        };
        let mut expected = c.clone();
        expected.pck_crl_issuer_chain = String::new();
        expected.tcb_info_issuer_chain = signer_pem(&c.tcb_info_issuer_chain);
        expected.qe_identity_issuer_chain = signer_pem(&c.qe_identity_issuer_chain);
        expected.pck_certificate_chain = None;
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
        // Intel's sample signs both with one certificate: stored once.
        assert_eq!(back.tcb_info_issuer_chain, back.qe_identity_issuer_chain);
    }

    #[test]
    fn a_different_qe_identity_signer_is_kept_apart() {
        let mut c = sample();
        let tcb = c.tcb_info_issuer_chain.clone();
        let end = "-----END CERTIFICATE-----\n";
        let split = tcb.find(end).unwrap() + end.len();
        // The root as the QE identity's "signer": a different certificate.
        c.qe_identity_issuer_chain = tcb[split..].to_string();
        let back = decode(&encode(&c).unwrap()).unwrap();
        assert_ne!(back.qe_identity_issuer_chain, back.tcb_info_issuer_chain);
        assert_eq!(
            crate::cert::der_from_pem(&back.qe_identity_issuer_chain).unwrap(),
            crate::cert::der_from_pem(&tcb[split..]).unwrap()
        );
    }

    #[test]
    fn json_that_inflates_past_its_bound_or_is_not_deflate_is_malformed() {
        let bytes = encode(&sample()).unwrap();
        // Rebuild the staple with the TCB info field (the 4th) replaced.
        let with_tcb_info = |value: &[u8]| {
            let mut r = Reader::new(&bytes[5..]);
            let mut out = bytes[..5].to_vec();
            for i in 0..8 {
                let len = r.u32_le("len").unwrap() as usize;
                let field = r.take("field", len).unwrap();
                let field = if i == 3 { value } else { field };
                out.extend_from_slice(&u32::try_from(field.len()).unwrap().to_le_bytes());
                out.extend_from_slice(field);
            }
            out
        };
        let bomb = deflate(&vec![b' '; MAX_JSON_LEN + 1]);
        assert!(bomb.len() < 1024, "{}", bomb.len());
        assert_eq!(
            decode(&with_tcb_info(&bomb)),
            Err(StapleError::Inflate { field: "tcb_info" })
        );
        assert_eq!(
            decode(&with_tcb_info(b"{\"not\": \"deflate\"}")),
            Err(StapleError::Inflate { field: "tcb_info" })
        );
        let at_bound = deflate(&vec![b' '; MAX_JSON_LEN]);
        assert_eq!(
            decode(&with_tcb_info(&at_bound)).unwrap().tcb_info.len(),
            MAX_JSON_LEN
        );
    }

    #[test]
    fn a_chain_without_a_certificate_is_not_stapled() {
        let mut c = sample();
        c.tcb_info_issuer_chain = "no pem here".into();
        assert_eq!(
            encode(&c),
            Err(StapleError::Chain {
                field: "tcb_info_issuer_chain"
            })
        );
    }

    #[test]
    fn the_oid_bytes_encode_the_documented_arcs() {
        let oid = x509_parser::asn1_rs::Oid::new(OID_STAPLED_COLLATERAL.into());
        assert_eq!(oid.to_id_string(), STAPLE_OID);
        let arcs: Vec<String> = STAPLE_OID_ARCS.iter().map(u64::to_string).collect();
        assert_eq!(arcs.join("."), STAPLE_OID);
    }

    #[test]
    fn truncated_trailing_and_foreign_staples_are_malformed() {
        let bytes = encode(&sample()).unwrap();
        for cut in [0, 3, 5, 9, bytes.len() - 1] {
            assert!(
                matches!(decode(&bytes[..cut]), Err(StapleError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        let err = decode(&long).unwrap_err();
        assert_eq!(err, StapleError::Trailing { extra: 1 });
        assert_eq!(err.to_string(), "stapled collateral: 1 trailing bytes");
        let mut other = bytes.clone();
        other[4] = 1;
        assert_eq!(decode(&other), Err(StapleError::Version { found: 1 }));
        let mut magic = bytes;
        magic[0] = b'X';
        assert_eq!(decode(&magic), Err(StapleError::Magic));
    }

    #[test]
    fn oversized_staples_are_neither_minted_nor_read() {
        let mut c = sample();
        c.pck_crl = vec![0x30; MAX_STAPLE_LEN];
        assert!(matches!(encode(&c), Err(StapleError::TooLarge { .. })));
        let big = vec![0u8; MAX_STAPLE_LEN + 1];
        assert!(matches!(
            decode(&big),
            Err(StapleError::TooLarge { len, max: MAX_STAPLE_LEN }) if len == MAX_STAPLE_LEN + 1
        ));
    }

    #[test]
    fn a_length_past_the_end_is_truncation_not_a_panic() {
        let mut bytes = b"OCST\x02".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                StapleError::Truncated {
                    field: "root_ca_crl",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
