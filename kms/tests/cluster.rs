//! Cluster mode end to end, host mode: real etcd members (`common/etcd.rs`) and real `kms`
//! replicas on loopback, driven by the real `kms admin` CLI and a GetSecret client. SIMULATED
//! platform.
//!
//! What is shown: an empty etcd does not make a cluster without an operator's Genesis (and
//! stays empty); a joiner obtains the key from an attested peer; a change through one replica
//! is served by the others within a measured bound; a rolled-back etcd record is refused and
//! audited while the newer state keeps serving; etcd never holds a secret or the key in
//! clear, base64 or hex; a replica restarts from its sealed slot with every peer down; etcd
//! all down keeps the last state served with writes refused, and writes work again after;
//! a replica of another identity never obtains the key, and a joiner refuses a key-giver of
//! another identity.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

#[path = "../src/cluster/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::etcd::EtcdCluster;
use common::{
    GrpcClient, HEALTH_CHECK, Kms, Sim, TempDir, app_identity, assert_logs_clean, encode_field1,
    policy_json, secrets, secrets_json, spawn_kms, temp_dir, tool_identity,
};
use grpcio::RpcStatusCode;
use serde_json::{Value, json};
use sgx_sim::Identity;

const CLUSTER_ID: &str = "itest";
/// How long a replica may take to become ready or to see a change (the watchdog reads every
/// 2 s; the watch is faster).
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// The bound a change must reach every replica within.
const PROPAGATION_BOUND: Duration = Duration::from_secs(5);

/// Shared inputs of one test's replicas: platform, identities, image files, operator.
struct Fixture {
    dir: TempDir,
    sim: Sim,
    app: Identity,
    kms_id: PathBuf,
    kms_identity: Identity,
    old_id: PathBuf,
    rogue_id: PathBuf,
    rogue_identity: Identity,
    op_cert: PathBuf,
    op_key: PathBuf,
    cluster_json: PathBuf,
}

