//! Collateral fetching cannot be driven by unauthenticated peers. With a PCCS that answers only
//! after 10 s and a flood of RA-TLS certificates from platforms the KMS does not trust (their
//! quotes name FMSPCs it has never seen), a legitimate client still gets its secrets within a
//! second, and the flood causes no PCCS request at all: a quote's PCK chain is verified against
//! the trust anchor before anything is fetched for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// How long the PCCS takes to answer once it turns slow.
const SLOW_PCCS: Duration = Duration::from_secs(10);
/// The bound for a legitimate client's whole connection and call.
const LEGIT_BOUND: Duration = Duration::from_secs(1);

/// A PCCS for `platform` that answers after SLOW_PCCS once `slow` is set; counts requests.
fn start_pccs(
    platform: &sgx_sim::SimPlatform,
    slow: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
) -> String {
    let pccs = Arc::new(sgx_sim::pccs::Pccs::for_platform(platform));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (pccs, slow, requests) =
                (Arc::clone(&pccs), Arc::clone(&slow), Arc::clone(&requests));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if header == "\r\n" || header == "\n" => break,
                        Ok(_) => {}
                    }
                }
                requests.fetch_add(1, Ordering::SeqCst);
                if slow.load(Ordering::SeqCst) {
                    std::thread::sleep(SLOW_PCCS);
                }
                let mut words = line.split(' ');
                let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let response = pccs.respond(method, target);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    response.status,
                    response.body.len()
                );
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&response.body);
            });
        }
    });
    url
}

#[test]
fn a_slow_pccs_and_a_flood_of_unknown_platforms_do_not_stall_a_legitimate_client() {
    let dir = TempDir::new("dos");
    let sim = Sim::good(&dir);
    let slow = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let url = start_pccs(&sim.platform, Arc::clone(&slow), Arc::clone(&requests));
    let app = app_identity();
    let kms = Kms::start(KmsSetup {
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
    let started = Instant::now();
    while refusals.load(Ordering::SeqCst) < 8 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut took = Vec::new();
    for _ in 0..3 {
        let cert = sim.client(&app);
        let t = Instant::now();
        let client = GrpcClient::connect(&kms, Some(&cert));
        assert_eq!(client.get_decoded("image_key").unwrap(), secrets()[2].1);
        took.push(t.elapsed());
    }
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
    let dir = TempDir::new("pending");
    let sim = Sim::good(&dir);
    // Slow from the start: the first quote from this platform finds no collateral in time.
    let slow = Arc::new(AtomicBool::new(true));
    let requests = Arc::new(AtomicUsize::new(0));
    let url = start_pccs(&sim.platform, Arc::clone(&slow), Arc::clone(&requests));
    let app = app_identity();
    let kms = Kms::start(KmsSetup {
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
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // UNAVAILABLE, which init retries; UNAUTHENTICATED would end its boot.
    assert_eq!(code, grpcio::RpcStatusCode::UNAVAILABLE, "{message}");
    assert!(message.contains("collateral"), "{message}");
    assert!(requests.load(Ordering::SeqCst) >= 1, "a fetch was started");
}
