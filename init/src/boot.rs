//! The boot sequence, identical in both modes: one quote, one RA-TLS certificate, ONE attested
//! connection, every secret over it, mount, write, hand over.
//!
//! Only [`Platform`] differs between modes: where quotes come from, which root quotes must
//! chain to (with the collateral that goes with it), and how the rootfs is mounted. Secrets
//! are fetched completely before anything is mounted or written, and the mount happens
//! before any secret is written, so the secrets land in the new rootfs (Occlum's contract);
//! any failure returns before the app could start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pccs_client::qcnl::{self, QcnlConfig};
use pccs_client::{INTEL_PCS_URL, PccsClient, normalize_base};
use quote_source::QuoteSource;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::CollateralSource;
use ratls::collateral::staple::Stapled;
use ratls::tls::HandshakePeers;
use ratls::verify::{TrustAnchor, VerifiedPeer, Verifier};

use crate::config::{
    self, CollateralChoice, IMAGE_KEY_SECRET, ImageType, InitRaConf, KmsAddress, KmsKey,
};
use crate::error::{InitError, Stage};
use crate::fsutil;
use crate::image_key::ImageKey;
use crate::kms::{self, KmsError, Secret};
use crate::steplog::{StepLog, timed};

/// What differs between Occlum mode and host mode.
pub struct Platform {
    /// Produces this enclave's quote.
    pub quotes: Box<dyn QuoteSource>,
    /// The root the KMS's quote must chain to.
    pub anchor: TrustAnchor,
    /// Collateral to use when the configuration names none (host mode: the simulated
    /// platform's own; Occlum: none, so `sgx_default_qcnl.conf` or Intel's PCS).
    pub default_collateral: Option<CollateralChoice>,
    /// Mounts the rootfs.
    pub mounter: Box<dyn Mounter>,
}

/// Mounts (or unpacks) the rootfs, unlocking it with `image_key` when it is encrypted.
pub trait Mounter {
    /// Mounts; returns the directory secrets are written under and a line for the log.
    fn mount(
        &mut self,
        image_type: ImageType,
        key: Option<&ImageKey>,
    ) -> Result<Mounted, InitError>;
}

/// A mounted rootfs.
#[derive(Debug, Clone)]
pub struct Mounted {
    /// The rootfs root: `/` in Occlum, the unpacked directory in host mode.
    pub root: PathBuf,
    /// What was mounted, for the log.
    pub detail: String,
}

/// The configuration a boot runs on.
pub struct BootConfig {
    /// The initfs root the config came from (`/` in Occlum): resolves `sgx_default_qcnl.conf`.
    pub initfs: PathBuf,
    /// `init_ra_conf.json`, validated.
    pub conf: InitRaConf,
    /// `image_config.json`.
    pub image_type: ImageType,
}

/// Runs the boot sequence; returns the mounted rootfs with every secret written.
pub fn boot(platform: Platform, config: BootConfig, log: &StepLog) -> Result<Mounted, InitError> {
    let Platform {
        quotes,
        anchor,
        default_collateral,
        mut mounter,
    } = platform;
    let BootConfig {
        initfs,
        conf,
        image_type,
    } = config;
    warn_if_simulated(quotes.as_ref(), &anchor, log);

    let identity = mint_identity(quotes.as_ref(), log)?;
    let collateral = collateral_source(
        conf.collateral.clone().or(default_collateral),
        &initfs,
        &anchor,
        log,
    )?;
    // The KMS staples its own collateral to its certificate: when it is fresh and covers the
    // KMS's platform, the boot makes no PCCS request (its signatures are checked all the same).
    let stapled = Arc::new(Stapled::new(collateral));
    let verifier = Arc::new(Verifier::new(
        anchor,
        Arc::clone(&stapled) as Arc<dyn CollateralSource>,
        conf.policy,
    ));
    let (tls, peers) = ratls::tls::attested_client_config(Arc::clone(&verifier), &identity)
        .map_err(|e| InitError::new(Stage::Internal, "building the TLS client configuration", e))?;
    let kms = AttestedKms {
        servers: &conf.kms_servers,
        tls: Arc::new(tls),
        peers: &peers,
        stapled: &stapled,
    };
    drop(identity);

    let encrypted = matches!(image_type, ImageType::Encrypted);
    let names: Vec<&str> = encrypted
        .then_some(IMAGE_KEY_SECRET)
        .into_iter()
        .chain(conf.kms_keys.iter().map(|k| k.name.as_str()))
        .collect();
    let fetched = kms.fetch_all(&names, conf.connect_deadline, log)?;
    let (image_key, secrets) = split_image_key(encrypted, fetched, &conf.kms_keys)?;

    // Step 4: mount, so the secrets land in the new rootfs.
    let mounted = timed(
        log,
        "mount",
        || mounter.mount(image_type, image_key.as_ref()),
        |m| m.detail.clone(),
    )?;
    drop(image_key);
    write_secrets(&mounted.root, secrets, log)?;
    Ok(mounted)
}

