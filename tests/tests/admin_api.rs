//! End to end, host mode: the admin API of the real `kms`, driven by the real `kms admin` CLI,
//! with the musl `init` booting against it. An admitted operator's change reaches init's next
//! boot and survives a restart (sealed file); a key that is not pinned, a stale version, a
//! policy the reload checks refuse, plain secrets, and a KMS that fails attestation are all
//! refused, and every admin action is in the audit log without any value. SIMULATED platform.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e_tests::{Deployment, Kms, audit_records, kms_bin, run, run_ok, write_json};
use serde_json::{Value, json};

const FLASK_KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nold key\n-----END PRIVATE KEY-----\n";
const NEW_KEY: &[u8] =
    b"-----BEGIN PRIVATE KEY-----\nrotated by alice\n-----END PRIVATE KEY-----\n";

/// A running `kms serve` with the admin API, killed on drop.
struct AdminKms {
    kms: Kms,
    /// Where the admin API listens.
    admin: String,
}

/// How the KMS holds its secrets.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Sealed,
    Plain,
}

/// An operator: certificate and key written by `kms admin keygen`, and its pinned entry.
struct Operator {
    cert: PathBuf,
    key: PathBuf,
    entry: Value,
}

fn keygen(d: &Deployment, name: &str) -> Operator {
    let cert = d.path(&format!("{name}.crt"));
    let key = d.path(&format!("{name}.key"));
    let out = run_ok(
        Command::new(kms_bin())
            .args(["admin", "keygen", "--name", name])
            .arg("--out-cert")
            .arg(&cert)
            .arg("--out-key")
            .arg(&key),
    );
    let entry: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(entry["name"], name);
    Operator { cert, key, entry }
}

/// A deployment whose KMS policy names the app's entry "app", so ACLs can name it.
fn deployment() -> Deployment {
    let d = Deployment::new(&[("flask_key", "/etc/flask.key", FLASK_KEY)]);
    let mut entry = d.app_id.sgx_mrs_entry();
    entry["name"] = json!("app");
    let mut policy = d.app_id.policy();
    policy["sgx_mrs"] = json!([entry]);
    write_json(&d.path("kms/ra_config.json"), &policy);
    // The policy `kms admin` verifies the KMS enclave with.
    write_json(&d.path("kms_policy.json"), &d.kms_id.policy());
    run_ok(
        Command::new(kms_bin())
            .args(["gen-seal-key", "--out"])
            .arg(d.path("kms/seal.key")),
    );
    run_ok(
        Command::new(kms_bin())
            .arg("seal")
            .arg("--seal-key-file")
            .arg(d.path("kms/seal.key"))
            .arg("--in")
            .arg(d.path("kms/secrets.json"))
            .arg("--out")
            .arg(d.path("kms/secrets.sealed")),
    );
    d
}

fn operators_file(d: &Deployment, ops: &[&Operator]) -> PathBuf {
    let path = d.path("kms/kms_operators.json");
    let list: Vec<Value> = ops.iter().map(|o| o.entry.clone()).collect();
    write_json(&path, &json!({ "operators": list }));
    path
}

fn start(d: &Deployment, store: Store, operators: Option<&Path>) -> AdminKms {
    let mut args: Vec<&OsStr> = vec![
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--ra-config".as_ref(),
    ];
    let (ra_config, audit_log) = (d.path("kms/ra_config.json"), d.path("kms/audit.log"));
    let (sealed, seal_key, plain) = (
        d.path("kms/secrets.sealed"),
        d.path("kms/seal.key"),
        d.path("kms/secrets.json"),
    );
    args.extend([
        ra_config.as_os_str(),
        "--sim-platform".as_ref(),
        d.sim.dir.as_os_str(),
    ]);
    args.extend(["--sim-identity".as_ref(), d.kms_identity.as_os_str()]);
    args.extend(["--audit-log".as_ref(), audit_log.as_os_str()]);
    match store {
        Store::Sealed => args.extend([
            "--sealed-secrets".as_ref(),
            sealed.as_os_str(),
            "--seal-key-file".as_ref(),
            seal_key.as_os_str(),
        ]),
        Store::Plain => args.extend(["--secrets".as_ref(), plain.as_os_str()]),
    }
    if let Some(ops) = operators {
        args.extend(["--admin-operators".as_ref(), ops.as_os_str()]);
    }
    let kms = Kms::spawn(&kms_bin(), &d.path("kms"), &args);
    let admin = kms
        .admin_addr()
        .unwrap_or_else(|| panic!("no admin line in stderr:\n{}", kms.stderr()));
    AdminKms { kms, admin }
}

