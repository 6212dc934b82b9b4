//! Stapled collateral end to end: certificates minted with (or without) the KMS's collateral in
//! the staple extension, verified by ratls's [`Stapled`] source whose fallback is this crate's
//! PCCS client against the simulated PCCS on loopback, which counts connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pccs_client::PccsClient;
use ratls::cert::{DEFAULT_VALIDITY, RaTlsIdentity};
use ratls::collateral::staple::{self, MAX_STAPLE_LEN, OID_STAPLED_COLLATERAL, Stapled};
use ratls::collateral::{CollateralSource, StaticCollateral};
use ratls::policy::RaPolicy;
use ratls::verify::Verifier;
use sgx_sim::pccs::Pccs;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

struct World {
    _dir: tempfile::TempDir,
    platform: SimPlatform,
    source: SimQuoteSource,
    policy: RaPolicy,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let platform =
        SimPlatform::create(&dir.path().join("platform"), &PlatformOptions::new(now())).unwrap();
    let id = Identity::random(Some(7)).unwrap();
    let policy = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"name": "kms", "mr_enclave": "{}", "mr_signer": "{}", "isv_prod_id": 0,
                         "isv_svn": 0, "config_svn": 0, "debuggable": false}}]}}"#,
        hex::encode(id.mr_enclave),
        hex::encode(id.mr_signer)
    );
    World {
        source: SimQuoteSource::new(SimPlatform::open(platform.dir()).unwrap(), id),
        platform,
        policy: RaPolicy::from_json(policy.as_bytes(), "test").unwrap(),
        _dir: dir,
    }
}

