//! Command-line parsing in two stages: raw flags and values ([`LowArgs`]), then a validated
//! [`Command`] whose every combination of options makes sense.
//!
//! `kms <ADDR>` and `kms server <ADDR>` keep Occlum's `server <addr>` contract: policy from
//! `dynamic_config.json` and secrets from `secret_config.json` in the working directory.
//!
//! Inside Occlum (`occlum_dcap::is_occlum`) argv comes from the untrusted host, so every trust
//! input is fixed to a path in the measured image ([`OCCLUM_IMAGE_RA_CONFIG`],
//! [`OCCLUM_IMAGE_SECRETS`], [`OCCLUM_IMAGE_SEALED_SECRETS`]) and every flag that would change
//! one is refused with its reason. The host may still choose the listen address, the PCCS
//! (collateral is Intel-signed and verified), outputs, threads, the reply form and the
//! connection gate's limits (availability only).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cliargs::{ArgError, Token};

use crate::gate;
use crate::seal::EnclavePolicy;
use crate::secrets::ReplyForm;

/// The policy file Occlum's `server` reads from the working directory.
pub const OCCLUM_RA_CONFIG: &str = "dynamic_config.json";
/// The secrets file Occlum's `server` reads from the working directory.
pub const OCCLUM_SECRETS: &str = "secret_config.json";
/// Inside Occlum: the policy, at the root of the measured image (occlum-configs/server.yaml).
pub const OCCLUM_IMAGE_RA_CONFIG: &str = "/dynamic_config.json";
/// Inside Occlum: the plain secrets, at the root of the measured image.
pub const OCCLUM_IMAGE_SECRETS: &str = "/secret_config.json";
/// Inside Occlum: the sealed secrets read with `--seal-key enclave|enclave-signer`.
pub const OCCLUM_IMAGE_SEALED_SECRETS: &str = "/secret_config.sealed";
/// Inside Occlum: a policy set through the admin API, sealed next to the sealed secrets.
const OCCLUM_IMAGE_SEALED_POLICY: &str = "/secret_config.sealed.policy";
/// Inside Occlum: DCAP's QCNL configuration in the image.
const OCCLUM_IMAGE_QCNL: &str = "/etc/sgx_default_qcnl.conf";
/// Shortest `--cert-lifetime` accepted, in seconds.
pub const MIN_CERT_LIFETIME_SECS: u64 = 10;
/// Highest `--max-connections`: each costs three file descriptors.
pub const MAX_CONNECTIONS: usize = 65_536;
/// Highest `--max-ingress`, in KiB a second (1 GiB/s).
pub const MAX_INGRESS_KIB: u64 = 1024 * 1024;
/// Default gRPC completion-queue threads.
pub const DEFAULT_THREADS: usize = 2;

pub const USAGE: &str = "\
kms: releases secrets over mutual RA-TLS (gRPC) only to attested SGX enclaves

USAGE:
    kms <ADDR>                          Occlum-compatible: same as `kms server <ADDR>`
    kms server <ADDR> [SERVE OPTIONS]   reads dynamic_config.json and secret_config.json
                                        from the working directory
    kms serve --listen <ADDR> --ra-config <FILE> (--secrets <FILE> | --sealed-secrets <FILE>
              (--seal-key-file <KEY> | --seal-key enclave|enclave-signer)) [SERVE OPTIONS]
    kms seal (--seal-key-file <KEY> | --seal-key enclave|enclave-signer) --in <JSON> --out <SEALED>
    kms unseal (--seal-key-file <KEY> | --seal-key enclave|enclave-signer) --in <SEALED> --out <JSON>
    kms gen-seal-key --out <KEY>
    kms gen-cert [--cn <NAME>] --out-cert <PEM> --out-key <PEM>
    kms gen-image-key (--out <FILE> | <FILE>)
    kms admin <OP> [ADMIN OPTIONS]      an operator's calls to a running KMS's admin API
                                        these six host tools exist only in builds with the
                                        `host-tools` feature (never the Occlum build)
    kms audit verify <FILE>             checks the audit log's hash chain; names the first
                                        broken record (exit 3) or prints the last seq and hash
    kms --help | --version

