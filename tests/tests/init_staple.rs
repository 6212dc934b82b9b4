//! The KMS staples its own collateral to its RA-TLS certificate: init, with a PCCS configured as
//! in the demo, verifies the KMS without asking the PCCS, so a boot is one connection (to the
//! KMS) and survives a PCCS outage. Without a staple init falls back to the PCCS, over one
//! kept-alive connection. Real binaries, loopback.

use std::time::{Duration, Instant};

use e2e_tests::{Deployment, Kms, SimPccs};

const SECRETS: &[(&str, &str, &[u8])] = &[("flask_cert", "/etc/flask.crt", b"cert")];

/// Waits until the KMS's stderr contains `needle`, returns it.
fn kms_says(kms: &Kms, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = kms.stderr();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_boot_verifies_the_kms_with_its_stapled_collateral_while_the_pccs_is_down() {
    let d = Deployment::new(SECRETS);
    let pccs = SimPccs::start(&d.sim, "127.0.0.1:0");
    let kms = d.start_kms_with_pccs("127.0.0.1:0", &pccs.url);
    let said = kms_says(&kms, "carries this platform's collateral");
    assert!(
        said.contains("carries this platform's collateral"),
        "{said}"
    );
    // The KMS keeps the collateral it fetched (for its own staple and for init's quote, which
    // comes from the same platform); init is pointed at a PCCS that no longer answers.
    let url = pccs.url.clone();
    pccs.stop();
    let out = d.run_init(&kms.addr, &["--pccs-url", &url], &[]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("collateral stapled by the peer"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/flask.crt")).unwrap(),
        b"cert"
    );
}

#[test]
fn without_a_staple_init_fetches_from_the_pccs_over_one_connection() {
    let d = Deployment::new(SECRETS);
    let pccs = SimPccs::start(&d.sim, "127.0.0.1:0");
    let collateral = d.sim.collateral();
    // The KMS verifies init with the platform's collateral file and staples nothing: what an
    // older KMS (or Occlum's C++ server) presents.
    let kms = d.kms_options("127.0.0.1:0").start_with_collateral(&[
        "--collateral".as_ref(),
        collateral.as_os_str(),
        "--staple-collateral".as_ref(),
        "off".as_ref(),
    ]);
    let out = d.run_init(&kms.addr, &["--pccs-url", &pccs.url], &[]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("no stapled collateral"),
        "{}",
        out.stderr
    );
    // init has exited, so its connection is closed: one connection, the four GETs on it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pccs.counts().0 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pccs.counts(), (1, 4));
}

#[test]
fn a_stapling_kms_staples_its_offline_collateral_too() {
    let d = Deployment::new(SECRETS);
    let kms = d.start_kms("127.0.0.1:0");
    let said = kms_says(&kms, "carries this platform's collateral");
    assert!(
        said.contains("carries this platform's collateral"),
        "{said}"
    );
    // No PCCS anywhere: init's only source would be a dead URL.
    let out = d.run_init(&kms.addr, &["--pccs-url", "http://127.0.0.1:9"], &[]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("collateral stapled by the peer"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_sw_hardening_needed_platform_fails_the_first_boot_naming_the_knob() {
    // What README's "TCB status on real platforms" promises: the default policy accepts only
    // UpToDate, and init's first failed boot names the status and the knob.
    let d = Deployment::new(SECRETS);
    std::fs::remove_dir_all(&d.sim.dir).unwrap();
    e2e_tests::run_ok(
        std::process::Command::new(e2e_tests::sgx_sim_bin())
            .arg("init")
            .arg(&d.sim.dir)
            .args(["--tcb-status", "SWHardeningNeeded"]),
    );
    let kms = d.start_kms("127.0.0.1:0");
    let out = d.run_init(&kms.addr, &[], &[]);
    out.expect_code(6);
    assert!(
        out.stderr.contains(
            "attestation check `tcb-status` failed: TCB status SWHardeningNeeded is not accepted \
             (accepted: UpToDate; knob: ra_config \"tcb_statuses\")"
        ),
        "{}",
        out.stderr
    );
}
