//! Start-up through the real binary: failed provisioning (certificate or key missing,
//! unreadable, broken, mismatched) and other bad set-ups exit with their documented code and
//! one clear message naming the file and the flag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{App, TestCert, run_to_exit, temp_dir};

/// Runs the app on a free port with the given files; returns (exit code, stderr).
fn start_with(cert: &Path, key: &Path, data: &Path) -> (i32, String) {
    let out = run_to_exit(&[
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--cert"),
        cert.as_os_str(),
        OsStr::new("--key"),
        key.as_os_str(),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ]);
    assert!(out.stdout.is_empty(), "nothing may be announced");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_missing_certificate_exits_3_naming_the_file_and_the_flag() {
    let dir = temp_dir("app-nocert");
    let cert = TestCert::new(&dir, "c");
    let absent = dir.path().join("flask.crt");
    let (code, err) = start_with(&absent, &cert.key_path, &dir.path().join("data"));
    assert_eq!(code, 3);
    assert!(err.contains(&absent.display().to_string()), "{err}");
    assert!(err.contains("--cert"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_missing_key_exits_3_naming_the_file_and_the_flag() {
    let dir = temp_dir("app-nokey");
    let cert = TestCert::new(&dir, "c");
    let absent = dir.path().join("flask.key");
    let (code, err) = start_with(&cert.cert_path, &absent, &dir.path().join("data"));
    assert_eq!(code, 3);
    assert!(
        err.contains(&absent.display().to_string()) && err.contains("--key"),
        "{err}"
    );
}

#[test]
fn an_unreadable_certificate_exits_3() {
    let dir = temp_dir("app-unreadable");
    let cert = TestCert::new(&dir, "c");
    // A directory where the file should be (root can read any mode bits).
    let (code, err) = start_with(dir.path(), &cert.key_path, &dir.path().join("data"));
    assert_eq!(code, 3);
    assert!(
        err.contains("cannot read the certificate") && err.contains("--cert"),
        "{err}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_exits_3() {
    let dir = temp_dir("app-mismatch");
    let one = TestCert::new(&dir, "one");
    let other = TestCert::new(&dir, "other");
    let (code, err) = start_with(&one.cert_path, &other.key_path, &dir.path().join("data"));
    assert_eq!(code, 3);
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("--key") && err.contains("--cert"), "{err}");
}

#[test]
fn files_that_are_not_pem_exit_3() {
    let dir = temp_dir("app-notpem");
    let cert = TestCert::new(&dir, "c");
    // What an init that wrote the secret's base64 text undecoded would leave behind.
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "dGVzdCBzYW1wbGUgY2VydGlmaWNhdGVzCg==\n").unwrap();
    let (code, err) = start_with(&garbage, &cert.key_path, &dir.path().join("data"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--cert"), "{err}");
    let (code, err) = start_with(&cert.cert_path, &garbage, &dir.path().join("data"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--key"), "{err}");
}

#[test]
fn a_second_instance_on_the_same_data_dir_exits_4() {
    let dir = temp_dir("app-twice");
    let cert = TestCert::new(&dir, "c");
    let data = dir.path().join("data");
    let _first = App::start(&cert, &data, &[]);
    let (code, err) = start_with(&cert.cert_path, &cert.key_path, &data);
    assert_eq!(code, 4);
    assert!(err.contains("another app instance"), "{err}");
}

#[test]
fn a_data_dir_that_cannot_be_created_exits_4() {
    let dir = temp_dir("app-baddata");
    let cert = TestCert::new(&dir, "c");
    let (code, err) = start_with(&cert.cert_path, &cert.key_path, &cert.key_path.join("sub"));
    assert_eq!(code, 4);
    assert!(err.contains("--data-dir"), "{err}");
}

#[test]
fn an_address_in_use_exits_5() {
    let dir = temp_dir("app-inuse");
    let cert = TestCert::new(&dir, "c");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_to_exit(&[
        OsStr::new("--listen"),
        OsStr::new(&addr),
        OsStr::new("--cert"),
        cert.cert_path.as_os_str(),
        OsStr::new("--key"),
        cert.key_path.as_os_str(),
        OsStr::new("--data-dir"),
        dir.path().join("data").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn bad_flags_exit_2_and_help_exits_0() {
    let out = run_to_exit(&[OsStr::new("--workers"), OsStr::new("0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
    let out = run_to_exit(&[OsStr::new("--help")]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("--data-dir") && help.contains("/etc/flask.crt"),
        "{help}"
    );
}

#[test]
fn the_only_stdout_line_announces_the_real_port() {
    let dir = temp_dir("app-announce");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    assert_ne!(app.port, 0);
    assert_eq!(
        app.listening_line,
        format!("listening on https://127.0.0.1:{}", app.port)
    );
}