SERVE OPTIONS:
    --pccs-url <URL>          PCCS for collateral (default: $PCCS_URL, else pccs_url in
                              /etc/sgx_default_qcnl.conf, else Intel's PCS)
    --collateral <FILE>       offline collateral (dcap-qvl QuoteCollateralV3 JSON) instead of a PCCS
    --collateral-cache <DIR>  keep fetched collateral on disk until it expires
    --audit-log <FILE>        append JSON-lines audit records to FILE (default: stderr);
                              each line is hash-chained to the one before (`kms audit verify`)
    --metrics-listen <ADDR>   serve Prometheus metrics at http://ADDR/metrics (plain HTTP;
                              availability data only, no secret, measurement or peer address)
    --health-listen <ADDR>    serve Kubernetes probes at http://ADDR/livez and /readyz (plain
                              HTTP; 200, or 503 with the reason while not ready)
    --occlum-compat-listen <ADDR>  also serve GetSecret on ADDR with TLS terminated by the KMS
                              (rustls), for Occlum's C++ grpc_ratls clients, whose X.509 v1
                              certificates the main port's gRPC core refuses; same attestation,
                              policy and audit (see the README's compatibility table)
    --cert-out <PEM>          write the KMS's own RA-TLS certificate to PEM
    --reply-form quoted|bare  SecretReply.secret as Occlum's server sends it (\"<base64>\", the
                              default) or bare base64
    --threads <N>             gRPC worker threads (default 2)
    --max-connections <N>     connections open at once, in total (default 1024); at the cap the
                              longest-idle one makes room
    --max-connections-per-peer <N>  unattested connections open at once from one IPv4 address
                              or IPv6 /64 (default 256)
    --max-ingress <KIB/S>     bytes read from clients not yet attested, all together, in KiB a
                              second (default 128; bursts of 32 s worth; a connection's bytes
                              are given back when it attests, so boots do not use it up).
                              Higher rates let an HTTP/2 rapid-reset flood outpace gRPC core
    --cert-lifetime <SECS>    validity of the KMS's own RA-TLS certificate (default 86400);
                              a new key, quote and certificate are minted at half-life
    --staple-collateral on|off  carry this platform's collateral in the KMS's certificate, so
                              clients verify it without a PCCS request (default on)
    --sim-platform <DIR>      SIMULATED SGX: trust the simulated root in DIR instead of Intel's,
    --sim-identity <FILE>     and quote as the enclave identity in FILE. Never in production;
                              only in builds with the `simulation` feature, never inside Occlum.
                              Collateral then defaults to the simulated platform's own.
    --admin-listen <ADDR>     serve the admin API (kms.Admin, mutual TLS) on ADDR
    --admin-operators <FILE>  the operators it admits (kms_operators.json); host mode only:
                              inside Occlum it is the image's /kms_operators.json, if present.
                              No operators: every admin call is refused. Writes need sealed
                              secrets (--sealed-secrets), where changes are persisted.
    --cluster <FILE>          CLUSTER MODE (host mode; inside Occlum the image's /cluster.json
                              decides and this flag is refused): cluster.json names the cluster,
                              its operators (they replace --admin-operators), the replica policy
                              and max_stale_secs. State lives encrypted in etcd; needs
                              --cluster-slot, --etcd and --seal-key-file
    --cluster-slot <FILE>     the local sealed slot (cluster key, highest generation seen);
                              host mode only (Occlum: /var/lib/kms/cluster.slot)
    --etcd <URL,...>          etcd endpoints (JSON gateway, http://127.0.0.1:2379,...): untrusted
                              storage, availability only
    --peers <HOST:PORT,...>   other replicas' main ports, to obtain the cluster key from
                              (mutual RA-TLS under the replica policy): availability only

ADMIN (kms admin <OP>; the KMS's RA-TLS certificate is verified before anything is sent):
    kms admin keygen --name <NAME> --out-cert <PEM> --out-key <PEM>
                              a new operator key; prints its kms_operators.json entry
    kms admin fingerprint --cert <PEM> [--name <NAME>]   the entry for an existing certificate
    kms admin status|log|put-secret|delete-secret|set-policy
        --kms <HOST:PORT>     the KMS's --admin-listen address
        --cert <PEM> --key <PEM>  the operator's certificate and private key (PKCS#8)
        --ra-config <FILE>    the policy the KMS enclave must satisfy (dynamic_config.json form)
        [--pccs-url <URL> | --collateral <FILE>]  collateral for the KMS's quote (default: the
                              certificate's stapled collateral, then as `kms serve`)
        [--sim-platform <DIR>]  SIMULATED: trust the simulated root in DIR (simulation builds)
        [--base-version <V>]  the state version the change is made against (default: the
                              current one, read first); a stale one is refused with ABORTED
        put-secret --name <NAME> --value-file <FILE> [--allow <ENTRY,...>]
        delete-secret --name <NAME>
        set-policy --policy <FILE>
        genesis               cluster mode: create the cluster key and state gen 1 from the
                              replica's image files; only when no replica holds a key
        recover               cluster mode, every replica lost: a new key (epoch + 1), state
                              re-imported from the image files at the stored gen + 1
        log [--max-bytes <N>] the audit log's last records (releases, refusals, admin actions)

INSIDE OCCLUM (uname says Occlum; argv and env come from the untrusted host):
    The policy is /dynamic_config.json, the secrets /secret_config.json (or, with --seal-key
    enclave|enclave-signer, /secret_config.sealed), all in the measured image. --ra-config,
    --secrets, --sealed-secrets, --seal-key-file, --collateral, --collateral-cache and the
    --sim-* flags, --admin-operators, --cluster and --cluster-slot are refused, as are the tools
    (seal, unseal, gen-*, admin). Cluster mode is on iff the image has /cluster.json; then
    --etcd and --peers are the only cluster flags. --audit-log and
    --cert-out may not name a trust input.

SIGNALS:
    SIGHUP reloads the policy and the secrets (both or neither); SIGTERM/SIGINT stop gracefully.

ENVIRONMENT:
    GRPC_VERBOSITY            DEBUG, INFO, ERROR (default) or NONE: gRPC core's log lines, on
                              stderr as `kms: grpc LEVEL: message (file:line)`

FLAGS:
    --flag VALUE or --flag=VALUE, each at most once; paths may be any bytes; `--` ends the flags

EXIT CODES:
    0 success (--help and --version print on stdout), 1 runtime error, 2 usage error,
    3 `kms audit verify`: the log was read but its chain is broken
";

/// A validated command.
#[derive(Debug)]
pub enum Command {
    Serve(Box<ServeConfig>),
    #[cfg(feature = "host-tools")]
    Seal {
        key: KeySpec,
        input: PathBuf,
        output: PathBuf,
    },
    #[cfg(feature = "host-tools")]
    Unseal {
        key: KeySpec,
        input: PathBuf,
        output: PathBuf,
    },
    #[cfg(feature = "host-tools")]
    GenSealKey {
        out: PathBuf,
    },
    #[cfg(feature = "host-tools")]
    GenCert {
        cn: String,
        out_cert: PathBuf,
        out_key: PathBuf,
    },
    #[cfg(feature = "host-tools")]
    GenImageKey {
        out: PathBuf,
    },
    #[cfg(feature = "host-tools")]
    Admin(Box<AdminCommand>),
    /// `kms audit verify FILE`.
    AuditVerify {
        path: PathBuf,
    },
    Help,
    Version,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub ra_config: PathBuf,
    pub secrets: SecretsSource,
    pub collateral: CollateralSpec,
    pub collateral_cache: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    /// `--metrics-listen`: where the Prometheus endpoint listens, if anywhere.
    pub metrics_listen: Option<String>,
    /// `--health-listen`: where the `/livez` and `/readyz` endpoint listens, if anywhere.
    pub health_listen: Option<String>,
    /// `--occlum-compat-listen`: where Occlum's C++ clients connect (`compat`), if anywhere.
    pub occlum_compat_listen: Option<String>,
    #[cfg(feature = "simulation")]
    pub sim: Option<SimSpec>,
    pub cert_out: Option<PathBuf>,
    pub reply_form: ReplyForm,
    pub threads: usize,
    /// The connection gate's limits (`--max-connections`, `--max-connections-per-peer`).
    pub gate: gate::Limits,
    /// Validity of the KMS's own RA-TLS certificate; it is re-minted at half-life.
    pub cert_lifetime: Duration,
    /// Staple the KMS's own collateral to its certificate (`--staple-collateral`).
    pub staple_collateral: bool,
    /// Where the admin API listens (`--admin-listen`); `None`: not served.
    pub admin_listen: Option<String>,
    /// Which operators the admin API admits.
    pub admin_operators: OperatorsSpec,
    /// Cluster mode's command-line side; `None`: single mode.
    pub cluster: Option<ClusterArgs>,
}

/// Cluster mode's command-line side (the trust inputs are in cluster.json).
#[derive(Debug, Clone)]
pub struct ClusterArgs {
    /// cluster.json: `--cluster FILE`, or inside Occlum the image's `/cluster.json`.
    pub file: PathBuf,
    /// Inside Occlum: the image file decides; if it is absent the KMS runs in single mode
    /// (and refuses --etcd/--peers).
    pub image: bool,
    /// The local sealed slot.
    pub slot: PathBuf,
    /// The key that seals the slot.
    pub slot_key: KeySpec,
    /// etcd endpoints (`--etcd`).
    pub etcd: Vec<String>,
    /// Peer replicas' main ports (`--peers`).
    pub peers: Vec<String>,
}

/// Where the pinned operators come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorsSpec {
    /// None: the admin API refuses every call.
    None,
    /// Host mode: `--admin-operators FILE`.
    File(PathBuf),
    /// Inside Occlum: the measured image's file, if the image has one.
    ImageIfPresent(PathBuf),
}

/// `kms admin <OP>` (`host-tools` builds only).
#[cfg(feature = "host-tools")]
#[derive(Debug, Clone)]
pub struct AdminCommand {
    pub op: AdminOp,
    /// How to reach and verify the KMS (every op but keygen and fingerprint).
    pub conn: Option<AdminConn>,
}

/// One admin operation.
#[cfg(feature = "host-tools")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    Keygen {
        name: String,
        out_cert: PathBuf,
        out_key: PathBuf,
    },
    Fingerprint {
        cert: PathBuf,
        name: String,
    },
    Status,
    Genesis,
    Recover,
    Log {
        max_bytes: Option<u64>,
    },
    PutSecret {
        name: String,
        value_file: PathBuf,
        allow: Option<Vec<String>>,
    },
    DeleteSecret {
        name: String,
    },
    SetPolicy {
        policy: PathBuf,
    },
}

/// The KMS to call and how to verify it.
#[cfg(feature = "host-tools")]
#[derive(Debug, Clone)]
pub struct AdminConn {
    pub kms: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ra_config: PathBuf,
    pub collateral: CollateralSpec,
    /// SIMULATED: the platform whose root (and collateral) verifies the KMS.
    pub sim_platform: Option<PathBuf>,
    pub base_version: Option<String>,
}

/// Where the secrets come from.
#[derive(Debug, Clone)]
pub enum SecretsSource {
    Plain(PathBuf),
    Sealed { path: PathBuf, key: KeySpec },
}

/// Which sealing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    File(PathBuf),
    Enclave(EnclavePolicy),
}

/// Where collateral comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollateralSpec {
    /// The default PCCS chain: `$PCCS_URL`, the QCNL config, Intel's PCS.
    DefaultPccs,
    Pccs(String),
    File(PathBuf),
}

/// The simulated platform, only when both flags are given.
#[cfg(feature = "simulation")]
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub platform: PathBuf,
    pub identity: PathBuf,
}

/// A usage error (exit code 2).
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see `kms --help`)", self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<ArgError> for UsageError {
    fn from(e: ArgError) -> Self {
        UsageError(e.to_string())
    }
}

/// Parses the arguments after the program name, under the rules for where this process runs.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    parse_in(args, occlum_dcap::is_occlum())
}

/// [`parse`] with the place decided by the caller: `inside_occlum` applies the fixed image paths
/// and refuses every flag that would let the host choose a trust input.
pub fn parse_in(
    args: impl IntoIterator<Item = OsString>,
    inside_occlum: bool,
) -> Result<Command, UsageError> {
    let mut low = LowArgs::parse(args)?;
    low.inside_occlum = inside_occlum;
    low.into_command()
}

/// Stage one: the subcommand, positional arguments and `--flag value` pairs, unvalidated.
#[derive(Debug, Default)]
struct LowArgs {
    subcommand: Option<String>,
    positional: Vec<OsString>,
    flags: Vec<(String, OsString)>,
    help: bool,
    version: bool,
    inside_occlum: bool,
}

