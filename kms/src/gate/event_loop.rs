//! The gate's thread: one mio event loop that accepts, forwards each connection
//! ([`Loop::pump`]), takes attested connections out of the budgets, reads throttled
//! connections again as their budgets refill (least-read first), closes connections past
//! their timeouts, and trims the allocator after a flood. Admission is in `admission.rs`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token, Waker};

use super::budget::{Bucket, PeerKey, PeerState};
use super::budget::{MIN_THROTTLE_WAIT, RETRY_MIN};
use super::clients::{clients, grpc_style};
use super::conn::{Conn, End};
use super::{CONNECT_TIMEOUT, DRAINING, Limits, STALL_TIMEOUT, STOPPED, TRIM_AFTER};
use crate::audit::{AuditLog, Event, Record, Verdict};
use crate::metrics::METRICS;
/// How often timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// After a failed accept (out of file descriptors), accept again after this.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

pub(super) const WAKER: Token = Token(usize::MAX);
const FIRST_CONN_TOKEN: usize = 1 << 16;

pub(super) struct Loop {
    pub(super) poll: Poll,
    pub(super) listeners: Vec<TcpListener>,
    pub(super) upstream: SocketAddr,
    pub(super) limits: Limits,
    pub(super) audit: Arc<AuditLog>,
    pub(super) phase: Arc<AtomicU8>,
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) free: Vec<usize>,
    pub(super) open: usize,
    pub(super) peers: HashMap<PeerKey, PeerState>,
    pub(super) total: Bucket,
    pub(super) accept_retry: Option<Instant>,
    pub(super) waker: Arc<Waker>,
    /// The last throttling, refusal or eviction, and how many of [`TRIM_AFTER`]'s trims
    /// have followed it.
    pub(super) pressure: Option<Instant>,
    pub(super) trims: usize,
}

impl Loop {
    pub(super) fn run(&mut self) {
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

    pub(super) fn pump(&mut self, index: usize) {
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

    pub(super) fn close(&mut self, index: usize) {
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
    pub(super) fn exempt_attested(&mut self) {
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
    pub(super) fn pressure_now(&mut self) {
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

pub(super) fn client_token(index: usize) -> Token {
    Token(FIRST_CONN_TOKEN + index * 2)
}

pub(super) fn upstream_token(index: usize) -> Token {
    Token(FIRST_CONN_TOKEN + index * 2 + 1)
}
