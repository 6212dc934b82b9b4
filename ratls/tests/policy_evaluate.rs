//! The measurement policy applied to report bodies: every `verify_*` switch on and off, matching
//! and not, several entries, debug enclaves, `isv_svn_min`, unset fields, and Occlum's own
//! templates as its demo scripts fill them in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ratls::policy::{Expected, PolicyField, PolicyMatch, PolicyRejection, RaPolicy};
use ratls::quote::{Quote, ReportBody};
use serde_json::{Value, json};

const SAMPLE_QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
const SAMPLE_MR_ENCLAVE: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";
const SAMPLE_MR_SIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";
const OTHER_MEASUREMENT: &str = "44aa000000000000000000000000000000000000000000000000000000000001";
const OCCLUM_TEMPLATE: &[u8] = include_bytes!("../testdata/occlum/ra_config_template.json");
const OCCLUM_INIT_RA_CONF: &[u8] = include_bytes!("../testdata/occlum/init_ra_conf.json");

/// The real enclave identity in dcap-qvl's sample quote (production, all SVNs 0).
fn sample_body() -> ReportBody {
    Quote::parse(SAMPLE_QUOTE)
        .expect("the sample quote parses")
        .body
}

/// The sample identity with other SVNs and, if asked, the DEBUG attribute.
fn body_with(isv_prod_id: u16, isv_svn: u16, config_svn: u16, debug: bool) -> ReportBody {
    let mut body = sample_body();
    body.isv_prod_id = isv_prod_id;
    body.isv_svn = isv_svn;
    body.config_svn = config_svn;
    if debug {
        body.attributes_flags |= ratls::quote::ATTRIBUTE_FLAG_DEBUG;
    }
    body
}

/// An entry that matches `sample_body()` on every field.
fn sample_entry() -> Value {
    json!({
        "mr_enclave": SAMPLE_MR_ENCLAVE,
        "mr_signer": SAMPLE_MR_SIGNER,
        "isv_prod_id": 0,
        "isv_svn": 0,
        "config_svn": 0,
        "debuggable": false
    })
}

/// A policy with only `on_switch` on (every switch on for `None`) and these entries.
fn policy_with(on_switch: Option<PolicyField>, entries: Vec<Value>) -> RaPolicy {
    let mut doc = json!({ "sgx_mrs": entries });
    for field in PolicyField::ALL {
        let on = on_switch.is_none_or(|f| f == field);
        doc[field.switch()] = json!(if on { "on" } else { "off" });
    }
    RaPolicy::from_value(&doc, "test.json").expect("test policy is valid")
}

/// `sample_entry()` with `field` changed so that it no longer matches the sample body.
fn entry_differing_in(field: PolicyField) -> Value {
    let mut entry = sample_entry();
    match field {
        PolicyField::MrEnclave => entry["mr_enclave"] = json!(OTHER_MEASUREMENT),
        PolicyField::MrSigner => entry["mr_signer"] = json!(OTHER_MEASUREMENT),
        PolicyField::IsvProdId => entry["isv_prod_id"] = json!(7),
        PolicyField::IsvSvn => entry["isv_svn"] = json!(7),
        PolicyField::ConfigSvn => entry["config_svn"] = json!(7),
        PolicyField::Debuggable => entry["debuggable"] = json!(true),
    }
    entry
}

fn rejection(policy: &RaPolicy, body: &ReportBody) -> PolicyRejection {
    match policy.evaluate(body) {
        Ok(m) => panic!("expected a rejection, got a match with entry {}", m.index),
        Err(r) => r,
    }
}

#[test]
fn each_switch_on_accepts_a_matching_entry() {
    for field in PolicyField::ALL {
        let policy = policy_with(Some(field), vec![sample_entry()]);
        assert_eq!(
            policy.evaluate(&sample_body()),
            Ok(PolicyMatch {
                index: 0,
                name: None
            }),
            "{} on, entry matching",
            field.switch()
        );
    }
}

#[test]
fn each_switch_on_rejects_an_entry_differing_in_its_field() {
    for field in PolicyField::ALL {
        let policy = policy_with(Some(field), vec![entry_differing_in(field)]);
        let r = rejection(&policy, &sample_body());
        let m = &r.mismatches()[0];
        assert_eq!(m.field(), field, "{} on", field.switch());
        let (expected, actual) = match field {
            PolicyField::MrEnclave => (OTHER_MEASUREMENT, SAMPLE_MR_ENCLAVE),
            PolicyField::MrSigner => (OTHER_MEASUREMENT, SAMPLE_MR_SIGNER),
            PolicyField::Debuggable => ("true", "false"),
            _ => ("7", "0"),
        };
        assert_eq!(m.expected(), &Expected::Value(expected.to_owned()));
        assert_eq!(m.actual(), actual);
    }
}