/// Flags that would let the host choose a trust input, refused inside Occlum, and why.
const OCCLUM_REFUSED: &[(&str, &str)] = &[
    (
        "--ra-config",
        "the policy must be the measured image's /dynamic_config.json",
    ),
    (
        "--secrets",
        "the secrets must be the measured image's /secret_config.json",
    ),
    (
        "--sealed-secrets",
        "sealed secrets must be the measured image's /secret_config.sealed (use --seal-key enclave|enclave-signer alone)",
    ),
    (
        "--seal-key-file",
        "a key file outside the enclave would let the host supply the sealed secrets; use --seal-key enclave|enclave-signer",
    ),
    (
        "--collateral",
        "offline collateral would let the host choose the TCB info and CRLs; use a PCCS",
    ),
    (
        "--collateral-cache",
        "a host-chosen cache directory would let the host choose which collateral is trusted",
    ),
    (
        "--sim-platform",
        "a simulated platform would make the KMS trust a root the host holds",
    ),
    (
        "--sim-identity",
        "a simulated platform would make the KMS trust a root the host holds",
    ),
    (
        "--admin-operators",
        "the operators must be the measured image's /kms_operators.json (a host-chosen file would let the host admit itself)",
    ),
    (
        "--cluster",
        "cluster mode is decided by the measured image's /cluster.json (a flag would let the host drop cluster mode and have the image's stale seed files served)",
    ),
    (
        "--cluster-slot",
        "the cluster slot is /var/lib/kms/cluster.slot in the encrypted rootfs",
    ),
];

/// Flags that take a value (all of them do).
const VALUE_FLAGS: &[&str] = &[
    "--listen",
    "--ra-config",
    "--secrets",
    "--sealed-secrets",
    "--seal-key-file",
    "--seal-key",
    "--pccs-url",
    "--collateral",
    "--collateral-cache",
    "--audit-log",
    "--metrics-listen",
    "--health-listen",
    "--occlum-compat-listen",
    "--sim-platform",
    "--sim-identity",
    "--cert-out",
    "--reply-form",
    "--threads",
    "--max-connections",
    "--max-connections-per-peer",
    "--max-ingress",
    "--cert-lifetime",
    "--staple-collateral",
    "--in",
    "--out",
    "--cn",
    "--out-cert",
    "--out-key",
    "--admin-listen",
    "--admin-operators",
    "--kms",
    "--cert",
    "--key",
    "--name",
    "--value-file",
    "--allow",
    "--policy",
    "--base-version",
    "--max-bytes",
    "--cluster",
    "--cluster-slot",
    "--etcd",
    "--peers",
];

/// The host tools: compiled in only with the `host-tools` feature, so the KMS that runs in
/// Occlum (built without it) does not carry them; there they are named and refused as absent.
/// `admin` is the operator's client of the admin API (the admin server is always in).
const HOST_TOOLS: &[&str] = &[
    "seal",
    "unseal",
    "gen-seal-key",
    "gen-cert",
    "gen-image-key",
    "admin",
];

const SUBCOMMANDS: &[&str] = &[
    "server",
    "serve",
    "seal",
    "unseal",
    "gen-seal-key",
    "gen-cert",
    "gen-image-key",
    "admin",
    "audit",
];

impl LowArgs {
    /// Tokenised by `cliargs`, the workspace's one command-line convention (README "Command
    /// lines"). A flag given twice is refused later, by [`LowArgs::optional_raw`], so that inside
    /// Occlum a refused flag is named as refused however often it is given.
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<LowArgs, UsageError> {
        let mut low = LowArgs::default();
        let mut args = cliargs::Args::new(args);
        while let Some(token) = args.next_token()? {
            match token {
                Token::Help => low.help = true,
                Token::Version => low.version = true,
                Token::Rest(rest) => low.positional.extend(rest),
                Token::Flag(flag) => {
                    if !VALUE_FLAGS.contains(&flag.as_str()) {
                        return Err(ArgError::UnknownOption(flag).into());
                    }
                    let value = args.each_value(&flag)?;
                    low.flags.push((flag, value));
                }
                Token::Word(word) => match word.to_str() {
                    Some(sub)
                        if low.subcommand.is_none()
                            && low.positional.is_empty()
                            && SUBCOMMANDS.contains(&sub) =>
                    {
                        low.subcommand = Some(sub.to_owned());
                    }
                    _ => low.positional.push(word),
                },
            }
            // The first of --help and --version decides, as in every binary of the workspace.
            if low.help || low.version {
                break;
            }
        }
        Ok(low)
    }

    fn into_command(mut self) -> Result<Command, UsageError> {
        if self.help {
            return Ok(Command::Help);
        }
        if self.version {
            return Ok(Command::Version);
        }
        if let Some(tool) = self
            .subcommand
            .as_deref()
            .filter(|s| !cfg!(feature = "host-tools") && HOST_TOOLS.contains(s))
        {
            return Err(UsageError(format!(
                "kms {tool}: not in this build (it has no host tools, as the KMS built for Occlum has none); run the tools on the host with a build with --features kms/host-tools"
            )));
        }
        if self.inside_occlum {
            if let Some(tool) = self
                .subcommand
                .as_deref()
                .filter(|s| !matches!(*s, "server" | "serve"))
            {
                return Err(UsageError(format!(
                    "kms {tool} is refused inside Occlum: argv comes from the untrusted host, and the tools read and write host-chosen files (seal/unseal with the enclave key would put host-chosen secrets into the enclave or take its secrets out); run it on the host"
                )));
            }
            if let Some(&(name, why)) = OCCLUM_REFUSED
                .iter()
                .find(|refused| self.flags.iter().any(|(n, _)| n.as_str() == refused.0))
            {
                return Err(UsageError(format!(
                    "{name} is refused inside Occlum: argv comes from the untrusted host, and {why}"
                )));
            }
        }
        let command = match self.subcommand.take().as_deref() {
            None | Some("server") => {
                let listen = self.one_positional_text("<ADDR>")?;
                if self.flags.iter().any(|(n, _)| n == "--listen") {
                    return Err(UsageError(
                        "give the address once: `kms server <ADDR>`".into(),
                    ));
                }
                let cfg = self.serve_config(listen)?;
                Command::Serve(Box::new(cfg))
            }
            Some("serve") => {
                self.no_positional("serve")?;
                let listen = self.required("--listen")?;
                Command::Serve(Box::new(self.serve_config(listen)?))
            }
            #[cfg(feature = "host-tools")]
            Some(which @ ("seal" | "unseal")) => {
                self.no_positional(which)?;
                let key = self.key_spec()?.ok_or_else(|| {
                    UsageError(format!(
                        "{which} needs --seal-key-file <KEY> or --seal-key enclave"
                    ))
                })?;
                let input = self.required_path("--in")?;
                let output = self.required_path("--out")?;
                if which == "seal" {
                    Command::Seal { key, input, output }
                } else {
                    Command::Unseal { key, input, output }
                }
            }
            #[cfg(feature = "host-tools")]
            Some("gen-seal-key") => {
                self.no_positional("gen-seal-key")?;
                Command::GenSealKey {
                    out: self.required_path("--out")?,
                }
            }
            #[cfg(feature = "host-tools")]
            Some("gen-cert") => {
                self.no_positional("gen-cert")?;
                let cn = self
                    .optional("--cn")?
                    .unwrap_or_else(|| "localhost".to_owned());
                if cn.is_empty() {
                    return Err(UsageError("--cn must not be empty".into()));
                }
                let out_cert = self.required_path("--out-cert")?;
                let out_key = self.required_path("--out-key")?;
                Command::GenCert {
                    cn,
                    out_cert,
                    out_key,
                }
            }
            #[cfg(feature = "host-tools")]
            Some("gen-image-key") => {
                let flag = self.optional_path("--out")?;
                let out = match (flag, self.positional.len()) {
                    (Some(out), 0) => out,
                    (None, 1) => PathBuf::from(self.one_positional("<FILE>")?),
                    _ => return Err(UsageError("gen-image-key needs one output file".into())),
                };
                Command::GenImageKey { out }
            }
            #[cfg(feature = "host-tools")]
            Some("admin") => Command::Admin(Box::new(self.admin_command()?)),
            Some("audit") => match self.positional.as_slice() {
                [verb, path] if verb == "verify" => Command::AuditVerify {
                    path: PathBuf::from(path),
                },
                _ => return Err(UsageError("usage: kms audit verify <FILE>".into())),
            },
            Some(other) => return Err(UsageError(format!("unknown command {other}"))),
        };
        if let Some((name, _)) = self.flags.first() {
            return Err(UsageError(format!(
                "option {name} does not apply to this command"
            )));
        }
        Ok(command)
    }

