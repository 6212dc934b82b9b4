//! Full attestations per second against the real `kms` binary on loopback.
//!
//! One attestation = a new TCP connection and mutual RA-TLS handshake, the KMS verifying the
//! client's quote, then three GetSecret calls on that connection. Every attestation presents a
//! NEW client certificate (new key, new quote), so the KMS's per-certificate cache never helps.
//! All quotes come from one simulated platform, as a fleet's boots come from a few platforms:
//! after the first, the KMS reuses its verdict on the platform half of the quote and checks the
//! rest (report signature, key binding, certificate, TCB and measurement policy) per quote.
//! Reports attestations/s, p50/p99 latency of one whole attestation, and the KMS's peak RSS
//! (VmHWM) for 1, 8 and 32 concurrent clients.
//!
//! The clients are what init runs: `grpc-unary` over rustls with the `ratls` RA-TLS verifier,
//! which attests the KMS (its certificate does not change, so after the first connection that
//! is the verifier's per-certificate cache plus the TLS signature check). Like init, a client
//! sends its three calls as one batch (`Channel::unary_many`, three concurrent streams) with its
//! last TLS flight; `--sequential` makes them one after another instead. Latency is measured
//! from the TCP connect to the third reply. Client and server share this machine's cores, at
//! the same priority unless `--client-nice N` lowers the clients' (the KMS stays at 0): the
//! clients stand in for other machines, and on two cores their 32 threads otherwise preempt
//! the server they measure. `--phases` adds, per level, p50/p99 of the two halves of an
//! attestation: connect + handshake (until the client has the KMS's flight) and the calls.
//!
//! The platform is SIMULATED (sgx-sim); quote verification costs the same as for hardware
//! quotes (same ECDSA chain, same dcap-qvl code).
//!
//! `--metrics-listen ADDR` starts the KMS with its Prometheus endpoint there; `--sim-pccs`
//! serves the platform's collateral from `sgx-sim pccs` (next to this binary's target dir, or
//! `$SGX_SIM_BIN`) and points the KMS at it (`--pccs-url`), so collateral is fetched over HTTP;
//! `--linger SECS` keeps the KMS up that long after the last level (a scraper's last look).
//! `--occlum-compat` starts the KMS with `--occlum-compat-listen` and drives that port (TLS
//! terminated by rustls in the KMS, for Occlum's C++ clients) instead of the main one.
//! The last line, `kms_bench: total attestations N`, is what a scraper should have counted.
//!
//! `cargo bench -p kms --bench kms_bench [-- --per-level N --levels 1,8,32 --same-cert
//! --sequential --threads N --client-nice N --phases --metrics-listen ADDR --sim-pccs
//! --linger SECS --occlum-compat]`;
//! `KMS_BIN=path/to/kms` benchmarks that server binary instead of the one cargo built.
//!
//! `--targets ADDR[,ADDR...] --platform DIR --client-identity FILE --kms-policy FILE
//! [--target-pids PID,...]` drives KMS servers that are already running (the replicas of a
//! cluster, `bench/cluster_bench.sh`) instead of starting one: attestation `i` goes to target
//! `i mod N`, as a Service spreads new connections; the clients quote as the identity in FILE on
//! the simulated platform in DIR and hold the KMS to the policy in FILE; KMS CPU and VmHWM are
//! summed (CPU) and maxed (VmHWM) over the given pids.
//! (`--same-cert` reuses one certificate per client thread: the cached-verification case).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use grpc_unary::{Channel, ClientConfig};
use grsecret::client::Batch;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::Verifier;
use rustls_pki_types::ServerName;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};
use test_kit::process::{STARTUP_TIMEOUT, addr_after, spawn_listening};

