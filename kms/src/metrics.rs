//! Prometheus metrics: lock-free counters the release path bumps ([`METRICS`]), rendered in
//! the text exposition format 0.0.4 only when scraped, and a small HTTP/1.1 endpoint serving
//! them at `GET /metrics` (`--metrics-listen`).
//!
//! Every label value comes from a fixed set named in this file (verdicts, the verifier's check
//! names, gRPC status names, gate refusal reasons): never a measurement, a peer address, a
//! secret's name or value, or any other text a peer chooses. Inside Occlum the host chooses the
//! listen address and sees the plaintext answers: the metrics are availability data only.
//!
//! The endpoint runs on its own threads, reads a request head of at most [`MAX_REQUEST_HEAD`]
//! bytes within [`IO_TIMEOUT`], serves at most [`MAX_CONNECTIONS`] connections at once (more
//! are closed at once) and answers one request per connection. That small server
//! ([`serve_http`]) also carries the health endpoint (`health.rs`) with its own router.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pccs_client::CollateralStats;

/// The process's metrics.
pub static METRICS: Metrics = Metrics::new();

/// Longest request head read (request line and headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Reading the request and writing the answer each must finish within this time.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 4;

/// The verifier's check names ([`ratls::verify::VerifyError::check`]), plus `other` for a
/// name this list lacks: the only values of the `check` label besides `none`.
pub const CHECKS: [&str; 13] = [
    "evidence",
    "quote-format",
    "binding",
    "self-signature",
    "certificate-validity",
    "collateral",
    "collateral-expiry",
    "revocation",
    "dcap-signature",
    "tcb-status",
    "advisory",
    "measurement-policy",
    "other",
];

/// The gRPC status names a GetSecret call is answered with (`code` label).
pub const CODES: [&str; 7] = [
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "OTHER",
];

/// Why the connection gate refused a connection (`reason` label).
#[derive(Debug, Clone, Copy)]
pub enum GateRefusal {
    /// `--max-connections-per-peer` reached.
    PerPeer = 0,
    /// `--max-connections` reached and no connection could make room.
    Total = 1,
    /// The peer opened too many connections that did not attest (the gate's connect rate).
    ConnectRate = 2,
}

const GATE_REASONS: [&str; 3] = ["per_peer_limit", "total_limit", "connect_rate"];

