//! The tamper-evident audit log and the Prometheus endpoint, driven through the real `kms`:
//! a log written by two runs of the server (releases, refusals, an aggregated summary, a
//! reload) passes `kms audit verify`; the same log with one record edited, deleted or moved
//! fails it, naming the first broken record; `--metrics-listen` counts what happened under
//! fixed labels only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use grpcio::RpcStatusCode;
use sgx_sim::Identity;

/// One audit log written by two runs of the real KMS, shared by the tests: its lines.
fn real_log() -> &'static Vec<String> {
    static LOG: OnceLock<Vec<String>> = OnceLock::new();
    LOG.get_or_init(|| {
        let mut fx = Fixture::start("audit-chain");
        let client = fx.client(&fx.app);
        client.get_decoded("image_key").unwrap();
        client.get_decoded("flask_key").unwrap();
        for _ in 0..3 {
            // Three NOT_FOUND refusals of one peer: one written, two in a summary.
            assert_refused(client.get("no_such"), RpcStatusCode::NOT_FOUND, "no_such");
        }
        let stranger = Identity::random(None).unwrap();
        assert_refused(
            fx.client(&stranger).get("image_key"),
            RpcStatusCode::UNAUTHENTICATED,
            "measurement-policy",
        );
        fx.kms.signal(1);
        fx.kms.wait_audit(|r| r["event"] == "reload");
        assert!(fx.kms.stop().success());

        // A second run appends to the same file: a second chain.
        let mut again = start_kms(KmsSetup {
            dir: &fx.dir,
            sim: &fx.sim,
            policy: policy_json(&fx.app, &fx.tool),
            secrets: secrets_json(&secrets()),
            extra: Vec::new(),
        });
        GrpcClient::connect(&again, Some(&fx.sim.client(&fx.app)))
            .get_decoded("flask_cert")
            .unwrap();
        assert!(again.stop().success());
        let text = std::fs::read_to_string(&again.audit_log).unwrap();
        assert_logs_clean(&again, &secrets());
        text.lines().map(str::to_owned).collect()
    })
}

/// Runs `kms audit verify` on `lines` written to a fresh file.
fn verify(tag: &str, lines: &[String]) -> Output {
    let dir = temp_dir(tag);
    let path = dir.path().join("audit.log");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    verify_file(&path)
}

fn verify_file(path: &Path) -> Output {
    Command::new(kms_path())
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// The index of the first line whose record satisfies `pred`.
fn find(lines: &[String], pred: impl Fn(&serde_json::Value) -> bool) -> usize {
    lines.iter().position(|l| pred(&json(l))).unwrap()
}

#[test]
fn audit_verify_accepts_the_log_of_two_real_runs() {
    let lines = real_log();
    let events: Vec<String> = lines
        .iter()
        .map(|l| json(l)["event"].as_str().unwrap().to_owned())
        .collect();
    for event in [
        "chain_start",
        "start",
        "attestation",
        "release",
        "refusal",
        "reload",
        "stop",
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
    }
    assert!(
        lines.iter().any(|l| json(l)["repeated"] == 2),
        "an aggregated summary is chained too: {lines:#?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "chain_start").count(), 2);
    assert_eq!(events[0], "chain_start");
    let out = verify("verify-intact", lines);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("intact: {} records in 2 chains", lines.len())),
        "{stdout}"
    );
    let last = json(lines.last().unwrap());
    assert!(
        stdout.contains(&format!("last seq {}", last["seq"])),
        "{stdout}"
    );
}

