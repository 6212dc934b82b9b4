//! The public entry point: a [`Channel`] is one TCP + TLS + HTTP/2 connection to a gRPC
//! server on which unary calls are made, one at a time or several at once.
//!
//! Connect tries every resolved address within the connect budget, sets TCP_NODELAY,
//! requires ALPN `h2`, and bounds the handshake and every later read and write by the phase's
//! deadline (socket timeouts set from the time left before each operation).
//!
//! Round trips are what a boot pays for, so output is coalesced: the client's last TLS flight
//! (certificate, CertificateVerify, Finished) is held back and leaves in one write with the
//! HTTP/2 preface, SETTINGS and the first requests, and GOAWAY leaves with close_notify.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConnection;
use rustls_pki_types::{CertificateDer, ServerName};
use zeroize::Zeroizing;

use crate::config::ClientConfig;
use crate::conn::{Budget, Connection, Limits, Transport};
use crate::error::{Error, Phase};

/// ALPN protocol identifier of HTTP/2 over TLS (RFC 9113 section 3.2).
const ALPN_H2: &[u8] = b"h2";

/// The results of [`Channel::unary_many`], one per request, in request order.
pub type Replies = Vec<Result<Zeroizing<Vec<u8>>, Error>>;

/// One HTTP/2 connection to a gRPC server, for unary calls.
pub struct Channel {
    conn: Connection<TlsTransport>,
    addr: String,
    cfg: ClientConfig,
}