/// Upper bounds of the verification latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counters and gauges; every update is one relaxed atomic operation.
pub struct Metrics {
    /// `[check]` for rejections, counted per failing check.
    attest_rejected: [AtomicU64; CHECKS.len()],
    /// `[check]` for verifications that could not finish yet (collateral on its way).
    attest_unavailable: [AtomicU64; CHECKS.len()],
    attest_ok: AtomicU64,
    /// Verification latency: cumulative-at-render bucket counts, sum in nanoseconds, count.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
    /// GetSecret answers by status code.
    answers: [AtomicU64; CODES.len()],
    gate_open: AtomicU64,
    gate_refused: [AtomicU64; GATE_REASONS.len()],
    generation: AtomicU64,
    collateral: OnceLock<Arc<CollateralStats>>,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            attest_rejected: [const { AtomicU64::new(0) }; CHECKS.len()],
            attest_unavailable: [const { AtomicU64::new(0) }; CHECKS.len()],
            attest_ok: AtomicU64::new(0),
            latency_buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
            latency_sum_ns: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            answers: [const { AtomicU64::new(0) }; CODES.len()],
            gate_open: AtomicU64::new(0),
            gate_refused: [const { AtomicU64::new(0) }; GATE_REASONS.len()],
            generation: AtomicU64::new(0),
            collateral: OnceLock::new(),
        }
    }

    /// One run of the verification pipeline: `Ok(())`, or the failing check and whether the
    /// failure was transient (answered UNAVAILABLE), and how long it took.
    pub fn attestation(&self, outcome: Result<(), (&str, bool)>, took: Duration) {
        match outcome {
            Ok(()) => bump(&self.attest_ok),
            Err((check, transient)) => {
                let i = check_index(check);
                let by_check = if transient {
                    &self.attest_unavailable
                } else {
                    &self.attest_rejected
                };
                if let Some(c) = by_check.get(i) {
                    bump(c);
                }
            }
        }
        let secs = took.as_secs_f64();
        if let Some(b) = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .and_then(|i| self.latency_buckets.get(i))
        {
            bump(b);
        }
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
        bump(&self.latency_count);
    }

    /// A GetSecret call answered with the gRPC status named `code` (`OK`: released).
    pub fn answer(&self, code: &str) {
        let i = CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CODES.len() - 1);
        if let Some(c) = self.answers.get(i) {
            bump(c);
        }
    }

    /// The gate admitted a connection.
    pub fn gate_opened(&self) {
        bump(&self.gate_open);
    }

    /// The gate closed an admitted connection.
    pub fn gate_closed(&self) {
        // Never below zero, even if a close were counted twice.
        let _ = self
            .gate_open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The gate refused a connection.
    pub fn gate_refused(&self, why: GateRefusal) {
        if let Some(c) = self.gate_refused.get(why as usize) {
            bump(c);
        }
    }

    /// A configuration (policy and secrets) was installed: at start, on reload, or by an
    /// administrator. Returns the new generation.
    pub fn new_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The PCCS client's counters, rendered from now on (the first registration wins).
    pub fn collateral_stats(&self, stats: Arc<CollateralStats>) {
        let _ = self.collateral.set(stats);
    }

    /// The text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        header(
            &mut out,
            "kms_attestations_total",
            "counter",
            "Client certificates run through the verification pipeline (cache misses), by result and failing check.",
        );
        sample(
            &mut out,
            "kms_attestations_total{result=\"ok\",check=\"none\"}",
            load(&self.attest_ok),
        );
        for (result, by_check) in [
            ("rejected", &self.attest_rejected),
            ("unavailable", &self.attest_unavailable),
        ] {
            for (check, c) in CHECKS.iter().zip(by_check) {
                let name =
                    format!("kms_attestations_total{{result=\"{result}\",check=\"{check}\"}}");
                sample(&mut out, &name, load(c));
            }
        }

        header(
            &mut out,
            "kms_attestation_duration_seconds",
            "histogram",
            "Time the verification pipeline took per client certificate.",
        );
        let mut cumulative = 0;
        for (le, c) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += load(c);
            let name = format!("kms_attestation_duration_seconds_bucket{{le=\"{le}\"}}");
            sample(&mut out, &name, cumulative);
        }
        let count = load(&self.latency_count);
        sample(
            &mut out,
            "kms_attestation_duration_seconds_bucket{le=\"+Inf\"}",
            count.max(cumulative),
        );
        let _ = writeln!(
            out,
            "kms_attestation_duration_seconds_sum {}",
            load(&self.latency_sum_ns) as f64 / 1e9
        );
        sample(
            &mut out,
            "kms_attestation_duration_seconds_count",
            count.max(cumulative),
        );

        header(
            &mut out,
            "kms_releases_total",
            "counter",
            "GetSecret calls by answer: result released (code OK) or refused, with the gRPC status.",
        );
        for (code, c) in CODES.iter().zip(&self.answers) {
            let result = if *code == "OK" { "released" } else { "refused" };
            let name = format!("kms_releases_total{{result=\"{result}\",code=\"{code}\"}}");
            sample(&mut out, &name, load(c));
        }

        header(
            &mut out,
            "kms_gate_connections_open",
            "gauge",
            "Client connections the connection gate holds open.",
        );
        sample(&mut out, "kms_gate_connections_open", load(&self.gate_open));
        header(
            &mut out,
            "kms_gate_refused_total",
            "counter",
            "Connections the gate refused, by reason.",
        );
        for (reason, c) in GATE_REASONS.iter().zip(&self.gate_refused) {
            let name = format!("kms_gate_refused_total{{reason=\"{reason}\"}}");
            sample(&mut out, &name, load(c));
        }

        header(
            &mut out,
            "kms_state_generation",
            "gauge",
            "Configurations (policy and secrets) installed since start: 1 at start, +1 per reload or change.",
        );
        sample(&mut out, "kms_state_generation", load(&self.generation));

        self.render_collateral(&mut out);
        out
    }

    fn render_collateral(&self, out: &mut String) {
        let stats = self.collateral.get();
        let get = |f: fn(&CollateralStats) -> u64| stats.map_or(0, |s| f(s));
        for (name, help, value) in [
            (
                "kms_collateral_cache_hits_total",
                "Collateral lookups answered from the in-memory cache (PCCS only).",
                get(CollateralStats::hits),
            ),
            (
                "kms_collateral_fetches_total",
                "Collateral fetches from the PCCS (or the disk cache) started.",
                get(CollateralStats::fetches),
            ),
            (
                "kms_collateral_fetch_failures_total",
                "Collateral fetches that failed.",
                get(CollateralStats::failures),
            ),
        ] {
            header(out, name, "counter", help);
            sample(out, name, value);
        }
        // Absent until a fetch has succeeded (a static collateral file is never refreshed).
        if let Some(last) = stats.and_then(|s| s.last_success_unix()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            header(
                out,
                "kms_collateral_refresh_age_seconds",
                "gauge",
                "Seconds since the last successful collateral fetch.",
            );
            sample(
                out,
                "kms_collateral_refresh_age_seconds",
                now.saturating_sub(last),
            );
        }
    }
}

