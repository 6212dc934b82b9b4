//! Certificates handed over as PEM text (as gRPC C-core hands over its TLS peer's): the same
//! verdict as for the DER, cached under the text, and nothing cached for a refusal.
//! Simulated platform (sgx-sim) with its simulated root, trusted here on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::{Verifier, VerifierStats};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

struct Setup {
    _dir: tempfile::TempDir,
    platform: Arc<SimPlatform>,
    app: Identity,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(
        SimPlatform::create(&dir.path().join("platform"), &PlatformOptions::default()).unwrap(),
    );
    Setup {
        _dir: dir,
        platform,
        app: Identity::random(None).unwrap(),
    }
}

fn verifier(s: &Setup, mr_enclave: [u8; 32]) -> Verifier {
    let policy = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "off", "verify_isv_prod_id": "off",
            "verify_isv_svn": "off", "verify_config_svn": "off", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"mr_enclave": "{}", "debuggable": false}}]}}"#,
        hex::encode(mr_enclave)
    );
    Verifier::new(
        ratls::danger::simulated_root(s.platform.root_ca_der().to_vec(), "test".into()),
        Arc::new(StaticCollateral::new(
            s.platform.collateral(),
            "SIMULATED platform",
        )),
        RaPolicy::from_json(policy.as_bytes(), "test policy").unwrap(),
    )
}

fn mint(s: &Setup) -> RaTlsIdentity {
    RaTlsIdentity::mint(&SimQuoteSource {
        platform: Arc::clone(&s.platform),
        identity: s.app.clone(),
    })
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Pipeline runs so far: full DCAP verifications plus platform-cache hits.
fn runs(v: &Verifier) -> u64 {
    let VerifierStats {
        full_dcap,
        platform_hits,
        ..
    } = v.stats();
    full_dcap + platform_hits
}

#[test]
fn a_pem_certificate_gets_the_ders_verdict_and_the_second_call_runs_no_pipeline() {
    let s = setup();
    let v = verifier(&s, s.app.mr_enclave);
    let id = mint(&s);
    let pem = id.cert_pem();

    assert!(v.cached_pem(pem.as_bytes(), now()).is_none());
    let from_pem = v.verify_certificate_pem(pem.as_bytes(), now()).unwrap();
    assert_eq!(runs(&v), 1);
    let again = v.verify_certificate_pem(pem.as_bytes(), now()).unwrap();
    assert_eq!(runs(&v), 1, "the second call is served from the cache");
    assert!(v.cached_pem(pem.as_bytes(), now()).is_some());
    assert_eq!(again.report_body(), from_pem.report_body());

    let from_der = v.verify_certificate(id.cert_der(), now()).unwrap();
    assert_eq!(from_der.report_body(), from_pem.report_body());
    assert_eq!(from_der.tcb_status(), from_pem.tcb_status());
}

#[test]
fn another_text_of_the_same_certificate_is_verified_on_its_own() {
    let s = setup();
    let v = verifier(&s, s.app.mr_enclave);
    let pem = mint(&s).cert_pem();
    v.verify_certificate_pem(pem.as_bytes(), now()).unwrap();
    let crlf = pem.replace('\n', "\r\n");
    assert!(v.cached_pem(crlf.as_bytes(), now()).is_none());
    v.verify_certificate_pem(crlf.as_bytes(), now()).unwrap();
    assert_eq!(runs(&v), 2);
}

#[test]
fn a_refused_pem_certificate_is_not_cached() {
    let s = setup();
    let v = verifier(&s, [0x42; 32]);
    let pem = mint(&s).cert_pem();
    for _ in 0..2 {
        let err = v.verify_certificate_pem(pem.as_bytes(), now()).unwrap_err();
        assert_eq!(err.check(), "measurement-policy", "{err}");
        assert!(v.cached_pem(pem.as_bytes(), now()).is_none());
    }
    assert_eq!(runs(&v), 2, "each attempt ran the pipeline");
}

#[test]
fn text_that_is_not_a_pem_certificate_is_an_evidence_error() {
    let s = setup();
    let v = verifier(&s, s.app.mr_enclave);
    let pem = mint(&s).cert_pem();
    let broken = pem.replacen("MII", "M!I", 1);
    for text in [
        &b"not a certificate"[..],
        &[0xff, 0xfe][..],
        broken.as_bytes(),
    ] {
        let err = v.verify_certificate_pem(text, now()).unwrap_err();
        assert_eq!(err.check(), "evidence", "{err}");
    }
    assert_eq!(runs(&v), 0);
}
