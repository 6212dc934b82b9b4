//! A PCCS client: DCAP collateral fetched from a PCCS (Intel's PCS or a caching service) over
//! the v4 REST API, for `ratls`'s verifier, which takes it as a [`CollateralSource`].
//!
//! [`PccsClient`] fetches with a blocking client (ureq), per-phase timeouts and response-size
//! limits, and caches in memory and optionally on disk until the earliest `nextUpdate`. Kept
//! out of `ratls` so that the verifier links no network, no threads and no disk writes.
//!
//! A peer's certificate names the FMSPC and CA, so fetching cannot be left to unauthenticated
//! peers: the quote's PCK chain is verified against the trust anchor before anything is fetched
//! for it; at most [`MAX_CONCURRENT_FETCHES`] fetches run at once, each on its own thread, and a
//! caller waits for one at most [`PccsClient::with_fetch_wait`]; a failed fetch is not retried
//! for a growing backoff ([`MIN_FAILURE_BACKOFF`] to [`MAX_FAILURE_BACKOFF`]). Collateral past
//! its `nextUpdate` is still handed out while no fresh one can be had, so the verifier's grace
//! period (`collateral_grace_secs`) decides, not the PCCS's availability. Nothing fetched is
//! trusted here: the verifier checks every signature and date under the trust anchor.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcap_qvl::QuoteCollateralV3;
use ratls::anchor::TrustAnchor;
use ratls::collateral::{
    CollateralError, CollateralSource, MAX_COLLATERAL_FILE_LEN, PlatformKey, StaticCollateral,
    next_update, platform_key,
};
use ratls::quote::{CERT_DATA_PCK_CHAIN, Quote};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

pub mod qcnl;
pub mod response;

/// Intel's Provisioning Certification Service, v4 API base (without `/sgx/certification/v4`).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Largest collateral response body accepted (TCB info for one FMSPC is ~10 KiB).
pub const MAX_RESPONSE_LEN: u64 = 1024 * 1024;
/// Default timeout to connect to the PCCS.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout for one whole PCCS request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// At most this many (FMSPC, CA) pairs are kept in memory.
pub const MAX_CACHED_PLATFORMS: usize = 1024;
/// At most this many collateral fetches run at once; more new platforms are refused meanwhile.
pub const MAX_CONCURRENT_FETCHES: usize = 4;
/// A failed fetch for a platform is not retried for this long (doubling per failure)...
pub const MIN_FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// ...up to this long.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);
/// Most certificates a PCK chain may carry (leaf, intermediate CA, root; dcap-qvl allows 4
/// intermediates).
const MAX_PCK_CHAIN_LEN: usize = 5;