/// Step 1: one quote over a fresh key, one RA-TLS certificate.
fn mint_identity(quotes: &dyn QuoteSource, log: &StepLog) -> Result<RaTlsIdentity, InitError> {
    timed(
        log,
        "quote",
        || {
            RaTlsIdentity::mint(quotes).map_err(|e| {
                InitError::new(
                    Stage::Quote,
                    format!(
                        "minting this enclave's RA-TLS certificate ({})",
                        quotes.describe()
                    ),
                    e,
                )
            })
        },
        |id| {
            format!(
                "{}-byte quote from {}; ECDSA P-256 RA-TLS certificate",
                id.quote().len(),
                quotes.describe()
            )
        },
    )
}

/// The KMS and everything needed to attest it on a connection.
struct AttestedKms<'a> {
    /// The KMS's addresses, in the order they are tried (replicas of one KMS).
    servers: &'a [KmsAddress],
    tls: Arc<rustls::ClientConfig>,
    peers: &'a HandshakePeers,
    stapled: &'a Stapled,
}

impl AttestedKms<'_> {
    /// Step 2: every secret in `names`, in order, over one attested connection.
    ///
    /// The deadline covers every connection: a KMS that restarts or drops the connection
    /// after the handshake, before every reply arrived, is attested again on a new one
    /// (GetSecret only reads, so asking again is safe), starting with the next address, at
    /// once while some address has not failed since the last pause. Refusals are final.
    fn fetch_all(
        &self,
        names: &[&str],
        connect_deadline: Duration,
        log: &StepLog,
    ) -> Result<Vec<Secret>, InitError> {
        let deadline = Instant::now() + connect_deadline;
        let mut pause = kms::INITIAL_BACKOFF;
        let mut closed_in_a_row = 0u32;
        let mut failed_since_pause = 0usize;
        let mut after = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (mut session, connected) = self.connect(after, left, log)?;
            let fetched = fetch(&mut session, names, log);
            let label = session.addr().to_owned();
            session.close();
            closed_in_a_row = match &fetched {
                Err(e) if kms::closed_before_reply(e) => closed_in_a_row + 1,
                _ => 0,
            };
            match fetched {
                Err(e) if closed_in_a_row >= kms::MAX_CLOSED_BEFORE_REPLY => {
                    return Err(InitError::new(
                        Stage::Secrets,
                        format!(
                            "KMS {label} completed the handshake and closed the connection before \
                             any reply {closed_in_a_row} times in a row: it most likely refuses \
                             this enclave (Occlum's own server closes without a reply when its \
                             policy does not admit the client; see the server's log)"
                        ),
                        e,
                    ));
                }
                Err(e) if e.is_transient() && failed_since_pause + 1 < connected.candidates => {
                    failed_since_pause += 1;
                    after = connected.target.map(|t| t.addr);
                    log.note(format_args!(
                        "kms {label}: the connection failed before every secret arrived ({e}); \
                         attesting again with the next address"
                    ));
                }
                Err(e) if e.is_transient() && Instant::now() + pause < deadline => {
                    failed_since_pause = 0;
                    after = connected.target.map(|t| t.addr);
                    log.note(format_args!(
                        "kms {label}: the connection failed before every secret arrived ({e}); \
                         attesting again in {} ms",
                        pause.as_millis()
                    ));
                    std::thread::sleep(pause);
                    pause = kms::next_backoff(pause);
                }
                other => {
                    return other
                        .map_err(|e| InitError::new(stage_of(&e), format!("KMS {label}"), e));
                }
            }
        }
    }

    /// One attested connection (retried within `left`, starting after the address `after`),
    /// logged with the peer it verified.
    fn connect(
        &self,
        after: Option<std::net::SocketAddr>,
        left: Duration,
        log: &StepLog,
    ) -> Result<(kms::Session, kms::Connected), InitError> {
        let connected = timed(
            log,
            "handshake",
            || {
                kms::connect(
                    self.servers,
                    after,
                    Arc::clone(&self.tls),
                    self.peers,
                    left,
                    |addr, attempt, error, next| match next {
                        kms::Next::Address(next) => log.note(format_args!(
                            "kms {addr}: attempt {attempt} failed ({error}); trying {next}"
                        )),
                        kms::Next::Pause(pause) => log.note(format_args!(
                            "kms {addr}: attempt {attempt} failed ({error}); retrying in {} ms",
                            pause.as_millis()
                        )),
                    },
                )
                .map_err(kms_failure)
            },
            |(session, connected)| {
                let origin = connected
                    .target
                    .as_ref()
                    .map_or("", |t| t.server.origin.as_str());
                format!(
                    "KMS {} ({origin}) attested in attempt {}: {}",
                    session.addr(),
                    connected.attempts,
                    describe_peer(session.peer())
                )
            },
        );
        if let Some(outcome) = self.stapled.last_outcome() {
            log.note(format_args!("KMS's collateral: {outcome}"));
        }
        connected
    }
}