    /// `serve`'s flags, in named steps; each step reads its own flags, in the order the
    /// errors have always been reported.
    fn serve_config(&mut self, listen: String) -> Result<ServeConfig, UsageError> {
        if listen.is_empty() {
            return Err(UsageError("the listen address is empty".into()));
        }
        self.check_occlum_outputs()?;
        let ra_config = self.ra_config()?;
        let (secrets, cluster) = self.secrets_and_cluster()?;
        let (collateral, collateral_cache) = self.collateral_source()?;
        #[cfg(feature = "simulation")]
        let sim = self.sim_spec()?;
        #[cfg(not(feature = "simulation"))]
        self.no_sim_flags()?;
        let reply_form = self.reply_form()?;
        let threads = self.threads()?;
        let gate = self.gate_limits()?;
        let cert_lifetime = self.cert_lifetime()?;
        let (admin_listen, admin_operators) = self.admin_api()?;
        let staple_collateral = self.staple_collateral()?;
        Ok(ServeConfig {
            listen,
            ra_config,
            secrets,
            collateral,
            collateral_cache,
            audit_log: self.optional_path("--audit-log")?,
            metrics_listen: self.listen_flag("--metrics-listen", 9100)?,
            health_listen: self.listen_flag("--health-listen", 8080)?,
            occlum_compat_listen: self.listen_flag("--occlum-compat-listen", 4434)?,
            #[cfg(feature = "simulation")]
            sim,
            cert_out: self.optional_path("--cert-out")?,
            reply_form,
            threads,
            gate,
            cert_lifetime,
            staple_collateral,
            admin_listen,
            admin_operators,
            cluster,
        })
    }

    /// Inside Occlum, the files the KMS writes (`--audit-log`, `--cert-out`) must not reach
    /// a trust input of the image.
    fn check_occlum_outputs(&self) -> Result<(), UsageError> {
        if self.inside_occlum {
            for flag in ["--audit-log", "--cert-out"] {
                if let Some((_, path)) = self.flags.iter().find(|(n, _)| n == flag) {
                    check_occlum_output(flag, std::path::Path::new(path))?;
                }
            }
        }
        Ok(())
    }

    /// `--ra-config`, by default Occlum's (inside Occlum: the image's).
    fn ra_config(&mut self) -> Result<PathBuf, UsageError> {
        let default_ra_config = if self.inside_occlum {
            OCCLUM_IMAGE_RA_CONFIG
        } else {
            OCCLUM_RA_CONFIG
        };
        Ok(self
            .optional_path("--ra-config")?
            .unwrap_or_else(|| default_ra_config.into()))
    }

    /// Where the secrets come from (`--secrets`, `--sealed-secrets` and the seal key; inside
    /// Occlum always the image's files) and the cluster flags, which decide whether the seal
    /// key seals the secrets file or only the local slot.
    fn secrets_and_cluster(&mut self) -> Result<(SecretsSource, Option<ClusterArgs>), UsageError> {
        let plain = self.optional_path("--secrets")?;
        let sealed = self.optional_path("--sealed-secrets")?;
        let key = self.key_spec()?;
        let cluster = self.cluster_args(&key)?;
        // In cluster mode the seal key also (or only) seals the local slot.
        let key = if cluster.is_some() && sealed.is_none() && !self.inside_occlum {
            None
        } else {
            key
        };
        let (plain, sealed) = match (&key, self.inside_occlum) {
            (Some(_), true) => (None, Some(OCCLUM_IMAGE_SEALED_SECRETS.into())),
            (None, true) => (Some(OCCLUM_IMAGE_SECRETS.into()), None),
            (_, false) => (plain, sealed),
        };
        let secrets = match (plain, sealed, key) {
            (Some(_), Some(_), _) => {
                return Err(UsageError(
                    "--secrets and --sealed-secrets exclude each other".into(),
                ));
            }
            (_, Some(path), Some(key)) => SecretsSource::Sealed { path, key },
            (_, Some(_), None) => {
                return Err(UsageError(
                    "--sealed-secrets needs --seal-key-file <KEY> or --seal-key enclave".into(),
                ));
            }
            (_, None, Some(_)) => {
                return Err(UsageError(
                    "a seal key is only used with --sealed-secrets".into(),
                ));
            }
            (Some(path), None, None) => SecretsSource::Plain(path),
            (None, None, None) => SecretsSource::Plain(OCCLUM_SECRETS.into()),
        };
        Ok((secrets, cluster))
    }

    /// Where collateral comes from, and `--collateral-cache` (for a PCCS only).
    fn collateral_source(&mut self) -> Result<(CollateralSpec, Option<PathBuf>), UsageError> {
        let collateral = self.collateral_spec()?;
        let collateral_cache = self.optional_path("--collateral-cache")?;
        if collateral_cache.is_some() && matches!(collateral, CollateralSpec::File(_)) {
            return Err(UsageError(
                "--collateral-cache applies to a PCCS, not to --collateral".into(),
            ));
        }
        Ok((collateral, collateral_cache))
    }

    /// `--sim-platform` and `--sim-identity`: both or neither.
    #[cfg(feature = "simulation")]
    fn sim_spec(&mut self) -> Result<Option<SimSpec>, UsageError> {
        match (
            self.optional_path("--sim-platform")?,
            self.optional_path("--sim-identity")?,
        ) {
            (Some(platform), Some(identity)) => Ok(Some(SimSpec { platform, identity })),
            (None, None) => Ok(None),
            _ => Err(UsageError(
                "--sim-platform and --sim-identity go together (simulation is all or nothing)"
                    .into(),
            )),
        }
    }

    /// Without the `simulation` feature, the simulation flags are refused by name.
    #[cfg(not(feature = "simulation"))]
    fn no_sim_flags(&mut self) -> Result<(), UsageError> {
        for flag in ["--sim-platform", "--sim-identity"] {
            if self.optional_path(flag)?.is_some() {
                return Err(UsageError(format!(
                    "{flag}: this kms was built without the `simulation` feature and trusts only Intel's SGX Root CA (host builds for tests: --features kms/simulation)"
                )));
            }
        }
        Ok(())
    }

    /// `--reply-form quoted|bare` (default quoted).
    fn reply_form(&mut self) -> Result<ReplyForm, UsageError> {
        match self.optional("--reply-form")?.as_deref() {
            None | Some("quoted") => Ok(ReplyForm::Quoted),
            Some("bare") => Ok(ReplyForm::Bare),
            Some(other) => Err(UsageError(format!(
                "--reply-form {other}: expected quoted or bare"
            ))),
        }
    }

    /// `--threads`: 1 to 64.
    fn threads(&mut self) -> Result<usize, UsageError> {
        match self.optional("--threads")? {
            None => Ok(DEFAULT_THREADS),
            Some(n) => match n.parse::<usize>() {
                Ok(n @ 1..=64) => Ok(n),
                _ => Err(UsageError(format!("--threads {n}: expected 1 to 64"))),
            },
        }
    }

    /// `--cert-lifetime` in seconds, within what the RA-TLS certificate allows.
    fn cert_lifetime(&mut self) -> Result<Duration, UsageError> {
        match self.optional("--cert-lifetime")? {
            None => Ok(ratls::cert::DEFAULT_VALIDITY),
            Some(n) => match n.parse::<u64>() {
                Ok(secs)
                    if (MIN_CERT_LIFETIME_SECS..=ratls::cert::MAX_VALIDITY.as_secs())
                        .contains(&secs) =>
                {
                    Ok(Duration::from_secs(secs))
                }
                _ => Err(UsageError(format!(
                    "--cert-lifetime {n}: expected {MIN_CERT_LIFETIME_SECS} to {} seconds",
                    ratls::cert::MAX_VALIDITY.as_secs()
                ))),
            },
        }
    }

    /// `--admin-listen` and the operators it admits: inside Occlum only the image's file.
    fn admin_api(&mut self) -> Result<(Option<String>, OperatorsSpec), UsageError> {
        let admin_listen = self.optional("--admin-listen")?;
        if admin_listen.as_deref() == Some("") {
            return Err(UsageError("--admin-listen: the address is empty".into()));
        }
        let admin_operators = match (self.optional_path("--admin-operators")?, self.inside_occlum) {
            (_, true) => {
                OperatorsSpec::ImageIfPresent(crate::operators::OCCLUM_IMAGE_OPERATORS.into())
            }
            (Some(path), false) => OperatorsSpec::File(path),
            (None, false) => OperatorsSpec::None,
        };
        Ok((admin_listen, admin_operators))
    }

