use super::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Mutex;

use super::clients::clients;

// Over real loopback sockets: a gate in front of a stand-in for gRPC core that echoes (or only
// counts) what it is sent, and clients from other loopback addresses (the gate counts per
// address).

use std::net::{Ipv4Addr, TcpStream as StdStream};

#[path = "../../tests/common/loopback.rs"]
mod loopback;
use std::sync::atomic::AtomicUsize;

/// gRPC core's stand-in: per connection, counts the bytes and echoes them if `echo`; closes
/// when the gate closes its side. Records the gate's (upstream) port of each connection.
struct Upstream {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    ports: Arc<Mutex<Vec<u16>>>,
    /// Bytes received per gate (upstream) port.
    by_port: Arc<Mutex<HashMap<u16, usize>>>,
}

impl Upstream {
    fn start(echo: bool) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let ports = Arc::new(Mutex::new(Vec::new()));
        let by_port = Arc::new(Mutex::new(HashMap::new()));
        let (r, p, b) = (
            Arc::clone(&received),
            Arc::clone(&ports),
            Arc::clone(&by_port),
        );
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let port = s.peer_addr().unwrap().port();
                p.lock().unwrap().push(port);
                let (r, b) = (Arc::clone(&r), Arc::clone(&b));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        r.fetch_add(n, Ordering::SeqCst);
                        *b.lock().unwrap().entry(port).or_insert(0) += n;
                        if echo && s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            received,
            ports,
            by_port,
        }
    }
}

type Lines = crate::audit::Captured;

fn start_gate(limits: Limits, upstream: &Upstream) -> (Gate, SocketAddr, Lines) {
    let lines = Lines::default();
    let audit = Arc::new(AuditLog::to_writer(
        Box::new(lines.clone()),
        Duration::from_secs(60),
    ));
    let bound = Bound::bind("127.0.0.1:0").unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, bound.port()));
    let gate = bound.start(upstream.addr, limits, audit).unwrap();
    (gate, addr, lines)
}

