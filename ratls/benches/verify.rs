//! Verification cost: dcap-qvl's own `verify()` against our pipeline on the same real quote and
//! collateral, in the same run, with the platform cache cold (a new verifier each round) and
//! warm; RA-TLS certificate verification from a new and from a known platform; and a cached
//! re-verification of the same certificate. Run: `cargo bench -p ratls --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcap_qvl::QuoteCollateralV3;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::{TrustAnchor, Verifier};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

const QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
const COLLATERAL: &str = include_str!("../testdata/dcap-sample/sgx_quote_collateral.json");
const NOW: u64 = 1_750_400_000;

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let collateral: QuoteCollateralV3 = serde_json::from_str(COLLATERAL).unwrap();
    let qvl = dcap_qvl::verify::QuoteVerifier::new_prod();
    let policy = RaPolicy::from_json(
        br#"{"verify_mr_enclave":"off","verify_mr_signer":"off","verify_isv_prod_id":"off",
             "verify_isv_svn":"off","verify_config_svn":"off","verify_enclave_debuggable":"off",
             "sgx_mrs":[{"mr_enclave":"","mr_signer":"","isv_prod_id":0,"isv_svn":0,"config_svn":0,"debuggable":false}],
             "tcb_statuses":["ConfigurationAndSWHardeningNeeded"]}"#,
        "bench",
    )
    .unwrap();
    let source = Arc::new(StaticCollateral::new(collateral.clone(), "sample"));
    let verifier = || Verifier::new(TrustAnchor::intel(), source.clone(), policy.clone());
    let warm = verifier();
    warm.verify_quote(QUOTE, NOW).unwrap();

    // Interleave them so machine load affects all alike.
    let mut baseline = Vec::with_capacity(rounds);
    let mut pipeline = Vec::with_capacity(rounds);
    let mut known_platform = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        baseline.push(time(|| {
            black_box(qvl.verify(QUOTE, &collateral, NOW).unwrap())
        }));
        let cold = verifier();
        pipeline.push(time(|| black_box(cold.verify_quote(QUOTE, NOW).unwrap())));
        known_platform.push(time(|| black_box(warm.verify_quote(QUOTE, NOW).unwrap())));
    }

    // RA-TLS certificates from a simulated platform: full verification of fresh certificates,
    // then re-verification of one certificate while its result is cached.
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let platform = SimPlatform::create(dir.path(), &PlatformOptions::new(now)).unwrap();
    let source = SimQuoteSource::new(
        SimPlatform::open(dir.path()).unwrap(),
        Identity::random(Some(7)).unwrap(),
    );
    let sim_verifier = || {
        Verifier::new(
        ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "bench".into()),
        Arc::new(StaticCollateral::new(platform.collateral(), "sim")),
        RaPolicy::from_json(
            br#"{"verify_mr_enclave":"off","verify_mr_signer":"off","verify_isv_prod_id":"off",
                 "verify_isv_svn":"off","verify_config_svn":"off","verify_enclave_debuggable":"off",
                 "sgx_mrs":[{"mr_enclave":"","mr_signer":"","isv_prod_id":0,"isv_svn":0,"config_svn":0,"debuggable":false}]}"#,
            "bench",
        )
        .unwrap(),
    )
    };
    let certs: Vec<RaTlsIdentity> = (0..rounds.min(300))
        .map(|_| RaTlsIdentity::mint(&source).unwrap())
        .collect();
    let full: Vec<Duration> = certs
        .iter()
        .map(|c| {
            let cold = sim_verifier();
            time(|| black_box(cold.verify_certificate(c.cert_der(), now).unwrap()))
        })
        .collect();
    let sim = sim_verifier();
    sim.verify_certificate(RaTlsIdentity::mint(&source).unwrap().cert_der(), now)
        .unwrap();
    let fresh_known: Vec<Duration> = certs
        .iter()
        .map(|c| time(|| black_box(sim.verify_certificate(c.cert_der(), now).unwrap())))
        .collect();
    let one = certs[0].cert_der();
    let cached: Vec<Duration> = (0..rounds)
        .map(|_| time(|| black_box(sim.verify_certificate(one, now).unwrap())))
        .collect();
    let mint: Vec<Duration> = (0..50)
        .map(|_| time(|| black_box(RaTlsIdentity::mint(&source).unwrap())))
        .collect();

    println!("verification cost ({rounds} rounds; median / p99)");
    report("dcap-qvl verify() on the Intel sample", baseline.clone());
    let ratio = median(&pipeline).as_secs_f64() / median(&baseline).as_secs_f64();
    report("ratls verify_quote, new platform", pipeline);
    println!("  pipeline / dcap-qvl median ratio: {ratio:.3}");
    report(
        "ratls verify_quote, platform verified before",
        known_platform,
    );
    report("verify_certificate, new cert, new platform", full);
    report("verify_certificate, new cert, known platform", fresh_known);
    report("verify_certificate, same cert (cached)", cached);
    report("RaTlsIdentity::mint (sim quote + P-256)", mint);
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    drop(out);
    elapsed
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    println!(
        "  {what:<44} {:>10.1} µs  {:>10.1} µs",
        median(&samples).as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}
