//! The five binaries (kms, init, app, ratls, sgx-sim), run for real, read a command line the
//! same way (README "Command lines"): `--help` and `--version` print on stdout and exit 0; an
//! unknown flag, a flag given twice and a text flag's non-UTF-8 value exit 2 naming the flag;
//! `--flag=value` is `--flag value`; a path flag takes any bytes (the binary gets past its
//! command line and fails on the file instead, naming it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::{Command, Output};

use e2e_tests::{app_bin, init_bin, kms_bin, sgx_sim_bin, workspace_bin};

const EXIT_USAGE: i32 = 2;

/// One binary and command lines that exercise the conventions.
struct Binary {
    name: &'static str,
    path: PathBuf,
    /// A command line every flag below is appended to.
    prefix: &'static [&'static str],
    /// A single-valued text flag and a value it refuses with an error that quotes the value.
    text_flag: &'static str,
    bad_value: &'static str,
    /// A command line whose path argument is appended; it must fail on the file, not exit 2.
    path_prefix: &'static [&'static str],
}

fn binaries() -> Vec<Binary> {
    vec![
        Binary {
            name: "kms",
            path: kms_bin(),
            prefix: &["serve", "--listen", "127.0.0.1:0"],
            text_flag: "--threads",
            bad_value: "0",
            path_prefix: &["audit", "verify"],
        },
        Binary {
            name: "init",
            path: init_bin(),
            prefix: &["host"],
            text_flag: "--connect-deadline",
            bad_value: "0",
            path_prefix: &[
                "host",
                "--sim-platform",
                "/nonexistent/p",
                "--sim-identity",
                "/nonexistent/i",
                "--image",
                "/nonexistent/img",
                "--rootfs",
                "/nonexistent/r",
                "--config-dir",
            ],
        },
        Binary {
            name: "app",
            path: app_bin(),
            prefix: &[],
            text_flag: "--workers",
            bad_value: "0",
            path_prefix: &["--listen", "127.0.0.1:0", "--cert"],
        },
        Binary {
            name: "ratls",
            path: workspace_bin("ratls", "pccs-client", "E2E_RATLS_BIN"),
            prefix: &["inspect", "/nonexistent/quote"],
            text_flag: "--at",
            bad_value: "yesterday",
            path_prefix: &["inspect"],
        },
        Binary {
            name: "sgx-sim",
            path: sgx_sim_bin(),
            prefix: &["init", "/nonexistent/platform"],
            text_flag: "--seed",
            bad_value: "x",
            path_prefix: &[
                "quote",
                "--identity",
                "/nonexistent/i",
                "--report-data",
                "00",
                "--out",
                "/nonexistent/q",
            ],
        },
    ]
}

fn run(b: &Binary, args: &[&OsStr]) -> Output {
    Command::new(&b.path).args(args).output().unwrap()
}

fn with_prefix<'a>(b: &'a Binary, args: &[&'a OsStr]) -> Vec<&'a OsStr> {
    let mut all: Vec<&OsStr> = b.prefix.iter().map(OsStr::new).collect();
    all.extend_from_slice(args);
    all
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stderr without init's `[  0.024 ms]` timestamps.
fn untimed(stderr: &[u8]) -> String {
    text(stderr)
        .lines()
        .map(|line| match (line.find('['), line.find(']')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{}", &line[..open], &line[close + 1..])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exit 2, and stderr names `what`.
fn assert_usage(b: &Binary, out: &Output, what: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}: {stderr}", b.name);
    assert!(
        stderr.contains(what),
        "{}: want {what:?} in {stderr}",
        b.name
    );
}

#[test]
fn help_and_version_print_on_stdout_and_exit_0() {
    for b in binaries() {
        for flag in ["--help", "-h"] {
            let out = run(&b, &[OsStr::new(flag)]);
            assert_eq!(out.status.code(), Some(0), "{} {flag}", b.name);
            assert!(
                text(&out.stdout).contains(b.name) && out.stderr.is_empty(),
                "{} {flag}: stdout {:?}, stderr {:?}",
                b.name,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        for flag in ["--version", "-V"] {
            let out = run(&b, &[OsStr::new(flag)]);
            assert_eq!(out.status.code(), Some(0), "{} {flag}", b.name);
            assert!(
                text(&out.stdout).starts_with(&format!("{} 0.", b.name)),
                "{} {flag}: {:?}",
                b.name,
                text(&out.stdout)
            );
        }
    }
}

#[test]
fn an_unknown_flag_exits_2_naming_it() {
    for b in binaries() {
        for flag in ["--frobnicate", "--frobnicate=1", "-x"] {
            let out = run(&b, &with_prefix(&b, &[OsStr::new(flag)]));
            let name = flag.split('=').next().unwrap();
            assert_usage(&b, &out, &format!("unknown option {name}"));
        }
    }
}

#[test]
fn a_flag_given_twice_exits_2_naming_it() {
    for b in binaries() {
        let inline = format!("{}=1", b.text_flag);
        let out = run(
            &b,
            &with_prefix(
                &b,
                &[
                    OsStr::new(b.text_flag),
                    OsStr::new("1"),
                    OsStr::new(&inline),
                ],
            ),
        );
        assert_usage(&b, &out, &format!("{} given twice", b.text_flag));
    }
}

#[test]
fn flag_equals_value_is_flag_space_value() {
    for b in binaries() {
        let inline = format!("{}={}", b.text_flag, b.bad_value);
        let split = run(
            &b,
            &with_prefix(&b, &[OsStr::new(b.text_flag), OsStr::new(b.bad_value)]),
        );
        let joined = run(&b, &with_prefix(&b, &[OsStr::new(&inline)]));
        assert_usage(&b, &split, b.text_flag);
        assert_usage(&b, &split, b.bad_value);
        assert_eq!(split.status.code(), joined.status.code(), "{}", b.name);
        assert_eq!(
            untimed(&split.stderr),
            untimed(&joined.stderr),
            "{}",
            b.name
        );
        let missing = run(&b, &with_prefix(&b, &[OsStr::new(b.text_flag)]));
        assert_usage(&b, &missing, &format!("{} needs a value", b.text_flag));
    }
}

#[test]
fn a_text_flag_refuses_non_utf8_naming_the_flag_and_a_path_takes_it() {
    let raw = OsStr::from_bytes(b"/nonexistent/\xffdir");
    for b in binaries() {
        let out = run(&b, &with_prefix(&b, &[OsStr::new(b.text_flag), raw]));
        assert_usage(&b, &out, b.text_flag);
        assert_usage(&b, &out, "not UTF-8");

        let mut args: Vec<OsString> = b.path_prefix.iter().map(OsString::from).collect();
        args.push(raw.to_owned());
        let out = Command::new(&b.path).args(&args).output().unwrap();
        let stderr = text(&out.stderr);
        // Past the command line: the failure is about the file, named (lossily) in the error.
        assert!(
            out.status.code() != Some(0)
                && stderr.contains("/nonexistent/\u{FFFD}dir")
                && !stderr.contains("not UTF-8"),
            "{} {args:?}: want a failure on the file, got {:?}: {stderr}",
            b.name,
            out.status.code()
        );
    }
}
