//! The release decision end to end: the real `kms` on loopback with a simulated platform, a
//! grpcio client presenting RA-TLS certificates minted on that platform. Every rejection is
//! its own test, releases nothing, is audited, and leaves no secret value in any log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use grpcio::RpcStatusCode;
use sgx_sim::{Identity, TcbStatus};

/// Asserts that a refused client got none of the secrets, that the refusal was audited with
/// the check's name, and that the logs are clean.
fn refused_everything(fx: &Fixture, identity: &Identity, code: RpcStatusCode, needle: &str) {
    let client = fx.client(identity);
    for (name, _, _) in secrets() {
        assert_refused(client.get(name), code, needle);
    }
    let rec = fx
        .kms
        .wait_audit(|r| r["event"] == "refusal" && r["status"] == code_str(code));
    assert_eq!(rec["verdict"], "rejected");
    assert!(rec["reason"].as_str().unwrap().contains(needle), "{rec}");
    assert!(
        fx.kms.audit().iter().all(|r| r["event"] != "release"),
        "nothing may be released"
    );
    assert_logs_clean(&fx.kms, &secrets());
}

fn code_str(code: RpcStatusCode) -> &'static str {
    match code {
        RpcStatusCode::UNAUTHENTICATED => "UNAUTHENTICATED",
        RpcStatusCode::PERMISSION_DENIED => "PERMISSION_DENIED",
        RpcStatusCode::NOT_FOUND => "NOT_FOUND",
        RpcStatusCode::INVALID_ARGUMENT => "INVALID_ARGUMENT",
        _ => "OTHER",
    }
}

#[test]
fn an_allowed_client_gets_every_secret_byte_exact_over_one_connection() {
    let fx = Fixture::start("allowed");
    let client = fx.client(&fx.app);
    for (name, value, allow) in secrets() {
        if allow.as_ref().is_some_and(|a| !a.contains(&"app")) {
            continue;
        }
        assert_eq!(client.get_decoded(name).unwrap(), value, "{name}");
    }
    // Again on the same connection: served from the verification cache.
    assert_eq!(client.get_decoded("image_key").unwrap(), secrets()[2].1);

    let audit = fx.kms.audit();
    let attestations: Vec<_> = audit
        .iter()
        .filter(|r| r["event"] == "attestation")
        .collect();
    assert_eq!(
        attestations.len(),
        1,
        "one certificate, one verification: {audit:#?}"
    );
    let att = attestations[0];
    assert_eq!(att["verdict"], "ok");
    assert_eq!(att["mr_enclave"], hex::encode(fx.app.mr_enclave));
    assert_eq!(att["mr_signer"], hex::encode(fx.app.mr_signer));
    assert_eq!(att["isv_prod_id"], 3);
    assert_eq!(att["isv_svn"], 88);
    assert_eq!(att["config_svn"], 1234);
    assert_eq!(att["tcb_status"], "UpToDate");
    assert_eq!(att["matched"], "app");
    assert!(att["peer"].as_str().unwrap().contains("127.0.0.1"), "{att}");
    let releases: Vec<_> = audit.iter().filter(|r| r["event"] == "release").collect();
    assert_eq!(releases.len(), 5);
    assert!(
        releases
            .iter()
            .all(|r| r["verdict"] == "ok" && r["matched"] == "app")
    );
    assert!(releases.iter().any(|r| r["secret"] == "image_key"));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_second_entry_gets_its_own_secrets_and_not_the_others() {
    let fx = Fixture::start("tool");
    let mut newer = fx.tool.clone();
    newer.isv_svn = fx.tool.isv_svn + 3; // above the minimum is fine
    let client = fx.client(&newer);
    assert_eq!(
        client.get_decoded("tool_only").unwrap(),
        b"zq-tool-only-secret-5521"
    );
    assert_eq!(client.get_decoded("flask_key").unwrap(), secrets()[1].1);
    assert_refused(
        client.get("image_key"),
        RpcStatusCode::PERMISSION_DENIED,
        "\"tool\"",
    );
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn an_acl_denies_a_secret_to_other_entries() {
    let fx = Fixture::start("acl");
    let client = fx.client(&fx.app);
    assert_refused(
        client.get("tool_only"),
        RpcStatusCode::PERMISSION_DENIED,
        "not released to sgx_mrs entry \"app\"",
    );
    let rec = fx.kms.wait_audit(|r| r["status"] == "PERMISSION_DENIED");
    assert_eq!(rec["secret"], "tool_only");
    assert_eq!(rec["matched"], "app");
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn an_unknown_secret_is_not_found_and_named() {
    let fx = Fixture::start("unknown");
    let client = fx.client(&fx.app);
    assert_refused(
        client.get("no_such_secret"),
        RpcStatusCode::NOT_FOUND,
        "no secret named \"no_such_secret\"",
    );
    fx.kms
        .wait_audit(|r| r["status"] == "NOT_FOUND" && r["secret"] == "no_such_secret");
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_wrong_mr_enclave_is_refused() {
    let fx = Fixture::start("mrenclave");
    let mut id = fx.app.clone();
    id.mr_enclave[0] ^= 1;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "mr_enclave");
}

#[test]
fn a_wrong_mr_signer_is_refused() {
    let fx = Fixture::start("mrsigner");
    let mut id = fx.app.clone();
    id.mr_signer[31] ^= 0x80;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "mr_signer");
}

#[test]
fn a_wrong_isv_prod_id_is_refused() {
    let fx = Fixture::start("prodid");
    let mut id = fx.app.clone();
    id.isv_prod_id = 4;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "isv_prod_id");
}

#[test]
fn an_isv_svn_other_than_the_exact_one_is_refused() {
    let fx = Fixture::start("svn-exact");
    let mut id = fx.app.clone();
    id.isv_svn = 89; // higher is not equal: the app entry pins isv_svn exactly
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "isv_svn");
}

