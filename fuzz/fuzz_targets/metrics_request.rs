//! Fuzz target: the KMS metrics endpoint's request router (`kms/src/metrics.rs`, whose
//! request head the host sends inside Occlum) must never panic, and answers 200 only to
//! `GET /metrics`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The KMS is a binary; its metrics module needs std and ratls only, so it is compiled here.
#[path = "../../kms/src/metrics.rs"]
#[allow(dead_code)]
mod metrics;

fuzz_target!(|data: &[u8]| {
    let (status, _, body) = metrics::answer(data);
    if status.starts_with("200") {
        assert!(data.starts_with(b"GET /metrics"));
        assert!(body.contains("# TYPE kms_attestations_total counter"));
    } else {
        assert!(status.starts_with("404") || status.starts_with("405"));
    }
});
