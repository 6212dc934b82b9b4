//! Which client each of the gate's loopback connections to gRPC core carries: gRPC core sees
//! every call as coming from the gate, so the service asks here for the client's own address
//! ([`client_address`]) and reports a connection's attestation ([`mark_attested`]), which
//! takes it out of the gate's budgets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use mio::Waker;

use super::UPSTREAM_HOST;
/// A connection's attestation, set by the service ([`mark_attested`]) and read by the gate.
pub(super) struct Attested {
    pub(super) flag: AtomicBool,
    /// Wakes the gate, so it takes the connection out of the budgets now.
    pub(super) waker: Arc<Waker>,
}

/// The client a gate connection forwards, and whether it has been attested.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) attested: Arc<Attested>,
}

/// The gate's upstream (loopback) port -> the client it forwards, for [`client_address`] and
/// [`mark_attested`].
pub(super) fn clients() -> MutexGuard<'static, HashMap<u16, Client>> {
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

/// `ipv4:192.0.2.7:51000` / `ipv6:[2001:db8::1]:443`, as gRPC core names peers.
pub fn grpc_style(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("ipv4:{a}"),
        SocketAddr::V6(a) => format!("ipv6:{a}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    use crate::gate::event_loop::WAKER;

    #[test]
    fn unknown_grpc_peers_pass_through_unchanged() {
        assert_eq!(client_address("ipv4:10.0.0.1:5"), "ipv4:10.0.0.1:5");
        assert_eq!(client_address("ipv4:127.0.0.1:1"), "ipv4:127.0.0.1:1");
        assert_eq!(client_address("unix:/x"), "unix:/x");
    }

    #[test]
    fn a_gate_connection_maps_back_to_its_client() {
        let addr: SocketAddr = "[2001:db8::7]:4433".parse().unwrap();
        let poll = Poll::new().unwrap();
        let attested = Arc::new(Attested {
            flag: AtomicBool::new(false),
            waker: Arc::new(Waker::new(poll.registry(), WAKER).unwrap()),
        });
        clients().insert(65000, Client { addr, attested });
        assert_eq!(
            client_address("ipv4:127.0.0.1:65000"),
            "ipv6:[2001:db8::7]:4433"
        );
        clients().remove(&65000);
    }
}
