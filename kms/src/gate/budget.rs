//! What the gate's limits count: whom a connection counts against ([`PeerKey`]), the token
//! buckets that budget unattested ingress and new connections ([`Bucket`]), and a peer's
//! standing ([`PeerState`]). Pure bookkeeping: no sockets, the clock passed in.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Rate, TOTAL_RESERVE_SHARE};
/// A throttled connection is read again once this much budget is back (not byte by byte).
pub(super) const RETRY_MIN: usize = 1024;
/// Shortest wait before a throttled connection is read again.
pub(super) const MIN_THROTTLE_WAIT: Duration = Duration::from_millis(5);

/// Whom the per-peer limits count against: an IPv4 address, or an IPv6 /64 (one host's
/// usual allocation, which it can fill with addresses at will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PeerKey(IpAddr);

impl PeerKey {
    pub(super) fn of(addr: &SocketAddr) -> PeerKey {
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
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst as f64,
            at: now,
        }
    }

    pub(super) fn refill(&mut self, rate: Rate, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * rate.per_sec as f64).min(rate.burst as f64);
        self.at = now;
    }

    pub(super) fn available(&self) -> usize {
        self.tokens.max(0.0) as usize
    }

    pub(super) fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Gives back `n` taken earlier, up to the burst.
    pub(super) fn give(&mut self, n: u64, rate: Rate) {
        self.tokens = (self.tokens + n as f64).min(rate.burst as f64);
    }

    pub(super) fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= rate.burst as f64
    }

    /// How long until at least one read's worth of tokens is back.
    pub(super) fn wait(&self, rate: Rate) -> Duration {
        let want = (RETRY_MIN as f64).min(rate.burst as f64) - self.tokens;
        if want <= 0.0 || rate.per_sec == 0 {
            return MIN_THROTTLE_WAIT;
        }
        Duration::from_secs_f64(want / rate.per_sec as f64).max(MIN_THROTTLE_WAIT)
    }
}

pub(super) struct PeerState {
    /// Unattested connections open.
    pub(super) conns: usize,
    pub(super) bucket: Bucket,
    /// New connections not given back by attestation ([`super::PEER_CONNECT_RATE`]).
    pub(super) connects: Bucket,
    /// Connections that attested, and that closed unattested after sending something.
    pub(super) attested: u32,
    pub(super) failed: u32,
}

impl PeerState {
    /// A peer whose connections attest at least as often as they fail may use the total
    /// budget's last [`TOTAL_RESERVE_SHARE`]; others leave it to them.
    pub(super) fn reserve(&self, total: Rate) -> usize {
        if self.attested >= self.failed {
            0
        } else {
            usize::try_from(total.burst / TOTAL_RESERVE_SHARE).unwrap_or(usize::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:1".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:2".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:3::1]:3".parse().unwrap();
        assert_eq!(PeerKey::of(&a), PeerKey::of(&b));
        assert_ne!(PeerKey::of(&a), PeerKey::of(&c));
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:5".parse().unwrap();
        let v4: SocketAddr = "192.0.2.7:6".parse().unwrap();
        assert_eq!(PeerKey::of(&mapped), PeerKey::of(&v4));
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let rate = Rate {
            per_sec: 1000,
            burst: 4000,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        b.take(4000);
        assert_eq!(b.available(), 0);
        b.refill(rate, t0 + Duration::from_millis(500));
        assert_eq!(b.available(), 500);
        b.refill(rate, t0 + Duration::from_secs(60));
        assert_eq!(b.available(), 4000);
        assert!(b.is_full(rate));
    }
}