/// `kms admin <op> <args>` as `op`erator against `kms`.
fn admin(d: &Deployment, kms: &AdminKms, who: &Operator, args: &[&str]) -> Output {
    run(Command::new(kms_bin())
        .arg("admin")
        .args(args)
        .args(["--kms", &kms.admin])
        .arg("--cert")
        .arg(&who.cert)
        .arg("--key")
        .arg(&who.key)
        .arg("--ra-config")
        .arg(d.path("kms_policy.json"))
        .arg("--sim-platform")
        .arg(&d.sim.dir))
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "kms admin failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn refused(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected a refusal: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}: {err}"
        );
    }
    err
}

/// Boots init against `kms` and returns the flask key it wrote into the rootfs.
fn boot(d: &Deployment, kms: &AdminKms) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(d.rootfs());
    d.run_init(&kms.kms.addr, &[], &[]).expect_code(0);
    std::fs::read(d.rootfs().join("etc/flask.key")).unwrap()
}

fn admin_records(d: &Deployment) -> Vec<Value> {
    audit_records(&d.path("kms/audit.log"))
        .into_iter()
        .filter(|r| {
            r["event"] == "admin"
                || r["reason"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("admin "))
        })
        .collect()
}

fn assert_no_value_in_logs(d: &Deployment, kms: &AdminKms) {
    use base64::Engine as _;
    let audit = std::fs::read_to_string(d.path("kms/audit.log")).unwrap();
    let stderr = kms.kms.stderr();
    for value in [FLASK_KEY, NEW_KEY] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let text = String::from_utf8_lossy(value);
        for log in [&audit, &stderr] {
            assert!(!log.contains(&b64) && !log.contains(text.as_ref()));
        }
    }
}

#[test]
fn an_admitted_operators_change_reaches_inits_next_boot_and_survives_a_restart() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Sealed, Some(&ops));
    assert_eq!(boot(&d, &kms), FLASK_KEY);

    let before = ok(&admin(&d, &kms, &alice, &["status"]));
    assert_eq!(before["operator"], "alice");
    assert_eq!(
        before["secrets"],
        json!([{"name": "flask_key"}, {"name": "image_key"}])
    );
    std::fs::write(d.path("new.key"), NEW_KEY).unwrap();
    let new_key = d.path("new.key").display().to_string();
    let args = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
        "--allow",
        "app",
    ];
    let reply = ok(&admin(&d, &kms, &alice, &args));
    assert_ne!(reply["version"], before["version"]);
    assert_eq!(
        boot(&d, &kms),
        NEW_KEY,
        "init's next boot gets the new value"
    );

    // Audited with the operator, the fingerprint, the op and the versions; never the value.
    let records = admin_records(&d);
    let put = records
        .iter()
        .find(|r| r["secret"] == "flask_key")
        .unwrap_or_else(|| panic!("no put_secret record: {records:?}"));
    let reason = put["reason"].as_str().unwrap();
    assert_eq!(put["verdict"], "ok");
    assert!(
        reason.starts_with("put_secret by operator \"alice\""),
        "{reason}"
    );
    assert!(
        reason.contains(alice.entry["spki_sha256"].as_str().unwrap()),
        "{reason}"
    );
    assert!(
        reason.contains(before["version"].as_str().unwrap()),
        "{reason}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["reason"].as_str().unwrap().starts_with("status by"))
    );
    let log = ok(&admin(&d, &kms, &alice, &["log"]));
    assert!(
        log["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("put_secret"))
    );
    assert_no_value_in_logs(&d, &kms);

    // The change was sealed to the secrets file: a restarted KMS serves it.
    drop(kms);
    let kms = start(&d, Store::Sealed, Some(&ops));
    assert_eq!(boot(&d, &kms), NEW_KEY, "the change survives a restart");
    let after = ok(&admin(&d, &kms, &alice, &["status"]));
    assert_eq!(
        after["secrets"][0],
        json!({"name": "flask_key", "allow": ["app"]})
    );
    assert_ne!(
        after["version"], reply["version"],
        "versions do not repeat across restarts"
    );
}