struct Args {
    per_level: usize,
    levels: Vec<usize>,
    same_cert: bool,
    sequential: bool,
    threads: usize,
    client_nice: i32,
    phases: bool,
    metrics_listen: Option<String>,
    sim_pccs: bool,
    linger: u64,
    /// Drive the KMS's Occlum-compat listener (`--occlum-compat-listen`, TLS by rustls in the
    /// KMS) instead of its main port.
    occlum_compat: bool,
    /// Running servers to drive instead of starting one (with the three fields below).
    targets: Vec<String>,
    platform: Option<PathBuf>,
    client_identity: Option<PathBuf>,
    kms_policy: Option<PathBuf>,
    target_pids: Vec<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        per_level: 1000,
        levels: vec![1, 8, 32],
        same_cert: false,
        sequential: false,
        threads: 2,
        client_nice: 0,
        phases: false,
        metrics_listen: None,
        sim_pccs: false,
        linger: 0,
        occlum_compat: false,
        targets: Vec::new(),
        platform: None,
        client_identity: None,
        kms_policy: None,
        target_pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--per-level" => args.per_level = it.next().unwrap().parse().unwrap(),
            "--levels" => {
                args.levels = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.parse().unwrap())
                    .collect()
            }
            "--same-cert" => args.same_cert = true,
            "--sequential" => args.sequential = true,
            "--threads" => args.threads = it.next().unwrap().parse().unwrap(),
            "--client-nice" => args.client_nice = it.next().unwrap().parse().unwrap(),
            "--phases" => args.phases = true,
            "--metrics-listen" => args.metrics_listen = it.next(),
            "--sim-pccs" => args.sim_pccs = true,
            "--linger" => args.linger = it.next().unwrap().parse().unwrap(),
            "--occlum-compat" => args.occlum_compat = true,
            "--targets" => {
                args.targets = it.next().unwrap().split(',').map(str::to_owned).collect()
            }
            "--platform" => args.platform = it.next().map(PathBuf::from),
            "--client-identity" => args.client_identity = it.next().map(PathBuf::from),
            "--kms-policy" => args.kms_policy = it.next().map(PathBuf::from),
            "--target-pids" => {
                args.target_pids = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.parse().unwrap())
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("kms-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let external = !args.targets.is_empty();
    let platform = Arc::new(match &args.platform {
        Some(existing) if external => SimPlatform::open(existing).unwrap(),
        _ if external => panic!("--targets needs --platform DIR"),
        _ => SimPlatform::create(&dir.join("platform"), &PlatformOptions::default()).unwrap(),
    });
    let app = match &args.client_identity {
        Some(file) if external => Identity::load(file).unwrap(),
        _ if external => panic!("--targets needs --client-identity FILE"),
        _ => {
            let mut app = Identity::random(None).unwrap();
            app.name = Some("app".into());
            app
        }
    };
    let kms_identity = Identity::random(None).unwrap();
    std::fs::write(dir.join("kms-identity.json"), kms_identity.to_json()).unwrap();
    let policy = serde_json::json!({
        "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
        "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
        "sgx_mrs": [{ "name": "app", "mr_enclave": hex::encode(app.mr_enclave), "mr_signer": hex::encode(app.mr_signer),
                      "isv_prod_id": 0, "isv_svn": 0, "config_svn": 0, "debuggable": false }]
    });
    std::fs::write(dir.join("ra.json"), policy.to_string()).unwrap();
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let secrets = serde_json::json!({
        "flask_cert": b64(&[b'c'; 1200]), "flask_key": b64(&[b'k'; 240]),
        "image_key": { "value": b64(b"a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff\n"), "allow": ["app"] }
    });
    std::fs::write(dir.join("secrets.json"), secrets.to_string()).unwrap();

    let total: usize = if args.same_cert {
        args.levels.iter().sum()
    } else {
        args.levels.len() * args.per_level
    };
    eprintln!("minting {total} client certificates (SIMULATED platform)...");
    let source = SimQuoteSource {
        platform: Arc::clone(&platform),
        identity: app.clone(),
    };
    let certs: Vec<RaTlsIdentity> = (0..total)
        .map(|_| RaTlsIdentity::mint(&source).unwrap())
        .collect();
    // The clients attest the KMS as init does: simulated root, the platform's collateral, and a
    // policy naming the KMS enclave.
    let kms_policy = match &args.kms_policy {
        Some(file) if external => std::fs::read_to_string(file).unwrap(),
        _ if external => panic!("--targets needs --kms-policy FILE"),
        _ => serde_json::json!({
            "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{ "mr_enclave": hex::encode(kms_identity.mr_enclave), "mr_signer": hex::encode(kms_identity.mr_signer),
                          "isv_prod_id": 0, "isv_svn": 0, "config_svn": 0, "debuggable": false }]
        })
        .to_string(),
    };
    let kms_verifier = Arc::new(Verifier::new(
        ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "kms_bench".into()),
        Arc::new(StaticCollateral::new(
            platform.collateral(),
            "SIMULATED platform",
        )),
        RaPolicy::from_json(kms_policy.as_bytes(), "kms_bench client policy").unwrap(),
    ));

    let (child, pccs, addrs, pids) = if external {
        (None, None, args.targets.clone(), args.target_pids.clone())
    } else {
        let (child, pccs, addr) = start_kms(&args, &dir);
        let pid = child.0.id();
        (Some(child), pccs, vec![addr], vec![pid])
    };
    if args.client_nice != 0 {
        // Linux keeps the nice value per thread and new threads inherit it: this one is about to
        // spawn every client, while the KMS (already running) keeps its own.
        rustix::process::setpriority_process(None, args.client_nice)
            .expect("--client-nice: setpriority failed (a negative value needs CAP_SYS_NICE)");
    }
    report(&args, &addrs, &pids, &kms_verifier, certs);
    std::thread::sleep(Duration::from_secs(args.linger));
    drop(child);
    drop(pccs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the KMS this bench measures (and the simulated PCCS, with `--sim-pccs`): the child,
/// the PCCS, and the KMS's address.
fn start_kms(args: &Args, dir: &std::path::Path) -> (Reaped, Option<(Reaped, String)>, String) {
    // KMS_BIN measures another build of the server (say, a release binary) with this client.
    let kms_bin = std::env::var("KMS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kms").to_owned());
    eprintln!("server: {kms_bin}");
    let pccs = args.sim_pccs.then(|| start_sim_pccs(&dir.join("platform")));
    let mut extra: Vec<String> = Vec::new();
    if let Some((_, url)) = &pccs {
        extra.extend(["--pccs-url".into(), url.clone()]);
    }
    if let Some(addr) = &args.metrics_listen {
        extra.extend(["--metrics-listen".into(), addr.clone()]);
    }
    // A free loopback port for the compat listener (free a moment ago: good enough here).
    let compat = args.occlum_compat.then(|| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    });
    if let Some(addr) = &compat {
        extra.extend(["--occlum-compat-listen".into(), addr.clone()]);
    }
    let mut cmd = Command::new(&kms_bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--ra-config"])
        .arg(dir.join("ra.json"))
        .arg("--secrets")
        .arg(dir.join("secrets.json"))
        .arg("--sim-platform")
        .arg(dir.join("platform"))
        .arg("--sim-identity")
        .arg(dir.join("kms-identity.json"))
        .arg("--cert-out")
        .arg(dir.join("kms.pem"))
        .arg("--audit-log")
        .arg(dir.join("audit.log"))
        .args(["--threads", &args.threads.to_string()])
        .args(&extra)
        .stderr(Stdio::null());
    let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
        .unwrap_or_else(|e| panic!("kms did not start: {e}"));
    let child = Reaped(started.child);
    let addr = addr_after(&started.line, "listening on ")
        .unwrap_or_else(|| panic!("kms did not start: {:?}", started.line))
        .to_owned();
    if let Some(compat) = compat {
        eprintln!("driving the Occlum-compat listener at {compat} (main port {addr})");
        return (child, pccs, compat);
    }
    (child, pccs, addr)
}

