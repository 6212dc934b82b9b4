//! Inside Occlum, argv comes from the untrusted host: the real `init` binary refuses every
//! subcommand that would let the host choose what it trusts, one test each.
//!
//! "Inside Occlum" is simulated the way init detects it, `uname().sysname == "Occlum"`: an
//! `LD_PRELOAD` shim, compiled here with `cc`, makes `uname` report that name. Nothing in the
//! production code reads a variable or flag for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

#[path = "../../occlum-dcap/testsupport/occlum_uname_shim.rs"]
mod occlum_uname_shim;
use occlum_uname_shim::shim;

const INIT: &str = env!("CARGO_BIN_EXE_init");

fn init_in_occlum(args: &[&str]) -> Output {
    Command::new(INIT)
        .args(args)
        .env("LD_PRELOAD", shim())
        .output()
        .unwrap()
}

#[test]
fn without_arguments_the_shimmed_init_is_in_occlum_mode() {
    let out = init_in_occlum(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // This host's / has no initfs: Occlum mode fails on its fixed config path.
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("/etc/init_ra_conf.json"), "{stderr}");
}

#[test]
fn host_mode_is_refused() {
    let out = init_in_occlum(&[
        "host",
        "--config-dir",
        "/host/cfg",
        "--sim-platform",
        "/host/platform",
        "--sim-identity",
        "/host/id.json",
        "--image",
        "/host/rootfs.img",
        "--rootfs",
        "/host/rootfs",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("init host is refused inside Occlum"),
        "{stderr}"
    );
    assert!(stderr.contains("simulated root"), "{stderr}");
}

#[test]
fn pack_image_is_refused() {
    let out = init_in_occlum(&[
        "pack-image",
        "--integrity-only",
        "--in",
        "/host/dir",
        "--out",
        "/etc/init_ra_conf.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // A build without the host tools (the Occlum build) does not have the command at all.
    let want = if cfg!(feature = "host-tools") {
        "init pack-image is refused inside Occlum"
    } else {
        "init pack-image: not in this build"
    };
    assert!(stderr.contains(want), "{stderr}");
}
