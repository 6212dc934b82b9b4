//! SGX DCAP quote v3: a strict parser over untrusted bytes.
//!
//! Layout from Intel's "SGX ECDSA Quote Library API" (quote format, table 3 "Quote header",
//! table 5 "Enclave report body", table 4 "Quote signature data"). All integers are little
//! endian. The parser checks structure only; signatures are checked by the DCAP verifier.

use std::fmt;

use crate::reader::{Reader, Truncated};

/// The only quote version this parser accepts.
pub const QUOTE_VERSION_3: u16 = 3;
/// Attestation key type 2: ECDSA-256-with-P-256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type 0: SGX (v3 quotes carry it in what older specs call "reserved").
pub const TEE_TYPE_SGX: u32 = 0;
/// Certification data type 5: the PCK certificate chain, PEM.
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Largest quote accepted. Real v3 quotes with a PEM chain are about 4.6 KiB.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Bytes covered by the attestation key's signature: header and report body.
pub const SIGNED_LEN: usize = HEADER_LEN + REPORT_BODY_LEN;
/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Size of an SGX report body (the enclave's and the QE's).
pub const REPORT_BODY_LEN: usize = 384;
/// `attributes.flags` bit for a debug enclave (SGX_FLAGS_DEBUG).
pub const ATTRIBUTE_FLAG_DEBUG: u64 = 0x2;

/// A parsed quote v3. Owns its bytes so it can outlive the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The quote header.
    pub header: QuoteHeader,
    /// The enclave's report body: its measurements and report data.
    pub body: ReportBody,
    /// The signature data that follows the signed part.
    pub signature: QuoteSignature,
}

/// Quote header (48 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// An SGX report body (384 bytes), the enclave identity that policy checks.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportBody {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: [u8; 16],
    pub attributes_flags: u64,
    pub attributes_xfrm: u64,
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub config_id: [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: [u8; 16],
    pub report_data: [u8; 64],
}

/// The quote's signature data (ECDSA P-256 attestation key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteSignature {
    /// ECDSA signature (r || s) over the header and report body.
    pub isv_report_signature: [u8; 64],
    /// The attestation public key (x || y).
    pub attestation_key: [u8; 64],
    /// The quoting enclave's report.
    pub qe_report: ReportBody,
    /// ECDSA signature (r || s) of the PCK key over the QE report.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed into the QE report's report data.
    pub qe_auth_data: Vec<u8>,
    /// Certification data type (5: PCK chain).
    pub cert_data_type: u16,
    /// Certification data (for type 5, the PEM PCK chain).
    pub cert_data: Vec<u8>,
}

/// Why bytes are not a quote v3 we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuoteError {
    /// Input ended inside a field.
    Truncated(Truncated),
    /// Input longer than [`MAX_QUOTE_LEN`].
    TooLong { len: usize, max: usize },
    /// Header version is not 3.
    UnsupportedVersion(u16),
    /// Attestation key type is not ECDSA P-256.
    UnsupportedKeyType(u16),
    /// TEE type is not SGX.
    NotSgx(u32),
    /// Bytes left after the certification data.
    TrailingData { extra: usize },
    /// `signature_data_len` disagrees with the signature data that follows.
    SignatureLengthMismatch { declared: u32, actual: usize },
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(t) => write!(
                f,
                "quote truncated: field {} needs {} bytes, {} left",
                t.field, t.needed, t.left
            ),
            Self::TooLong { len, max } => write!(f, "quote too long: {len} bytes, at most {max}"),
            Self::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported quote version: expected {QUOTE_VERSION_3}, got {v}"
                )
            }
            Self::UnsupportedKeyType(t) => write!(
                f,
                "unsupported attestation key type: expected {ATT_KEY_TYPE_ECDSA_P256} (ECDSA P-256), got {t}"
            ),
            Self::NotSgx(t) => write!(f, "not an SGX quote: tee_type {t:#x}"),
            Self::TrailingData { extra } => write!(f, "quote has {extra} trailing bytes"),
            Self::SignatureLengthMismatch { declared, actual } => write!(
                f,
                "quote signature_data_len is {declared} but {actual} bytes of signature data follow"
            ),
        }
    }
}

impl std::error::Error for QuoteError {}

