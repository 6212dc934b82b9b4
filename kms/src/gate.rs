//! The connection gate: the KMS's public socket, in front of gRPC core.
//!
//! grpcio 0.13.0 (the newest on crates.io) bundles gRPC core 1.56.2, which has no connection
//! cap and no HTTP/2 rapid-reset mitigation (CVE-2023-44487): streams a client opens and
//! cancels at once stay queued inside core faster than the service drains them, and every
//! idle connection costs core tens of kilobytes. So gRPC core listens only on a loopback port
//! ([`UPSTREAM_HOST`]) and this gate owns the listen address. Per connection it forwards bytes
//! both ways unchanged (TLS and the attestation stay end to end between the client and
//! gRPC core), and it bounds what a peer may cost before core sees anything:
//!
//! The defences budget what is unauthenticated. Once a call on a connection passes
//! attestation and the policy, the service says so ([`mark_attested`]; the gate knows which
//! client each of gRPC core's loopback connections carries), and the connection leaves the
//! per-peer cap and every ingress budget, gets back what it spent of them, and is never closed
//! to make room. Everything below applies to connections not (yet) attested:
//!
//! - connections in total ([`Limits::max_connections`], `--max-connections`; attested ones
//!   count here too, as file descriptors) and per peer ([`Limits::max_connections_per_peer`],
//!   `--max-connections-per-peer`; a peer is an IPv4 address or an IPv6 /64). At the total
//!   cap, the unattested connection that has sent nothing for the longest (at least
//!   [`EVICT_IDLE_AFTER`]) makes room, else one of the peer holding most when it holds more
//!   than one above the newcomer's peer; otherwise the new one is closed;
//! - ingress bytes: a token bucket per connection ([`CONNECTION_RATE`]), per peer
//!   ([`PEER_RATE`]) and in total ([`TOTAL_RATE`], `--max-ingress`). A connection over its
//!   budget is not read until the bucket refills, so TCP pushes back on the sender; when the
//!   budget is contended, the connections read least go first, so a handshake's few kilobytes
//!   go before a flood's megabytes. The connection's burst is its first flight: it covers the
//!   largest legitimate one (a 46 KB client certificate over TLS 1.2; init sends about 7 KB
//!   before it is attested, Occlum's C++ client under 16 KB); past it, an unattested
//!   connection is read at [`CONNECTION_RATE`]'s rate, which holds a rapid-reset flood to a
//!   rate the service drains. The peer's and the total bursts bound the first flights in
//!   progress at once (2 MiB and 4 MiB: a few hundred boots), and because an attested
//!   connection gets its bytes back, boots never use them up: one address boots at the speed
//!   of the CPU;
//! - churn: a connection's first flight is fresh, but the peer's and the total bucket are not,
//!   and only attestation refills them beyond their rates. So an attacker that reopens
//!   connections and never attests gets, from one address, at most the peer's burst plus its
//!   rate (2 MiB, then 128 KiB/s), and from any number of addresses at most the total's
//!   (4 MiB, then 128 KiB/s at the default `--max-ingress`): the same sustained rates as a
//!   connection that keeps sending. Each new connection also costs gRPC core a TLS handshake,
//!   which no byte budget bounds, so a peer has a budget of new connections too
//!   ([`PEER_CONNECT_RATE`]: 256, then 32 a second), from which an attested connection's is
//!   given back; past it, new connections from that peer are closed at accept (audited).
//!   Many addresses each within their budgets still add up, and their fresh connections look
//!   like boots to the least-read-first order; so the last quarter of the total budget
//!   ([`TOTAL_RESERVE_SHARE`]) is kept for peers in good standing, whose connections have
//!   attested at least as often as they closed unattested (counted while the gate remembers
//!   the peer). Enclaves' handshakes draw on it and give it back as they attest. What remains
//!   open: a flood from many addresses each still in good standing (each can close at most
//!   one connection unattested before it loses it), and a new host's first boot competing
//!   with such a flood; clients already attested are not affected;
//! - time: an upstream connect must finish within [`CONNECT_TIMEOUT`], and a client that does
//!   not read what the KMS sends for [`STALL_TIMEOUT`] loses the connection. Handshake,
//!   idleness and lifetime are gRPC core's (`server::HANDSHAKE_TIMEOUT`, `limits`).
//!
//! After a flood (a throttling, refusal or eviction), the allocator's free memory is handed
//! back to the kernel once the gate has been calm for each of [`TRIM_AFTER`]
//! (`occlum_dcap::trim_heap`, glibc's `malloc_trim(0)`): gRPC core frees what a flood made
//! it queue, but glibc keeps the pages in its arenas.
//!
//! Refused connections are audited (`Event::Refusal`, aggregated per peer like every
//! refusal), as is the first throttling of each connection (`Event::Throttle`). gRPC core sees every call as
//! coming from the gate's loopback address; [`client_address`] maps it back to the client's
//! own, so audit records name the real peer.
//!
//! What it does not do: look inside TLS (it cannot tell a reset stream from a request), or
//! keep a flood from many addresses from sharing the total budget with the handshakes of
//! legitimate clients; an attested client may flood at will (it is a trusted enclave);
//! and the loopback port is reachable by anything on the host that can open sockets, which
//! inside Occlum is the host itself (still mutual RA-TLS: availability only, which the host
//! controls anyway).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::audit::{AuditLog, Event, Record, Verdict};
use crate::metrics::{GateRefusal, METRICS};