/// Runs every level against `addrs` and prints a line for each; CPU is summed and VmHWM maxed
/// over `pids`.
fn report(
    args: &Args,
    addrs: &[String],
    pids: &[u32],
    kms_verifier: &Arc<Verifier>,
    certs: Vec<RaTlsIdentity>,
) {
    println!(
        "kms_bench: full attestations (new connection + mutual RA-TLS + verification + 3 GetSecret)"
    );
    println!(
        "kms_bench: {} client certificate per {}; KMS --threads {}; SIMULATED platform",
        if args.same_cert { "one" } else { "a NEW" },
        if args.same_cert {
            "client thread (cached verification)"
        } else {
            "attestation (every quote verified; one platform, so its half is verified once)"
        },
        args.threads
    );
    println!(
        "kms_bench: clients at nice {}, the KMS at nice 0{}",
        args.client_nice,
        if args.client_nice == 0 {
            " (same priority; --client-nice N lowers the clients')"
        } else {
            ""
        }
    );
    println!(
        "kms_bench: clients are init's stack (grpc-unary + rustls + ratls) on this machine; \
         the 3 calls {}",
        if args.sequential {
            "one after another (--sequential)"
        } else {
            "as one batch, as init makes them"
        }
    );
    println!(
        "{:>8} {:>6} {:>9} {:>7} {:>7} {:>11} {:>11} {:>10}",
        "clients",
        "count",
        "attest/s",
        "p50 ms",
        "p99 ms",
        "KMS CPU/at",
        "bench CPU/at",
        "KMS VmHWM"
    );
    let certs = Arc::new(certs);
    let next_cert = Arc::new(AtomicUsize::new(0));
    let mut total_done = 0;
    for &clients in &args.levels {
        let count = if args.same_cert {
            args.per_level.max(clients)
        } else {
            args.per_level
        };
        let (kms_cpu, own_cpu) = (servers_cpu_ms(pids), cpu_ms("self"));
        let (rate, p50, p99, phases) = run_level(
            addrs,
            kms_verifier,
            &certs,
            &next_cert,
            clients,
            count,
            args,
        );
        total_done += count;
        let kms_cpu = (servers_cpu_ms(pids) - kms_cpu) / count as f64;
        let own_cpu = (cpu_ms("self") - own_cpu) / count as f64;
        let hwm = pids.iter().map(|&pid| vm_hwm(pid)).max().unwrap_or(0);
        println!(
            "{clients:>8} {count:>6} {rate:>9.0} {p50:>7.2} {p99:>7.2} {kms_cpu:>8.2} ms {own_cpu:>8.2} ms {hwm:>6} KiB"
        );
        if args.phases {
            let [hs50, hs99, calls50, calls99] = phases;
            println!(
                "{:>8} connect + handshake p50 {hs50:.2} p99 {hs99:.2} ms; calls p50 {calls50:.2} p99 {calls99:.2} ms",
                ""
            );
        }
    }
    println!("kms_bench: total attestations {total_done}");
}

