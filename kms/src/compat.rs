//! A second listener for Occlum's C++ `grpc_ratls` clients (`--occlum-compat-listen ADDR`),
//! whose TLS the KMS terminates itself.
//!
//! Occlum's C++ clients present X.509 **v1** certificates that carry extensions
//! (`occlum_get_key_cert` never sets the version). The BoringSSL inside grpcio-sys 0.13
//! refuses those inside the handshake (`INVALID_FIELD_FOR_VERSION`), before any of the KMS's
//! code runs, so on the main port such a client never reaches attestation. Building gRPC core
//! on OpenSSL instead (feature `occlum-cpp-clients`) accepts them, but costs every client about
//! a third more KMS CPU. This listener costs the main port nothing: it is off unless asked for,
//! and when on it has its own port and threads.
//!
//! Per connection:
//! 1. rustls does the TLS handshake (TLS 1.3 or 1.2, ALPN `h2`), presenting the KMS's current
//!    RA-TLS certificate (the one gRPC core presents, re-read at each re-mint) and asking for a
//!    client certificate, which it checks only for possession: the client's handshake
//!    signature under the key of `ratls`'s own parse of the certificate, which accepts v1
//!    ([`ratls::tls::PossessionOnlyClientVerifier`]). Just as gRPC core on the main port
//!    (`RequestClientCertificateButDontVerify`), it does not attest.
//! 2. The plaintext HTTP/2 goes to gRPC core over a Unix socket pair inside the process
//!    ([`grpc_fd::serve_stream`]): the same server, services and channel limits as the main
//!    port; gRPC core names the peer `fd:<N>`.
//! 3. Every GetSecret call then runs exactly the pipeline of the main port: the service asks
//!    [`peer`] for the client's address and the certificate the handshake carried, and
//!    attests, checks the policy and audits as for any client. A connection without a
//!    certificate gets the main port's UNAUTHENTICATED.
//!
//! Inside Occlum, a Unix socket pair is the LibOS's own (`socketpair` in
//! `src/libos/src/net/socket/unix/`, an in-enclave channel), so the plaintext never reaches
//! the host. That is read in Occlum's source and not run here (no Occlum on this machine).
//!
//! What it does not have: the main port's connection gate (per-peer caps and ingress
//! budgets). It has a cap of its own ([`MAX_CONNECTIONS`] at once, the ones over it closed at
//! accept and audited), a handshake deadline ([`HANDSHAKE_TIMEOUT`]) and a stall deadline
//! ([`STALL_TIMEOUT`]); after the handshake, gRPC core's own limits (streams, idleness,
//! lifetime) apply as on the main port. So a host flooding this port can deny it to Occlum's
//! clients (it controls their network anyway), not the main port to init.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustls::ServerConnection;
use zeroize::Zeroizing;

use crate::audit::{AuditLog, Event, Record, Verdict};
use crate::gate::grpc_style;
use crate::rotation::Rotator;

/// At most this many connections at once; more are closed at accept (audited).
pub const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake must finish within this long (as gRPC core's on the main port).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that does not read what the KMS sends for this long loses the connection (as the
/// main port's gate).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Plaintext read from either side at a time, and the most held for the other side.
const CHUNK: usize = 16 * 1024;
/// The connection threads' stacks: a few frames of rustls and two buffers.
const THREAD_STACK: usize = 256 * 1024;

/// The client and the certificate a connection handed to gRPC core carries, by the
/// descriptor gRPC core owns (its peer name `fd:<N>`).
struct Channel {
    /// Which connection: a descriptor number is reused once gRPC core closes it, so the entry
    /// is removed only by the connection that made it.
    generation: u64,
    client: SocketAddr,
    cert_pem: Option<Vec<u8>>,
}

fn channels() -> MutexGuard<'static, HashMap<RawFd, Channel>> {
    static CHANNELS: OnceLock<Mutex<HashMap<RawFd, Channel>>> = OnceLock::new();
    CHANNELS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A connection of this listener, as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address, as gRPC core names peers (`ipv4:192.0.2.7:51000`).
    pub address: String,
    /// The client certificate the handshake carried (PEM), unverified: the service attests it.
    pub cert_pem: Option<Vec<u8>>,
}

