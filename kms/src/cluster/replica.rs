//! One replica's cluster state: the cluster key it holds, the highest generation it has seen
//! (kept in the sealed slot), the verified state it serves, and the rules that move them.
//!
//! Guarantees:
//! - the key is obtained from the own slot, from a peer under mutual RA-TLS (`keyshare`), or
//!   by an operator's `Genesis`/`Recover`; never automatically from an empty etcd;
//! - a record from etcd is served only after its AEAD verified under the key and the cluster
//!   id, its generation is above the one served (or equal with the same hash: a no-op), it is
//!   not below the high water, and it passed the cross-checks of a reload
//!   ([`Loader::assemble`]); anything else keeps the served state and is audited
//!   (`rollback-suspect`, `fork`, `state-refused`);
//! - writes are compare-and-swap on the record's etcd `mod_revision`; nothing is applied
//!   locally before etcd took it;
//! - [`Readiness`]: ready iff the key and a verified state are held; releases additionally
//!   stop when the last successful linearizable read is older than `max_stale_secs`.
//!
//! Lock order: `Shared::write_lock` (changes of the served state), then `Cluster::inner`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use grpcio::RpcStatusCode;
use ratls::policy::{MAX_POLICY_LEN, RaPolicy};
use ratls::verify::Verifier;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::config::ClusterConfig;
use super::envelope::{self, ClusterKey, OpenedState};
use super::etcd::{Cas, Etcd, EtcdError, Kv};
use super::slot::{Slot, SlotStore};
use crate::audit::{Event, Record, Verdict};
use crate::rotation::Rotator;
use crate::runtime::{Loader, Runtime};
use crate::secrets::SecretStore;
use crate::service::Shared;

/// Whether this replica may release, and why not. Cheap to check on every call.
pub struct Readiness {
    ready: AtomicBool,
    why: Mutex<String>,
    base: Instant,
    /// Milliseconds after `base` of the last successful linearizable read of etcd.
    fresh_ms: AtomicU64,
    max_stale: Option<Duration>,
}

impl Readiness {
    pub fn new(max_stale: Option<Duration>, why: &str) -> Readiness {
        Readiness {
            ready: AtomicBool::new(false),
            why: Mutex::new(why.to_owned()),
            base: Instant::now(),
            fresh_ms: AtomicU64::new(0),
            max_stale,
        }
    }

    /// Ready iff the replica holds the cluster key and a verified state. Never depends on
    /// etcd being up once the first state was verified.
    pub fn check(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        Err(format!("cluster replica not ready: {why}"))
    }

    /// [`Readiness::check`], and the state not older than `max_stale_secs`.
    pub fn check_release(&self) -> Result<(), String> {
        self.check()?;
        let Some(max) = self.max_stale else {
            return Ok(());
        };
        let now = self.now_ms();
        let last = self.fresh_ms.load(Ordering::Acquire);
        let age = Duration::from_millis(now.saturating_sub(last));
        if age > max {
            return Err(format!(
                "cluster state stale: the last linearizable read of etcd succeeded {} s ago, more than max_stale_secs {} in cluster.json (etcd unreachable?)",
                age.as_secs(),
                max.as_secs()
            ));
        }
        Ok(())
    }

    fn set_not_ready(&self, why: String) {
        *self.why.lock().unwrap_or_else(PoisonError::into_inner) = why;
        self.ready.store(false, Ordering::Release);
    }

