//! Times `SimPlatform::quote` (and, for scale, dcap-qvl verifying the result) with plain
//! `std::time`: `cargo bench -p sgx-sim --bench quote`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use sgx_sim::{Identity, PlatformOptions, SimPlatform};

fn main() {
    let dir = std::env::temp_dir().join(format!("sgx-sim-bench-{}", std::process::id()));
    let now = sgx_sim::timefmt::unix_now();
    let platform = SimPlatform::create(&dir, &PlatformOptions::new(now)).expect("create platform");
    let identity = Identity::random(Some(1)).expect("identity");
    let report_data = [7u8; 64];

    let per_quote = time("SimPlatform::quote", 2000, || {
        black_box(
            platform
                .quote(black_box(&identity), black_box(&report_data))
                .expect("quote"),
        );
    });

    let quote = platform.quote(&identity, &report_data).expect("quote");
    let collateral = platform.collateral();
    let verifier = dcap_qvl::verify::QuoteVerifier::new(platform.root_ca_der().to_vec());
    let per_verify = time("dcap-qvl verify (for comparison)", 300, || {
        black_box(
            verifier
                .verify(black_box(&quote), &collateral, now)
                .expect("verifies"),
        );
    });

    let per_create = time("SimPlatform::create", 5, || {
        let d = dir.join(format!("c{}", Instant::now().elapsed().as_nanos()));
        black_box(SimPlatform::create(&d, &PlatformOptions::new(now)).expect("create"));
        std::fs::remove_dir_all(&d).ok();
    });
    println!(
        "quote {:.1} us, verify {:.1} us, create {:.1} ms",
        per_quote.as_secs_f64() * 1e6,
        per_verify.as_secs_f64() * 1e6,
        per_create.as_secs_f64() * 1e3
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `f` `iterations` times after a short warm-up; prints and returns the mean.
fn time(name: &str, iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations.min(20) {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let mean = start.elapsed() / iterations;
    println!("{name}: {iterations} iterations, mean {mean:?}");
    mean
}
