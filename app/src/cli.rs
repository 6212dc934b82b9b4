//! Command-line parsing in two stages: raw flag values, then a validated [`Config`] built once
//! at start-up. Unknown flags, missing values and out-of-range numbers are usage errors.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use cliargs::{ArgError, FlagToken};

use crate::server::ServerSettings;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:4996";
pub const DEFAULT_CERT: &str = "/etc/flask.crt";
pub const DEFAULT_KEY: &str = "/etc/flask.key";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/app";
pub const DEFAULT_WORKERS: usize = 16;
pub const MAX_WORKERS: usize = 1024;
/// Accepted connections that may wait for a worker, per worker.
pub const PENDING_PER_WORKER: usize = 4;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for both timeouts: anything longer is a typo, not a setting.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

pub const HELP: &str = "\
app: the Flask-TLS customer REST portal (HTTPS, customers stored in SQLite)

USAGE:
    app [OPTIONS]

OPTIONS:
    --listen ADDR            address to bind [default: 0.0.0.0:4996]; port 0 picks a free port
    --cert FILE              PEM certificate chain, leaf first [default: /etc/flask.crt]
    --key FILE               PEM private key matching the leaf [default: /etc/flask.key]
    --data-dir DIR           directory of customers.sqlite3, created if missing [default: /var/lib/app]
    --workers N              connection worker threads, 1..=1024 [default: 16]
    --request-timeout SECS   TLS handshake, request read and response write limit [default: 10]
    --idle-timeout SECS      idle time allowed between kept-alive requests [default: 5]
    --quiet                  no per-request log lines
    -h, --help               print this help
    -V, --version            print the version

ROUTES:
    PUT /customer/<id>   form field data=... or JSON {\"data\": \"...\"}  ->  {\"<id>\": \"<data>\"}
    GET /customer/<id>                                                ->  {\"<id>\": \"<data>\"}

Prints \"listening on https://ADDR\" once bound.
Flags: --flag VALUE or --flag=VALUE, each at most once (see the README's \"Command lines\").
EXIT CODES: 0 help or version, 1 server I/O failure, 2 usage, 3 certificate/key, 4 data directory/database,
            5 cannot listen.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Help,
    Version,
    Serve(Config),
}

/// Validated settings for one run.
#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub data_dir: PathBuf,
    pub server: ServerSettings,
}

/// A command line that cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    /// The tokeniser's refusal (unknown flag, missing value, flag given twice, not UTF-8).
    Args(cliargs::ArgError),
    InvalidValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::Args(e) => write!(f, "{e}"),
            UsageError::InvalidValue {
                flag,
                value,
                expected,
            } => write!(f, "invalid value {value:?} for {flag}: expected {expected}"),
        }
    }
}

impl std::error::Error for UsageError {}

impl From<cliargs::ArgError> for UsageError {
    fn from(e: cliargs::ArgError) -> Self {
        UsageError::Args(e)
    }
}

/// Stage one: raw values as given, before any validation.
#[derive(Default)]
struct RawArgs {
    listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    workers: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    quiet: bool,
}

/// Parses the arguments after the program name (tokenised by `cliargs`, the workspace's one
/// command-line convention: see the README's "Command lines").
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut raw = RawArgs::default();
    let mut args = cliargs::Args::new(args);
    while let Some(token) = args.next_flag()? {
        let flag = match token {
            FlagToken::Help => return Ok(Command::Help),
            FlagToken::Version => return Ok(Command::Version),
            FlagToken::Flag(flag) => flag,
        };
        match flag.as_str() {
            "--listen" => raw.listen = Some(args.text(&flag)?),
            "--cert" => raw.cert = Some(args.path(&flag)?),
            "--key" => raw.key = Some(args.path(&flag)?),
            "--data-dir" => raw.data_dir = Some(args.path(&flag)?),
            "--workers" => raw.workers = Some(args.text(&flag)?),
            "--request-timeout" => raw.request_timeout = Some(args.text(&flag)?),
            "--idle-timeout" => raw.idle_timeout = Some(args.text(&flag)?),
            "--quiet" => {
                args.switch(&flag)?;
                raw.quiet = true;
            }
            _ => return Err(ArgError::UnknownOption(flag).into()),
        }
    }
    validate(raw).map(Command::Serve)
}

fn validate(raw: RawArgs) -> Result<Config, UsageError> {
    let listen = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    if listen.is_empty() {
        return Err(UsageError::InvalidValue {
            flag: "--listen",
            value: listen,
            expected: "HOST:PORT",
        });
    }
    let workers = match raw.workers {
        None => DEFAULT_WORKERS,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => n,
            _ => {
                return Err(UsageError::InvalidValue {
                    flag: "--workers",
                    value: text,
                    expected: "a whole number from 1 to 1024",
                });
            }
        },
    };
    let request_timeout = seconds(
        "--request-timeout",
        raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
    )?;
    let idle_timeout = seconds("--idle-timeout", raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)?;
    Ok(Config {
        listen,
        cert: path(raw.cert, DEFAULT_CERT),
        key: path(raw.key, DEFAULT_KEY),
        data_dir: path(raw.data_dir, DEFAULT_DATA_DIR),
        server: ServerSettings {
            workers,
            max_pending: workers * PENDING_PER_WORKER,
            request_timeout,
            idle_timeout,
            access_log: !raw.quiet,
        },
    })
}

