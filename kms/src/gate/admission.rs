//! Admission of a new connection: the per-peer connection rate, the per-peer cap, and at the
//! total cap making room by closing an idle or a heavy peer's unattested connection; refusals
//! are audited and counted. An admitted connection gets its upstream connection to gRPC core,
//! its buckets and its entry in the client map.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use super::EVICT_IDLE_AFTER;
use super::budget::{Bucket, PeerKey, PeerState};
use super::clients::{Attested, Client, clients, grpc_style};
use super::conn::{Buf, Conn};
use super::event_loop::{Loop, client_token, upstream_token};
use crate::audit::{Event, Record, Verdict};
use crate::metrics::{GateRefusal, METRICS};
impl Loop {
    pub(super) fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        let key = PeerKey::of(&peer);
        let per_peer = self.peers.get(&key).map_or(0, |p| p.conns);
        let connect_rate = self.limits.peer_connect_rate;
        let connects = self.peers.get_mut(&key).map_or(usize::MAX, |p| {
            p.connects.refill(connect_rate, now);
            p.connects.available()
        });
        if connects == 0 {
            METRICS.gate_refused(GateRefusal::ConnectRate);
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
}
