//! The KMS's own RA-TLS certificate, re-minted before it expires.
//!
//! A minted certificate is valid for `--cert-lifetime` (default
//! [`ratls::cert::DEFAULT_VALIDITY`], 24 h); a KMS runs for months. A background thread mints a fresh key, quote and certificate at half-life, and gRPC
//! core picks it up through [`ServerCredentialsFetcher`] at the next handshake, so the server
//! never presents an expired certificate and never restarts. `--cert-out` is rewritten
//! atomically each time.

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use grpcio::{CertificateRequestType, ServerCredentialsBuilder, ServerCredentialsFetcher};
use occlum_dcap::QuoteSource;
use ratls::cert::{CertError, RaTlsIdentity};
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

/// The current certificate and, when a new one is ready, the credentials gRPC should switch to.
pub struct Rotator {
    state: Mutex<State>,
}

struct State {
    /// Certificate and key PEM not yet handed to gRPC core.
    pending: Option<(String, Zeroizing<String>)>,
}

impl Rotator {
    /// Mints the first identity (so startup fails if quoting fails) and writes `cert_out`.
    pub fn start(
        source: Arc<dyn QuoteSource>,
        lifetime: Duration,
        cert_out: Option<PathBuf>,
        audit: Arc<AuditLog>,
    ) -> Result<Arc<Rotator>, CertError> {
        let mint = move |source: &dyn QuoteSource| {
            RaTlsIdentity::mint_valid_for(source, SystemTime::now(), lifetime)
        };
        let identity = mint(source.as_ref())?;
        let rotator = Arc::new(Rotator {
            state: Mutex::new(State { pending: None }),
        });
        rotator.install(&identity, cert_out.as_ref(), &audit, false);
        let weak = Arc::downgrade(&rotator);
        let renew_at = renewal_time(&identity);
        std::thread::Builder::new()
            .name("kms-cert-rotation".into())
            .spawn(move || {
                let mut next = renew_at;
                loop {
                    sleep_until(next);
                    let Some(rotator) = weak.upgrade() else { return };
                    match mint(source.as_ref()) {
                        Ok(identity) => {
                            rotator.install(&identity, cert_out.as_ref(), &audit, true);
                            next = renewal_time(&identity);
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
            .map_err(|e| CertError::Mint { detail: format!("starting the rotation thread: {e}") })?;
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
        state.pending = Some((cert_pem, identity.key_pem()));
    }

    /// The fetcher gRPC core calls at startup and before every handshake.
    pub fn fetcher(self: &Arc<Self>) -> Box<dyn ServerCredentialsFetcher + Send + Sync> {
        Box::new(Fetcher(Arc::clone(self)))
    }
}

struct Fetcher(Arc<Rotator>);

impl ServerCredentialsFetcher for Fetcher {
    fn fetch(&self) -> Result<Option<ServerCredentialsBuilder>, Box<dyn Error>> {
        let pending = self
            .0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .take();
        Ok(pending.map(|(cert_pem, key_pem)| {
            ServerCredentialsBuilder::new()
                // add_cert copies the key into a C string it wipes on drop; ours is wiped too.
                .add_cert(cert_pem.clone().into_bytes(), key_pem.as_bytes().to_vec())
                .root_cert(cert_pem.into_bytes(), CLIENT_CERT_MODE)
        }))
    }
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
