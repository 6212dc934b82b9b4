//! Command-line parsing in two stages: raw flag values, then a validated [`Config`] built once
//! at start-up. Unknown flags, missing values and out-of-range numbers are usage errors.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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

ROUTES:
    PUT /customer/<id>   form field data=... or JSON {\"data\": \"...\"}  ->  {\"<id>\": \"<data>\"}
    GET /customer/<id>                                                ->  {\"<id>\": \"<data>\"}

Prints \"listening on https://ADDR\" once bound.
EXIT CODES: 0 help, 1 server I/O failure, 2 usage, 3 certificate/key, 4 data directory/database,
            5 cannot listen.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Help,
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
    UnknownFlag(String),
    MissingValue(&'static str),
    InvalidValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    NotUtf8(&'static str),
    UnexpectedArgument(String),
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::UnknownFlag(flag) => write!(f, "unknown option {flag:?}"),
            UsageError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            UsageError::InvalidValue {
                flag,
                value,
                expected,
            } => write!(f, "invalid value {value:?} for {flag}: expected {expected}"),
            UsageError::NotUtf8(flag) => write!(f, "the value of {flag} is not valid UTF-8"),
            UsageError::UnexpectedArgument(arg) => write!(f, "unexpected argument {arg:?}"),
        }
    }
}

impl std::error::Error for UsageError {}

/// Stage one: raw values as given, before any validation.
#[derive(Default)]
struct RawArgs {
    listen: Option<String>,
    cert: Option<OsString>,
    key: Option<OsString>,
    data_dir: Option<OsString>,
    workers: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    quiet: bool,
    help: bool,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let raw = collect(args)?;
    if raw.help {
        return Ok(Command::Help);
    }
    validate(raw).map(Command::Serve)
}

fn collect(args: impl IntoIterator<Item = OsString>) -> Result<RawArgs, UsageError> {
    let mut raw = RawArgs::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg
            .to_str()
            .ok_or_else(|| UsageError::UnexpectedArgument(arg.to_string_lossy().into_owned()))?;
        // Both "--flag value" and "--flag=value".
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(OsString::from(value))),
            _ => (text, None),
        };
        let mut value = |flag: &'static str| -> Result<OsString, UsageError> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => args.next().ok_or(UsageError::MissingValue(flag)),
            }
        };
        match name {
            "--listen" => raw.listen = Some(utf8("--listen", value("--listen")?)?),
            "--cert" => raw.cert = Some(value("--cert")?),
            "--key" => raw.key = Some(value("--key")?),
            "--data-dir" => raw.data_dir = Some(value("--data-dir")?),
            "--workers" => raw.workers = Some(utf8("--workers", value("--workers")?)?),
            "--request-timeout" => {
                raw.request_timeout = Some(utf8("--request-timeout", value("--request-timeout")?)?);
            }
            "--idle-timeout" => {
                raw.idle_timeout = Some(utf8("--idle-timeout", value("--idle-timeout")?)?);
            }
            "--quiet" if inline.is_none() => raw.quiet = true,
            "-h" | "--help" if inline.is_none() => raw.help = true,
            flag if flag.starts_with('-') => return Err(UsageError::UnknownFlag(text.to_owned())),
            _ => return Err(UsageError::UnexpectedArgument(text.to_owned())),
        }
    }
    Ok(raw)
}

fn utf8(flag: &'static str, value: OsString) -> Result<String, UsageError> {
    value.into_string().map_err(|_| UsageError::NotUtf8(flag))
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

fn path(value: Option<OsString>, default: &str) -> PathBuf {
    value.map_or_else(|| PathBuf::from(default), PathBuf::from)
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn config(args: &[&str]) -> Config {
        match parse_strs(args).unwrap() {
            Command::Serve(config) => config,
            Command::Help => panic!("expected a serve command"),
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
    fn help_wins_over_everything_else() {
        assert!(matches!(
            parse_strs(&["--workers", "9", "-h"]).unwrap(),
            Command::Help
        ));
    }

    #[test]
    fn an_unknown_flag_is_a_usage_error() {
        assert_eq!(
            parse_strs(&["--port", "1"]).unwrap_err(),
            UsageError::UnknownFlag("--port".into())
        );
        assert_eq!(
            parse_strs(&["--quiet=yes"]).unwrap_err(),
            UsageError::UnknownFlag("--quiet=yes".into())
        );
    }

    #[test]
    fn a_flag_without_its_value_is_a_usage_error() {
        assert_eq!(
            parse_strs(&["--cert"]).unwrap_err(),
            UsageError::MissingValue("--cert")
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
            UsageError::UnexpectedArgument("serve".into())
        );
    }
}