/// The connection of this listener that gRPC core names `grpc_peer` (`fd:<N>`), if it is one.
///
/// A call in flight holds its connection, so gRPC core has not closed the descriptor and its
/// number names this connection and no later one.
pub fn peer(grpc_peer: &str) -> Option<Peer> {
    let fd = grpc_fd::parse_peer_name(grpc_peer)?;
    channels().get(&fd).map(|c| Peer {
        address: grpc_style(&c.client),
        cert_pem: c.cert_pem.clone(),
    })
}

/// What the listener hands connections to.
pub struct Deps {
    /// gRPC core, started: connections are added to it.
    pub server: Arc<Mutex<grpcio::Server>>,
    /// The KMS's current certificate and key.
    pub rotator: Arc<Rotator>,
    pub audit: Arc<AuditLog>,
}

/// The listener: its accept thread runs until [`Listener::stop_accepting`].
pub struct Listener {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl Listener {
    /// Binds `listen` and starts accepting.
    pub fn start(listen: &str, deps: Deps) -> io::Result<Listener> {
        let socket = TcpListener::bind(listen)?;
        let addr = socket.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            deps,
            tls: Mutex::new(None),
            open: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        });
        let stop = Arc::clone(&stopping);
        std::thread::Builder::new()
            .name("kms-compat".into())
            .spawn(move || accept_loop(&socket, &shared, &stop))?;
        Ok(Listener { addr, stopping })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: connections already handed to gRPC core finish with it.
    pub fn stop_accepting(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // Wake the blocked accept; the connection is closed unserved.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

struct Shared {
    deps: Deps,
    /// The rustls configuration for the rotator's generation it was built from.
    tls: Mutex<Option<(u64, Arc<rustls::ServerConfig>)>>,
    /// Connections open now.
    open: AtomicUsize,
    /// The last [`Channel::generation`] handed out.
    generation: AtomicU64,
}

impl Shared {
    fn refuse(&self, client: &SocketAddr, reason: String) {
        let who = grpc_style(client);
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some(&who);
        rec.status = Some("UNAVAILABLE");
        rec.reason = Some(reason);
        self.deps.audit.write(&rec);
    }

    /// The rustls configuration presenting the KMS's current certificate.
    fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let generation = self.deps.rotator.generation();
        let mut cached = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built, config)) = cached.as_ref() {
            if *built == generation {
                return Ok(Arc::clone(config));
            }
        }
        let identity = self
            .deps
            .rotator
            .identity()
            .ok_or("the KMS has no certificate yet")?;
        let config = ratls::tls::deferred_server_config(&identity)
            .map(Arc::new)
            .map_err(|e| format!("building the TLS configuration: {e}"))?;
        *cached = Some((generation, Arc::clone(&config)));
        Ok(config)
    }
}

fn accept_loop(socket: &TcpListener, shared: &Arc<Shared>, stopping: &AtomicBool) {
    for stream in socket.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(tcp) = stream else {
            // EMFILE and friends: back off briefly instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let Ok(client) = tcp.peer_addr() else {
            continue;
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            shared.refuse(
                &client,
                format!(
                    "occlum-compat-cap: connection refused: {MAX_CONNECTIONS} connections are open on --occlum-compat-listen"
                ),
            );
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("kms-compat-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if let Err(reason) = serve_connection(tcp, client, &conn_shared) {
                    conn_shared.refuse(&client, format!("occlum-compat-tls: {reason}"));
                }
                conn_shared.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            shared.refuse(
                &client,
                "occlum-compat-cap: connection refused: no thread could be started for it".into(),
            );
        }
    }
}