/// A child process killed when dropped, also when a client's failure unwinds `main`: a failed
/// run leaves no KMS or PCCS behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sgx-sim pccs` on the platform's directory, on a loopback port: the process and its URL.
fn start_sim_pccs(platform: &std::path::Path) -> (Reaped, String) {
    let bin = std::env::var("SGX_SIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            // target/release/deps/kms_bench-HASH -> target/release/sgx-sim
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("sgx-sim")
        });
    let mut cmd = Command::new(&bin);
    cmd.arg("pccs")
        .arg(platform)
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::null());
    let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
        .unwrap_or_else(|e| panic!("--sim-pccs: {} did not start: {e}", bin.display()));
    let child = Reaped(started.child);
    let addr = addr_after(&started.line, "listening on ")
        .unwrap_or_else(|| panic!("sgx-sim pccs did not start: {:?}", started.line))
        .to_owned();
    eprintln!("collateral from the SIMULATED PCCS at http://{addr}");
    (child, format!("http://{addr}"))
}

fn run_level(
    addrs: &[String],
    kms_verifier: &Arc<Verifier>,
    certs: &Arc<Vec<RaTlsIdentity>>,
    next_cert: &Arc<AtomicUsize>,
    clients: usize,
    count: usize,
    args: &Args,
) -> (f64, f64, f64, [f64; 4]) {
    let (same_cert, sequential) = (args.same_cert, args.sequential);
    let done = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (done, latencies, certs, next_cert, verifier) = (
                Arc::clone(&done),
                Arc::clone(&latencies),
                Arc::clone(certs),
                Arc::clone(next_cert),
                Arc::clone(kms_verifier),
            );
            let addrs = addrs.to_vec();
            let fixed = if same_cert {
                Some(next_cert.fetch_add(1, Ordering::SeqCst))
            } else {
                None
            };
            std::thread::spawn(move || {
                let cfg = ClientConfig::builder().build();
                let mut local = Vec::new();
                while done.fetch_add(1, Ordering::SeqCst) < count {
                    let i = fixed.unwrap_or_else(|| next_cert.fetch_add(1, Ordering::SeqCst));
                    let t = Instant::now();
                    let tls = ratls::tls::client_config(Arc::clone(&verifier), &certs[i]).unwrap();
                    let server = ServerName::try_from("kms").unwrap();
                    let addr = &addrs[i % addrs.len()];
                    let mut channel = Channel::connect(addr, server, Arc::new(tls), &cfg)
                        .expect("RA-TLS connection to the KMS failed");
                    let handshake = t.elapsed();
                    let batch = Batch::new(&["image_key", "flask_cert", "flask_key"]);
                    if sequential {
                        for (path, req) in batch.calls() {
                            let reply = channel.unary(path, req).expect("GetSecret failed");
                            assert!(!reply.is_empty());
                        }
                    } else {
                        for reply in channel.unary_many(&batch.calls()).expect("batch failed") {
                            assert!(!reply.expect("GetSecret failed").is_empty());
                        }
                    }
                    local.push((t.elapsed(), handshake));
                    let _ = channel.close();
                }
                latencies.lock().unwrap().extend(local);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    let samples: Vec<(Duration, Duration)> = Arc::try_unwrap(latencies)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    let total = percentiles(samples.iter().map(|&(all, _)| all));
    let handshake = percentiles(samples.iter().map(|&(_, hs)| hs));
    let calls = percentiles(samples.iter().map(|&(all, hs)| all - hs));
    (
        samples.len() as f64 / elapsed.as_secs_f64(),
        total[0],
        total[1],
        [handshake[0], handshake[1], calls[0], calls[1]],
    )
}

/// p50 and p99 in milliseconds.
fn percentiles(values: impl Iterator<Item = Duration>) -> [f64; 2] {
    let mut v: Vec<Duration> = values.collect();
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    [pct(0.50), pct(0.99)]
}

/// CPU of all `pids` together, in milliseconds.
fn servers_cpu_ms(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_ms(&pid.to_string())).sum()
}

/// utime + stime of a process in milliseconds (`/proc/<pid>/stat`, clock ticks of 10 ms).
fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; here indices 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) * 10.0
}

fn vm_hwm(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/status"))).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