/// Where gRPC core listens, behind the gate.
pub const UPSTREAM_HOST: &str = "127.0.0.1";
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `--max-connections-per-peer` (unattested connections): one host's enclaves share
/// its address, and a few hundred may boot at once.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;
/// Unattested ingress per connection: its first flight. A boot sends about 7 KB before it is
/// attested (init), under 16 KB (Occlum's C++ client), and a TLS 1.2 client certificate may
/// be 46 KB; past the burst an unattested connection is read at `per_sec`.
pub const CONNECTION_RATE: Rate = Rate {
    per_sec: 32 * 1024,
    burst: 128 * 1024,
};
/// Unattested ingress per peer, over all its connections. What a connection spent is given
/// back when it is attested, so the burst bounds the bytes of a peer's connections that are
/// still handshaking (about 290 boots of 7 KB at once), and the rate is what its unattested
/// connections get once that is spent: a peer that opens connections and never attests.
pub const PEER_RATE: Rate = Rate {
    per_sec: 128 * 1024,
    burst: 2 * 1024 * 1024,
};
/// Unattested ingress in total (`--max-ingress` sets the rate), refunded on attestation like
/// the peer's. gRPC core 1.56 drains a rapid-reset flood more slowly than its calls arrive
/// above roughly this rate on two shared cores (`bench/kms_flood`, eight peers: 256 KiB/s in
/// total held 193-233 MB after 60 s, 512 KiB/s 245 MB after 150 s).
pub const TOTAL_RATE: Rate = Rate {
    per_sec: 128 * 1024,
    burst: TOTAL_BURST_SECS * 128 * 1024,
};
/// New connections per peer that have not (yet) attested: a connection takes one and gets it
/// back when it attests. Every connection costs gRPC core a TLS handshake, so an address that
/// reopens connections and never attests is held to this rate after the burst (the per-peer
/// cap's worth), while its boots, which attest, never run it down.
pub const PEER_CONNECT_RATE: Rate = Rate {
    per_sec: 32,
    burst: DEFAULT_MAX_CONNECTIONS_PER_PEER as u64,
};
/// The last 1/this of the total budget is kept for peers whose connections attest (more of
/// them attested than closed unattested): a flood from many addresses that reopens its
/// connections cannot take the budget the handshakes of enclaves need.
const TOTAL_RESERVE_SHARE: u64 = 4;
/// The total budget's burst, in seconds of its rate (`--max-ingress` sets the rate): 4 MiB at
/// the default, about 570 first flights of 7 KB in progress at once.
pub const TOTAL_BURST_SECS: u64 = 32;
/// After a flood (a connection throttled, refused or evicted), the allocator's free memory is
/// handed back to the kernel once nothing has been throttled or refused for each of these.
/// Several times, because gRPC core frees what a flood made it hold over tens of seconds (a
/// rapid-reset flood's memory was still in use 15 s after it, and free by 25 s); each trim
/// costs a few milliseconds of the gate's thread.
const TRIM_AFTER: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
];
/// At the total cap, a connection idle at least this long may be closed for a new one.
pub const EVICT_IDLE_AFTER: Duration = Duration::from_secs(1);
/// The loopback connect to gRPC core must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that reads nothing of what the KMS has to send for this long is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes buffered per direction per connection.
const BUF_LEN: usize = 16 * 1024;
/// How often timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// After a failed accept (out of file descriptors), accept again after this.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// A throttled connection is read again once this much budget is back (not byte by byte).
const RETRY_MIN: usize = 1024;
/// Shortest wait before a throttled connection is read again.
const MIN_THROTTLE_WAIT: Duration = Duration::from_millis(5);

const WAKER: Token = Token(usize::MAX);
const FIRST_CONN_TOKEN: usize = 1 << 16;

/// A token-bucket rate: `per_sec` bytes a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    pub burst: u64,
}

/// What the gate allows; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub connection_rate: Rate,
    pub peer_rate: Rate,
    pub total_rate: Rate,
    /// New unattested connections per peer (a rate in connections).
    pub peer_connect_rate: Rate,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            connection_rate: CONNECTION_RATE,
            peer_rate: PEER_RATE,
            total_rate: TOTAL_RATE,
            peer_connect_rate: PEER_CONNECT_RATE,
        }
    }
}

