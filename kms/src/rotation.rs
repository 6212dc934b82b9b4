//! The KMS's own RA-TLS certificate, re-minted before it expires.
//!
//! A minted certificate is valid for `--cert-lifetime` (default
//! [`ratls::cert::DEFAULT_VALIDITY`], 24 h); a KMS runs for months. A background thread mints a fresh key, quote and certificate at half-life, and gRPC
//! core picks it up through [`ServerCredentialsFetcher`] at the next handshake, so the server
//! never presents an expired certificate and never restarts. `--cert-out` is rewritten
//! atomically each time.
//!
//! Each certificate also carries the DCAP collateral of the KMS's own platform (TCB info, QE
//! identity, CRLs and their issuer chains) in a non-critical extension
//! ([`ratls::collateral::staple`]), so init can verify the KMS without a PCCS request. The
//! certificate is re-minted before that collateral's earliest `nextUpdate` (at most
//! [`STAPLE_REFRESH_MARGIN`] before it), so the staple a client receives is fresh; when the
//! collateral cannot be had or is too large, the certificate carries none and clients use their
//! PCCS, and minting is retried after [`STAPLE_RETRY`].

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use grpcio::{CertificateRequestType, ServerCredentialsBuilder, ServerCredentialsFetcher};
use quote_source::QuoteSource;
use ratls::cert::{IdentityError, RaTlsIdentity};
use ratls::collateral::{CollateralError, CollateralSource, next_update, staple};
use ratls::quote::Quote;
use zeroize::Zeroizing;

use crate::audit::{AuditLog, Event, Record, Verdict};
use crate::fsutil;

/// How the server asks for client certificates: always requested, never verified by gRPC core
/// (it cannot check a quote), optional at the TLS layer so a peer without one gets an audited
/// UNAUTHENTICATED naming the problem and plain health probes work. Every GetSecret call runs
/// the RA-TLS pipeline on the certificate before anything else.
pub const CLIENT_CERT_MODE: CertificateRequestType =
    CertificateRequestType::RequestClientCertificateButDontVerify;

/// When minting fails, try again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Never re-mint more often than this.
const MIN_RENEWAL: Duration = Duration::from_secs(1);
/// Re-mint this long before the stapled collateral's `nextUpdate` (or half-way there, when
/// its window is shorter).
pub const STAPLE_REFRESH_MARGIN: Duration = Duration::from_secs(60 * 60);
/// When no collateral could be stapled, try again after this long.
pub const STAPLE_RETRY: Duration = Duration::from_secs(5 * 60);
/// When the collateral was still being fetched, try again after this long.
pub const STAPLE_RETRY_PENDING: Duration = Duration::from_secs(2);

/// Why [`Rotator::start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// The first identity could not be minted.
    Mint(IdentityError),
    /// The rotation thread could not be spawned.
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mint(e) => write!(f, "{e}"),
            Self::Thread(e) => write!(
                f,
                "certificate minting failed: starting the rotation thread: {e}"
            ),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Mint(e) => Some(e),
            Self::Thread(e) => Some(e),
        }
    }
}

/// The current certificate and, when a new one is ready, the credentials gRPC should switch to.
pub struct Rotator {
    state: Mutex<State>,
}

struct State {
    /// The current certificate and key PEM, and their generation (1 for the first). Each
    /// server's fetcher (GetSecret's, the admin API's) hands a generation to gRPC core once.
    current: Option<(String, Zeroizing<String>)>,
    generation: u64,
}

