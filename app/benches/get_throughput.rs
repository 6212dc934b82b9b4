//! GET requests per second and latency percentiles against the real `app` binary over
//! kept-alive HTTPS connections on loopback (default: 16 clients, 2 s warm-up, 10 s measured),
//! then a short PUT phase for comparison (every PUT is an fsynced SQLite commit).
//!
//! Each client thread owns one TLS 1.3 connection (rustls, ring) and sends one request at a
//! time, timing each from the write to the last body byte. Client and server share the
//! machine's cores, so the numbers are a lower bound for the server alone.
//!
//! `--idle-sockets N` holds N idle connections open during the phases (slowloris): half
//! bare TCP connections that never send a byte, half that complete the TLS handshake and
//! then stay silent; any the server closes are opened again at once.
//! Goal with 1,000 idle sockets: GET p99 < 50 ms.
//!
//! `cargo bench -p app --bench get_throughput [-- --clients N --seconds S --warmup S
//!  --put-seconds S --idle-sockets N]`; `APP_BIN=/path/to/app` benchmarks another build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use test_kit::process::{STARTUP_TIMEOUT, spawn_listening};

/// Distinct customers the GET phase cycles through.
const CUSTOMERS: usize = 100;

struct Options {
    clients: usize,
    seconds: f64,
    warmup: f64,
    put_seconds: f64,
    idle_sockets: usize,
}

fn main() {
    let options = parse_options();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("app-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tls, cert_path, key_path) = make_cert(&dir);
    let bin = std::env::var_os("APP_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_app")), PathBuf::from);
    let workers = options.clients.max(16).to_string();
    let (mut child, port) = start_app(&bin, &cert_path, &key_path, &dir.join("data"), &workers);

    let mut seed = Client::connect(port, &tls);
    for id in 0..CUSTOMERS {
        let body = format!("data=customer+{id}");
        let req = format!(
            "PUT /customer/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(seed.exchange(req.as_bytes()), 200);
    }
    drop(seed);
    let idle_stop = Arc::new(AtomicBool::new(false));
    let idle = (options.idle_sockets > 0).then(|| {
        let (tls, stop, n) = (
            Arc::clone(&tls),
            Arc::clone(&idle_stop),
            options.idle_sockets,
        );
        std::thread::spawn(move || hold_idle(port, &tls, n, &stop))
    });
    if options.idle_sockets > 0 {
        // Let the holder open them all before measuring.
        std::thread::sleep(Duration::from_secs(2));
        println!(
            "holding {} idle sockets (half bare TCP, half after the TLS handshake)",
            options.idle_sockets
        );
    }

    println!(
        "app GET benchmark: {} ({}), {} clients, kept-alive TLS 1.3, {} s after {} s warm-up",
        bin.display(),
        std::env::consts::ARCH,
        options.clients,
        options.seconds,
        options.warmup
    );
    let get = run_phase(port, &tls, &options, options.seconds, |client, i| {
        format!(
            "GET /customer/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            (client * 7 + i) % CUSTOMERS
        )
        .into_bytes()
    });
    get.report("GET");
    if options.put_seconds > 0.0 {
        let put = run_phase(port, &tls, &options, options.put_seconds, |client, i| {
            let body = format!("data=value+{i}");
            format!(
                "PUT /customer/bench-{client} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        put.report("PUT");
    }
    idle_stop.store(true, Ordering::Relaxed);
    if let Some(idle) = idle {
        let reopened = idle.join().unwrap();
        println!("idle sockets the server closed and the holder reopened: {reopened}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Keeps `n` idle connections open until `stop`; returns how many it had to reopen.
fn hold_idle(port: u16, tls: &Arc<ClientConfig>, n: usize, stop: &AtomicBool) -> usize {
    enum Idle {
        Tcp(TcpStream),
        Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    }
    let open = |i: usize| -> Option<Idle> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
        if i % 2 == 0 {
            return Some(Idle::Tcp(tcp));
        }
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let conn =
            ClientConnection::new(Arc::clone(tls), ServerName::try_from("localhost").unwrap())
                .ok()?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).ok()?;
        }
        Some(Idle::Tls(Box::new(stream)))
    };
    let alive = |idle: &Idle| {
        let tcp = match idle {
            Idle::Tcp(tcp) => tcp,
            Idle::Tls(stream) => &stream.sock,
        };
        // Discard what the server sent (session tickets); EOF or an error means closed.
        let mut b = [0u8; 4096];
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        loop {
            match (&*tcp).read(&mut b) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
            }
        }
    };
    let mut held: Vec<Option<Idle>> = (0..n).map(open).collect();
    let mut reopened = 0;
    while !stop.load(Ordering::Relaxed) {
        for (i, slot) in held.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(alive) {
                continue;
            }
            *slot = open(i);
            reopened += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reopened
}

fn parse_options() -> Options {
    let mut options = Options {
        clients: 16,
        seconds: 10.0,
        warmup: 2.0,
        put_seconds: 3.0,
        idle_sockets: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--clients" => options.clients = value().parse().unwrap(),
            "--seconds" => options.seconds = value().parse().unwrap(),
            "--warmup" => options.warmup = value().parse().unwrap(),
            "--put-seconds" => options.put_seconds = value().parse().unwrap(),
            "--idle-sockets" => options.idle_sockets = value().parse().unwrap(),
            // cargo bench passes --bench; ignore harness flags.
            _ => {}
        }
    }
    options
}

struct PhaseResult {
    latencies_us: Vec<u32>,
    elapsed: Duration,
    reconnects: usize,
}

impl PhaseResult {
    fn report(mut self, what: &str) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| -> f64 {
            let idx = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            f64::from(self.latencies_us[idx]) / 1000.0
        };
        let rate = n as f64 / self.elapsed.as_secs_f64();
        println!(
            "{what}: {n} requests in {:.1} s = {rate:.0} req/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; reconnects {}",
            self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            pct(1.0),
            self.reconnects
        );
    }
}

/// Runs all clients for warm-up + `seconds`, keeping only the measured window's samples.
fn run_phase(
    port: u16,
    tls: &Arc<ClientConfig>,
    options: &Options,
    seconds: f64,
    request: fn(usize, usize) -> Vec<u8>,
) -> PhaseResult {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..options.clients)
        .map(|client| {
            let tls = Arc::clone(tls);
            let measuring = Arc::clone(&measuring);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut conn = Client::connect(port, &tls);
                let mut samples = Vec::with_capacity(200_000);
                let mut reconnects = 0;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let req = request(client, i);
                    let started = Instant::now();
                    let status = conn.exchange(&req);
                    let took = started.elapsed();
                    assert_eq!(status, 200, "client {client} request {i}");
                    if measuring.load(Ordering::Relaxed) {
                        samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    }
                    if conn.closed {
                        conn = Client::connect(port, &tls);
                        reconnects += 1;
                    }
                    i += 1;
                }
                (samples, reconnects)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(options.warmup));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut result = PhaseResult {
        latencies_us: Vec::new(),
        elapsed,
        reconnects: 0,
    };
    for thread in threads {
        let (samples, reconnects) = thread.join().expect("a client failed");
        result.latencies_us.extend(samples);
        result.reconnects += reconnects;
    }
    result
}

