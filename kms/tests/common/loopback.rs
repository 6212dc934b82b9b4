//! TCP connections to the KMS from another loopback address (127.0.0.2, ...): the connection
//! gate counts and budgets per peer address, so tests and benchmarks that play an attacker
//! come from an address of their own. Shared by the gate's unit tests, `tests/hostile.rs` and
//! `benches/kms_flood.rs` (included by `#[path]`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

/// A TCP connection to `to` from `from` (port chosen by the kernel).
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddrV4::new(from, 0))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}