impl Rotator {
    /// Mints the first identity (so startup fails if quoting fails) and writes `cert_out`.
    ///
    /// `collateral` (the KMS's own collateral source) supplies the collateral stapled to each
    /// certificate; `None` staples nothing.
    pub fn start(
        source: Arc<dyn QuoteSource>,
        lifetime: Duration,
        cert_out: Option<PathBuf>,
        audit: Arc<AuditLog>,
        collateral: Option<Arc<dyn CollateralSource>>,
    ) -> Result<Arc<Rotator>, StartError> {
        let mint =
            move |source: &dyn QuoteSource| -> Result<(RaTlsIdentity, SystemTime), IdentityError> {
                let now = SystemTime::now();
                let mut stapled = Err(StapleMiss::from("no collateral source"));
                let identity = RaTlsIdentity::mint_stapled(source, now, lifetime, |quote| {
                    stapled = staple_for(collateral.as_deref(), quote, unix(now));
                    stapled.as_ref().ok().map(|(bytes, _)| bytes.clone())
                })?;
                let renew_at = match &stapled {
                    _ if collateral.is_none() => renewal_time(&identity),
                    Ok((bytes, until)) => {
                        eprintln!(
                            "kms: RA-TLS certificate carries this platform's collateral ({} bytes, nextUpdate {until}): clients need no PCCS request",
                            bytes.len()
                        );
                        renewal_time(&identity).min(staple_refresh_time(now, *until))
                    }
                    Err(miss) => {
                        // A fetch still on its way (cold cache at start-up) is worth a quick
                        // retry; anything else at the slow pace.
                        let retry = if miss.transient {
                            STAPLE_RETRY_PENDING
                        } else {
                            STAPLE_RETRY
                        };
                        eprintln!(
                            "kms: RA-TLS certificate carries no collateral ({}); clients fetch it from their PCCS; retrying in {retry:?}",
                            miss.why
                        );
                        renewal_time(&identity).min(now + retry)
                    }
                };
                Ok((identity, renew_at))
            };
        let (identity, renew_at) = mint(source.as_ref()).map_err(StartError::Mint)?;
        let rotator = Arc::new(Rotator {
            state: Mutex::new(State {
                current: None,
                generation: 0,
            }),
        });
        rotator.install(&identity, cert_out.as_ref(), &audit, false);
        let weak = Arc::downgrade(&rotator);
        std::thread::Builder::new()
            .name("kms-cert-rotation".into())
            .spawn(move || {
                let mut next = renew_at;
                loop {
                    sleep_until(next);
                    let Some(rotator) = weak.upgrade() else { return };
                    match mint(source.as_ref()) {
                        Ok((identity, renew_at)) => {
                            rotator.install(&identity, cert_out.as_ref(), &audit, true);
                            next = renew_at;
                        }
                        Err(e) => {
                            let mut rec = Record::new(Event::Rotation, Verdict::Rejected);
                            rec.reason = Some(format!("re-minting the KMS certificate failed, retrying: {e}"));
                            audit.write(&rec);
                            eprintln!("kms: re-minting the KMS certificate failed, retrying in {RETRY_AFTER:?}: {e}");
                            next = SystemTime::now() + RETRY_AFTER;
                        }
                    }
                }
            })
            .map_err(StartError::Thread)?;
        Ok(rotator)
    }

    fn install(
        &self,
        identity: &RaTlsIdentity,
        cert_out: Option<&PathBuf>,
        audit: &AuditLog,
        rotated: bool,
    ) {
        let cert_pem = identity.cert_pem();
        if let Some(path) = cert_out {
            if let Err(e) = fsutil::write_atomic(path, cert_pem.as_bytes(), 0o644) {
                eprintln!("kms: writing --cert-out {}: {e}", path.display());
            }
        }
        if rotated {
            let mut rec = Record::new(Event::Rotation, Verdict::Ok);
            rec.reason = Some("new RA-TLS certificate minted".into());
            audit.write(&rec);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.current = Some((cert_pem, identity.key_pem()));
        state.generation += 1;
    }

    /// The current RA-TLS identity (certificate and key), for the replica's own outbound
    /// connections (cluster mode: `kms.Replica/GetClusterKey` to a peer).
    pub fn identity(&self) -> Option<RaTlsIdentity> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (cert, key) = state.current.as_ref()?;
        RaTlsIdentity::from_pem(cert, key).ok()
    }