fn path(value: Option<PathBuf>, default: &str) -> PathBuf {
    value.unwrap_or_else(|| PathBuf::from(default))
}

fn seconds(
    flag: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, UsageError> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.parse::<f64>().ok().map(Duration::try_from_secs_f64) {
        Some(Ok(duration)) if !duration.is_zero() && duration <= MAX_TIMEOUT => Ok(duration),
        _ => Err(UsageError::InvalidValue {
            flag,
            value: text,
            expected: "seconds, more than 0 and at most 3600",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn config(args: &[&str]) -> Config {
        match parse_strs(args).unwrap() {
            Command::Serve(config) => config,
            other => panic!("expected a serve command, not {other:?}"),
        }
    }

    #[test]
    fn no_arguments_give_the_flask_defaults() {
        let config = config(&[]);
        assert_eq!(config.listen, "0.0.0.0:4996");
        assert_eq!(config.cert, PathBuf::from("/etc/flask.crt"));
        assert_eq!(config.key, PathBuf::from("/etc/flask.key"));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/app"));
        assert_eq!(config.server.workers, 16);
        assert_eq!(config.server.max_pending, 64);
        assert_eq!(config.server.request_timeout, Duration::from_secs(10));
        assert!(config.server.access_log);
    }

    #[test]
    fn flags_take_separate_or_inline_values() {
        let config = config(&[
            "--listen",
            "127.0.0.1:0",
            "--cert=/c.pem",
            "--key",
            "/k.pem",
            "--data-dir=./data",
            "--workers",
            "3",
            "--request-timeout",
            "0.5",
            "--idle-timeout=2",
            "--quiet",
        ]);
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.cert, PathBuf::from("/c.pem"));
        assert_eq!(config.key, PathBuf::from("/k.pem"));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.server.workers, 3);
        assert_eq!(config.server.max_pending, 12);
        assert_eq!(config.server.request_timeout, Duration::from_millis(500));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(2));
        assert!(!config.server.access_log);
    }

    #[test]
    fn help_wins_over_everything_after_it() {
        assert!(matches!(
            parse_strs(&["--workers", "0", "-h", "--bogus"]).unwrap(),
            Command::Help
        ));
        assert!(matches!(
            parse_strs(&["--version"]).unwrap(),
            Command::Version
        ));
    }

    #[test]
    fn an_unknown_flag_is_a_usage_error() {
        assert_eq!(
            parse_strs(&["--port", "1"]).unwrap_err(),
            UsageError::Args(ArgError::UnknownOption("--port".into()))
        );
        assert_eq!(
            parse_strs(&["--quiet=yes"]).unwrap_err(),
            UsageError::Args(ArgError::TakesNoValue("--quiet".into()))
        );
    }

    #[test]
    fn a_flag_without_its_value_is_a_usage_error() {
        assert_eq!(
            parse_strs(&["--cert"]).unwrap_err(),
            UsageError::Args(ArgError::MissingValue("--cert".into()))
        );
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        for args in [
            &["--workers", "0"][..],
            &["--workers", "1025"],
            &["--workers", "many"],
            &["--request-timeout", "0"],
            &["--request-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--idle-timeout", "3601"],
        ] {
            assert!(
                matches!(
                    parse_strs(args).unwrap_err(),
                    UsageError::InvalidValue { .. }
                ),
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_positional_argument_is_rejected() {
        assert_eq!(
            parse_strs(&["serve"]).unwrap_err(),
            UsageError::Args(ArgError::UnexpectedArgument("serve".into()))
        );
        assert!(parse_strs(&["--", "serve"]).is_err());
    }

    #[test]
    fn a_flag_given_twice_is_refused_by_name() {
        assert_eq!(
            parse_strs(&["--workers", "2", "--workers=3"]).unwrap_err(),
            UsageError::Args(ArgError::GivenTwice("--workers".into()))
        );
        assert_eq!(
            parse_strs(&["--quiet", "--quiet"]).unwrap_err(),
            UsageError::Args(ArgError::GivenTwice("--quiet".into()))
        );
    }

    #[test]
    fn paths_take_any_bytes_and_text_flags_refuse_non_utf8_by_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"/d\xffata");
        let Command::Serve(config) = parse([OsString::from("--data-dir"), raw.to_owned()]).unwrap()
        else {
            panic!("not serve")
        };
        assert_eq!(config.data_dir.as_os_str(), raw);
        assert!(matches!(
            parse([OsString::from("--listen"), raw.to_owned()]).unwrap_err(),
            UsageError::Args(ArgError::NotUtf8 { ref flag, .. }) if flag == "--listen"
        ));
    }
}