/// A failure to start the gate.
#[derive(Debug)]
pub enum GateError {
    /// The listen address did not resolve to anything.
    Resolve { listen: String, source: io::Error },
    /// None of the resolved addresses could be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// The event loop could not be set up.
    Poll(io::Error),
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateError::Resolve { listen, source } => {
                write!(f, "resolving the listen address {listen}: {source}")
            }
            GateError::Bind { addr, source } => write!(f, "binding {addr}: {source}"),
            GateError::Poll(e) => write!(f, "setting up the connection gate's event loop: {e}"),
        }
    }
}

impl std::error::Error for GateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GateError::Resolve { source, .. } | GateError::Bind { source, .. } => Some(source),
            GateError::Poll(e) => Some(e),
        }
    }
}

/// The listening sockets, bound but not yet serving.
pub struct Bound {
    listeners: Vec<TcpListener>,
    port: u16,
}

impl Bound {
    /// Binds every address `listen` (`host:port`) resolves to, all on one port: the first
    /// bound one's when `port` is 0. Fails only when none can be bound.
    pub fn bind(listen: &str) -> Result<Bound, GateError> {
        let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(listen)
            .map_err(|source| GateError::Resolve {
                listen: listen.to_owned(),
                source,
            })?
            .collect();
        let mut listeners = Vec::new();
        let mut port = None;
        let mut first_error = None;
        for mut addr in addrs {
            if let Some(port) = port {
                addr.set_port(port);
            }
            match TcpListener::bind(addr) {
                Ok(l) => {
                    if port.is_none() {
                        port = l.local_addr().ok().map(|a| a.port());
                    }
                    listeners.push(l);
                }
                Err(source) => {
                    first_error.get_or_insert(GateError::Bind { addr, source });
                }
            }
        }
        match (port, first_error) {
            (Some(port), _) => Ok(Bound { listeners, port }),
            (None, Some(e)) => Err(e),
            (None, None) => Err(GateError::Resolve {
                listen: listen.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            }),
        }
    }

    /// The port every listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts forwarding accepted connections to `upstream` (gRPC core on loopback).
    pub fn start(
        self,
        upstream: SocketAddr,
        limits: Limits,
        audit: Arc<AuditLog>,
    ) -> Result<Gate, GateError> {
        let poll = Poll::new().map_err(GateError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(GateError::Poll)?);
        let mut listeners = self.listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, Token(i), Interest::READABLE)
                .map_err(GateError::Poll)?;
        }
        let phase = Arc::new(AtomicU8::new(RUNNING));
        let mut state = Loop {
            poll,
            listeners,
            upstream,
            limits,
            audit,
            phase: Arc::clone(&phase),
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            peers: HashMap::new(),
            total: Bucket::full(limits.total_rate, Instant::now()),
            accept_retry: None,
            waker: Arc::clone(&waker),
            pressure: None,
            trims: 0,
        };
        let thread = std::thread::Builder::new()
            .name("kms-gate".into())
            .spawn(move || state.run())
            .map_err(GateError::Poll)?;
        Ok(Gate {
            waker,
            phase,
            thread: Some(thread),
        })
    }
}

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const STOPPED: u8 = 2;

