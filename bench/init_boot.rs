//! Boot-time benchmark of `init` (host mode, 3 secrets + image_key, KMS on loopback), in the
//! demo's configuration (a PCCS; the KMS staples its collateral, or not), and of the reference
//! protocol's cost model, measured on the same KMS. Counts init's outbound connections per boot
//! (strace) and the PCCS's share of them.
//!
//! Ours: one process per boot, timed from spawn to exit, plus init's own per-step log lines
//! (the `[t ms]` of the last `write` line is "init start to last secret written").
//!
//! Reference (Occlum's `init_grpc_ratls` + C++ `grpc_ratls_get_secret_to_buf`): for EVERY
//! secret a new channel, a fresh RSA-2048 key, a fresh quote over it, a new RA-TLS certificate,
//! a full TLS handshake (the KMS verifies the new certificate, we verify the KMS's quote with a
//! fresh verifier: no cache survives a C++ channel), one GetSecret. Reproduced with our own
//! code (the `rsa` crate for the key, the simulated platform for quotes, grpc-unary for the
//! channel); it omits process start, config parsing, the image and file writes, so the ratio
//! it yields is conservative.
//!
//! Run: `bench/init_boot.sh` (or `cargo bench -p e2e-tests --bench init_boot`).
//! Env: `BENCH_RUNS` (default 25).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{Deployment, KmsOptions, SimPccs, init_bin};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256,
    PublicKeyData as _,
};
use rsa::pkcs8::EncodePrivateKey as _;
use sha2::Digest as _;