/// Step 3: the replies, one per name in order: `image_key` first when the image is
/// encrypted, then each configured secret with where it goes.
fn split_image_key(
    encrypted: bool,
    fetched: Vec<Secret>,
    keys: &[KmsKey],
) -> Result<(Option<ImageKey>, Vec<Placed<'_>>), InitError> {
    let mut fetched = fetched.into_iter();
    let image_key = if encrypted {
        let secret = fetched.next().ok_or_else(|| {
            InitError::new(
                Stage::Secrets,
                "secret \"image_key\"",
                "missing from the KMS's replies",
            )
        })?;
        Some(
            ImageKey::parse(secret.bytes())
                .map_err(|e| InitError::new(Stage::Secrets, "secret \"image_key\"", e))?,
        )
    } else {
        None
    };
    Ok((image_key, keys.iter().zip(fetched).collect()))
}

/// A configured secret and its value.
type Placed<'a> = (&'a KmsKey, Secret);

/// Step 5 (after the mount): every secret under the mounted root, mode 0600.
fn write_secrets(root: &Path, secrets: Vec<Placed<'_>>, log: &StepLog) -> Result<(), InitError> {
    for (key, secret) in secrets {
        let shown = format!("/{}", key.path.display());
        timed(
            log,
            "write",
            || {
                write_secret(root, &key.path, &secret).map_err(|e| {
                    InitError::new(
                        Stage::Write,
                        format!("writing secret {:?} to {shown}", key.name),
                        e,
                    )
                })
            },
            |()| {
                format!(
                    "{} -> {shown} ({} bytes, mode 0600)",
                    key.name,
                    secret.bytes().len()
                )
            },
        )?;
    }
    Ok(())
}

/// Fetches the secrets `names` in one batch and logs their names and sizes.
fn fetch(
    session: &mut kms::Session,
    names: &[&str],
    log: &StepLog,
) -> Result<Vec<Secret>, KmsError> {
    timed(
        log,
        "secrets",
        || session.get_secrets(names),
        |secrets| {
            let sizes: Vec<String> = names
                .iter()
                .zip(secrets)
                .map(|(name, s)| format!("{name} ({} bytes)", s.bytes().len()))
                .collect();
            sizes.join(", ")
        },
    )
}

fn write_secret(root: &Path, relative: &Path, secret: &Secret) -> std::io::Result<()> {
    let path = fsutil::prepare_parents(root, relative)?;
    fsutil::write_secret_file(&path, secret.bytes())
}

fn kms_failure(e: KmsError) -> InitError {
    InitError::new(stage_of(&e), "connecting to the KMS", e)
}

/// The exit stage of a failure talking to the KMS, connecting or fetching.
fn stage_of(e: &KmsError) -> Stage {
    if e.is_attestation() {
        Stage::Attestation
    } else if e.is_unreachable() || timed_out(e) {
        // A KMS that accepts the connection but never answers is as unreachable as one
        // that refuses it: the documented "KMS unreachable" code, not a refused secret.
        Stage::Unreachable
    } else {
        Stage::Secrets
    }
}

/// True when the calls (not the KMS) gave up: the call deadline passed without an answer.
fn timed_out(e: &KmsError) -> bool {
    match e {
        KmsError::Fetch { source, .. } | KmsError::Secret { source, .. } => {
            matches!(source.as_ref(), grpc_unary::Error::Timeout { .. })
        }
        _ => false,
    }
}