/// The running gate.
pub struct Gate {
    waker: Arc<Waker>,
    phase: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    /// Stops accepting; connections already open keep being forwarded.
    pub fn stop_accepting(&self) {
        self.phase.store(DRAINING, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl Drop for Gate {
    /// Closes every connection and ends the gate's thread.
    fn drop(&mut self) {
        self.phase.store(STOPPED, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// File descriptors kept free for everything but gate connections (audit log, PCCS, files).
const FD_RESERVE: u64 = 256;

/// Raises the soft open-file limit to what `limits` needs (three descriptors per connection:
/// the client's, the gate's upstream and gRPC core's end), up to the hard limit; if that is
/// not enough, lowers `max_connections` (and the per-peer cap with it) to fit, and says so.
pub fn fit_fd_limit(mut limits: Limits) -> Limits {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let need = limits.max_connections as u64 * 3 + FD_RESERVE;
    let mut lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= need {
        return limits;
    }
    let hard = lim.maximum.unwrap_or(u64::MAX);
    lim.current = Some(need.min(hard));
    let soft = match setrlimit(Resource::Nofile, lim) {
        Ok(()) => need.min(hard),
        Err(_) => soft,
    };
    if soft < need {
        let fit = usize::try_from(soft.saturating_sub(FD_RESERVE) / 3)
            .unwrap_or(usize::MAX)
            .max(1);
        eprintln!(
            "kms: the open-file limit ({soft}) allows {fit} connections, not {}              (--max-connections): using {fit}; raise `ulimit -n` for more",
            limits.max_connections
        );
        limits.max_connections = fit;
        limits.max_connections_per_peer = limits.max_connections_per_peer.min(fit);
    }
    limits
}

/// A connection's attestation, set by the service ([`mark_attested`]) and read by the gate.
struct Attested {
    flag: AtomicBool,
    /// Wakes the gate, so it takes the connection out of the budgets now.
    waker: Arc<Waker>,
}

/// The client a gate connection forwards, and whether it has been attested.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    attested: Arc<Attested>,
}

/// The gate's upstream (loopback) port -> the client it forwards, for [`client_address`] and
/// [`mark_attested`].
fn clients() -> MutexGuard<'static, HashMap<u16, Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<u16, Client>>> = OnceLock::new();
    CLIENTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// gRPC core's name for a peer (`ipv4:127.0.0.1:40312`): for a connection through the gate,
/// the client's own address in the same form (`ipv4:192.0.2.7:51000`, `ipv6:[2001:db8::1]:443`);
/// anything else unchanged.
pub fn client_address(grpc_peer: &str) -> String {
    match upstream_port(grpc_peer).and_then(|p| clients().get(&p).map(|c| c.addr)) {
        Some(addr) => grpc_style(&addr),
        None => grpc_peer.to_owned(),
    }
}

/// Tells the gate that the client of the connection gRPC core names `grpc_peer` has passed
/// attestation: from now on its ingress is not budgeted, what it spent of its peer's and the
/// total budget is given back, and it is never closed to make room for another connection.
/// Nothing happens for a peer that did not come through the gate.
///
/// The service calls this only after the client's RA-TLS certificate has been verified
/// against the policy, on a call that is still in flight on that connection, so the gate's
/// loopback port cannot yet have been reused by another connection.
pub fn mark_attested(grpc_peer: &str) {
    let Some(attested) =
        upstream_port(grpc_peer).and_then(|p| clients().get(&p).map(|c| Arc::clone(&c.attested)))
    else {
        return;
    };
    if !attested.flag.swap(true, Ordering::SeqCst) {
        let _ = attested.waker.wake();
    }
}

/// The gate's loopback port in gRPC core's name for a peer (`ipv4:127.0.0.1:40312`).
fn upstream_port(grpc_peer: &str) -> Option<u16> {
    grpc_peer
        .strip_prefix("ipv4:")
        .and_then(|rest| rest.strip_prefix(UPSTREAM_HOST))
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|port| port.parse::<u16>().ok())
}

/// Whom the per-peer limits count against: an IPv4 address, or an IPv6 /64 (one host's
/// usual allocation, which it can fill with addresses at will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerKey(IpAddr);

impl PeerKey {
    fn of(addr: &SocketAddr) -> PeerKey {
        match addr.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    PeerKey(IpAddr::V6(bits.into()))
                }
            },
            v4 => PeerKey(v4),
        }
    }
}

/// A token bucket of bytes.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * rate.per_sec as f64).min(rate.burst as f64);
        self.at = now;
    }

    fn available(&self) -> usize {
        self.tokens.max(0.0) as usize
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Gives back `n` taken earlier, up to the burst.
    fn give(&mut self, n: u64, rate: Rate) {
        self.tokens = (self.tokens + n as f64).min(rate.burst as f64);
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= rate.burst as f64
    }

    /// How long until at least one read's worth of tokens is back.
    fn wait(&self, rate: Rate) -> Duration {
        let want = (RETRY_MIN as f64).min(rate.burst as f64) - self.tokens;
        if want <= 0.0 || rate.per_sec == 0 {
            return MIN_THROTTLE_WAIT;
        }
        Duration::from_secs_f64(want / rate.per_sec as f64).max(MIN_THROTTLE_WAIT)
    }
}

struct PeerState {
    /// Unattested connections open.
    conns: usize,
    bucket: Bucket,
    /// New connections not given back by attestation ([`PEER_CONNECT_RATE`]).
    connects: Bucket,
    /// Connections that attested, and that closed unattested after sending something.
    attested: u32,
    failed: u32,
}

impl PeerState {
    /// A peer whose connections attest at least as often as they fail may use the total
    /// budget's last [`TOTAL_RESERVE_SHARE`]; others leave it to them.
    fn reserve(&self, total: Rate) -> usize {
        if self.attested >= self.failed {
            0
        } else {
            usize::try_from(total.burst / TOTAL_RESERVE_SHARE).unwrap_or(usize::MAX)
        }
    }
}

/// Bytes waiting to be written one way.
struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room at the end, after moving what is buffered to the front.
    fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data.get_mut(self.end..).unwrap_or_default()
    }

    fn pending(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }
}

