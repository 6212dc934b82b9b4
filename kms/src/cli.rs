//! Command-line parsing in two stages: raw flags and values ([`LowArgs`]), then a validated
//! [`Command`] whose every combination of options makes sense.
//!
//! `kms <ADDR>` and `kms server <ADDR>` keep Occlum's `server <addr>` contract: policy from
//! `dynamic_config.json` and secrets from `secret_config.json` in the working directory.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::seal::EnclavePolicy;
use crate::secrets::ReplyForm;

/// The policy file Occlum's `server` reads from the working directory.
pub const OCCLUM_RA_CONFIG: &str = "dynamic_config.json";
/// The secrets file Occlum's `server` reads from the working directory.
pub const OCCLUM_SECRETS: &str = "secret_config.json";
/// Shortest `--cert-lifetime` accepted, in seconds.
pub const MIN_CERT_LIFETIME_SECS: u64 = 10;
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
    kms --help | --version

SERVE OPTIONS:
    --pccs-url <URL>          PCCS for collateral (default: $PCCS_URL, else pccs_url in
                              /etc/sgx_default_qcnl.conf, else Intel's PCS)
    --collateral <FILE>       offline collateral (dcap-qvl QuoteCollateralV3 JSON) instead of a PCCS
    --collateral-cache <DIR>  keep fetched collateral on disk until it expires
    --audit-log <FILE>        append JSON-lines audit records to FILE (default: stderr)
    --cert-out <PEM>          write the KMS's own RA-TLS certificate to PEM
    --reply-form quoted|bare  SecretReply.secret as Occlum's server sends it (\"<base64>\", the
                              default) or bare base64
    --threads <N>             gRPC worker threads (default 2)
    --cert-lifetime <SECS>    validity of the KMS's own RA-TLS certificate (default 86400);
                              a new key, quote and certificate are minted at half-life
    --staple-collateral on|off  carry this platform's collateral in the KMS's certificate, so
                              clients verify it without a PCCS request (default on)
    --sim-platform <DIR>      SIMULATED SGX: trust the simulated root in DIR instead of Intel's,
    --sim-identity <FILE>     and quote as the enclave identity in FILE. Never in production.
                              Collateral then defaults to the simulated platform's own.

SIGNALS:
    SIGHUP reloads the policy and the secrets (both or neither); SIGTERM/SIGINT stop gracefully.

ENVIRONMENT:
    GRPC_VERBOSITY            DEBUG, INFO, ERROR (default) or NONE: gRPC core's log lines, on
                              stderr as `kms: grpc LEVEL: message (file:line)`

EXIT CODES:
    0 success, 1 runtime error, 2 usage error
";

/// A validated command.
#[derive(Debug)]
pub enum Command {
    Serve(Box<ServeConfig>),
    Seal {
        key: KeySpec,
        input: PathBuf,
        output: PathBuf,
    },
    Unseal {
        key: KeySpec,
        input: PathBuf,
        output: PathBuf,
    },
    GenSealKey {
        out: PathBuf,
    },
    GenCert {
        cn: String,
        out_cert: PathBuf,
        out_key: PathBuf,
    },
    GenImageKey {
        out: PathBuf,
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
    pub sim: Option<SimSpec>,
    pub cert_out: Option<PathBuf>,
    pub reply_form: ReplyForm,
    pub threads: usize,
    /// Validity of the KMS's own RA-TLS certificate; it is re-minted at half-life.
    pub cert_lifetime: Duration,
    /// Staple the KMS's own collateral to its certificate (`--staple-collateral`).
    pub staple_collateral: bool,
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

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let low = LowArgs::parse(args)?;
    low.into_command()
}

/// Stage one: the subcommand, positional arguments and `--flag value` pairs, unvalidated.
#[derive(Debug, Default)]
struct LowArgs {
    subcommand: Option<String>,
    positional: Vec<String>,
    flags: Vec<(String, String)>,
    help: bool,
    version: bool,
}

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
    "--sim-platform",
    "--sim-identity",
    "--cert-out",
    "--reply-form",
    "--threads",
    "--cert-lifetime",
    "--staple-collateral",
    "--in",
    "--out",
    "--cn",
    "--out-cert",
    "--out-key",
];

const SUBCOMMANDS: &[&str] = &[
    "server",
    "serve",
    "seal",
    "unseal",
    "gen-seal-key",
    "gen-cert",
    "gen-image-key",
];

