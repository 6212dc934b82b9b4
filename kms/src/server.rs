//! `kms serve`: wires the quote source, trust anchor, collateral, configuration, RA-TLS
//! identity and gRPC server together, then handles SIGHUP (reload) and SIGTERM/SIGINT
//! (graceful stop).
//!
//! Production defaults: quotes from Occlum's `/dev/sgx`, Intel's root, collateral from the
//! configured PCCS. The simulated platform exists only in builds with the `simulation` feature,
//! is used only with `--sim-platform` and `--sim-identity`, never inside Occlum, and then the
//! process says so loudly on stderr and in the audit log.

use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder, ServerBuilder, ServerCredentials};
use occlum_dcap::OcclumDevice;
use pccs_client::qcnl::{self, QcnlConfig};
use pccs_client::{INTEL_PCS_URL, PccsClient};
use quote_source::QuoteSource;
use ratls::collateral::CollateralSource;
#[cfg(feature = "simulation")]
use ratls::collateral::StaticCollateral;
use ratls::verify::TrustAnchor;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::admin::{self, Admin};
use crate::audit::{AuditLog, Event, Record, Verdict};
use crate::cli::{ClusterArgs, CollateralSpec, KeySpec, OperatorsSpec, SecretsSource, ServeConfig};
use crate::cluster::config::ClusterConfig;
use crate::cluster::etcd::Etcd;
use crate::cluster::replica::{Cluster, Parts, Readiness};
use crate::cluster::slot::{SlotKey, SlotStore};
use crate::compat;
use crate::enclave::OcclumEnclaveKeys;
use crate::gate;
use crate::health;
use crate::metrics;
use crate::operators::Operators;
use crate::rotation::{self, Rotator};
use crate::runtime::{Loader, SecretsFile};
use crate::seal::FileKey;
use crate::service::{self, Shared};
use grsecret::server::MAX_REQUEST_LEN;
use ratls::collateral::staple::Stapled;
use ratls::verify::Verifier;

