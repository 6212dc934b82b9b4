//! Fuzz target: HTTP/2 frames from a server — the frame parser and the whole gRPC client
//! state machine (HPACK, CONTINUATION, flow control, trailers) must return errors, never
//! panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    grpc_unary::fuzzing::h2_frames(data);
});
