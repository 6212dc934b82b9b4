//! The public entry point: a [`Channel`] is one TCP + TLS + HTTP/2 connection to a gRPC
//! server on which unary calls are made one after another.
//!
//! Connect tries every resolved address within the connect budget, sets TCP_NODELAY,
//! requires ALPN `h2`, and bounds the handshake and every later read and write by the phase's
//! deadline (socket timeouts set from the time left before each operation).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName};
use zeroize::Zeroizing;

use crate::config::ClientConfig;
use crate::conn::{Budget, Connection, Limits, Transport};
use crate::error::{Error, Phase};

/// ALPN protocol identifier of HTTP/2 over TLS (RFC 9113 section 3.2).
const ALPN_H2: &[u8] = b"h2";

/// One HTTP/2 connection to a gRPC server, for sequential unary calls.
pub struct Channel {
    conn: Connection<TlsTransport>,
    addr: String,
    cfg: ClientConfig,
}

impl Channel {
    /// Connects to `addr` (`host:port`), verifies the server as `server_name` with `tls`,
    /// and completes the HTTP/2 connection preface.
    ///
    /// If `tls` does not offer ALPN `h2`, a clone of it offering only `h2` is used; a server
    /// that does not select `h2` is refused. Name resolution uses the system resolver, which
    /// has no timeout of its own; the connect budget applies to the TCP connects.
    pub fn connect(
        addr: &str,
        server_name: ServerName<'static>,
        tls: Arc<rustls::ClientConfig>,
        cfg: &ClientConfig,
    ) -> Result<Channel, Error> {
        let tcp = connect_tcp(addr, cfg.connect_timeout())?;
        let budget = Budget::new(Phase::Handshake, cfg.handshake_timeout());
        let stream = tls_handshake(tcp, server_name, with_h2_alpn(tls), &budget)?;
        let limits = Limits {
            max_message: cfg.max_message_size(),
            max_header_list: cfg.max_header_list_size(),
        };
        let conn = Connection::handshake(TlsTransport(stream), limits, addr.to_owned(), &budget)?;
        Ok(Channel {
            conn,
            addr: addr.to_owned(),
            cfg: cfg.clone(),
        })
    }

    /// The server's certificate chain as verified during the handshake (end entity first).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.transport().0.conn.peer_certificates()
    }

    /// Calls `path` (e.g. `/ratls.GrSecret/GetSecret`) with one serialized protobuf message
    /// and returns the one response message, within the configured call deadline.
    ///
    /// A non-OK gRPC status is [`Error::Status`]. After a call-level failure (status, reset,
    /// timeout, oversize message) the channel stays usable; after a connection-level one,
    /// further calls return [`Error::Unusable`] or [`Error::GoAway`].
    pub fn unary(&mut self, path: &str, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.conn.unary(path, request, self.cfg.call_timeout())
    }

    /// Sends GOAWAY and TLS close_notify, then shuts the TCP connection down.
    pub fn close(mut self) -> Result<(), Error> {
        let budget = Budget::new(Phase::Close, self.cfg.handshake_timeout());
        self.conn.close(&budget)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Resolves `addr` and connects to the first address that accepts, within `timeout` overall.
fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let budget = Budget::new(
        Phase::Connect {
            addr: addr.to_owned(),
        },
        timeout,
    );
    let connect_error = |source| Error::Connect {
        addr: addr.to_owned(),
        source,
    };
    let addrs = resolve(addr).map_err(connect_error)?;
    let mut last = None;
    for sa in addrs {
        let left = budget.remaining()?;
        match TcpStream::connect_timeout(&sa, left) {
            Ok(tcp) => {
                tcp.set_nodelay(true).map_err(connect_error)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(budget.timeout())
        }
        Some(e) => Err(connect_error(e)),
        None => Err(connect_error(io::Error::new(
            io::ErrorKind::NotFound,
            "name resolved to no addresses",
        ))),
    }
}

/// Resolves `host:port`. `localhost` (and `*.localhost`, RFC 6761 section 6.3) maps to the
/// loopback addresses without asking a resolver: Occlum's `--init-ra grpc_ratls` initfs has no
/// `/etc/hosts`, so musl's getaddrinfo cannot resolve `localhost` there, and `localhost:50051`
/// is what Occlum's `init_ra_conf.json` template names.
fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
    if let Some((host, port)) = addr.rsplit_once(':') {
        let host = host.to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            let port: u16 = port.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid port in {addr:?}"),
                )
            })?;
            return Ok(vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            ]);
        }
    }
    addr.to_socket_addrs().map(Iterator::collect)
}

/// The caller's config if it offers `h2`, else a clone offering exactly `h2`.
fn with_h2_alpn(tls: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if tls.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return tls;
    }
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

fn tls_handshake(
    tcp: TcpStream,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    budget: &Budget,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Error> {
    let conn = ClientConnection::new(tls, server_name).map_err(|source| Error::Tls {
        phase: Phase::Handshake,
        source,
    })?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        let left = budget.remaining()?;
        stream
            .sock
            .set_read_timeout(Some(left))
            .and_then(|()| stream.sock.set_write_timeout(Some(left)))
            .and_then(|()| stream.conn.complete_io(&mut stream.sock))
            .map_err(|e| budget.io_error(e))?;
    }
    match stream.conn.alpn_protocol() {
        Some(p) if p == ALPN_H2 => Ok(stream),
        Some(p) => Err(Error::Handshake {
            detail: format!(
                "server selected ALPN protocol {:?} instead of h2",
                String::from_utf8_lossy(p)
            ),
        }),
        None => Err(Error::Handshake {
            detail: "server did not select ALPN protocol h2".into(),
        }),
    }
}

/// TLS over TCP with per-operation socket timeouts.
struct TlsTransport(StreamOwned<ClientConnection, TcpStream>);

impl Read for TlsTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for TlsTransport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.0.sock.set_read_timeout(Some(timeout))
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.0.sock.set_write_timeout(Some(timeout))
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.0.sock.set_nonblocking(on)
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.0.conn.send_close_notify();
        self.0.flush()?;
        self.0.sock.shutdown(Shutdown::Write)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod resolve_tests {
    use super::*;

    #[test]
    fn localhost_resolves_to_loopback_without_a_resolver() {
        let addrs = resolve("localhost:50051").unwrap();
        assert_eq!(addrs[0], SocketAddr::from((Ipv4Addr::LOCALHOST, 50051)));
        assert_eq!(addrs[1], SocketAddr::from((Ipv6Addr::LOCALHOST, 50051)));
        assert_eq!(resolve("KMS.localhost:1").unwrap()[0].port(), 1);
    }

    #[test]
    fn a_bad_port_on_localhost_is_an_error_and_ip_literals_still_work() {
        assert!(resolve("localhost:99999").is_err());
        assert_eq!(
            resolve("127.0.0.1:9").unwrap(),
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 9))]
        );
    }
}