/// DCAP's QCNL configuration, where a PCCS URL is usually configured on SGX hosts.
pub const QCNL_CONF: &str = "/etc/sgx_default_qcnl.conf";
/// Largest QCNL configuration file read.
const MAX_QCNL_LEN: usize = 64 * 1024;
/// A TLS handshake (including the client's certificate) must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call from a client on a platform not seen before waits for its collateral.
const FETCH_WAIT: Duration = Duration::from_millis(250);
/// How long a graceful stop waits for calls in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Each etcd call's budget per endpoint (cluster mode).
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure that stops the server from starting: the step that failed, and why.
#[derive(Debug)]
pub struct ServeError {
    step: Step,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What `serve` was doing when it failed.
#[derive(Debug)]
enum Step {
    OpenAuditLog(PathBuf),
    InstallSignalHandlers,
    OpenQuoteDevice,
    /// `--sim-platform` inside Occlum (the CLI refuses it first; this is the second lock).
    #[cfg(feature = "simulation")]
    SimulatedInOcclum,
    #[cfg(feature = "simulation")]
    OpenSimPlatform(PathBuf),
    #[cfg(feature = "simulation")]
    LoadSimIdentity(PathBuf),
    ReadCollateral,
    LoadConfiguration,
    MintCertificate(String),
    ReadSealKeyFile,
    OpenEnclaveKeys,
    BuildGrpcServer,
    BindGrpcUpstream(String),
    StartGate(String),
    LoadOperators,
    StartAdmin(String),
    StartMetrics(String),
    /// Cluster mode could not start (names the file, flag or check).
    Cluster(String),
    StartHealth(String),
    /// Starting the Occlum-compat listener (`--occlum-compat-listen`).
    StartCompat(String),
}

impl ServeError {
    fn new(step: Step, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ServeError {
            step,
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::OpenAuditLog(path) => write!(f, "opening audit log {}", path.display()),
            Step::InstallSignalHandlers => f.write_str("installing signal handlers"),
            Step::OpenQuoteDevice => f.write_str(
                "opening the SGX quote device (not inside Occlum? use --sim-platform for a simulated platform)",
            ),
            #[cfg(feature = "simulation")]
            Step::SimulatedInOcclum => f.write_str(
                "--sim-platform is refused inside Occlum: a simulated root would let the host forge every client's quote",
            ),
            #[cfg(feature = "simulation")]
            Step::OpenSimPlatform(dir) => {
                write!(f, "opening simulated platform {}", dir.display())
            }
            #[cfg(feature = "simulation")]
            Step::LoadSimIdentity(path) => {
                write!(f, "reading simulated enclave identity {}", path.display())
            }
            Step::ReadCollateral => f.write_str("reading --collateral"),
            Step::LoadConfiguration => f.write_str("loading configuration"),
            Step::MintCertificate(quotes) => {
                write!(f, "minting the KMS's RA-TLS certificate from {quotes}")
            }
            Step::ReadSealKeyFile => f.write_str("reading --seal-key-file"),
            Step::OpenEnclaveKeys => f.write_str("--seal-key enclave"),
            Step::BuildGrpcServer => f.write_str("building the gRPC server"),
            Step::BindGrpcUpstream(addr) => write!(f, "binding gRPC core to {addr}"),
            Step::StartGate(listen) => write!(f, "listening on {listen}"),
            Step::LoadOperators => f.write_str("loading the pinned admin operators"),
            Step::StartAdmin(listen) => write!(f, "serving the admin API on {listen}"),
            Step::StartMetrics(listen) => {
                write!(f, "serving metrics on {listen} (--metrics-listen)")
            }
            Step::Cluster(what) => write!(f, "cluster mode: {what}"),
            Step::StartCompat(listen) => write!(
                f,
                "serving Occlum's C++ clients on {listen} (--occlum-compat-listen)"
            ),
            Step::StartHealth(listen) => {
                write!(f, "serving /livez and /readyz on {listen} (--health-listen)")
            }
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.step),
            None => write!(f, "{}", self.step),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(cfg: &ServeConfig) -> Result<(), ServeError> {
    let audit = match &cfg.audit_log {
        Some(path) => AuditLog::file(path)
            .map_err(|e| ServeError::new(Step::OpenAuditLog(path.clone()), e))?,
        None => AuditLog::stderr(),
    };
    // Register before anything slow, so an early SIGTERM is not lost.
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(|e| ServeError::new(Step::InstallSignalHandlers, e))?;

    let platform = Platform::open(cfg)?;
    let collateral = collateral_source(cfg, &platform)?;
    let loader = Arc::new(Loader {
        ra_config: cfg.ra_config.clone(),
        secrets: secrets_file(&cfg.secrets)?,
        anchor: platform.anchor.clone(),
        collateral: Arc::clone(&collateral),
    });
    let cluster_cfg = cluster_config(cfg)?;
    let operators = match &cluster_cfg {
        // In cluster mode the operators are cluster.json's.
        Some((cluster, _)) => cluster.operators.clone(),
        None => load_operators(&cfg.admin_operators)?,
    };
    // In cluster mode nothing is served before the replica holds a verified cluster state:
    // until then the image's policy and no secrets (releases are refused as not ready).
    let runtime = match &cluster_cfg {
        Some(_) => loader.placeholder(),
        None => loader.load(),
    }
    .map_err(|e| ServeError::new(Step::LoadConfiguration, e))?;
    for warning in runtime.verifier.policy().warnings() {
        eprintln!("kms: policy warning: {warning}");
    }
    let secret_count = runtime.secrets.len();
    crate::metrics::METRICS.new_generation();

    let audit = Arc::new(audit);
    let rotator = Rotator::start(
        Arc::clone(&platform.quotes),
        cfg.cert_lifetime,
        cfg.cert_out.clone(),
        Arc::clone(&audit),
        cfg.staple_collateral.then(|| Arc::clone(&collateral)),
    )
    .map_err(|e| ServeError::new(Step::MintCertificate(platform.quotes.describe()), e))?;

    let readiness = cluster_cfg.as_ref().map(|(cluster, _)| {
        Arc::new(Readiness::new(
            cluster.max_stale,
            "starting: obtaining the cluster key",
        ))
    });
    let mut shared = Shared::new(runtime, audit, cfg.reply_form);
    if let Some(readiness) = &readiness {
        shared = shared.with_cluster(Arc::clone(readiness));
    }
    let shared = Arc::new(shared);
    let cluster = match (cluster_cfg, readiness) {
        (Some((cluster_cfg, args)), Some(readiness)) => Some(start_cluster(
            cluster_cfg,
            &args,
            cfg,
            ClusterDeps {
                shared: &shared,
                loader: &loader,
                rotator: &rotator,
                anchor: &platform.anchor,
                collateral: &collateral,
                readiness,
            },
        )?),
        _ => None,
    };
    let (server, upstream) = start_grpc(cfg, &shared, &rotator, cluster.as_ref())?;
    // Shared with the Occlum-compat listener, which adds its connections to it.
    let server = Arc::new(Mutex::new(server));
    let admin = Arc::new(Admin {
        shared: Arc::clone(&shared),
        loader: Arc::clone(&loader),
        operators,
        audit_file: cfg.audit_log.clone(),
        cluster: cluster.clone(),
    });
    let started = start_admin(cfg, &rotator, &admin).and_then(|admin_server| {
        start_gate(cfg, upstream, &shared).map(|gate| (gate, admin_server))
    });
    let ((gate, port, limits), mut admin_server) = match started {
        Ok(started) => started,
        Err(e) => {
            stop_grpc(&server);
            return Err(e);
        }
    };

    let metrics = match cfg.metrics_listen.as_deref().map(metrics::Endpoint::start) {
        Some(Err(e)) => {
            stop_started(&gate, &mut admin_server, &server);
            let listen = cfg.metrics_listen.clone().unwrap_or_default();
            return Err(ServeError::new(Step::StartMetrics(listen), e));
        }
        Some(Ok(endpoint)) => format!("; metrics on http://{}/metrics", endpoint.addr()),
        None => String::new(),
    };
    // Single mode: ready from here on, the gRPC server being up. Cluster mode: ready iff the
    // replica holds the cluster key and a verified state (never tied to etcd's health).
    let ready: health::Ready = match &cluster {
        Some(cluster) => {
            let cluster = Arc::clone(cluster);
            Arc::new(move || cluster.readiness())
        }
        None => Arc::new(|| Ok(())),
    };
    let health = match cfg.health_listen.as_deref() {
        Some(listen) => match health::Endpoint::start(listen, ready) {
            Ok(endpoint) => format!("; health on http://{}/livez and /readyz", endpoint.addr()),
            Err(e) => {
                stop_started(&gate, &mut admin_server, &server);
                return Err(ServeError::new(Step::StartHealth(listen.to_owned()), e));
            }
        },
        None => String::new(),
    };

    let compat = match cfg.occlum_compat_listen.as_deref() {
        Some(listen) => {
            let deps = compat::Deps {
                server: Arc::clone(&server),
                rotator: Arc::clone(&rotator),
                audit: Arc::clone(shared.audit_arc()),
            };
            match compat::Listener::start(listen, deps) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    stop_started(&gate, &mut admin_server, &server);
                    return Err(ServeError::new(Step::StartCompat(listen.to_owned()), e));
                }
            }
        }
        None => None,
    };