#[test]
fn each_switch_off_ignores_its_field() {
    for field in PolicyField::ALL {
        let policy = policy_with(Some(field), vec![entry_differing_in(field)]);
        assert!(
            policy.evaluate(&sample_body()).is_err(),
            "{} on must check",
            field.switch()
        );

        // Every switch on except this one: the differing field no longer matters.
        let mut doc = json!({ "sgx_mrs": [entry_differing_in(field)] });
        for f in PolicyField::ALL {
            doc[f.switch()] = json!(if f == field { "off" } else { "on" });
        }
        let policy = RaPolicy::from_value(&doc, "test.json").unwrap();
        assert_eq!(
            policy.evaluate(&sample_body()),
            Ok(PolicyMatch {
                index: 0,
                name: None
            }),
            "{} off must ignore {}",
            field.switch(),
            field
        );
    }
}

#[test]
fn all_switches_on_check_every_field_in_occlum_order() {
    // An entry wrong in everything fails on mr_enclave first, as Occlum checks it first.
    let mut entry = sample_entry();
    for field in PolicyField::ALL {
        let differing = entry_differing_in(field);
        let key = field.as_str();
        entry[key] = differing[key].clone();
    }
    let policy = policy_with(None, vec![entry]);
    let r = rejection(&policy, &sample_body());
    assert_eq!(r.mismatches().len(), 1);
    assert_eq!(r.mismatches()[0].field(), PolicyField::MrEnclave);
}

#[test]
fn the_second_of_several_entries_can_match_and_is_named() {
    let mut named = sample_entry();
    named["name"] = json!("app");
    let mut first = entry_differing_in(PolicyField::MrSigner);
    first["name"] = json!("kms");
    let policy = policy_with(None, vec![first, named, sample_entry()]);
    assert_eq!(
        policy.evaluate(&sample_body()),
        Ok(PolicyMatch {
            index: 1,
            name: Some("app".to_owned())
        })
    );
    assert_eq!(policy.entry_named("app").map(|(i, _)| i), Some(1));
    assert_eq!(policy.entry_named("kms").map(|(i, _)| i), Some(0));
    assert!(policy.entry_named("nobody").is_none());
}

#[test]
fn a_rejection_lists_each_entrys_first_failing_field() {
    let mut kms = entry_differing_in(PolicyField::MrEnclave);
    kms["name"] = json!("kms");
    let mut newer = sample_entry();
    newer.as_object_mut().unwrap().remove("isv_svn");
    newer["isv_svn_min"] = json!(3);
    let policy = policy_with(None, vec![kms, newer]);
    let r = rejection(&policy, &body_with(0, 2, 0, false));
    assert_eq!(
        r.to_string(),
        format!(
            "no sgx_mrs entry matched: entry 0 (\"kms\"): mr_enclave expected {OTHER_MEASUREMENT}, \
             actual {SAMPLE_MR_ENCLAVE}; entry 1: isv_svn expected >= 3, actual 2"
        )
    );
    let m = r.mismatches();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].index(), m[0].name(), m[0].field()),
        (0, Some("kms"), PolicyField::MrEnclave)
    );
    assert_eq!(
        (m[1].index(), m[1].name(), m[1].field()),
        (1, None, PolicyField::IsvSvn)
    );
    assert_eq!(m[1].expected(), &Expected::AtLeast(3));
    assert_eq!(m[1].actual(), "2");
}

#[test]
fn isv_svn_min_accepts_the_minimum_and_above_and_refuses_below() {
    let mut entry = sample_entry();
    entry.as_object_mut().unwrap().remove("isv_svn");
    entry["isv_svn_min"] = json!(3);
    let policy = policy_with(Some(PolicyField::IsvSvn), vec![entry]);
    assert!(policy.evaluate(&body_with(0, 2, 0, false)).is_err());
    assert!(policy.evaluate(&body_with(0, 3, 0, false)).is_ok());
    assert!(policy.evaluate(&body_with(0, 4, 0, false)).is_ok());
    assert!(policy.evaluate(&body_with(0, u16::MAX, 0, false)).is_ok());
}