#[test]
fn an_isv_svn_below_the_minimum_is_refused() {
    let fx = Fixture::start("svn-min");
    let mut id = fx.tool.clone();
    id.isv_svn = fx.tool.isv_svn - 1;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "isv_svn");
}

#[test]
fn a_wrong_config_svn_is_refused() {
    let fx = Fixture::start("configsvn");
    let mut id = fx.app.clone();
    id.config_svn = 1235;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "config_svn");
}

#[test]
fn a_debug_enclave_is_refused_when_the_policy_does_not_allow_it() {
    let fx = Fixture::start("debug");
    let mut id = fx.app.clone();
    id.debuggable = true;
    refused_everything(&fx, &id, RpcStatusCode::UNAUTHENTICATED, "debug");
}

#[test]
fn a_certificate_without_a_quote_is_refused() {
    let fx = Fixture::start("noquote");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let plain = ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    let client = GrpcClient::connect(&fx.kms, Some(&plain));
    for (name, _, _) in secrets() {
        assert_refused(client.get(name), RpcStatusCode::UNAUTHENTICATED, "evidence");
    }
    let rec = fx.kms.wait_audit(|r| r["event"] == "attestation");
    assert_eq!(rec["verdict"], "rejected");
    assert!(fx.kms.audit().iter().all(|r| r["event"] != "release"));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_quote_bound_to_another_key_is_refused() {
    let fx = Fixture::start("binding");
    // A genuine quote for the allowed app, lifted into a certificate for a different key.
    let source = sgx_sim::SimQuoteSource {
        platform: fx.sim.platform.clone(),
        identity: fx.app.clone(),
    };
    let genuine = ratls::cert::RaTlsIdentity::mint(&source).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Occlum RA-TLS");
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 2, 840, 113741, 1],
        genuine.quote().to_vec(),
    )];
    let forged = params.self_signed(&key).unwrap();
    let cert = ClientCert {
        cert_pem: forged.pem(),
        key_pem: key.serialize_pem(),
    };
    let client = GrpcClient::connect(&fx.kms, Some(&cert));
    for (name, _, _) in secrets() {
        assert_refused(client.get(name), RpcStatusCode::UNAUTHENTICATED, "binding");
    }
    // The audit names the enclave that the lifted quote claims.
    let rec = fx.kms.wait_audit(|r| r["event"] == "attestation");
    assert_eq!(rec["verdict"], "rejected");
    assert_eq!(rec["mr_enclave"], hex::encode(fx.app.mr_enclave));
    assert!(fx.kms.audit().iter().all(|r| r["event"] != "release"));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_quote_from_another_platform_root_is_refused() {
    let fx = Fixture::start("otherroot");
    let other_dir = temp_dir("otherroot-platform");
    let other = Sim::good(&other_dir);
    let client = GrpcClient::connect(&fx.kms, Some(&other.client(&fx.app)));
    for (name, _, _) in secrets() {
        assert_refused(
            client.get(name),
            RpcStatusCode::UNAUTHENTICATED,
            "dcap-signature",
        );
    }
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn a_revoked_pck_is_refused() {
    let fx = Fixture::start_with("revoked", |o| o.revoke_pck = true, Vec::new());
    let app = fx.app.clone();
    refused_everything(&fx, &app, RpcStatusCode::UNAUTHENTICATED, "revocation");
}

#[test]
fn an_out_of_date_tcb_is_refused() {
    let fx = Fixture::start_with(
        "outofdate",
        |o| o.tcb_status = TcbStatus::OutOfDate,
        Vec::new(),
    );
    let app = fx.app.clone();
    refused_everything(&fx, &app, RpcStatusCode::UNAUTHENTICATED, "OutOfDate");
}

#[test]
fn expired_collateral_is_refused() {
    let now = sgx_sim::timefmt::unix_now();
    let fx = Fixture::start_with(
        "expired",
        |o| {
            o.not_before = now - 40 * 86_400;
            o.not_after = now - 86_400;
        },
        Vec::new(),
    );
    let app = fx.app.clone();
    refused_everything(
        &fx,
        &app,
        RpcStatusCode::UNAUTHENTICATED,
        "collateral-expiry",
    );
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let fx = Fixture::start("nocert");
    let client = GrpcClient::connect(&fx.kms, None);
    for (name, _, _) in secrets() {
        assert_refused(
            client.get(name),
            RpcStatusCode::UNAUTHENTICATED,
            "no client certificate",
        );
    }
    let rec = fx.kms.wait_audit(|r| r["event"] == "refusal");
    assert_eq!(rec["status"], "UNAUTHENTICATED");
    assert!(fx.kms.audit().iter().all(|r| r["event"] != "release"));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn malformed_requests_are_invalid_arguments_after_authentication() {
    let fx = Fixture::start("malformed");
    let client = fx.client(&fx.app);
    for body in [
        vec![0x0a, 0x05, b'a'],
        vec![0x0b],
        vec![0x08, 0x01],
        vec![0x0a, 0x02, 0xc3, 0x28],
    ] {
        assert_refused(
            client.call_raw(&GET_SECRET, body),
            RpcStatusCode::INVALID_ARGUMENT,
            "malformed request",
        );
    }
    // The same bytes from an unauthenticated peer say nothing about the request.
    let anonymous = GrpcClient::connect(&fx.kms, None);
    assert_refused(
        anonymous.call_raw(&GET_SECRET, vec![0x0b]),
        RpcStatusCode::UNAUTHENTICATED,
        "",
    );
    // An unknown field is skipped, not an error.
    let mut body = vec![0x10, 0x01];
    body.extend(encode_field1(b"flask_key"));
    let reply = decode_field1(&client.call_raw(&GET_SECRET, body).unwrap());
    assert!(reply.starts_with(b"\""));
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn the_health_service_reports_serving_without_a_client_certificate() {
    let fx = Fixture::start("health");
    let anonymous = GrpcClient::connect(&fx.kms, None);
    assert_eq!(
        anonymous.call_raw(&HEALTH_CHECK, Vec::new()).unwrap(),
        vec![0x08, 0x01]
    );
    assert_eq!(
        anonymous
            .call_raw(&HEALTH_CHECK, encode_field1(b"ratls.GrSecret"))
            .unwrap(),
        vec![0x08, 0x01]
    );
    assert_refused(
        anonymous.call_raw(&HEALTH_CHECK, encode_field1(b"nope")),
        RpcStatusCode::NOT_FOUND,
        "nope",
    );
}

#[test]
fn the_bare_reply_form_sends_base64_without_quotes() {
    let fx = Fixture::start_with("bare", |_| {}, vec!["--reply-form".into(), "bare".into()]);
    let client = fx.client(&fx.app);
    let text = client.get("flask_key").unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap(),
        secrets()[1].1
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut fx = Fixture::start("sigterm");
    let status = fx.kms.stop();
    assert!(status.success(), "{status:?}");
    let audit = fx.kms.audit();
    assert_eq!(audit.first().unwrap()["event"], "chain_start");
    assert_eq!(audit[1]["event"], "start");
    assert_eq!(audit.last().unwrap()["event"], "stop");
}