const SECRETS: &[(&str, &str, &[u8])] = &[
    ("flask_cert", "/etc/flask.crt", &[b'c'; 1200]),
    ("flask_key", "/etc/flask.key", &[b'k'; 1700]),
    ("api_token", "/etc/app/token", &[b't'; 64]),
];

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .max(20);
    let d = Deployment::new(SECRETS);
    let init = init_bin();
    println!(
        "init binary: {} ({} bytes)",
        init.display(),
        std::fs::metadata(&init).unwrap().len()
    );
    // The demo's configuration (run.sh): a PCCS, the KMS fetching its collateral from it, init
    // pointed at it. Stapled: the KMS carries its collateral in its certificate (the default).
    // Fallback: the KMS staples nothing, so init asks the PCCS (one kept-alive connection).
    let pccs = SimPccs::start(&d.sim, "127.0.0.1:0");
    let stapled = d.start_kms_with_pccs("127.0.0.1:0", &pccs.url);
    let unstapled = KmsOptions {
        audit_log: d.path("kms/audit-unstapled.log"),
        ..d.kms_options("127.0.0.1:0")
    }
    .start_with_collateral(&[
        "--pccs-url".as_ref(),
        pccs.url.as_ref(),
        "--staple-collateral".as_ref(),
        "off".as_ref(),
    ]);
    println!(
        "PCCS {} (simulated platform), KMS {} (stapling) and {} (not stapling), {} secrets + image_key, {runs} runs each\n",
        pccs.url,
        stapled.addr,
        unstapled.addr,
        SECRETS.len()
    );
    let pccs_args = ["--pccs-url", pccs.url.as_str()];
    let ours = measure(&d, &stapled.addr, &pccs_args, runs);
    let (conns, pccs_conns) = count_connections(&d, &stapled.addr, &pccs_args, &pccs);
    let fallback = measure(&d, &unstapled.addr, &pccs_args, runs);
    let (fb_conns, fb_pccs_conns) = count_connections(&d, &unstapled.addr, &pccs_args, &pccs);
    // The previous benchmark's configuration: offline collateral file in init, no PCCS.
    let offline = measure(&d, &stapled.addr, &[], runs);

    // Reference cost model: 1 + N connections, each with its own RSA key, quote and handshake.
    let platform = Arc::new(sgx_sim::SimPlatform::open(&d.sim.dir).unwrap());
    let identity = sgx_sim::Identity::load(&d.app_identity).unwrap();
    let anchor_der = platform.root_ca_der().to_vec();
    let collateral_path = d.sim.collateral();
    let collateral = ratls::collateral::StaticCollateral::from_json(
        &std::fs::read(&collateral_path).unwrap(),
        &collateral_path,
    )
    .unwrap();
    let collateral: Arc<dyn ratls::collateral::CollateralSource> = Arc::new(collateral);
    let policy = ratls::policy::RaPolicy::from_value(&d.kms_id.policy(), "bench").unwrap();
    let names: Vec<&str> = std::iter::once("image_key")
        .chain(SECRETS.iter().map(|s| s.0))
        .collect();
    let mut reference = Vec::new();
    let mut ref_parts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in 0..runs + 1 {
        let started = Instant::now();
        let mut parts: BTreeMap<&str, f64> = BTreeMap::new();
        for name in &names {
            let t = Instant::now();
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            *parts.entry("rsa-2048 keygen").or_default() += ms(t.elapsed());

            let t = Instant::now();
            let der = key.to_pkcs8_der().unwrap();
            let key_pair =
                KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
                    .unwrap();
            let mut report_data = [0u8; 64];
            report_data[..32]
                .copy_from_slice(&sha2::Sha256::digest(key_pair.subject_public_key_info()));
            let quote = platform.quote(&identity, &report_data).unwrap();
            let cert = ra_tls_cert(&key_pair, quote);
            let ra_identity =
                ratls::cert::RaTlsIdentity::from_pem(&cert.pem(), &key_pair.serialize_pem())
                    .unwrap();
            *parts.entry("quote + certificate").or_default() += ms(t.elapsed());

            let t = Instant::now();
            let anchor = ratls::danger::simulated_root(anchor_der.clone(), "bench".into());
            let verifier = Arc::new(ratls::verify::Verifier::new(
                anchor,
                Arc::clone(&collateral),
                policy.clone(),
            ));
            let tls = Arc::new(ratls::tls::client_config(verifier, &ra_identity).unwrap());
            let server_name = rustls_pki_types::ServerName::try_from("kms").unwrap();
            let mut channel = grpc_unary::Channel::connect(
                &unstapled.addr,
                server_name,
                tls,
                &grpc_unary::ClientConfig::default(),
            )
            .unwrap();
            let reply = channel
                .unary(
                    grsecret::GET_SECRET,
                    &grsecret::client::encode_string_field1(name),
                )
                .unwrap();
            assert!(!reply.is_empty());
            let _ = channel.close();
            *parts.entry("connect + handshake + GetSecret").or_default() += ms(t.elapsed());
        }
        if run == 0 {
            continue; // warm-up
        }
        reference.push(ms(started.elapsed()));
        for (k, v) in parts {
            ref_parts.entry(k).or_default().push(v);
        }
    }

    let attest_and_fetch = ours.attest_and_fetch();
    ours.print(&format!(
        "== init (ours), demo configuration, KMS staples its collateral: one quote, one handshake, {} GetSecret at once on one connection",
        names.len()
    ));
    println!(
        "  outbound TCP connections per boot (strace connect): {conns}; of them to the PCCS: {pccs_conns}"
    );
    fallback.print(
        "\n== init (ours), demo configuration, KMS staples nothing: collateral from the PCCS",
    );
    println!(
        "  outbound TCP connections per boot (strace connect): {fb_conns}; of them to the PCCS: {fb_pccs_conns}"
    );
    offline.print("\n== init (ours), offline collateral file in init (the previous benchmark's configuration)");
    println!(
        "\n== reference cost model: {} connections, each RSA-2048 + quote + handshake",
        names.len()
    );
    row("total", &reference);
    for (name, values) in &ref_parts {
        row(&format!("  {name}"), values);
    }
    let ratio_protocol = median(&reference) / median(&attest_and_fetch);
    let to_last_write = &ours.to_last_write;
    let ratio_boot = median(&reference) / median(to_last_write);
    let without_keygen: Vec<f64> = reference
        .iter()
        .zip(&ref_parts["rsa-2048 keygen"])
        .map(|(total, keygen)| total - keygen)
        .collect();
    let ratio_floor = median(&without_keygen) / median(&attest_and_fetch);
    println!(
        "\nratio reference / ours, same protocol work (quote + handshake + secrets): {ratio_protocol:.1}x"
    );
    println!(
        "ratio reference / ours, reference protocol vs our WHOLE boot (incl. unpack, writes): {ratio_boot:.1}x"
    );
    println!(
        "ratio reference / ours without RSA keygen (its random, dominant cost; a floor): {ratio_floor:.1}x"
    );
    println!(
        "goal: median boot < 10 ms with one outbound connection (demo configuration, stapled): {} ({:.2} ms, {conns} connection(s))",
        if median(to_last_write) < 10.0 && conns == 1 {
            "met"
        } else {
            "NOT met"
        },
        median(to_last_write)
    );
    println!(
        "init binary size: {} bytes",
        std::fs::metadata(&init).unwrap().len()
    );
}