fn connect_from(last_octet: u8, to: SocketAddr) -> StdStream {
    let s = loopback::connect_from(Ipv4Addr::new(127, 0, 0, last_octet), to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `bytes` and reads them back through the echoing upstream.
fn round_trip(s: &mut StdStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

/// True if the gate closed `s`: EOF or a reset, not a timeout.
fn closed(s: &mut StdStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

fn limits(total: usize, per_peer: usize) -> Limits {
    Limits {
        max_connections: total,
        max_connections_per_peer: per_peer,
        ..Limits::default()
    }
}

#[test]
fn bytes_pass_both_ways_unchanged_and_a_half_close_reaches_the_upstream() {
    let upstream = Upstream::start(true);
    let (_gate, addr, _) = start_gate(Limits::default(), &upstream);
    let mut s = connect_from(2, addr);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    round_trip(&mut s, &data);
    s.shutdown(Shutdown::Write).unwrap();
    // The upstream sees EOF, closes, and the gate closes the client's side after it.
    assert!(closed(&mut s));
    assert_eq!(upstream.received.load(Ordering::SeqCst), data.len());
}

#[test]
fn calls_through_the_gate_are_attributed_to_the_client_address() {
    let upstream = Upstream::start(true);
    let (_gate, addr, _) = start_gate(Limits::default(), &upstream);
    let mut s = connect_from(5, addr);
    round_trip(&mut s, b"hello");
    let port = *upstream.ports.lock().unwrap().last().unwrap();
    let mine = s.local_addr().unwrap();
    assert_eq!(
        client_address(&format!("ipv4:127.0.0.1:{port}")),
        format!("ipv4:{mine}")
    );
    drop(s);
    // Forgotten once the connection is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients().contains_key(&port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        client_address(&format!("ipv4:127.0.0.1:{port}")),
        format!("ipv4:127.0.0.1:{port}")
    );
}

#[test]
fn a_peer_over_its_connection_cap_is_closed_and_audited_while_another_peer_gets_in() {
    let upstream = Upstream::start(true);
    let (_gate, addr, audit) = start_gate(limits(16, 2), &upstream);
    let mut held: Vec<StdStream> = (0..2).map(|_| connect_from(2, addr)).collect();
    for s in &mut held {
        round_trip(s, b"ping");
    }
    let mut third = connect_from(2, addr);
    assert!(closed(&mut third), "a third connection from 127.0.0.2");
    let mut other = connect_from(3, addr);
    round_trip(&mut other, b"another peer");
    for s in &mut held {
        round_trip(s, b"still open");
    }
    // A closed connection frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from(2, addr);
        let _ = again.write_all(b"x");
        let mut b = [0u8; 1];
        if matches!(again.read(&mut b), Ok(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refusals: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|r| r["event"] == "refusal")
        .collect();
    assert!(!refusals.is_empty());
    for r in &refusals {
        assert!(
            r["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.2:"),
            "{r}"
        );
        assert_eq!(r["status"], "UNAVAILABLE");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("connection limit: 2 connections"),
            "{reason}"
        );
        assert!(reason.contains("--max-connections-per-peer"), "{reason}");
    }
}

#[test]
fn at_the_total_cap_the_longest_idle_connection_makes_room() {
    let upstream = Upstream::start(true);
    let (_gate, addr, audit) = start_gate(limits(2, 2), &upstream);
    let mut old = connect_from(2, addr);
    let mut busy = connect_from(3, addr);
    round_trip(&mut old, b"a");
    std::thread::sleep(EVICT_IDLE_AFTER + Duration::from_millis(200));
    round_trip(&mut busy, b"b");
    let mut new = connect_from(4, addr);
    round_trip(&mut new, b"c");
    assert!(
        closed(&mut old),
        "the idle connection should have been closed"
    );
    round_trip(&mut busy, b"d");
    let evicted: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|r| r["event"] == "refusal")
        .collect();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert!(
        evicted[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("ipv4:127.0.0.2:")
    );
    assert!(
        evicted[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("connection limit: closed to make room"),
        "{evicted:?}"
    );
}

#[test]
fn at_the_total_cap_a_peer_holding_many_makes_room_for_one_holding_few() {
    let upstream = Upstream::start(true);
    let (_gate, addr, audit) = start_gate(limits(4, 4), &upstream);
    let mut many: Vec<StdStream> = (0..4).map(|_| connect_from(2, addr)).collect();
    for s in &mut many {
        round_trip(s, b"busy");
    }
    // None is idle: 127.0.0.3, holding none, still gets in, at 127.0.0.2's expense.
    let mut few = connect_from(3, addr);
    round_trip(&mut few, b"in");
    let lost = many
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            closed(s)
        })
        .filter(|&c| c)
        .count();
    assert_eq!(lost, 1);
    let r = audit
        .records()
        .into_iter()
        .find(|r| r["event"] == "refusal")
        .expect("the eviction is audited");
    assert!(r["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.2:"));
}

#[test]
fn at_the_total_cap_with_no_idle_connection_and_even_peers_a_new_one_is_refused() {
    let upstream = Upstream::start(true);
    let (_gate, addr, audit) = start_gate(limits(2, 2), &upstream);
    let mut a = connect_from(2, addr);
    let mut b = connect_from(3, addr);
    round_trip(&mut a, b"a");
    round_trip(&mut b, b"b");
    let mut c = connect_from(4, addr);
    assert!(closed(&mut c));
    round_trip(&mut a, b"a");
    round_trip(&mut b, b"b");
    let r = audit
        .records()
        .into_iter()
        .find(|r| r["event"] == "refusal")
        .expect("a refusal record");
    assert!(r["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.4:"));
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("connection limit: 2 connections are open, none idle"),
        "{reason}"
    );
    assert!(reason.contains("--max-connections)"), "{reason}");
}

/// `from` connections (by last octet) each write as fast as they can for `secs`, into a
/// counting upstream: the bytes it got, and how long the writing went on.
fn flood_ingress(limits: Limits, from: &[u8], secs: f64) -> (usize, Duration, Lines) {
    let upstream = Upstream::start(false);
    let (_gate, addr, audit) = start_gate(limits, &upstream);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let writers: Vec<_> = from
        .iter()
        .map(|&octet| {
            let mut s = connect_from(octet, addr);
            s.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            std::thread::spawn(move || {
                let chunk = [0x5au8; 16 * 1024];
                while Instant::now() < until {
                    let _ = s.write(&chunk);
                }
                s
            })
        })
        .collect();
    let streams: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let elapsed = start.elapsed();
    // What the gate had already read may still be on its way.
    std::thread::sleep(Duration::from_millis(300));
    let got = upstream.received.load(Ordering::SeqCst);
    drop(streams);
    (got, elapsed + Duration::from_millis(300), audit)
}

/// At most the burst, the rate over the time, and what one read may take beyond the budget
/// (none: reads are cut to the budget) plus rounding.
fn bucket_bound(rate: Rate, elapsed: Duration) -> usize {
    (rate.burst as f64 + rate.per_sec as f64 * elapsed.as_secs_f64()) as usize + 1024
}

const SMALL: Rate = Rate {
    per_sec: 64 * 1024,
    burst: 64 * 1024,
};
const LARGE: Rate = Rate {
    per_sec: 1 << 30,
    burst: 1 << 30,
};

/// Floods from `from` for 1.5 s with `small` replaced by [`SMALL`] and every other budget
/// [`LARGE`]; asserts no more than `SMALL` allowed passed.
fn assert_held_to_small(small: fn(&mut Limits) -> &mut Rate, from: &[u8]) -> (usize, Lines) {
    let mut limits = Limits {
        connection_rate: LARGE,
        peer_rate: LARGE,
        total_rate: LARGE,
        ..Limits::default()
    };
    *small(&mut limits) = SMALL;
    let (got, elapsed, audit) = flood_ingress(limits, from, 1.5);
    assert!(
        got <= bucket_bound(SMALL, elapsed),
        "{got} bytes in {elapsed:?}"
    );
    (got, audit)
}

#[test]
fn a_connection_over_its_ingress_budget_is_read_at_its_rate_and_audited() {
    let (got, audit) = assert_held_to_small(|l| &mut l.connection_rate, &[2]);
    assert!(
        got >= SMALL.burst as usize,
        "{got} bytes: not even the burst"
    );
    let t = audit
        .records()
        .into_iter()
        .find(|r| r["event"] == "throttle")
        .expect("a throttle record");
    assert!(t["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.2:"));
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .starts_with("ingress rate limit: ")
    );
}