#[test]
fn an_operator_key_not_pinned_in_the_kms_is_refused_and_audited() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let mallory = keygen(&d, "mallory");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Sealed, Some(&ops));
    std::fs::write(d.path("new.key"), NEW_KEY).unwrap();
    let new_key = d.path("new.key").display().to_string();
    let args = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
        "--base-version",
        "x",
    ];
    let fp = mallory.entry["spki_sha256"].as_str().unwrap();
    refused(
        &admin(&d, &kms, &mallory, &args),
        &["PERMISSION_DENIED", "is not pinned", fp],
    );
    refused(&admin(&d, &kms, &mallory, &["status"]), &["is not pinned"]);
    assert_eq!(boot(&d, &kms), FLASK_KEY, "nothing changed");
    let records = admin_records(&d);
    let refusal = records
        .iter()
        .find(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with("admin put_secret refused")
        })
        .unwrap_or_else(|| panic!("no refusal record: {records:?}"));
    assert_eq!(refusal["event"], "refusal");
    assert_eq!(refusal["status"], "PERMISSION_DENIED");
    assert!(refusal["reason"].as_str().unwrap().contains(fp));
    assert_no_value_in_logs(&d, &kms);
}

#[test]
fn a_policy_the_reload_checks_refuse_is_refused_whole_and_the_old_one_keeps_serving() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Sealed, Some(&ops));
    std::fs::write(d.path("new.key"), NEW_KEY).unwrap();
    let new_key = d.path("new.key").display().to_string();
    let put = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
        "--allow",
        "app",
    ];
    ok(&admin(&d, &kms, &alice, &put));
    let version = ok(&admin(&d, &kms, &alice, &["status"]))["version"].clone();
    let sealed = std::fs::read(d.path("kms/secrets.sealed")).unwrap();

    // Malformed: a measurement that is not 64 hex characters.
    let mut bad = d.app_id.policy();
    bad["sgx_mrs"][0]["mr_enclave"] = json!("zz");
    write_json(&d.path("bad.json"), &bad);
    let out = admin(
        &d,
        &kms,
        &alice,
        &[
            "set-policy",
            "--policy",
            d.path("bad.json").to_str().unwrap(),
        ],
    );
    refused(
        &out,
        &[
            "INVALID_ARGUMENT",
            "SetPolicy policy_json",
            "mr_enclave",
            "--policy",
        ],
    );
    // Valid alone, but the secrets' allow lists name "app", which it no longer has.
    write_json(&d.path("unnamed.json"), &d.app_id.policy());
    let out = admin(
        &d,
        &kms,
        &alice,
        &[
            "set-policy",
            "--policy",
            d.path("unnamed.json").to_str().unwrap(),
        ],
    );
    refused(&out, &["INVALID_ARGUMENT", "allow names \"app\""]);
    // An ACL naming no policy entry is refused the same way.
    let acl = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
        "--allow",
        "nosuch",
    ];
    refused(
        &admin(&d, &kms, &alice, &acl),
        &["INVALID_ARGUMENT", "nosuch"],
    );

    // Nothing was applied or persisted: same version, the old policy and value serve.
    assert_eq!(
        ok(&admin(&d, &kms, &alice, &["status"]))["version"],
        version
    );
    assert!(!d.path("kms/secrets.sealed.policy").exists());
    assert_eq!(std::fs::read(d.path("kms/secrets.sealed")).unwrap(), sealed);
    assert_eq!(boot(&d, &kms), NEW_KEY);
    let records = admin_records(&d);
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["verdict"] == "rejected")
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|r| r["event"] == "admin" && r["status"] == "INVALID_ARGUMENT")
    );

    // A good policy (the app's entry still named, one more entry) applies, is sealed next to
    // the secrets, and replaces the image's --ra-config from then on, restarts included.
    let mut good: Value =
        serde_json::from_slice(&std::fs::read(d.path("kms/ra_config.json")).unwrap()).unwrap();
    let mut extra = d.kms_id.sgx_mrs_entry();
    extra["name"] = json!("extra");
    good["sgx_mrs"].as_array_mut().unwrap().push(extra);
    write_json(&d.path("good.json"), &good);
    ok(&admin(
        &d,
        &kms,
        &alice,
        &[
            "set-policy",
            "--policy",
            d.path("good.json").to_str().unwrap(),
        ],
    ));
    assert!(d.path("kms/secrets.sealed.policy").exists());
    assert_eq!(boot(&d, &kms), NEW_KEY);
    drop(kms);
    let kms = start(&d, Store::Sealed, Some(&ops));
    let status = ok(&admin(&d, &kms, &alice, &["status"]));
    assert_eq!(status["policy_entries"], json!(["app", "extra"]));
    assert_eq!(boot(&d, &kms), NEW_KEY);
}

