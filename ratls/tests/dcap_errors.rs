//! Revocation is classified from structured results where dcap-qvl gives one (webpki's
//! `CertRevoked` for a PCK certificate on a CRL) and otherwise from dcap-qvl's exact wording,
//! pinned here: if dcap-qvl 0.7.1's text for a Revoked TCB changes, this test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ratls::verify::{DCAP_QVL_TCB_REVOKED, VerifyError, dcap_verify};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, TcbStatus};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn setup(opts: PlatformOptions) -> (tempfile::TempDir, SimPlatform, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let platform = SimPlatform::create(&dir.path().join("p"), &opts).unwrap();
    let quote = platform
        .quote(&Identity::random(None).unwrap(), &[0; 64])
        .unwrap();
    (dir, platform, quote)
}

fn anchor(p: &SimPlatform) -> ratls::verify::TrustAnchor {
    ratls::danger::simulated_root(p.root_ca_der().to_vec(), "test".into())
}

#[test]
fn dcap_qvls_wording_for_a_revoked_tcb_is_what_the_classifier_expects() {
    let (_dir, p, quote) = setup(PlatformOptions {
        tcb_status: TcbStatus::Revoked,
        ..PlatformOptions::default()
    });
    let raw = dcap_qvl::verify::QuoteVerifier::new(p.root_ca_der().to_vec())
        .allow_debug(true)
        .verify(&quote, &p.collateral(), now())
        .unwrap_err();
    let text = format!("{raw:#}");
    assert!(
        text.ends_with(DCAP_QVL_TCB_REVOKED),
        "dcap-qvl's message changed: {text:?}; update DCAP_QVL_TCB_REVOKED in ratls/src/verify.rs"
    );
    let err = dcap_verify(&anchor(&p), &quote, &p.collateral(), now(), 0).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
    assert_eq!(err.check(), "revocation");
}

#[test]
fn a_revoked_pck_certificate_is_classified_from_webpkis_error() {
    let (_dir, p, quote) = setup(PlatformOptions {
        revoke_pck: true,
        ..PlatformOptions::default()
    });
    let raw = dcap_qvl::verify::QuoteVerifier::new(p.root_ca_der().to_vec())
        .allow_debug(true)
        .verify(&quote, &p.collateral(), now())
        .unwrap_err();
    assert!(
        matches!(
            raw.downcast_ref::<dcap_qvl_webpki::Error>(),
            Some(dcap_qvl_webpki::Error::CertRevoked)
        ),
        "dcap-qvl no longer carries webpki's error: {raw:#}"
    );
    let err = dcap_verify(&anchor(&p), &quote, &p.collateral(), now(), 0).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
}

#[test]
fn other_dcap_failures_are_not_revocation() {
    let (_dir, p, quote) = setup(PlatformOptions::default());
    let (_other_dir, other, _) = setup(PlatformOptions::default());
    // The collateral of another platform (other root): a signature failure, not revocation.
    let err = dcap_verify(&anchor(&p), &quote, &other.collateral(), now(), 0).unwrap_err();
    assert!(matches!(err, VerifyError::Dcap { .. }), "{err}");
    assert_eq!(err.check(), "dcap-signature");
}
