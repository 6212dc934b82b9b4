//! The gRPC services: `ratls.GrSecret/GetSecret` and `grpc.health.v1.Health/Check`, with raw
//! marshallers (no protoc) and the release decision.
//!
//! Order of a GetSecret call, fail-closed at each step:
//! 1. the client certificate from the TLS session (`x509_pem_cert`) — UNAUTHENTICATED if none;
//! 2. the verification pipeline (`ratls::verify`, cached per certificate) — UNAUTHENTICATED
//!    naming the failing check;
//! 3. the request — INVALID_ARGUMENT if malformed;
//! 4. the secret by name — NOT_FOUND; the ACL — PERMISSION_DENIED;
//! 5. the reply (`"<base64>"` by default, as Occlum's server sends it).
//!
//! No secret is looked up before step 2 succeeded, and only a [`VerifiedPeer`] reaches the
//! release decision. Every answer is audited; no value ever reaches a status message or a log.

use std::hash::{BuildHasher as _, RandomState};
use std::io::Read as _;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use grpcio::{
    GrpcSlice, Marshaller, MessageReader, Method, MethodType, RpcContext, RpcStatus, RpcStatusCode,
    Service, ServiceBuilder, UnarySink,
};
use ratls::policy::PolicyRejection;
use ratls::verify::{VerifiedPeer, VerifyError};
use zeroize::Zeroizing;

use crate::audit::{AuditLog, Event, Identity, Record, Verdict};
use crate::metrics::METRICS;
use crate::runtime::Runtime;
use crate::secrets::{Denied, ReplyForm};
use crate::timefmt;
use grsecret::server::{self as proto, MAX_REQUEST_LEN};

/// The auth-context property under which gRPC core exposes the peer's certificate.
pub const PEER_CERT_PROPERTY: &str = "x509_pem_cert";

/// A raw request: at most [`MAX_REQUEST_LEN`] + 1 bytes of the message (one more than allowed,
/// so an oversized message is detected without reading all of it).
pub struct RawRequest(pub(crate) Vec<u8>);

/// A raw reply; it may hold a secret, so it is wiped on drop.
pub struct RawReply(Zeroizing<Vec<u8>>);

/// Raw bytes in and out, for every method on the main port (kms.Replica's too).
pub(crate) const REQ_MARSHALLER: Marshaller<RawRequest> = Marshaller {
    ser: ser_request,
    de: de_request,
};
pub(crate) const REPLY_MARSHALLER: Marshaller<RawReply> = Marshaller {
    ser: ser_reply,
    de: de_reply,
};

/// `ratls.GrSecret/GetSecret`, wire-compatible with Occlum's `ratls.proto`.
pub const METHOD_GET_SECRET: Method<RawRequest, RawReply> = Method {
    ty: MethodType::Unary,
    name: "/ratls.GrSecret/GetSecret",
    req_mar: REQ_MARSHALLER,
    resp_mar: REPLY_MARSHALLER,
};

/// `grpc.health.v1.Health/Check`.
pub const METHOD_HEALTH_CHECK: Method<RawRequest, RawReply> = Method {
    ty: MethodType::Unary,
    name: "/grpc.health.v1.Health/Check",
    req_mar: REQ_MARSHALLER,
    resp_mar: REPLY_MARSHALLER,
};

/// Service names the health check reports as SERVING ("" is the whole server).
const HEALTH_SERVICES: &[&str] = &["", "ratls.GrSecret"];

/// Lock stripes that serialize verifications of one certificate (see [`Flights`]).
const FLIGHT_STRIPES: usize = 64;