    /// `--staple-collateral on|off` (default on).
    fn staple_collateral(&mut self) -> Result<bool, UsageError> {
        match self.optional("--staple-collateral")?.as_deref() {
            None | Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => Err(UsageError(format!(
                "--staple-collateral {other}: expected on or off"
            ))),
        }
    }

    /// `--cluster`, `--cluster-slot`, `--etcd`, `--peers`; `key` is the seal key given.
    fn cluster_args(&mut self, key: &Option<KeySpec>) -> Result<Option<ClusterArgs>, UsageError> {
        let etcd = self.list("--etcd", check_etcd_url)?;
        let peers = self.list("--peers", check_peer)?;
        if self.inside_occlum {
            // --cluster and --cluster-slot were refused above: the image decides.
            return Ok(Some(ClusterArgs {
                file: crate::cluster::config::OCCLUM_IMAGE_CLUSTER.into(),
                image: true,
                slot: crate::cluster::config::OCCLUM_CLUSTER_SLOT.into(),
                slot_key: key
                    .clone()
                    .unwrap_or(KeySpec::Enclave(EnclavePolicy::MrEnclave)),
                etcd,
                peers,
            }));
        }
        let Some(file) = self.optional_path("--cluster")? else {
            for (flag, given) in [
                ("--etcd", !etcd.is_empty()),
                ("--peers", !peers.is_empty()),
                (
                    "--cluster-slot",
                    self.flags.iter().any(|(n, _)| n == "--cluster-slot"),
                ),
            ] {
                if given {
                    return Err(UsageError(format!(
                        "{flag} applies to cluster mode only (--cluster FILE)"
                    )));
                }
            }
            return Ok(None);
        };
        let slot = self.optional_path("--cluster-slot")?.ok_or_else(|| {
            UsageError("--cluster needs --cluster-slot FILE (the local sealed slot)".into())
        })?;
        if etcd.is_empty() {
            return Err(UsageError(
                "--cluster needs --etcd URL[,URL...] (where the encrypted state lives)".into(),
            ));
        }
        let Some(slot_key @ KeySpec::File(_)) = key.clone() else {
            return Err(UsageError(
                "--cluster in host mode needs --seal-key-file KEY: it seals the local cluster slot"
                    .into(),
            ));
        };
        Ok(Some(ClusterArgs {
            file,
            image: false,
            slot,
            slot_key,
            etcd,
            peers,
        }))
    }

    /// A comma-separated list flag, each item checked by `check`; empty if not given.
    fn list(
        &mut self,
        name: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Result<Vec<String>, UsageError> {
        let Some(value) = self.optional(name)? else {
            return Ok(Vec::new());
        };
        let items: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
        for item in &items {
            check(item).map_err(|why| UsageError(format!("{name} {value:?}: {why}")))?;
        }
        Ok(items)
    }

    /// `kms admin <OP> ...`.
    #[cfg(feature = "host-tools")]
    fn admin_command(&mut self) -> Result<AdminCommand, UsageError> {
        let op_word = self.one_positional_text(
            "<OP> (status, log, put-secret, delete-secret, set-policy, genesis, recover, keygen or fingerprint)",
        )?;
        let op = match op_word.as_str() {
            "keygen" => AdminOp::Keygen {
                name: self.nonempty("--name")?,
                out_cert: self.required_path("--out-cert")?,
                out_key: self.required_path("--out-key")?,
            },
            "fingerprint" => AdminOp::Fingerprint {
                cert: self.required_path("--cert")?,
                name: self
                    .optional("--name")?
                    .unwrap_or_else(|| "operator".to_owned()),
            },
            "status" => AdminOp::Status,
            "genesis" => AdminOp::Genesis,
            "recover" => AdminOp::Recover,
            "log" => AdminOp::Log {
                max_bytes: match self.optional("--max-bytes")? {
                    None => None,
                    Some(n) => Some(n.parse::<u64>().map_err(|_| {
                        UsageError(format!("--max-bytes {n}: expected a number of bytes"))
                    })?),
                },
            },
            "put-secret" => AdminOp::PutSecret {
                name: self.nonempty("--name")?,
                value_file: self.required_path("--value-file")?,
                allow: match self.optional("--allow")? {
                    None => None,
                    Some(list) => {
                        let entries: Vec<String> = list.split(',').map(str::to_owned).collect();
                        if entries.iter().any(String::is_empty) {
                            return Err(UsageError(format!(
                                "--allow {list:?}: expected sgx_mrs entry names separated by commas"
                            )));
                        }
                        Some(entries)
                    }
                },
            },
            "delete-secret" => AdminOp::DeleteSecret {
                name: self.nonempty("--name")?,
            },
            "set-policy" => AdminOp::SetPolicy {
                policy: self.required_path("--policy")?,
            },
            other => {
                return Err(UsageError(format!(
                    "unknown admin operation {other:?} (expected status, log, put-secret, delete-secret, set-policy, genesis, recover, keygen or fingerprint)"
                )));
            }
        };
        let conn = match op {
            AdminOp::Keygen { .. } | AdminOp::Fingerprint { .. } => None,
            _ => Some(self.admin_conn()?),
        };
        Ok(AdminCommand { op, conn })
    }

    #[cfg(feature = "host-tools")]
    fn admin_conn(&mut self) -> Result<AdminConn, UsageError> {
        let kms = self.nonempty("--kms")?;
        let cert = self.required_path("--cert")?;
        let key = self.required_path("--key")?;
        let ra_config = self.required_path("--ra-config")?;
        let collateral = self.collateral_spec()?;
        let sim_platform = self.optional_path("--sim-platform")?;
        #[cfg(not(feature = "simulation"))]
        if sim_platform.is_some() {
            return Err(UsageError(
                "--sim-platform: this kms was built without the `simulation` feature and trusts only Intel's SGX Root CA".into(),
            ));
        }
        let base_version = self.optional("--base-version")?;
        Ok(AdminConn {
            kms,
            cert,
            key,
            ra_config,
            collateral,
            sim_platform,
            base_version,
        })
    }

    /// `--pccs-url URL` or `--collateral FILE` (at most one), else the default PCCS.
    fn collateral_spec(&mut self) -> Result<CollateralSpec, UsageError> {
        match (
            self.optional("--pccs-url")?,
            self.optional_path("--collateral")?,
        ) {
            (Some(_), Some(_)) => Err(UsageError(
                "--pccs-url and --collateral exclude each other".into(),
            )),
            (Some(url), None) => Ok(CollateralSpec::Pccs(check_url(url)?)),
            (None, Some(path)) => Ok(CollateralSpec::File(path)),
            (None, None) => Ok(CollateralSpec::DefaultPccs),
        }
    }

    #[cfg(feature = "host-tools")]
    fn nonempty(&mut self, name: &str) -> Result<String, UsageError> {
        let value = self.required(name)?;
        if value.is_empty() {
            return Err(UsageError(format!("{name} must not be empty")));
        }
        Ok(value)
    }

    /// `--metrics-listen ADDR` or `--health-listen ADDR`: a socket address (`127.0.0.1:9100`,
    /// `[::1]:0`); `port` is the example's.
    fn listen_flag(&mut self, flag: &str, port: u16) -> Result<Option<String>, UsageError> {
        let Some(addr) = self.optional(flag)? else {
            return Ok(None);
        };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(UsageError(format!(
                "{flag} {addr}: expected IP:PORT (e.g. 127.0.0.1:{port} or [::1]:{port})"
            )));
        }
        Ok(Some(addr))
    }

