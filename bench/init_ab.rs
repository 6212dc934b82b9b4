//! Paired A/B boot-time benchmark of two `init` binaries (e.g. before and after a change to
//! the connect path), host mode, 3 secrets + image_key, against ONE KMS on loopback: boots
//! alternate A, B, A, B... so load on the machine hits both alike. Reports per binary and per
//! address form the median, p90 and mean wall time from spawn to exit, the median of init's own
//! total (its last log line's timestamp: config to last secret written, without process start)
//! and of its `handshake` step; then, per pair, the median B/A ratio of wall time and of init's
//! total, and in how many pairs B was faster (a sign test: ~half when there is no difference).
//!
//! Address forms: an IP literal (`127.0.0.1:PORT`, one candidate) and `localhost:PORT` (a name
//! resolving to two addresses; the KMS answers on the first).
//!
//! Run: `INIT_A=/path/to/old/init INIT_B=/path/to/new/init cargo bench --workspace --locked
//! --features kms/simulation,init/simulation --bench init_ab` (both the `--simulation` musl
//! build). Env: `BENCH_RUNS` (pairs per address form, default 40).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use e2e_tests::Deployment;

const SECRETS: &[(&str, &str, &[u8])] = &[
    ("flask_cert", "/etc/flask.crt", &[b'c'; 1200]),
    ("flask_key", "/etc/flask.key", &[b'k'; 1700]),
    ("api_token", "/etc/app/token", &[b't'; 64]),
];

fn main() {
    let bin = |var: &str| -> PathBuf {
        let path = PathBuf::from(std::env::var_os(var).unwrap_or_else(|| {
            panic!("{var} must name an init binary (see the header of bench/init_ab.rs)")
        }));
        assert!(path.is_file(), "{var}={} does not exist", path.display());
        path
    };
    let (a, b) = (bin("INIT_A"), bin("INIT_B"));
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .max(10);
    let d = Deployment::new(SECRETS);
    let kms = d.start_kms("127.0.0.1:0");
    let port = kms.addr.rsplit_once(':').unwrap().1.to_owned();
    println!(
        "A = {}\nB = {}\nKMS {}, {runs} pairs per address form\n",
        a.display(),
        b.display(),
        kms.addr
    );
    println!(
        "{:<18} {:>3} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "address", "bin", "median ms", "p90 ms", "mean ms", "init total", "handshake ms"
    );
    for addr in [kms.addr.clone(), format!("localhost:{port}")] {
        for bin in [&a, &b] {
            boot(&d, bin, &addr); // warm-up
        }
        let mut samples: [Vec<Boot>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (i, bin) in [&a, &b].into_iter().enumerate() {
                samples[i].push(boot(&d, bin, &addr));
            }
        }
        for (name, s) in ["A", "B"].iter().zip(&samples) {
            let wall = sorted(s.iter().map(|b| b.wall_ms));
            let total = sorted(s.iter().map(|b| b.init_total_ms));
            let hs = sorted(s.iter().map(|b| b.handshake_ms));
            let mean = wall.iter().sum::<f64>() / wall.len() as f64;
            println!(
                "{addr:<18} {name:>3} {:>10.2} {:>10.2} {mean:>10.2} {:>12.2} {:>14.2}",
                pct(&wall, 50),
                pct(&wall, 90),
                pct(&total, 50),
                pct(&hs, 50)
            );
        }
        let pairs = samples[0].iter().zip(&samples[1]);
        let wall_ratio = sorted(pairs.clone().map(|(a, b)| b.wall_ms / a.wall_ms));
        let total_ratio = sorted(
            pairs
                .clone()
                .map(|(a, b)| b.init_total_ms / a.init_total_ms),
        );
        let b_faster = pairs
            .filter(|(a, b)| b.init_total_ms < a.init_total_ms)
            .count();
        println!(
            "{addr:<18} B/A per pair: wall {:.3}, init total {:.3}; B faster in {b_faster} of {runs} pairs (init total)",
            pct(&wall_ratio, 50),
            pct(&total_ratio, 50)
        );
    }
}

/// One boot's timings, in ms.
struct Boot {
    wall_ms: f64,
    init_total_ms: f64,
    handshake_ms: f64,
}

/// One boot with `bin` against `addr`.
fn boot(d: &Deployment, bin: &PathBuf, addr: &str) -> Boot {
    let template = d.init_command(addr, &[], &[]);
    let mut cmd = Command::new(bin);
    cmd.args(template.get_args())
        .env_remove("OCCLUM_INIT_RA_KMS_SERVER")
        .env_remove("OCCLUM_INIT_RA_PCCS_URL")
        .stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed:\n{stderr}", bin.display());
    Boot {
        wall_ms: took.as_secs_f64() * 1e3,
        init_total_ms: last_timestamp_ms(&stderr),
        handshake_ms: step_ms(&stderr, "handshake"),
    }
}

/// The timestamp of init's last log line (`init: [t ms] ...`), 0 if none.
fn last_timestamp_ms(log: &str) -> f64 {
    log.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("init: [")?
                .split_once(" ms]")?
                .0
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The duration of `step` in init's log (`init: [t ms] step d ms: ...`), 0 if absent.
fn step_ms(log: &str, step: &str) -> f64 {
    log.lines()
        .find_map(|l| {
            let rest = l.split_once(&format!("] {step} "))?.1;
            rest.split_once(" ms:")?.0.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100]
}