impl From<Truncated> for QuoteError {
    fn from(t: Truncated) -> Self {
        Self::Truncated(t)
    }
}

impl Quote {
    /// Parses a quote v3, rejecting truncated, oversized and trailing data.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::TooLong {
                len: bytes.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let header = QuoteHeader::read(&mut r)?;
        if header.version != QUOTE_VERSION_3 {
            return Err(QuoteError::UnsupportedVersion(header.version));
        }
        if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(QuoteError::UnsupportedKeyType(header.att_key_type));
        }
        if header.tee_type != TEE_TYPE_SGX {
            return Err(QuoteError::NotSgx(header.tee_type));
        }
        let body = ReportBody::read(&mut r)?;
        let declared = r.u32_le("signature_data_len")?;
        let actual = r.left();
        if usize::try_from(declared).ok() != Some(actual) {
            return Err(QuoteError::SignatureLengthMismatch { declared, actual });
        }
        let signature = QuoteSignature::read(&mut r)?;
        r.expect_end()
            .map_err(|extra| QuoteError::TrailingData { extra })?;
        Ok(Self {
            header,
            body,
            signature,
        })
    }
}

impl QuoteHeader {
    fn read(r: &mut Reader<'_>) -> Result<Self, Truncated> {
        Ok(Self {
            version: r.u16_le("header.version")?,
            att_key_type: r.u16_le("header.att_key_type")?,
            tee_type: r.u32_le("header.tee_type")?,
            qe_svn: r.u16_le("header.qe_svn")?,
            pce_svn: r.u16_le("header.pce_svn")?,
            qe_vendor_id: r.array("header.qe_vendor_id")?,
            user_data: r.array("header.user_data")?,
        })
    }
}

impl ReportBody {
    /// Parses exactly [`REPORT_BODY_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        let mut r = Reader::new(bytes);
        let body = Self::read(&mut r)?;
        r.expect_end()
            .map_err(|extra| QuoteError::TrailingData { extra })?;
        Ok(body)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, Truncated> {
        let cpu_svn = r.array("report.cpu_svn")?;
        let misc_select = r.u32_le("report.misc_select")?;
        r.take("report.reserved1", 12)?;
        let isv_ext_prod_id = r.array("report.isv_ext_prod_id")?;
        let attributes_flags = r.u64_le("report.attributes.flags")?;
        let attributes_xfrm = r.u64_le("report.attributes.xfrm")?;
        let mr_enclave = r.array("report.mr_enclave")?;
        r.take("report.reserved2", 32)?;
        let mr_signer = r.array("report.mr_signer")?;
        r.take("report.reserved3", 32)?;
        let config_id = r.array("report.config_id")?;
        let isv_prod_id = r.u16_le("report.isv_prod_id")?;
        let isv_svn = r.u16_le("report.isv_svn")?;
        let config_svn = r.u16_le("report.config_svn")?;
        r.take("report.reserved4", 42)?;
        let isv_family_id = r.array("report.isv_family_id")?;
        let report_data = r.array("report.report_data")?;
        Ok(Self {
            cpu_svn,
            misc_select,
            isv_ext_prod_id,
            attributes_flags,
            attributes_xfrm,
            mr_enclave,
            mr_signer,
            config_id,
            isv_prod_id,
            isv_svn,
            config_svn,
            isv_family_id,
            report_data,
        })
    }

    /// Serializes back to the 384-byte wire form (reserved fields zero).
    pub fn to_bytes(&self) -> [u8; REPORT_BODY_LEN] {
        let mut out = [0u8; REPORT_BODY_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(0, &self.cpu_svn);
        put(16, &self.misc_select.to_le_bytes());
        put(32, &self.isv_ext_prod_id);
        put(48, &self.attributes_flags.to_le_bytes());
        put(56, &self.attributes_xfrm.to_le_bytes());
        put(64, &self.mr_enclave);
        put(128, &self.mr_signer);
        put(192, &self.config_id);
        put(256, &self.isv_prod_id.to_le_bytes());
        put(258, &self.isv_svn.to_le_bytes());
        put(260, &self.config_svn.to_le_bytes());
        put(304, &self.isv_family_id);
        put(320, &self.report_data);
        out
    }

    /// True when the enclave was launched in debug mode (its memory is readable by the host).
    pub fn debuggable(&self) -> bool {
        self.attributes_flags & ATTRIBUTE_FLAG_DEBUG != 0
    }
}

impl fmt::Debug for ReportBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportBody")
            .field("mr_enclave", &hex::encode(self.mr_enclave))
            .field("mr_signer", &hex::encode(self.mr_signer))
            .field("isv_prod_id", &self.isv_prod_id)
            .field("isv_svn", &self.isv_svn)
            .field("config_svn", &self.config_svn)
            .field(
                "attributes_flags",
                &format_args!("{:#x}", self.attributes_flags),
            )
            .field("report_data", &hex::encode(self.report_data))
            .finish_non_exhaustive()
    }
}

