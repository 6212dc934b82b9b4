//! The health endpoint for Kubernetes probes (`--health-listen`): plaintext HTTP/1.1,
//! `GET /livez` and `GET /readyz`, nothing else.
//!
//! Kubernetes' probes cannot speak the main port's RA-TLS (its gRPC probe has no TLS at all,
//! and the kubelet has no client certificate a KMS would admit), so liveness and readiness get
//! their own plaintext port; `grpc.health.v1` on the main port is for attested clients.
//!
//! - `/livez`: 200 `{"live":true}` whenever this endpoint answers; it is served by the
//!   process's own threads, so a process that has died or stopped scheduling threads fails it.
//! - `/readyz`: 200 `{"ready":true}` when the readiness callback says so, else 503
//!   `{"ready":false,"why":"..."}` with the callback's reason (at most [`MAX_WHY`] bytes).
//!   Single mode: ready once the gRPC server is up (the endpoint starts after it). Cluster
//!   mode: the cluster's readiness (holds the cluster key and a verified state).
//!
//! Inside Occlum the host picks the address and reads every answer: the answers carry no
//! policy value, measurement, secret name or peer address, only availability. The server is
//! `metrics::serve_http` (one accept thread, at most [`MAX_CONNECTIONS`] short-lived connection
//! threads, a request head of at most `metrics::MAX_REQUEST_HEAD` bytes read within
//! [`IO_TIMEOUT`], one request per connection).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{self, HttpLimits, HttpReply};

/// Connections served at once; more are closed without an answer. Probes come one at a time
/// per kind from the kubelet; the rest is headroom for an operator's curl.
pub const MAX_CONNECTIONS: usize = 8;
/// Reading the request and writing the answer each must finish within this time: shorter than
/// the kubelet's probe timeouts, so a silent connection frees its slot before the next probe.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `why` in a 503 answer, in bytes (longer reasons are cut at a character boundary).
pub const MAX_WHY: usize = 512;

/// The readiness callback: `Ok(())` when ready, else why not (shown to whoever asks).
pub type Ready = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The health endpoint, listening; serves until the process ends.
pub struct Endpoint {
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr` and serves `/livez` and `/readyz` on background threads, asking `ready` at
    /// every `/readyz`.
    pub fn start(
        addr: &str,
        ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    ) -> io::Result<Endpoint> {
        let limits = HttpLimits {
            max_connections: MAX_CONNECTIONS,
            io_timeout: IO_TIMEOUT,
        };
        let router = Arc::new(move |head: &[u8]| answer(head, ready.as_ref()));
        let addr = metrics::serve_http(addr, "kms-health", limits, router)?;
        Ok(Endpoint { addr })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The answer to a request head (peer input: any bytes). `ready` is called for `/readyz` only.
pub fn answer(head: &[u8], ready: &dyn Fn() -> Result<(), String>) -> HttpReply {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let known = matches!(path, Some(b"/livez" | b"/readyz"));
    match (method, path) {
        (Some(b"GET"), Some(b"/livez")) => ("200 OK", JSON, "", "{\"live\":true}\n".into()),
        (Some(b"GET"), Some(b"/readyz")) => match ready() {
            Ok(()) => ("200 OK", JSON, "", "{\"ready\":true}\n".into()),
            Err(why) => {
                let why = serde_json::Value::String(truncate(&why, MAX_WHY).to_owned());
                (
                    "503 Service Unavailable",
                    JSON,
                    "",
                    format!("{{\"ready\":false,\"why\":{why}}}\n"),
                )
            }
        },
        _ if known => (
            "405 Method Not Allowed",
            TEXT,
            "Allow: GET\r\n",
            "only GET /livez and GET /readyz\n".into(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "",
            "only GET /livez and GET /readyz\n".into(),
        ),
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn ready() -> Result<(), String> {
        Ok(())
    }

    fn not_ready() -> Result<(), String> {
        Err("cluster replica not ready: no cluster key \"yet\"".into())
    }

    #[test]
    fn livez_and_readyz_answer_and_everything_else_is_refused() {
        let get = |head: &[u8], f: &dyn Fn() -> Result<(), String>| {
            let (status, _, _, body) = answer(head, f);
            (status, body)
        };
        assert_eq!(
            get(b"GET /livez HTTP/1.1\r\n\r\n", &not_ready),
            ("200 OK", "{\"live\":true}\n".into())
        );
        assert_eq!(
            get(b"GET /readyz?verbose HTTP/1.1\r\n\r\n", &ready),
            ("200 OK", "{\"ready\":true}\n".into())
        );
        let (status, body) = get(b"GET /readyz HTTP/1.1\r\n\r\n", &not_ready);
        assert_eq!(status, "503 Service Unavailable");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(
            json["why"],
            "cluster replica not ready: no cluster key \"yet\""
        );
        assert!(
            get(b"POST /readyz HTTP/1.1\r\n\r\n", &ready)
                .0
                .starts_with("405")
        );
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"GET /livezz HTTP/1.1\r\n\r\n",
            b"GET",
            b"",
            b"\xff\xfe /x",
        ] {
            assert!(get(head, &ready).0.starts_with("404"), "{head:?}");
        }
    }

    #[test]
    fn the_callback_is_asked_only_for_readyz() {
        let asked = AtomicBool::new(false);
        let probe = || {
            asked.store(true, Ordering::SeqCst);
            Ok(())
        };
        answer(b"GET /livez HTTP/1.1\r\n\r\n", &probe);
        answer(b"GET /nope HTTP/1.1\r\n\r\n", &probe);
        assert!(!asked.load(Ordering::SeqCst));
        answer(b"GET /readyz HTTP/1.1\r\n\r\n", &probe);
        assert!(asked.load(Ordering::SeqCst));
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let long = || Err("é".repeat(MAX_WHY));
        let (_, _, _, body) = answer(b"GET /readyz HTTP/1.1\r\n\r\n", &long);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let why = json["why"].as_str().unwrap();
        assert!(
            why.len() <= MAX_WHY && why.len() >= MAX_WHY - 1,
            "{}",
            why.len()
        );
    }

    fn request(addr: SocketAddr, head: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn the_endpoint_follows_the_callback() {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&flag);
        let ep = Endpoint::start(
            "127.0.0.1:0",
            Arc::new(move || {
                if seen.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("starting".into())
                }
            }),
        )
        .unwrap();
        let not_yet = request(ep.addr(), b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(not_yet.starts_with("HTTP/1.1 503 "), "{not_yet}");
        assert!(
            not_yet.contains("Content-Type: application/json"),
            "{not_yet}"
        );
        assert!(
            not_yet.ends_with("{\"ready\":false,\"why\":\"starting\"}\n"),
            "{not_yet}"
        );
        flag.store(true, Ordering::SeqCst);
        let ok = request(ep.addr(), b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let huge = [b"GET /livez HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        let big = request(ep.addr(), &huge);
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    }
}
