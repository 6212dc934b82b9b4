//! Inside Occlum, argv comes from the untrusted host: every flag that would choose a trust input
//! is refused by the real `kms` binary, one test per flag.
//!
//! "Inside Occlum" is simulated the way the binary detects it, `uname().sysname == "Occlum"`:
//! an `LD_PRELOAD` shim, compiled here with `cc`, makes `uname` report that name. Nothing in the
//! production code reads a variable or flag for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

#[path = "../../occlum-dcap/testsupport/occlum_uname_shim.rs"]
mod occlum_uname_shim;
use occlum_uname_shim::shim;

const KMS: &str = env!("CARGO_BIN_EXE_kms");

/// `kms args` as if inside Occlum.
fn kms_in_occlum(args: &[&str]) -> Output {
    Command::new(KMS)
        .args(args)
        .env("LD_PRELOAD", shim())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

/// Asserts a usage error (exit 2) whose message names `flag` as refused inside Occlum.
fn assert_refused(args: &[&str], flag: &str) {
    let out = kms_in_occlum(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("{flag} is refused inside Occlum")),
        "{args:?}: {stderr}"
    );
    assert!(stderr.contains("untrusted host"), "{args:?}: {stderr}");
}

#[test]
fn the_shim_puts_the_kms_in_occlum_mode_where_it_reads_the_image_policy() {
    let out = kms_in_occlum(&["server", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("/dynamic_config.json") || stderr.contains("SGX quote device"),
        "{stderr}"
    );
    // Without the shim the same command line is the host's: the policy is relative.
    let host = Command::new(KMS)
        .args(["server", "127.0.0.1:0", "--ra-config", "/nonexistent.json"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stderr).contains("refused inside Occlum"),
        "{}",
        String::from_utf8_lossy(&host.stderr)
    );
}

#[test]
fn ra_config_is_refused() {
    assert_refused(
        &[
            "server",
            "0.0.0.0:50051",
            "--ra-config",
            "/host/allow-all.json",
        ],
        "--ra-config",
    );
}

#[test]
fn secrets_is_refused() {
    assert_refused(
        &["server", "0.0.0.0:50051", "--secrets", "/host/secrets.json"],
        "--secrets",
    );
}

#[test]
fn sealed_secrets_is_refused() {
    assert_refused(
        &[
            "server",
            "0.0.0.0:50051",
            "--sealed-secrets",
            "/host/s.sealed",
            "--seal-key",
            "enclave",
        ],
        "--sealed-secrets",
    );
}

#[test]
fn seal_key_file_is_refused() {
    assert_refused(
        &["server", "0.0.0.0:50051", "--seal-key-file", "/host/key"],
        "--seal-key-file",
    );
}

#[test]
fn collateral_is_refused() {
    assert_refused(
        &["server", "0.0.0.0:50051", "--collateral", "/host/c.json"],
        "--collateral",
    );
}

#[test]
fn collateral_cache_is_refused() {
    assert_refused(
        &[
            "server",
            "0.0.0.0:50051",
            "--collateral-cache",
            "/host/cache",
        ],
        "--collateral-cache",
    );
}

#[test]
fn sim_platform_is_refused() {
    assert_refused(
        &[
            "serve",
            "--listen",
            "0.0.0.0:50051",
            "--sim-platform",
            "/host/platform",
            "--sim-identity",
            "/host/id.json",
        ],
        "--sim-platform",
    );
}

#[test]
fn sim_identity_is_refused() {
    assert_refused(
        &["server", "0.0.0.0:50051", "--sim-identity", "/host/id.json"],
        "--sim-identity",
    );
}

#[test]
fn unseal_is_refused() {
    let out = kms_in_occlum(&[
        "unseal",
        "--seal-key",
        "enclave",
        "--in",
        "/secret_config.sealed",
        "--out",
        "/host/plain.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // A build without the host tools (the Occlum build) does not have the command at all.
    let want = if cfg!(feature = "host-tools") {
        "kms unseal is refused inside Occlum"
    } else {
        "kms unseal: not in this build"
    };
    assert!(stderr.contains(want), "{stderr}");
}

#[test]
fn seal_is_refused() {
    let out = kms_in_occlum(&[
        "seal",
        "--seal-key",
        "enclave",
        "--in",
        "/host/evil.json",
        "--out",
        "/secret_config.sealed",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // A build without the host tools (the Occlum build) does not have the command at all.
    let want = if cfg!(feature = "host-tools") {
        "kms seal is refused inside Occlum"
    } else {
        "kms seal: not in this build"
    };
    assert!(stderr.contains(want), "{stderr}");
}

#[test]
fn an_audit_log_over_the_policy_is_refused() {
    let out = kms_in_occlum(&[
        "server",
        "0.0.0.0:50051",
        "--audit-log",
        "/dynamic_config.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--audit-log /dynamic_config.json is refused inside Occlum"),
        "{stderr}"
    );
}

#[test]
fn a_certificate_output_over_the_secrets_is_refused() {
    let out = kms_in_occlum(&[
        "server",
        "0.0.0.0:50051",
        "--cert-out",
        "secret_config.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--cert-out secret_config.json is refused inside Occlum"),
        "{stderr}"
    );
}

#[test]
fn cluster_is_refused_the_image_file_decides_cluster_mode() {
    assert_refused(
        &["server", "0.0.0.0:50051", "--cluster", "/host/cluster.json"],
        "--cluster",
    );
    assert_refused(
        &["server", "0.0.0.0:50051", "--cluster-slot", "/host/slot"],
        "--cluster-slot",
    );
    let out = kms_in_occlum(&["server", "0.0.0.0:50051", "--cluster", "/host/cluster.json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/cluster.json"), "{stderr}");
}
