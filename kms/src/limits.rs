//! What one peer may cost the KMS: HTTP/2 streams, connection lifetime and idleness, and the
//! memory gRPC core may use before it starts shedding connections. Applied to the server's
//! channel arguments by `server`.
//!
//! The KMS runs on grpcio 0.13.0, the newest on crates.io, which bundles gRPC core 1.56.2: it
//! predates gRPC's own HTTP/2 rapid-reset mitigations (CVE-2023-44487, fixed in later core
//! releases), has no connection cap (`grpc.max_allowed_incoming_connections` came later) and
//! no `grpc.http2.max_pending_induced_frames` (1.56 hard-codes 10,000). What 1.56 offers, and
//! is used here (argument names checked against its `grpc_types.h` and `chttp2_transport.cc`):
//!
//! - `grpc.max_concurrent_streams`: a client opening more streams than this (after
//!   acknowledging our SETTINGS) loses the connection ("Max stream count exceeded");
//! - `grpc.max_connection_idle_ms`, `grpc.max_connection_age_ms` (+ grace): a connection with
//!   no call in flight is closed soon, and every connection ends after a bounded lifetime, so
//!   a flood on one connection costs the attacker a new handshake at least that often;
//! - keepalive pings, so dead peers do not hold connections;
//!
//! Not used: a resource quota (`grpc.resource_quota`). Measured with `bench/kms_flood`, a
//! 96 MB quota made the rapid-reset flood worse, not better (its reclaimers close idle
//! connections, while the memory is held by cancelled calls queued for the service).
//! - smaller TCP read chunks: requests are a few hundred bytes, so 64 KiB reads per
//!   connection would only multiply the cost of idle connections.

use std::time::Duration;

use grpcio::ChannelBuilder;

/// Streams one connection may have open at once. init sends one call per secret (three or
/// four) at once; Occlum's C++ client one at a time.
pub const MAX_CONCURRENT_STREAMS: i32 = 32;
/// A connection without a call in flight is closed (GOAWAY) after this long.
pub const MAX_CONNECTION_IDLE: Duration = Duration::from_secs(10);
/// Every connection is closed after this long, calls in flight getting [`MAX_CONNECTION_AGE_GRACE`].
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
pub const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(5);
/// Ping a connection silent for this long; close it if the ping is not answered in time.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP read sizes: start small, never above this.
pub const TCP_READ_CHUNK: i32 = 4096;
pub const TCP_MAX_READ_CHUNK: i32 = 64 * 1024;

/// Adds the limits above to the server's channel arguments.
pub fn apply(builder: ChannelBuilder) -> ChannelBuilder {
    builder
        .max_concurrent_stream(MAX_CONCURRENT_STREAMS)
        .raw_cfg_int(
            c"grpc.max_connection_idle_ms".into(),
            millis(MAX_CONNECTION_IDLE),
        )
        .raw_cfg_int(
            c"grpc.max_connection_age_ms".into(),
            millis(MAX_CONNECTION_AGE),
        )
        .raw_cfg_int(
            c"grpc.max_connection_age_grace_ms".into(),
            millis(MAX_CONNECTION_AGE_GRACE),
        )
        .keepalive_time(KEEPALIVE_TIME)
        .keepalive_timeout(KEEPALIVE_TIMEOUT)
        .raw_cfg_int(
            c"grpc.experimental.tcp_read_chunk_size".into(),
            TCP_READ_CHUNK,
        )
        .raw_cfg_int(
            c"grpc.experimental.tcp_max_read_chunk_size".into(),
            TCP_MAX_READ_CHUNK,
        )
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