#[test]
fn a_change_made_against_a_stale_version_is_refused_with_the_current_one() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Sealed, Some(&ops));
    let v1 = ok(&admin(&d, &kms, &alice, &["status"]))["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let args = [
        "delete-secret",
        "--name",
        "flask_key",
        "--base-version",
        &v1,
    ];
    let v2 = ok(&admin(&d, &kms, &alice, &args))["version"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same request again (a replay) names a version that is gone.
    std::fs::write(d.path("new.key"), NEW_KEY).unwrap();
    let new_key = d.path("new.key").display().to_string();
    let put = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
        "--base-version",
        &v1,
    ];
    let err = refused(&admin(&d, &kms, &alice, &put), &["ABORTED", &v1, &v2]);
    assert!(!err.contains("rotated by alice"));
    let status = ok(&admin(&d, &kms, &alice, &["status"]));
    assert_eq!(status["version"], v2.as_str());
    assert_eq!(status["secrets"], json!([{"name": "image_key"}]));
    let records = admin_records(&d);
    assert!(
        records
            .iter()
            .any(|r| r["status"] == "ABORTED" && r["secret"] == "flask_key")
    );
}

#[test]
fn without_pinned_operators_every_admin_call_is_refused() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let kms = start(&d, Store::Sealed, None);
    refused(
        &admin(&d, &kms, &alice, &["status"]),
        &["PERMISSION_DENIED", "disabled", "--admin-operators"],
    );
    let records = admin_records(&d);
    assert!(
        records.iter().any(|r| r["status"] == "PERMISSION_DENIED"),
        "{records:?}"
    );
}

#[test]
fn with_plain_secrets_writes_are_refused_naming_the_knob_and_reads_work() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Plain, Some(&ops));
    let status = ok(&admin(&d, &kms, &alice, &["status"]));
    assert!(
        status["writes_refused"]
            .as_str()
            .unwrap()
            .contains("--sealed-secrets")
    );
    let out = admin(&d, &kms, &alice, &["delete-secret", "--name", "flask_key"]);
    refused(
        &out,
        &["FAILED_PRECONDITION", "plain secrets", "--sealed-secrets"],
    );
    assert_eq!(boot(&d, &kms), FLASK_KEY);
}

#[test]
fn the_cli_sends_nothing_to_a_kms_that_fails_attestation() {
    let d = deployment();
    let alice = keygen(&d, "alice");
    let ops = operators_file(&d, &[&alice]);
    let kms = start(&d, Store::Sealed, Some(&ops));
    // The operator expects another enclave than the one serving.
    write_json(&d.path("kms_policy.json"), &d.app_id.policy());
    std::fs::write(d.path("new.key"), NEW_KEY).unwrap();
    let new_key = d.path("new.key").display().to_string();
    let put = [
        "put-secret",
        "--name",
        "flask_key",
        "--value-file",
        &new_key,
    ];
    refused(
        &admin(&d, &kms, &alice, &put),
        &["failed attestation", "--ra-config", "nothing was sent"],
    );
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        admin_records(&d).is_empty(),
        "no admin call reached the KMS"
    );
    assert_eq!(boot(&d, &kms), FLASK_KEY);
}
