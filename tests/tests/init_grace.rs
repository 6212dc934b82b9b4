//! End to end, host mode: `collateral_grace_secs` in init's `ra_config`. With the platform's
//! collateral past its `nextUpdate`, init boots while the lateness is inside the grace period
//! and is refused, naming `collateral-expiry`, once it is not. (Before the handshake's verified
//! peer was handed to the session directly, every boot inside the window failed: the verified
//! peer's cache entry expired at `now` and a second, time-filtered lookup found nothing.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use e2e_tests::{Deployment, run_ok, sgx_sim_bin, write_json};

const EXIT_ATTESTATION: i32 = 6;
/// How long ago the simulated platform's collateral (and certificates) stopped being valid.
const LATE_SECS: u64 = 600;

/// A deployment whose platform's validity ended `LATE_SECS` ago; the KMS accepts that lateness
/// for its clients, so only init's grace period decides.
fn late_deployment() -> Deployment {
    let d = Deployment::new(&[("flask_key", "/etc/flask.key", b"key\n")]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::remove_dir_all(&d.sim.dir).unwrap();
    run_ok(
        Command::new(sgx_sim_bin())
            .arg("init")
            .arg(&d.sim.dir)
            .args(["--not-before", &(now - 2 * 86_400).to_string()])
            .args(["--not-after", &(now - LATE_SECS).to_string()]),
    );
    let mut kms_policy = d.app_id.policy();
    kms_policy["collateral_grace_secs"] = 86_400.into();
    write_json(&d.path("kms/ra_config.json"), &kms_policy);
    d
}

#[test]
fn init_boots_inside_the_collateral_grace_period() {
    let d = late_deployment();
    d.write_init_conf(|conf| conf["ra_config"]["collateral_grace_secs"] = 3_600.into());
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(0);
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.key")).unwrap(),
        b"key\n"
    );
}

#[test]
fn init_is_refused_past_the_collateral_grace_period() {
    let d = late_deployment();
    d.write_init_conf(|conf| conf["ra_config"]["collateral_grace_secs"] = 60.into());
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(EXIT_ATTESTATION);
    assert!(out.stderr.contains("collateral-expiry"), "{}", out.stderr);
    assert!(out.stderr.contains("grace period 60 s"), "{}", out.stderr);
    assert!(!d.rootfs().exists(), "nothing may be written");
}