/// The metrics endpoint, listening; serves until the process ends.
pub struct Endpoint {
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr` and serves `GET /metrics` on a background thread.
    pub fn start(addr: &str) -> io::Result<Endpoint> {
        let limits = HttpLimits {
            max_connections: MAX_CONNECTIONS,
            io_timeout: IO_TIMEOUT,
        };
        let router = Arc::new(|head: &[u8]| {
            let (status, extra, body) = answer(head);
            let content_type = if status.starts_with("200") {
                "text/plain; version=0.0.4; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, content_type, extra, body)
        });
        let addr = serve_http(addr, "kms-metrics", limits, router)?;
        Ok(Endpoint { addr })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// An answer of [`serve_http`]'s router: status (`"200 OK"`), content type, extra header
/// lines (each ending in CRLF), body.
pub type HttpReply = (&'static str, &'static str, &'static str, String);

/// Answers one request head (peer input: any bytes, at most [`MAX_REQUEST_HEAD`] of them).
pub type HttpRouter = dyn Fn(&[u8]) -> HttpReply + Send + Sync;

/// Bounds of a [`serve_http`] server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more are closed without an answer.
    pub max_connections: usize,
    /// Reading the request and writing the answer each must finish within this time.
    pub io_timeout: Duration,
}

/// Binds `addr` and serves one request per connection with `router`: an accept thread named
/// `name` and at most `limits.max_connections` short-lived connection threads, each reading a
/// request head of at most [`MAX_REQUEST_HEAD`] bytes (431 beyond) within `limits.io_timeout`.
/// Returns the bound address.
pub fn serve_http(
    addr: &str,
    name: &str,
    limits: HttpLimits,
    router: Arc<HttpRouter>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    let conn_name = format!("{name}-conn");
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || accept_loop(&listener, &busy, limits, &router, &conn_name))?;
    Ok(addr)
}

fn accept_loop(
    listener: &TcpListener,
    busy: &Arc<AtomicUsize>,
    limits: HttpLimits,
    router: &Arc<HttpRouter>,
    conn_name: &str,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // EMFILE and the like: do not spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            busy.fetch_sub(1, Ordering::AcqRel);
            drop(stream);
            continue;
        }
        let done = Arc::clone(busy);
        let router = Arc::clone(router);
        let spawned = std::thread::Builder::new()
            .name(conn_name.into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = serve_one(stream, limits.io_timeout, router.as_ref());
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            // The closure, and its decrement, never ran.
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads one request head and answers it; the connection is then closed.
fn serve_one(mut stream: TcpStream, io_timeout: Duration, router: &HttpRouter) -> io::Result<()> {
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break false;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    };
    let (status, content_type, extra, body) = if complete {
        router(&head)
    } else {
        (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "",
            "request head too large\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// The status line, extra headers and body for a request head (peer input: any bytes).
pub fn answer(head: &[u8]) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", "", METRICS.render()),
        (Some(_), Some(b"/metrics")) => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET /metrics\n".to_owned(),
        ),
        _ => ("404 Not Found", "", "only GET /metrics\n".to_owned()),
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn check_index(check: &str) -> usize {
    CHECKS
        .iter()
        .position(|&c| c == check)
        .unwrap_or(CHECKS.len() - 1)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: u64) {
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Metrics {
        Metrics::new()
    }

    #[test]
    fn counters_render_under_their_fixed_labels() {
        let m = fresh();
        m.attestation(Ok(()), Duration::from_millis(3));
        m.attestation(Err(("measurement-policy", false)), Duration::from_millis(1));
        m.attestation(Err(("collateral", true)), Duration::from_secs(10));
        m.attestation(Err(("a check added later", false)), Duration::ZERO);
        m.answer("OK");
        m.answer("OK");
        m.answer("NOT_FOUND");
        m.answer("SOMETHING_NEW");
        m.gate_opened();
        m.gate_opened();
        m.gate_closed();
        m.gate_refused(GateRefusal::PerPeer);
        assert_eq!(m.new_generation(), 1);
        let text = m.render();
        for line in [
            "kms_attestations_total{result=\"ok\",check=\"none\"} 1",
            "kms_attestations_total{result=\"rejected\",check=\"measurement-policy\"} 1",
            "kms_attestations_total{result=\"unavailable\",check=\"collateral\"} 1",
            "kms_attestations_total{result=\"rejected\",check=\"other\"} 1",
            "kms_attestation_duration_seconds_bucket{le=\"0.005\"} 3",
            "kms_attestation_duration_seconds_bucket{le=\"2.5\"} 3",
            "kms_attestation_duration_seconds_bucket{le=\"+Inf\"} 4",
            "kms_attestation_duration_seconds_count 4",
            "kms_attestation_duration_seconds_sum 10.004",
            "kms_releases_total{result=\"released\",code=\"OK\"} 2",
            "kms_releases_total{result=\"refused\",code=\"NOT_FOUND\"} 1",
            "kms_releases_total{result=\"refused\",code=\"OTHER\"} 1",
            "kms_gate_connections_open 1",
            "kms_gate_refused_total{reason=\"per_peer_limit\"} 1",
            "kms_state_generation 1",
            "kms_collateral_fetches_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("kms_collateral_refresh_age_seconds"));
    }

    #[test]
    fn the_open_gauge_never_goes_below_zero() {
        let m = fresh();
        m.gate_closed();
        assert!(
            m.render()
                .lines()
                .any(|l| l == "kms_gate_connections_open 0")
        );
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        let m = fresh();
        m.attestation(Ok(()), Duration::from_millis(2));
        m.answer("PERMISSION_DENIED");
        let stats = Arc::new(CollateralStats::default());
        m.collateral_stats(Arc::clone(&stats));
        let text = m.render();
        let promtool = std::path::Path::new("/usr/bin/promtool");
        if !promtool.exists() {
            // .ci/run installs prometheus, which ships promtool; fail there rather than skip.
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool missing (Debian package prometheus)"
            );
            eprintln!("promtool not installed: exposition not checked");
            return;
        }
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn the_endpoint_serves_get_metrics_and_nothing_else() {
        let ep = Endpoint::start("127.0.0.1:0").unwrap();
        let ok = get(ep.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains("# TYPE kms_attestations_total counter"), "{ok}");
        let post = get(ep.addr(), b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET"), "{post}");
        let other = get(ep.addr(), b"GET /secrets HTTP/1.1\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let huge = [b"GET /metrics HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        let big = get(ep.addr(), &huge);
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    }

    #[test]
    fn a_silent_connection_is_dropped_after_the_read_timeout() {
        let ep = Endpoint::start("127.0.0.1:0").unwrap();
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(ep.addr()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty());
        let took = started.elapsed();
        assert!(took >= IO_TIMEOUT - Duration::from_millis(100), "{took:?}");
        assert!(took < IO_TIMEOUT * 3, "{took:?}");
    }
}