/// One replica: its process, directory and admin address.
struct Replica {
    kms: Kms,
    dir: TempDir,
    admin: String,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        Fixture::with_max_stale(tag, 3600)
    }

    fn with_max_stale(tag: &str, max_stale_secs: u64) -> Fixture {
        let dir = temp_dir(tag);
        let sim = Sim::good(&dir);
        let app = app_identity();
        let tool = tool_identity();
        std::fs::write(dir.path().join("ra_config.json"), policy_json(&app, &tool)).unwrap();
        std::fs::write(
            dir.path().join("secret_config.json"),
            secrets_json(&secrets()),
        )
        .unwrap();
        let mut kms_identity = Identity::random(None).unwrap();
        kms_identity.name = Some("kms".into());
        kms_identity.isv_svn = 5;
        // The same enclave at an older isv_svn: it admits the replicas above (their svn is at
        // least its own) but they do not admit it.
        let mut old = kms_identity.clone();
        old.name = Some("old-kms".into());
        old.isv_svn = 4;
        let old_id = dir.path().join("old-identity.json");
        std::fs::write(&old_id, old.to_json()).unwrap();
        let kms_id = dir.path().join("kms-identity.json");
        std::fs::write(&kms_id, kms_identity.to_json()).unwrap();
        let mut rogue = Identity::random(None).unwrap();
        rogue.name = Some("rogue".into());
        let rogue_id = dir.path().join("rogue-identity.json");
        std::fs::write(&rogue_id, rogue.to_json()).unwrap();
        let op_cert = dir.path().join("alice.crt");
        let op_key = dir.path().join("alice.key");
        let out = kms(&[
            "admin",
            "keygen",
            "--name",
            "alice",
            "--out-cert",
            op_cert.to_str().unwrap(),
            "--out-key",
            op_key.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
        let cluster_json = dir.path().join("cluster.json");
        std::fs::write(
            &cluster_json,
            json!({ "cluster_id": CLUSTER_ID, "operators": [entry], "max_stale_secs": max_stale_secs })
                .to_string(),
        )
        .unwrap();
        // The policy `kms admin` verifies the KMS enclave with.
        std::fs::write(
            dir.path().join("kms_policy.json"),
            kms_policy(&kms_identity).to_string(),
        )
        .unwrap();
        run_ok(&[
            "gen-seal-key",
            "--out",
            dir.path().join("seal.key").to_str().unwrap(),
        ]);
        Fixture {
            dir,
            sim,
            app,
            kms_id,
            kms_identity,
            old_id,
            rogue_id,
            rogue_identity: rogue,
            op_cert,
            op_key,
            cluster_json,
        }
    }

    /// Starts replica `name` (its own directory and slot) against `etcd`, asking `peers`.
    fn replica(&self, name: &str, etcd: &[String], peers: &[&str], identity: &Path) -> Replica {
        let dir = temp_dir(&format!("replica-{name}"));
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ra-config",
            self.dir.path().join("ra_config.json").to_str().unwrap(),
            "--secrets",
            self.dir.path().join("secret_config.json").to_str().unwrap(),
            "--seal-key-file",
            self.dir.path().join("seal.key").to_str().unwrap(),
            "--sim-platform",
            self.sim.dir.to_str().unwrap(),
            "--sim-identity",
            identity.to_str().unwrap(),
            "--cluster",
            self.cluster_json.to_str().unwrap(),
            "--cluster-slot",
            self.dir
                .path()
                .join(format!("{name}.slot"))
                .to_str()
                .unwrap(),
            "--etcd",
            &etcd.join(","),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if !peers.is_empty() {
            args.extend(["--peers".to_owned(), peers.join(",")]);
        }
        let kms = spawn_kms(&dir, &args);
        let admin = kms
            .admin_addr()
            .unwrap_or_else(|| panic!("no admin line in stderr:\n{}", kms.stderr()));
        Replica { kms, dir, admin }
    }

    /// `kms admin <args>` as alice against `replica`.
    fn admin(&self, replica: &Replica, args: &[&str]) -> Output {
        let mut full: Vec<&str> = vec!["admin"];
        full.extend(args);
        let policy = self.dir.path().join("kms_policy.json");
        full.extend([
            "--kms",
            &replica.admin,
            "--cert",
            self.op_cert.to_str().unwrap(),
            "--key",
            self.op_key.to_str().unwrap(),
            "--ra-config",
            policy.to_str().unwrap(),
            "--sim-platform",
            self.sim.dir.to_str().unwrap(),
        ]);
        kms(&full)
    }

    fn admin_ok(&self, replica: &Replica, args: &[&str]) -> Value {
        let out = self.admin(replica, args);
        assert!(
            out.status.success(),
            "kms admin {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn put_secret(&self, replica: &Replica, name: &str, value: &[u8]) -> Output {
        let file = self.dir.path().join(format!("value-{name}"));
        std::fs::write(&file, value).unwrap();
        self.admin(
            replica,
            &[
                "put-secret",
                "--name",
                name,
                "--value-file",
                file.to_str().unwrap(),
            ],
        )
    }

    fn client(&self, replica: &Replica) -> GrpcClient {
        GrpcClient::connect(&replica.kms, Some(&self.sim.client(&self.app)))
    }

    /// Waits until `replica` releases `name` as `value`; returns how long it took.
    fn wait_value(
        &self,
        replica: &Replica,
        name: &str,
        value: &[u8],
        deadline: Duration,
    ) -> Duration {
        let start = Instant::now();
        let client = self.client(replica);
        loop {
            let got = client.get_decoded(name);
            if got.as_deref().ok() == Some(value) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "{name} not served as expected within {deadline:?}: {got:?}\n{}",
                std::fs::read_to_string(&replica.kms.audit_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn kms(args: &[&str]) -> Output {
    Command::new(common::KMS).args(args).output().unwrap()
}

fn run_ok(args: &[&str]) {
    let out = kms(args);
    assert!(out.status.success(), "kms {args:?}: {}", stderr(&out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// grpc.health.v1 Check of the whole server: true if SERVING.
fn serving(f: &Fixture, replica: &Replica) -> bool {
    let client = f.client(replica);
    let reply = client.call_raw(&HEALTH_CHECK, encode_field1(b"")).unwrap();
    match reply.as_slice() {
        [0x08, 0x01] => true,
        [0x08, 0x02] => false,
        other => panic!("unexpected health reply {other:?}"),
    }
}

/// Every key and value under the cluster's prefix, through etcd's range API.
fn etcd_dump(endpoint: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let prefix = b"/occlum-kms/".to_vec();
    let mut end = prefix.clone();
    *end.last_mut().unwrap() += 1;
    let body = json!({ "key": B64.encode(&prefix), "range_end": B64.encode(&end) });
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            &format!("{endpoint}/v3/kv/range"),
            "-d",
        ])
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", stderr(&out));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    reply["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        B64.decode(kv["key"].as_str().unwrap()).unwrap(),
                        B64.decode(kv["value"].as_str().unwrap_or("")).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts no `needle` (raw, base64 or hex, at least its first 16 bytes) is in `haystack`.
fn assert_absent(haystack: &[u8], what: &str, needle: &[u8]) {
    let raw = &needle[..needle.len().min(16)];
    let forms = [
        raw.to_vec(),
        B64.encode(needle).into_bytes()[..16.min(B64.encode(needle).len())].to_vec(),
        hex::encode(raw).into_bytes(),
    ];
    for form in forms {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} appears in etcd"
        );
    }
}

fn audit_has(replica: &Replica, needle: &str) -> bool {
    std::fs::read_to_string(&replica.kms.audit_log)
        .unwrap_or_default()
        .contains(needle)
}

fn wait_audit(replica: &Replica, needle: &str, deadline: Duration) {
    let start = Instant::now();
    while !audit_has(replica, needle) {
        assert!(
            start.elapsed() < deadline,
            "no {needle:?} in the audit log:\n{}",
            std::fs::read_to_string(&replica.kms.audit_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_lives_through_genesis_join_changes_rollback_restart_and_etcd_loss() {
    let f = Fixture::new("cluster-life");
    let mut etcd_cluster = EtcdCluster::start(3);
    let endpoints = etcd_cluster.endpoints();

    // 1. Empty etcd, no operator: not ready, and nothing is written to etcd.
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    std::thread::sleep(Duration::from_secs(3));
    common::assert_refused(
        f.client(&r1).get_decoded("flask_key"),
        RpcStatusCode::UNAVAILABLE,
        "cluster replica not ready",
    );
    assert!(!serving(&f, &r1), "NOT_SERVING before genesis");
    assert!(
        etcd_dump(&endpoints[0]).is_empty(),
        "etcd stays empty without an operator"
    );

    // 2. The operator's Genesis: ready, serving the image's secrets.
    let reply = f.admin_ok(&r1, &["genesis"]);
    assert_eq!(reply["version"], format!("{CLUSTER_ID}-e1-g1"));
    assert!(serving(&f, &r1));
    let (_, flask_key, _) = &secrets()[1];
    f.wait_value(&r1, "flask_key", flask_key, READY_DEADLINE);
    // A second genesis is refused: the replica holds the key.
    let out = f.admin(&r1, &["genesis"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds the cluster key"),
        "{}",
        stderr(&out)
    );

    // 3. Two joiners obtain the key from r1 (attested under the replica policy).
    let r2 = f.replica("r2", &endpoints, &[&r1.kms.addr], &f.kms_id);
    let r3 = f.replica("r3", &endpoints, &[&r1.kms.addr], &f.kms_id);
    f.wait_value(&r2, "flask_key", flask_key, READY_DEADLINE);
    f.wait_value(&r3, "flask_key", flask_key, READY_DEADLINE);
    wait_audit(&r1, "peer-key-served", READY_DEADLINE);
    wait_audit(&r2, "key-from-peer", READY_DEADLINE);

    // 4. A change through r1 reaches r2 and r3 within the bound (measured).
    let new_value = b"rotated-through-r1-4b1d".to_vec();
    let out = f.put_secret(&r1, "flask_key", &new_value);
    assert!(out.status.success(), "{}", stderr(&out));
    let t2 = f.wait_value(&r2, "flask_key", &new_value, PROPAGATION_BOUND);
    let t3 = f.wait_value(&r3, "flask_key", &new_value, PROPAGATION_BOUND);
    eprintln!("cluster: a change through r1 was served by r2 after {t2:?}, by r3 after {t3:?}");
    let status = f.admin_ok(&r3, &["status"]);
    assert_eq!(status["version"], format!("{CLUSTER_ID}-e1-g2"), "{status}");

    // 5. etcd never holds a secret or the key in clear, base64 or hex.
    let dump = etcd_dump(&endpoints[0]);
    assert_eq!(dump.len(), 1, "one record: the state");
    let mut all = Vec::new();
    for (k, v) in &dump {
        all.extend(k);
        all.extend(v);
    }
    for (name, value, _) in secrets() {
        assert_absent(&all, name, &value);
    }
    assert_absent(&all, "the new flask_key", &new_value);
    let slot_bytes = std::fs::read(f.dir.path().join("r1.slot")).unwrap();
    assert!(!slot_bytes.is_empty());

    // 6. Rollback: the host puts the gen 1 record back (raw etcd put).
    let client = etcd::Etcd::new(&endpoints, Duration::from_secs(5)).unwrap();
    let key = format!("/occlum-kms/v1/{CLUSTER_ID}/state").into_bytes();
    let (current, _) = client.get(&key).unwrap();
    let current = current.unwrap();
    let gen1 = dump_gen1(&f, &endpoints);
    match client.put_if(&key, &gen1, current.mod_revision).unwrap() {
        etcd::Cas::Done { .. } => {}
        etcd::Cas::Conflict { .. } => panic!("raw put raced"),
    }
    for r in [&r1, &r2, &r3] {
        wait_audit(r, "rollback-suspect", READY_DEADLINE);
    }
    std::thread::sleep(Duration::from_millis(500));
    for r in [&r1, &r2, &r3] {
        assert_eq!(f.client(r).get_decoded("flask_key").unwrap(), new_value);
    }
    // Writes are refused while etcd shows the old record (CAS against it would fork).
    let out = f.put_secret(&r2, "flask_key", b"must-not-apply");
    assert!(!out.status.success(), "a write over a rolled-back record");
    // The operator restores the newest record (the host's rollback undone).
    let (old, _) = client.get(&key).unwrap();
    client
        .put_if(&key, &current.value, old.unwrap().mod_revision)
        .unwrap();

    // 7. Restart from the slot with every other replica down (etcd up).
    drop(r2);
    drop(r3);
    let mut r1 = r1;
    r1.kms.stop();
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    f.wait_value(&r1, "flask_key", &new_value, READY_DEADLINE);
    wait_audit(&r1, "key-from-slot", READY_DEADLINE);

    // 8. etcd all down: the last state is served, writes are UNAVAILABLE; back up: writes work.
    etcd_cluster.stop_all();
    wait_audit(&r1, "etcd-unreachable", READY_DEADLINE);
    assert_eq!(f.client(&r1).get_decoded("flask_key").unwrap(), new_value);
    assert!(serving(&f, &r1), "readiness does not follow etcd");
    let out = f.put_secret(&r1, "flask_key", b"while-etcd-is-down");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("UNAVAILABLE") || stderr(&out).contains("unreachable"),
        "{}",
        stderr(&out)
    );
    for i in 0..3 {
        etcd_cluster.restart(i);
    }
    wait_audit(&r1, "etcd-recovered", READY_DEADLINE);
    let after = b"after-etcd-came-back".to_vec();
    let start = Instant::now();
    loop {
        let out = f.put_secret(&r1, "flask_key", &after);
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < READY_DEADLINE, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
    f.wait_value(&r1, "flask_key", &after, READY_DEADLINE);
    assert_logs_clean(&r1.kms, &secrets());
    let _ = &f.kms_identity;
    let _ = &r1.dir;
}

/// The gen 1 record, as the host could have kept it: recorded by a throwaway watch of the
/// history (etcd keeps old revisions until compaction).
fn dump_gen1(_f: &Fixture, endpoints: &[String]) -> Vec<u8> {
    let key = format!("/occlum-kms/v1/{CLUSTER_ID}/state").into_bytes();
    let mut end = key.clone();
    *end.last_mut().unwrap() += 1;
    // Range at the revision the record was created at (its create_revision).
    let client = etcd::Etcd::new(endpoints, Duration::from_secs(5)).unwrap();
    let (kv, _) = client.get(&key).unwrap();
    let created = kv.unwrap().create_revision;
    let body = json!({ "key": B64.encode(&key), "revision": created.to_string() });
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            &format!("{}/v3/kv/range", endpoints[0]),
            "-d",
        ])
        .arg(body.to_string())
        .output()
        .unwrap();
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    B64.decode(reply["kvs"][0]["value"].as_str().unwrap())
        .unwrap()
}

#[test]
fn identities_the_replica_policy_does_not_admit_never_get_the_key_nor_give_one() {
    let f = Fixture::new("cluster-ids");
    let etcd_cluster = EtcdCluster::start(1);
    let endpoints = etcd_cluster.endpoints();
    let good = f.replica("good", &endpoints, &[], &f.kms_id);
    f.admin_ok(&good, &["genesis"]);

    // A replica the replica policy does not admit (the same enclave at an older isv_svn)
    // asks the good one: refused, audited, never ready.
    let rogue = f.replica("old", &endpoints, &[&good.kms.addr], &f.old_id);
    wait_audit(&good, "GetClusterKey refused", READY_DEADLINE);
    let refusal = std::fs::read_to_string(&good.kms.audit_log).unwrap();
    assert!(refusal.contains("PERMISSION_DENIED"), "{refusal}");
    assert!(!refusal.contains("peer-key-served"), "{refusal}");
    std::thread::sleep(Duration::from_secs(3));
    common::assert_refused(
        f.client(&rogue).get_decoded("flask_key"),
        RpcStatusCode::UNAVAILABLE,
        "not ready",
    );
    assert!(!audit_has(&rogue, "key-from-peer:"));

    // A joiner whose only peer is a key-giver of another identity (holding a key of its own
    // cluster in another etcd) refuses it in the handshake and stays not ready.
    let other_etcd = EtcdCluster::start(1);
    let giver = f.replica("giver", &other_etcd.endpoints(), &[], &f.rogue_id);
    let out = Command::new(common::KMS)
        .args(["admin", "genesis", "--kms", &giver.admin])
        .arg("--cert")
        .arg(&f.op_cert)
        .arg("--key")
        .arg(&f.op_key)
        .arg("--ra-config")
        .arg(rogue_policy(&f))
        .arg("--sim-platform")
        .arg(&f.sim.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let joiner = f.replica("joiner", &endpoints, &[&giver.kms.addr], &f.kms_id);
    // The joiner's own verdict in the handshake ("nothing was sent"), not the giver's refusal:
    // the giver never even saw a call.
    wait_audit(&joiner, "nothing was sent", READY_DEADLINE);
    assert!(!audit_has(&giver, "peer-key-served"));
    assert!(!audit_has(&giver, "GetClusterKey refused"));
    common::assert_refused(
        f.client(&joiner).get_decoded("flask_key"),
        RpcStatusCode::UNAVAILABLE,
        "not ready",
    );
}

/// The policy `kms admin` verifies the rogue identity's KMS with.
fn rogue_policy(f: &Fixture) -> PathBuf {
    let path = f.dir.path().join("rogue_policy.json");
    std::fs::write(&path, kms_policy(&f.rogue_identity).to_string()).unwrap();
    path
}

/// A policy admitting exactly the KMS enclave `id` (what `kms admin --ra-config` takes).
fn kms_policy(id: &Identity) -> Value {
    json!({
        "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
        "verify_isv_svn": "on", "verify_config_svn": "off", "verify_enclave_debuggable": "on",
        "sgx_mrs": [{
            "mr_enclave": hex::encode(id.mr_enclave),
            "mr_signer": hex::encode(id.mr_signer),
            "isv_prod_id": id.isv_prod_id,
            "isv_svn": id.isv_svn,
            "debuggable": id.debuggable,
        }]
    })
}

#[test]
fn every_replica_lost_is_recovered_by_an_operator_at_a_new_epoch_and_a_higher_generation() {
    let f = Fixture::new("cluster-recover");
    let etcd_cluster = EtcdCluster::start(1);
    let endpoints = etcd_cluster.endpoints();
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    f.admin_ok(&r1, &["genesis"]);
    let out = f.put_secret(&r1, "flask_key", b"gen-two-value");
    assert!(out.status.success(), "{}", stderr(&out));
    // A state over the cap etcd's request limit sets is refused whole, naming the cap.
    let out = f.put_secret(&r1, "big", &vec![b'x'; 900 * 1024]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("1000000") && err.contains("--max-request-bytes"),
        "{err}"
    );
    assert!(err.contains("nothing applied"), "{err}");
    // Recover is refused on a replica that holds the key and a verified state.
    let out = f.admin(&r1, &["recover"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds the cluster key"),
        "{}",
        stderr(&out)
    );

    // Every replica and its slot lost: a new replica has no key and no peer, and waits.
    drop(r1);
    std::fs::remove_file(f.dir.path().join("r1.slot")).unwrap();
    let r2 = f.replica("r2", &endpoints, &[], &f.kms_id);
    std::thread::sleep(Duration::from_secs(3));
    common::assert_refused(
        f.client(&r2).get_decoded("flask_key"),
        RpcStatusCode::UNAVAILABLE,
        "not ready",
    );
    // Genesis is refused: the cluster exists in etcd (its key is lost, not its state).
    let out = f.admin(&r2, &["genesis"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds this cluster's state"),
        "{}",
        stderr(&out)
    );
    // Recover: epoch 2, generation 3 (above the stored 2), the image's secrets again.
    let reply = f.admin_ok(&r2, &["recover"]);
    assert_eq!(reply["version"], format!("{CLUSTER_ID}-e2-g3"), "{reply}");
    let (_, flask_key, _) = &secrets()[1];
    f.wait_value(&r2, "flask_key", flask_key, READY_DEADLINE);
    wait_audit(&r2, "recover: new cluster key epoch 2", READY_DEADLINE);
}

#[test]
fn releases_stop_after_max_stale_secs_without_etcd_and_readiness_does_not() {
    let f = Fixture::with_max_stale("cluster-stale", 3);
    let mut etcd_cluster = EtcdCluster::start(1);
    let endpoints = etcd_cluster.endpoints();
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    f.admin_ok(&r1, &["genesis"]);
    let (_, flask_key, _) = &secrets()[1];
    f.wait_value(&r1, "flask_key", flask_key, READY_DEADLINE);
    etcd_cluster.stop_all();
    wait_audit(&r1, "etcd-unreachable", READY_DEADLINE);
    std::thread::sleep(Duration::from_secs(5));
    common::assert_refused(
        f.client(&r1).get_decoded("flask_key"),
        RpcStatusCode::UNAVAILABLE,
        "cluster state stale",
    );
    assert!(serving(&f, &r1), "readiness does not follow etcd");
    etcd_cluster.restart(0);
    f.wait_value(&r1, "flask_key", flask_key, READY_DEADLINE);
}

#[test]
fn an_admin_write_waits_for_etcd_on_the_admin_worker_while_strangers_are_refused_at_once() {
    let f = Fixture::new("cluster-admin-worker");
    let etcd_cluster = EtcdCluster::start(1);
    let endpoints = etcd_cluster.endpoints();
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    f.admin_ok(&r1, &["genesis"]);
    let (_, flask_key, _) = &secrets()[1];
    f.wait_value(&r1, "flask_key", flask_key, READY_DEADLINE);
    // A stranger: a key pair no cluster.json pins.
    let mallory_cert = f.dir.path().join("mallory.crt");
    let mallory_key = f.dir.path().join("mallory.key");
    run_ok(&[
        "admin",
        "keygen",
        "--name",
        "mallory",
        "--out-cert",
        mallory_cert.to_str().unwrap(),
        "--out-key",
        mallory_key.to_str().unwrap(),
    ]);
    // Frozen etcd: the operator's write hangs on etcd until its timeout, on the admin worker.
    etcd_cluster.freeze(0, true);
    std::thread::scope(|scope| {
        let write = scope.spawn(|| {
            let start = Instant::now();
            let out = f.put_secret(&r1, "flask_key", b"while-etcd-is-frozen");
            (out, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let policy = f.dir.path().join("kms_policy.json");
        let out = kms(&[
            "admin",
            "status",
            "--kms",
            &r1.admin,
            "--cert",
            mallory_cert.to_str().unwrap(),
            "--key",
            mallory_key.to_str().unwrap(),
            "--ra-config",
            policy.to_str().unwrap(),
            "--sim-platform",
            f.sim.dir.to_str().unwrap(),
        ]);
        let stranger_took = start.elapsed();
        assert!(!out.status.success());
        assert!(stderr(&out).contains("is not pinned"), "{}", stderr(&out));
        assert!(
            !write.is_finished(),
            "the stranger's refusal ({stranger_took:?}) must not wait behind the write on etcd"
        );
        let (out, took) = write.join().unwrap();
        eprintln!("write with etcd frozen: {took:?}; stranger's refusal: {stranger_took:?}");
        assert!(!out.status.success(), "a write with etcd frozen must fail");
        // etcd got the request before it froze: the outcome is unknown, and the reply says so.
        assert!(
            stderr(&out).contains("UNAVAILABLE")
                && stderr(&out).contains("may still be applied by etcd"),
            "{}",
            stderr(&out)
        );
        assert!(
            took > stranger_took,
            "write {took:?}, stranger {stranger_took:?}"
        );
    });
    // Releases went on from memory throughout. Thawed, etcd may or may not apply the write it
    // had buffered (it reads the request, or sees the client gone first): the replica serves
    // whichever etcd holds once its 2 s read sees it, the old value or the new, never a mix.
    assert_eq!(f.client(&r1).get_decoded("flask_key").unwrap(), *flask_key);
    etcd_cluster.freeze(0, false);
    std::thread::sleep(Duration::from_secs(3));
    let served = f.client(&r1).get_decoded("flask_key").unwrap();
    assert!(
        served == *flask_key || served == b"while-etcd-is-frozen",
        "{served:?}"
    );
}

#[test]
fn a_genesis_whose_etcd_answer_is_lost_never_leaves_a_state_no_replica_can_open() {
    let f = Fixture::new("cluster-genesis-lost");
    let etcd_cluster = EtcdCluster::start(1);
    let endpoints = etcd_cluster.endpoints();
    let r1 = f.replica("r1", &endpoints, &[], &f.kms_id);
    // etcd frozen for 2.5 s: the create times out (2 s), then the replica reads it back.
    etcd_cluster.freeze(0, true);
    let out = std::thread::scope(|scope| {
        let genesis = scope.spawn(|| f.admin(&r1, &["genesis"]));
        std::thread::sleep(Duration::from_millis(2500));
        etcd_cluster.freeze(0, false);
        genesis.join().unwrap()
    });
    let stored = etcd_dump(&endpoints[0]);
    if out.status.success() {
        // etcd applied it, and the replica learnt so by reading it back: it holds the key.
        assert_eq!(stored.len(), 1);
        let (_, flask_key, _) = &secrets()[1];
        f.wait_value(&r1, "flask_key", flask_key, READY_DEADLINE);
    } else {
        // etcd dropped it: the replica said "not done", and etcd holds nothing to strand.
        assert!(
            stderr(&out).contains("genesis not done"),
            "{}",
            stderr(&out)
        );
        assert!(stored.is_empty(), "{} records", stored.len());
        f.admin_ok(&r1, &["genesis"]);
    }
    assert!(serving(&f, &r1));
}