impl Channel {
    /// Connects to `addr` (`host:port`), verifies the server as `server_name` with `tls`,
    /// and queues the HTTP/2 connection preface.
    ///
    /// The TLS handshake is complete on return, except that the client's last flight is
    /// still queued: it is sent with the first call. A server that refuses this client's
    /// certificate therefore says so in the first call's result (a TLS alert), not here.
    /// The server's SETTINGS are not waited for (RFC 9113 section 3.4 lets a client send
    /// requests right after its preface); they are applied when they arrive.
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
        let conn = Connection::new(stream, limits, addr.to_owned());
        Ok(Channel {
            conn,
            addr: addr.to_owned(),
            cfg: cfg.clone(),
        })
    }

    /// The server's certificate chain as verified during the handshake (end entity first).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.transport().conn.peer_certificates()
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

    /// Makes several unary calls at once, each on its own stream, and returns their results
    /// in the order of `requests`: all requests leave in one write and the replies come back
    /// in one round trip instead of one each. The call deadline covers the whole batch.
    ///
    /// The outer `Err` is a failure of the connection or of the batch as a whole (I/O,
    /// deadline, GOAWAY, protocol violation, an invalid path); the inner ones are per call
    /// (a non-OK status, a reset, an oversize reply). No more streams than the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS are open at a time, and a stream the server refuses
    /// unprocessed (REFUSED_STREAM) is sent again once another call of the batch has finished.
    pub fn unary_many(&mut self, requests: &[(&str, &[u8])]) -> Result<Replies, Error> {
        self.conn.unary_many(requests, self.cfg.call_timeout())
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
/// is what Occlum's `init_ra_conf.json` template names. Public so a caller that tries every
/// address itself (init's failover between KMS replicas) resolves exactly as [`Channel::connect`].
pub fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
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
) -> Result<TlsTransport, Error> {
    let conn = ClientConnection::new(tls, server_name).map_err(|source| Error::Tls {
        phase: Phase::Handshake,
        source,
    })?;
    let mut t = TlsTransport {
        conn,
        sock: Socket::new(tcp),
    };
    while t.conn.is_handshaking() {
        let left = budget.remaining()?;
        t.sock.read_timeout = Some(left);
        t.sock.write_timeout = Some(left);
        t.queue_records().map_err(|e| budget.io_error(e))?;
        // A TLS 1.3 client has nothing the server waits for between its ClientHello (sent
        // again after a HelloRetryRequest) and its last flight, except the middlebox
        // compatibility ChangeCipherSpec (RFC 8446 section D.4), which the server ignores.
        // Holding that back spares a segment, and the server a wakeup, per handshake; it
        // leaves with the last flight. TLS 1.2 flights are always sent.
        let lone_ccs = t.sock.tx == CHANGE_CIPHER_SPEC
            && t.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        if !lone_ccs {
            t.sock.send().map_err(|e| budget.io_error(e))?;
        }
        match t.conn.read_tls(&mut t.sock) {
            Ok(0) => {
                return Err(Error::ConnectionClosed {
                    phase: Phase::Handshake,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(budget.io_error(e)),
        }
        if let Err(source) = t.conn.process_new_packets() {
            // Deliver the alert that says why, if possible; the error is ours either way.
            let _ = t.write_pending();
            return Err(Error::Tls {
                phase: Phase::Handshake,
                source,
            });
        }
    }
    // Our last flight stays queued (see the module documentation).
    match t.conn.alpn_protocol() {
        Some(p) if p == ALPN_H2 => Ok(t),
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

/// A TLS 1.2-framed ChangeCipherSpec record, as a TLS 1.3 client sends it for middlebox
/// compatibility.
const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

/// TLS over TCP with per-operation socket timeouts. Writes only queue records; `flush`
/// sends everything queued (handshake records included) in one write, so one flush is one
/// TCP segment for a small request.
struct TlsTransport {
    conn: ClientConnection,
    sock: Socket,
}

impl TlsTransport {
    /// Moves every record rustls has queued into the socket's output buffer.
    fn queue_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Writes every queued TLS record to the socket.
    fn write_pending(&mut self) -> io::Result<()> {
        self.queue_records()?;
        self.sock.send()
    }
}

impl Read for TlsTransport {
    /// Returns buffered plaintext, else reads and decrypts records until some arrives:
    /// `Ok(0)` after the server's close_notify, `UnexpectedEof` when TCP ends without it,
    /// `WouldBlock` from a non-blocking socket with nothing new. Queued output is not sent
    /// from here: the connection flushes before every blocking read.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            self.conn.read_tls(&mut self.sock)?;
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.write_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for TlsTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // rustls's buffer is full: send what it holds, then there is room.
        self.write_pending()?;
        self.conn.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

impl Transport for TlsTransport {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.sock.read_timeout = Some(timeout);
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.sock.write_timeout = Some(timeout);
        Ok(())
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.sock.tcp.set_nonblocking(on)
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.write_pending()?;
        self.sock.tcp.shutdown(Shutdown::Write)
    }
}

/// Room for a burst of records: the KMS's session tickets and SETTINGS arrive as about
/// 10 KB at once, which rustls alone would read 4 KiB at a time.
const RX_BUF_LEN: usize = 17 * 1024;

/// The TCP side of [`TlsTransport`]. Incoming bytes are read in bursts of up to
/// [`RX_BUF_LEN`] and handed to rustls from memory; outgoing records collect in `tx` until
/// [`Socket::send`]. Timeouts are recorded, and set on the socket only before a read or
/// write that reaches it: reads served from the buffer cost no system call. Both buffers
/// hold TLS records only, never plaintext.
struct Socket {
    tcp: TcpStream,
    rx: Box<[u8]>,
    start: usize,
    end: usize,
    tx: Vec<u8>,
    /// Set on the socket before its next read, then cleared.
    read_timeout: Option<Duration>,
    /// Set on the socket before its next write, then cleared.
    write_timeout: Option<Duration>,
}

impl Socket {
    fn new(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            rx: vec![0; RX_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            tx: Vec::with_capacity(8 * 1024),
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Writes out everything queued, in one `write` when the socket takes it.
    fn send(&mut self) -> io::Result<()> {
        if self.tx.is_empty() {
            return Ok(());
        }
        if let Some(t) = self.write_timeout.take() {
            self.tcp.set_write_timeout(Some(t))?;
        }
        let sent = self.tcp.write_all(&self.tx);
        self.tx.clear();
        sent
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if let Some(t) = self.read_timeout.take() {
                self.tcp.set_read_timeout(Some(t))?;
            }
            let n = self.tcp.read(&mut self.rx)?;
            self.start = 0;
            self.end = n;
        }
        let buffered = self.rx.get(self.start..self.end).unwrap_or_default();
        let n = buffered.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(buffered.get(..n).unwrap_or_default());
        self.start += n;
        Ok(n)
    }
}

impl Write for Socket {
    /// Queues (rustls writes its records here); [`Socket::send`] writes them out.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
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