impl QuoteSignature {
    fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        let isv_report_signature = r.array("signature.isv_report_signature")?;
        let attestation_key = r.array("signature.attestation_key")?;
        let qe_report = ReportBody::read(r)?;
        let qe_report_signature = r.array("signature.qe_report_signature")?;
        let auth_len = r.u16_le("signature.qe_auth_data.size")?;
        let qe_auth_data = r
            .take("signature.qe_auth_data", usize::from(auth_len))?
            .to_vec();
        let cert_data_type = r.u16_le("signature.cert_data.type")?;
        let cert_len = r.u32_le("signature.cert_data.size")?;
        let cert_len = usize::try_from(cert_len).unwrap_or(usize::MAX);
        let cert_data = r.take("signature.cert_data", cert_len)?.to_vec();
        Ok(Self {
            isv_report_signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            cert_data_type,
            cert_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");

    #[test]
    fn the_real_sample_parses_with_the_measurements_its_readme_lists() {
        let q = Quote::parse(SAMPLE).expect("sample parses");
        assert_eq!(q.header.version, 3);
        assert_eq!(
            hex::encode(q.body.mr_enclave),
            "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
        );
        assert_eq!(
            hex::encode(q.body.mr_signer),
            "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
        );
        assert_eq!(
            (q.body.isv_prod_id, q.body.isv_svn, q.body.config_svn),
            (0, 0, 0)
        );
        assert_eq!(q.body.attributes_flags, 0x5);
        assert!(!q.body.debuggable());
        assert_eq!(&q.body.report_data[..13], b"Hello, world!");
        assert!(q.body.report_data[13..].iter().all(|b| *b == 0));
        assert_eq!(q.signature.cert_data_type, CERT_DATA_PCK_CHAIN);
    }

    #[test]
    fn the_report_body_round_trips_through_its_wire_form() {
        let q = Quote::parse(SAMPLE).expect("sample parses");
        let bytes = q.body.to_bytes();
        assert_eq!(&bytes[..], &SAMPLE[HEADER_LEN..SIGNED_LEN]);
        assert_eq!(ReportBody::parse(&bytes), Ok(q.body));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for len in 0..SAMPLE.len() {
            assert!(
                Quote::parse(&SAMPLE[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut q = SAMPLE.to_vec();
        q.push(0);
        assert_eq!(
            Quote::parse(&q),
            Err(QuoteError::SignatureLengthMismatch {
                declared: u32::from_le_bytes([SAMPLE[432], SAMPLE[433], SAMPLE[434], SAMPLE[435]]),
                actual: SAMPLE.len() - SIGNED_LEN - 4 + 1,
            })
        );
    }

    #[test]
    fn a_quote_over_the_size_limit_is_rejected_before_parsing() {
        let big = vec![0u8; MAX_QUOTE_LEN + 1];
        assert_eq!(
            Quote::parse(&big),
            Err(QuoteError::TooLong {
                len: MAX_QUOTE_LEN + 1,
                max: MAX_QUOTE_LEN
            })
        );
    }

    #[test]
    fn other_versions_key_types_and_tees_are_rejected() {
        let mut q = SAMPLE.to_vec();
        q[0] = 4;
        assert_eq!(Quote::parse(&q), Err(QuoteError::UnsupportedVersion(4)));
        let mut q = SAMPLE.to_vec();
        q[2] = 3;
        assert_eq!(Quote::parse(&q), Err(QuoteError::UnsupportedKeyType(3)));
        let mut q = SAMPLE.to_vec();
        q[4] = 0x81;
        assert_eq!(Quote::parse(&q), Err(QuoteError::NotSgx(0x81)));
    }
}
