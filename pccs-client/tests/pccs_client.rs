//! The PCCS client's defences against peers that name platforms: nothing is fetched for a quote
//! whose PCK chain does not lead to the trust anchor; a caller waits for a slow PCCS at most its
//! fetch wait; a failed fetch is not retried during its backoff; collateral past its
//! `nextUpdate` still serves while the PCCS is down (the verifier's grace period decides); the
//! disk cache writes 0600 files through unique temporary files and leaves none behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pccs_client::PccsClient;
use ratls::collateral::{CollateralError, CollateralSource};
use ratls::quote::Quote;
use sgx_sim::{Identity, PlatformOptions, SimPlatform};

const FAST: u8 = 0;
const SLOW: u8 = 1;
const FAIL: u8 = 2;

struct Server {
    url: String,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicUsize>,
}

/// A PCCS for `platform`: answers at once (FAST), after 10 s (SLOW) or with 500 (FAIL).
fn pccs(platform: &SimPlatform) -> Server {
    let pccs = sgx_sim::pccs::Pccs::for_platform(platform);
    let mode = Arc::new(AtomicU8::new(FAST));
    let requests = Arc::new(AtomicUsize::new(0));
    let (m, r) = (Arc::clone(&mode), Arc::clone(&requests));
    let url = test_kit::http::serve(move |method, target| {
        r.fetch_add(1, Ordering::SeqCst);
        let mode = m.load(Ordering::SeqCst);
        if mode == SLOW {
            std::thread::sleep(Duration::from_secs(10));
        }
        let r = pccs.respond(method, target);
        let status = if mode == FAIL { 500 } else { r.status };
        test_kit::http::Reply::new(status, r.headers, r.body)
    });
    Server {
        url,
        mode,
        requests,
    }
}

struct Platform {
    _dir: tempfile::TempDir,
    platform: SimPlatform,
    quote: Vec<u8>,
}

fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let platform = SimPlatform::create(&dir.path().join("p"), &PlatformOptions::default()).unwrap();
    let quote = platform
        .quote(&Identity::random(None).unwrap(), &[0; 64])
        .unwrap();
    Platform {
        _dir: dir,
        platform,
        quote,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn client(server: &Server, anchor_of: &SimPlatform) -> PccsClient {
    PccsClient::with_timeouts(&server.url, Duration::from_secs(2), Duration::from_secs(30))
        .with_trust_anchor(ratls::danger::simulated_root(
            anchor_of.root_ca_der().to_vec(),
            "test root".into(),
        ))
}

#[test]
fn nothing_is_fetched_for_a_quote_whose_pck_chain_is_not_anchored() {
    let trusted = platform();
    let stranger = platform();
    let server = pccs(&trusted.platform);
    let quote = Quote::parse(&stranger.quote).unwrap();
    let err = client(&server, &trusted.platform)
        .collateral(&quote, now())
        .unwrap_err();
    assert!(matches!(err, CollateralError::PckChain { .. }), "{err}");
    assert!(err.to_string().contains("test root"), "{err}");
    // Under the default anchor (Intel's) a simulated chain is refused the same way.
    let err = PccsClient::new(&server.url)
        .collateral(&quote, now())
        .unwrap_err();
    assert!(matches!(err, CollateralError::PckChain { .. }), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn an_anchored_quote_gets_its_collateral_and_a_second_costs_no_request() {
    let p = platform();
    let server = pccs(&p.platform);
    let client = client(&server, &p.platform);
    let quote = Quote::parse(&p.quote).unwrap();
    let first = client.collateral(&quote, now()).unwrap();
    let fetched = server.requests.load(Ordering::SeqCst);
    assert_eq!(fetched, 4);
    let second = client.collateral(&quote, now()).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(server.requests.load(Ordering::SeqCst), fetched);
}

#[test]
fn a_slow_pccs_holds_a_caller_only_for_the_fetch_wait() {
    let p = platform();
    let server = pccs(&p.platform);
    server.mode.store(SLOW, Ordering::SeqCst);
    let client = client(&server, &p.platform).with_fetch_wait(Duration::from_millis(200));
    let quote = Quote::parse(&p.quote).unwrap();
    let started = Instant::now();
    let err = client.collateral(&quote, now()).unwrap_err();
    assert!(matches!(err, CollateralError::Pending { .. }), "{err}");
    // The 200 ms fetch wait plus a wide margin, half the slow PCCS's 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A second caller finds the fetch running and does not wait at all.
    let started = Instant::now();
    let err = client.collateral(&quote, now()).unwrap_err();
    assert!(matches!(err, CollateralError::Pending { .. }), "{err}");
    // Not held by the running fetch (10 s); how long a caller waits at most is the case above.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "one fetch running"
    );
}

#[test]
fn a_failed_fetch_is_not_retried_during_its_backoff() {
    let p = platform();
    let server = pccs(&p.platform);
    server.mode.store(FAIL, Ordering::SeqCst);
    let client = client(&server, &p.platform);
    let quote = Quote::parse(&p.quote).unwrap();
    let err = client.collateral(&quote, now()).unwrap_err();
    assert!(
        matches!(err, CollateralError::Status { status: 500, .. }),
        "{err}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    server.mode.store(FAST, Ordering::SeqCst);
    let err = client.collateral(&quote, now()).unwrap_err();
    assert!(
        matches!(&err, CollateralError::Backoff { last, .. }
            if matches!(**last, CollateralError::Status { status: 500, .. })),
        "{err:?}"
    );
    // What a person reads: the last failure, and that it is not retried yet.
    assert!(err.to_string().contains("HTTP status 500"), "{err}");
    assert!(err.to_string().contains("not retried"), "{err}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "no request in backoff"
    );
}

#[test]
fn expired_collateral_still_serves_while_the_pccs_is_down() {
    let p = platform();
    let server = pccs(&p.platform);
    let client = client(&server, &p.platform);
    let quote = Quote::parse(&p.quote).unwrap();
    let fresh = client.collateral(&quote, now()).unwrap();
    let next_update = ratls::collateral::next_update(&fresh).unwrap();
    server.mode.store(FAIL, Ordering::SeqCst);
    // Past nextUpdate the client tries the PCCS again, which fails: the old collateral is
    // handed out, for the verifier's grace period to judge.
    let stale = client.collateral(&quote, next_update + 10).unwrap();
    assert!(Arc::ptr_eq(&fresh, &stale));
    assert!(
        server.requests.load(Ordering::SeqCst) > 4,
        "a refetch was tried"
    );
}

#[test]
fn the_disk_cache_writes_private_files_and_leaves_no_temporary_file() {
    let p = platform();
    let server = pccs(&p.platform);
    let cache = tempfile::tempdir().unwrap();
    let client = client(&server, &p.platform).with_disk_cache(cache.path());
    let quote = Quote::parse(&p.quote).unwrap();
    client.collateral(&quote, now()).unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "json"),
        "{files:?}"
    );
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A cache entry that cannot be replaced (a directory in its place): the write fails, the
    // collateral is still served, and the temporary file is gone.
    let blocked = tempfile::tempdir().unwrap();
    std::fs::create_dir(blocked.path().join(files[0].file_name().unwrap())).unwrap();
    std::fs::write(
        blocked.path().join(files[0].file_name().unwrap()).join("x"),
        b"x",
    )
    .unwrap();
    let client = self::client(&server, &p.platform).with_disk_cache(blocked.path());
    client.collateral(&quote, now()).unwrap();
    let names: Vec<String> = std::fs::read_dir(blocked.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
}

#[test]
fn a_collateral_file_is_read_bounded_and_named_in_every_refusal() {
    use ratls::collateral::MAX_COLLATERAL_FILE_LEN;
    let dir = tempfile::tempdir().unwrap();
    let platform =
        SimPlatform::create(&dir.path().join("sim"), &PlatformOptions::default()).unwrap();
    let good = dir.path().join("collateral.json");
    std::fs::write(&good, serde_json::to_vec(&platform.collateral()).unwrap()).unwrap();
    let source = pccs_client::read_collateral_file(&good).unwrap();
    assert!(source.describe().contains("collateral.json"));

    let refused = |path: &std::path::Path| match pccs_client::read_collateral_file(path) {
        Err(e @ CollateralError::File { .. }) => e.to_string(),
        Err(other) => panic!("not a file error: {other}"),
        Ok(_) => panic!("{} was accepted", path.display()),
    };
    let big = dir.path().join("big.json");
    let len = usize::try_from(MAX_COLLATERAL_FILE_LEN).unwrap() + 1;
    std::fs::write(&big, vec![b' '; len]).unwrap();
    let e = refused(&big);
    assert!(
        e.contains("big.json")
            && e.contains(&format!("larger than {MAX_COLLATERAL_FILE_LEN} bytes")),
        "{e}"
    );
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{}").unwrap();
    let e = refused(&junk);
    assert!(
        e.contains("junk.json") && e.contains("not QuoteCollateralV3 JSON"),
        "{e}"
    );
    let e = refused(&dir.path().join("missing.json"));
    assert!(e.contains("missing.json"), "{e}");
}