impl LowArgs {
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<LowArgs, UsageError> {
        let mut low = LowArgs::default();
        let mut args = args.into_iter().map(|a| {
            a.into_string()
                .map_err(|a| UsageError(format!("argument {a:?} is not UTF-8")))
        });
        while let Some(arg) = args.next() {
            let arg = arg?;
            match arg.as_str() {
                "-h" | "--help" => low.help = true,
                "-V" | "--version" => low.version = true,
                "--" => {
                    for rest in args.by_ref() {
                        low.positional.push(rest?);
                    }
                }
                flag if flag.starts_with("--") => {
                    let (name, inline) = match flag.split_once('=') {
                        Some((name, value)) => (name, Some(value.to_owned())),
                        None => (flag, None),
                    };
                    if !VALUE_FLAGS.contains(&name) {
                        return Err(UsageError(format!("unknown option {name}")));
                    }
                    let value = match inline {
                        Some(v) => v,
                        None => args
                            .next()
                            .transpose()?
                            .ok_or_else(|| UsageError(format!("{name} needs a value")))?,
                    };
                    low.flags.push((name.to_owned(), value));
                }
                flag if flag.starts_with('-') && flag.len() > 1 => {
                    return Err(UsageError(format!("unknown option {flag}")));
                }
                word if low.subcommand.is_none()
                    && low.positional.is_empty()
                    && SUBCOMMANDS.contains(&word) =>
                {
                    low.subcommand = Some(word.to_owned());
                }
                _ => low.positional.push(arg),
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
        let command = match self.subcommand.take().as_deref() {
            None | Some("server") => {
                let listen = self.one_positional("<ADDR>")?;
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
            Some(which @ ("seal" | "unseal")) => {
                self.no_positional(which)?;
                let key = self.key_spec()?.ok_or_else(|| {
                    UsageError(format!(
                        "{which} needs --seal-key-file <KEY> or --seal-key enclave"
                    ))
                })?;
                let input = PathBuf::from(self.required("--in")?);
                let output = PathBuf::from(self.required("--out")?);
                if which == "seal" {
                    Command::Seal { key, input, output }
                } else {
                    Command::Unseal { key, input, output }
                }
            }
            Some("gen-seal-key") => {
                self.no_positional("gen-seal-key")?;
                Command::GenSealKey {
                    out: PathBuf::from(self.required("--out")?),
                }
            }
            Some("gen-cert") => {
                self.no_positional("gen-cert")?;
                let cn = self
                    .optional("--cn")?
                    .unwrap_or_else(|| "localhost".to_owned());
                if cn.is_empty() {
                    return Err(UsageError("--cn must not be empty".into()));
                }
                let out_cert = PathBuf::from(self.required("--out-cert")?);
                let out_key = PathBuf::from(self.required("--out-key")?);
                Command::GenCert {
                    cn,
                    out_cert,
                    out_key,
                }
            }
            Some("gen-image-key") => {
                let flag = self.optional("--out")?;
                let out = match (flag, self.positional.len()) {
                    (Some(out), 0) => out,
                    (None, 1) => self.one_positional("<FILE>")?,
                    _ => return Err(UsageError("gen-image-key needs one output file".into())),
                };
                Command::GenImageKey {
                    out: PathBuf::from(out),
                }
            }
            Some(other) => return Err(UsageError(format!("unknown command {other}"))),
        };
        if let Some((name, _)) = self.flags.first() {
            return Err(UsageError(format!(
                "option {name} does not apply to this command"
            )));
        }
        Ok(command)
    }

    fn serve_config(&mut self, listen: String) -> Result<ServeConfig, UsageError> {
        if listen.is_empty() {
            return Err(UsageError("the listen address is empty".into()));
        }
        let ra_config = self
            .optional("--ra-config")?
            .unwrap_or_else(|| OCCLUM_RA_CONFIG.to_owned());
        let plain = self.optional("--secrets")?;
        let sealed = self.optional("--sealed-secrets")?;
        let key = self.key_spec()?;
        let secrets = match (plain, sealed, key) {
            (Some(_), Some(_), _) => {
                return Err(UsageError(
                    "--secrets and --sealed-secrets exclude each other".into(),
                ));
            }
            (_, Some(path), Some(key)) => SecretsSource::Sealed {
                path: path.into(),
                key,
            },
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
            (Some(path), None, None) => SecretsSource::Plain(path.into()),
            (None, None, None) => SecretsSource::Plain(OCCLUM_SECRETS.into()),
        };
        let pccs = self.optional("--pccs-url")?;
        let file = self.optional("--collateral")?;
        let collateral = match (pccs, file) {
            (Some(_), Some(_)) => {
                return Err(UsageError(
                    "--pccs-url and --collateral exclude each other".into(),
                ));
            }
            (Some(url), None) => CollateralSpec::Pccs(check_url(url)?),
            (None, Some(path)) => CollateralSpec::File(path.into()),
            (None, None) => CollateralSpec::DefaultPccs,
        };
        let collateral_cache = self.optional("--collateral-cache")?.map(PathBuf::from);
        if collateral_cache.is_some() && matches!(collateral, CollateralSpec::File(_)) {
            return Err(UsageError(
                "--collateral-cache applies to a PCCS, not to --collateral".into(),
            ));
        }
        let sim = match (
            self.optional("--sim-platform")?,
            self.optional("--sim-identity")?,
        ) {
            (Some(platform), Some(identity)) => Some(SimSpec {
                platform: platform.into(),
                identity: identity.into(),
            }),
            (None, None) => None,
            _ => {
                return Err(UsageError(
                    "--sim-platform and --sim-identity go together (simulation is all or nothing)"
                        .into(),
                ));
            }
        };
        let reply_form = match self.optional("--reply-form")?.as_deref() {
            None | Some("quoted") => ReplyForm::Quoted,
            Some("bare") => ReplyForm::Bare,
            Some(other) => {
                return Err(UsageError(format!(
                    "--reply-form {other}: expected quoted or bare"
                )));
            }
        };
        let threads = match self.optional("--threads")? {
            None => DEFAULT_THREADS,
            Some(n) => match n.parse::<usize>() {
                Ok(n @ 1..=64) => n,
                _ => return Err(UsageError(format!("--threads {n}: expected 1 to 64"))),
            },
        };
        let cert_lifetime = match self.optional("--cert-lifetime")? {
            None => ratls::cert::DEFAULT_VALIDITY,
            Some(n) => match n.parse::<u64>() {
                Ok(secs)
                    if (MIN_CERT_LIFETIME_SECS..=ratls::cert::MAX_VALIDITY.as_secs())
                        .contains(&secs) =>
                {
                    Duration::from_secs(secs)
                }
                _ => {
                    return Err(UsageError(format!(
                        "--cert-lifetime {n}: expected {MIN_CERT_LIFETIME_SECS} to {} seconds",
                        ratls::cert::MAX_VALIDITY.as_secs()
                    )));
                }
            },
        };
        let staple_collateral = match self.optional("--staple-collateral")?.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(UsageError(format!(
                    "--staple-collateral {other}: expected on or off"
                )));
            }
        };
        Ok(ServeConfig {
            listen,
            ra_config: ra_config.into(),
            secrets,
            collateral,
            collateral_cache,
            audit_log: self.optional("--audit-log")?.map(PathBuf::from),
            sim,
            cert_out: self.optional("--cert-out")?.map(PathBuf::from),
            reply_form,
            threads,
            cert_lifetime,
            staple_collateral,
        })
    }

    fn key_spec(&mut self) -> Result<Option<KeySpec>, UsageError> {
        match (
            self.optional("--seal-key-file")?,
            self.optional("--seal-key")?,
        ) {
            (Some(_), Some(_)) => Err(UsageError(
                "--seal-key-file and --seal-key exclude each other".into(),
            )),
            (Some(path), None) => Ok(Some(KeySpec::File(path.into()))),
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

    /// Removes and returns the value of `name`; giving a flag twice is an error.
    fn optional(&mut self, name: &str) -> Result<Option<String>, UsageError> {
        let mut found = None;
        let mut i = 0;
        while i < self.flags.len() {
            if self.flags.get(i).is_some_and(|(n, _)| n == name) {
                let (_, value) = self.flags.remove(i);
                if found.replace(value).is_some() {
                    return Err(UsageError(format!("{name} given twice")));
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

    fn one_positional(&mut self, what: &str) -> Result<String, UsageError> {
        match self.positional.len() {
            1 => Ok(self.positional.remove(0)),
            0 => Err(UsageError(format!("missing {what}"))),
            _ => Err(UsageError(format!(
                "unexpected argument {:?}",
                self.positional.get(1)
            ))),
        }
    }

    fn no_positional(&self, command: &str) -> Result<(), UsageError> {
        match self.positional.first() {
            Some(p) => Err(UsageError(format!("{command}: unexpected argument {p:?}"))),
            None => Ok(()),
        }
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
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
            "--sim-platform",
            "plat",
            "--sim-identity",
            "id.json",
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
        assert!(cfg.sim.is_some());
        assert!(cfg.cert_out.is_some());
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
}