#[test]
fn audit_verify_catches_an_edited_record_of_a_real_log() {
    let mut lines = real_log().clone();
    let i = find(&lines, |r| r["event"] == "release");
    lines[i] = lines[i].replacen("\"verdict\":\"ok\"", "\"verdict\":\"rejected\"", 1);
    let out = verify("verify-edited", &lines);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let seq = json(&lines[i + 1])["seq"].clone();
    let expected = format!(
        "chain broken at line {} (seq {seq}): prev: expected ",
        i + 2
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn audit_verify_catches_a_deleted_record_of_a_real_log() {
    let mut lines = real_log().clone();
    let i = find(&lines, |r| r["event"] == "refusal");
    let gone = json(&lines.remove(i))["seq"].as_u64().unwrap();
    let out = verify("verify-deleted", &lines);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let next = gone + 1;
    let expected = format!(
        "chain broken at line {} (seq {next}): seq: expected {gone} (the previous record's plus one), found {next}",
        i + 1
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn audit_verify_catches_a_reordered_record_of_a_real_log() {
    let mut lines = real_log().clone();
    let i = find(&lines, |r| r["event"] == "release");
    lines.swap(i, i + 1);
    let out = verify("verify-reordered", &lines);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("chain broken at line {} ", i + 1)),
        "{}",
        stderr(&out)
    );
}

#[test]
fn audit_verify_exit_codes_for_a_missing_file_and_bad_usage() {
    let out = verify_file(&PathBuf::from("/nonexistent/audit.log"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/audit.log"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(kms_path())
        .args(["audit", "check", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kms audit verify <FILE>"),
        "{}",
        stderr(&out)
    );
}

/// GET `path` from the metrics endpoint: the whole HTTP response.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample named exactly `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_attestations_releases_and_refusals_under_fixed_labels_only() {
    let fx = Fixture::start_with(
        "metrics",
        |_| {},
        vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
    );
    let start = fx.kms.wait_audit(|r| r["event"] == "start");
    let reason = start["reason"].as_str().unwrap();
    let addr = reason
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in {reason}"))
        .to_owned();

    let client = fx.client(&fx.app);
    client.get_decoded("image_key").unwrap();
    client.get_decoded("flask_key").unwrap();
    assert_refused(
        client.get("tool_only"),
        RpcStatusCode::PERMISSION_DENIED,
        "",
    );
    let stranger = Identity::random(None).unwrap();
    assert_refused(
        fx.client(&stranger).get("image_key"),
        RpcStatusCode::UNAUTHENTICATED,
        "measurement-policy",
    );

    let response = http_get(&addr, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let text = response.split("\r\n\r\n").nth(1).unwrap();
    let ok = "kms_attestations_total{result=\"ok\",check=\"none\"}";
    assert_eq!(value(text, ok), 1.0);
    assert_eq!(
        value(
            text,
            "kms_attestations_total{result=\"rejected\",check=\"measurement-policy\"}"
        ),
        1.0
    );
    assert_eq!(
        value(text, "kms_releases_total{result=\"released\",code=\"OK\"}"),
        2.0
    );
    assert_eq!(
        value(
            text,
            "kms_releases_total{result=\"refused\",code=\"PERMISSION_DENIED\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            text,
            "kms_releases_total{result=\"refused\",code=\"UNAUTHENTICATED\"}"
        ),
        1.0
    );
    assert_eq!(value(text, "kms_attestation_duration_seconds_count"), 2.0);
    assert!(value(text, "kms_gate_connections_open") >= 1.0, "{text}");
    assert_eq!(value(text, "kms_state_generation"), 1.0);

    // Nothing a peer chose, no measurement, no address, no secret name, in any label.
    for needle in [
        hex::encode(stranger.mr_enclave),
        hex::encode(fx.app.mr_enclave),
        "127.0.0.1".to_owned(),
        "image_key".to_owned(),
        "tool_only".to_owned(),
    ] {
        assert!(!text.contains(&needle), "{needle} in\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(labels) = line.split('{').nth(1).and_then(|l| l.split('}').next()) {
            for pair in labels.split(',') {
                let (key, val) = pair.split_once('=').unwrap();
                assert!(
                    ["result", "check", "code", "reason", "le"].contains(&key),
                    "{line}"
                );
                let val = val.trim_matches('"');
                assert!(
                    val.len() <= 24
                        && val
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b)),
                    "{line}"
                );
            }
        }
    }

    // A reload is a new generation.
    fx.kms.signal(1);
    fx.kms.wait_audit(|r| r["event"] == "reload");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http_get(&addr, "/metrics");
        if response.contains("\nkms_state_generation 2\n") {
            break;
        }
        assert!(Instant::now() < deadline, "{response}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(http_get(&addr, "/").starts_with("HTTP/1.1 404 "));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_bad_metrics_address_is_a_usage_error() {
    let out = Command::new(kms_path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "localhost",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--metrics-listen localhost"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn metrics_count_connections_the_gate_refused_by_reason() {
    let fx = Fixture::start_with(
        "metrics-gate",
        |_| {},
        vec![
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--max-connections-per-peer".into(),
            "1".into(),
        ],
    );
    let reason = fx.kms.wait_audit(|r| r["event"] == "start")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = reason
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let held = TcpStream::connect(&fx.kms.addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(&addr, "/metrics").contains("\nkms_gate_connections_open 1\n") {
        assert!(
            Instant::now() < deadline,
            "the held connection is not counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _refused = TcpStream::connect(&fx.kms.addr).unwrap();
    fx.kms.wait_audit(|r| {
        r["event"] == "refusal" && r["reason"].as_str().unwrap_or("").contains("per-peer")
    });
    let text = http_get(&addr, "/metrics");
    assert_eq!(
        value(&text, "kms_gate_refused_total{reason=\"per_peer_limit\"}"),
        1.0
    );
    assert_eq!(value(&text, "kms_gate_connections_open"), 1.0);
    drop(held);
}