    if let Some(cluster) = &cluster {
        if let Err(e) = crate::cluster::sync::start(cluster) {
            stop_started(&gate, &mut admin_server, &server);
            return Err(ServeError::new(
                Step::Cluster("starting the sync threads".into()),
                e,
            ));
        }
    }
    let mode = match &cluster {
        Some(cluster) => format!(
            "CLUSTER mode: cluster {:?} ({}), replica policy {}, etcd {}, peers {}; secrets from the cluster state once ready",
            cluster.cfg.cluster_id,
            cluster.cfg.source,
            cluster.cfg.replica_policy.name(),
            cfg.cluster
                .as_ref()
                .map(|c| c.etcd.join(","))
                .unwrap_or_default(),
            cfg.cluster
                .as_ref()
                .map(|c| c.peers.join(","))
                .unwrap_or_default(),
        ),
        None => format!("{secret_count} secrets"),
    };
    let mut start = Record::new(Event::Start, Verdict::Ok);
    start.reason = Some(format!(
        "{}; policy {}; admin API {}; trust anchor {}; collateral {}; quotes {}; at most {} connections, {} per peer{metrics}",
        mode,
        cfg.ra_config.display(),
        admin_summary(cfg, &admin.operators),
        platform.anchor.describe(),
        collateral.describe(),
        platform.quotes.describe(),
        limits.max_connections,
        limits.max_connections_per_peer,
    ));
    start.reason = start.reason.map(|r| r + &health);
    if let Some(compat) = &compat {
        start.reason = start.reason.map(|r| {
            format!(
                "{r}; Occlum C++ clients on {} (--occlum-compat-listen)",
                compat.addr()
            )
        });
    }
    shared.audit().write(&start);
    if !metrics.is_empty() {
        eprintln!(
            "kms: serving Prometheus metrics{}",
            metrics.trim_start_matches(';')
        );
    }
    if !health.is_empty() {
        eprintln!("kms: serving{}", health.trim_start_matches(';'));
    }
    if let Some(compat) = &compat {
        eprintln!(
            "kms: serving Occlum's C++ grpc_ratls clients on {} (--occlum-compat-listen; TLS by the KMS)",
            compat.addr()
        );
    }
    println!("listening on {}", with_port(&cfg.listen, port));
    let _ = std::io::stdout().flush();

