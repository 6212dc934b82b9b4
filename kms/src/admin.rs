//! The admin API: `kms.Admin`, a gRPC service on its own port (`--admin-listen`) through which
//! operators whose keys are pinned in the measured image read and change the KMS's state.
//!
//! Order of every call, fail-closed at each step, and every call audited (event `admin`, with
//! the operator's name and key fingerprint and the operation, never a value; a caller that is
//! not admitted is a `refusal` naming the op and its key's fingerprint, aggregated like every
//! other refusal of an unauthenticated peer so a flood cannot fill the disk):
//! 1. the TLS client certificate (UNAUTHENTICATED if none); TLS proved the caller holds its key;
//! 2. admission: SHA-256 of its SubjectPublicKeyInfo must be pinned ([`Operators`]);
//!    PERMISSION_DENIED otherwise, and for every call when none is pinned (admin disabled);
//! 3. the request (JSON; INVALID_ARGUMENT naming the field);
//! 4. for writes, under the KMS's write lock: the state must be persistent (sealed secrets;
//!    FAILED_PRECONDITION naming the knob), `base_version` must be the current state version
//!    (ABORTED with the current one: a replayed or racing change never applies), the new state
//!    must pass the checks a reload applies ([`Loader::assemble`]; INVALID_ARGUMENT, nothing
//!    applied), and it is persisted sealed before it is swapped in (INTERNAL if that fails,
//!    the old state keeps serving).
//!
//! Messages are JSON objects (UTF-8 bytes in the gRPC message), not protobuf: the service is
//! ours, and every field has a name an error can cite. Methods: [`STATUS`], [`PUT_SECRET`],
//! [`DELETE_SECRET`], [`SET_POLICY`], [`RELEASE_LOG`].
//!
//! Why a separate port and not the GetSecret port: admin requests carry policies and secrets
//! (up to [`MAX_ADMIN_REQUEST`]), while the main port's gRPC limits are tuned for a flood of
//! tiny GetSecret calls; a separate server keeps those limits and their benchmark untouched,
//! and lets the operator port be bound to a management address. Its own completion queue keeps
//! a flood of admin connections off the GetSecret threads.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, TrySendError};
use std::time::Duration;

use grpcio::{
    GrpcSlice, Marshaller, MessageReader, Method, MethodType, RpcContext, RpcStatus, RpcStatusCode,
    Service, ServiceBuilder, UnarySink,
};
use ratls::policy::{MAX_POLICY_LEN, RaPolicy};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::{Event, Record, Verdict};
use crate::cluster::replica::Cluster;
use crate::operators::{Operator, Operators, spki_sha256};
use crate::runtime::{Loader, Runtime};
use crate::service::{self, Shared};

/// Largest admin request: a secret of 1 MiB in base64, or a policy, with room to spare.
pub const MAX_ADMIN_REQUEST: usize = 2 << 20;
/// Most bytes of the audit log's tail [`RELEASE_LOG`] returns.
pub const MAX_LOG_TAIL: u64 = 1 << 20;
/// Default tail of the audit log returned.
pub const DEFAULT_LOG_TAIL: u64 = 64 * 1024;

/// The state version, the secrets' names and ACLs, the policy's entry names.
pub const STATUS: &str = "/kms.Admin/Status";
/// Sets one secret (value and `allow` list).
pub const PUT_SECRET: &str = "/kms.Admin/PutSecret";
/// Deletes one secret.
pub const DELETE_SECRET: &str = "/kms.Admin/DeleteSecret";
/// Replaces the policy (`dynamic_config.json` form).
pub const SET_POLICY: &str = "/kms.Admin/SetPolicy";
/// The tail of the audit log (releases, refusals, admin actions; never values).
pub const RELEASE_LOG: &str = "/kms.Admin/ReleaseLog";
/// Cluster mode: creates the cluster key and state gen 1 (only when no replica holds a key).
pub const GENESIS: &str = "/kms.Admin/Genesis";
/// Cluster mode, every replica lost: a new key at the next epoch, state re-imported.
pub const RECOVER: &str = "/kms.Admin/Recover";

/// A request; it may carry a secret, so it is wiped on drop.
pub struct AdminRequest(Zeroizing<Vec<u8>>);
/// A reply (never carries a secret value).
pub struct AdminReply(Vec<u8>);

const REQ: Marshaller<AdminRequest> = Marshaller {
    ser: ser_request,
    de: de_request,
};
const REPLY: Marshaller<AdminReply> = Marshaller {
    ser: ser_reply,
    de: de_reply,
};

