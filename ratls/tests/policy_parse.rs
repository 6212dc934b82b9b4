//! Loading the measurement policy: Occlum's unchanged templates, our extensions, and every
//! rejection (each error names the file and the field).

use ratls::policy::{
    MAX_ENTRIES, MAX_GRACE_SECS, MAX_NAME_LEN, MAX_POLICY_LEN, PolicyError, RaPolicy, SvnRule,
    TcbStatus,
};
use serde_json::{Value, json};

const TEMPLATE: &[u8] = include_bytes!("../testdata/occlum/ra_config_template.json");
const README_TEMPLATE: &[u8] = include_bytes!("../testdata/occlum/ra_config_template_readme.json");
const EXAMPLE_TEMPLATE: &[u8] =
    include_bytes!("../testdata/occlum/example_ra_config_template.json");
const INIT_RA_CONF: &[u8] = include_bytes!("../testdata/occlum/init_ra_conf.json");
const MR: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";

/// A valid policy document (every switch on, one complete entry) to break in one place.
fn good() -> Value {
    json!({
        "verify_mr_enclave": "on",
        "verify_mr_signer": "on",
        "verify_isv_prod_id": "on",
        "verify_isv_svn": "on",
        "verify_config_svn": "on",
        "verify_enclave_debuggable": "on",
        "sgx_mrs": [{
            "mr_enclave": MR,
            "mr_signer": MR,
            "isv_prod_id": 1,
            "isv_svn": 2,
            "config_svn": 3,
            "debuggable": false
        }]
    })
}

fn load(doc: &Value) -> Result<RaPolicy, PolicyError> {
    RaPolicy::from_json(doc.to_string().as_bytes(), "p.json")
}

/// Asserts an `InvalidValue` error at `path` whose message names the path and the file.
fn assert_invalid_at(doc: &Value, path: &str) -> (String, String) {
    match load(doc) {
        Err(e @ PolicyError::InvalidValue { .. }) => {
            assert_eq!(e.path(), Some(path), "{e}");
            assert_eq!(e.file(), "p.json");
            let text = e.to_string();
            assert!(text.contains(path) && text.contains("p.json"), "{text}");
            let PolicyError::InvalidValue {
                expected, found, ..
            } = e
            else {
                unreachable!()
            };
            (expected, found)
        }
        other => panic!("expected InvalidValue at {path}, got {other:?}"),
    }
}