    serve_signals(&mut signals, &shared, &loader, cluster.is_some());
    if let Some(cluster) = &cluster {
        cluster.stop();
    }
    // No new connections; calls in flight finish through the gate within the grace period.
    if let Some(compat) = &compat {
        compat.stop_accepting();
    }
    gate.stop_accepting();
    if let Some((admin_server, _)) = admin_server.as_mut() {
        let _ = block_on_timeout(admin_server.shutdown(), SHUTDOWN_GRACE);
    }
    stop_grpc(&server);
    drop(gate);
    Ok(())
}

/// The connection gate on the listen address, forwarding to gRPC core at `upstream`: the
/// gate, its port, and the limits it runs with (fitted to the open-file limit).
fn start_gate(
    cfg: &ServeConfig,
    upstream: SocketAddr,
    shared: &Shared,
) -> Result<(gate::Gate, u16, gate::Limits), ServeError> {
    let limits = gate::fit_fd_limit(cfg.gate);
    gate::Bound::bind(&cfg.listen)
        .and_then(|bound| {
            let port = bound.port();
            let gate = bound.start(upstream, limits, Arc::clone(shared.audit_arc()))?;
            Ok((gate, port, limits))
        })
        .map_err(|e| ServeError::new(Step::StartGate(cfg.listen.clone()), e))
}

/// The pinned operators: none, a host file (`--admin-operators`), or inside Occlum the image's
/// file if it is there. A file that exists but does not validate stops the start.
fn load_operators(spec: &OperatorsSpec) -> Result<Operators, ServeError> {
    let load =
        |path: &Path| Operators::load(path).map_err(|e| ServeError::new(Step::LoadOperators, e));
    match spec {
        OperatorsSpec::None => Ok(Operators::none(
            "start the KMS with --admin-operators FILE to pin operators",
        )),
        OperatorsSpec::File(path) => load(path),
        OperatorsSpec::ImageIfPresent(path) if path.exists() => load(path),
        OperatorsSpec::ImageIfPresent(path) => Ok(Operators::none(&format!(
            "the measured image has no {}; add one at image build to pin operators",
            path.display()
        ))),
    }
}

/// The admin API's own gRPC server on `--admin-listen`, if given (see `admin` for why it is
/// separate): the server and its port.
fn start_admin(
    cfg: &ServeConfig,
    rotator: &Arc<Rotator>,
    admin: &Arc<Admin>,
) -> Result<Option<(grpcio::Server, u16)>, ServeError> {
    let Some(listen) = &cfg.admin_listen else {
        return Ok(None);
    };
    let step = || Step::StartAdmin(listen.clone());
    // One completion queue of its own: admin connections never hold GetSecret's threads.
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(1)
            .name_prefix("kms-admin")
            .build(),
    );
    let args = ChannelBuilder::new(Arc::clone(&env))
        .max_receive_message_len(i32::try_from(admin::MAX_ADMIN_REQUEST * 2).unwrap_or(i32::MAX))
        .raw_cfg_int(
            c"grpc.server_handshake_timeout_ms".into(),
            HANDSHAKE_TIMEOUT.as_millis() as i32,
        )
        .build_args();
    let mut server = ServerBuilder::new(env)
        .channel_args(args)
        .register_service(admin::service(Arc::clone(admin)))
        .build()
        .map_err(|e| ServeError::new(step(), e))?;
    // The KMS's RA-TLS certificate; the operator's certificate is requested, and checked
    // against the pinned keys per call (TLS has proved the operator holds its key).
    let credentials =
        ServerCredentials::with_fetcher(rotator.fetcher(), rotation::CLIENT_CERT_MODE);
    let port = server
        .add_listening_port(listen.as_str(), credentials)
        .map_err(|e| ServeError::new(step(), e))?;
    server.start();
    eprintln!(
        "kms: admin API listening on {}; {}",
        with_port(listen, port),
        admin_summary(cfg, &admin.operators)
    );
    Ok(Some((server, port)))
}