    /// The generation of the current identity: it changes at every re-mint, so a TLS stack
    /// of the KMS's own (`compat`) rebuilds its configuration only then.
    pub fn generation(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// The current certificate (PEM).
    pub fn cert_pem(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.current.as_ref().map(|(cert, _)| cert.clone())
    }

    /// A fetcher for one gRPC server, which gRPC core calls at startup and before every
    /// handshake: it hands over each new certificate once.
    pub fn fetcher(self: &Arc<Self>) -> Box<dyn ServerCredentialsFetcher + Send + Sync> {
        Box::new(Fetcher {
            rotator: Arc::clone(self),
            seen: AtomicU64::new(0),
        })
    }
}

struct Fetcher {
    rotator: Arc<Rotator>,
    /// The generation this server's gRPC core has.
    seen: AtomicU64,
}

impl ServerCredentialsFetcher for Fetcher {
    fn fetch(&self) -> Result<Option<ServerCredentialsBuilder>, Box<dyn Error>> {
        let pending = {
            let state = self
                .rotator
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.generation > self.seen.load(Ordering::Relaxed) {
                self.seen.store(state.generation, Ordering::Relaxed);
                state.current.clone()
            } else {
                None
            }
        };
        Ok(pending.map(|(cert_pem, key_pem)| {
            ServerCredentialsBuilder::new()
                // add_cert copies the key into a C string it wipes on drop; ours is wiped too.
                .add_cert(cert_pem.clone().into_bytes(), key_pem.as_bytes().to_vec())
                .root_cert(cert_pem.into_bytes(), CLIENT_CERT_MODE)
        }))
    }
}

/// Why a certificate was minted without a staple.
struct StapleMiss {
    why: String,
    /// The collateral is being fetched (or the fetch cap was reached): it may be there soon.
    transient: bool,
}

impl From<&str> for StapleMiss {
    fn from(why: &str) -> Self {
        String::from(why).into()
    }
}

impl From<String> for StapleMiss {
    fn from(why: String) -> Self {
        StapleMiss {
            why,
            transient: false,
        }
    }
}

/// The encoded staple for `quote` and its collateral's earliest `nextUpdate`, or why none.
fn staple_for(
    collateral: Option<&dyn CollateralSource>,
    quote: &[u8],
    now: u64,
) -> Result<(Vec<u8>, u64), StapleMiss> {
    let source = collateral.ok_or("no collateral source")?;
    let quote = Quote::parse(quote).map_err(|e| format!("own quote: {e}"))?;
    let collateral = source.collateral(&quote, now).map_err(|e| StapleMiss {
        // Not Backoff: a failed fetch is retried at the slow pace, not every few seconds.
        transient: matches!(
            e,
            CollateralError::Pending { .. } | CollateralError::Busy { .. }
        ),
        why: format!("{}: {e}", source.describe()),
    })?;
    let until = next_update(&collateral).map_err(|e| e.to_string())?;
    if until <= now {
        return Err(format!(
            "{} serves stale collateral (nextUpdate {until}, now {now})",
            source.describe()
        )
        .into());
    }
    let bytes = staple::encode(&collateral).map_err(|e| e.to_string())?;
    Ok((bytes, until))
}

/// When to re-mint so the stapled collateral is never stale: [`STAPLE_REFRESH_MARGIN`] before
/// its `nextUpdate`, or half-way there when that is sooner than the margin, but not before
/// [`STAPLE_RETRY`] (collateral that stays this close to stale is refetched at that pace).
fn staple_refresh_time(now: SystemTime, next_update: u64) -> SystemTime {
    let left = Duration::from_secs(next_update.saturating_sub(unix(now)));
    let margin = STAPLE_REFRESH_MARGIN.min(left / 2);
    now + (left - margin).max(STAPLE_RETRY.min(left))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Half-way through the certificate's remaining validity.
fn renewal_time(identity: &RaTlsIdentity) -> SystemTime {
    let now = SystemTime::now();
    let left = identity.not_after().duration_since(now).unwrap_or_default();
    now + (left / 2).max(MIN_RENEWAL)
}

fn sleep_until(when: SystemTime) {
    // Sleep in bounded steps so a wall-clock jump (suspend, NTP) is noticed.
    loop {
        let Ok(left) = when.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_secs(60)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    #[test]
    fn a_staple_is_refreshed_an_hour_before_its_next_update() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = staple_refresh_time(now, 1_000_000 + 30 * 24 * HOUR);
        assert_eq!(
            at.duration_since(now).unwrap(),
            Duration::from_secs(30 * 24 * HOUR - HOUR)
        );
    }

    #[test]
    fn a_short_window_is_refreshed_half_way_but_not_faster_than_the_retry_pace() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = staple_refresh_time(now, 1_000_000 + HOUR);
        assert_eq!(
            at.duration_since(now).unwrap(),
            Duration::from_secs(HOUR / 2)
        );
        let at = staple_refresh_time(now, 1_000_000 + 60);
        assert_eq!(at.duration_since(now).unwrap(), Duration::from_secs(60));
    }
}