    /// `--max-connections` and `--max-connections-per-peer` on top of the gate's defaults.
    fn gate_limits(&mut self) -> Result<gate::Limits, UsageError> {
        let mut limits = gate::Limits::default();
        if let Some(n) = self.optional("--max-connections")? {
            limits.max_connections = match n.parse::<usize>() {
                Ok(n @ 1..=MAX_CONNECTIONS) => n,
                _ => {
                    return Err(UsageError(format!(
                        "--max-connections {n}: expected 1 to {MAX_CONNECTIONS}"
                    )));
                }
            };
        }
        if let Some(n) = self.optional("--max-ingress")? {
            let kib = match n.parse::<u64>() {
                Ok(kib @ 16..=MAX_INGRESS_KIB) => kib,
                _ => {
                    return Err(UsageError(format!(
                        "--max-ingress {n}: expected 16 to {MAX_INGRESS_KIB} (KiB a second)"
                    )));
                }
            };
            limits.total_rate = gate::Rate {
                per_sec: kib * 1024,
                burst: kib * 1024 * gate::TOTAL_BURST_SECS,
            };
            // One peer never gets more than everyone together.
            limits.peer_rate.per_sec = limits.peer_rate.per_sec.min(limits.total_rate.per_sec);
            limits.peer_rate.burst = limits.peer_rate.burst.min(limits.total_rate.burst);
        }
        let total = limits.max_connections;
        limits.max_connections_per_peer = match self.optional("--max-connections-per-peer")? {
            None => limits.max_connections_per_peer.min(total),
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=total).contains(&n) => n,
                _ => {
                    return Err(UsageError(format!(
                        "--max-connections-per-peer {n}: expected 1 to --max-connections ({total})"
                    )));
                }
            },
        };
        Ok(limits)
    }

    fn key_spec(&mut self) -> Result<Option<KeySpec>, UsageError> {
        match (
            self.optional_path("--seal-key-file")?,
            self.optional("--seal-key")?,
        ) {
            (Some(_), Some(_)) => Err(UsageError(
                "--seal-key-file and --seal-key exclude each other".into(),
            )),
            (Some(path), None) => Ok(Some(KeySpec::File(path))),
            (None, Some(kind)) => match kind.as_str() {
                "enclave" => Ok(Some(KeySpec::Enclave(EnclavePolicy::MrEnclave))),
                "enclave-signer" => Ok(Some(KeySpec::Enclave(EnclavePolicy::MrSigner))),
                other => Err(UsageError(format!(
                    "--seal-key {other}: expected enclave or enclave-signer (or use --seal-key-file)"
                ))),
            },
            (None, None) => Ok(None),
        }
    }

    /// Removes and returns the value of `name` as text (refused by name if not UTF-8).
    fn optional(&mut self, name: &str) -> Result<Option<String>, UsageError> {
        match self.optional_raw(name)? {
            None => Ok(None),
            Some(value) => Ok(Some(cliargs::utf8(name, value)?)),
        }
    }

    /// Removes and returns the value of `name` as a path (any bytes).
    fn optional_path(&mut self, name: &str) -> Result<Option<PathBuf>, UsageError> {
        Ok(self.optional_raw(name)?.map(PathBuf::from))
    }

    /// Removes and returns the value of `name`; giving a flag twice is an error.
    fn optional_raw(&mut self, name: &str) -> Result<Option<OsString>, UsageError> {
        let mut found = None;
        let mut i = 0;
        while i < self.flags.len() {
            if self.flags.get(i).is_some_and(|(n, _)| n == name) {
                let (_, value) = self.flags.remove(i);
                if found.replace(value).is_some() {
                    return Err(ArgError::GivenTwice(name.to_owned()).into());
                }
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    fn required(&mut self, name: &str) -> Result<String, UsageError> {
        self.optional(name)?
            .ok_or_else(|| UsageError(format!("missing {name}")))
    }

    #[cfg(feature = "host-tools")]
    fn required_path(&mut self, name: &str) -> Result<PathBuf, UsageError> {
        self.optional_path(name)?
            .ok_or_else(|| UsageError(format!("missing {name}")))
    }

    fn one_positional(&mut self, what: &str) -> Result<OsString, UsageError> {
        match self.positional.len() {
            1 => Ok(self.positional.remove(0)),
            0 => Err(UsageError(format!("missing {what}"))),
            _ => Err(UsageError(format!(
                "unexpected argument {:?}",
                self.positional.get(1)
            ))),
        }
    }

    fn one_positional_text(&mut self, what: &str) -> Result<String, UsageError> {
        let word = self.one_positional(what)?;
        Ok(cliargs::utf8(what, word)?)
    }

    fn no_positional(&self, command: &str) -> Result<(), UsageError> {
        match self.positional.first() {
            Some(p) => Err(UsageError(format!("{command}: unexpected argument {p:?}"))),
            None => Ok(()),
        }
    }
}

/// Inside Occlum, an output may not land on (and so replace) a trust input of the image, nor
/// climb with `..`, which a lexical comparison could not follow.
fn check_occlum_output(flag: &str, path: &std::path::Path) -> Result<(), UsageError> {
    use std::path::{Component, Path};
    let components: Vec<Component<'_>> = path.components().collect();
    if components.contains(&Component::ParentDir) {
        return Err(UsageError(format!(
            "{flag} {}: `..` is refused inside Occlum (the output must not reach a trust input of the image)",
            path.display()
        )));
    }
    let normal: PathBuf = components
        .iter()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    // Relative paths resolve from the working directory, `/` under Occlum.
    let absolute = Path::new("/").join(normal);
    let protected = [
        OCCLUM_IMAGE_RA_CONFIG,
        OCCLUM_IMAGE_SECRETS,
        OCCLUM_IMAGE_SEALED_SECRETS,
        OCCLUM_IMAGE_SEALED_POLICY,
        OCCLUM_IMAGE_QCNL,
        crate::operators::OCCLUM_IMAGE_OPERATORS,
        crate::cluster::config::OCCLUM_IMAGE_CLUSTER,
        crate::cluster::config::OCCLUM_CLUSTER_SLOT,
    ];
    if protected.iter().any(|p| absolute == Path::new(p)) {
        return Err(UsageError(format!(
            "{flag} {} is refused inside Occlum: it would overwrite {}, a trust input of the measured image",
            path.display(),
            absolute.display()
        )));
    }
    Ok(())
}

fn check_etcd_url(url: &str) -> Result<(), String> {
    // Plain http: etcd is untrusted storage; every record is authenticated by the envelope.
    if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(())
    } else {
        Err(format!(
            "{url:?} is not an http:// URL (etcd's JSON gateway, e.g. http://127.0.0.1:2379)"
        ))
    }
}

fn check_peer(peer: &str) -> Result<(), String> {
    match peer.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("{peer:?} is not HOST:PORT")),
    }
}