fn admin_summary(cfg: &ServeConfig, operators: &Operators) -> String {
    match (&cfg.admin_listen, operators.is_empty()) {
        (None, _) => "not served (no --admin-listen)".to_owned(),
        (Some(_), true) => format!(
            "disabled, every call refused: no operator pinned ({})",
            operators.source()
        ),
        (Some(listen), false) => format!(
            "on {listen}, {} operators pinned in {}",
            operators.len(),
            operators.source()
        ),
    }
}

/// SIGHUP reloads (single mode); SIGTERM or SIGINT is audited and returns.
fn serve_signals(signals: &mut Signals, shared: &Shared, loader: &Loader, cluster: bool) {
    for signal in signals.forever() {
        match signal {
            SIGHUP if cluster => {
                // The image's files are only the genesis seed in cluster mode: reloading them
                // would replace the cluster's state with a stale one.
                let mut rec = Record::new(Event::Reload, Verdict::Rejected);
                rec.reason = Some(
                    "SIGHUP ignored in cluster mode: the state comes from the cluster (kms admin put-secret / set-policy)".into(),
                );
                shared.audit().write(&rec);
            }
            SIGHUP => reload(shared, loader),
            _ => break,
        }
    }
    let mut stop = Record::new(Event::Stop, Verdict::Ok);
    stop.reason = Some("signal received, shutting down".into());
    shared.audit().write(&stop);
}

/// Undoes what `serve` started when a later step fails: the gate stops accepting, the admin
/// API and gRPC core shut down.
fn stop_started(
    gate: &gate::Gate,
    admin_server: &mut Option<(grpcio::Server, u16)>,
    server: &Mutex<grpcio::Server>,
) {
    gate.stop_accepting();
    if let Some((admin_server, _)) = admin_server.as_mut() {
        let _ = block_on_timeout(admin_server.shutdown(), SHUTDOWN_GRACE);
    }
    stop_grpc(server);
}

/// Shuts gRPC core down, waiting at most [`SHUTDOWN_GRACE`] for calls in flight.
fn stop_grpc(server: &Mutex<grpcio::Server>) {
    let shutdown = server
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .shutdown();
    let _ = block_on_timeout(shutdown, SHUTDOWN_GRACE);
}

/// gRPC core with the services, on an ephemeral loopback port behind the gate: the server and
/// the address the gate forwards to.
fn start_grpc(
    cfg: &ServeConfig,
    shared: &Arc<Shared>,
    rotator: &Arc<Rotator>,
    cluster: Option<&Arc<Cluster>>,
) -> Result<(grpcio::Server, SocketAddr), ServeError> {
    crate::grpclog::install();
    crate::grpclog::audit_tls_failures(Arc::clone(shared.audit_arc()));
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(cfg.threads)
            .name_prefix("kms-grpc")
            .build(),
    );
    let (secrets_service, health_service) = service::services(shared);
    // Streams, connection lifetime and memory per peer: see `limits` (flood resistance).
    let args = crate::limits::apply(ChannelBuilder::new(Arc::clone(&env)))
        // Requests are one short name; the service reads at most MAX_REQUEST_LEN + 1 bytes.
        .max_receive_message_len(i32::try_from(MAX_REQUEST_LEN * 2).unwrap_or(i32::MAX))
        .raw_cfg_int(
            c"grpc.server_handshake_timeout_ms".into(),
            HANDSHAKE_TIMEOUT.as_millis() as i32,
        )
        // A client makes one connection and a few small calls: no bandwidth-delay probing
        // (a PING round trip per connection) and no per-socket channelz bookkeeping.
        .raw_cfg_int(c"grpc.http2.bdp_probe".into(), 0)
        .raw_cfg_int(c"grpc.enable_channelz".into(), 0)
        .build_args();
    let mut builder = ServerBuilder::new(Arc::clone(&env))
        .channel_args(args)
        .register_service(secrets_service)
        .register_service(health_service);
    if let Some(cluster) = cluster {
        // kms.Replica/GetClusterKey, on the main port behind the same gate.
        builder = builder.register_service(crate::cluster::keyshare::service(Arc::clone(cluster)));
    }
    let mut server = builder
        .build()
        .map_err(|e| ServeError::new(Step::BuildGrpcServer, e))?;
    let credentials =
        ServerCredentials::with_fetcher(rotator.fetcher(), rotation::CLIENT_CERT_MODE);
    let upstream = format!("{}:0", gate::UPSTREAM_HOST);
    let port = server
        .add_listening_port(upstream.as_str(), credentials)
        .map_err(|e| ServeError::new(Step::BindGrpcUpstream(upstream.clone()), e))?;
    server.start();
    let addr = SocketAddr::new(
        gate::UPSTREAM_HOST
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        port,
    );
    Ok((server, addr))
}

