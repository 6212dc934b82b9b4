//! The platform verdict cache: a quote whose platform half dcap-qvl already accepted costs one
//! ISV signature check, and nothing that dcap-qvl would reject gets through that shortcut.
//! Runs on dcap-qvl's real hardware sample (Intel root) and on simulated quotes from several
//! enclaves of one simulated platform.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use dcap_qvl::QuoteCollateralV3;
use ratls::cert::RaTlsIdentity;
use ratls::collateral::{CollateralError, CollateralSource, StaticCollateral};
use ratls::policy::RaPolicy;
use ratls::quote::{HEADER_LEN, Quote, SIGNED_LEN};
use ratls::verify::{
    MAX_PLATFORM_CACHE_SECS, TrustAnchor, VerifiedPeer, Verifier, VerifierStats, VerifyError,
};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

const QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
const COLLATERAL: &str = include_str!("../testdata/dcap-sample/sgx_quote_collateral.json");
/// Inside the sample collateral's window [1750330571, 1752919278].
const NOW: u64 = 1_750_400_000;
const NEXT_UPDATE: u64 = 1_752_919_278;
const MR_ENCLAVE: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";
/// Offset of the signature data (after the u32 length at 432).
const SIG: usize = SIGNED_LEN + 4;

fn collateral() -> QuoteCollateralV3 {
    serde_json::from_str(COLLATERAL).unwrap()
}

/// A policy for one enclave: `mr_enclave` always checked, `mr_signer` when given; `tail` adds
/// fields (`, "tcb_statuses": ...`).
fn policy_for(mr_enclave: &str, mr_signer: &str, tail: &str) -> RaPolicy {
    let check_signer = if mr_signer.is_empty() { "off" } else { "on" };
    let json = format!(
        r#"{{
            "verify_mr_enclave": "on", "verify_mr_signer": "{check_signer}", "verify_isv_prod_id": "off",
            "verify_isv_svn": "off", "verify_config_svn": "off", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"mr_enclave": "{mr_enclave}", "mr_signer": "{mr_signer}", "isv_prod_id": 0,
                         "isv_svn": 0, "config_svn": 0, "debuggable": false}}]
            {tail}
        }}"#
    );
    RaPolicy::from_json(json.as_bytes(), "test policy").unwrap()
}

/// A policy for the sample's enclave that accepts its TCB status.
fn policy(mr_enclave: &str, extra: &str) -> RaPolicy {
    let tail =
        format!(r#", "tcb_statuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"] {extra}"#);
    policy_for(mr_enclave, "", &tail)
}

fn sample_verifier() -> Verifier {
    Verifier::new(
        TrustAnchor::intel(),
        Arc::new(StaticCollateral::new(collateral(), "sample")),
        policy(MR_ENCLAVE, ""),
    )
}

fn stats(full_dcap: u64, platform_hits: u64) -> VerifierStats {
    let mut s = VerifierStats::default();
    s.full_dcap = full_dcap;
    s.platform_hits = platform_hits;
    s
}

fn expect_check(result: Result<VerifiedPeer, VerifyError>, check: &str) -> VerifyError {
    let err = result.expect_err("verification must fail");
    assert_eq!(err.check(), check, "wrong check failed: {err}");
    err
}

fn flipped(at: usize) -> Vec<u8> {
    let mut q = QUOTE.to_vec();
    q[at] ^= 0x01;
    q
}

#[test]
fn a_second_quote_from_a_verified_platform_reuses_the_verdict() {
    let v = sample_verifier();
    let first = v.verify_quote(QUOTE, NOW).unwrap();
    assert_eq!(v.stats(), stats(1, 0));
    let second = v.verify_quote(QUOTE, NOW + 1).unwrap();
    assert_eq!(v.stats(), stats(1, 1));
    assert_eq!(second.tcb_status(), first.tcb_status());
    assert_eq!(second.advisory_ids(), first.advisory_ids());
    assert_eq!(second.report_body(), first.report_body());
}

#[test]
fn a_changed_report_body_on_a_cached_platform_fails_the_isv_signature() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NOW).unwrap();
    // mr_enclave's first byte: the platform half is untouched, so this is a cache lookup.
    let err = expect_check(
        v.verify_quote(&flipped(HEADER_LEN + 64), NOW),
        "dcap-signature",
    );
    // The text is the contract here: VerifyError::Dcap carries dcap-qvl's words, and only
    // this one names the cache's own ISV signature check (no variant tells them apart).
    assert!(
        err.to_string().contains("ISV enclave report signature"),
        "{err}"
    );
    assert_eq!(v.stats(), stats(1, 0));
}

#[test]
fn a_changed_isv_signature_on_a_cached_platform_is_rejected() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NOW).unwrap();
    expect_check(v.verify_quote(&flipped(SIG + 10), NOW), "dcap-signature");
    assert_eq!(v.stats(), stats(1, 0));
}

#[test]
fn a_changed_header_misses_the_cache_and_dcap_qvl_rejects_it() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NOW).unwrap();
    // user_data, the header's last field: covered by the ISV signature and the cache key.
    let err = v.verify_quote(&flipped(HEADER_LEN - 1), NOW).unwrap_err();
    assert_eq!(err.check(), "dcap-signature", "{err}");
    assert_eq!(
        v.stats(),
        stats(1, 0),
        "dcap-qvl rejected it, so it is not counted"
    );
}

