//! `ratls inspect`, the real binary: verdicts, exit codes and JSON on the Intel sample, the
//! interop certificates, and simulated RA-TLS certificates whose collateral is fetched over
//! loopback HTTP from a simulated PCCS (the same fetch path as a real PCCS).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ratls::cert::RaTlsIdentity;
use sgx_sim::pccs::Pccs;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ratls/testdata");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn inspect(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ratls"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sample(name: &str) -> String {
    format!("{TESTDATA}/dcap-sample/{name}")
}

fn write_policy(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("policy.json");
    std::fs::write(&path, body).unwrap();
    path
}

const OPEN_POLICY: &str = r#"{"verify_mr_enclave":"off","verify_mr_signer":"off","verify_isv_prod_id":"off",
    "verify_isv_svn":"off","verify_config_svn":"off","verify_enclave_debuggable":"off",
    "sgx_mrs":[{"mr_enclave":"","mr_signer":"","isv_prod_id":0,"isv_svn":0,"config_svn":0,"debuggable":false}]"#;

#[test]
fn the_sample_is_rejected_by_the_default_status_policy_with_a_one_line_reason() {
    let run = inspect(&[
        &sample("sgx_quote"),
        "--collateral",
        &sample("sgx_quote_collateral.json"),
        "--at",
        "1750400000",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert_eq!(
        j["mr_enclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        j["mr_signer"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(j["isv_prod_id"], 0);
    assert_eq!(j["isv_svn"], 0);
    assert_eq!(j["config_svn"], 0);
    assert_eq!(j["debuggable"], false);
    assert_eq!(j["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        j["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(j["accepted"], false);
    assert!(
        j["reasons"][0].as_str().unwrap().contains("tcb-status"),
        "{j}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("tcb_statuses"), "{}", run.stderr);
}

#[test]
fn the_sample_passes_when_the_policy_accepts_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        &format!(r#"{OPEN_POLICY}, "tcb_statuses": ["ConfigurationAndSWHardeningNeeded"]}}"#),
    );
    let run = inspect(&[
        &sample("sgx_quote"),
        "--collateral",
        &sample("sgx_quote_collateral.json"),
        "--at",
        "1750400000",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ACCEPTED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("matched sgx_mrs entry 0"),
        "{}",
        run.stdout
    );
}

#[test]
fn outside_the_collateral_window_the_sample_is_rejected() {
    let run = inspect(&[
        &sample("sgx_quote"),
        "--collateral",
        &sample("sgx_quote_collateral.json"),
        "--at",
        "1752919279",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("collateral-expiry"), "{}", run.stderr);
}

#[test]
fn a_file_that_is_neither_quote_nor_certificate_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"\x03\x00 certainly not a quote").unwrap();
    let run = inspect(&[junk.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("quote"), "{}", run.stderr);
}

#[test]
fn unknown_options_are_usage_errors() {
    assert_eq!(inspect(&["--frobnicate"]).code, 2);
    assert_eq!(
        inspect(&[&sample("sgx_quote"), "--at", "yesterday"]).code,
        2
    );
}

#[test]
fn each_interop_certificate_binds_its_quote_to_its_key() {
    for cert in [
        "gramine-cert.pem",
        "intel-sgxsdk-cert.pem",
        "rats-tls-cert.pem",
    ] {
        let run = inspect(&[&format!("{TESTDATA}/ratls-interop/{cert}"), "--json"]);
        assert_eq!(run.code, 0, "{cert}: {}", run.stderr);
        let j = run.json();
        assert_eq!(j["key_binding"], true, "{cert}");
        assert_eq!(
            j["tcb_status"],
            serde_json::Value::Null,
            "{cert}: DCAP was not asked for"
        );
    }
}

/// A simulated platform, one enclave's RA-TLS certificate, and a PCCS serving the collateral
/// on a loopback port.
struct SimWorld {
    dir: tempfile::TempDir,
    cert: PathBuf,
    quote: PathBuf,
    pccs_url: String,
    stop: Arc<AtomicBool>,
}

impl Drop for SimWorld {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn sim_world() -> SimWorld {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let platform =
        SimPlatform::create(&dir.path().join("platform"), &PlatformOptions::new(now)).unwrap();
    let identity = Identity::random(Some(3)).unwrap();
    let quote = platform.quote(&identity, &[0x42; 64]).unwrap();
    let pccs = Arc::new(Pccs::for_platform(&platform));
    let source = SimQuoteSource::new(platform, identity);
    let minted = RaTlsIdentity::mint(&source).unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, minted.cert_pem()).unwrap();
    let quote_path = dir.path().join("quote.bin");
    std::fs::write(&quote_path, quote).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pccs_url = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    std::thread::spawn(move || pccs.serve(listener, &stop_server, Arc::new(|_: &str| {})));
    SimWorld {
        dir,
        cert,
        quote: quote_path,
        pccs_url,
        stop,
    }
}

#[test]
fn a_simulated_certificate_verifies_with_collateral_fetched_from_the_pccs_under_its_root() {
    let w = sim_world();
    let root = w.dir.path().join("platform/root-ca.pem");
    let run = inspect(&[
        w.cert.to_str().unwrap(),
        "--pccs-url",
        &w.pccs_url,
        "--root-ca",
        root.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let j = run.json();
    assert_eq!(j["tcb_status"], "UpToDate");
    assert_eq!(j["key_binding"], true);
    assert!(
        run.stderr.contains("INSTEAD OF Intel"),
        "the danger must be announced: {}",
        run.stderr
    );
}

#[test]
fn a_simulated_raw_quote_verifies_the_same_way() {
    let w = sim_world();
    let root = w.dir.path().join("platform/root-ca.pem");
    let run = inspect(&[
        w.quote.to_str().unwrap(),
        "--pccs-url",
        &w.pccs_url,
        "--root-ca",
        root.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_simulated_certificate_is_rejected_under_intels_root_by_default() {
    let w = sim_world();
    let run = inspect(&[w.cert.to_str().unwrap(), "--pccs-url", &w.pccs_url]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("dcap-signature"), "{}", run.stderr);
}

#[test]
fn a_simulated_certificate_is_rejected_under_another_platforms_root() {
    let w = sim_world();
    let other = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SimPlatform::create(other.path(), &PlatformOptions::new(now)).unwrap();
    let root = other.path().join("root-ca.pem");
    let run = inspect(&[
        w.cert.to_str().unwrap(),
        "--pccs-url",
        &w.pccs_url,
        "--root-ca",
        root.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("dcap-signature"), "{}", run.stderr);
}
