//! Command-line parsing in two stages: raw words into a validated [`Command`]; nothing past
//! this module sees an unparsed argument.
//!
//! With no arguments init runs in Occlum mode, exactly as Occlum starts `/bin/init` (argv is
//! `["init"]`); everything else is a subcommand. Inside Occlum (`occlum_dcap::is_occlum`) argv
//! comes from the untrusted host, so every subcommand but `--help`/`--version` is refused: host
//! mode would trust a simulated root the host holds, and `pack-image` writes host-chosen files.
//! Host mode exists only in builds with the `simulation` feature, `pack-image` only in builds
//! with `host-tools` (which `simulation` implies); the Occlum build has neither: there both are
//! refused as not in this build, whatever the argv.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use cliargs::{ArgError, Args, Token};

use crate::config::MAX_CONNECT_DEADLINE_SECS;

/// `init --help`.
pub const USAGE: &str = "\
init: Occlum's first process. Attests to the KMS over ONE mutually attested TLS connection,
fetches image_key and every kms_keys secret, mounts the rootfs, writes the secrets, hands over.

usage:
  init
      Occlum mode (how Occlum runs /bin/init): quote via /dev/sgx, trust Intel's SGX root,
      mount the rootfs with SYS_MOUNT_FS, write secrets, exit 0 so Occlum starts the app.
      Reads /etc/init_ra_conf.json and /etc/image_config.json from the initfs.
  init host --config-dir DIR --sim-platform DIR --sim-identity FILE --image FILE --rootfs DIR
            [--collateral FILE | --pccs-url URL] [--kms-server HOST:PORT[,HOST:PORT...]]
            [--connect-deadline SECS] [-- APP [ARGS...]]
      Host mode, for machines without SGX: the same steps with a SIMULATED platform (quotes
      from sgx-sim, trust in its simulated root). Reads DIR/etc/init_ra_conf.json and
      DIR/etc/image_config.json; unpacks the sealed --image into --rootfs only if it fully
      authenticates; writes secrets below it (mode 0600); then execs APP, with `{rootfs}` in
      APP and ARGS replaced by the rootfs path (without APP: exits 0).
      Collateral defaults to the simulated platform's collateral.json.
  init pack-image (--key IMAGE_KEY_FILE | --integrity-only) --in DIR --out FILE
      Seals DIR into a host-mode rootfs image (AES-128-GCM STREAM under image_key).
  init --help | --version
  Flags: --flag VALUE or --flag=VALUE, each at most once; paths may be any bytes.

environment:
  OCCLUM_INIT_RA_KMS_SERVER   overrides kms_server and kms_servers: one host:port or a
                              comma-separated list, tried in order (host mode: --kms-server wins)
  OCCLUM_INIT_RA_PCCS_URL     overrides pccs_url (host mode: --pccs-url/--collateral win)

exit codes:
  0 success  1 internal  2 usage  3 config  4 quote  5 KMS unreachable
  6 KMS attestation/policy failed  7 secret refused or malformed  8 mount/image refused
  9 writing a secret failed  10 starting the app failed  11 pack-image failed";

/// A validated command line.
#[derive(Debug)]
pub enum Command {
    /// No arguments: Occlum mode.
    Occlum,
    /// `init host ...`.
    Host(Box<HostArgs>),
    /// `init pack-image ...` (`host-tools` builds only).
    #[cfg(feature = "host-tools")]
    PackImage(PackArgs),
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Host-mode arguments.
#[derive(Debug, Default)]
pub struct HostArgs {
    pub config_dir: PathBuf,
    pub sim_platform: PathBuf,
    pub sim_identity: PathBuf,
    pub image: PathBuf,
    pub rootfs: PathBuf,
    pub collateral: Option<PathBuf>,
    pub pccs_url: Option<String>,
    pub kms_server: Option<String>,
    pub connect_deadline: Option<Duration>,
    /// The app and its arguments (after `--`); empty: exit 0 after the secrets.
    pub app: Vec<OsString>,
}

/// `pack-image` arguments.
#[cfg(feature = "host-tools")]
#[derive(Debug)]
pub struct PackArgs {
    /// The image_key file; `None` for an integrity-only image.
    pub key_file: Option<PathBuf>,
    pub input: PathBuf,
    pub output: PathBuf,
}

/// What was wrong with the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (see init --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after argv[0], under the rules for where this process runs.
pub fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    parse_in(args, occlum_dcap::is_occlum())
}

