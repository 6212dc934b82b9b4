//! Fuzz target: the KMS health endpoint's request router (`kms/src/health.rs`, whose request
//! head the host or any pod on the network sends) must never panic, answers 200 only to
//! `GET /livez` and to `GET /readyz` when ready, asks the readiness callback for `/readyz`
//! only, and always produces valid JSON for the probes' paths.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;

// The KMS is a binary; health.rs serves through metrics.rs's small HTTP server, and both need
// std, serde_json and ratls only, so they are compiled here.
#[path = "../../kms/src/metrics.rs"]
#[allow(dead_code)]
mod metrics;
#[path = "../../kms/src/health.rs"]
#[allow(dead_code)]
mod health;

fuzz_target!(|data: &[u8]| {
    let (ready, head) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    let asked = Cell::new(false);
    let callback = || {
        asked.set(true);
        if ready {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(head).into_owned())
        }
    };
    let (status, content_type, _, body) = health::answer(head, &callback);
    if status.starts_with("200") {
        assert!(head.starts_with(b"GET /livez") || (ready && head.starts_with(b"GET /readyz")));
    }
    if asked.get() {
        assert!(head.starts_with(b"GET /readyz"));
    }
    if content_type == "application/json" {
        let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        if let Some(why) = value.get("why").and_then(|w| w.as_str()) {
            assert!(why.len() <= health::MAX_WHY);
        }
    } else {
        assert!(status.starts_with("404") || status.starts_with("405"));
    }
});