/// Reads an offline collateral file (dcap-qvl's `QuoteCollateralV3` JSON, `--collateral FILE`),
/// at most [`MAX_COLLATERAL_FILE_LEN`] bytes. The disk read lives here, not in `ratls`, so the
/// verifier reads no file; parsing is `ratls`'s [`StaticCollateral::from_json`].
pub fn read_collateral_file(path: &Path) -> Result<StaticCollateral, CollateralError> {
    let bytes =
        fileio::read_bounded(path, MAX_COLLATERAL_FILE_LEN).map_err(|e| CollateralError::File {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    StaticCollateral::from_json(&bytes, path)
}

/// A [`PccsClient`]'s counters, for a server's metrics: plain atomics, no metrics library.
#[derive(Debug, Default)]
pub struct CollateralStats {
    hits: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Unix seconds of the last successful fetch; 0: none yet.
    last_success: AtomicU64,
}

impl CollateralStats {
    /// Lookups answered from the in-memory cache with collateral before its `nextUpdate`.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Fetches started (each tries the disk cache, then the PCCS).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches that ended without collateral.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// When the last fetch that brought collateral ended (unix seconds), if one did.
    pub fn last_success_unix(&self) -> Option<u64> {
        Some(self.last_success.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }
}

/// A blocking PCCS v4 client with an in-memory and optional on-disk cache.
pub struct PccsClient {
    stats: Arc<CollateralStats>,
    fetcher: Arc<Fetcher>,
    /// The PCK chain of a quote must lead here before anything is fetched for its platform.
    anchor: TrustAnchor,
    /// How long a caller waits for a fetch it started; `None`: until the fetch ends.
    fetch_wait: Option<Duration>,
    state: Arc<(Mutex<FetchState>, Condvar)>,
    /// FMSPC and CA by SHA-256 of the quote's PCK chain (verified against `anchor`), so a cache
    /// hit parses and verifies no certificate.
    platforms: Mutex<HashMap<[u8; 32], PlatformKey>>,
}

/// What a fetch needs, shared with the thread that runs it.
struct Fetcher {
    base_url: String,
    agent: ureq::Agent,
    disk_cache: Option<PathBuf>,
}

#[derive(Clone)]
struct Cached {
    collateral: Arc<QuoteCollateralV3>,
    next_update: u64,
}

/// Every platform's collateral, fetches in flight and recent failures.
#[derive(Default)]
struct FetchState {
    entries: HashMap<PlatformKey, Entry>,
    in_flight: usize,
}

#[derive(Default)]
struct Entry {
    /// The newest collateral fetched, possibly past its `nextUpdate`.
    good: Option<Cached>,
    fetching: bool,
    failure: Option<Failure>,
}

struct Failure {
    error: CollateralError,
    retry_at: Instant,
    backoff: Duration,
}

/// What [`PccsClient::collateral`] decided under the lock.
enum Step {
    Done(Result<Arc<QuoteCollateralV3>, CollateralError>),
    Wait,
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
            stats: Arc::default(),
            fetcher: Arc::new(Fetcher {
                base_url: normalize_base(base_url),
                agent,
                disk_cache: None,
            }),
            anchor: TrustAnchor::intel(),
            fetch_wait: None,
            state: Arc::default(),
            platforms: Mutex::default(),
        }
    }

    /// Also keeps collateral in `dir` (one JSON file per FMSPC and CA), so a restart does not
    /// refetch what is still valid.
    pub fn with_disk_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        if let Some(fetcher) = Arc::get_mut(&mut self.fetcher) {
            fetcher.disk_cache = Some(dir.into());
        }
        self
    }

    /// The root quotes' PCK chains must lead to before their collateral is fetched (default:
    /// Intel's SGX Root CA). Give the verifier's anchor.
    pub fn with_trust_anchor(mut self, anchor: TrustAnchor) -> Self {
        self.anchor = anchor;
        self
    }

    /// A caller that starts a fetch waits for it at most `wait`, then gets
    /// [`CollateralError::Pending`] while the fetch goes on in the background; callers that find
    /// a fetch already running do not wait at all. For servers, whose threads also serve
    /// verified clients. Default: wait until the fetch ends (a client with one peer).
    pub fn with_fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = Some(wait);
        self
    }

    /// This client's counters (cache hits, fetches, failures, last success).
    pub fn stats(&self) -> Arc<CollateralStats> {
        Arc::clone(&self.stats)
    }

    /// The normalized base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.fetcher.base_url
    }

    fn platform_key(&self, quote: &Quote, now: u64) -> Result<PlatformKey, CollateralError> {
        use sha2::Digest as _;
        let chain: [u8; 32] = sha2::Sha256::digest(&quote.signature.cert_data).into();
        if let Some(key) = lock(&self.platforms).get(&chain) {
            return Ok(key.clone());
        }
        if quote.signature.cert_data_type == CERT_DATA_PCK_CHAIN {
            check_pck_chain(&self.anchor, &quote.signature.cert_data, now)?;
        }
        let key = platform_key(quote)?;
        let mut platforms = lock(&self.platforms);
        if platforms.len() >= MAX_CACHED_PLATFORMS {
            platforms.clear();
        }
        platforms.insert(chain, key.clone());
        Ok(key)
    }

    /// Under the state lock: a fresh hit, a decision not to wait, or a fetch started (`Wait`).
    fn step(&self, state: &mut FetchState, key: &PlatformKey, now: u64, started: bool) -> Step {
        if !state.entries.contains_key(key) && state.entries.len() >= MAX_CACHED_PLATFORMS {
            state
                .entries
                .retain(|_, e| e.fetching || e.good.as_ref().is_some_and(|c| c.next_update > now));
        }
        let in_flight = state.in_flight;
        let entry = state.entries.entry(key.clone()).or_default();
        if let Some(good) = entry.good.as_ref().filter(|c| c.next_update > now) {
            if !started {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
            }
            return Step::Done(Ok(Arc::clone(&good.collateral)));
        }
        // Past nextUpdate, the old collateral still serves while no fresh one can be had: the
        // verifier's grace period decides whether it is acceptable.
        let stale = entry.good.as_ref().map(|c| Arc::clone(&c.collateral));
        let or_stale = |e: CollateralError| Step::Done(stale.clone().ok_or(e));
        if entry.fetching {
            if started || self.fetch_wait.is_none() {
                return Step::Wait;
            }
            return or_stale(CollateralError::Pending {
                fmspc: key.fmspc.clone(),
                ca: key.ca,
            });
        }
        if let Some(failure) = &entry.failure {
            let left = failure.retry_at.saturating_duration_since(Instant::now());
            if started || !left.is_zero() {
                let error = if started {
                    failure.error.clone()
                } else {
                    CollateralError::Backoff {
                        last: Box::new(failure.error.clone()),
                        retry_in: left,
                    }
                };
                return or_stale(error);
            }
        }
        if started {
            // The fetch ended without a result or a failure: cannot happen; fail closed.
            return or_stale(CollateralError::Pending {
                fmspc: key.fmspc.clone(),
                ca: key.ca,
            });
        }
        if in_flight >= MAX_CONCURRENT_FETCHES {
            return or_stale(CollateralError::Busy {
                fmspc: key.fmspc.clone(),
                ca: key.ca,
                limit: MAX_CONCURRENT_FETCHES,
            });
        }
        if let Err(e) = self.spawn_fetch(key.clone(), now) {
            // No thread: a failure like any other, answered now and retried after the backoff.
            let error = CollateralError::Http {
                url: self.fetcher.base_url.clone(),
                detail: format!("starting a fetch thread: {e}"),
            };
            entry.failure = Some(Failure {
                error: error.clone(),
                retry_at: Instant::now() + MIN_FAILURE_BACKOFF,
                backoff: MIN_FAILURE_BACKOFF,
            });
            return or_stale(error);
        }
        entry.fetching = true;
        state.in_flight += 1;
        Step::Wait
    }

    /// Runs one fetch on its own thread, which records its outcome. Called under the state
    /// lock, which the thread takes only when the fetch is done.
    fn spawn_fetch(&self, key: PlatformKey, now: u64) -> std::io::Result<()> {
        let fetcher = Arc::clone(&self.fetcher);
        let state = Arc::clone(&self.state);
        let stats = Arc::clone(&self.stats);
        let job = move || {
            stats.fetches.fetch_add(1, Ordering::Relaxed);
            let outcome = fetcher.fetch_cached(&key, now);
            match &outcome {
                Ok(_) => {
                    let unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(1, |d| d.as_secs().max(1));
                    stats.last_success.store(unix, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            let (lock_, ready) = &*state;
            let mut state = lock(lock_);
            state.in_flight = state.in_flight.saturating_sub(1);
            let entry = state.entries.entry(key).or_default();
            entry.fetching = false;
            match outcome {
                Ok(cached) => {
                    entry.good = Some(cached);
                    entry.failure = None;
                }
                Err(error) => {
                    let backoff = entry.failure.as_ref().map_or(MIN_FAILURE_BACKOFF, |f| {
                        (f.backoff * 2).min(MAX_FAILURE_BACKOFF)
                    });
                    entry.failure = Some(Failure {
                        error,
                        retry_at: Instant::now() + backoff,
                        backoff,
                    });
                }
            }
            ready.notify_all();
        };
        std::thread::Builder::new()
            .name("pccs-fetch".into())
            .spawn(job)
            .map(drop)
    }
}

impl Fetcher {
    /// The disk cache's entry if still fresh, else the PCCS's answer (stored on disk), else
    /// the disk cache's stale entry if there is one, else the PCCS's error.
    fn fetch_cached(&self, key: &PlatformKey, now: u64) -> Result<Cached, CollateralError> {
        let disk = self.load_disk(key);
        if let Some(fresh) = disk.as_ref().filter(|c| c.next_update > now) {
            return Ok(fresh.clone());
        }
        let fetched = self.fetch(key).and_then(|collateral| {
            let next_update = next_update(&collateral).map_err(|e| CollateralError::Response {
                url: self.base_url.clone(),
                detail: e.to_string(),
            })?;
            // The disk cache is an optimisation: failing to write it must not fail verification.
            let _ = self.store_disk(key, &collateral);
            Ok(Cached {
                collateral: Arc::new(collateral),
                next_update,
            })
        });
        match (fetched, disk) {
            (Ok(cached), _) => Ok(cached),
            (Err(_), Some(stale)) => Ok(stale),
            (Err(e), None) => Err(e),
        }
    }

    /// Fetches the collateral for one platform from the PCCS, bypassing every cache.
    fn fetch(&self, key: &PlatformKey) -> Result<QuoteCollateralV3, CollateralError> {
        response::fetch_platform(&self.base_url, &key.fmspc, key.ca, |url| self.get(url))
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

    fn disk_path(&self, key: &PlatformKey) -> Option<PathBuf> {
        self.disk_cache
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.json", key.fmspc, key.ca)))
    }

    /// The disk cache's entry for `key`, fresh or not.
    fn load_disk(&self, key: &PlatformKey) -> Option<Cached> {
        let path = self.disk_path(key)?;
        let bytes = fileio::read_bounded(&path, MAX_COLLATERAL_FILE_LEN).ok()?;
        let collateral: QuoteCollateralV3 = serde_json::from_slice(&bytes).ok()?;
        let next_update = next_update(&collateral).ok()?;
        Some(Cached {
            collateral: Arc::new(collateral),
            next_update,
        })
    }

    /// Writes through a temporary file unique to this write (created exclusively, mode 0600:
    /// collateral is public, but the cache directory's files should be writable by this
    /// process alone), renamed over the entry; the temporary file is removed on any error.
    fn store_disk(&self, key: &PlatformKey, collateral: &QuoteCollateralV3) -> std::io::Result<()> {
        let Some(path) = self.disk_path(key) else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec(collateral)?;
        fileio::write_atomic(&path, &bytes, 0o600, fileio::Durability::Fsync)
    }
}

impl CollateralSource for PccsClient {
    fn collateral(
        &self,
        quote: &Quote,
        now: u64,
    ) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        let key = self.platform_key(quote, now)?;
        let (state_lock, ready) = &*self.state;
        let mut state = lock(state_lock);
        if let Step::Done(result) = self.step(&mut state, &key, now, false) {
            return result;
        }
        let deadline = self.fetch_wait.map(|wait| Instant::now() + wait);
        loop {
            let fetching = state.entries.get(&key).is_some_and(|e| e.fetching);
            if !fetching {
                break;
            }
            state = match deadline {
                None => ready
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        match self.step(&mut state, &key, now, true) {
            Step::Done(result) => result,
            Step::Wait => Err(CollateralError::Pending {
                fmspc: key.fmspc,
                ca: key.ca,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("PCCS {}", self.fetcher.base_url)
    }
}
/// Step 0 of collateral: the quote's PCK chain (leaf first, as the quote carries it) must
/// verify against `anchor` at `now`, without revocation (the CRLs are part of what would be
/// fetched; dcap-qvl checks them later, with the whole chain, in step 3).
fn check_pck_chain(
    anchor: &TrustAnchor,
    pem_chain: &[u8],
    now: u64,
) -> Result<(), CollateralError> {
    use dcap_qvl_webpki as webpki;
    let fail = |detail: String| CollateralError::PckChain {
        detail,
        anchor: anchor.describe(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem_chain)
        .take(MAX_PCK_CHAIN_LEN + 1)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("PEM: {e}")))?;
    if certs.len() > MAX_PCK_CHAIN_LEN {
        return Err(fail(format!(
            "more than {MAX_PCK_CHAIN_LEN} certificates in the chain"
        )));
    }
    let (leaf, intermediates) = certs
        .split_first()
        .ok_or_else(|| fail("no certificate in the PEM chain".into()))?;
    let root = CertificateDer::from_slice(anchor.root_der());
    let trust_anchor = webpki::anchor_from_trusted_cert(&root)
        .map_err(|e| fail(format!("the trust anchor is not a usable root: {e}")))?;
    let leaf =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| fail(format!("PCK certificate: {e}")))?;
    let time = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(now));
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[trust_anchor],
        intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(drop)
    .map_err(|e| fail(e.to_string()))
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

/// `url` without a trailing `/sgx/certification/v3` or `/v4` (QCNL files name either).
pub fn normalize_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = ["/sgx/certification/v3", "/sgx/certification/v4"]
        .iter()
        .find_map(|suffix| url.strip_suffix(suffix))
        .unwrap_or(url);
    url.trim_end_matches('/').to_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache lock cannot leave the map inconsistent (every update is
    // one insert or clear), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_QUOTE: &[u8] = include_bytes!("../../ratls/testdata/dcap-sample/sgx_quote");

    #[test]
    fn base_urls_are_normalized_with_or_without_the_api_path() {
        assert_eq!(
            normalize_base("https://p:8081/sgx/certification/v4/"),
            "https://p:8081"
        );
        assert_eq!(normalize_base("https://p:8081/"), "https://p:8081");
    }

    /// A time inside the sample quote's validity (its README).
    const SAMPLE_TIME: u64 = 1_750_400_000;

    #[test]
    fn the_sample_quotes_pck_chain_leads_to_intels_root_and_not_elsewhere() {
        let q = Quote::parse(SAMPLE_QUOTE).unwrap();
        let chain = &q.signature.cert_data;
        check_pck_chain(&TrustAnchor::intel(), chain, SAMPLE_TIME).unwrap();
        // Before the PCK certificate's validity the chain does not verify.
        let err = check_pck_chain(&TrustAnchor::intel(), chain, 0).unwrap_err();
        assert!(matches!(err, CollateralError::PckChain { .. }), "{err}");
        // A truncated chain (the leaf alone) does not lead to the root.
        let leaf_end = std::str::from_utf8(chain)
            .unwrap()
            .find("-----END CERTIFICATE-----")
            .unwrap()
            + "-----END CERTIFICATE-----".len();
        let err =
            check_pck_chain(&TrustAnchor::intel(), &chain[..leaf_end], SAMPLE_TIME).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not verify against Intel SGX Root CA"),
            "{err}"
        );
    }

    #[test]
    fn an_unreachable_pccs_is_an_http_error_naming_the_url() {
        let client = PccsClient::with_timeouts(
            "http://127.0.0.1:9",
            Duration::from_millis(300),
            Duration::from_secs(1),
        );
        let q = Quote::parse(SAMPLE_QUOTE).unwrap();
        // Inside the sample's validity: its PCK chain verifies against Intel's root, so the
        // client goes on to the (unreachable) PCCS.
        let err = client.collateral(&q, SAMPLE_TIME).expect_err("must fail");
        assert!(matches!(err, CollateralError::Http { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("127.0.0.1:9/sgx/certification/v4/pckcrl"),
            "{err}"
        );
    }
}
