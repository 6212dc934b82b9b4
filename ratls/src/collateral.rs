//! DCAP collateral: where the verifier gets TCB info, QE identity and CRLs for a quote.
//!
//! [`PccsClient`] fetches them from a PCCS (Intel's PCS or a caching service) over the v4 REST
//! API with a blocking client, per-phase timeouts and response-size limits, and caches them in
//! memory and optionally on disk until the earliest `nextUpdate`. [`StaticCollateral`] serves one
//! offline collateral file (dcap-qvl's `QuoteCollateralV3` JSON). The TCB info and QE identity
//! signatures cover the exact JSON bytes the service sent, so those bytes are kept verbatim.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::quote::{CERT_DATA_PCK_CHAIN, Quote};

pub mod qcnl;
pub mod staple;

/// Intel's Provisioning Certification Service, v4 API base (without `/sgx/certification/v4`).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Largest collateral response body accepted (TCB info for one FMSPC is ~10 KiB).
pub const MAX_RESPONSE_LEN: u64 = 1024 * 1024;
/// Largest collateral file accepted from disk.
pub const MAX_COLLATERAL_FILE_LEN: u64 = 4 * 1024 * 1024;
/// Default timeout to connect to the PCCS.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout for one whole PCCS request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// At most this many (FMSPC, CA) pairs are kept in memory.
pub const MAX_CACHED_PLATFORMS: usize = 1024;

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
#[derive(Debug)]
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
        }
    }
}

