//! Fuzz target: the parsers of etcd JSON-gateway answers in kms/src/cluster/etcd.rs (range, txn,
//! watch stream lines, error bodies, the watch's HTTP response head). etcd and the network
//! are the host's: no input may panic them.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Compiled by path: the kms package links grpcio, which the fuzzer should not build.
#[path = "../../kms/src/cluster/etcd.rs"]
#[allow(dead_code)]
mod etcd;

fuzz_target!(|data: &[u8]| {
    let _ = etcd::parse_range_response(data);
    let _ = etcd::parse_txn_response(data);
    if let Ok(msg) = etcd::parse_watch_line(data) {
        assert!(msg.events.len() <= data.len());
    }
    let _ = etcd::parse_response_head(data);
    let message = etcd::gateway_error_message(data);
    // Peer text in error messages is clipped.
    assert!(message.len() <= 400, "{} bytes", message.len());
});