/// One kept-alive HTTPS connection with a minimal response reader.
struct Client {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    closed: bool,
}

impl Client {
    fn connect(port: u16, tls: &Arc<ClientConfig>) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn =
            ClientConnection::new(Arc::clone(tls), ServerName::try_from("localhost").unwrap())
                .unwrap();
        Client {
            stream: StreamOwned::new(conn, tcp),
            buf: Vec::with_capacity(4096),
            closed: false,
        }
    }

    /// Sends one request and reads its whole response; returns the status.
    fn exchange(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).unwrap();
        self.stream.flush().unwrap();
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill();
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .unwrap()
            .to_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.closed = head.contains("\r\nConnection: close\r\n");
        while self.buf.len() < head_end + length {
            self.fill();
        }
        self.buf.drain(..head_end + length);
        status
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed the connection mid-response");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn make_cert(dir: &std::path::Path) -> (Arc<ClientConfig>, PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.join("bench.crt");
    let key_path = dir.join("bench.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    (Arc::new(config), cert_path, key_path)
}

fn start_app(
    bin: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    data: &std::path::Path,
    workers: &str,
) -> (Child, u16) {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--quiet",
        "--workers",
        workers,
        "--cert",
    ])
    .arg(cert)
    .arg("--key")
    .arg(key)
    .arg("--data-dir")
    .arg(data)
    .stderr(Stdio::inherit());
    let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
        .unwrap_or_else(|e| panic!("the app did not start: {e}"));
    let line = started.line;
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"));
    let child = started.child;
    (child, port)
}