fn check_url(url: String) -> Result<String, UsageError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url)
    } else {
        Err(UsageError(format!(
            "--pccs-url {url}: expected an http:// or https:// URL"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn serve(args: &[&str]) -> ServeConfig {
        match parse_str(args).unwrap() {
            Command::Serve(cfg) => *cfg,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn a_bare_address_is_occlums_server_command() {
        for args in [&["localhost:50051"][..], &["server", "localhost:50051"]] {
            let cfg = serve(args);
            assert_eq!(cfg.listen, "localhost:50051");
            assert_eq!(cfg.ra_config, PathBuf::from("dynamic_config.json"));
            assert!(
                matches!(cfg.secrets, SecretsSource::Plain(ref p) if p == &PathBuf::from("secret_config.json"))
            );
            assert_eq!(cfg.collateral, CollateralSpec::DefaultPccs);
            assert_eq!(cfg.reply_form, ReplyForm::Quoted);
            #[cfg(feature = "simulation")]
            assert!(cfg.sim.is_none());
        }
    }

    #[test]
    fn the_server_form_takes_serve_options() {
        let cfg = serve(&[
            "server",
            "127.0.0.1:0",
            "--audit-log",
            "a.log",
            "--reply-form=bare",
        ]);
        assert_eq!(cfg.audit_log, Some(PathBuf::from("a.log")));
        assert_eq!(cfg.reply_form, ReplyForm::Bare);
        assert!(parse_str(&["server", "a:1", "--listen", "b:2"]).is_err());
    }

    #[test]
    fn the_full_form_parses() {
        let cfg = serve(&[
            "serve",
            "--listen",
            "0.0.0.0:50051",
            "--ra-config",
            "ra.json",
            "--sealed-secrets",
            "s.sealed",
            "--seal-key-file",
            "k",
            "--pccs-url",
            "https://pccs:8081",
            "--collateral-cache",
            "/var/cache",
            "--cert-out",
            "kms.pem",
            "--threads",
            "4",
        ]);
        assert_eq!(cfg.listen, "0.0.0.0:50051");
        assert!(matches!(
            cfg.secrets,
            SecretsSource::Sealed {
                key: KeySpec::File(_),
                ..
            }
        ));
        assert_eq!(
            cfg.collateral,
            CollateralSpec::Pccs("https://pccs:8081".into())
        );
        assert_eq!(cfg.threads, 4);
        assert!(cfg.cert_out.is_some());
    }

    #[cfg(feature = "simulation")]
    #[test]
    fn the_simulation_flags_parse_together() {
        let cfg = serve(&["a:1", "--sim-platform", "p", "--sim-identity", "i"]);
        assert!(cfg.sim.is_some());
    }

    #[cfg(not(feature = "simulation"))]
    #[test]
    fn without_the_simulation_feature_the_sim_flags_are_refused() {
        let err = parse_str(&["a:1", "--sim-platform", "p", "--sim-identity", "i"]).unwrap_err();
        assert!(err.0.contains("without the `simulation` feature"), "{err}");
    }

    fn occlum(args: &[&str]) -> Result<Command, UsageError> {
        parse_in(args.iter().map(OsString::from), true)
    }

    #[test]
    fn the_health_address_is_a_host_choice_in_both_forms_and_inside_occlum() {
        let cfg = serve(&["server", "0.0.0.0:4433", "--health-listen", "0.0.0.0:9090"]);
        assert_eq!(cfg.health_listen.as_deref(), Some("0.0.0.0:9090"));
        assert_eq!(serve(&["a:1"]).health_listen, None);
        let Command::Serve(cfg) = occlum(&["a:1", "--health-listen", "[::]:9090"]).unwrap() else {
            panic!("not serve")
        };
        assert_eq!(cfg.health_listen.as_deref(), Some("[::]:9090"));
        for bad in ["localhost:9090", "9090", ""] {
            let err = parse_str(&["a:1", "--health-listen", bad]).unwrap_err();
            assert!(
                err.0.contains("--health-listen") && err.0.contains("IP:PORT"),
                "{err}"
            );
        }
    }

    #[test]
    fn inside_occlum_the_trust_inputs_are_the_image_files() {
        let Command::Serve(cfg) = occlum(&["server", "0.0.0.0:50051"]).unwrap() else {
            panic!("not serve")
        };
        assert_eq!(cfg.ra_config, PathBuf::from("/dynamic_config.json"));
        assert!(
            matches!(cfg.secrets, SecretsSource::Plain(ref p) if p == &PathBuf::from("/secret_config.json"))
        );
        let Command::Serve(cfg) = occlum(&["a:1", "--seal-key", "enclave"]).unwrap() else {
            panic!("not serve")
        };
        assert!(
            matches!(cfg.secrets, SecretsSource::Sealed { ref path, key: KeySpec::Enclave(_) } if path == &PathBuf::from("/secret_config.sealed"))
        );
        let Command::Serve(cfg) = occlum(&[
            "a:1",
            "--pccs-url",
            "https://pccs:8081",
            "--audit-log",
            "/host/audit.log",
        ])
        .unwrap() else {
            panic!("not serve")
        };
        assert_eq!(
            cfg.collateral,
            CollateralSpec::Pccs("https://pccs:8081".into())
        );
    }

    #[test]
    fn inside_occlum_every_trust_input_flag_is_refused_by_name() {
        for (flag, _) in OCCLUM_REFUSED {
            let err = occlum(&["a:1", flag, "/host/x"]).unwrap_err();
            assert!(
                err.0
                    .starts_with(&format!("{flag} is refused inside Occlum")),
                "{err}"
            );
        }
        let why = if cfg!(feature = "host-tools") {
            "refused inside Occlum"
        } else {
            "not in this build"
        };
        for tool in HOST_TOOLS {
            let err = occlum(&[tool, "--out", "/host/x"]).unwrap_err();
            assert!(err.0.contains(why), "{err}");
        }
    }

    #[cfg(not(feature = "host-tools"))]
    #[test]
    fn without_host_tools_the_tools_are_not_in_the_build() {
        for tool in HOST_TOOLS {
            let err = parse_str(&[tool, "--out", "x"]).unwrap_err();
            assert!(
                err.0.starts_with(&format!("kms {tool}: not in this build")),
                "{err}"
            );
            assert!(err.0.contains("--features kms/host-tools"), "{err}");
        }
    }

    #[test]
    fn inside_occlum_outputs_may_not_replace_a_trust_input() {
        for path in [
            "/dynamic_config.json",
            "dynamic_config.json",
            "//./secret_config.json",
            "/secret_config.sealed",
            "/cluster.json",
            "/var/lib/kms/cluster.slot",
            "/host/../dynamic_config.json",
        ] {
            for flag in ["--audit-log", "--cert-out"] {
                let err = occlum(&["a:1", flag, path]).unwrap_err();
                assert!(err.0.contains("inside Occlum"), "{flag} {path}: {err}");
            }
        }
        assert!(occlum(&["a:1", "--cert-out", "/host/kms.pem"]).is_ok());
    }

    #[test]
    fn connection_limits_default_and_parse() {
        let cfg = serve(&["a:1"]);
        assert_eq!(cfg.gate, gate::Limits::default());
        let cfg = serve(&["a:1", "--max-connections", "8"]);
        assert_eq!(cfg.gate.max_connections, 8);
        assert_eq!(cfg.gate.max_connections_per_peer, 8, "capped by the total");
        let cfg = serve(&[
            "a:1",
            "--max-connections",
            "100",
            "--max-connections-per-peer",
            "3",
        ]);
        assert_eq!(
            (cfg.gate.max_connections, cfg.gate.max_connections_per_peer),
            (100, 3)
        );
        let cfg = serve(&["a:1", "--max-ingress", "4096"]);
        assert_eq!(cfg.gate.total_rate.per_sec, 4096 * 1024);
        assert_eq!(
            cfg.gate.total_rate.burst,
            gate::TOTAL_BURST_SECS * 4096 * 1024
        );
        assert_eq!(cfg.gate.peer_rate, gate::PEER_RATE);
        let cfg = serve(&["a:1", "--max-ingress", "32"]);
        assert_eq!(cfg.gate.peer_rate.per_sec, 32 * 1024, "capped by the total");
        assert_eq!(cfg.gate.peer_rate.burst, gate::TOTAL_BURST_SECS * 32 * 1024);
    }

    #[test]
    fn admin_flags_parse_and_inside_occlum_the_operators_are_the_images() {
        let cfg = serve(&[
            "a:1",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-operators",
            "o.json",
        ]);
        assert_eq!(cfg.admin_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(cfg.admin_operators, OperatorsSpec::File("o.json".into()));
        assert_eq!(serve(&["a:1"]).admin_operators, OperatorsSpec::None);
        let Command::Serve(cfg) = occlum(&["a:1", "--admin-listen", "0.0.0.0:9"]).unwrap() else {
            panic!("not serve")
        };
        assert_eq!(
            cfg.admin_operators,
            OperatorsSpec::ImageIfPresent("/kms_operators.json".into())
        );
        assert!(
            occlum(&["admin", "status"]).is_err(),
            "the CLI is a host tool"
        );
        assert!(occlum(&["a:1", "--audit-log", "/kms_operators.json"]).is_err());
    }

    #[cfg(feature = "host-tools")]
    #[test]
    fn admin_operations_parse_and_refuse_what_is_missing() {
        let conn = [
            "--kms",
            "k:1",
            "--cert",
            "c",
            "--key",
            "k",
            "--ra-config",
            "p",
        ];
        let parse_admin = |args: &[&str]| {
            let mut all = vec!["admin"];
            all.extend_from_slice(args);
            parse_str(&all)
        };
        let with_conn = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend_from_slice(&conn);
            parse_admin(&all)
        };
        let Command::Admin(cmd) = with_conn(&[
            "put-secret",
            "--name",
            "n",
            "--value-file",
            "v",
            "--allow",
            "app,tool",
        ])
        .unwrap() else {
            panic!("not admin")
        };
        assert_eq!(
            cmd.op,
            AdminOp::PutSecret {
                name: "n".into(),
                value_file: "v".into(),
                allow: Some(vec!["app".into(), "tool".into()]),
            }
        );
        assert!(cmd.conn.unwrap().base_version.is_none());
        assert!(matches!(
            parse_admin(&["keygen", "--name", "a", "--out-cert", "c", "--out-key", "k"]).unwrap(),
            Command::Admin(ref c) if c.conn.is_none()
        ));
        for bad in [
            &["status"][..],
            &["bogus"],
            &["put-secret", "--name", "n"],
            &[
                "put-secret",
                "--name",
                "n",
                "--value-file",
                "v",
                "--allow",
                "a,,b",
            ],
            &["delete-secret", "--name", ""],
            &["log", "--max-bytes", "lots"],
        ] {
            let mut args = bad.to_vec();
            if bad.len() > 1 || bad[0] != "status" {
                args.extend_from_slice(&conn);
            }
            assert!(parse_admin(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn cluster_flags_parse_and_refuse_what_is_missing() {
        let base = [
            "a:1",
            "--cluster",
            "c.json",
            "--cluster-slot",
            "s",
            "--seal-key-file",
            "k",
        ];
        let mut args = base.to_vec();
        args.extend([
            "--etcd",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--peers",
            "h:1,[::1]:2",
        ]);
        let cluster = serve(&args).cluster.unwrap();
        assert_eq!(cluster.etcd.len(), 2);
        assert_eq!(cluster.peers, vec!["h:1".to_owned(), "[::1]:2".to_owned()]);
        assert_eq!(cluster.slot_key, KeySpec::File("k".into()));
        assert!(!cluster.image);
        // Without --sealed-secrets the key seals only the slot; the seed files stay plain.
        assert!(matches!(serve(&args).secrets, SecretsSource::Plain(_)));
        let err = parse_str(&base).unwrap_err();
        assert!(err.0.contains("--etcd"), "{err}");
        let err = parse_str(&[
            "a:1",
            "--cluster",
            "c",
            "--cluster-slot",
            "s",
            "--etcd",
            "http://e:1",
        ])
        .unwrap_err();
        assert!(err.0.contains("--seal-key-file"), "{err}");
        let err = parse_str(&[
            "a:1",
            "--cluster",
            "c",
            "--etcd",
            "http://e:1",
            "--seal-key-file",
            "k",
        ])
        .unwrap_err();
        assert!(err.0.contains("--cluster-slot"), "{err}");
        let mut bad = base.to_vec();
        bad.extend(["--etcd", "127.0.0.1:2379"]);
        assert!(parse_str(&bad).unwrap_err().0.contains("not an http"));
        let mut bad = base.to_vec();
        bad.extend(["--etcd", "http://e:1", "--peers", "nohost"]);
        assert!(parse_str(&bad).unwrap_err().0.contains("HOST:PORT"));
        let err = parse_str(&["a:1", "--etcd", "http://e:1"]).unwrap_err();
        assert!(err.0.contains("cluster mode only"), "{err}");
        assert!(serve(&["a:1"]).cluster.is_none());
    }

    #[test]
    fn inside_occlum_the_image_decides_cluster_mode() {
        for flag in ["--cluster", "--cluster-slot"] {
            let err = occlum(&["server", "a:1", flag, "/host/x"]).unwrap_err();
            assert!(
                err.0.contains(&format!("{flag} is refused inside Occlum")),
                "{err}"
            );
        }
        let Command::Serve(cfg) =
            occlum(&["server", "a:1", "--etcd", "http://e:1", "--peers", "p:1"]).unwrap()
        else {
            panic!("not serve")
        };
        let cluster = cfg.cluster.unwrap();
        assert!(cluster.image);
        assert_eq!(cluster.file, PathBuf::from("/cluster.json"));
        assert_eq!(cluster.slot, PathBuf::from("/var/lib/kms/cluster.slot"));
        assert_eq!(cluster.slot_key, KeySpec::Enclave(EnclavePolicy::MrEnclave));
    }

    #[test]
    fn serve_needs_a_listen_address() {
        assert_eq!(
            parse_str(&["serve"]).unwrap_err(),
            UsageError("missing --listen".into())
        );
    }

    #[test]
    fn conflicting_options_are_usage_errors() {
        let cases: &[&[&str]] = &[
            &[
                "a:1",
                "--secrets",
                "s",
                "--sealed-secrets",
                "t",
                "--seal-key-file",
                "k",
            ],
            &["a:1", "--sealed-secrets", "t"],
            &["a:1", "--seal-key-file", "k"],
            &["a:1", "--pccs-url", "https://x", "--collateral", "c"],
            &["a:1", "--collateral", "c", "--collateral-cache", "d"],
            &["a:1", "--sim-platform", "p"],
            &["a:1", "--sim-identity", "i"],
            &["a:1", "--reply-form", "json"],
            &["a:1", "--threads", "0"],
            &["a:1", "--max-connections", "0"],
            &["a:1", "--max-connections", "65537"],
            &["a:1", "--max-connections-per-peer", "0"],
            &["a:1", "--max-ingress", "15"],
            &["a:1", "--max-ingress", "lots"],
            &[
                "a:1",
                "--max-connections",
                "8",
                "--max-connections-per-peer",
                "9",
            ],
            &["a:1", "--cert-lifetime", "9"],
            &["a:1", "--cert-lifetime", "forever"],
            &["a:1", "--pccs-url", "ftp://x"],
            &["a:1", "--audit-log", "x", "--audit-log", "y"],
            &["a:1", "--bogus", "x"],
            &["a:1", "b:2"],
            &["a:1", "--out", "x"],
            &["seal", "--in", "a", "--out", "b"],
            &["seal", "--seal-key", "tpm", "--in", "a", "--out", "b"],
            &["gen-image-key"],
            &["gen-image-key", "a", "--out", "b"],
            &["--listen"],
            &[],
        ];
        for args in cases {
            assert!(parse_str(args).is_err(), "{args:?} should be refused");
        }
    }

    #[cfg(feature = "host-tools")]
    #[test]
    fn tools_parse() {
        assert!(matches!(
            parse_str(&["seal", "--seal-key", "enclave", "--in", "a", "--out", "b"]).unwrap(),
            Command::Seal {
                key: KeySpec::Enclave(EnclavePolicy::MrEnclave),
                ..
            }
        ));
        assert!(matches!(
            parse_str(&["gen-cert", "--out-cert", "c", "--out-key", "k"]).unwrap(),
            Command::GenCert { ref cn, .. } if cn == "localhost"
        ));
        for args in [
            &["gen-image-key", "image_key"][..],
            &["gen-image-key", "--out", "image_key"],
        ] {
            assert!(
                matches!(parse_str(args).unwrap(), Command::GenImageKey { ref out } if out == &PathBuf::from("image_key"))
            );
        }
        assert!(matches!(parse_str(&["--help"]).unwrap(), Command::Help));
        assert!(matches!(
            parse_str(&["serve", "-h"]).unwrap(),
            Command::Help
        ));
        assert!(matches!(parse_str(&["-V"]).unwrap(), Command::Version));
    }

    #[test]
    fn the_workspace_conventions_hold() {
        let split = serve(&["serve", "--listen", "a:1", "--threads", "3"]);
        let inline = serve(&["serve", "--listen=a:1", "--threads=3"]);
        assert_eq!(
            (split.listen, split.threads),
            (inline.listen, inline.threads)
        );
        for (args, want) in [
            (
                &["a:1", "--threads", "2", "--threads=3"][..],
                "--threads given twice",
            ),
            (&["a:1", "--frob"], "unknown option --frob"),
            (&["a:1", "-x"], "unknown option -x"),
            (&["a:1", "--threads"], "--threads needs a value"),
        ] {
            assert_eq!(parse_str(args).unwrap_err().0, want, "{args:?}");
        }
        // The first of --help and a mistake decides.
        assert!(matches!(
            parse_str(&["a:1", "--help", "--frob"]).unwrap(),
            Command::Help
        ));
        assert!(parse_str(&["a:1", "--frob", "--help"]).is_err());
        // After `--` a word is positional even if it names a subcommand or looks like a flag.
        assert_eq!(serve(&["--", "--a:1"]).listen, "--a:1");
    }

    #[test]
    fn paths_take_any_bytes_and_text_flags_refuse_non_utf8_by_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"a\xff.log");
        let with = |flag: &str| {
            parse(
                ["a:1", flag]
                    .into_iter()
                    .map(OsString::from)
                    .chain([raw.to_owned()]),
            )
        };
        let Command::Serve(cfg) = with("--audit-log").unwrap() else {
            panic!("not serve")
        };
        assert_eq!(cfg.audit_log.unwrap().as_os_str(), raw);
        let err = with("--reply-form").unwrap_err();
        assert!(
            err.0.starts_with("--reply-form ") && err.0.ends_with(": not UTF-8"),
            "{err}"
        );
        let err = parse([
            OsString::from("serve"),
            OsString::from("--listen"),
            raw.to_owned(),
        ])
        .unwrap_err();
        assert!(err.0.starts_with("--listen "), "{err}");
        let err = parse([raw.to_owned()]).unwrap_err();
        assert!(err.0.starts_with("<ADDR> "), "{err}");
    }

    #[test]
    fn inside_occlum_a_refused_flag_is_named_as_refused_however_often_it_is_given() {
        let err = occlum(&["a:1", "--ra-config", "p", "--ra-config", "q"]).unwrap_err();
        assert!(
            err.0.starts_with("--ra-config is refused inside Occlum"),
            "{err}"
        );
        let err = occlum(&["a:1", "--ra-config=p"]).unwrap_err();
        assert!(
            err.0.starts_with("--ra-config is refused inside Occlum"),
            "{err}"
        );
    }
}
