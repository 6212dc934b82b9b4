//! The verification pipeline on a real SGX quote (dcap-qvl's sample, made on hardware) with its
//! real collateral, under Intel's SGX Root CA: acceptance, the TCB policy, the validity window,
//! and one rejection per tampered component.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use dcap_qvl::QuoteCollateralV3;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::quote::{HEADER_LEN, SIGNED_LEN};
use ratls::verify::{TrustAnchor, Verifier, VerifyError};

const QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
const COLLATERAL: &str = include_str!("../testdata/dcap-sample/sgx_quote_collateral.json");
/// Inside the sample collateral's window [1750330571, 1752919278].
const NOW: u64 = 1_750_400_000;
const MR_ENCLAVE: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";
const MR_SIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";
/// Offset of the signature data (after the u32 length at 432).
const SIG: usize = SIGNED_LEN + 4;

fn collateral() -> QuoteCollateralV3 {
    serde_json::from_str(COLLATERAL).unwrap()
}

fn policy(extra: &str) -> RaPolicy {
    let json = format!(
        r#"{{
            "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"mr_enclave": "{MR_ENCLAVE}", "mr_signer": "{MR_SIGNER}",
                         "isv_prod_id": 0, "isv_svn": 0, "config_svn": 0, "debuggable": false}}]
            {extra}
        }}"#
    );
    RaPolicy::from_json(json.as_bytes(), "test policy").unwrap()
}

fn accepting_its_status() -> RaPolicy {
    policy(r#", "tcb_statuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"]"#)
}

fn verifier_with(policy: RaPolicy, collateral: QuoteCollateralV3) -> Verifier {
    Verifier::new(
        TrustAnchor::intel(),
        Arc::new(StaticCollateral::new(collateral, "sample")),
        policy,
    )
}

fn verify(
    quote: &[u8],
    collateral: QuoteCollateralV3,
    now: u64,
) -> Result<ratls::verify::VerifiedPeer, VerifyError> {
    verifier_with(accepting_its_status(), collateral).verify_quote(quote, now)
}

fn expect_check(
    result: Result<ratls::verify::VerifiedPeer, VerifyError>,
    check: &str,
) -> VerifyError {
    let err = result.expect_err("verification must fail");
    assert_eq!(err.check(), check, "wrong check failed: {err}");
    err
}

#[test]
fn the_sample_verifies_with_its_measurements_and_status_when_the_policy_accepts_that_status() {
    let peer = verify(QUOTE, collateral(), NOW).unwrap();
    assert_eq!(hex::encode(peer.report_body().mr_enclave), MR_ENCLAVE);
    assert_eq!(hex::encode(peer.report_body().mr_signer), MR_SIGNER);
    assert_eq!(peer.tcb_status(), "ConfigurationAndSWHardeningNeeded");
    assert_eq!(peer.advisory_ids(), ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(peer.matched().index, 0);
    assert!(peer.anchored_at_intel());
    assert!(peer.valid_until() > NOW);
}

#[test]
fn the_default_status_policy_accepts_only_up_to_date_and_says_so() {
    let err = expect_check(
        verifier_with(policy(""), collateral()).verify_quote(QUOTE, NOW),
        "tcb-status",
    );
    let msg = err.to_string();
    assert!(msg.contains("ConfigurationAndSWHardeningNeeded"), "{msg}");
    assert!(msg.contains("tcb_statuses"), "{msg}");
}

#[test]
fn a_rejected_advisory_fails_the_advisory_check() {
    let p = policy(
        r#", "tcb_statuses": ["ConfigurationAndSWHardeningNeeded"], "reject_advisories": ["INTEL-SA-00615"]"#,
    );
    let err = expect_check(
        verifier_with(p, collateral()).verify_quote(QUOTE, NOW),
        "advisory",
    );
    assert!(
        matches!(&err, VerifyError::Advisory { id, .. } if id == "INTEL-SA-00615"),
        "{err:?}"
    );
}

#[test]
fn one_second_before_the_collateral_window_is_rejected() {
    expect_check(
        verify(QUOTE, collateral(), 1_750_330_570),
        "collateral-expiry",
    );
}

#[test]
fn one_second_after_the_collateral_window_is_rejected() {
    let err = expect_check(
        verify(QUOTE, collateral(), 1_752_919_279),
        "collateral-expiry",
    );
    // CollateralWindow's detail is text (not yet valid / expired / unreadable): the contract.
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn a_grace_period_accepts_recently_expired_collateral_and_no_more() {
    let p = |grace: u64| {
        policy(&format!(
            r#", "tcb_statuses": ["ConfigurationAndSWHardeningNeeded"], "collateral_grace_secs": {grace}"#
        ))
    };
    let late = 1_752_919_278 + 3600;
    assert!(
        verifier_with(p(3600), collateral())
            .verify_quote(QUOTE, late)
            .is_ok()
    );
    expect_check(
        verifier_with(p(3599), collateral()).verify_quote(QUOTE, late),
        "collateral-expiry",
    );
}

#[test]
fn the_wrong_measurements_fail_the_measurement_policy_naming_the_field() {
    let other = "00".repeat(32);
    let json = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "off", "verify_isv_prod_id": "off",
            "verify_isv_svn": "off", "verify_config_svn": "off", "verify_enclave_debuggable": "off",
            "sgx_mrs": [{{"mr_enclave": "{other}", "mr_signer": "", "isv_prod_id": 0, "isv_svn": 0,
                         "config_svn": 0, "debuggable": false}}],
            "tcb_statuses": ["ConfigurationAndSWHardeningNeeded"]}}"#
    );
    let p = RaPolicy::from_json(json.as_bytes(), "p").unwrap();
    let err = expect_check(
        verifier_with(p, collateral()).verify_quote(QUOTE, NOW),
        "measurement-policy",
    );
    let msg = err.to_string();
    assert!(
        msg.contains("mr_enclave") && msg.contains(MR_ENCLAVE) && msg.contains(&other),
        "{msg}"
    );
}