const fn method(name: &'static str) -> Method<AdminRequest, AdminReply> {
    Method {
        ty: MethodType::Unary,
        name,
        req_mar: REQ,
        resp_mar: REPLY,
    }
}

const METHODS: [Method<AdminRequest, AdminReply>; 7] = [
    method(STATUS),
    method(PUT_SECRET),
    method(DELETE_SECRET),
    method(SET_POLICY),
    method(RELEASE_LOG),
    method(GENESIS),
    method(RECOVER),
];

/// What the admin service needs besides the shared state.
pub struct Admin {
    pub shared: Arc<Shared>,
    pub loader: Arc<Loader>,
    pub operators: Operators,
    /// The audit log file, when there is one (`--audit-log`), for [`RELEASE_LOG`].
    pub audit_file: Option<PathBuf>,
    /// Cluster mode: writes go to etcd (CAS) instead of the sealed file; Genesis and Recover.
    pub cluster: Option<Arc<Cluster>>,
}

/// Admitted admin calls waiting for the admin worker; more are refused at once
/// (RESOURCE_EXHAUSTED), so a burst of operator calls cannot pile up without bound.
pub const ADMIN_QUEUE: usize = 16;
/// How long the worker waits for a reply to be handed to gRPC core.
const REPLY_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// An admitted call for the admin worker, with the sink its reply goes to.
struct Job {
    method: &'static str,
    peer: String,
    cert: Option<Vec<u8>>,
    request: AdminRequest,
    sink: UnarySink<AdminReply>,
}

/// The `kms.Admin` service.
///
/// Calls run on one `kms-admin` worker thread, never on a gRPC server thread: admin writes
/// block on the disk (a sealed file, fsync) or, in cluster mode, on etcd (compare-and-swap,
/// with its timeout), and a gRPC thread must not wait on either. A caller whose certificate is
/// not a pinned operator's is refused (and audited) on the gRPC thread at once, without
/// queueing, so a flood of strangers never delays an operator.
pub fn service(admin: Arc<Admin>) -> Service {
    let (jobs, queue) = mpsc::sync_channel::<Job>(ADMIN_QUEUE);
    let worker_admin = Arc::clone(&admin);
    let started = std::thread::Builder::new()
        .name("kms-admin".into())
        .spawn(move || worker(&worker_admin, &queue));
    if let Err(e) = started {
        // `jobs` then has no receiver: every admitted call is answered UNAVAILABLE below.
        eprintln!("kms: starting the admin worker thread failed: {e}; admin calls will be refused");
    }
    let mut builder = ServiceBuilder::new();
    for m in &METHODS {
        let admin = Arc::clone(&admin);
        let jobs = jobs.clone();
        let method = m.name;
        builder = builder.add_unary_handler(m, move |ctx, req: AdminRequest, sink| {
            let peer = crate::gate::client_address(&ctx.peer());
            let cert = service::peer_cert_pem(&ctx);
            if admin.admit(cert.as_deref()).is_err() {
                // The refusal path: no I/O but the (aggregated) audit record.
                let outcome = admin.call(method, &peer, cert.as_deref(), &req.0);
                respond(&ctx, sink, outcome);
                return;
            }
            let job = Job {
                method,
                peer,
                cert,
                request: req,
                sink,
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => respond(
                    &ctx,
                    job.sink,
                    Err(RpcStatus::with_message(
                        RpcStatusCode::RESOURCE_EXHAUSTED,
                        format!(
                            "the admin API is busy: {ADMIN_QUEUE} calls are already waiting; retry"
                        ),
                    )),
                ),
                Err(TrySendError::Disconnected(job)) => respond(
                    &ctx,
                    job.sink,
                    Err(RpcStatus::with_message(
                        RpcStatusCode::UNAVAILABLE,
                        "the admin worker thread is not running (see the KMS's stderr)".into(),
                    )),
                ),
            }
        });
    }
    builder.build()
}

/// The admin worker: each admitted call in turn, its reply handed to gRPC core from here. It
/// ends when the service (and so every sender) is dropped.
fn worker(admin: &Admin, queue: &mpsc::Receiver<Job>) {
    for job in queue {
        let outcome = admin.call(job.method, &job.peer, job.cert.as_deref(), &job.request.0);
        let sent = match outcome {
            Ok(bytes) => job.sink.success(AdminReply(bytes)),
            Err(status) => job.sink.fail(status),
        };
        // The operator may have gone away; nothing useful to do about it here.
        let _ = crate::server::block_on_timeout(sent, REPLY_SEND_TIMEOUT);
    }
}