/// Picks the collateral source: the configured one, else `sgx_default_qcnl.conf`'s PCCS in
/// the initfs, else Intel's PCS.
fn collateral_source(
    choice: Option<CollateralChoice>,
    initfs: &Path,
    anchor: &TrustAnchor,
    log: &StepLog,
) -> Result<Arc<dyn CollateralSource>, InitError> {
    let mut verify_tls = true;
    let choice = match choice {
        Some(choice) => choice,
        None => {
            // Part of the measured initfs (build.sh copies the host's file there), so it may
            // choose the PCCS and whether its TLS certificate is checked.
            let path = initfs.join(config::QCNL_CONF);
            let text = config::read_optional_text(&path)
                .map_err(|e| InitError::new(Stage::Config, "collateral", e))?;
            let origin = path.display().to_string();
            match text.as_deref().and_then(QcnlConfig::parse) {
                Some(qcnl) => {
                    let url = qcnl.collateral_url().unwrap_or(INTEL_PCS_URL);
                    if let Some(note) = qcnl::api_version_note(url) {
                        log.note(format_args!("{origin}: {note}"));
                    }
                    if !qcnl.use_secure_cert {
                        log.note(format_args!("{}", qcnl::insecure_tls_note(url, &origin)));
                        verify_tls = false;
                    }
                    CollateralChoice::Pccs {
                        url: normalize_base(url),
                        origin,
                    }
                }
                None => CollateralChoice::Pccs {
                    url: INTEL_PCS_URL.to_owned(),
                    origin: "default (Intel PCS)".into(),
                },
            }
        }
    };
    let source: Arc<dyn CollateralSource> = match &choice {
        // The KMS's PCK chain is checked against the verifier's anchor before any fetch.
        CollateralChoice::Pccs { url, .. } if !verify_tls => {
            Arc::new(PccsClient::without_tls_verification(url).with_trust_anchor(anchor.clone()))
        }
        CollateralChoice::Pccs { url, .. } => {
            Arc::new(PccsClient::new(url).with_trust_anchor(anchor.clone()))
        }
        CollateralChoice::File { path, .. } => Arc::new(
            pccs_client::read_collateral_file(path)
                .map_err(|e| InitError::new(Stage::Config, "loading the collateral file", e))?,
        ),
    };
    let origin = match &choice {
        CollateralChoice::Pccs { origin, .. } | CollateralChoice::File { origin, .. } => origin,
    };
    log.note(format_args!(
        "collateral for the KMS's quote: {} (from {origin})",
        source.describe()
    ));
    Ok(source)
}

fn warn_if_simulated(quotes: &dyn QuoteSource, anchor: &TrustAnchor, log: &StepLog) {
    if quotes.is_simulated() {
        log.note(format_args!(
            "WARNING: SIMULATED SGX platform ({}): this enclave's quote is NOT from hardware and proves nothing",
            quotes.describe()
        ));
    }
    if !anchor.is_intel() {
        log.note(format_args!(
            "WARNING: trusting {} instead of Intel's SGX Root CA: the KMS's attestation is SIMULATED",
            anchor.describe()
        ));
    }
}

fn describe_peer(peer: &VerifiedPeer) -> String {
    let body = peer.report_body();
    let matched = peer.matched();
    let entry = match &matched.name {
        Some(name) => format!("sgx_mrs[{}] {name:?}", matched.index),
        None => format!("sgx_mrs[{}]", matched.index),
    };
    format!(
        "mr_enclave {} mr_signer {} isv_prod_id {} isv_svn {} config_svn {}{}, TCB {}, matched {entry}{}",
        short_hex(&body.mr_enclave),
        short_hex(&body.mr_signer),
        body.isv_prod_id,
        body.isv_svn,
        body.config_svn,
        if body.debuggable() { " DEBUG" } else { "" },
        peer.tcb_status(),
        if peer.anchored_at_intel() {
            ""
        } else {
            " (SIMULATED root)"
        },
    )
}

/// The first 8 bytes in hex, enough to recognise a measurement in a log.
fn short_hex(bytes: &[u8; 32]) -> String {
    let mut out: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fetch_failing_with(source: grpc_unary::Error) -> KmsError {
        KmsError::Fetch {
            addr: "127.0.0.1:1".into(),
            names: vec!["image_key".into()],
            source: Box::new(source),
        }
    }

    #[test]
    fn calls_that_time_out_exit_as_kms_unreachable() {
        let timeout = grpc_unary::Error::Timeout {
            phase: grpc_unary::Phase::Call {
                path: "/ratls.GrSecret/GetSecret".into(),
            },
            after: Duration::from_secs(10),
        };
        // Both paths: the connection's calls (`fetch_all`) and connecting (`kms_failure`).
        // tests/tests/init_call_timeout.rs drives the binary.
        let e = fetch_failing_with(timeout);
        assert_eq!(stage_of(&e), Stage::Unreachable);
        assert_eq!(stage_of(&e).exit_code(), 5);
        assert_eq!(kms_failure(e).stage(), Stage::Unreachable);
    }

    #[test]
    fn a_refused_secret_still_exits_as_a_secrets_failure() {
        let refused = KmsError::BadReply {
            name: "image_key".into(),
            detail: "not base64".into(),
        };
        assert_eq!(stage_of(&refused), Stage::Secrets);
        assert_eq!(kms_failure(refused).stage(), Stage::Secrets);
    }
}