#[test]
fn exact_isv_svn_refuses_a_newer_enclave_as_occlum_does() {
    let mut entry = sample_entry();
    entry["isv_svn"] = json!(3);
    let policy = policy_with(Some(PolicyField::IsvSvn), vec![entry]);
    assert!(policy.evaluate(&body_with(0, 3, 0, false)).is_ok());
    let r = rejection(&policy, &body_with(0, 4, 0, false));
    assert_eq!(
        r.mismatches()[0].expected(),
        &Expected::Value("3".to_owned())
    );
    assert_eq!(r.mismatches()[0].actual(), "4");
}

#[test]
fn a_debug_enclave_passes_only_with_the_switch_on_and_an_entry_allowing_debug() {
    let debug = body_with(0, 0, 0, true);
    let mut entry = sample_entry();
    entry["debuggable"] = json!(true);
    let policy = policy_with(None, vec![entry]);
    assert_eq!(
        policy.evaluate(&debug),
        Ok(PolicyMatch {
            index: 0,
            name: None
        })
    );
}

#[test]
fn a_debug_enclave_is_refused_when_the_switch_is_off_even_if_the_entry_allows_debug() {
    let debug = body_with(0, 0, 0, true);
    let mut entry = sample_entry();
    entry["debuggable"] = json!(true);
    let mut doc = json!({ "sgx_mrs": [entry] });
    for f in PolicyField::ALL {
        doc[f.switch()] = json!(if f == PolicyField::Debuggable {
            "off"
        } else {
            "on"
        });
    }
    let policy = RaPolicy::from_value(&doc, "test.json").unwrap();
    let r = rejection(&policy, &debug);
    assert!(matches!(r, PolicyRejection::DebugEnclave { .. }), "{r:?}");
    assert!(r.mismatches().is_empty());
    let text = r.to_string();
    assert!(text.contains("verify_enclave_debuggable"), "{text}");
    assert!(text.contains(SAMPLE_MR_ENCLAVE), "{text}");
    // The same policy still accepts the production build.
    assert!(policy.evaluate(&sample_body()).is_ok());
}

#[test]
fn a_debug_enclave_is_refused_by_an_entry_that_does_not_allow_debug() {
    let policy = policy_with(None, vec![sample_entry()]);
    let r = rejection(&policy, &body_with(0, 0, 0, true));
    let m = &r.mismatches()[0];
    assert_eq!(m.field(), PolicyField::Debuggable);
    assert_eq!(
        (m.expected(), m.actual()),
        (&Expected::Value("false".to_owned()), "true")
    );
}

#[test]
fn a_production_enclave_is_refused_by_an_entry_that_expects_debug_as_in_occlum() {
    let mut entry = sample_entry();
    entry["debuggable"] = json!(true);
    let policy = policy_with(Some(PolicyField::Debuggable), vec![entry]);
    let r = rejection(&policy, &sample_body());
    assert_eq!(r.mismatches()[0].field(), PolicyField::Debuggable);
    assert_eq!(r.mismatches()[0].actual(), "false");
}

#[test]
fn an_unset_measurement_with_its_check_on_never_matches_and_says_so() {
    let mut entry = sample_entry();
    entry["mr_signer"] = json!("");
    let policy = policy_with(Some(PolicyField::MrSigner), vec![entry]);
    let r = rejection(&policy, &sample_body());
    let m = &r.mismatches()[0];
    assert_eq!(
        (m.field(), m.expected()),
        (PolicyField::MrSigner, &Expected::Unset)
    );
    let text = r.to_string();
    assert!(text.contains("mr_signer is unset"), "{text}");
    assert!(text.contains("verify_mr_signer"), "{text}");
    assert!(text.contains(SAMPLE_MR_SIGNER), "{text}");
}

#[test]
fn every_missing_entry_field_with_its_check_on_is_unset() {
    for field in PolicyField::ALL {
        let mut entry = sample_entry();
        entry.as_object_mut().unwrap().remove(field.as_str());
        let policy = policy_with(Some(field), vec![entry]);
        let r = rejection(&policy, &sample_body());
        assert_eq!(r.mismatches()[0].field(), field);
        assert_eq!(r.mismatches()[0].expected(), &Expected::Unset, "{field}");
    }
}