/// The operation a method performs, for the audit log.
fn op_name(method: &str) -> &'static str {
    match method {
        STATUS => "status",
        PUT_SECRET => "put_secret",
        DELETE_SECRET => "delete_secret",
        SET_POLICY => "set_policy",
        RELEASE_LOG => "release_log",
        GENESIS => "genesis",
        RECOVER => "recover",
        _ => "unknown",
    }
}

/// An admitted caller.
struct Caller<'a> {
    operator: &'a Operator,
}

impl Caller<'_> {
    fn describe(&self) -> String {
        format!(
            "operator {:?} (spki_sha256 {})",
            self.operator.name,
            hex::encode(self.operator.spki_sha256)
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSecretRequest {
    base_version: String,
    name: String,
    /// Base64 of the secret, as in `secret_config.json`.
    value: String,
    #[serde(default)]
    allow: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSecretRequest {
    base_version: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPolicyRequest {
    base_version: String,
    /// The exact text of the new `dynamic_config.json`.
    policy_json: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseLogRequest {
    #[serde(default)]
    max_bytes: Option<u64>,
}

#[derive(Serialize)]
struct StatusReply<'a> {
    version: String,
    operator: &'a str,
    /// Why writes are refused, if they are (plain secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    writes_refused: Option<String>,
    /// Cluster mode: the replica's cluster state (id, epoch, gen, readiness, etcd).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<serde_json::Value>,
    secrets: Vec<SecretAcl<'a>>,
    policy_entries: Vec<String>,
}

#[derive(Serialize)]
struct SecretAcl<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<&'a [String]>,
}

#[derive(Serialize)]
struct WriteReply {
    version: String,
}

#[derive(Serialize)]
struct LogReply {
    audit_log: String,
    /// Whole records (JSON lines) from the end of the log, oldest first.
    records: Vec<String>,
}

/// A refusal: the status the caller gets (its message also goes to the audit record).
struct Failure {
    status: RpcStatus,
}

fn fail(code: RpcStatusCode, msg: impl Into<String>) -> Failure {
    Failure {
        status: RpcStatus::with_message(code, msg.into()),
    }
}

impl Admin {
    /// One call: admission, then the operation; audited either way.
    pub fn call(
        &self,
        method: &str,
        peer: &str,
        cert_pem: Option<&[u8]>,
        request: &[u8],
    ) -> Result<Vec<u8>, RpcStatus> {
        let op = op_name(method);
        let mut rec = Record::new(Event::Admin, Verdict::Rejected);
        rec.peer = Some(peer);
        let caller = match self.admit(cert_pem) {
            Ok(caller) => caller,
            Err(e) => {
                rec.event = Event::Refusal;
                rec.status = Some(service::code_name(e.status.code()));
                rec.reason = Some(format!("admin {op} refused: {}", e.status.message()));
                self.shared.audit().write(&rec);
                return Err(e.status);
            }
        };
        let who = caller.describe();
        let mut secret_name: Option<String> = None;
        let outcome = match method {
            STATUS => parse::<StatusRequest>(request).and_then(|_| self.status(&caller)),
            PUT_SECRET => parse::<PutSecretRequest>(request).and_then(|req| {
                secret_name = Some(req.name.clone());
                self.put_secret(req)
            }),
            DELETE_SECRET => parse::<DeleteSecretRequest>(request).and_then(|req| {
                secret_name = Some(req.name.clone());
                self.delete_secret(req)
            }),
            SET_POLICY => parse::<SetPolicyRequest>(request).and_then(|req| self.set_policy(req)),
            RELEASE_LOG => parse::<ReleaseLogRequest>(request).and_then(|req| self.log(req)),
            GENESIS => {
                parse::<StatusRequest>(request).and_then(|_| self.cluster_op(Cluster::genesis))
            }
            RECOVER => {
                parse::<StatusRequest>(request).and_then(|_| self.cluster_op(Cluster::recover))
            }
            other => Err(fail(
                RpcStatusCode::UNIMPLEMENTED,
                format!("unknown admin method {other}"),
            )),
        };
        rec.secret = secret_name.as_deref();
        match outcome {
            Ok((reply, summary)) => {
                rec.verdict = Verdict::Ok;
                rec.status = Some("OK");
                rec.reason = Some(format!("{op} by {who}: {summary}"));
                self.shared.audit().write(&rec);
                Ok(reply)
            }
            Err(e) => Err(self.audit_refusal(rec, op, &who, e)),
        }
    }

    fn audit_refusal(&self, mut rec: Record<'_>, op: &str, who: &str, e: Failure) -> RpcStatus {
        rec.status = Some(service::code_name(e.status.code()));
        rec.reason = Some(format!("{op} by {who}: refused: {}", e.status.message()));
        self.shared.audit().write(&rec);
        e.status
    }

    /// Steps 1 and 2.
    fn admit(&self, cert_pem: Option<&[u8]>) -> Result<Caller<'_>, Failure> {
        if self.operators.is_empty() {
            return Err(fail(
                RpcStatusCode::PERMISSION_DENIED,
                format!(
                    "the admin API is disabled: no operator is pinned ({})",
                    self.operators.source()
                ),
            ));
        }
        let Some(pem) = cert_pem else {
            return Err(fail(
                RpcStatusCode::UNAUTHENTICATED,
                "no client certificate: admin calls need the operator's certificate (kms admin --cert/--key)",
            ));
        };
        let fingerprint = std::str::from_utf8(pem)
            .ok()
            .and_then(|text| ratls::cert::der_from_pem(text).ok())
            .ok_or_else(|| "the client certificate is not PEM".to_owned())
            .and_then(|der| spki_sha256(&der))
            .map_err(|e| fail(RpcStatusCode::UNAUTHENTICATED, e))?;
        match self.operators.find(&fingerprint) {
            Some(operator) => Ok(Caller { operator }),
            None => Err(fail(
                RpcStatusCode::PERMISSION_DENIED,
                format!(
                    "operator key spki_sha256 {} is not pinned in {}",
                    hex::encode(fingerprint),
                    self.operators.source()
                ),
            )),
        }
    }

    fn status(&self, caller: &Caller<'_>) -> Result<(Vec<u8>, String), Failure> {
        let (runtime, version) = self.shared.current_versioned();
        let reply = StatusReply {
            version: version.clone(),
            operator: &caller.operator.name,
            writes_refused: match &self.cluster {
                Some(cluster) => cluster.readiness().err(),
                None => self.loader.check_persistent().err().map(|e| e.to_string()),
            },
            cluster: self.cluster.as_ref().map(|c| c.status()),
            secrets: runtime
                .secrets
                .acls()
                .map(|(name, allow)| SecretAcl { name, allow })
                .collect(),
            policy_entries: entry_names(&runtime),
        };
        Ok((to_json(&reply), format!("state version {version}")))
    }

    fn put_secret(&self, req: PutSecretRequest) -> Result<(Vec<u8>, String), Failure> {
        let value = Zeroizing::new(req.value);
        self.write(&req.base_version, |_, current| {
            let secrets = current
                .secrets
                .with_put(&req.name, value, req.allow)
                .map_err(|e| fail(RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
            Ok(Change {
                verifier: Arc::clone(&current.verifier),
                secrets: Arc::new(secrets),
                persist: Persist::Secrets,
            })
        })
    }

    fn delete_secret(&self, req: DeleteSecretRequest) -> Result<(Vec<u8>, String), Failure> {
        self.write(&req.base_version, |_, current| {
            let secrets = current.secrets.without(&req.name).ok_or_else(|| {
                fail(
                    RpcStatusCode::NOT_FOUND,
                    format!("no secret named {:?}", req.name),
                )
            })?;
            Ok(Change {
                verifier: Arc::clone(&current.verifier),
                secrets: Arc::new(secrets),
                persist: Persist::Secrets,
            })
        })
    }

    fn set_policy(&self, req: SetPolicyRequest) -> Result<(Vec<u8>, String), Failure> {
        let json = req.policy_json.into_bytes();
        if json.len() > MAX_POLICY_LEN {
            return Err(fail(
                RpcStatusCode::INVALID_ARGUMENT,
                format!("policy_json: {} bytes, limit {MAX_POLICY_LEN}", json.len()),
            ));
        }
        self.write(&req.base_version, |loader, current| {
            // The parser and validator a load uses, with the request named in its errors.
            let policy = RaPolicy::from_json(&json, "SetPolicy policy_json")
                .map_err(|e| fail(RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
            Ok(Change {
                verifier: Arc::new(loader.verifier(policy)),
                secrets: Arc::clone(&current.secrets),
                persist: Persist::Policy(json),
            })
        })
    }

    /// Step 4 for every write, under the write lock: persistent state, the version check,
    /// `change` (which builds the new parts), the cross-check a reload applies, persisting,
    /// and only then the swap. Any failure leaves the running state and the files as they were.
    fn write(
        &self,
        base_version: &str,
        change: impl FnOnce(&Loader, &Runtime) -> Result<Change, Failure>,
    ) -> Result<(Vec<u8>, String), Failure> {
        let _writes = self.shared.write_lock();
        if self.cluster.is_none() {
            self.loader
                .check_persistent()
                .map_err(|e| fail(RpcStatusCode::FAILED_PRECONDITION, e.to_string()))?;
        }
        let (current, version) = self.shared.current_versioned();
        if base_version != version {
            return Err(fail(
                RpcStatusCode::ABORTED,
                format!(
                    "base_version {base_version:?} is not the current state version {version:?}: the state changed since the request was made (or this is a replay); read the status and make the change again"
                ),
            ));
        }
        let Change {
            verifier,
            secrets,
            persist,
        } = change(&self.loader, &current)?;
        let runtime = self
            .loader
            .assemble(verifier, secrets)
            .map_err(|e| fail(RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
        if let Some(cluster) = &self.cluster {
            // Cluster mode: encrypted as the next generation and CAS'd into etcd; applied
            // here (and by every replica's watch) only once etcd took it.
            let count = runtime.secrets.len();
            let policy_json = match persist {
                Persist::Policy(json) => Some(json),
                Persist::Secrets => None,
            };
            let (new_version, detail) = cluster
                .commit(runtime, policy_json)
                .map_err(|(code, msg)| fail(code, msg))?;
            return Ok((
                to_json(&WriteReply {
                    version: new_version.clone(),
                }),
                format!(
                    "applied; {count} secrets; state version {version} -> {new_version}; {detail}"
                ),
            ));
        }
        let file = match &persist {
            Persist::Secrets => self
                .loader
                .persist_secrets(&runtime.secrets)
                .map(|()| self.loader.secrets_path().to_owned()),
            Persist::Policy(json) => self
                .loader
                .persist_policy(json)
                .map(|()| self.loader.sealed_policy_path()),
        }
        .map_err(persist_failure)?;
        let count = runtime.secrets.len();
        let new_version = self.shared.replace(runtime);
        Ok((
            to_json(&WriteReply {
                version: new_version.clone(),
            }),
            format!(
                "applied; {count} secrets; state version {version} -> {new_version}; sealed to {}",
                file.display()
            ),
        ))
    }

    /// Genesis or Recover: cluster mode only.
    fn cluster_op(
        &self,
        op: fn(&Cluster) -> Result<(String, String), crate::cluster::replica::Refusal>,
    ) -> Result<(Vec<u8>, String), Failure> {
        let Some(cluster) = &self.cluster else {
            return Err(fail(
                RpcStatusCode::FAILED_PRECONDITION,
                "this KMS is not in cluster mode (no cluster.json): genesis and recover apply to a cluster",
            ));
        };
        let (version, summary) = op(cluster).map_err(|(code, msg)| fail(code, msg))?;
        Ok((to_json(&WriteReply { version }), summary))
    }

    fn log(&self, req: ReleaseLogRequest) -> Result<(Vec<u8>, String), Failure> {
        let Some(path) = &self.audit_file else {
            return Err(fail(
                RpcStatusCode::FAILED_PRECONDITION,
                "the audit log goes to stderr, not a file: start the KMS with --audit-log FILE to read it through the admin API",
            ));
        };
        let max = req.max_bytes.unwrap_or(DEFAULT_LOG_TAIL).min(MAX_LOG_TAIL);
        let records = tail_lines(path, max).map_err(|e| {
            fail(
                RpcStatusCode::INTERNAL,
                format!("reading the audit log {}: {e}", path.display()),
            )
        })?;
        let n = records.len();
        let reply = LogReply {
            audit_log: path.display().to_string(),
            records,
        };
        Ok((to_json(&reply), format!("{n} records")))
    }
}

/// A change built from the current state, not yet checked, persisted or applied.
struct Change {
    verifier: Arc<ratls::verify::Verifier>,
    secrets: Arc<kms_secrets::SecretStore>,
    persist: Persist,
}

/// What a change rewrites.
enum Persist {
    /// The sealed secrets file.
    Secrets,
    /// The sealed policy, with this (validated) JSON.
    Policy(Vec<u8>),
}

fn persist_failure(e: crate::runtime::PersistError) -> Failure {
    match e {
        e @ crate::runtime::PersistError::PlainSecrets(_) => {
            fail(RpcStatusCode::FAILED_PRECONDITION, e.to_string())
        }
        e => fail(
            RpcStatusCode::INTERNAL,
            format!("{e}; nothing was applied, the previous state keeps serving"),
        ),
    }
}

fn entry_names(runtime: &Runtime) -> Vec<String> {
    runtime
        .verifier
        .policy()
        .entries()
        .iter()
        .enumerate()
        .map(|(i, e)| e.name().map_or_else(|| format!("#{i}"), str::to_owned))
        .collect()
}

fn parse<'a, T: Deserialize<'a>>(request: &'a [u8]) -> Result<T, Failure> {
    if request.len() > MAX_ADMIN_REQUEST {
        return Err(fail(
            RpcStatusCode::INVALID_ARGUMENT,
            format!(
                "request too large: more than {MAX_ADMIN_REQUEST} bytes (kms admin sends JSON)"
            ),
        ));
    }
    serde_json::from_slice(request).map_err(|e| {
        // serde_json's type errors quote the offending value, which may be a secret put in
        // the wrong field: those are reported by position only.
        let text = e.to_string();
        let msg = if text.starts_with("invalid type") || text.starts_with("invalid value") {
            format!(
                "a field has the wrong type or value at line {} column {}",
                e.line(),
                e.column()
            )
        } else {
            text
        };
        fail(
            RpcStatusCode::INVALID_ARGUMENT,
            format!("malformed admin request: {msg}"),
        )
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, lists) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The whole lines within the last `max` bytes of `path`.
fn tail_lines(path: &std::path::Path, max: u64) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line is cut unless the tail starts right after a newline.
        lines.remove(0);
    }
    Ok(lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Encodes a secret's raw bytes as the base64 text a request carries (`kms admin`'s side).
#[cfg(feature = "host-tools")]
pub fn encode_value(raw: &[u8]) -> Zeroizing<String> {
    use base64::Engine as _;
    let mut out = Zeroizing::new(String::with_capacity(raw.len().div_ceil(3) * 4));
    base64::engine::general_purpose::STANDARD.encode_string(raw, &mut out);
    out
}

fn respond(ctx: &RpcContext<'_>, sink: UnarySink<AdminReply>, outcome: Result<Vec<u8>, RpcStatus>) {
    let sent = match outcome {
        Ok(bytes) => sink.success(AdminReply(bytes)),
        Err(status) => sink.fail(status),
    };
    ctx.spawn(async move {
        // The operator may have gone away; nothing useful to do about it here.
        let _ = sent.await;
    });
}

fn de_request(reader: MessageReader) -> grpcio::Result<AdminRequest> {
    let mut buf = Zeroizing::new(Vec::new());
    // One byte past the limit, so `parse` reports an oversized request.
    reader
        .take(MAX_ADMIN_REQUEST as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(AdminRequest(buf))
}

fn ser_request(req: &AdminRequest, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    *buf = GrpcSlice::from(req.0.as_slice());
    Ok(())
}

fn ser_reply(reply: &AdminReply, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    *buf = GrpcSlice::from(reply.0.as_slice());
    Ok(())
}

fn de_reply(mut reader: MessageReader) -> grpcio::Result<AdminReply> {
    let mut buf = Vec::new();
    reader
        .read_to_end(&mut buf)
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(AdminReply(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_drops_a_cut_first_line() {
        let dir = std::env::temp_dir().join(format!("kms-admin-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n").unwrap();
        assert_eq!(tail_lines(&path, 1000).unwrap().len(), 3);
        assert_eq!(tail_lines(&path, 10).unwrap(), vec!["{\"c\":3}".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn requests_are_parsed_strictly() {
        assert!(parse::<DeleteSecretRequest>(br#"{"base_version": "v", "name": "k"}"#).is_ok());
        let err = parse::<DeleteSecretRequest>(br#"{"base_version": "v", "name": "k", "x": 1}"#)
            .err()
            .unwrap();
        assert_eq!(err.status.code(), RpcStatusCode::INVALID_ARGUMENT);
        assert!(err.status.message().contains("unknown field"));
        let err = parse::<PutSecretRequest>(
            br#"{"base_version": "v", "name": "k", "value": "c2VjcmV0", "allow": "c2VjcmV0"}"#,
        )
        .err()
        .unwrap();
        assert!(
            err.status.message().contains("wrong type"),
            "{}",
            err.status.message()
        );
        assert!(!err.status.message().contains("c2VjcmV0"));
    }
}
