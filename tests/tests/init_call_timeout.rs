//! A KMS that completes the attested handshake and then never answers: init's calls time out
//! and it exits 5, the documented "KMS unreachable" code (issue 18), writing nothing. The
//! KMS's certificate is genuine (minted on the deployment's platform for the KMS identity, with
//! its own key), so only the silence is wrong.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::{Deployment, tree};
use ratls::cert::RaTlsIdentity;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sgx_sim::{Identity, SimPlatform, SimQuoteSource};

#[test]
fn a_kms_that_never_answers_the_calls_exits_as_unreachable_and_writes_nothing() {
    let d = Deployment::new(&[("flask_key", "/etc/flask.key", b"key\n")]);
    let platform = SimPlatform::open(&d.sim.dir).unwrap();
    let identity = Identity::load(&d.kms_identity).unwrap();
    let cert = RaTlsIdentity::mint(&SimQuoteSource::new(platform, identity)).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der().to_vec()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert.cert_der().to_vec())], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (config, counted) = (Arc::clone(&config), Arc::clone(&counted));
            std::thread::spawn(move || {
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::Stream::new(&mut conn, &mut stream);
                let mut buf = [0u8; 16 * 1024];
                // Read the handshake and the calls; answer nothing, until init hangs up.
                let mut first = true;
                while let Ok(1..) = tls.read(&mut buf) {
                    if first {
                        counted.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                }
            });
        }
    });

    let start = Instant::now();
    let out = d.run_init(&addr, &["--connect-deadline", "3"], &[]);
    let took = start.elapsed();
    assert_eq!(out.code(), Some(5), "{}", out.stderr);
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("timeout"),
        "{}",
        out.stderr
    );
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "init never completed a handshake: {}",
        out.stderr
    );
    // The call deadline (10 s) passed at least once; generous upper bound, not a benchmark.
    assert!(took >= Duration::from_secs(10), "{took:?}: {}", out.stderr);
    assert!(
        !d.rootfs().exists(),
        "rootfs created: {:#?}",
        tree(d.tmp.path())
    );
}
