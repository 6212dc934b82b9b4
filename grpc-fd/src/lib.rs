//! One end of a Unix socket pair handed to a running grpcio server as a plaintext HTTP/2
//! connection, safely.
//!
//! gRPC core can serve a connection it did not accept (`grpc_server_add_channel_from_fd`);
//! grpcio exposes that as the `unsafe fn` [`grpcio::Server::add_channel_from_fd`], whose
//! contract is that the descriptor is a connected stream socket that nothing else touches
//! afterwards. [`serve_stream`] takes a [`UnixStream`] by value, which is exactly that: a
//! connected `SOCK_STREAM` socket, owned, whose descriptor leaves Rust's ownership here and is
//! closed by gRPC core when the connection ends.
//!
//! The KMS uses it for connections whose TLS it terminates itself (rustls), so the plaintext
//! HTTP/2 stays in the process: the other end of the pair is the KMS's, and nothing of it is
//! on a network socket. gRPC core names such a peer `fd:<N>` ([`peer_name`]).
//!
//! Only the credentials gRPC core accepts there are insecure ones: the connection is
//! plaintext HTTP/2 by design, and whoever calls this has authenticated the other end.

use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// Serves `stream` as one more connection of `server` (started), without TLS. Returns the
/// descriptor number gRPC core now owns, which is how it names the connection's peer
/// ([`peer_name`]) until it closes it.
///
/// If gRPC core cannot set the connection up, it logs why and closes the descriptor: the
/// other end of the pair then reads end of file.
///
/// The socket is made non-blocking first: gRPC core reads until `EAGAIN` on the thread that
/// polls, and a blocking socket would stall that thread (and every connection it serves)
/// until the peer writes again. Fails only if that cannot be done; gRPC core is then not
/// given the socket.
pub fn serve_stream(server: &mut grpcio::Server, stream: UnixStream) -> std::io::Result<RawFd> {
    stream.set_nonblocking(true)?;
    let fd = stream.into_raw_fd();
    // SAFETY: `fd` is the descriptor of a connected SOCK_STREAM Unix socket (a `UnixStream`),
    // and `into_raw_fd` gave up its ownership, so no other code reads, writes or closes it:
    // gRPC core owns it from here and closes it when the connection ends.
    #[allow(unsafe_code)]
    unsafe {
        server.add_channel_from_fd(fd);
    }
    Ok(fd)
}

/// gRPC core's name (`RpcContext::peer`) for the peer of a connection [`serve_stream`]
/// returned `fd` for.
pub fn peer_name(fd: RawFd) -> String {
    format!("fd:{fd}")
}

/// The descriptor in gRPC core's name for such a peer (`fd:7` -> 7); `None` for any other
/// peer name (`ipv4:...`, `ipv6:...`, `unix:...`).
pub fn parse_peer_name(grpc_peer: &str) -> Option<RawFd> {
    let digits = grpc_peer.strip_prefix("fd:")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_round_trip_and_nothing_else_parses() {
        assert_eq!(parse_peer_name(&peer_name(7)), Some(7));
        assert_eq!(parse_peer_name(&peer_name(65_000)), Some(65_000));
        for other in [
            "fd:",
            "fd:-1",
            "fd:+3",
            "fd: 3",
            "fd:3x",
            "fd:99999999999999",
            "ipv4:127.0.0.1:4433",
            "unix:/tmp/s",
            "xfd:3",
        ] {
            assert_eq!(parse_peer_name(other), None, "{other}");
        }
    }
}