    fn set_why(&self, why: String) {
        *self.why.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn fresh(&self) {
        self.fresh_ms.store(self.now_ms(), Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A replica in cluster mode.
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub(super) etcd: Etcd,
    pub(super) state_key: Vec<u8>,
    pub(super) peers: Vec<String>,
    slot: SlotStore,
    shared: Arc<Shared>,
    loader: Arc<Loader>,
    /// Verifies peers (both directions of `kms.Replica/GetClusterKey`).
    pub(super) replica_verifier: Arc<Verifier>,
    pub(super) rotator: Arc<Rotator>,
    readiness: Arc<Readiness>,
    inner: Mutex<Inner>,
    /// The last failed round of asking peers for the key (audited when it changes, not at
    /// every retry).
    last_peer_failure: Mutex<String>,
    pub(super) stop: AtomicBool,
}

/// The mutable part.
struct Inner {
    key: Option<(u32, ClusterKey)>,
    /// Highest generation accepted (slot, peer or etcd), and its plaintext's hash.
    high_water: u64,
    high_sha: [u8; 32],
    current: Option<Current>,
    /// `None` until the first etcd call.
    etcd_up: Option<bool>,
    /// Watch from this etcd revision on.
    seen_revision: i64,
    /// The last record refused (its mod_revision): audited once, not at every watchdog read.
    last_refused: i64,
    /// The state record was missing at the last read (audited once).
    missing: bool,
}

/// The state served.
struct Current {
    epoch: u32,
    generation: u64,
    sha256: [u8; 32],
    mod_revision: i64,
    /// The policy JSON of this state (written back with every change of the secrets).
    policy_json: Vec<u8>,
}

/// The state document inside the envelope.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc<'a> {
    #[serde(borrow)]
    policy: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    secrets: &'a serde_json::value::RawValue,
}

/// What a peer receives from `GetClusterKey`.
pub struct KeyShare {
    pub epoch: u32,
    pub key: ClusterKey,
    pub generation: u64,
    pub state_sha256: [u8; 32],
}

/// A refusal of an admin operation: the gRPC code and the message.
pub type Refusal = (RpcStatusCode, String);

/// Everything a [`Cluster`] is built from.
pub struct Parts {
    pub cfg: ClusterConfig,
    pub etcd: Etcd,
    pub peers: Vec<String>,
    pub slot: SlotStore,
    pub shared: Arc<Shared>,
    pub loader: Arc<Loader>,
    pub replica_verifier: Arc<Verifier>,
    pub rotator: Arc<Rotator>,
    pub readiness: Arc<Readiness>,
}

impl Cluster {
    pub fn new(parts: Parts) -> Cluster {
        let state_key = parts.cfg.state_key();
        Cluster {
            cfg: parts.cfg,
            etcd: parts.etcd,
            state_key,
            peers: parts.peers,
            slot: parts.slot,
            shared: parts.shared,
            loader: parts.loader,
            replica_verifier: parts.replica_verifier,
            rotator: parts.rotator,
            readiness: parts.readiness,
            inner: Mutex::new(Inner {
                key: None,
                high_water: 0,
                high_sha: [0; 32],
                current: None,
                etcd_up: None,
                seen_revision: 0,
                last_refused: 0,
                missing: false,
            }),
            last_peer_failure: Mutex::new(String::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// For the health endpoint: ready iff the key and a verified state are held.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness.check()
    }

    /// Stops the sync threads (at their next step).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(super) fn has_key(&self) -> bool {
        self.lock().key.is_some()
    }

    pub(super) fn watch_from(&self) -> i64 {
        self.lock().seen_revision
    }

    /// A summary for `kms admin status`.
    pub fn status(&self) -> serde_json::Value {
        let inner = self.lock();
        serde_json::json!({
            "cluster_id": self.cfg.cluster_id,
            "ready": self.readiness.check().is_ok(),
            "why_not_ready": self.readiness.check().err(),
            "epoch": inner.key.as_ref().map(|(e, _)| *e),
            "generation": inner.current.as_ref().map(|c| c.generation),
            "state_sha256": inner.current.as_ref().map(|c| hex::encode(c.sha256)),
            "high_water_gen": inner.high_water,
            "etcd_reachable": inner.etcd_up,
            "releases": self.readiness.check_release().err().unwrap_or_else(|| "served".into()),
        })
    }

    /// Step 1 of key acquisition: the own sealed slot.
    pub(super) fn acquire_from_slot(&self) {
        match self.slot.load(&self.cfg.cluster_id) {
            Ok(Some(slot)) => {
                let key = match ClusterKey::from_bytes(slot.key.as_slice()) {
                    Ok(key) => key,
                    Err(e) => {
                        self.audit(Verdict::Rejected, format!("slot-refused: {e}"));
                        return;
                    }
                };
                let mut inner = self.lock();
                inner.key = Some((slot.epoch, key));
                inner.high_water = slot.high_water_gen;
                inner.high_sha = slot.state_sha256;
                drop(inner);
                self.readiness.set_why(format!(
                    "holding the cluster key from the slot {} (epoch {}, high water generation {}); reading the state from etcd",
                    self.slot.path().display(),
                    slot.epoch,
                    slot.high_water_gen
                ));
                self.audit(
                    Verdict::Ok,
                    format!(
                        "key-from-slot: epoch {}, high water generation {} ({})",
                        slot.epoch,
                        slot.high_water_gen,
                        self.slot.path().display()
                    ),
                );
            }
            Ok(None) => {}
            Err(e) => self.audit(
                Verdict::Rejected,
                format!("slot-refused: {e}; obtaining the key from a peer instead"),
            ),
        }
    }

    /// Step 2: each peer in turn. True once a key is held.
    pub(super) fn acquire_from_peers(&self) -> bool {
        let mut errors = Vec::new();
        for peer in &self.peers {
            let identity = match self.rotator.identity() {
                Some(identity) => identity,
                None => return false,
            };
            match super::keyshare::fetch(
                peer,
                Arc::clone(&self.replica_verifier),
                &identity,
                &self.cfg.cluster_id,
            ) {
                Ok(share) => {
                    let (epoch, generation) = (share.epoch, share.generation);
                    self.install_share(share);
                    self.audit(
                        Verdict::Ok,
                        format!("key-from-peer: {peer} (attested under the replica policy): epoch {epoch}, generation {generation}"),
                    );
                    return true;
                }
                Err(e) => {
                    // Once per round, not per retry: the rounds repeat every few seconds.
                    errors.push(format!("{peer}: {e}"));
                }
            }
        }
        let why = if self.peers.is_empty() {
            "no cluster key: no slot, no --peers; waiting for an operator's Genesis (kms admin genesis) or Recover".to_owned()
        } else {
            format!(
                "no cluster key: no slot, no peer gave one ({}); retrying, or waiting for an operator's Genesis/Recover",
                errors.join("; ")
            )
        };
        let failure = errors.join("; ");
        let mut last = self
            .last_peer_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !errors.is_empty() && *last != failure {
            self.audit(
                Verdict::Rejected,
                format!(
                    "key-from-peer failed: {failure} (retrying every {:?})",
                    super::sync::PEER_RETRY
                ),
            );
        }
        *last = failure;
        drop(last);
        self.readiness.set_not_ready(why);
        false
    }

    fn install_share(&self, share: KeyShare) {
        let mut inner = self.lock();
        if share.generation >= inner.high_water {
            inner.high_water = share.generation;
            inner.high_sha = share.state_sha256;
        }
        inner.key = Some((share.epoch, share.key));
        self.save_slot(&inner);
        drop(inner);
        self.readiness.set_why(format!(
            "holding the cluster key (epoch {}); reading the state from etcd (must be at least generation {})",
            share.epoch, share.generation
        ));
    }

    /// The watchdog: one linearizable read of the state, then [`Cluster::consider`].
    pub(super) fn refresh(&self) {
        match self.etcd.get(&self.state_key) {
            Ok((kv, revision)) => {
                self.etcd_reachable(true, None);
                self.readiness.fresh();
                {
                    let mut inner = self.lock();
                    inner.seen_revision = inner.seen_revision.max(revision);
                }
                match kv {
                    Some(kv) => self.consider(&kv, "read"),
                    None => self.state_missing(),
                }
            }
            Err(e) => self.etcd_reachable(false, Some(&e)),
        }
    }

    /// The state record is absent: the served state stays; without one, the replica waits.
    fn state_missing(&self) {
        let mut inner = self.lock();
        let first = !inner.missing;
        inner.missing = true;
        let served = inner.current.as_ref().map(|c| c.generation);
        let epoch = inner.key.as_ref().map(|(e, _)| *e);
        let high = inner.high_water;
        drop(inner);
        if served.is_none() {
            self.readiness.set_not_ready(format!(
                "etcd has no state record for cluster {:?} (key {}); holding the cluster key (epoch {}, high water generation {high}): a new cluster needs an operator's Genesis only when no replica holds a key, a lost state an operator's Recover",
                self.cfg.cluster_id,
                String::from_utf8_lossy(&self.state_key),
                epoch.unwrap_or(0),
            ));
        }
        if first {
            self.audit(
                Verdict::Rejected,
                format!(
                    "state-missing: etcd has no record at {} (deleted or emptied by the host?); {}",
                    String::from_utf8_lossy(&self.state_key),
                    match served {
                        Some(generation) => format!("keeping the verified generation {generation}"),
                        None => "not ready".to_owned(),
                    }
                ),
            );
        }
    }

    fn etcd_reachable(&self, up: bool, error: Option<&EtcdError>) {
        let mut inner = self.lock();
        let before = inner.etcd_up;
        inner.etcd_up = Some(up);
        drop(inner);
        match (before, up) {
            (Some(true) | None, false) => self.audit(
                Verdict::Rejected,
                format!(
                    "etcd-unreachable: {}; serving the last verified state (for at most max_stale_secs), writes refused",
                    error.map(ToString::to_string).unwrap_or_default()
                ),
            ),
            (Some(false), true) => self.audit(Verdict::Ok, "etcd-recovered".into()),
            _ => {}
        }
    }

    /// A record seen by the watch or the watchdog.
    pub(super) fn consider(&self, kv: &Kv, source: &str) {
        let _writes = self.shared.write_lock();
        let mut inner = self.lock();
        inner.seen_revision = inner.seen_revision.max(kv.mod_revision);
        inner.missing = false;
        if let Err(why) = self.apply_locked(&mut inner, kv, source) {
            if inner.last_refused != kv.mod_revision {
                inner.last_refused = kv.mod_revision;
                drop(inner);
                self.audit(Verdict::Rejected, why);
            }
        }
    }

    /// Verifies and, if newer, applies `kv`. Caller holds the write lock and `inner`.
    fn apply_locked(&self, inner: &mut Inner, kv: &Kv, source: &str) -> Result<(), String> {
        let (epoch, key) = match &inner.key {
            Some((epoch, key)) => (*epoch, key.duplicate()),
            None => return Ok(()),
        };
        let opened = envelope::open_state(&key, &self.cfg.cluster_id, &kv.value).map_err(|e| {
            let header = envelope::peek_header(&kv.value)
                .map(|h| format!(" (claims epoch {}, generation {})", h.epoch, h.generation))
                .unwrap_or_default();
            format!(
                "state-refused: the record at etcd revision {}{header} does not verify under this replica's cluster key (epoch {epoch}): {e}; keeping the served state",
                kv.mod_revision
            )
        })?;
        let served = inner.current.as_ref().map(|c| (c.generation, c.sha256));
        if let Some((generation, sha)) = served {
            if opened.generation == generation && opened.sha256 == sha {
                if let Some(current) = inner.current.as_mut() {
                    current.mod_revision = kv.mod_revision;
                }
                return Ok(());
            }
        }
        if opened.generation < inner.high_water {
            return Err(format!(
                "rollback-suspect: etcd ({source}, revision {}) shows generation {} but this replica has seen generation {}; refused, keeping the served state",
                kv.mod_revision, opened.generation, inner.high_water
            ));
        }
        let same_gen_other_hash = (opened.generation == inner.high_water
            && inner.high_sha != [0; 32]
            && opened.sha256 != inner.high_sha)
            || served.is_some_and(|(generation, sha)| {
                opened.generation == generation && opened.sha256 != sha
            });
        if same_gen_other_hash {
            return Err(format!(
                "fork: etcd ({source}, revision {}) shows generation {} with state sha256 {}, but this replica saw generation {} as {}; refused, keeping the served state",
                kv.mod_revision,
                opened.generation,
                hex::encode(opened.sha256),
                inner.high_water,
                hex::encode(inner.high_sha)
            ));
        }
        if served.is_some_and(|(generation, _)| opened.generation < generation) {
            return Err(format!(
                "rollback-suspect: etcd ({source}) shows generation {} below the served generation",
                opened.generation
            ));
        }
        let (runtime, policy_json) = self.runtime_from(&opened).map_err(|e| {
            format!(
                "state-refused: generation {} verified but does not load: {e}; keeping the served state",
                opened.generation
            )
        })?;
        let count = runtime.secrets.len();
        let before = served.map(|(generation, _)| generation);
        self.install_state(inner, runtime, &opened, kv.mod_revision, policy_json);
        drop(key);
        self.audit(
            Verdict::Ok,
            format!(
                "state-applied: generation {} ({source}, etcd revision {}, {count} secrets){}",
                opened.generation,
                kv.mod_revision,
                before
                    .map(|g| format!(", was generation {g}"))
                    .unwrap_or_default()
            ),
        );
        Ok(())
    }

    /// Swaps in a verified state and raises the high water (slot rewritten).
    fn install_state(
        &self,
        inner: &mut Inner,
        runtime: Runtime,
        opened: &OpenedState,
        mod_revision: i64,
        policy_json: Vec<u8>,
    ) {
        self.shared
            .replace_labeled(runtime, self.label(opened.epoch, opened.generation));
        inner.current = Some(Current {
            epoch: opened.epoch,
            generation: opened.generation,
            sha256: opened.sha256,
            mod_revision,
            policy_json,
        });
        if opened.generation >= inner.high_water {
            inner.high_water = opened.generation;
            inner.high_sha = opened.sha256;
        }
        self.save_slot(inner);
        self.readiness.set_ready();
    }

    /// `<cluster_id>-e<epoch>-g<generation>`.
    fn label(&self, epoch: u32, generation: u64) -> String {
        format!("{}-e{epoch}-g{generation}", self.cfg.cluster_id)
    }

    /// The runtime of a verified state, through the checks a reload applies.
    fn runtime_from(&self, opened: &OpenedState) -> Result<(Runtime, Vec<u8>), String> {
        let doc: StateDoc<'_> = serde_json::from_slice(&opened.plaintext).map_err(|e| {
            format!(
                "the state document is not {{\"policy\", \"secrets\"}} (line {} column {})",
                e.line(),
                e.column()
            )
        })?;
        let policy_json = doc.policy.get().as_bytes().to_vec();
        let label = format!("cluster state generation {} policy", opened.generation);
        let policy = RaPolicy::from_json(&policy_json, &label).map_err(|e| e.to_string())?;
        let secrets = SecretStore::from_json(doc.secrets.get().as_bytes()).map_err(|e| {
            format!(
                "cluster state generation {} secrets: {e}",
                opened.generation
            )
        })?;
        let runtime = self
            .loader
            .assemble(Arc::new(self.loader.verifier(policy)), Arc::new(secrets))
            .map_err(|e| e.to_string())?;
        Ok((runtime, policy_json))
    }

    fn save_slot(&self, inner: &Inner) {
        let Some((epoch, key)) = &inner.key else {
            return;
        };
        let slot = Slot {
            cluster_id: self.cfg.cluster_id.clone(),
            epoch: *epoch,
            key: Zeroizing::new(*key.as_bytes()),
            high_water_gen: inner.high_water,
            state_sha256: inner.high_sha,
        };
        if let Err(e) = self.slot.save(&slot) {
            // The replica keeps working; it only loses the ability to restart without peers
            // (and the high water across restarts): say so loudly.
            eprintln!("kms: writing the cluster slot failed: {e}");
            self.audit(Verdict::Rejected, format!("slot-write-failed: {e}"));
        }
    }

    /// An admin write (caller holds the write lock): `runtime` is the new state, already
    /// through [`Loader::assemble`]; `policy_json` the new policy, if it changed. Encrypted
    /// as generation + 1 and CAS'd on the served record's mod_revision; applied only if etcd took
    /// it. Returns the new version and a summary.
    pub fn commit(
        &self,
        runtime: Runtime,
        policy_json: Option<Vec<u8>>,
    ) -> Result<(String, String), Refusal> {
        let mut inner = self.lock();
        let (Some((epoch, key)), Some(current)) = (&inner.key, &inner.current) else {
            return Err((
                RpcStatusCode::UNAVAILABLE,
                self.readiness.check().err().unwrap_or_default(),
            ));
        };
        let epoch = *epoch;
        if current.epoch != epoch {
            return Err((
                RpcStatusCode::FAILED_PRECONDITION,
                format!(
                    "the served state is of epoch {} but this replica holds the key of epoch {epoch}",
                    current.epoch
                ),
            ));
        }
        let policy_json = policy_json.unwrap_or_else(|| current.policy_json.clone());
        let plaintext = state_plaintext(&policy_json, &runtime.secrets);
        let generation = current.generation + 1;
        let record = envelope::seal_state(
            key,
            &self.cfg.cluster_id,
            epoch,
            generation,
            &current.sha256,
            &plaintext,
        )
        .map_err(|e| {
            (
                RpcStatusCode::INVALID_ARGUMENT,
                format!("{e}; nothing applied"),
            )
        })?;
        let expect = current.mod_revision;
        let served_gen = current.generation;
        let outcome = self.etcd.put_if(&self.state_key, &record, expect);
        match outcome {
            Ok(Cas::Done { revision }) => {
                let opened = OpenedState {
                    epoch,
                    generation,
                    prev: [0; 32],
                    sha256: envelope::sha256(&plaintext),
                    plaintext: Zeroizing::new(Vec::new()),
                };
                inner.seen_revision = inner.seen_revision.max(revision);
                self.install_state(&mut inner, runtime, &opened, revision, policy_json);
                drop(inner);
                self.readiness.fresh();
                self.etcd_reachable(true, None);
                let label = self.label(epoch, generation);
                Ok((
                    label,
                    format!("written to etcd as generation {generation} (revision {revision})"),
                ))
            }
            Ok(Cas::Conflict { current }) => {
                let now = current
                    .as_ref()
                    .and_then(|kv| envelope::peek_header(&kv.value).ok())
                    .map(|h| format!("generation {} (epoch {})", h.generation, h.epoch))
                    .unwrap_or_else(|| "no record".into());
                // Learn the newer state now rather than at the next watchdog read.
                if let Some(kv) = &current {
                    if let Err(why) = self.apply_locked(&mut inner, kv, "write conflict") {
                        drop(inner);
                        self.audit(Verdict::Rejected, why);
                    }
                }
                Err((
                    RpcStatusCode::ABORTED,
                    format!(
                        "the cluster state moved on: etcd holds {now}, this change was made against generation {served_gen}; nothing applied; read the status and make the change again"
                    ),
                ))
            }
            Err(e) => {
                drop(inner);
                self.etcd_reachable(false, Some(&e));
                let outcome = if e.outcome_unknown() {
                    "the change may still be applied by etcd (a compare-and-swap on this generation, so at most once); every replica serves it only once it reads it back; read the status before making it again"
                } else {
                    "nothing applied"
                };
                Err((
                    RpcStatusCode::UNAVAILABLE,
                    format!("etcd unreachable, {outcome}: {e}"),
                ))
            }
        }
    }

    /// The create (genesis) or CAS (recover) of a record sealed under a NEW cluster key. If
    /// etcd's answer is lost (timeout, 5xx) the write may still have been applied, and then the
    /// state would be sealed under a key this replica is about to discard: so the record is read
    /// back (3 tries, 1 s apart) to learn which.
    fn write_new_key_record(&self, record: &[u8], expect: i64) -> NewKeyWrite {
        let first = match self.etcd.put_if(&self.state_key, record, expect) {
            Ok(Cas::Done { revision }) => return NewKeyWrite::Done(revision),
            Ok(Cas::Conflict { current }) => return NewKeyWrite::Conflict(current),
            Err(e) if e.outcome_unknown() => e,
            Err(e) => return NewKeyWrite::NotApplied(e),
        };
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(1));
            match self.etcd.get(&self.state_key) {
                Ok((Some(kv), _)) if kv.value == record => {
                    return NewKeyWrite::Done(kv.mod_revision);
                }
                Ok((Some(kv), _)) => return NewKeyWrite::Conflict(Some(kv)),
                Ok((None, _)) => return NewKeyWrite::NotApplied(first),
                Err(_) => {}
            }
        }
        NewKeyWrite::Unknown(first)
    }

    /// `Genesis`: only when this replica holds no key. A new key (epoch 1) and state generation 1
    /// imported from the image's files, created in etcd only if no state exists.
    pub fn genesis(&self) -> Result<(String, String), Refusal> {
        let _writes = self.shared.write_lock();
        let mut inner = self.lock();
        if let Some((epoch, _)) = &inner.key {
            return Err((
                RpcStatusCode::FAILED_PRECONDITION,
                format!(
                    "this replica already holds the cluster key (epoch {epoch}): genesis creates a new cluster and is refused"
                ),
            ));
        }
        let (runtime, policy_json) = self.image_state()?;
        let plaintext = state_plaintext(&policy_json, &runtime.secrets);
        let key = ClusterKey::generate()
            .map_err(|e| (RpcStatusCode::INTERNAL, format!("generating the key: {e}")))?;
        let record = envelope::seal_state(&key, &self.cfg.cluster_id, 1, 1, &[0; 32], &plaintext)
            .map_err(|e| (RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
        match self.write_new_key_record(&record, 0) {
            NewKeyWrite::Done(revision) => {
                inner.key = Some((1, key));
                inner.high_water = 0;
                inner.high_sha = [0; 32];
                inner.seen_revision = inner.seen_revision.max(revision);
                let opened = OpenedState {
                    epoch: 1,
                    generation: 1,
                    prev: [0; 32],
                    sha256: envelope::sha256(&plaintext),
                    plaintext: Zeroizing::new(Vec::new()),
                };
                let count = runtime.secrets.len();
                self.install_state(&mut inner, runtime, &opened, revision, policy_json);
                drop(inner);
                self.readiness.fresh();
                self.etcd_reachable(true, None);
                let summary = format!(
                    "genesis: new cluster key epoch 1, state generation 1 with {count} secrets imported from {} and {} (etcd revision {revision})",
                    self.loader.ra_config.display(),
                    self.loader.secrets_path().display()
                );
                self.audit(Verdict::Ok, summary.clone());
                Ok((self.label(1, 1), summary))
            }
            NewKeyWrite::Conflict(current) => {
                let what = current
                    .as_ref()
                    .and_then(|kv| envelope::peek_header(&kv.value).ok())
                    .map(|h| format!("generation {}, epoch {}", h.generation, h.epoch))
                    .unwrap_or_else(|| "a record".into());
                Err((
                    RpcStatusCode::FAILED_PRECONDITION,
                    format!(
                        "genesis refused: etcd already holds this cluster's state ({what}): the key was discarded; this replica joins through a peer (--peers); if every replica lost the key, use recover"
                    ),
                ))
            }
            NewKeyWrite::NotApplied(e) => Err((
                RpcStatusCode::UNAVAILABLE,
                format!("etcd unreachable, genesis not done: {e}"),
            )),
            NewKeyWrite::Unknown(e) => {
                Err((RpcStatusCode::UNAVAILABLE, unknown_outcome("genesis", &e)))
            }
        }
    }

    /// `Recover`: every replica lost the key. A new key at the stored epoch + 1, state
    /// re-imported from the image files at generation = max(stored generation, high water) + 1, CAS'd on
    /// the record read. Refused on a ready replica. Never a silent reset: audited, and the
    /// generation keeps rising so no replica can be rolled back by it.
    pub fn recover(&self) -> Result<(String, String), Refusal> {
        let _writes = self.shared.write_lock();
        let mut inner = self.lock();
        if inner.key.is_some() && inner.current.is_some() {
            return Err((
                RpcStatusCode::FAILED_PRECONDITION,
                "this replica holds the cluster key and a verified state: recover is for a cluster whose every replica lost the key; refused".into(),
            ));
        }
        let (kv, _) = self.etcd.get(&self.state_key).map_err(|e| {
            (
                RpcStatusCode::UNAVAILABLE,
                format!("etcd unreachable, recover not done: {e}"),
            )
        })?;
        let stored = match &kv {
            Some(kv) => Some(envelope::peek_header(&kv.value).map_err(|e| {
                (
                    RpcStatusCode::FAILED_PRECONDITION,
                    format!("the stored record's header does not parse: {e}"),
                )
            })?),
            None => None,
        };
        let held_epoch = inner.key.as_ref().map(|(e, _)| *e).unwrap_or(0);
        let epoch = stored.map(|h| h.epoch).unwrap_or(0).max(held_epoch) + 1;
        let generation = stored
            .map(|h| h.generation)
            .unwrap_or(0)
            .max(inner.high_water)
            + 1;
        let (runtime, policy_json) = self.image_state()?;
        let plaintext = state_plaintext(&policy_json, &runtime.secrets);
        let key = ClusterKey::generate()
            .map_err(|e| (RpcStatusCode::INTERNAL, format!("generating the key: {e}")))?;
        let record = envelope::seal_state(
            &key,
            &self.cfg.cluster_id,
            epoch,
            generation,
            &[0; 32],
            &plaintext,
        )
        .map_err(|e| (RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
        let expect = kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        match self.write_new_key_record(&record, expect) {
            NewKeyWrite::Done(revision) => {
                inner.key = Some((epoch, key));
                inner.current = None;
                let opened = OpenedState {
                    epoch,
                    generation,
                    prev: [0; 32],
                    sha256: envelope::sha256(&plaintext),
                    plaintext: Zeroizing::new(Vec::new()),
                };
                let count = runtime.secrets.len();
                self.install_state(&mut inner, runtime, &opened, revision, policy_json);
                drop(inner);
                self.readiness.fresh();
                let summary = format!(
                    "recover: new cluster key epoch {epoch}; state generation {generation} with {count} secrets re-imported from the image files (stored record: {}); replicas still holding an older key cannot read it and must rejoin",
                    stored
                        .map(|h| format!("epoch {}, generation {}", h.epoch, h.generation))
                        .unwrap_or_else(|| "none".into())
                );
                self.audit(Verdict::Ok, summary.clone());
                Ok((self.label(epoch, generation), summary))
            }
            NewKeyWrite::Conflict(_) => Err((
                RpcStatusCode::ABORTED,
                "the stored record changed while recovering; nothing written; try again".into(),
            )),
            NewKeyWrite::NotApplied(e) => Err((
                RpcStatusCode::UNAVAILABLE,
                format!("etcd unreachable, recover not done: {e}"),
            )),
            NewKeyWrite::Unknown(e) => {
                Err((RpcStatusCode::UNAVAILABLE, unknown_outcome("recover", &e)))
            }
        }
    }

    /// The image's policy (`--ra-config`, its exact text) and secrets, cross-checked.
    fn image_state(&self) -> Result<(Runtime, Vec<u8>), Refusal> {
        let path = &self.loader.ra_config;
        let policy_json = crate::fsutil::read_limited(path, MAX_POLICY_LEN)
            .map_err(|e| {
                (
                    RpcStatusCode::FAILED_PRECONDITION,
                    format!("reading {}: {e}", path.display()),
                )
            })?
            .to_vec();
        let policy = RaPolicy::from_json(&policy_json, &path.display().to_string())
            .map_err(|e| (RpcStatusCode::FAILED_PRECONDITION, e.to_string()))?;
        let secrets = self
            .loader
            .load_secrets()
            .map_err(|e| (RpcStatusCode::FAILED_PRECONDITION, e.to_string()))?;
        let runtime = self
            .loader
            .assemble(Arc::new(self.loader.verifier(policy)), Arc::new(secrets))
            .map_err(|e| (RpcStatusCode::FAILED_PRECONDITION, e.to_string()))?;
        Ok((runtime, policy_json))
    }

    /// What a verified peer receives, if this replica holds a key.
    pub fn share(&self) -> Option<KeyShare> {
        let inner = self.lock();
        let (epoch, key) = inner.key.as_ref()?;
        Some(KeyShare {
            epoch: *epoch,
            key: key.duplicate(),
            generation: inner.high_water,
            state_sha256: inner.high_sha,
        })
    }

    pub fn audit_log(&self) -> &crate::audit::AuditLog {
        self.shared.audit()
    }

    fn audit(&self, verdict: Verdict, reason: String) {
        let mut rec = Record::new(Event::Cluster, verdict);
        rec.reason = Some(format!("cluster {}: {reason}", self.cfg.cluster_id));
        self.shared.audit().write(&rec);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update of Inner is a few assignments that cannot panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `{"policy": <policy JSON>, "secrets": <secret_config.json>}` in a zeroizing buffer.
fn state_plaintext(policy_json: &[u8], secrets: &SecretStore) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    let _ = secrets.persist_with(|json| {
        // Sized once, so no reallocation leaves a copy of the secrets behind.
        out.reserve_exact(policy_json.len() + json.len() + 32);
        out.extend_from_slice(b"{\"policy\":");
        out.extend_from_slice(policy_json);
        out.extend_from_slice(b",\"secrets\":");
        out.extend_from_slice(json);
        out.extend_from_slice(b"}");
        Ok::<(), ()>(())
    });
    out
}

/// What became of a record sealed under a new cluster key ([`Cluster::write_new_key_record`]).
enum NewKeyWrite {
    Done(i64),
    Conflict(Option<Kv>),
    NotApplied(EtcdError),
    /// etcd's answer was lost and it could not be read back.
    Unknown(EtcdError),
}

fn unknown_outcome(op: &str, e: &EtcdError) -> String {
    format!(
        "{op}: etcd's answer was lost and the record could not be read back, so etcd may or may not store it (sealed under a new cluster key this replica has discarded): {e}. Read `kms admin status` on every replica once etcd answers; if they report the stored state unreadable (state-refused), run `kms admin recover`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_key_and_a_state_and_releases_also_freshness() {
        let r = Readiness::new(Some(Duration::from_millis(50)), "starting");
        let err = r.check().unwrap_err();
        assert!(err.contains("cluster replica not ready: starting"), "{err}");
        assert!(r.check_release().is_err());
        r.set_ready();
        r.fresh();
        assert!(r.check().is_ok());
        assert!(r.check_release().is_ok());
        std::thread::sleep(Duration::from_millis(1200));
        let err = r.check_release().unwrap_err();
        assert!(
            err.contains("cluster state stale") && err.contains("max_stale_secs"),
            "{err}"
        );
        assert!(r.check().is_ok(), "readiness does not follow staleness");
        r.fresh();
        assert!(r.check_release().is_ok());
        let unlimited = Readiness::new(None, "x");
        unlimited.set_ready();
        assert!(unlimited.check_release().is_ok());
    }

    #[test]
    fn the_state_document_holds_the_policy_and_the_secrets_verbatim() {
        let secrets = SecretStore::from_json(br#"{"k": "dmFsdWU="}"#).unwrap();
        let plain = state_plaintext(br#"{"sgx_mrs": []}"#, &secrets);
        let doc: StateDoc<'_> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(doc.policy.get(), r#"{"sgx_mrs": []}"#);
        let back = SecretStore::from_json(doc.secrets.get().as_bytes()).unwrap();
        assert!(back.contains("k"));
        assert!(
            serde_json::from_slice::<StateDoc<'_>>(br#"{"policy": {}, "secrets": {}, "x": 1}"#)
                .is_err()
        );
    }
}