/// [`parse`] with the place decided by the caller (`inside_occlum`: see the module docs).
/// Tokenised by `cliargs`, the workspace's one command-line convention (README "Command
/// lines"); the subcommand is the first word and is checked before any of its flags is read.
pub fn parse_in(args: Vec<OsString>, inside_occlum: bool) -> Result<Command, UsageError> {
    let mut words = Args::new(args);
    let first = match words.next_token()? {
        None => return Ok(Command::Occlum),
        Some(Token::Help) => return Ok(Command::Help),
        Some(Token::Version) => return Ok(Command::Version),
        Some(Token::Word(word)) => word,
        Some(Token::Flag(flag)) => return Err(ArgError::UnknownOption(flag).into()),
        Some(Token::Rest(_)) => OsString::from("--"),
    };
    match first.to_str() {
        Some("help") => Ok(Command::Help),
        Some("pack-image") if !cfg!(feature = "host-tools") => Err(UsageError(
            "init pack-image: not in this build (it has no host tools, as the Occlum build has none: init in Occlum never packs or unpacks an image); pack images with a host build: --features init/host-tools".into(),
        )),
        Some(sub @ ("host" | "pack-image")) if inside_occlum => Err(UsageError(format!(
            "init {sub} is refused inside Occlum: argv comes from the untrusted host, and {}; Occlum runs init with no arguments",
            if sub == "host" {
                "host mode would trust a simulated root (and config, collateral and identity files) the host chooses"
            } else {
                "pack-image would write host-chosen files from inside the enclave"
            }
        ))),
        Some("host") if !cfg!(feature = "simulation") => Err(UsageError(
            "init host: this init was built without the `simulation` feature (the Occlum build trusts only Intel's SGX Root CA); host builds for tests: --features init/simulation".into(),
        )),
        Some("host") => parse_host(words),
        #[cfg(feature = "host-tools")]
        Some("pack-image") => parse_pack(words),
        _ => Err(UsageError(format!("unknown command {first:?}"))),
    }
}

impl From<ArgError> for UsageError {
    fn from(e: ArgError) -> Self {
        UsageError(e.to_string())
    }
}

/// `init host ...`: flags, then optionally `-- APP [ARGS...]`.
fn parse_host(mut words: Args) -> Result<Command, UsageError> {
    let mut raw = HostArgs::default();
    while let Some(token) = words.next_token()? {
        let flag = match token {
            Token::Help => return Ok(Command::Help),
            Token::Version => return Ok(Command::Version),
            Token::Flag(flag) => flag,
            Token::Word(word) => return Err(ArgError::UnexpectedArgument(word).into()),
            Token::Rest(app) => {
                if app.is_empty() {
                    return Err(UsageError(
                        "`--` must be followed by the app to start".into(),
                    ));
                }
                raw.app = app;
                break;
            }
        };
        match flag.as_str() {
            "--config-dir" => raw.config_dir = words.path(&flag)?,
            "--sim-platform" => raw.sim_platform = words.path(&flag)?,
            "--sim-identity" => raw.sim_identity = words.path(&flag)?,
            "--image" => raw.image = words.path(&flag)?,
            "--rootfs" => raw.rootfs = words.path(&flag)?,
            "--collateral" => raw.collateral = Some(words.path(&flag)?),
            "--pccs-url" => raw.pccs_url = Some(words.text(&flag)?),
            "--kms-server" => raw.kms_server = Some(words.text(&flag)?),
            "--connect-deadline" => {
                let text = words.text(&flag)?;
                let secs: u64 = text
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_CONNECT_DEADLINE_SECS).contains(s))
                    .ok_or_else(|| UsageError(format!("--connect-deadline {text:?}: expected seconds, 1..={MAX_CONNECT_DEADLINE_SECS}")))?;
                raw.connect_deadline = Some(Duration::from_secs(secs));
            }
            _ => return Err(ArgError::UnknownOption(flag).into()),
        }
    }
    for (name, path) in [
        ("--config-dir", &raw.config_dir),
        ("--sim-platform", &raw.sim_platform),
        ("--sim-identity", &raw.sim_identity),
        ("--image", &raw.image),
        ("--rootfs", &raw.rootfs),
    ] {
        if path.as_os_str().is_empty() {
            return Err(UsageError(format!("init host needs {name}")));
        }
    }
    if raw.collateral.is_some() && raw.pccs_url.is_some() {
        return Err(UsageError(
            "--collateral and --pccs-url exclude each other".into(),
        ));
    }
    Ok(Command::Host(Box::new(raw)))
}