#[test]
fn occlums_ra_config_template_loads_unchanged() {
    let p = RaPolicy::from_json(TEMPLATE, "ra_config_template.json").unwrap();
    let c = p.checks();
    assert!(
        c.mr_enclave
            && c.mr_signer
            && c.isv_prod_id
            && c.isv_svn
            && c.config_svn
            && c.enclave_debuggable
    );
    let e = &p.entries()[0];
    assert_eq!(p.entries().len(), 1);
    assert_eq!((e.mr_enclave(), e.mr_signer()), (None, None));
    assert_eq!(
        (e.isv_prod_id(), e.isv_svn(), e.config_svn()),
        (Some(0), Some(SvnRule::Exact(0)), Some(0))
    );
    assert_eq!(e.debuggable(), Some(false));
    assert_eq!(p.tcb().accepted_statuses(), &[TcbStatus::UpToDate]);
    assert_eq!(p.tcb().grace_secs(), 0);
    // Loads, but the operator is told this entry cannot match until it is filled in.
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("sgx_mrs[0] can never match: mr_enclave, mr_signer")),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn the_seeds_template_with_other_loads_without_an_unknown_field_warning() {
    let text = std::str::from_utf8(README_TEMPLATE).unwrap();
    assert!(text.contains("\"other\" : []"));
    let p = RaPolicy::from_json(README_TEMPLATE, "ra_config_template.json").unwrap();
    assert_eq!(p.entries().len(), 1);
    assert!(
        !p.warnings().iter().any(|w| w.contains("other")),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn occlums_example_template_loads_with_config_svn_off() {
    let p = RaPolicy::from_json(EXAMPLE_TEMPLATE, "ra_config_template.json").unwrap();
    assert!(!p.checks().config_svn);
    assert!(p.checks().mr_enclave);
}

#[test]
fn occlums_init_ra_conf_template_embeds_a_policy_that_loads_from_its_value() {
    let conf: Value = serde_json::from_slice(INIT_RA_CONF).unwrap();
    let p = RaPolicy::from_value(&conf["ra_config"], "init_ra_conf.json").unwrap();
    let c = p.checks();
    assert!(
        !(c.mr_enclave
            || c.mr_signer
            || c.isv_prod_id
            || c.isv_svn
            || c.config_svn
            || c.enclave_debuggable)
    );
    assert_eq!(p.entries()[0].debuggable(), Some(true));
    let w = p.warnings().join("\n");
    assert!(w.contains("every measurement check is off"), "{w}");
    assert!(w.contains("debug enclaves are refused"), "{w}");
    assert_eq!(p.source(), "init_ra_conf.json");
}

#[test]
fn from_json_and_from_value_agree() {
    let doc = good();
    assert_eq!(
        load(&doc).unwrap(),
        RaPolicy::from_value(&doc, "p.json").unwrap()
    );
}

#[test]
fn a_missing_switch_means_on() {
    for switch in [
        "verify_mr_enclave",
        "verify_mr_signer",
        "verify_isv_prod_id",
        "verify_isv_svn",
        "verify_config_svn",
        "verify_enclave_debuggable",
    ] {
        let mut doc = good();
        for s in [
            "verify_mr_enclave",
            "verify_mr_signer",
            "verify_isv_prod_id",
            "verify_isv_svn",
        ] {
            doc[s] = json!("off");
        }
        doc["verify_config_svn"] = json!("off");
        doc["verify_enclave_debuggable"] = json!("off");
        doc.as_object_mut().unwrap().remove(switch);
        let c = load(&doc).unwrap().checks();
        let on = [
            c.mr_enclave,
            c.mr_signer,
            c.isv_prod_id,
            c.isv_svn,
            c.config_svn,
            c.enclave_debuggable,
        ];
        assert_eq!(on.iter().filter(|b| **b).count(), 1, "{switch} missing");
    }
}

#[test]
fn a_null_switch_counts_as_missing_and_means_on() {
    let mut doc = good();
    doc["verify_mr_enclave"] = Value::Null;
    assert!(load(&doc).unwrap().checks().mr_enclave);
}

#[test]
fn switch_spellings_other_than_on_and_off_are_errors_naming_the_switch() {
    for spelling in [
        json!("ON"),
        json!("Off"),
        json!("yes"),
        json!(true),
        json!(1),
        json!(""),
        json!("o"),
        json!("onward"),
    ] {
        let mut doc = good();
        doc["verify_isv_svn"] = spelling.clone();
        let (expected, found) = assert_invalid_at(&doc, "verify_isv_svn");
        assert_eq!(expected, "\"on\" or \"off\"");
        assert_eq!(found, spelling.to_string());
    }
}

#[test]
fn malformed_json_is_an_error_with_line_and_column() {
    let text = b"{\n  \"verify_mr_enclave\": \"on\"\n  \"sgx_mrs\": []\n}";
    match RaPolicy::from_json(text, "dynamic_config.json") {
        Err(e @ PolicyError::Json { .. }) => {
            let PolicyError::Json { line, column, .. } = &e else {
                unreachable!()
            };
            assert_eq!((*line, *column), (3, 3));
            let msg = e.to_string();
            assert!(
                msg.starts_with("policy dynamic_config.json: invalid JSON at line 3 column 3: "),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        RaPolicy::from_json(b"", "p.json"),
        Err(PolicyError::Json { .. })
    ));
    assert!(matches!(
        RaPolicy::from_json(b"{} trailing", "p.json"),
        Err(PolicyError::Json { .. })
    ));
    assert!(matches!(
        RaPolicy::from_json(b"\xff\xfe", "p.json"),
        Err(PolicyError::Json { .. })
    ));
}

#[test]
fn a_duplicate_key_is_refused_because_occlum_and_serde_would_read_it_differently() {
    let text =
        b"{\"verify_mr_enclave\": \"off\",\n\"verify_mr_enclave\": \"on\", \"sgx_mrs\": [{}]}";
    match RaPolicy::from_json(text, "p.json") {
        Err(PolicyError::Json { line, detail, .. }) => {
            assert_eq!(line, 2);
            assert!(
                detail.contains("duplicate key \"verify_mr_enclave\""),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = b"{\"sgx_mrs\": [{\"mr_enclave\": \"\", \"mr_enclave\": \"\"}]}";
    assert!(matches!(
        RaPolicy::from_json(text, "p.json"),
        Err(PolicyError::Json { .. })
    ));
}

#[test]
fn a_utf8_byte_order_mark_is_skipped_as_cjson_does() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(TEMPLATE);
    assert!(RaPolicy::from_json(&bytes, "p.json").is_ok());
}

#[test]
fn the_top_level_must_be_an_object() {
    assert_invalid_at(&json!([1, 2]), "(top level)");
    assert_invalid_at(&json!("on"), "(top level)");
}

#[test]
fn measurements_must_be_64_hex_digits_or_empty() {
    let cases = [
        (json!("33d8"), "(4 hex digits)"),
        (json!(format!("{MR}00")), "(66 hex digits)"),
        (
            json!(format!("0x{}", &MR[2..])),
            "non-hex character 'x' at position 1",
        ),
        (
            json!(format!("{} ", &MR[1..])),
            "non-hex character ' ' at position 63",
        ),
        (
            json!(MR.replace('3', "g")),
            "non-hex character 'g' at position 0",
        ),
        (json!(42), "42"),
        (json!([]), "[]"),
    ];
    for field in ["mr_enclave", "mr_signer"] {
        for (value, found_part) in &cases {
            let mut doc = good();
            doc["sgx_mrs"][0][field] = value.clone();
            let (expected, found) = assert_invalid_at(&doc, &format!("sgx_mrs[0].{field}"));
            assert_eq!(expected, "64 hex digits, or \"\" for unset");
            assert!(
                found.contains(found_part),
                "{found} should contain {found_part}"
            );
        }
    }
}

#[test]
fn measurements_are_case_insensitive() {
    let mut doc = good();
    doc["sgx_mrs"][0]["mr_enclave"] = json!(MR.to_ascii_uppercase());
    let p = load(&doc).unwrap();
    assert_eq!(hex::encode(p.entries()[0].mr_enclave().unwrap()), MR);
}

#[test]
fn numbers_must_be_integers_from_0_to_65535() {
    for field in ["isv_prod_id", "isv_svn", "isv_svn_min", "config_svn"] {
        for bad in [json!(65536), json!(-1), json!(1.5), json!("1"), json!(true)] {
            let mut doc = good();
            if field == "isv_svn_min" {
                doc["sgx_mrs"][0].as_object_mut().unwrap().remove("isv_svn");
            }
            doc["sgx_mrs"][0][field] = bad.clone();
            let (expected, found) = assert_invalid_at(&doc, &format!("sgx_mrs[0].{field}"));
            assert_eq!(expected, "an integer from 0 to 65535");
            assert_eq!(found, bad.to_string());
        }
        let mut doc = good();
        doc["sgx_mrs"][0][field] = json!(65535);
        if field == "isv_svn_min" {
            doc["sgx_mrs"][0].as_object_mut().unwrap().remove("isv_svn");
        }
        assert!(load(&doc).is_ok(), "{field} = 65535");
    }
}

#[test]
fn debuggable_must_be_a_boolean() {
    for bad in [json!("true"), json!(1), json!("on")] {
        let mut doc = good();
        doc["sgx_mrs"][0]["debuggable"] = bad;
        assert_invalid_at(&doc, "sgx_mrs[0].debuggable");
    }
}

#[test]
fn sgx_mrs_must_be_a_non_empty_list_of_objects() {
    let mut doc = good();
    doc.as_object_mut().unwrap().remove("sgx_mrs");
    match load(&doc) {
        Err(e @ PolicyError::MissingField { .. }) => assert_eq!(e.path(), Some("sgx_mrs")),
        other => panic!("{other:?}"),
    }
    for bad in [json!([]), json!({}), json!("x")] {
        let mut doc = good();
        doc["sgx_mrs"] = bad;
        assert_invalid_at(&doc, "sgx_mrs");
    }
    let mut doc = good();
    doc["sgx_mrs"] = json!([good()["sgx_mrs"][0].clone(), "kms"]);
    assert_invalid_at(&doc, "sgx_mrs[1]");
}

#[test]
fn errors_in_later_entries_name_their_index() {
    let mut doc = good();
    let mut second = doc["sgx_mrs"][0].clone();
    second["mr_enclave"] = json!("abc");
    doc["sgx_mrs"] = json!([doc["sgx_mrs"][0].clone(), second]);
    assert_invalid_at(&doc, "sgx_mrs[1].mr_enclave");
}

#[test]
fn more_than_max_entries_is_refused_and_max_entries_is_fine() {
    let entry = good()["sgx_mrs"][0].clone();
    let mut doc = good();
    doc["sgx_mrs"] = Value::Array(vec![entry.clone(); MAX_ENTRIES]);
    assert_eq!(load(&doc).unwrap().entries().len(), MAX_ENTRIES);
    doc["sgx_mrs"] = Value::Array(vec![entry; MAX_ENTRIES + 1]);
    assert!(matches!(
        load(&doc),
        Err(PolicyError::TooManyEntries { count, max: MAX_ENTRIES, .. }) if count == MAX_ENTRIES + 1
    ));
}

#[test]
fn a_file_over_max_policy_len_is_refused_before_parsing() {
    let mut text = good().to_string().into_bytes();
    text.resize(MAX_POLICY_LEN, b' ');
    assert!(RaPolicy::from_json(&text, "p.json").is_ok());
    text.push(b' ');
    assert_eq!(
        RaPolicy::from_json(&text, "p.json"),
        Err(PolicyError::TooLarge {
            file: "p.json".into(),
            len: MAX_POLICY_LEN + 1,
            max: MAX_POLICY_LEN
        })
    );
}

#[test]
fn isv_svn_and_isv_svn_min_together_are_a_conflict() {
    let mut doc = good();
    doc["sgx_mrs"][0]["isv_svn_min"] = json!(3);
    match load(&doc) {
        Err(e @ PolicyError::Conflict { .. }) => {
            assert_eq!(e.path(), Some("sgx_mrs[0]"));
            assert!(e.to_string().contains("choose one"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    doc["sgx_mrs"][0].as_object_mut().unwrap().remove("isv_svn");
    assert_eq!(
        load(&doc).unwrap().entries()[0].isv_svn(),
        Some(SvnRule::AtLeast(3))
    );
}

#[test]
fn entry_names_must_be_unique_short_strings() {
    let mut doc = good();
    let mut a = doc["sgx_mrs"][0].clone();
    a["name"] = json!("app");
    doc["sgx_mrs"] = json!([a.clone(), a]);
    match load(&doc) {
        Err(e @ PolicyError::Conflict { .. }) => assert_eq!(e.path(), Some("sgx_mrs[1].name")),
        other => panic!("{other:?}"),
    }
    for bad in [
        json!(""),
        json!("x".repeat(MAX_NAME_LEN + 1)),
        json!("a\nb"),
        json!(7),
    ] {
        let mut doc = good();
        doc["sgx_mrs"][0]["name"] = bad;
        assert_invalid_at(&doc, "sgx_mrs[0].name");
    }
    let mut doc = good();
    doc["sgx_mrs"][0]["name"] = json!("x".repeat(MAX_NAME_LEN));
    assert!(load(&doc).is_ok());
}

#[test]
fn the_default_tcb_policy_accepts_up_to_date_only() {
    let p = load(&good()).unwrap();
    let tcb = p.tcb();
    assert!(tcb.accepts_status("UpToDate"));
    assert!(!tcb.accepts_status("SWHardeningNeeded"));
    assert!(!tcb.accepts_status("ConfigurationAndSWHardeningNeeded"));
    assert!(!tcb.accepts_status("Revoked"));
    assert!(!tcb.accepts_status("uptodate"));
    assert_eq!(tcb.rejected_advisory(&["INTEL-SA-00289".to_owned()]), None);
}

#[test]
fn listed_tcb_statuses_are_accepted_and_others_are_not() {
    let mut doc = good();
    doc["tcb_statuses"] = json!(["SWHardeningNeeded", "UpToDate", "SWHardeningNeeded"]);
    let p = load(&doc).unwrap();
    assert_eq!(
        p.tcb().accepted_statuses(),
        &[TcbStatus::UpToDate, TcbStatus::SwHardeningNeeded]
    );
    assert!(p.tcb().accepts_status("SWHardeningNeeded"));
    assert!(!p.tcb().accepts_status("OutOfDate"));
    let mut doc = good();
    doc["tcb_statuses"] = json!(
        TcbStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
    );
    let p = load(&doc).unwrap();
    for s in TcbStatus::ALL {
        assert!(p.tcb().accepts_status(s.as_str()), "{s}");
    }
    assert!(!p.tcb().accepts_status("Revoked"));
}

#[test]
fn revoked_in_tcb_statuses_is_an_error() {
    let mut doc = good();
    doc["tcb_statuses"] = json!(["UpToDate", "Revoked"]);
    match load(&doc) {
        Err(e @ PolicyError::RevokedAccepted { .. }) => {
            assert_eq!(e.path(), Some("tcb_statuses[1]"));
            assert!(
                e.to_string().contains("\"Revoked\" can never be accepted"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_tcb_status_names_are_errors_listing_the_valid_ones() {
    for bad in [json!("uptodate"), json!("Up To Date"), json!(""), json!(1)] {
        let mut doc = good();
        doc["tcb_statuses"] = json!([bad]);
        let (expected, _) = assert_invalid_at(&doc, "tcb_statuses[0]");
        assert!(
            expected.contains("OutOfDateConfigurationNeeded"),
            "{expected}"
        );
    }
    for bad in [json!([]), json!("UpToDate")] {
        let mut doc = good();
        doc["tcb_statuses"] = bad;
        assert_invalid_at(&doc, "tcb_statuses");
    }
}

#[test]
fn rejected_advisories_match_case_insensitively() {
    let mut doc = good();
    doc["reject_advisories"] = json!(["intel-sa-00615", "INTEL-SA-00334"]);
    let p = load(&doc).unwrap();
    let ids = vec!["INTEL-SA-00289".to_owned(), "INTEL-SA-00615".to_owned()];
    assert_eq!(p.tcb().rejected_advisory(&ids), Some("INTEL-SA-00615"));
    assert_eq!(p.tcb().rejected_advisory(&ids[..1]), None);
    assert_eq!(p.tcb().rejected_advisory(&[]), None);
}

#[test]
fn malformed_advisory_ids_are_errors() {
    for bad in [
        json!("SA-00615"),
        json!("INTEL-SA-615"),
        json!("INTEL-SA-00615 "),
        json!(615),
    ] {
        let mut doc = good();
        doc["reject_advisories"] = json!(["INTEL-SA-00289", bad]);
        assert_invalid_at(&doc, "reject_advisories[1]");
    }
    let mut doc = good();
    doc["reject_advisories"] = json!("INTEL-SA-00289");
    assert_invalid_at(&doc, "reject_advisories");
}

#[test]
fn collateral_grace_is_bounded_seconds() {
    let mut doc = good();
    doc["collateral_grace_secs"] = json!(3600);
    assert_eq!(load(&doc).unwrap().tcb().grace_secs(), 3600);
    doc["collateral_grace_secs"] = json!(MAX_GRACE_SECS);
    assert_eq!(load(&doc).unwrap().tcb().grace_secs(), MAX_GRACE_SECS);
    for bad in [
        json!(MAX_GRACE_SECS + 1),
        json!(-1),
        json!("3600"),
        json!(1.5),
    ] {
        doc["collateral_grace_secs"] = bad;
        assert_invalid_at(&doc, "collateral_grace_secs");
    }
}

#[test]
fn unknown_fields_are_tolerated_and_reported() {
    let mut doc = good();
    doc["verify_mr_enclav"] = json!("off");
    doc["sgx_mrs"][0]["mrsigner"] = json!("");
    let p = load(&doc).unwrap();
    // The misspelled switch did not turn anything off.
    assert!(p.checks().mr_enclave);
    let w = p.warnings().join("\n");
    assert!(
        w.contains("unknown field \"verify_mr_enclav\" ignored"),
        "{w}"
    );
    assert!(
        w.contains("sgx_mrs[0]: unknown field \"mrsigner\" ignored"),
        "{w}"
    );
}

#[test]
fn a_complete_policy_has_no_warnings_and_a_one_line_summary() {
    let p = load(&good()).unwrap();
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    let s = p.to_string();
    assert!(s.starts_with("policy p.json: checks mr_enclave, mr_signer, isv_prod_id, isv_svn, config_svn, debuggable;"), "{s}");
    assert!(s.contains("tcb statuses UpToDate"), "{s}");
}

#[test]
fn a_policy_that_does_not_pin_mr_enclave_warns_that_any_same_signer_enclave_passes() {
    let mut doc = good();
    doc["verify_mr_enclave"] = json!("off");
    let p = load(&doc).unwrap();
    let w = p.warnings().join("\n");
    assert!(
        w.contains("SECURITY: verify_mr_enclave is \"off\"") && w.contains("same mr_signer"),
        "{w}"
    );
    // Pinned again, the warning goes away.
    assert!(load(&good()).unwrap().warnings().is_empty());
}