impl std::error::Error for CollateralError {}

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

    /// Reads dcap-qvl's `QuoteCollateralV3` JSON form from `path`.
    pub fn from_file(path: &Path) -> Result<Self, CollateralError> {
        let bytes = read_bounded(path, MAX_COLLATERAL_FILE_LEN).map_err(|detail| {
            CollateralError::File {
                path: path.to_owned(),
                detail,
            }
        })?;
        let collateral = serde_json::from_slice(&bytes).map_err(|e| CollateralError::File {
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

/// A blocking PCCS v4 client with an in-memory and optional on-disk cache.
pub struct PccsClient {
    base_url: String,
    agent: ureq::Agent,
    disk_cache: Option<PathBuf>,
    cache: Mutex<HashMap<PlatformKey, Cached>>,
    /// FMSPC and CA by SHA-256 of the quote's PCK chain, so a cache hit parses no certificate.
    platforms: Mutex<HashMap<[u8; 32], PlatformKey>>,
}

/// Which collateral set a quote needs: its FMSPC and the CA that issued its PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlatformKey {
    fmspc: String,
    ca: &'static str,
}

#[derive(Clone)]
struct Cached {
    collateral: Arc<QuoteCollateralV3>,
    next_update: u64,
}

impl PccsClient {
    /// A client for `base_url`, which may end in `/sgx/certification/v4` or not
    /// (`https://pccs.example:8081` and `https://pccs.example:8081/sgx/certification/v4/` both work).
    pub fn new(base_url: &str) -> Self {
        Self::with_timeouts(base_url, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`PccsClient::new`] with explicit timeouts.
    pub fn with_timeouts(base_url: &str, connect: Duration, request: Duration) -> Self {
        Self::with_agent(base_url, agent(connect, request, true))
    }

    /// Like [`PccsClient::new`], without checking the PCCS's TLS certificate: what QCNL's
    /// `use_secure_cert: false` asks for (see [`qcnl`] for why collateral stays verified).
    pub fn without_tls_verification(base_url: &str) -> Self {
        Self::with_agent(
            base_url,
            agent(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, false),
        )
    }

    fn with_agent(base_url: &str, agent: ureq::Agent) -> Self {
        Self {
            base_url: normalize_base(base_url),
            agent,
            disk_cache: None,
            cache: Mutex::default(),
            platforms: Mutex::default(),
        }
    }

    /// Also keeps collateral in `dir` (one JSON file per FMSPC and CA), so a restart does not
    /// refetch what is still valid.
    pub fn with_disk_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.disk_cache = Some(dir.into());
        self
    }

    /// The normalized base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Fetches the collateral for one platform from the PCCS, bypassing every cache.
    fn fetch(&self, key: &PlatformKey) -> Result<QuoteCollateralV3, CollateralError> {
        let base = format!("{}/sgx/certification/v4", self.base_url);
        let url = format!("{base}/pckcrl?ca={}&encoding=der", key.ca);
        let (pck_crl, headers) = self.get(&url)?;
        let pck_crl_issuer_chain = header(&url, &headers, &["SGX-PCK-CRL-Issuer-Chain"])?;

        let url = format!("{base}/tcb?fmspc={}", key.fmspc);
        let (body, headers) = self.get(&url)?;
        let tcb_info_issuer_chain = header(
            &url,
            &headers,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let (tcb_info, tcb_info_signature) = signed_json(&url, &body, "tcbInfo")?;

        let url = format!("{base}/qe/identity");
        let (body, headers) = self.get(&url)?;
        let qe_identity_issuer_chain =
            header(&url, &headers, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let (qe_identity, qe_identity_signature) = signed_json(&url, &body, "enclaveIdentity")?;

        let url = format!("{base}/rootcacrl");
        let (body, _) = self.get(&url)?;
        let root_ca_crl = decode_root_crl(&body).ok_or_else(|| CollateralError::Response {
            url,
            detail: "root CA CRL is neither DER nor hex DER".into(),
        })?;

        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain,
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

    fn get(&self, url: &str) -> Result<(Vec<u8>, ureq::http::HeaderMap), CollateralError> {
        let http = |detail: String| CollateralError::Http {
            url: url.to_owned(),
            detail,
        };
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(CollateralError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_LEN)
            .read_to_vec()
            .map_err(|e| {
                http(format!(
                    "reading body (limit {MAX_RESPONSE_LEN} bytes): {e}"
                ))
            })?;
        Ok((body, response.headers().clone()))
    }

    fn platform_key(&self, quote: &Quote) -> Result<PlatformKey, CollateralError> {
        use sha2::Digest as _;
        let chain: [u8; 32] = sha2::Sha256::digest(&quote.signature.cert_data).into();
        if let Some(key) = lock(&self.platforms).get(&chain) {
            return Ok(key.clone());
        }
        let key = platform_key(quote)?;
        let mut platforms = lock(&self.platforms);
        if platforms.len() >= MAX_CACHED_PLATFORMS {
            platforms.clear();
        }
        platforms.insert(chain, key.clone());
        Ok(key)
    }

    fn disk_path(&self, key: &PlatformKey) -> Option<PathBuf> {
        self.disk_cache
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.json", key.fmspc, key.ca)))
    }

    fn load_disk(&self, key: &PlatformKey, now: u64) -> Option<Cached> {
        let path = self.disk_path(key)?;
        let bytes = read_bounded(&path, MAX_COLLATERAL_FILE_LEN).ok()?;
        let collateral: QuoteCollateralV3 = serde_json::from_slice(&bytes).ok()?;
        let next_update = next_update(&collateral).ok()?;
        (next_update > now).then(|| Cached {
            collateral: Arc::new(collateral),
            next_update,
        })
    }

    fn store_disk(&self, key: &PlatformKey, collateral: &QuoteCollateralV3) -> std::io::Result<()> {
        let Some(path) = self.disk_path(key) else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(collateral)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

impl CollateralSource for PccsClient {
    fn collateral(
        &self,
        quote: &Quote,
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        let key = self.platform_key(quote)?;
        if let Some(hit) = lock(&self.cache).get(&key).filter(|c| c.next_update > now) {
            return Ok(Arc::clone(&hit.collateral));
        }
        let cached = match self.load_disk(&key, now) {
            Some(cached) => cached,
            None => {
                let collateral = self.fetch(&key)?;
                let next_update =
                    next_update(&collateral).map_err(|detail| CollateralError::Response {
                        url: self.base_url.clone(),
                        detail,
                    })?;
                // The disk cache is an optimisation: failing to write it must not fail verification.
                let _ = self.store_disk(&key, &collateral);
                Cached {
                    collateral: Arc::new(collateral),
                    next_update,
                }
            }
        };
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED_PLATFORMS {
            cache.retain(|_, c| c.next_update > now);
            if cache.len() >= MAX_CACHED_PLATFORMS {
                cache.clear();
            }
        }
        cache.insert(key, cached.clone());
        Ok(cached.collateral)
    }

    fn describe(&self) -> String {
        format!("PCCS {}", self.base_url)
    }
}

/// One agent per client, so the requests of one fetch share a kept-alive connection.
fn agent(connect: Duration, request: Duration, verify_tls: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_global(Some(request))
        .http_status_as_error(false)
        .max_response_header_size(64 * 1024)
        .user_agent(concat!("occlum-ratls/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(!verify_tls)
                .build(),
        )
        .build()
        .into()
}

/// The earliest `nextUpdate` of the TCB info, the QE identity and both CRLs, in unix seconds:
/// after it the collateral is stale and must be refetched.
pub fn next_update(collateral: &QuoteCollateralV3) -> Result<u64, String> {
    let (_, tcb) = json_window(&collateral.tcb_info, "TCB info")?;
    let (_, qe) = json_window(&collateral.qe_identity, "QE identity")?;
    let mut earliest = tcb.min(qe);
    for (crl, what) in [
        (&collateral.pck_crl, "PCK CRL"),
        (&collateral.root_ca_crl, "root CA CRL"),
    ] {
        if let Some(next) = crl_next_update(crl).map_err(|e| format!("{what}: {e}"))? {
            earliest = earliest.min(next);
        }
    }
    Ok(earliest)
}

/// `(issueDate, nextUpdate)` of a TCB info or QE identity JSON body, in unix seconds.
pub fn json_window(json: &str, what: &str) -> Result<(u64, u64), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Window {
        issue_date: String,
        next_update: String,
    }
    let w: Window = serde_json::from_str(json).map_err(|e| format!("{what}: {e}"))?;
    Ok((
        rfc3339(&w.issue_date, what)?,
        rfc3339(&w.next_update, what)?,
    ))
}

fn rfc3339(text: &str, what: &str) -> Result<u64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| format!("{what}: {text:?} is not an RFC 3339 time after 1970"))
}

fn crl_next_update(der: &[u8]) -> Result<Option<u64>, String> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| format!("not a DER CRL: {e}"))?;
    Ok(crl
        .next_update()
        .and_then(|t| u64::try_from(t.timestamp()).ok()))
}

/// The FMSPC and issuing CA of the quote's PCK certificate (the first in its PEM chain).
fn platform_key(quote: &Quote) -> Result<PlatformKey, CollateralError> {
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

/// The PCCS URL in Intel's QCNL configuration (`sgx_default_qcnl.conf`): the JSON form (DCAP
/// 1.13 and later; `//` and `#` comment lines allowed) with `"pccs_url"`, or the older
/// `PCCS_URL=` line form. Returned as written; [`PccsClient::new`] accepts it as is.
pub fn qcnl_pccs_url(text: &str) -> Option<String> {
    let json: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//") && !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) {
        return value
            .get("pccs_url")
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
    }
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("PCCS_URL"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|url| url.trim().to_owned())
        .find(|url| !url.is_empty())
}

/// `url` without a trailing `/sgx/certification/v3` or `/v4` (QCNL files name either).
pub fn normalize_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = ["/sgx/certification/v3", "/sgx/certification/v4"]
        .iter()
        .find_map(|suffix| url.strip_suffix(suffix))
        .unwrap_or(url);
    url.trim_end_matches('/').to_owned()
}

fn header(
    url: &str,
    headers: &ureq::http::HeaderMap,
    names: &[&str],
) -> Result<String, CollateralError> {
    let value =
        names
            .iter()
            .find_map(|n| headers.get(*n))
            .ok_or_else(|| CollateralError::Response {
                url: url.to_owned(),
                detail: format!("missing header {}", names.join(" or ")),
            })?;
    let value = value.to_str().map_err(|_| CollateralError::Response {
        url: url.to_owned(),
        detail: format!("header {} is not ASCII", names.join("/")),
    })?;
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| CollateralError::Response {
            url: url.to_owned(),
            detail: "issuer chain header is not UTF-8".into(),
        })
}

/// Splits `{"<field>": {...}, "signature": "<hex>"}` into the exact bytes of the object and
/// the decoded signature. The object is not re-serialized: its signature covers these bytes.
fn signed_json(url: &str, body: &[u8], field: &str) -> Result<(String, Vec<u8>), CollateralError> {
    let bad = |detail: String| CollateralError::Response {
        url: url.to_owned(),
        detail,
    };
    let map: HashMap<&str, &RawValue> =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    let object = map
        .get(field)
        .ok_or_else(|| bad(format!("missing field {field:?}")))?;
    let signature = map
        .get("signature")
        .ok_or_else(|| bad("missing field \"signature\"".into()))?;
    let signature: String = serde_json::from_str(signature.get())
        .map_err(|_| bad("\"signature\" is not a string".into()))?;
    let signature = hex::decode(signature).map_err(|_| bad("\"signature\" is not hex".into()))?;
    Ok((object.get().to_owned(), signature))
}

/// Intel's PCS serves DER; a PCCS serves the same DER as hex text.
fn decode_root_crl(body: &[u8]) -> Option<Vec<u8>> {
    if body.first() == Some(&0x30) {
        return Some(body.to_vec());
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    hex::decode(text).ok()
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache lock cannot leave the map inconsistent (every update is
    // one insert or clear), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
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

    #[test]
    fn signed_json_keeps_the_exact_bytes_of_the_signed_object() {
        let body = br#"{"tcbInfo":{"b":1,  "a":[2, 3]},"signature":"0aff"}"#;
        let (json, sig) = signed_json("u", body, "tcbInfo").unwrap();
        assert_eq!(json, r#"{"b":1,  "a":[2, 3]}"#);
        assert_eq!(sig, vec![0x0a, 0xff]);
        assert!(signed_json("u", br#"{"signature":"00"}"#, "tcbInfo").is_err());
        assert!(signed_json("u", br#"{"tcbInfo":{},"signature":"zz"}"#, "tcbInfo").is_err());
    }

    #[test]
    fn base_urls_are_normalized_with_or_without_the_api_path() {
        assert_eq!(
            normalize_base("https://p:8081/sgx/certification/v4/"),
            "https://p:8081"
        );
        assert_eq!(normalize_base("https://p:8081/"), "https://p:8081");
    }

    #[test]
    fn a_root_crl_is_accepted_as_der_or_hex() {
        assert_eq!(decode_root_crl(&[0x30, 1, 0]), Some(vec![0x30, 1, 0]));
        assert_eq!(decode_root_crl(b"300100\n"), Some(vec![0x30, 1, 0]));
        assert_eq!(decode_root_crl(b"nope"), None);
    }

    #[test]
    fn an_unreachable_pccs_is_an_http_error_naming_the_url() {
        let client = PccsClient::with_timeouts(
            "http://127.0.0.1:9",
            Duration::from_millis(300),
            Duration::from_secs(1),
        );
        let q = Quote::parse(SAMPLE_QUOTE).unwrap();
        let err = client.collateral(&q, 0).expect_err("must fail");
        assert!(matches!(err, CollateralError::Http { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("127.0.0.1:9/sgx/certification/v4/pckcrl"),
            "{err}"
        );
    }
}
