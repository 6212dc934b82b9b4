//! Collateral fetching cannot be driven by unauthenticated peers. With a PCCS that answers only
//! after 10 s and a flood of RA-TLS certificates from platforms the KMS does not trust (their
//! quotes name FMSPCs it has never seen), a legitimate client still gets its secrets within a
//! second, and the flood causes no PCCS request at all: a quote's PCK chain is verified against
//! the trust anchor before anything is fetched for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sgx_sim::Identity;

/// How long the PCCS takes to answer once it turns slow.
const SLOW_PCCS: Duration = Duration::from_secs(10);
/// The bound for a legitimate client's whole connection and call: generous for a loaded
/// machine, and half of what being stalled behind the slow PCCS costs. Latency under a
/// flood is measured by `kms/benches/kms_flood.rs`, not here.
const LEGIT_BOUND: Duration = Duration::from_secs(5);

/// Requests a test PCCS has in progress now, and the most it ever had at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// A PCCS for `platform` that answers after SLOW_PCCS once `slow` is set; counts requests
/// (and how many it serves at once, in the returned [`InFlight`]).
fn start_pccs(
    platform: &sgx_sim::SimPlatform,
    slow: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
) -> (String, Arc<InFlight>) {
    let in_flight = Arc::new(InFlight::default());
    let counted = Arc::clone(&in_flight);
    let pccs = sgx_sim::pccs::Pccs::for_platform(platform);
    let url = test_kit::http::serve(move |method, target| {
        requests.fetch_add(1, Ordering::SeqCst);
        let now = counted.now.fetch_add(1, Ordering::SeqCst) + 1;
        counted.max.fetch_max(now, Ordering::SeqCst);
        if slow.load(Ordering::SeqCst) {
            std::thread::sleep(SLOW_PCCS);
        }
        counted.now.fetch_sub(1, Ordering::SeqCst);
        let r = pccs.respond(method, target);
        test_kit::http::Reply::new(r.status, r.headers, r.body)
    });
    (url, in_flight)
}

/// Waits (at most 20 s) until the flood has had `n` calls answered.
fn wait_for(answered: &AtomicUsize, n: usize) {
    let started = Instant::now();
    while answered.load(Ordering::SeqCst) < n && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three legitimate clients, each with a new certificate, fetch a secret; their times.
fn time_legitimate_clients(kms: &Kms, sim: &Sim, app: &Identity) -> Vec<Duration> {
    (0..3)
        .map(|_| {
            let cert = sim.client(app);
            let t = Instant::now();
            let client = GrpcClient::connect(kms, Some(&cert));
            assert_eq!(client.get_decoded("image_key").unwrap(), secrets()[2].1);
            t.elapsed()
        })
        .collect()
}

#[test]
fn a_slow_pccs_and_a_flood_of_unknown_platforms_do_not_stall_a_legitimate_client() {
    let dir = temp_dir("dos");
    let sim = Sim::good(&dir);
    let slow = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (url, _) = start_pccs(&sim.platform, Arc::clone(&slow), Arc::clone(&requests));
    let app = app_identity();
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool_identity()),
        secrets: secrets_json(&secrets()),
        extra: vec!["--pccs-url".into(), url],
    });
    // The legitimate platform's collateral is fetched once, while the PCCS is fast.
    let first = GrpcClient::connect(&kms, Some(&sim.client(&app)));
    assert_eq!(first.get_decoded("flask_key").unwrap(), secrets()[1].1);
    let warm = requests.load(Ordering::SeqCst);
    assert!(warm >= 4, "{warm} PCCS requests");

    slow.store(true, Ordering::SeqCst);
    // Certificates from eight other platforms (other roots, other FMSPCs), as many as the
    // flood threads can send.
    let bogus: Vec<ClientCert> = (0..8)
        .map(|i| Sim::new(&dir, &format!("bogus-{i}"), |_| {}).client(&app))
        .collect();
    let bogus = Arc::new(bogus);
    let stop = Arc::new(AtomicBool::new(false));
    let refusals = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..4)
        .map(|t| {
            let (bogus, stop, refusals) =
                (Arc::clone(&bogus), Arc::clone(&stop), Arc::clone(&refusals));
            let kms = Kms::view(&kms);
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let cert = &bogus[i % bogus.len()];
                    let result = GrpcClient::connect(&kms, Some(cert)).get("flask_key");
                    let (code, message) = result.expect_err("a bogus platform is refused");
                    assert_eq!(code, grpcio::RpcStatusCode::UNAUTHENTICATED, "{message}");
                    assert!(message.contains("PCK certificate chain"), "{message}");
                    refusals.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    // Let the flood get going, then time legitimate clients (new certificate each time).
    wait_for(&refusals, 8);
    let took = time_legitimate_clients(&kms, &sim, &app);
    stop.store(true, Ordering::SeqCst);
    for t in flood {
        t.join().unwrap();
    }
    assert!(
        refusals.load(Ordering::SeqCst) >= 8,
        "the flood ran: {refusals:?}"
    );
    eprintln!(
        "legitimate clients took {took:?} while {} flood calls were refused",
        refusals.load(Ordering::SeqCst)
    );
    for t in &took {
        assert!(
            *t < LEGIT_BOUND,
            "a legitimate client took {t:?} (all: {took:?})"
        );
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        warm,
        "the flood made PCCS requests"
    );
}

#[test]
fn a_client_whose_collateral_is_still_being_fetched_is_told_to_retry_not_refused() {
    let dir = temp_dir("pending");
    let sim = Sim::good(&dir);
    // Slow from the start: the first quote from this platform finds no collateral in time.
    let slow = Arc::new(AtomicBool::new(true));
    let requests = Arc::new(AtomicUsize::new(0));
    let (url, _) = start_pccs(&sim.platform, Arc::clone(&slow), Arc::clone(&requests));
    let app = app_identity();
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool_identity()),
        secrets: secrets_json(&secrets()),
        extra: vec!["--pccs-url".into(), url],
    });
    let t = Instant::now();
    let (code, message) = GrpcClient::connect(&kms, Some(&sim.client(&app)))
        .get("flask_key")
        .expect_err("no collateral yet");
    // The KMS's 250 ms fetch wait plus a wide margin, half the slow PCCS's 10 s.
    assert!(t.elapsed() < SLOW_PCCS / 2, "took {:?}", t.elapsed());
    // UNAVAILABLE, which init retries; UNAUTHENTICATED would end its boot.
    assert_eq!(code, grpcio::RpcStatusCode::UNAVAILABLE, "{message}");
    assert!(message.contains("collateral"), "{message}");
    assert!(requests.load(Ordering::SeqCst) >= 1, "a fetch was started");
}