/// One client connection and its upstream connection.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    peer: SocketAddr,
    key: PeerKey,
    up_port: u16,
    up_connected: bool,
    to_up: Buf,
    to_client: Buf,
    client_eof: bool,
    upstream_eof: bool,
    up_shut: bool,
    bucket: Bucket,
    /// Set by the service once the client is attested ([`mark_attested`]).
    attested: Arc<Attested>,
    /// The gate has seen `attested` and taken the connection out of the budgets.
    exempt: bool,
    /// Bytes read from the client so far.
    received: u64,
    opened: Instant,
    last_ingress: Instant,
    /// Not read because a bucket is empty, since this instant.
    throttled: Option<Instant>,
    throttle_audited: bool,
    /// Output to the client has waited since this instant.
    stalled: Option<Instant>,
}

/// Why a connection ends.
enum End {
    /// Both directions finished.
    Done,
    /// A socket error.
    Io(io::Error),
}

struct Loop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    upstream: SocketAddr,
    limits: Limits,
    audit: Arc<AuditLog>,
    phase: Arc<AtomicU8>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    peers: HashMap<PeerKey, PeerState>,
    total: Bucket,
    accept_retry: Option<Instant>,
    waker: Arc<Waker>,
    /// The last throttling, refusal or eviction, and how many of [`TRIM_AFTER`]'s trims
    /// have followed it.
    pressure: Option<Instant>,
    trims: usize,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let now = Instant::now();
            let timeout = [self.next_throttle_retry(now), self.accept_retry]
                .into_iter()
                .flatten()
                .fold(next_sweep, Instant::min)
                .saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("kms: connection gate: waiting for events: {e}; stopping");
                    return;
                }
            }
            match self.phase.load(Ordering::SeqCst) {
                STOPPED => return self.close_all(),
                DRAINING if !self.listeners.is_empty() => {
                    for mut l in self.listeners.drain(..) {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                }
                _ => {}
            }
            for event in &events {
                match event.token() {
                    WAKER => {}
                    Token(i) if i < FIRST_CONN_TOKEN => self.accept(i),
                    Token(t) => self.pump((t - FIRST_CONN_TOKEN) / 2),
                }
            }
            let now = Instant::now();
            if self.accept_retry.is_some_and(|at| now >= at) {
                self.accept_retry = None;
                (0..self.listeners.len()).for_each(|i| self.accept(i));
            }
            self.exempt_attested();
            self.retry_throttled(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
        }
    }

    fn accept(&mut self, listener: usize) {
        loop {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the backlog is not drained, so no new readiness
                    // event may come; try again shortly.
                    if self.accept_retry.is_none() {
                        eprintln!("kms: connection gate: accept: {e}; retrying in 50 ms");
                    }
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        let key = PeerKey::of(&peer);
        let per_peer = self.peers.get(&key).map_or(0, |p| p.conns);
        let connect_rate = self.limits.peer_connect_rate;
        let connects = self.peers.get_mut(&key).map_or(usize::MAX, |p| {
            p.connects.refill(connect_rate, now);
            p.connects.available()
        });
        if connects == 0 {
            return self.refuse(
                &peer,
                format!(
                    "connection rate limit: this peer opened more than {} connections that \
                     did not attest, then more than {} a second (its connections count \
                     again once they attest)",
                    connect_rate.burst, connect_rate.per_sec
                ),
            );
        }
        if per_peer >= self.limits.max_connections_per_peer {
            METRICS.gate_refused(GateRefusal::PerPeer);
            return self.refuse(
                &peer,
                format!(
                    "connection limit: {per_peer} connections from this peer are open \
                     (limit {}, --max-connections-per-peer)",
                    self.limits.max_connections_per_peer
                ),
            );
        }
        if self.open >= self.limits.max_connections && !self.make_room(now, per_peer) {
            METRICS.gate_refused(GateRefusal::Total);
            return self.refuse(
                &peer,
                format!(
                    "connection limit: {} connections are open, none idle for {} s and no \
                     peer holds more than one above this one's {per_peer} (limit {}, \
                     --max-connections)",
                    self.open,
                    EVICT_IDLE_AFTER.as_secs(),
                    self.limits.max_connections
                ),
            );
        }
        let _ = stream.set_nodelay(true);
        let upstream = match TcpStream::connect(self.upstream) {
            Ok(u) => u,
            Err(e) => {
                eprintln!(
                    "kms: connection gate: connecting to gRPC core at {}: {e}",
                    self.upstream
                );
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        let Ok(up_port) = upstream.local_addr().map(|a| a.port()) else {
            return;
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Conn {
            client: stream,
            upstream,
            peer,
            key,
            up_port,
            up_connected: false,
            to_up: Buf::new(),
            to_client: Buf::new(),
            client_eof: false,
            upstream_eof: false,
            up_shut: false,
            bucket: Bucket::full(self.limits.connection_rate, now),
            attested: Arc::new(Attested {
                flag: AtomicBool::new(false),
                waker: Arc::clone(&self.waker),
            }),
            exempt: false,
            received: 0,
            opened: now,
            last_ingress: now,
            throttled: None,
            throttle_audited: false,
            stalled: None,
        };
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        if registry
            .register(&mut conn.client, client_token(index), both)
            .and_then(|()| registry.register(&mut conn.upstream, upstream_token(index), both))
            .is_err()
        {
            self.free.push(index);
            return;
        }
        clients().insert(
            up_port,
            Client {
                addr: peer,
                attested: Arc::clone(&conn.attested),
            },
        );
        let peer_rate = self.limits.peer_rate;
        let state = self.peers.entry(key).or_insert_with(|| PeerState {
            conns: 0,
            bucket: Bucket::full(peer_rate, now),
            connects: Bucket::full(connect_rate, now),
            attested: 0,
            failed: 0,
        });
        state.conns += 1;
        state.connects.take(1);
        self.open += 1;
        METRICS.gate_opened();
        if let Some(slot) = self.conns.get_mut(index) {
            *slot = Some(conn);
        }
        self.pump(index);
    }

    fn refuse(&mut self, peer: &SocketAddr, reason: String) {
        self.pressure_now();
        let who = grpc_style(peer);
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some(&who);
        rec.status = Some("UNAVAILABLE");
        rec.reason = Some(reason);
        self.audit.write(&rec);
    }

    /// At the total cap, for a new connection from a peer that has `newcomer` unattested
    /// connections open: closes the unattested connection silent longest if at least
    /// [`EVICT_IDLE_AFTER`]; else the longest-silent unattested one of the peer holding most,
    /// if that is more than one above `newcomer` (so a peer with few connections always gets
    /// in, and peers that hold many only trade among themselves). An attested connection is
    /// never closed for a new one. The closed connection's peer is audited. True if one was
    /// closed.
    fn make_room(&mut self, now: Instant, newcomer: usize) -> bool {
        self.exempt_attested();
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| !c.exempt)
                    .map(|c| (i, c.last_ingress))
            })
            .min_by_key(|&(_, at)| at);
        let victim = match oldest {
            Some((i, at)) if now.saturating_duration_since(at) >= EVICT_IDLE_AFTER => Some(i),
            _ => self
                .peers
                .iter()
                .max_by_key(|(_, p)| p.conns)
                .filter(|(_, p)| p.conns > newcomer + 1)
                .map(|(key, _)| *key)
                .and_then(|heaviest| {
                    self.conns
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                        .filter(|(_, c)| c.key == heaviest && !c.exempt)
                        .min_by_key(|(_, c)| c.last_ingress)
                        .map(|(i, _)| i)
                }),
        };
        let Some(i) = victim else {
            return false;
        };
        if let Some(Some(c)) = self.conns.get(i) {
            let peer = c.peer;
            self.refuse(
                &peer,
                format!(
                    "connection limit: closed to make room for a new connection ({} open, \
                     --max-connections)",
                    self.open
                ),
            );
        }
        self.close(i);
        true
    }

    /// Moves bytes both ways on connection `index` until nothing moves; closes it when done.
    fn pump(&mut self, index: usize) {
        let now = Instant::now();
        let limits = self.limits;
        let Some(Some(conn)) = self.conns.get_mut(index) else {
            return;
        };
        let outcome = if conn.exempt {
            conn.pump(now, &limits, None, 0)
        } else {
            let Some(peer) = self.peers.get_mut(&conn.key) else {
                return;
            };
            let reserve = peer.reserve(limits.total_rate);
            conn.pump(
                now,
                &limits,
                Some((&mut peer.bucket, &mut self.total)),
                reserve,
            )
        };
        match outcome {
            Ok(()) if conn.finished() => self.close(index),
            Ok(()) => {
                if conn.throttled.is_some() {
                    self.pressure = Some(now);
                    self.trims = 0;
                }
                if conn.throttled.is_some() && !conn.throttle_audited {
                    conn.throttle_audited = true;
                    let reason = format!(
                        "ingress rate limit: this connection, not yet attested, sent more \
                         than its budget ({} KiB at once, then {} KiB/s per connection; {} KiB \
                         at once, then {} KiB/s per peer; {} KiB/s in total, --max-ingress); \
                         it is read more slowly until it is attested",
                        limits.connection_rate.burst / 1024,
                        limits.connection_rate.per_sec / 1024,
                        limits.peer_rate.burst / 1024,
                        limits.peer_rate.per_sec / 1024,
                        limits.total_rate.per_sec / 1024
                    );
                    let who = grpc_style(&conn.peer);
                    let mut rec = Record::new(Event::Throttle, Verdict::Rejected);
                    rec.peer = Some(&who);
                    rec.reason = Some(reason);
                    self.audit.write(&rec);
                }
            }
            Err(End::Done) => self.close(index),
            Err(End::Io(e)) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                ) {
                    eprintln!(
                        "kms: connection gate: connection from {}: {e}",
                        grpc_style(&conn.peer)
                    );
                }
                self.close(index);
            }
        }
    }

    fn close(&mut self, index: usize) {
        let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut conn.client);
        let _ = registry.deregister(&mut conn.upstream);
        clients().remove(&conn.up_port);
        if !conn.exempt {
            if let Some(p) = self.peers.get_mut(&conn.key) {
                p.conns = p.conns.saturating_sub(1);
                if conn.received > 0 {
                    p.failed = p.failed.saturating_add(1);
                }
            }
        }
        self.open = self.open.saturating_sub(1);
        METRICS.gate_closed();
        self.free.push(index);
    }

    fn close_all(&mut self) {
        for i in 0..self.conns.len() {
            self.close(i);
        }
    }

    /// Takes connections the service has since attested out of the budgets: they no longer
    /// count against their peer's connection cap, and what they spent of the peer's and the
    /// total budget is given back (a boot's first flight costs nothing once it proves to be
    /// one; only connections that never attest keep what they took).
    fn exempt_attested(&mut self) {
        let (peer_rate, total_rate) = (self.limits.peer_rate, self.limits.total_rate);
        let connect_rate = self.limits.peer_connect_rate;
        for c in self.conns.iter_mut().flatten() {
            if c.exempt || !c.attested.flag.load(Ordering::SeqCst) {
                continue;
            }
            c.exempt = true;
            if let Some(p) = self.peers.get_mut(&c.key) {
                p.conns = p.conns.saturating_sub(1);
                p.bucket.give(c.received, peer_rate);
                p.connects.give(1, connect_rate);
                p.attested = p.attested.saturating_add(1);
            }
            self.total.give(c.received, total_rate);
        }
    }

    /// Notes a throttling, refusal or eviction: the allocator is trimmed once it has passed.
    fn pressure_now(&mut self) {
        self.pressure = Some(Instant::now());
        self.trims = 0;
    }

    /// Once a flood has passed ([`TRIM_AFTER`]), hands the allocator's free memory back.
    fn trim_after_pressure(&mut self, now: Instant) {
        let (Some(at), Some(after)) = (self.pressure, TRIM_AFTER.get(self.trims)) else {
            return;
        };
        if now.saturating_duration_since(at) >= *after {
            occlum_dcap::trim_heap();
            self.trims += 1;
            if self.trims == TRIM_AFTER.len() {
                self.pressure = None;
            }
        }
    }

    fn next_throttle_retry(&self, now: Instant) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.throttled.map(|_| now + self.throttle_wait(c)))
            .min()
    }

    fn throttle_wait(&self, c: &Conn) -> Duration {
        let peer = self
            .peers
            .get(&c.key)
            .map_or(MIN_THROTTLE_WAIT, |p| p.bucket.wait(self.limits.peer_rate));
        c.bucket
            .wait(self.limits.connection_rate)
            .max(peer)
            .max(self.total.wait(self.limits.total_rate))
    }

    /// What connection `c` could read now, without taking it.
    fn budget_after_refill(&self, c: &Conn, now: Instant) -> usize {
        if c.exempt {
            return usize::MAX;
        }
        let refilled = |mut b: Bucket, rate| {
            b.refill(rate, now);
            b.available()
        };
        let Some(p) = self.peers.get(&c.key) else {
            return 0;
        };
        let total = refilled(self.total, self.limits.total_rate)
            .saturating_sub(p.reserve(self.limits.total_rate));
        refilled(c.bucket, self.limits.connection_rate)
            .min(refilled(p.bucket, self.limits.peer_rate))
            .min(total)
    }

    /// Reads throttled connections whose budgets have refilled, those that have sent least
    /// first: when a flood has the total budget, a boot's few kilobytes go before the flood's
    /// megabytes instead of waiting behind them.
    fn retry_throttled(&mut self, now: Instant) {
        let mut due: Vec<(u64, usize)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                c.throttled?;
                (self.budget_after_refill(c, now) >= RETRY_MIN).then_some((c.received, i))
            })
            .collect();
        due.sort_unstable();
        for (_, i) in due {
            self.pump(i);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                let connect_late =
                    !c.up_connected && now.saturating_duration_since(c.opened) > CONNECT_TIMEOUT;
                let stalled = c
                    .stalled
                    .is_some_and(|at| now.saturating_duration_since(at) > STALL_TIMEOUT);
                (connect_late || stalled).then_some(i)
            })
            .collect();
        for i in expired {
            self.close(i);
        }
        self.trim_after_pressure(now);
        // Forget peers with nothing open and full buckets: they would start afresh anyway.
        let (rate, connect_rate) = (self.limits.peer_rate, self.limits.peer_connect_rate);
        self.peers.retain(|_, p| {
            p.bucket.refill(rate, now);
            p.connects.refill(connect_rate, now);
            p.conns > 0 || !p.bucket.is_full(rate) || !p.connects.is_full(connect_rate)
        });
    }
}

