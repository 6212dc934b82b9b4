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
//!
//! This file holds the gate's public face (its limits, binding, starting and stopping); the
//! parts are `admission` (accepting or refusing a new connection, making room at the cap),
//! `budget` (peers and token buckets), `conn` (one forwarded connection: the per-read and
//! per-write path), `event_loop` (the gate's thread) and `clients` (which client each
//! loopback connection carries, for the service).

mod admission;
mod budget;
mod clients;
mod conn;
mod event_loop;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Poll, Token, Waker};

use crate::audit::AuditLog;

use budget::Bucket;
use event_loop::{Loop, WAKER};

pub use clients::{client_address, grpc_style, mark_attested};
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

#[cfg(test)]
mod tests;