#[test]
fn each_changed_byte_of_the_platform_half_misses_the_cache() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NOW).unwrap();
    // Attestation key, QE report, QE report signature, QE auth data, PCK chain (last byte).
    for at in [
        SIG + 64,
        SIG + 128 + 100,
        SIG + 128 + 384 + 5,
        SIG + 128 + 384 + 64 + 2,
    ] {
        let q = flipped(at);
        assert!(Quote::parse(&q).is_ok(), "byte {at} keeps the structure");
        assert!(
            v.verify_quote(&q, NOW).is_err(),
            "byte {at} must be rejected"
        );
    }
    let last = QUOTE.len() - 40;
    let _ = v.verify_quote(&flipped(last), NOW);
    assert_eq!(
        v.stats().platform_hits,
        0,
        "no tampered platform half may hit"
    );
    v.verify_quote(QUOTE, NOW).unwrap();
    assert_eq!(v.stats().platform_hits, 1, "the genuine one still does");
}

#[test]
fn the_measurement_policy_runs_on_every_cache_hit() {
    let other = "00".repeat(32);
    let v = Verifier::new(
        TrustAnchor::intel(),
        Arc::new(StaticCollateral::new(collateral(), "sample")),
        policy(&other, ""),
    );
    expect_check(v.verify_quote(QUOTE, NOW), "measurement-policy");
    expect_check(v.verify_quote(QUOTE, NOW), "measurement-policy");
    assert_eq!(v.stats(), stats(1, 1));
}

#[test]
fn the_tcb_policy_runs_on_every_cache_hit() {
    let v = Verifier::new(
        TrustAnchor::intel(),
        Arc::new(StaticCollateral::new(collateral(), "sample")),
        policy_for(MR_ENCLAVE, "", ""),
    );
    expect_check(v.verify_quote(QUOTE, NOW), "tcb-status");
    expect_check(v.verify_quote(QUOTE, NOW), "tcb-status");
    assert_eq!(v.stats(), stats(1, 1));
}

#[test]
fn a_verdict_is_not_reused_after_its_lifetime_or_before_it_was_made() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NOW).unwrap();
    v.verify_quote(QUOTE, NOW + MAX_PLATFORM_CACHE_SECS)
        .unwrap();
    assert_eq!(v.stats(), stats(1, 1));
    v.verify_quote(QUOTE, NOW + MAX_PLATFORM_CACHE_SECS + 1)
        .unwrap();
    assert_eq!(v.stats(), stats(2, 1), "expired: verified in full again");
    let w = sample_verifier();
    w.verify_quote(QUOTE, NOW).unwrap();
    w.verify_quote(QUOTE, NOW - 1).unwrap();
    assert_eq!(
        w.stats(),
        stats(2, 0),
        "the clock went back: verified in full"
    );
}

#[test]
fn a_verdict_never_outlives_the_collateral() {
    let v = sample_verifier();
    v.verify_quote(QUOTE, NEXT_UPDATE - 10).unwrap();
    v.verify_quote(QUOTE, NEXT_UPDATE).unwrap();
    assert_eq!(v.stats(), stats(1, 1));
    expect_check(v.verify_quote(QUOTE, NEXT_UPDATE + 1), "collateral-expiry");
    assert_eq!(v.stats(), stats(1, 1));
}

#[test]
fn verdicts_made_inside_the_grace_period_are_not_reused() {
    let v = Verifier::new(
        TrustAnchor::intel(),
        Arc::new(StaticCollateral::new(collateral(), "sample")),
        policy(MR_ENCLAVE, r#", "collateral_grace_secs": 3600"#),
    );
    let late = NEXT_UPDATE + 60;
    v.verify_quote(QUOTE, late).unwrap();
    v.verify_quote(QUOTE, late).unwrap();
    assert_eq!(v.stats(), stats(2, 0));
}

/// A collateral source that hands out a new object each time, as a refreshing PCCS would.
struct Refreshing;

impl CollateralSource for Refreshing {
    fn collateral(&self, _: &Quote, _: u64) -> Result<Arc<QuoteCollateralV3>, CollateralError> {
        Ok(Arc::new(collateral()))
    }

    fn describe(&self) -> String {
        "refreshing".into()
    }
}

#[test]
fn new_collateral_means_a_new_full_verification() {
    let v = Verifier::new(
        TrustAnchor::intel(),
        Arc::new(Refreshing),
        policy(MR_ENCLAVE, ""),
    );
    v.verify_quote(QUOTE, NOW).unwrap();
    v.verify_quote(QUOTE, NOW).unwrap();
    assert_eq!(v.stats(), stats(2, 0));
}

#[test]
fn enclaves_on_one_simulated_platform_share_the_verdict_and_keep_their_own_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(SimPlatform::create(dir.path(), &PlatformOptions::default()).unwrap());
    let (a, b) = (
        Identity::random(None).unwrap(),
        Identity::random(None).unwrap(),
    );
    let mint = |identity: &Identity| {
        let source = SimQuoteSource {
            platform: Arc::clone(&platform),
            identity: identity.clone(),
        };
        RaTlsIdentity::mint(&source).unwrap()
    };
    let v = Verifier::new(
        ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "test".into()),
        Arc::new(StaticCollateral::new(platform.collateral(), "sim")),
        policy_for(&hex::encode(a.mr_enclave), &hex::encode(a.mr_signer), ""),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for _ in 0..3 {
        let id = mint(&a);
        let peer = v.verify_certificate(id.cert_der(), now).unwrap();
        assert_eq!(peer.report_body().mr_enclave, a.mr_enclave);
    }
    assert_eq!(v.stats(), stats(1, 2));
    let err = v
        .verify_certificate(mint(&b).cert_der(), now)
        .expect_err("b is not in the policy");
    assert_eq!(err.check(), "measurement-policy", "{err}");
    assert_eq!(v.stats(), stats(1, 3));
}