/// One connection: handshake, hand the plaintext to gRPC core, relay until either side ends.
/// `Err` is a refusal worth auditing (a failed handshake); a connection that ends after it was
/// handed over is not one.
fn serve_connection(mut tcp: TcpStream, client: SocketAddr, shared: &Shared) -> Result<(), String> {
    // The relay writes each TLS record as gRPC core hands it over; with Nagle's algorithm a
    // small one would wait for the client's delayed ACK (tens of milliseconds a call).
    tcp.set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let config = shared.tls_config()?;
    let mut tls =
        ServerConnection::new(config).map_err(|e| format!("starting the TLS session: {e}"))?;
    handshake(&mut tls, &mut tcp).map_err(|e| format!("TLS handshake failed: {e}"))?;
    let cert_pem = tls
        .peer_certificates()
        .and_then(|chain| chain.first())
        // PEM, the form gRPC core gives the service on the main port.
        .map(|der| {
            ratls::cert::pem_encode("CERTIFICATE", der)
                .as_bytes()
                .to_vec()
        });

    let (ours, grpc_end) =
        UnixStream::pair().map_err(|e| format!("creating the socket pair to gRPC core: {e}"))?;
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    // The entry goes in before gRPC core can read a byte of this connection, and under the
    // server's lock, so the descriptor number is this connection's while it is there.
    let fd = {
        let mut server = shared
            .deps
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&grpc_end);
        channels().insert(
            fd,
            Channel {
                generation,
                client,
                cert_pem,
            },
        );
        match grpc_fd::serve_stream(&mut server, grpc_end) {
            Ok(fd) => fd,
            Err(e) => {
                channels().remove(&fd);
                return Err(format!("handing the connection to gRPC core: {e}"));
            }
        }
    };
    // How the connection ends after the handover (a client gone, a stall, a bad record) is
    // not a refusal: the calls on it were audited by the service.
    let _ = relay(&mut tls, &mut tcp, ours);
    {
        let mut channels = channels();
        if channels
            .get(&fd)
            .is_some_and(|c| c.generation == generation)
        {
            channels.remove(&fd);
        }
    }
    Ok(())
}

/// Runs the handshake to completion within [`HANDSHAKE_TIMEOUT`].
fn handshake(tls: &mut ServerConnection, tcp: &mut TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let late = || {
        io::Error::new(
            ErrorKind::TimedOut,
            format!("not finished within {} s", HANDSHAKE_TIMEOUT.as_secs()),
        )
    };
    while tls.is_handshaking() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(late)?;
        tcp.set_read_timeout(Some(left))?;
        tcp.set_write_timeout(Some(left))?;
        // A socket timeout reads as EAGAIN.
        let (read, _) = tls.complete_io(tcp).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => late(),
            _ => e,
        })?;
        if read == 0 && tls.is_handshaking() && !tls.wants_write() {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the client closed the connection",
            ));
        }
    }
    // Whatever the handshake left to send (TLS 1.2's Finished, TLS 1.3's tickets: none).
    while tls.wants_write() {
        tls.write_tls(tcp)?;
    }
    Ok(())
}

