//! The project's own pipeline (`ratls::verify`) over simulated evidence: it accepts the
//! simulated platform only when its root is configured through `ratls::danger`, applies the
//! TCB policy to the status the platform was created with, and checks the RA-TLS binding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;

use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::{TrustAnchor, Verifier};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource, TcbStatus};
use test_kit::{TempDir, temp_dir};

fn now() -> u64 {
    sgx_sim::timefmt::unix_now()
}

fn policy_for(id: &Identity, extra: &str) -> RaPolicy {
    let json = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"name": "peer", "mr_enclave": "{}", "mr_signer": "{}", "isv_prod_id": {},
            "isv_svn": {}, "config_svn": {}, "debuggable": {}}}]{extra}}}"#,
        hex::encode(id.mr_enclave),
        hex::encode(id.mr_signer),
        id.isv_prod_id,
        id.isv_svn,
        id.config_svn,
        id.debuggable
    );
    RaPolicy::from_json(json.as_bytes(), "test policy").unwrap()
}

fn setup(tag: &str, status: TcbStatus) -> (TempDir, SimPlatform, Identity) {
    let dir = temp_dir(tag);
    let opts = PlatformOptions {
        tcb_status: status,
        ..PlatformOptions::default()
    };
    let platform = SimPlatform::create(&platform_dir(&dir), &opts).unwrap();
    (dir, platform, Identity::random(None).unwrap())
}

fn verifier(p: &SimPlatform, anchor: TrustAnchor, policy: RaPolicy) -> Verifier {
    let collateral = Arc::new(StaticCollateral::new(p.collateral(), "collateral.json"));
    Verifier::new(anchor, collateral, policy)
}

fn simulated(p: &SimPlatform) -> TrustAnchor {
    ratls::danger::simulated_root(
        p.root_ca_der().to_vec(),
        format!("{}/root-ca.pem", p.dir().display()),
    )
}

#[test]
fn an_ra_tls_certificate_from_the_simulator_passes_the_whole_pipeline() {
    let (_dir, p, id) = setup("cert", TcbStatus::UpToDate);
    let v = verifier(&p, simulated(&p), policy_for(&id, ""));
    let minted = ratls::cert::RaTlsIdentity::mint(&SimQuoteSource::new(
        SimPlatform::open(p.dir()).unwrap(),
        id.clone(),
    ))
    .unwrap();
    let peer = v.verify_certificate(minted.cert_der(), now()).unwrap();
    assert_eq!(peer.report_body().mr_enclave, id.mr_enclave);
    assert_eq!(peer.tcb_status(), "UpToDate");
    assert!(!peer.anchored_at_intel());
}

#[test]
fn intels_anchor_rejects_the_simulated_platform() {
    let (_dir, p, id) = setup("intel", TcbStatus::UpToDate);
    let v = verifier(&p, TrustAnchor::intel(), policy_for(&id, ""));
    let quote = p.quote(&id, &[0; 64]).unwrap();
    let err = v.verify_quote(&quote, now()).unwrap_err();
    assert_eq!(err.check(), "dcap-signature", "{err}");
}

#[test]
fn the_tcb_policy_sees_the_configured_status() {
    for status in TcbStatus::ALL {
        let (_dir, p, id) = setup(status.as_str(), status);
        let quote = p.quote(&id, &[1; 64]).unwrap();
        let strict = verifier(&p, simulated(&p), policy_for(&id, ""));
        // A policy cannot accept Revoked; for it, accept everything else.
        let accepted: Vec<String> = TcbStatus::ALL
            .iter()
            .filter(|s| {
                **s != TcbStatus::Revoked && (**s == status || status == TcbStatus::Revoked)
            })
            .map(|s| format!("\"{}\"", s.as_str()))
            .collect();
        let lenient = verifier(
            &p,
            simulated(&p),
            policy_for(
                &id,
                &format!(r#", "tcb_statuses": [{}]"#, accepted.join(", ")),
            ),
        );
        match status {
            TcbStatus::UpToDate => {
                strict.verify_quote(&quote, now()).unwrap();
            }
            TcbStatus::Revoked => {
                assert_eq!(
                    strict.verify_quote(&quote, now()).unwrap_err().check(),
                    "revocation"
                );
                assert_eq!(
                    lenient.verify_quote(&quote, now()).unwrap_err().check(),
                    "revocation"
                );
            }
            _ => {
                assert_eq!(
                    strict.verify_quote(&quote, now()).unwrap_err().check(),
                    "tcb-status",
                    "{status}"
                );
                assert_eq!(
                    lenient.verify_quote(&quote, now()).unwrap().tcb_status(),
                    status.as_str()
                );
            }
        }
    }
}

#[test]
fn a_different_enclave_fails_the_measurement_policy() {
    let (_dir, p, id) = setup("policy", TcbStatus::UpToDate);
    let v = verifier(&p, simulated(&p), policy_for(&id, ""));
    let mut other = id.clone();
    other.isv_svn += 1;
    let quote = p.quote(&other, &[0; 64]).unwrap();
    assert_eq!(
        v.verify_quote(&quote, now()).unwrap_err().check(),
        "measurement-policy"
    );
}

/// The platform's directory in `dir`: not there until `SimPlatform::create` makes it.
fn platform_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("platform")
}
