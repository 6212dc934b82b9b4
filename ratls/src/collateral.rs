//! DCAP collateral: where the verifier gets TCB info, QE identity and CRLs for a quote.
//!
//! [`CollateralSource`] is what the verifier asks; this crate has only sources that need no
//! network, no threads and no disk writes: [`StaticCollateral`] serves one offline collateral
//! file (dcap-qvl's `QuoteCollateralV3` JSON) and [`staple::Stapled`] takes collateral a peer
//! stapled to its certificate. The PCCS fetcher (HTTP, fetch threads, backoff, disk cache) is
//! the `pccs-client` crate. Also here: a collateral's validity window ([`next_update`]) and the
//! platform a quote needs collateral for ([`platform_key`]). The TCB info and QE identity
//! signatures cover the exact JSON bytes the service sent, so those bytes are kept verbatim.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;

use crate::quote::{CERT_DATA_PCK_CHAIN, Quote};

pub mod staple;

/// Largest collateral file accepted from disk.
pub const MAX_COLLATERAL_FILE_LEN: u64 = 4 * 1024 * 1024;

/// Something that supplies collateral for a quote.
pub trait CollateralSource: Send + Sync {
    /// Collateral that covers `quote`'s platform, valid at `now` (unix seconds) if the source
    /// can tell. The verifier checks validity again; this is about freshness.
    fn collateral(
        &self,
        quote: &Quote,
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError>;

    /// Like [`CollateralSource::collateral`], when the peer stapled collateral to its
    /// certificate ([`staple`]). Sources that do not use staples ignore it.
    fn collateral_with_staple(
        &self,
        quote: &Quote,
        _staple: &[u8],
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        self.collateral(quote, now)
    }

    /// A short description for logs and error messages.
    fn describe(&self) -> String;
}

/// Why collateral could not be had.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CollateralError {
    /// The quote carries no PCK certificate chain (certification data type 5).
    NoPckChain { cert_data_type: u16 },
    /// The PCK certificate could not be read for its FMSPC or issuing CA.
    PckCertificate { detail: String },
    /// An HTTP request failed (connect, timeout, TLS, body too large).
    Http { url: String, detail: String },
    /// The PCCS answered with an error status.
    Status { url: String, status: u16 },
    /// A response lacked something or did not parse.
    Response { url: String, detail: String },
    /// A collateral file could not be read or parsed.
    File { path: PathBuf, detail: String },
    /// The quote's PCK chain does not lead to the trust anchor: nothing is fetched for it.
    PckChain { detail: String, anchor: String },
    /// A fetch for this platform is still running (the caller did not wait for it).
    Pending { fmspc: String, ca: &'static str },
    /// The fetcher's limit of `limit` concurrent fetches for other platforms is reached.
    Busy {
        fmspc: String,
        ca: &'static str,
        limit: usize,
    },
    /// The last fetch for this platform failed; it is retried after the backoff.
    Backoff {
        last: Box<CollateralError>,
        retry_in: Duration,
    },
}

impl fmt::Display for CollateralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPckChain { cert_data_type } => write!(
                f,
                "collateral: the quote carries certification data type {cert_data_type}, not a PCK chain (type {CERT_DATA_PCK_CHAIN})"
            ),
            Self::PckCertificate { detail } => {
                write!(f, "collateral: reading the PCK certificate: {detail}")
            }
            Self::Http { url, detail } => write!(f, "collateral: GET {url}: {detail}"),
            Self::Status { url, status } => {
                write!(f, "collateral: GET {url}: HTTP status {status}")
            }
            Self::Response { url, detail } => {
                write!(f, "collateral: response from {url}: {detail}")
            }
            Self::File { path, detail } => {
                write!(f, "collateral file {}: {detail}", path.display())
            }
            Self::PckChain { detail, anchor } => write!(
                f,
                "collateral: the quote's PCK certificate chain does not verify against {anchor}, so no collateral is fetched for it: {detail}"
            ),
            Self::Pending { fmspc, ca } => write!(
                f,
                "collateral: fetching collateral for FMSPC {fmspc} (CA {ca}) is in progress; retry shortly"
            ),
            Self::Busy { fmspc, ca, limit } => write!(
                f,
                "collateral: {limit} collateral fetches are already running; FMSPC {fmspc} (CA {ca}) was not fetched, retry shortly"
            ),
            Self::Backoff { last, retry_in } => write!(
                f,
                "{last} (not retried for another {} s)",
                retry_in.as_secs().max(1)
            ),
        }
    }
}

impl std::error::Error for CollateralError {}

/// Why a collateral's validity window (`issueDate`, `nextUpdate`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// The TCB info or QE identity is not JSON with string `issueDate` and `nextUpdate`.
    Json { what: &'static str, detail: String },
    /// A date that is not an RFC 3339 time at or after 1970.
    Time { what: &'static str, text: String },
    /// A PCK or root CA CRL that is not a DER CRL.
    Crl { what: &'static str, detail: String },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json { what, detail } => write!(f, "{what}: {detail}"),
            Self::Time { what, text } => {
                write!(f, "{what}: {text:?} is not an RFC 3339 time after 1970")
            }
            Self::Crl { what, detail } => write!(f, "{what}: not a DER CRL: {detail}"),
        }
    }
}

impl std::error::Error for WindowError {}

/// One collateral set for every quote, read from a file (offline verification).
pub struct StaticCollateral {
    collateral: Arc<QuoteCollateralV3>,
    origin: String,
}