/// Boot times of one configuration.
struct Measured {
    wall: Vec<f64>,
    to_last_write: Vec<f64>,
    phases: BTreeMap<String, Vec<f64>>,
}

impl Measured {
    fn attest_and_fetch(&self) -> Vec<f64> {
        (0..self.wall.len())
            .map(|i| {
                ["quote", "handshake", "secrets"]
                    .iter()
                    .map(|p| self.phases.get(*p).map_or(0.0, |v| v[i]))
                    .sum()
            })
            .collect()
    }

    fn print(&self, title: &str) {
        println!("{title}");
        row(
            "boot, init start -> last secret written",
            &self.to_last_write,
        );
        row("process wall time (spawn -> exit)", &self.wall);
        for (name, values) in &self.phases {
            row(&format!("  phase {name}"), values);
        }
        row("  quote + handshake + secrets", &self.attest_and_fetch());
    }
}

/// `runs` boots (after 2 warm-ups) against `kms_addr` with init's `extra` flags.
fn measure(d: &Deployment, kms_addr: &str, extra: &[&str], runs: usize) -> Measured {
    for _ in 0..2 {
        d.run_init(kms_addr, extra, &[]).expect_code(0);
    }
    let mut m = Measured {
        wall: Vec::new(),
        to_last_write: Vec::new(),
        phases: BTreeMap::new(),
    };
    for _ in 0..runs {
        let out = d.run_init(kms_addr, extra, &[]);
        out.expect_code(0);
        m.wall.push(ms(out.took));
        let steps = parse_steps(&out.stderr);
        let last_write = steps
            .iter()
            .filter(|s| s.name == "write")
            .map(|s| s.at_ms)
            .fold(0.0, f64::max);
        m.to_last_write.push(last_write);
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for s in &steps {
            *sums.entry(s.name.clone()).or_default() += s.took_ms;
        }
        for (name, total) in sums {
            m.phases.entry(name).or_default().push(total);
        }
    }
    m
}

/// One more boot, under `strace -f -e trace=connect`: the TCP connections init opened
/// (AF_INET/AF_INET6 connect calls), and how many of them went to the PCCS's port.
fn count_connections(
    d: &Deployment,
    kms_addr: &str,
    extra: &[&str],
    pccs: &SimPccs,
) -> (usize, usize) {
    let cmd = d.init_command(kms_addr, extra, &[]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let trace = d.path("connect.trace");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(&program)
        .args(&args)
        .env_remove("OCCLUM_INIT_RA_KMS_SERVER")
        .env_remove("OCCLUM_INIT_RA_PCCS_URL")
        .output()
        .expect("strace (apt-get install strace) counts init's connections");
    assert!(
        out.status.success(),
        "init under strace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let inet: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("connect(") && l.contains("AF_INET"))
        .collect();
    let port = pccs.url.rsplit(':').next().unwrap();
    let to_pccs = inet
        .iter()
        .filter(|l| l.contains(&format!("htons({port})")))
        .count();
    (inet.len(), to_pccs)
}

/// A self-signed certificate in Occlum's RA-TLS form over `key`, carrying `quote`.
fn ra_tls_cert(key: &KeyPair, quote: Vec<u8>) -> rcgen::Certificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Occlum RA-TLS reference");
    params.distinguished_name = dn;
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 2, 840, 113741, 1],
        quote,
    )];
    params.self_signed(key).unwrap()
}

struct Step {
    name: String,
    took_ms: f64,
    at_ms: f64,
}

/// Parses `init: [   12.345 ms] <step> <took> ms: ...` lines.
fn parse_steps(stderr: &str) -> Vec<Step> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("init: [")?;
            let (at, rest) = rest.split_once(" ms] ")?;
            let mut words = rest.split(' ');
            let name = words.next()?;
            let took = words.next()?.parse().ok()?;
            let at = at.trim().parse().ok()?;
            (words.next()? == "ms:").then(|| Step {
                name: name.to_owned(),
                took_ms: took,
                at_ms: at,
            })
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50)
}

fn percentile(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) * p / 100]
}

fn row(label: &str, values: &[f64]) {
    println!(
        "{label:<58} median {:>8.2} ms   min {:>8.2}   p90 {:>8.2}",
        median(values),
        percentile(values, 0),
        percentile(values, 90)
    );
}