/// Cluster mode's configuration: `--cluster FILE`, or inside Occlum the image's
/// `/cluster.json` if present (then and only then cluster mode). `None`: single mode.
fn cluster_config(cfg: &ServeConfig) -> Result<Option<(ClusterConfig, ClusterArgs)>, ServeError> {
    let Some(args) = &cfg.cluster else {
        return Ok(None);
    };
    if args.image && !args.file.exists() {
        if !args.etcd.is_empty() || !args.peers.is_empty() {
            return Err(ServeError {
                step: Step::Cluster(format!(
                    "--etcd/--peers given, but the measured image has no {}: this KMS image is not built for cluster mode",
                    args.file.display()
                )),
                source: None,
            });
        }
        return Ok(None);
    }
    if args.etcd.is_empty() {
        return Err(ServeError {
            step: Step::Cluster(format!(
                "{} puts this KMS in cluster mode, which needs --etcd URL[,URL...]",
                args.file.display()
            )),
            source: None,
        });
    }
    let cluster = ClusterConfig::load(&args.file)
        .map_err(|e| ServeError::new(Step::Cluster("reading the cluster file".into()), e))?;
    Ok(Some((cluster, args.clone())))
}

/// What [`start_cluster`] wires the replica to.
struct ClusterDeps<'a> {
    shared: &'a Arc<Shared>,
    loader: &'a Arc<Loader>,
    rotator: &'a Arc<Rotator>,
    anchor: &'a TrustAnchor,
    collateral: &'a Arc<dyn CollateralSource>,
    readiness: Arc<Readiness>,
}

/// The replica: its etcd client, slot, replica policy (from its own quote) and state holder.
/// Its threads start once the gRPC server is up.
fn start_cluster(
    cluster_cfg: ClusterConfig,
    args: &ClusterArgs,
    cfg: &ServeConfig,
    deps: ClusterDeps<'_>,
) -> Result<Arc<Cluster>, ServeError> {
    let step = |what: &str| Step::Cluster(what.to_owned());
    let etcd =
        Etcd::new(&args.etcd, ETCD_TIMEOUT).map_err(|e| ServeError::new(step("--etcd"), e))?;
    let slot_key = match &args.slot_key {
        KeySpec::File(path) => SlotKey::File(
            FileKey::read_file(path).map_err(|e| ServeError::new(Step::ReadSealKeyFile, e))?,
        ),
        KeySpec::Enclave(policy) => SlotKey::Enclave {
            keys: Box::new(
                OcclumEnclaveKeys::open().map_err(|e| ServeError::new(Step::OpenEnclaveKeys, e))?,
            ),
            policy: *policy,
        },
    };
    let own_cert = deps.rotator.cert_pem().ok_or_else(|| ServeError {
        step: step("this replica has no RA-TLS certificate"),
        source: None,
    })?;
    let image_policy =
        crate::fsutil::read_limited(&cfg.ra_config, ratls::policy::MAX_POLICY_LEN).ok();
    let policy = crate::cluster::policy::replica_policy(
        &own_cert,
        cluster_cfg.replica_policy,
        image_policy.as_deref().map(|b| b.as_slice()),
    )
    .map_err(|e| ServeError::new(step("building the replica policy"), e))?;
    // Peers staple their collateral to their certificates, as this KMS does.
    let collateral: Arc<dyn CollateralSource> = Arc::new(Stapled::new(Arc::clone(deps.collateral)));
    let replica_verifier = Arc::new(Verifier::new(deps.anchor.clone(), collateral, policy));
    Ok(Arc::new(Cluster::new(Parts {
        cfg: cluster_cfg,
        etcd,
        peers: args.peers.clone(),
        slot: SlotStore::new(args.slot.clone(), slot_key),
        shared: Arc::clone(deps.shared),
        loader: Arc::clone(deps.loader),
        replica_verifier,
        rotator: Arc::clone(deps.rotator),
        readiness: deps.readiness,
    })))
}