/// Makes concurrent calls presenting the same, not yet verified, certificate wait for one
/// verification instead of each running the pipeline: a client that sends its calls at once
/// (init does) is verified, and audited as an attestation, exactly once. Certificates are
/// spread over [`FLIGHT_STRIPES`] locks by a keyed hash, so different clients rarely wait for
/// each other, and never for long (one verification).
struct Flights {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

impl Flights {
    fn new() -> Self {
        Flights {
            stripes: (0..FLIGHT_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn enter(&self, cert: &[u8]) -> Option<MutexGuard<'_, ()>> {
        let hash = self.hasher.hash_one(cert);
        let stripe = usize::try_from(hash % FLIGHT_STRIPES as u64).unwrap_or(0);
        // The guard protects nothing but the order of verifications: a poisoned one will do.
        self.stripes
            .get(stripe)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// State shared by every call.
pub struct Shared {
    /// The configuration and its generation (1 at start, +1 at every replacement), and in
    /// cluster mode its cluster version (`<cluster_id>-e<epoch>-g<gen>`), the same on every
    /// replica.
    runtime: RwLock<(Arc<Runtime>, u64, Option<String>)>,
    /// Cluster mode: releases wait for the replica to be ready (key + verified state) and
    /// stop when the state is stale. `None` in single mode.
    cluster: Option<Arc<crate::cluster::replica::Readiness>>,
    /// Names this process's generations: a version from before a restart never matches.
    boot_id: String,
    /// Held across check-validate-persist-swap by admin writes and reloads.
    writes: Mutex<()>,
    audit: Arc<AuditLog>,
    reply_form: ReplyForm,
    flights: Flights,
}

impl Shared {
    pub fn new(runtime: Runtime, audit: Arc<AuditLog>, reply_form: ReplyForm) -> Shared {
        // Keyed hashes of a fresh RandomState are as unpredictable as this needs: the id only
        // keeps versions of different processes apart; it guards nothing secret.
        let boot_id = format!("{:016x}", RandomState::new().hash_one(std::process::id()));
        Shared {
            runtime: RwLock::new((Arc::new(runtime), 1, None)),
            cluster: None,
            boot_id,
            writes: Mutex::new(()),
            audit,
            reply_form,
            flights: Flights::new(),
        }
    }

    /// Cluster mode: releases and the health check follow `readiness`.
    pub fn with_cluster(mut self, readiness: Arc<crate::cluster::replica::Readiness>) -> Shared {
        self.cluster = Some(readiness);
        self
    }

    /// The configuration calls use now.
    pub fn current(&self) -> Arc<Runtime> {
        self.current_versioned().0
    }

    /// The configuration and its state version (`<boot id>-<generation>`).
    pub fn current_versioned(&self) -> (Arc<Runtime>, String) {
        // Replacing the pair cannot panic half-way, so a poisoned lock still holds a whole one.
        let guard = self
            .runtime
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = match &guard.2 {
            Some(label) => label.clone(),
            None => format!("{}-{}", self.boot_id, guard.1),
        };
        (Arc::clone(&guard.0), version)
    }

    /// Swaps in a new configuration; calls in flight finish with the old one. Returns the
    /// new state version.
    pub fn replace(&self, runtime: Runtime) -> String {
        let mut guard = self
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = (Arc::new(runtime), guard.1 + 1, None);
        METRICS.new_generation();
        format!("{}-{}", self.boot_id, guard.1)
    }

    /// [`Shared::replace`] with the cluster version `label` as the state version.
    pub fn replace_labeled(&self, runtime: Runtime, label: String) -> String {
        let mut guard = self
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = (Arc::new(runtime), guard.1 + 1, Some(label.clone()));
        METRICS.new_generation();
        label
    }

    /// Serializes configuration changes (admin writes, reloads) from check to swap.
    pub fn write_lock(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data, only the order of changes.
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit log, shared.
    pub fn audit_arc(&self) -> &Arc<AuditLog> {
        &self.audit
    }
}

/// Builds the two services around `shared`.
pub fn services(shared: &Arc<Shared>) -> (Service, Service) {
    let s = Arc::clone(shared);
    let secrets = ServiceBuilder::new()
        .add_unary_handler(&METHOD_GET_SECRET, move |ctx, req: RawRequest, sink| {
            let grpc_peer = ctx.peer();
            // A connection of the Occlum-compat listener (`fd:<N>`): the client's address and
            // the certificate its handshake carried; otherwise gRPC core's TLS session's.
            let (peer, cert_pem) = match crate::compat::peer(&grpc_peer) {
                Some(compat) => (compat.address, compat.cert_pem),
                None => (crate::gate::client_address(&grpc_peer), peer_cert_pem(&ctx)),
            };
            let attested = || crate::gate::mark_attested(&grpc_peer);
            let outcome = get_secret(&s, &peer, cert_pem.as_deref(), &req.0, attested);
            respond(&ctx, sink, outcome);
        })
        .build();
    let s = Arc::clone(shared);
    let health = ServiceBuilder::new()
        .add_unary_handler(&METHOD_HEALTH_CHECK, move |ctx, req: RawRequest, sink| {
            respond(&ctx, sink, health_check(&s, &req.0));
        })
        .build();
    (secrets, health)
}

/// The release decision for one GetSecret call, independent of gRPC plumbing so it can be
/// unit-tested: returns the reply bytes or the status to fail with. `attested` runs once the
/// caller has passed attestation and the policy (the connection gate then stops budgeting
/// its connection).
pub fn get_secret(
    shared: &Shared,
    peer_addr: &str,
    cert_pem: Option<&[u8]>,
    request: &[u8],
    attested: impl FnOnce(),
) -> Result<Zeroizing<Vec<u8>>, RpcStatus> {
    let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
    rec.peer = Some(peer_addr);
    // 0: cluster mode: nothing is released before the replica holds a verified state, nor
    // from a state older than max_stale_secs allows.
    if let Some(cluster) = &shared.cluster {
        if let Err(why) = cluster.check_release() {
            return Err(refuse(
                shared,
                rec,
                RpcStatus::with_message(RpcStatusCode::UNAVAILABLE, why),
            ));
        }
    }
    let runtime = shared.current();

    // 1 + 2: who is calling, verified before anything else.
    let verified = match authenticate(shared, &runtime, peer_addr, cert_pem) {
        Ok(peer) => peer,
        Err(refused) => {
            let Refused {
                identity,
                status,
                detail,
            } = *refused;
            rec.identity = identity;
            rec.reason = detail;
            return Err(refuse(shared, rec, status));
        }
    };
    rec.identity = identity_of(&verified);
    attested();

    // 3: the request.
    let name = match proto::decode_name(request) {
        Ok(name) => name,
        Err(e) => {
            return Err(refuse(
                shared,
                rec,
                RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, e.to_string()),
            ));
        }
    };
    rec.secret = Some(&name);

    // 4: the secret and its ACL, through the one door the store has.
    let secret = match runtime.secrets.release(&verified, &name) {
        Ok(secret) => secret,
        Err(denied) => {
            let code = match denied {
                Denied::NotFound { .. } => RpcStatusCode::NOT_FOUND,
                Denied::NotReleased { .. } => RpcStatusCode::PERMISSION_DENIED,
            };
            let status = RpcStatus::with_message(code, denied.to_string());
            return Err(refuse(shared, rec, status));
        }
    };

    // 5: release.
    let reply = proto::encode_reply(&secret.reply_text(shared.reply_form));
    rec.event = Event::Release;
    rec.verdict = Verdict::Ok;
    rec.status = Some("OK");
    shared.audit.write(&rec);
    METRICS.answer("OK");
    Ok(reply)
}

/// `grpc.health.v1.Health/Check`: SERVING for the whole server and `ratls.GrSecret`; in
/// cluster mode NOT_SERVING until the replica holds the cluster key and a verified state.
pub fn health_check(shared: &Shared, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, RpcStatus> {
    let service = proto::decode_name(request)
        .map_err(|e| RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, e.to_string()))?;
    if HEALTH_SERVICES.contains(&service.as_str()) {
        if shared.cluster.as_ref().is_some_and(|c| c.check().is_err()) {
            return Ok(Zeroizing::new(proto::HEALTH_NOT_SERVING.to_vec()));
        }
        Ok(Zeroizing::new(proto::HEALTH_SERVING.to_vec()))
    } else {
        Err(RpcStatus::with_message(
            RpcStatusCode::NOT_FOUND,
            format!("unknown service {service:?}"),
        ))
    }
}

/// Steps 1 and 2. A cache hit costs a hash; a miss runs the pipeline and is audited.
fn authenticate(
    shared: &Shared,
    runtime: &Runtime,
    peer_addr: &str,
    cert_pem: Option<&[u8]>,
) -> Result<VerifiedPeer, Box<Refused>> {
    let unauthenticated =
        |msg: String| RpcStatus::with_message(RpcStatusCode::UNAUTHENTICATED, msg);
    let Some(pem) = cert_pem else {
        let msg = "no client certificate: RA-TLS client authentication is required".to_owned();
        return Err(Refused::new(Identity::default(), unauthenticated(msg)));
    };
    // Keyed by the PEM text gRPC hands over: the calls after the first cost one hash.
    let now = timefmt::now_unix();
    if let Some(peer) = runtime.verifier.cached_pem(pem, now) {
        return Ok(peer);
    }
    let _flight = shared.flights.enter(pem);
    // Another call with this certificate may have verified it while this one waited.
    if let Some(peer) = runtime.verifier.cached_pem(pem, now) {
        return Ok(peer);
    }
    let mut rec = Record::new(Event::Attestation, Verdict::Ok);
    rec.peer = Some(peer_addr);
    let started = std::time::Instant::now();
    let verdict = runtime.verifier.verify_certificate_pem(pem, now);
    METRICS.attestation(
        verdict
            .as_ref()
            .map(drop)
            .map_err(|e| (e.check(), e.is_transient())),
        started.elapsed(),
    );
    match verdict {
        Ok(peer) => {
            rec.identity = identity_of(&peer);
            shared.audit.write(&rec);
            Ok(peer)
        }
        Err(e) => {
            // Best effort: say which enclave tried, if the certificate carries a readable quote.
            let identity = Identity::claimed_in_pem(pem);
            // Collateral still on its way (or a fetch in backoff): nothing about the peer was
            // judged, so it is told to retry (init attests again on UNAVAILABLE).
            let code = if e.is_transient() {
                RpcStatusCode::UNAVAILABLE
            } else {
                RpcStatusCode::UNAUTHENTICATED
            };
            rec.verdict = Verdict::Rejected;
            rec.identity = identity.clone();
            rec.status = Some(code_name(code));
            rec.reason = Some(e.to_string());
            shared.audit.write(&rec);
            let status = RpcStatus::with_message(code, peer_message(&e));
            let mut refused = Refused::new(identity, status);
            refused.detail = Some(e.to_string());
            Err(refused)
        }
    }
}

/// An authentication failure: who tried (as far as known), the status to answer with, and
/// the full reason for the audit log when the status leaves details out.
struct Refused {
    identity: Identity,
    status: RpcStatus,
    detail: Option<String>,
}

impl Refused {
    fn new(identity: Identity, status: RpcStatus) -> Box<Refused> {
        Box::new(Refused {
            identity,
            status,
            detail: None,
        })
    }
}

/// What an unauthenticated peer is told about its failed attestation: the check and, for the
/// measurement policy, each entry's failing field and the peer's own value, but never what
/// the policy expected. Those values would tell an attacker exactly which enclave to pose
/// as; they stay in the audit log (the `attestation` record carries the full message).
pub fn peer_message(e: &VerifyError) -> String {
    let VerifyError::Policy(PolicyRejection::NoMatch(mismatches)) = e else {
        // Other checks name the peer's own evidence, its platform's TCB status or the
        // collateral; the debug-enclave refusal names only the peer's own measurements.
        return e.to_string();
    };
    let mut msg = format!(
        "attestation check `{}` failed: no sgx_mrs entry matched",
        e.check()
    );
    for (i, m) in mismatches.iter().enumerate() {
        msg.push_str(if i == 0 { ": " } else { "; " });
        msg.push_str(&format!(
            "entry {}: {} does not match (actual {})",
            m.index(),
            m.field(),
            m.actual()
        ));
    }
    msg.push_str(" (the expected values are in the KMS's audit log)");
    msg
}

fn identity_of(peer: &VerifiedPeer) -> Identity {
    let mut identity = Identity::from_body(peer.report_body());
    identity.tcb_status = Some(peer.tcb_status().to_owned());
    let matched = peer.matched();
    identity.matched = Some(
        matched
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", matched.index)),
    );
    identity
}

fn refuse(shared: &Shared, mut rec: Record<'_>, status: RpcStatus) -> RpcStatus {
    rec.status = Some(code_name(status.code()));
    METRICS.answer(code_name(status.code()));
    if rec.reason.is_none() {
        rec.reason = Some(status.message().to_owned());
    }
    shared.audit.write(&rec);
    status
}

pub fn code_name(code: RpcStatusCode) -> &'static str {
    match code {
        RpcStatusCode::OK => "OK",
        RpcStatusCode::INVALID_ARGUMENT => "INVALID_ARGUMENT",
        RpcStatusCode::NOT_FOUND => "NOT_FOUND",
        RpcStatusCode::PERMISSION_DENIED => "PERMISSION_DENIED",
        RpcStatusCode::UNAUTHENTICATED => "UNAUTHENTICATED",
        RpcStatusCode::UNAVAILABLE => "UNAVAILABLE",
        RpcStatusCode::ABORTED => "ABORTED",
        RpcStatusCode::FAILED_PRECONDITION => "FAILED_PRECONDITION",
        RpcStatusCode::INTERNAL => "INTERNAL",
        _ => "OTHER",
    }
}

/// The client certificate gRPC core put in the call's auth context, if any.
pub fn peer_cert_pem(ctx: &RpcContext<'_>) -> Option<Vec<u8>> {
    let auth = ctx.auth_context()?;
    (&auth)
        .into_iter()
        .find(|p| p.name() == PEER_CERT_PROPERTY)
        .map(|p| p.value().to_vec())
}

pub(crate) fn respond(
    ctx: &RpcContext<'_>,
    sink: UnarySink<RawReply>,
    outcome: Result<Zeroizing<Vec<u8>>, RpcStatus>,
) {
    let sent = match outcome {
        Ok(bytes) => sink.success(RawReply(bytes)),
        Err(status) => sink.fail(status),
    };
    ctx.spawn(async move {
        // The client may have gone away; nothing useful to do about it here.
        let _ = sent.await;
    });
}

fn de_request(reader: MessageReader) -> grpcio::Result<RawRequest> {
    let mut buf = Vec::new();
    // Read one byte past the limit so the decoder can report an oversized message.
    reader
        .take(MAX_REQUEST_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(RawRequest(buf))
}

fn ser_request(req: &RawRequest, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    *buf = GrpcSlice::from(req.0.as_slice());
    Ok(())
}

fn ser_reply(reply: &RawReply, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    // gRPC core copies the bytes into its own slice, which it frees (not wipes) after sending:
    // the one copy of a released secret this process cannot zeroize.
    *buf = GrpcSlice::from(reply.0.as_slice());
    Ok(())
}

fn de_reply(mut reader: MessageReader) -> grpcio::Result<RawReply> {
    let mut buf = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut buf)
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(RawReply(buf))
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use ratls::cert::RaTlsIdentity;
    use ratls::collateral::StaticCollateral;
    use ratls::policy::RaPolicy;
    use ratls::verify::Verifier;
    use sgx_sim::{Identity as SimIdentity, PlatformOptions, SimPlatform, SimQuoteSource};

    use super::*;
    use crate::secrets::SecretStore;

    /// Calls that arrive together with one new certificate (init sends its calls at once)
    /// must run the pipeline, and audit an attestation, once: the others wait and reuse it.
    #[test]
    fn concurrent_calls_with_one_new_certificate_verify_it_once() {
        let dir = std::env::temp_dir().join(format!("kms-flights-{}", std::process::id()));
        let opts = PlatformOptions::new(timefmt::now_unix());
        let platform = Arc::new(SimPlatform::create(&dir, &opts).unwrap());
        let identity = SimIdentity::random(None).unwrap();
        let policy = serde_json::json!({
            "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{ "mr_enclave": hex::encode(identity.mr_enclave),
                          "mr_signer": hex::encode(identity.mr_signer),
                          "isv_prod_id": identity.isv_prod_id, "isv_svn": identity.isv_svn,
                          "config_svn": identity.config_svn, "debuggable": false }]
        });
        let verifier = Verifier::new(
            ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "test".into()),
            Arc::new(StaticCollateral::new(platform.collateral(), "sim")),
            RaPolicy::from_json(policy.to_string().as_bytes(), "policy").unwrap(),
        );
        let runtime = Runtime {
            verifier: Arc::new(verifier),
            secrets: Arc::new(SecretStore::from_json(br#"{"k": "dmFsdWU="}"#).unwrap()),
        };
        let log = dir.join("audit.log");
        let audit = Arc::new(AuditLog::file(&log).unwrap());
        let shared = Arc::new(Shared::new(runtime, audit, ReplyForm::Quoted));
        let source = SimQuoteSource {
            platform: Arc::clone(&platform),
            identity,
        };
        let pem = RaTlsIdentity::mint(&source).unwrap().cert_pem();

        const CALLS: usize = 8;
        let barrier = Arc::new(Barrier::new(CALLS));
        let threads: Vec<_> = (0..CALLS)
            .map(|_| {
                let (shared, barrier, pem) =
                    (Arc::clone(&shared), Arc::clone(&barrier), pem.clone());
                std::thread::spawn(move || {
                    let runtime = shared.current();
                    barrier.wait();
                    authenticate(&shared, &runtime, "ipv4:127.0.0.1:1", Some(pem.as_bytes()))
                        .is_ok()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap(), "every call is authenticated");
        }
        let stats = shared.current().verifier.stats();
        assert_eq!(stats.full_dcap + stats.platform_hits, 1, "{stats:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.matches(r#""event":"attestation""#).count(),
            1,
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