impl StaticCollateral {
    /// Wraps collateral already in memory.
    pub fn new(collateral: QuoteCollateralV3, origin: impl Into<String>) -> Self {
        Self {
            collateral: Arc::new(collateral),
            origin: origin.into(),
        }
    }

    /// Parses dcap-qvl's `QuoteCollateralV3` JSON form, as read from the file `path` (which
    /// only names the origin: ratls reads no file; `pccs_client::read_collateral_file` reads
    /// it, bounded by [`MAX_COLLATERAL_FILE_LEN`]).
    pub fn from_json(json: &[u8], path: &Path) -> Result<Self, CollateralError> {
        let collateral = serde_json::from_slice(json).map_err(|e| CollateralError::File {
            path: path.to_owned(),
            detail: format!("not QuoteCollateralV3 JSON: {e}"),
        })?;
        Ok(Self::new(collateral, path.display().to_string()))
    }
}

impl CollateralSource for StaticCollateral {
    fn collateral(&self, _: &Quote, _: u64) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        Ok(Arc::clone(&self.collateral))
    }

    fn describe(&self) -> String {
        format!("collateral file {}", self.origin)
    }
}

/// Which collateral set a quote needs: its FMSPC and the CA that issued its PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformKey {
    /// The FMSPC, upper-case hex (12 digits).
    pub fmspc: String,
    /// The issuing CA as the PCCS API names it: `processor` or `platform`.
    pub ca: &'static str,
}

/// The earliest `nextUpdate` of the TCB info, the QE identity and both CRLs, in unix seconds:
/// after it the collateral is stale and must be refetched.
pub fn next_update(collateral: &QuoteCollateralV3) -> Result<u64, WindowError> {
    let (_, tcb) = json_window(&collateral.tcb_info, "TCB info")?;
    let (_, qe) = json_window(&collateral.qe_identity, "QE identity")?;
    let mut earliest = tcb.min(qe);
    for (crl, what) in [
        (&collateral.pck_crl, "PCK CRL"),
        (&collateral.root_ca_crl, "root CA CRL"),
    ] {
        if let Some(next) = crl_next_update(crl, what)? {
            earliest = earliest.min(next);
        }
    }
    Ok(earliest)
}

/// `(issueDate, nextUpdate)` of a TCB info or QE identity JSON body, in unix seconds.
pub fn json_window(json: &str, what: &'static str) -> Result<(u64, u64), WindowError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Window {
        issue_date: String,
        next_update: String,
    }
    let w: Window = serde_json::from_str(json).map_err(|e| WindowError::Json {
        what,
        detail: e.to_string(),
    })?;
    Ok((
        rfc3339(&w.issue_date, what)?,
        rfc3339(&w.next_update, what)?,
    ))
}

/// Parsed exactly as dcap-qvl parses the same fields (`utils::parse_rfc3339_unix_secs`), so
/// our window and dcap-qvl's own validity check agree on every date, odd ones included.
fn rfc3339(text: &str, what: &'static str) -> Result<u64, WindowError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| WindowError::Time {
            what,
            text: text.to_owned(),
        })
}

fn crl_next_update(der: &[u8], what: &'static str) -> Result<Option<u64>, WindowError> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| WindowError::Crl {
        what,
        detail: e.to_string(),
    })?;
    Ok(crl
        .next_update()
        .and_then(|t| u64::try_from(t.timestamp()).ok()))
}

/// The FMSPC and issuing CA of the quote's PCK certificate (the first in its PEM chain).
pub fn platform_key(quote: &Quote) -> Result<PlatformKey, CollateralError> {
    let sig = &quote.signature;
    if sig.cert_data_type != CERT_DATA_PCK_CHAIN {
        return Err(CollateralError::NoPckChain {
            cert_data_type: sig.cert_data_type,
        });
    }
    let pck = |detail: String| CollateralError::PckCertificate { detail };
    let ext = dcap_qvl::intel::parse_pck_extension_from_pem(&sig.cert_data)
        .map_err(|e| pck(format!("{e:#}")))?;
    let leaf = CertificateDer::pem_slice_iter(&sig.cert_data)
        .next()
        .ok_or_else(|| pck("no certificate in the PEM chain".into()))?
        .map_err(|e| pck(format!("PEM: {e}")))?;
    let ca = dcap_qvl::intel::pck_ca(&leaf).map_err(|e| pck(format!("{e:#}")))?;
    Ok(PlatformKey {
        fmspc: hex::encode_upper(ext.fmspc),
        ca: ca.as_id_str(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock cannot leave the map inconsistent (every update is
    // one insert or clear), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
    const SAMPLE_COLLATERAL: &str = "testdata/dcap-sample/sgx_quote_collateral.json";

    fn sample_collateral() -> QuoteCollateralV3 {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE_COLLATERAL);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_sample_collateral_window_ends_at_its_earliest_next_update() {
        let c = sample_collateral();
        let (issue, next) = json_window(&c.tcb_info, "TCB info").unwrap();
        assert!(issue < next);
        let earliest = next_update(&c).unwrap();
        assert!(earliest <= next);
        // The sample's README: valid until 2025-07-19T10:01:18Z.
        assert_eq!(earliest, 1_752_919_278);
    }

    #[test]
    fn the_platform_key_of_the_sample_is_its_fmspc_and_processor_ca() {
        let q = Quote::parse(SAMPLE_QUOTE).unwrap();
        let key = platform_key(&q).unwrap();
        assert_eq!(key.fmspc.len(), 12);
        assert_eq!(key.ca, "processor");
    }
}