/// Relays between the client's TLS and gRPC core's end of the pair until gRPC core closes
/// its end (after the client closed, or on its own: idleness, lifetime), the client stalls
/// for [`STALL_TIMEOUT`], or either side fails.
fn relay(tls: &mut ServerConnection, tcp: &mut TcpStream, mut grpc: UnixStream) -> io::Result<()> {
    tcp.set_nonblocking(true)?;
    grpc.set_nonblocking(true)?;
    // Plaintext from the client, not yet taken by gRPC core.
    let mut to_grpc = Zeroizing::new(Vec::with_capacity(CHUNK));
    // Plaintext from gRPC core (secret replies among it), not yet accepted by rustls (its
    // buffer limit). These buffers are wiped when the connection ends.
    let mut from_grpc = Zeroizing::new(Vec::with_capacity(CHUNK));
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut client_done = false; // the client closed, or sent close_notify
    let mut told_grpc = false; // gRPC core was told (its end shut down for writing)
    let mut stalled_since: Option<Instant> = None;
    let timeout = Timespec {
        tv_sec: i64::try_from(STALL_TIMEOUT.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    loop {
        // Plaintext rustls holds, including what the handshake's last read brought (a TLS 1.2
        // client sends its first request right behind its Finished).
        if !client_done {
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        client_done = true; // close_notify
                        break;
                    }
                    Ok(n) => to_grpc.extend_from_slice(buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        client_done = true; // closed without close_notify
                        break;
                    }
                }
            }
        }
        // gRPC core's bytes into rustls (as much as its buffer takes: the rest waits until the
        // client has read some), so they are sent when the client's socket is writable.
        push(tls, &mut from_grpc)?;
        if client_done && to_grpc.is_empty() && !told_grpc {
            // gRPC core reads end of file, closes its end, and the read below ends the loop.
            let _ = grpc.shutdown(std::net::Shutdown::Write);
            told_grpc = true;
        }
        let want_client_read = !client_done && to_grpc.len() < CHUNK;
        let want_client_write = tls.wants_write();
        let want_grpc_read = from_grpc.is_empty();
        let want_grpc_write = !to_grpc.is_empty();
        let flags = |read: bool, write: bool| {
            let mut f = PollFlags::empty();
            if read {
                f |= PollFlags::IN;
            }
            if write {
                f |= PollFlags::OUT;
            }
            f
        };
        let (client_ready, grpc_ready) = if client_done && !want_client_write {
            // A closed client socket reports POLLHUP at every poll: leave it out.
            let mut fds = [PollFd::new(&grpc, flags(want_grpc_read, want_grpc_write))];
            rustix::event::poll(&mut fds, Some(&timeout)).map_err(io::Error::from)?;
            let [g] = &fds;
            (PollFlags::empty(), g.revents())
        } else {
            let mut fds = [
                PollFd::new(&*tcp, flags(want_client_read, want_client_write)),
                PollFd::new(&grpc, flags(want_grpc_read, want_grpc_write)),
            ];
            rustix::event::poll(&mut fds, Some(&timeout)).map_err(io::Error::from)?;
            let [c, g] = &fds;
            (c.revents(), g.revents())
        };
        if client_ready.is_empty() && grpc_ready.is_empty() {
            if want_client_write || want_grpc_write {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STALL_TIMEOUT {
                    return Err(io::Error::new(ErrorKind::TimedOut, "stalled"));
                }
            }
            continue;
        }
        stalled_since = None;
        let readable = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
        let writable = PollFlags::OUT | PollFlags::HUP | PollFlags::ERR;

        // Client -> gRPC core.
        if want_client_read && client_ready.intersects(readable) {
            match tls.read_tls(tcp) {
                Ok(0) => client_done = true,
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // Send the alert rustls queued, then give up.
                        let _ = tls.write_tls(tcp);
                        return Err(io::Error::new(ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => client_done = true,
            }
        }
        if want_grpc_write && grpc_ready.intersects(writable) {
            match grpc.write(&to_grpc) {
                Ok(n) => {
                    to_grpc.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return Ok(()), // gRPC core closed the connection
            }
        }

        // gRPC core -> client.
        let mut grpc_closed = false;
        if want_grpc_read && grpc_ready.intersects(readable) {
            match grpc.read(&mut buf) {
                Ok(0) => grpc_closed = true,
                Ok(n) => from_grpc.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => grpc_closed = true,
            }
        }
        if !grpc_closed {
            push(tls, &mut from_grpc)?;
        }
        while tls.wants_write() {
            match tls.write_tls(tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // The client has gone: nothing more to deliver.
                Err(_) if client_done => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if grpc_closed {
            // What is still unsent goes with blocking writes, bounded by the stall deadline.
            return flush(tls, tcp, &mut from_grpc);
        }
    }
}

/// Moves `pending` plaintext into rustls, as much as its buffer takes.
fn push(tls: &mut ServerConnection, pending: &mut Vec<u8>) -> io::Result<()> {
    while !pending.is_empty() {
        let n = tls.writer().write(pending)?;
        if n == 0 {
            break; // rustls's buffer is full: send first
        }
        pending.drain(..n);
    }
    Ok(())
}

/// Sends gRPC core's last bytes (`rest`, not yet taken by rustls) and what rustls holds, then
/// close_notify, with blocking writes that each wait at most [`STALL_TIMEOUT`].
fn flush(tls: &mut ServerConnection, tcp: &mut TcpStream, rest: &mut Vec<u8>) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_write_timeout(Some(STALL_TIMEOUT))?;
    loop {
        push(tls, rest)?;
        if rest.is_empty() {
            tls.send_close_notify();
        }
        while tls.wants_write() {
            tls.write_tls(tcp)?;
        }
        if rest.is_empty() {
            return Ok(());
        }
    }
}