/// Reloads policy and secrets together; keeps the running configuration on any error.
fn reload(shared: &Shared, loader: &Loader) {
    let mut rec = Record::new(Event::Reload, Verdict::Ok);
    // An admin change in flight completes (persisted and swapped in) before the files are read.
    let _writes = shared.write_lock();
    match loader.load() {
        Ok(runtime) => {
            let count = runtime.secrets.len();
            let version = shared.replace(runtime);
            rec.reason = Some(format!("{count} secrets loaded; state version {version}"));
            eprintln!("kms: configuration reloaded");
        }
        Err(e) => {
            rec.verdict = Verdict::Rejected;
            rec.reason = Some(format!("{e}; keeping the running configuration"));
            eprintln!("kms: reload failed, keeping the running configuration: {e}");
        }
    }
    shared.audit().write(&rec);
}

/// Where quotes come from and which root they must chain to.
struct Platform {
    quotes: Arc<dyn QuoteSource>,
    anchor: TrustAnchor,
    /// The simulated platform's own collateral, the default source in simulation.
    sim_collateral: Option<Arc<dyn CollateralSource>>,
}

impl Platform {
    fn open(cfg: &ServeConfig) -> Result<Platform, ServeError> {
        #[cfg(feature = "simulation")]
        if let Some(sim) = &cfg.sim {
            return Platform::simulated(sim);
        }
        let _ = cfg;
        let device = OcclumDevice::open().map_err(|e| ServeError::new(Step::OpenQuoteDevice, e))?;
        Ok(Platform {
            quotes: Arc::new(device),
            anchor: TrustAnchor::intel(),
            sim_collateral: None,
        })
    }

    /// The simulated platform: only in `simulation` builds, and never inside Occlum (the CLI
    /// refuses the flags there; this is the second lock on the same door).
    #[cfg(feature = "simulation")]
    fn simulated(sim: &crate::cli::SimSpec) -> Result<Platform, ServeError> {
        if occlum_dcap::is_occlum() {
            return Err(ServeError {
                step: Step::SimulatedInOcclum,
                source: None,
            });
        }
        let platform = sgx_sim::SimPlatform::open(&sim.platform)
            .map_err(|e| ServeError::new(Step::OpenSimPlatform(sim.platform.clone()), e))?;
        let identity = sgx_sim::Identity::load(&sim.identity)
            .map_err(|e| ServeError::new(Step::LoadSimIdentity(sim.identity.clone()), e))?;
        let label = format!(
            "SIMULATED root of {}",
            sim.platform.join(sgx_sim::files::ROOT_CA_PEM).display()
        );
        let anchor = ratls::danger::simulated_root(platform.root_ca_der().to_vec(), label);
        let collateral: Arc<dyn CollateralSource> = Arc::new(StaticCollateral::new(
            platform.collateral(),
            format!("SIMULATED platform {}", sim.platform.display()),
        ));
        let quotes = sgx_sim::SimQuoteSource::new(platform, identity);
        warn_simulated(&quotes.describe());
        Ok(Platform {
            quotes: Arc::new(quotes),
            anchor,
            sim_collateral: Some(collateral),
        })
    }
}

#[cfg(feature = "simulation")]
fn warn_simulated(what: &str) {
    let bar = "!".repeat(78);
    eprintln!(
        "{bar}\n!!! WARNING: THE SGX PLATFORM IS SIMULATED. NOTHING HERE IS ATTESTED BY HARDWARE."
    );
    eprintln!("!!! {what}");
    eprintln!("!!! Clients are verified against a SIMULATED root CA, not Intel's. Tests only.");
    eprintln!("!!! {}\n{bar}", sgx_sim::SIMULATED_NOTICE);
}

fn collateral_source(
    cfg: &ServeConfig,
    platform: &Platform,
) -> Result<Arc<dyn CollateralSource>, ServeError> {
    let pccs = |url: &str, verify_tls: bool| -> Arc<dyn CollateralSource> {
        let client = if verify_tls {
            PccsClient::new(url)
        } else {
            PccsClient::without_tls_verification(url)
        };
        // A new platform's first call waits at most FETCH_WAIT for its collateral; the fetch
        // goes on in the background, so gRPC threads are never held by a slow PCCS.
        let client = client
            .with_trust_anchor(platform.anchor.clone())
            .with_fetch_wait(FETCH_WAIT);
        metrics::METRICS.collateral_stats(client.stats());
        match &cfg.collateral_cache {
            Some(dir) => Arc::new(client.with_disk_cache(dir.clone())),
            None => Arc::new(client),
        }
    };
    Ok(match &cfg.collateral {
        CollateralSpec::File(path) => Arc::new(
            pccs_client::read_collateral_file(path)
                .map_err(|e| ServeError::new(Step::ReadCollateral, e))?,
        ),
        CollateralSpec::Pccs(url) => pccs(url, true),
        CollateralSpec::DefaultPccs => match &platform.sim_collateral {
            Some(sim) => Arc::clone(sim),
            None => {
                let (url, verify_tls) = default_pccs();
                pccs(&url, verify_tls)
            }
        },
    })
}