impl Conn {
    fn finished(&self) -> bool {
        // Once gRPC core has closed its side and everything it sent is out, the client has
        // nothing more to gain from the connection.
        self.upstream_eof && self.to_client.is_empty()
    }

    /// Moves bytes both ways. `budgets` are the peer's and the total bucket, which with the
    /// connection's own bound what is read from the client; `None` once it is attested.
    fn pump(
        &mut self,
        now: Instant,
        limits: &Limits,
        mut budgets: Option<(&mut Bucket, &mut Bucket)>,
        reserve: usize,
    ) -> Result<(), End> {
        if let Some((peer, total)) = budgets.as_mut() {
            self.bucket.refill(limits.connection_rate, now);
            peer.refill(limits.peer_rate, now);
            total.refill(limits.total_rate, now);
        }
        self.throttled = None;
        if !self.up_connected {
            match self.upstream.peer_addr() {
                Ok(_) => self.up_connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(End::Io(e)),
            }
            if let Ok(Some(e)) = self.upstream.take_error() {
                return Err(End::Io(e));
            }
        }
        loop {
            let mut moved = false;
            // Client -> gRPC core, within the budgets.
            if !self.client_eof {
                let budget = match budgets.as_ref() {
                    Some((peer, total)) => self
                        .bucket
                        .available()
                        .min(peer.available())
                        .min(total.available().saturating_sub(reserve)),
                    None => usize::MAX,
                };
                let spare = self.to_up.spare();
                let want = budget.min(spare.len());
                if !spare.is_empty() && want == 0 {
                    self.throttled = Some(now);
                } else if let Some(room) = spare.get_mut(..want).filter(|r| !r.is_empty()) {
                    match self.client.read(room) {
                        Ok(0) => {
                            self.client_eof = true;
                            moved = true;
                        }
                        Ok(n) => {
                            self.to_up.end += n;
                            self.received += n as u64;
                            if let Some((peer, total)) = budgets.as_mut() {
                                self.bucket.take(n);
                                peer.take(n);
                                total.take(n);
                            }
                            self.last_ingress = now;
                            moved = true;
                        }
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Err(End::Io(e)),
                    }
                }
            }
            if self.up_connected {
                moved |= write_out(&mut self.upstream, &mut self.to_up)?;
                if self.client_eof && self.to_up.is_empty() && !self.up_shut {
                    self.up_shut = true;
                    let _ = self.upstream.shutdown(Shutdown::Write);
                }
                // gRPC core -> client: not limited.
                if !self.upstream_eof {
                    let spare = self.to_client.spare();
                    if !spare.is_empty() {
                        match self.upstream.read(spare) {
                            Ok(0) => {
                                self.upstream_eof = true;
                                moved = true;
                            }
                            Ok(n) => {
                                self.to_client.end += n;
                                moved = true;
                            }
                            Err(e) if would_block(&e) => {}
                            Err(e) => return Err(End::Io(e)),
                        }
                    }
                }
            }
            moved |= write_out(&mut self.client, &mut self.to_client)?;
            if self.client_eof && self.up_shut && self.upstream_eof && self.to_client.is_empty() {
                return Err(End::Done);
            }
            if !moved {
                break;
            }
        }
        self.stalled = match (self.to_client.is_empty(), self.stalled) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(now),
        };
        Ok(())
    }
}

/// Writes what `buf` holds to `to` until it would block; true if anything was written.
fn write_out(to: &mut TcpStream, buf: &mut Buf) -> Result<bool, End> {
    let mut moved = false;
    while !buf.is_empty() {
        match to.write(buf.pending()) {
            Ok(0) => {
                return Err(End::Io(io::Error::from(io::ErrorKind::WriteZero)));
            }
            Ok(n) => {
                buf.start += n;
                moved = true;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(End::Io(e)),
        }
    }
    if buf.is_empty() {
        buf.start = 0;
        buf.end = 0;
    }
    Ok(moved)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::NotConnected
    )
}

fn client_token(index: usize) -> Token {
    Token(FIRST_CONN_TOKEN + index * 2)
}

fn upstream_token(index: usize) -> Token {
    Token(FIRST_CONN_TOKEN + index * 2 + 1)
}

/// `ipv4:192.0.2.7:51000` / `ipv6:[2001:db8::1]:443`, as gRPC core names peers.
fn grpc_style(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("ipv4:{a}"),
        SocketAddr::V6(a) => format!("ipv6:{a}"),
    }
}

#[cfg(test)]
mod tests;