/// The simulated PCCS on loopback, counting the connections it served.
struct LoopPccs {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopPccs {
    fn start(platform: &SimPlatform) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pccs = Arc::new(Pccs::for_platform(platform));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log_lines, stop_flag) = (Arc::clone(&lines), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let log = Arc::new(move |line: &str| log_lines.lock().unwrap().push(line.to_owned()));
            pccs.serve(listener, &stop_flag, log).unwrap();
        });
        Self {
            url,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections closed so far, and requests served, once the server has logged them.
    fn counts(&self) -> (usize, usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            let closed = lines
                .iter()
                .filter(|l| l.contains("connection closed"))
                .count();
            let requests = lines.iter().filter(|l| l.contains("\"GET ")).count();
            if closed > 0 || requests == 0 || std::time::Instant::now() > deadline {
                return (closed, requests);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LoopPccs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn anchor(w: &World) -> ratls::verify::TrustAnchor {
    ratls::danger::simulated_root(w.platform.root_ca_der().to_vec(), "test platform".into())
}

/// A verifier as init builds it: staples first, then the PCCS at `pccs_url`.
fn init_verifier(w: &World, pccs_url: &str) -> (Verifier, Arc<Stapled>) {
    let pccs =
        PccsClient::with_timeouts(pccs_url, Duration::from_millis(500), Duration::from_secs(5))
            .with_trust_anchor(anchor(w));
    let stapled = Arc::new(Stapled::new(Arc::new(pccs)));
    let source = Arc::clone(&stapled) as Arc<dyn CollateralSource>;
    (Verifier::new(anchor(w), source, w.policy.clone()), stapled)
}

fn mint_with(w: &World, staple: Option<Vec<u8>>) -> RaTlsIdentity {
    RaTlsIdentity::mint_stapled(&w.source, SystemTime::now(), DEFAULT_VALIDITY, |_| staple).unwrap()
}

fn good_staple(w: &World) -> Vec<u8> {
    staple::encode(&w.platform.collateral()).unwrap()
}

/// A port nothing listens on.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[test]
fn a_fresh_staple_is_used_and_the_pccs_is_never_asked() {
    let w = world();
    let cert = mint_with(&w, Some(good_staple(&w)));
    let (verifier, stapled) = init_verifier(&w, &dead_url());
    let peer = verifier.verify_certificate(cert.cert_der(), now()).unwrap();
    assert_eq!(peer.tcb_status(), "UpToDate");
    let outcome = stapled.last_outcome().unwrap();
    assert!(outcome.contains("stapled by the peer"), "{outcome}");
}

#[test]
fn without_a_staple_the_pccs_serves_the_collateral_over_one_connection() {
    let w = world();
    let pccs = LoopPccs::start(&w.platform);
    let cert = mint_with(&w, None);
    let (verifier, stapled) = init_verifier(&w, &pccs.url);
    verifier.verify_certificate(cert.cert_der(), now()).unwrap();
    assert!(
        stapled
            .last_outcome()
            .unwrap()
            .starts_with("no stapled collateral"),
        "{:?}",
        stapled.last_outcome()
    );
    drop(verifier);
    assert_eq!(pccs.counts(), (1, 4), "{:?}", pccs.lines.lock().unwrap());
}

#[test]
fn a_stale_staple_is_not_used_and_the_pccs_is_asked() {
    let w = world();
    let pccs = LoopPccs::start(&w.platform);
    // nextUpdate moved into the past. (This also breaks the TCB info signature; the test shows
    // that staleness alone sends init to the PCCS before any signature is looked at.)
    let mut collateral = w.platform.collateral();
    let mut tcb: serde_json::Value = serde_json::from_str(&collateral.tcb_info).unwrap();
    tcb["nextUpdate"] = "2020-01-01T00:00:00Z".into();
    collateral.tcb_info = tcb.to_string();
    let cert = mint_with(&w, Some(staple::encode(&collateral).unwrap()));
    let (verifier, stapled) = init_verifier(&w, &pccs.url);
    verifier.verify_certificate(cert.cert_der(), now()).unwrap();
    let outcome = stapled.last_outcome().unwrap();
    assert!(outcome.contains("stapled collateral is stale"), "{outcome}");
    drop(verifier);
    assert_eq!(pccs.counts(), (1, 4));
}

#[test]
fn a_tampered_staple_is_rejected_by_the_dcap_signature_check() {
    let w = world();
    let mut collateral = w.platform.collateral();
    collateral.tcb_info_signature[10] ^= 0x01;
    let cert = mint_with(&w, Some(staple::encode(&collateral).unwrap()));
    let (verifier, stapled) = init_verifier(&w, &dead_url());
    let err = verifier
        .verify_certificate(cert.cert_der(), now())
        .unwrap_err();
    assert_eq!(err.check(), "dcap-signature", "{err}");
    assert!(
        stapled
            .last_outcome()
            .unwrap()
            .contains("stapled by the peer")
    );
}

#[test]
fn an_oversized_staple_is_refused_and_the_pccs_is_asked() {
    let w = world();
    let pccs = LoopPccs::start(&w.platform);
    let mut big = good_staple(&w);
    big.resize(MAX_STAPLE_LEN + 1, 0);
    let cert = mint_with(&w, Some(big));
    let (verifier, stapled) = init_verifier(&w, &pccs.url);
    verifier.verify_certificate(cert.cert_der(), now()).unwrap();
    let outcome = stapled.last_outcome().unwrap();
    assert!(
        outcome.contains(&format!("at most {MAX_STAPLE_LEN}")),
        "{outcome}"
    );
    drop(verifier);
    assert_eq!(pccs.counts(), (1, 4));
}

#[test]
fn a_malformed_staple_with_the_pccs_down_fails_on_the_pccs_not_the_staple() {
    let w = world();
    let cert = mint_with(&w, Some(b"OCST\x01garbage".to_vec()));
    let url = dead_url();
    let (verifier, stapled) = init_verifier(&w, &url);
    let err = verifier
        .verify_certificate(cert.cert_der(), now())
        .unwrap_err();
    assert_eq!(err.check(), "collateral", "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        stapled
            .last_outcome()
            .unwrap()
            .contains("stapled collateral not used")
    );
}

#[test]
fn a_verifier_that_knows_no_staples_accepts_a_stapled_certificate() {
    let w = world();
    let cert = mint_with(&w, Some(good_staple(&w)));
    // The extension is there, and non-critical, so peers that do not know it may ignore it.
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert_der()).unwrap();
    let ext = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == OID_STAPLED_COLLATERAL)
        .expect("staple extension");
    assert!(!ext.critical);
    // An "old peer": a plain collateral source, no staple support.
    let plain = Arc::new(StaticCollateral::new(w.platform.collateral(), "sim"));
    let verifier = Verifier::new(anchor(&w), plain, w.policy.clone());
    verifier.verify_certificate(cert.cert_der(), now()).unwrap();
}

/// Occlum's C++ client copies a peer's certificate PEM into `char der_crt[16000]` with no
/// bounds check (`TlsAuthorizationCheck::Schedule`); the KMS's stapled certificate must stay
/// well under that. Two staples: the simulated platform's (what the KMS staples here) and one
/// with Intel's real collateral sizes (dcap-qvl's sample: a 4.5 KB TCB info, 1.2 KB QE identity).
#[test]
fn a_stapled_certificate_pem_stays_under_15000_bytes() {
    let w = world();
    let intel: dcap_qvl::QuoteCollateralV3 = serde_json::from_str(include_str!(
        "../../ratls/testdata/dcap-sample/sgx_quote_collateral.json"
    ))
    .unwrap();
    for (what, staple) in [
        ("simulated", good_staple(&w)),
        ("intel-sized", staple::encode(&intel).unwrap()),
    ] {
        let staple_len = staple.len();
        let pem = mint_with(&w, Some(staple)).cert_pem();
        eprintln!(
            "{what}: staple {staple_len} bytes, certificate PEM {} bytes",
            pem.len()
        );
        assert!(pem.len() < 15_000, "{what}: {} bytes of PEM", pem.len());
    }
}