/// `init pack-image ...`.
#[cfg(feature = "host-tools")]
fn parse_pack(mut words: Args) -> Result<Command, UsageError> {
    let (mut key_file, mut input, mut output, mut integrity_only) = (None, None, None, false);
    while let Some(token) = words.next_flag()? {
        let flag = match token {
            cliargs::FlagToken::Help => return Ok(Command::Help),
            cliargs::FlagToken::Version => return Ok(Command::Version),
            cliargs::FlagToken::Flag(flag) => flag,
        };
        match flag.as_str() {
            "--key" => key_file = Some(words.path(&flag)?),
            "--in" => input = Some(words.path(&flag)?),
            "--out" => output = Some(words.path(&flag)?),
            "--integrity-only" => {
                words.switch(&flag)?;
                integrity_only = true;
            }
            _ => return Err(ArgError::UnknownOption(flag).into()),
        }
    }
    if key_file.is_some() == integrity_only {
        return Err(UsageError(
            "pack-image needs exactly one of --key FILE and --integrity-only".into(),
        ));
    }
    Ok(Command::PackImage(PackArgs {
        key_file,
        input: input.ok_or_else(|| UsageError("pack-image needs --in DIR".into()))?,
        output: output.ok_or_else(|| UsageError("pack-image needs --out FILE".into()))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    const HOST: &str =
        "host --config-dir c --sim-platform p --sim-identity i --image img --rootfs r";

    #[test]
    fn inside_occlum_only_no_arguments_help_and_version_are_accepted() {
        assert!(matches!(parse_in(Vec::new(), true), Ok(Command::Occlum)));
        assert!(matches!(
            parse_in(words("--version"), true),
            Ok(Command::Version)
        ));
        let err = parse_in(words(HOST), true).unwrap_err();
        assert!(err.0.contains("refused inside Occlum"), "{err}");
        let err = parse_in(words("pack-image --integrity-only --in d --out f"), true).unwrap_err();
        let why = if cfg!(feature = "host-tools") {
            "refused inside Occlum"
        } else {
            "not in this build"
        };
        assert!(err.0.contains(why), "{err}");
    }

    #[cfg(not(feature = "host-tools"))]
    #[test]
    fn without_host_tools_pack_image_is_not_in_the_build() {
        for inside_occlum in [false, true] {
            let err =
                parse_in(words("pack-image --key k --in d --out f"), inside_occlum).unwrap_err();
            assert!(
                err.0.starts_with("init pack-image: not in this build"),
                "{err}"
            );
            assert!(err.0.contains("--features init/host-tools"), "{err}");
        }
    }

    #[cfg(not(feature = "simulation"))]
    #[test]
    fn without_the_simulation_feature_there_is_no_host_mode() {
        let err = parse_in(words(HOST), false).unwrap_err();
        assert!(err.0.contains("without the `simulation` feature"), "{err}");
    }

    #[test]
    fn no_arguments_is_occlum_mode() {
        assert!(matches!(parse(Vec::new()), Ok(Command::Occlum)));
    }

    #[cfg(feature = "simulation")]
    #[test]
    fn host_mode_takes_its_flags_and_the_app() {
        let Command::Host(args) = parse(words(&format!(
            "{HOST} --connect-deadline 5 -- /bin/app {{rootfs}} -x"
        )))
        .unwrap() else {
            panic!("not host mode")
        };
        assert_eq!(args.rootfs, PathBuf::from("r"));
        assert_eq!(args.connect_deadline, Some(Duration::from_secs(5)));
        assert_eq!(args.app, words("/bin/app {rootfs} -x"));
    }

    #[cfg(feature = "simulation")]
    #[test]
    fn host_mode_refuses_missing_repeated_and_conflicting_flags() {
        assert!(parse(words("host --config-dir c")).is_err());
        assert!(parse(words(&format!("{HOST} --rootfs again"))).is_err());
        assert!(
            parse(words(&format!(
                "{HOST} --collateral c.json --pccs-url http://x"
            )))
            .is_err()
        );
        assert!(parse(words(&format!("{HOST} --connect-deadline 0"))).is_err());
        assert!(parse(words(&format!("{HOST} --"))).is_err());
        assert!(parse(words(&format!("{HOST} --frobnicate"))).is_err());
    }

    #[cfg(feature = "host-tools")]
    #[test]
    fn pack_image_needs_one_seal_and_both_paths() {
        assert!(matches!(
            parse(words("pack-image --key k --in d --out f")),
            Ok(Command::PackImage(_))
        ));
        assert!(matches!(
            parse(words("pack-image --integrity-only --in d --out f")),
            Ok(Command::PackImage(PackArgs { key_file: None, .. }))
        ));
        assert!(parse(words("pack-image --key k --integrity-only --in d --out f")).is_err());
        assert!(parse(words("pack-image --in d --out f")).is_err());
        assert!(parse(words("pack-image --key k --in d")).is_err());
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        assert!(parse(words("serve")).is_err());
        assert_eq!(
            parse(words("--frob")).unwrap_err().0,
            "unknown option --frob"
        );
    }

    #[cfg(feature = "simulation")]
    #[test]
    fn host_mode_follows_the_workspace_conventions() {
        let inline = HOST.replace("--rootfs r", "--rootfs=r");
        let Command::Host(args) = parse(words(&inline)).unwrap() else {
            panic!("not host mode")
        };
        assert_eq!(args.rootfs, PathBuf::from("r"));
        assert_eq!(
            parse(words(&format!("{HOST} --image again")))
                .unwrap_err()
                .0,
            "--image given twice"
        );
        assert_eq!(
            parse(words(&format!("{HOST} --frob"))).unwrap_err().0,
            "unknown option --frob"
        );
        assert!(matches!(
            parse(words(&format!("{HOST} --help"))),
            Ok(Command::Help)
        ));
        // The app's own flags after `--` are the app's, --help included.
        let Command::Host(args) = parse(words(&format!("{HOST} -- /bin/app --help"))).unwrap()
        else {
            panic!("not host mode")
        };
        assert_eq!(args.app, words("/bin/app --help"));
    }

    #[cfg(feature = "simulation")]
    #[test]
    fn host_mode_paths_take_any_bytes_and_text_refuses_non_utf8_by_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"r\xffoot");
        let mut args = words(HOST.replace(" --rootfs r", "").as_str());
        args.extend(["--rootfs".into(), raw.to_owned()]);
        let Command::Host(host) = parse(args.clone()).unwrap() else {
            panic!("not host mode")
        };
        assert_eq!(host.rootfs.as_os_str(), raw);
        args.extend(["--kms-server".into(), raw.to_owned()]);
        let e = parse(args).unwrap_err();
        assert!(
            e.0.starts_with("--kms-server ") && e.0.ends_with(": not UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn inside_occlum_a_subcommand_is_refused_before_its_flags_are_read() {
        let err = parse_in(words(&format!("{HOST} --help")), true).unwrap_err();
        assert!(err.0.contains("refused inside Occlum"), "{err}");
        assert!(matches!(parse_in(words("--help"), true), Ok(Command::Help)));
    }
}