#[test]
fn a_peers_connections_share_its_ingress_budget() {
    assert_held_to_small(|l| &mut l.peer_rate, &[2, 2, 2]);
}

#[test]
fn all_peers_share_the_total_ingress_budget() {
    assert_held_to_small(|l| &mut l.total_rate, &[2, 3, 4]);
}

#[test]
fn the_fd_limit_is_raised_or_the_cap_lowered_to_fit() {
    let fitted = fit_fd_limit(limits(10, 10));
    assert_eq!(fitted, limits(10, 10), "10 connections fit any limit");
    let huge = fit_fd_limit(limits(usize::MAX / 4, 64));
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    assert!(huge.max_connections as u64 * 3 + FD_RESERVE <= soft);
    assert!(huge.max_connections_per_peer <= huge.max_connections);
}

/// Connects from `last_octet` and sends a byte: the stream and the gate's upstream port for it
/// (the name gRPC core would give the peer).
fn connect_seen(last_octet: u8, to: SocketAddr, upstream: &Upstream) -> (StdStream, u16) {
    let before = upstream.ports.lock().unwrap().len();
    let mut s = connect_from(last_octet, to);
    s.write_all(b"x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(&port) = upstream.ports.lock().unwrap().get(before) {
            return (s, port);
        }
        assert!(
            Instant::now() < deadline,
            "the upstream never saw the connection"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn attest(port: u16) {
    mark_attested(&format!("ipv4:{UPSTREAM_HOST}:{port}"));
}

#[test]
fn an_attested_connection_leaves_the_ingress_budgets_and_an_unattested_one_does_not() {
    let upstream = Upstream::start(false);
    let limits = Limits {
        connection_rate: SMALL,
        peer_rate: SMALL,
        total_rate: SMALL,
        ..Limits::default()
    };
    let (_gate, addr, _) = start_gate(limits, &upstream);
    // Both from one peer, so they share its budget and the total.
    let (a, a_port) = connect_seen(2, addr, &upstream);
    let (b, b_port) = connect_seen(2, addr, &upstream);
    attest(a_port);
    let start = Instant::now();
    let until = start + Duration::from_millis(1500);
    let writers: Vec<_> = [a, b]
        .into_iter()
        .map(|mut s| {
            s.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            std::thread::spawn(move || {
                let chunk = [0x5au8; 16 * 1024];
                while Instant::now() < until {
                    let _ = s.write(&chunk);
                }
                s
            })
        })
        .collect();
    let streams: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let bound = bucket_bound(SMALL, start.elapsed());
    let got = |port| *upstream.by_port.lock().unwrap().get(&port).unwrap_or(&0);
    let (a_got, b_got) = (got(a_port), got(b_port));
    drop(streams);
    assert!(
        a_got > 8 * bound,
        "the attested connection got {a_got} bytes, held near the budget ({bound})"
    );
    assert!(
        b_got <= bound,
        "the unattested connection got {b_got} bytes, over the budget ({bound})"
    );
}

#[test]
fn what_an_attested_connection_spent_is_given_back_to_its_peer() {
    let upstream = Upstream::start(false);
    // The peer's budget is one first flight, refilled at 1 KiB/s: without the refund the
    // second connection would wait about a minute for its 60 KiB.
    let limits = Limits {
        connection_rate: LARGE,
        peer_rate: Rate {
            per_sec: 1024,
            burst: 64 * 1024,
        },
        total_rate: LARGE,
        ..Limits::default()
    };
    let (_gate, addr, _) = start_gate(limits, &upstream);
    let flight = [0x5au8; 60 * 1024];
    let sent_by = |mut s: StdStream, port: u16, secs: u64| {
        s.write_all(&flight).unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while *upstream.by_port.lock().unwrap().get(&port).unwrap_or(&0) < 1 + flight.len() {
            if Instant::now() >= deadline {
                return (s, false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (s, true)
    };
    let (first, first_port) = connect_seen(2, addr, &upstream);
    let (first, through) = sent_by(first, first_port, 10);
    assert!(
        through,
        "the first flight did not get through on a full budget"
    );
    attest(first_port);
    std::thread::sleep(Duration::from_millis(100));
    let (second, second_port) = connect_seen(2, addr, &upstream);
    let (second, through) = sent_by(second, second_port, 10);
    assert!(
        through,
        "the second connection was held: the first one's spending was not given back"
    );
    drop((first, second));
}

#[test]
fn an_attested_connection_is_never_closed_to_make_room() {
    let upstream = Upstream::start(true);
    let (_gate, addr, _) = start_gate(limits(2, 2), &upstream);
    let (mut attested, port) = connect_seen(2, addr, &upstream);
    let mut b = [0u8; 1];
    attested.read_exact(&mut b).unwrap();
    attest(port);
    let mut busy = connect_from(3, addr);
    round_trip(&mut busy, b"b");
    // The attested connection is now the idle one; the unattested one has just spoken.
    std::thread::sleep(EVICT_IDLE_AFTER + Duration::from_millis(200));
    round_trip(&mut busy, b"b");
    let mut new = connect_from(4, addr);
    assert!(closed(&mut new), "the newcomer should have been refused");
    round_trip(&mut attested, b"still open");
    round_trip(&mut busy, b"still open");
}

#[test]
fn a_peer_that_keeps_opening_connections_without_attesting_is_refused_until_one_attests() {
    let upstream = Upstream::start(true);
    let limits = Limits {
        peer_connect_rate: Rate {
            per_sec: 0,
            burst: 2,
        },
        ..Limits::default()
    };
    let (_gate, addr, audit) = start_gate(limits, &upstream);
    let (mut first, first_port) = connect_seen(2, addr, &upstream);
    let (second, _) = connect_seen(2, addr, &upstream);
    // Closing does not give a connection back: only attesting does.
    drop(second);
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect_from(2, addr);
    assert!(
        closed(&mut third),
        "a third unattested connection from 127.0.0.2"
    );
    let mut other = connect_from(3, addr);
    round_trip(&mut other, b"another peer");
    let r = audit
        .records()
        .into_iter()
        .find(|r| r["event"] == "refusal")
        .expect("a refusal record");
    assert!(r["peer"].as_str().unwrap().starts_with("ipv4:127.0.0.2:"));
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("connection rate limit: this peer opened more than 2 connections"),
        "{r}"
    );
    attest(first_port);
    let mut b = [0u8; 1];
    first.read_exact(&mut b).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from(2, addr);
        let _ = again.write_all(b"y");
        if matches!(again.read(&mut b), Ok(1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attesting did not give the connection back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_peer_whose_connections_do_not_attest_leaves_the_last_of_the_total_budget_to_others() {
    let upstream = Upstream::start(false);
    // 64 KiB in total, refilled at 1 KiB/s; a quarter of it is kept for peers in good standing.
    let limits = Limits {
        connection_rate: LARGE,
        peer_rate: LARGE,
        total_rate: Rate {
            per_sec: 1024,
            burst: 64 * 1024,
        },
        ..Limits::default()
    };
    let (_gate, addr, _) = start_gate(limits, &upstream);
    // 127.0.0.2 closes a connection without attesting: it is no longer in good standing.
    let (failed, _) = connect_seen(2, addr, &upstream);
    drop(failed);
    std::thread::sleep(Duration::from_millis(200));
    let (mut flood, flood_port) = connect_seen(2, addr, &upstream);
    flood
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = flood.write_all(&[0x5au8; 100 * 1024]);
    std::thread::sleep(Duration::from_millis(300));
    let got = |port| *upstream.by_port.lock().unwrap().get(&port).unwrap_or(&0);
    let flooded = got(flood_port);
    assert!(
        flooded <= 48 * 1024 + 2048,
        "the peer not in good standing took {flooded} bytes of the reserve"
    );
    // A peer in good standing still gets its first flight through, from the reserve.
    let (mut boot, boot_port) = connect_seen(3, addr, &upstream);
    boot.write_all(&[0x5au8; 10 * 1024]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got(boot_port) < 1 + 10 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the handshake got {} bytes: the flood took the reserve",
            got(boot_port)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(flood);
}