fn flipped(at: usize) -> Vec<u8> {
    let mut q = QUOTE.to_vec();
    q[at] ^= 0x01;
    q
}

#[test]
fn one_changed_byte_in_the_report_body_is_rejected() {
    // isv_svn inside the report body: structurally fine, signature no longer matches.
    expect_check(
        verify(&flipped(HEADER_LEN + 258), collateral(), NOW),
        "dcap-signature",
    );
}

#[test]
fn one_changed_byte_in_the_quote_signature_is_rejected() {
    expect_check(
        verify(&flipped(SIG + 10), collateral(), NOW),
        "dcap-signature",
    );
}

#[test]
fn one_changed_byte_in_the_attestation_key_is_rejected() {
    expect_check(
        verify(&flipped(SIG + 64 + 10), collateral(), NOW),
        "dcap-signature",
    );
}

#[test]
fn one_changed_byte_in_the_qe_report_is_rejected() {
    // The QE report's mr_signer.
    expect_check(
        verify(&flipped(SIG + 128 + 128), collateral(), NOW),
        "dcap-signature",
    );
}

#[test]
fn one_changed_byte_in_the_qe_report_signature_is_rejected() {
    expect_check(
        verify(&flipped(SIG + 128 + 384 + 5), collateral(), NOW),
        "dcap-signature",
    );
}

#[test]
fn one_changed_byte_in_the_pck_certificate_is_rejected() {
    let q = QUOTE.to_vec();
    let begin = b"-----BEGIN CERTIFICATE-----";
    let start = q.windows(begin.len()).position(|w| w == begin).unwrap() + begin.len();
    // A base64 character well inside the leaf's TBS certificate, swapped for another one.
    let at = start + 300;
    let mut tampered = q.clone();
    tampered[at] = if q[at] == b'A' { b'B' } else { b'A' };
    let err = verify(&tampered, collateral(), NOW).expect_err("must fail");
    assert!(
        matches!(err.check(), "dcap-signature" | "collateral"),
        "{err}"
    );
}

#[test]
fn one_changed_byte_in_the_tcb_info_is_rejected() {
    let mut c = collateral();
    let at = c.tcb_info.find("\"tcbEvaluationDataNumber\":").unwrap()
        + "\"tcbEvaluationDataNumber\":".len();
    let mut bytes = c.tcb_info.into_bytes();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    c.tcb_info = String::from_utf8(bytes).unwrap();
    expect_check(verify(QUOTE, c, NOW), "dcap-signature");
}

#[test]
fn a_simulated_root_cannot_verify_a_real_intel_quote() {
    // Any non-Intel anchor: the real quote chains to Intel, so it must fail.
    let fake_root = include_bytes!("../testdata/dcap-sample/sgx_quote")[..0].to_vec();
    let anchor = ratls::danger::simulated_root(fake_root, "empty".into());
    let v = Verifier::new(
        anchor,
        Arc::new(StaticCollateral::new(collateral(), "s")),
        accepting_its_status(),
    );
    expect_check(v.verify_quote(QUOTE, NOW), "dcap-signature");
}