/// `$PCCS_URL`, else the collateral URL of the QCNL configuration (`collateral_service`, else
/// `pccs_url`; inside Occlum the copy in the measured image), else Intel's PCS; and whether the
/// PCCS's TLS certificate is checked (QCNL `use_secure_cert`, default true). Says on stderr when
/// it is not, and when a v3 URL is used through v4 ([`pccs_client::qcnl`]).
pub fn default_pccs() -> (String, bool) {
    if let Some(url) = std::env::var("PCCS_URL").ok().filter(|u| !u.is_empty()) {
        return (url, true);
    }
    let qcnl = crate::fsutil::read_limited(Path::new(QCNL_CONF), MAX_QCNL_LEN)
        .ok()
        .and_then(|bytes| QcnlConfig::parse(&String::from_utf8_lossy(&bytes)));
    let Some(qcnl) = qcnl else {
        return (INTEL_PCS_URL.to_owned(), true);
    };
    let url = qcnl.collateral_url().unwrap_or(INTEL_PCS_URL).to_owned();
    if let Some(note) = qcnl::api_version_note(&url) {
        eprintln!("kms: {QCNL_CONF}: {note}");
    }
    if !qcnl.use_secure_cert {
        eprintln!("kms: {}", qcnl::insecure_tls_note(&url, QCNL_CONF));
    }
    (url, qcnl.use_secure_cert)
}

fn secrets_file(source: &SecretsSource) -> Result<SecretsFile, ServeError> {
    Ok(match source {
        SecretsSource::Plain(path) => SecretsFile::Plain(path.clone()),
        SecretsSource::Sealed {
            path,
            key: KeySpec::File(key),
        } => SecretsFile::SealedWithFile {
            path: path.clone(),
            key: FileKey::read_file(key).map_err(|e| ServeError::new(Step::ReadSealKeyFile, e))?,
        },
        SecretsSource::Sealed {
            path,
            key: KeySpec::Enclave(policy),
        } => SecretsFile::SealedWithEnclave {
            path: path.clone(),
            keys: Box::new(
                OcclumEnclaveKeys::open().map_err(|e| ServeError::new(Step::OpenEnclaveKeys, e))?,
            ),
            policy: *policy,
        },
    })
}

/// `host:0` with the bound port: `localhost:0` -> `localhost:41234`, `[::1]:0` -> `[::1]:41234`.
pub fn with_port(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{listen}:{port}"),
    }
}

/// Blocks the calling thread on `fut` for at most `timeout`; `None` on timeout.
pub(crate) fn block_on_timeout<F: Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The KMS normalises PCCS URLs with pccs-client's function (one normalisation for both
    // enclaves); this pins what it gets from it. QCNL files: pccs_client::qcnl's tests.
    use pccs_client::normalize_base as pccs_base;

    #[test]
    fn the_real_port_replaces_port_zero() {
        assert_eq!(with_port("localhost:0", 41234), "localhost:41234");
        assert_eq!(with_port("[::1]:0", 7), "[::1]:7");
        assert_eq!(with_port("0.0.0.0:50051", 50051), "0.0.0.0:50051");
    }

    #[test]
    fn pccs_urls_lose_their_api_suffix() {
        assert_eq!(
            pccs_base("https://a.example/sgx/certification/v3/"),
            "https://a.example"
        );
        assert_eq!(
            pccs_base("https://a.example:8081/sgx/certification/v4"),
            "https://a.example:8081"
        );
        assert_eq!(pccs_base("https://a.example/"), "https://a.example");
    }

    #[test]
    fn block_on_times_out_on_a_pending_future() {
        assert_eq!(
            block_on_timeout(std::future::pending::<()>(), Duration::from_millis(20)),
            None
        );
        assert_eq!(
            block_on_timeout(async { 7 }, Duration::from_millis(20)),
            Some(7)
        );
    }
}