/// FMSPCs of other platform models under the KMS's own (simulated) root: genuine chains, as an
/// attacker who owns SGX machines of other models could present, each needing a fetch.
const OTHER_MODELS: u8 = 8;

#[test]
fn genuine_platforms_of_unknown_models_cannot_exceed_the_fetch_cap_or_stall_a_legitimate_client() {
    let dir = temp_dir("models");
    let base = sgx_sim::PlatformOptions::default();
    let same_root = |o: &mut sgx_sim::PlatformOptions| {
        o.seed = Some(0x5eed);
        o.not_before = base.not_before;
        o.not_after = base.not_after;
    };
    let sim = Sim::new(&dir, "platform", same_root);
    let slow = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (url, in_flight) = start_pccs(&sim.platform, Arc::clone(&slow), Arc::clone(&requests));
    let app = app_identity();
    let kms = start_kms(KmsSetup {
        dir: &dir,
        sim: &sim,
        policy: policy_json(&app, &tool_identity()),
        secrets: secrets_json(&secrets()),
        extra: vec!["--pccs-url".into(), url],
    });
    let first = GrpcClient::connect(&kms, Some(&sim.client(&app)));
    assert_eq!(first.get_decoded("flask_key").unwrap(), secrets()[1].1);

    slow.store(true, Ordering::SeqCst);
    in_flight
        .max
        .store(in_flight.now.load(Ordering::SeqCst), Ordering::SeqCst);
    let models: Vec<ClientCert> = (0..OTHER_MODELS)
        .map(|i| {
            let model = Sim::new(&dir, &format!("model-{i}"), |o| {
                same_root(o);
                o.fmspc = [0x00, 0x53, 0x49, 0x4d, 0x10, i];
            });
            model.client(&app)
        })
        .collect();
    let models = Arc::new(models);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    // One flood thread per model, so without a cap every model's fetch would be in flight.
    let flood: Vec<_> = (0..usize::from(OTHER_MODELS))
        .map(|t| {
            let (models, stop, answered) = (
                Arc::clone(&models),
                Arc::clone(&stop),
                Arc::clone(&answered),
            );
            let kms = Kms::view(&kms);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let result = GrpcClient::connect(&kms, Some(&models[t])).get("flask_key");
                    let (code, message) = result.expect_err("no collateral for this model");
                    // Fetch pending, cap reached or in backoff: retry later, nothing judged.
                    assert_eq!(code, grpcio::RpcStatusCode::UNAVAILABLE, "{message}");
                    assert!(message.contains("collateral"), "{message}");
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_for(&answered, 16);
    let took = time_legitimate_clients(&kms, &sim, &app);
    stop.store(true, Ordering::SeqCst);
    for t in flood {
        t.join().unwrap();
    }
    let max = in_flight.max.load(Ordering::SeqCst);
    eprintln!(
        "legitimate clients took {took:?}; {} flood calls answered; at most {max} PCCS requests at once",
        answered.load(Ordering::SeqCst)
    );
    assert!(answered.load(Ordering::SeqCst) >= 16, "the flood ran");
    assert!(max >= 1, "the models' fetches reached the PCCS");
    let cap = pccs_client::MAX_CONCURRENT_FETCHES;
    assert!(max <= cap, "{max} fetches in flight at once (cap {cap})");
    for t in &took {
        assert!(
            *t < LEGIT_BOUND,
            "a legitimate client took {t:?} (all: {took:?})"
        );
    }
}