#[test]
fn upper_case_measurements_in_the_policy_match() {
    let mut entry = sample_entry();
    entry["mr_enclave"] = json!(SAMPLE_MR_ENCLAVE.to_ascii_uppercase());
    let policy = policy_with(Some(PolicyField::MrEnclave), vec![entry]);
    assert!(policy.evaluate(&sample_body()).is_ok());
}

#[test]
fn occlums_unchanged_server_template_refuses_everyone_and_says_what_is_unset() {
    let policy = RaPolicy::from_json(OCCLUM_TEMPLATE, "dynamic_config.json").unwrap();
    let r = rejection(&policy, &sample_body());
    assert_eq!(r.mismatches()[0].field(), PolicyField::MrEnclave);
    assert_eq!(r.mismatches()[0].expected(), &Expected::Unset);
}

/// The KMS policy `build_content.sh` (`build_server_instance`) makes from the template with jq.
fn occlum_demo_server_policy() -> RaPolicy {
    let mut doc: Value = serde_json::from_slice(OCCLUM_TEMPLATE).unwrap();
    doc["verify_mr_enclave"] = json!("on");
    doc["verify_mr_signer"] = json!("on");
    doc["verify_isv_prod_id"] = json!("off");
    doc["verify_isv_svn"] = json!("on");
    doc["verify_config_svn"] = json!("on");
    doc["verify_enclave_debuggable"] = json!("on");
    doc["sgx_mrs"][0]["mr_enclave"] = json!(SAMPLE_MR_ENCLAVE);
    doc["sgx_mrs"][0]["mr_signer"] = json!(SAMPLE_MR_SIGNER);
    doc["sgx_mrs"][0]["isv_svn"] = json!(88);
    doc["sgx_mrs"][0]["config_svn"] = json!(1234);
    doc["sgx_mrs"][0]["debuggable"] = json!(true);
    RaPolicy::from_value(&doc, "dynamic_config.json").unwrap()
}

#[test]
fn occlums_demo_server_policy_accepts_its_debug_client_run_with_config_svn_1234() {
    let policy = occlum_demo_server_policy();
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    // Occlum.json: debuggable true, version_number 88; `occlum run --config-svn 1234`.
    assert!(policy.evaluate(&body_with(5, 88, 1234, true)).is_ok());
    // Without --config-svn the client is refused, naming the field.
    let r = rejection(&policy, &body_with(5, 88, 0, true));
    assert_eq!(r.mismatches()[0].field(), PolicyField::ConfigSvn);
    assert_eq!(r.mismatches()[0].actual(), "0");
    assert!(
        r.to_string().contains("config_svn expected 1234, actual 0"),
        "{r}"
    );
}

#[test]
fn occlums_demo_client_policy_accepts_a_debug_kms_with_the_same_signer() {
    // build_content.sh, update_client_init_ra_conf: only mr_signer and debuggable checked.
    let mut conf: Value = serde_json::from_slice(OCCLUM_INIT_RA_CONF).unwrap();
    let ra = &mut conf["ra_config"];
    for f in PolicyField::ALL {
        ra[f.switch()] = json!("off");
    }
    ra["verify_mr_signer"] = json!("on");
    ra["verify_enclave_debuggable"] = json!("on");
    ra["sgx_mrs"][0]["mr_signer"] = json!(SAMPLE_MR_SIGNER);
    ra["sgx_mrs"][0]["debuggable"] = json!(true);
    let policy = RaPolicy::from_value(&conf["ra_config"], "init_ra_conf.json").unwrap();
    assert!(policy.evaluate(&body_with(9, 9, 9, true)).is_ok());
    let mut other_signer = body_with(0, 0, 0, true);
    other_signer.mr_signer[0] ^= 1;
    assert_eq!(
        rejection(&policy, &other_signer).mismatches()[0].field(),
        PolicyField::MrSigner
    );
}

#[test]
fn occlums_default_init_template_accepts_a_production_kms_but_refuses_a_debug_one() {
    let conf: Value = serde_json::from_slice(OCCLUM_INIT_RA_CONF).unwrap();
    let policy = RaPolicy::from_value(&conf["ra_config"], "init_ra_conf.json").unwrap();
    assert_eq!(
        policy.evaluate(&sample_body()),
        Ok(PolicyMatch {
            index: 0,
            name: None
        })
    );
    // Occlum would accept this one; we do not (see the module docs).
    let r = rejection(&policy, &body_with(0, 0, 0, true));
    assert!(matches!(r, PolicyRejection::DebugEnclave { .. }), "{r:?}");
}
