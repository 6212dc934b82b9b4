//! Paired A/B boot-time benchmark of two `init` binaries (e.g. before and after a change to
//! the connect path), host mode, 3 secrets + image_key, against ONE KMS on loopback: boots
//! alternate A, B, A, B... so load on the machine hits both alike. Reports per binary and per
//! address form the median, p90 and mean wall time from spawn to exit, and the median of
//! init's own `handshake` step.
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
use std::time::{Duration, Instant};

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
        "{:<18} {:>3} {:>10} {:>10} {:>10} {:>14}",
        "address", "bin", "median ms", "p90 ms", "mean ms", "handshake ms"
    );
    for addr in [kms.addr.clone(), format!("localhost:{port}")] {
        for bin in [&a, &b] {
            boot(&d, bin, &addr); // warm-up
        }
        let mut samples: [Vec<(Duration, f64)>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (i, bin) in [&a, &b].into_iter().enumerate() {
                samples[i].push(boot(&d, bin, &addr));
            }
        }
        for (name, s) in ["A", "B"].iter().zip(&mut samples) {
            let mut wall: Vec<f64> = s.iter().map(|(w, _)| w.as_secs_f64() * 1e3).collect();
            let mut hs: Vec<f64> = s.iter().map(|(_, h)| *h).collect();
            wall.sort_by(f64::total_cmp);
            hs.sort_by(f64::total_cmp);
            let mean = wall.iter().sum::<f64>() / wall.len() as f64;
            println!(
                "{addr:<18} {name:>3} {:>10.2} {:>10.2} {mean:>10.2} {:>14.2}",
                pct(&wall, 50),
                pct(&wall, 90),
                pct(&hs, 50)
            );
        }
    }
}

/// One boot with `bin` against `addr`: wall time, and init's `handshake` step in ms.
fn boot(d: &Deployment, bin: &PathBuf, addr: &str) -> (Duration, f64) {
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
    (took, step_ms(&stderr, "handshake"))
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
