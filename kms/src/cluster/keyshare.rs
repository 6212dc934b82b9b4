//! `kms.Replica/GetClusterKey`: how a joining replica obtains the cluster key from a running
//! one, over mutual RA-TLS, both sides under the replica policy (`cluster::policy`).
//!
//! Server (on the main port, behind the same gate): the caller's RA-TLS client certificate
//! goes through the ratls pipeline with the replica verifier (same trust anchor and
//! collateral as clients); a caller that fails is refused with PERMISSION_DENIED naming the
//! check, and audited; one that passes is marked attested at the gate (as GetSecret does)
//! and receives `{cluster_id, epoch, key_b64, generation, state_sha256_hex}`.
//!
//! Client (the joiner, on a thread of its own): init's stack (grpc-unary over rustls),
//! presenting its own RA-TLS certificate and verifying the server's under the replica policy
//! inside the handshake, before the request is sent. A joiner that accepted an unattested
//! "peer" could be handed a host-made key and state, and would then release host-chosen
//! secrets to genuine enclaves: mutual verification is not optional.
//!
//! Messages are JSON (UTF-8 bytes in the gRPC message), as on `kms.Admin`.

use std::sync::Arc;
use std::time::Duration;

use grpc_unary::{Channel, ClientConfig};
use grpcio::{Method, MethodType, RpcStatus, RpcStatusCode, Service, ServiceBuilder};
use ratls::cert::RaTlsIdentity;
use ratls::verify::Verifier;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::envelope::ClusterKey;
use super::keywire::{self, WireShare};
use super::replica::{Cluster, KeyShare};
use crate::audit::{Event, Identity, Record, Verdict};
use crate::service::{self, RawReply, RawRequest};

/// The method.
pub const GET_CLUSTER_KEY: &str = "/kms.Replica/GetClusterKey";
/// Largest request read (`{"cluster_id": "..."}`).
const MAX_KEY_REQUEST: usize = 1024;
/// The joiner's budgets per peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Raw bytes in and out, as every method on the main port (`crate::service`'s marshallers: a
/// request is read up to `MAX_REQUEST_LEN` + 1 bytes, a reply is wiped on drop, and it
/// carries the cluster key).
const METHOD: Method<RawRequest, RawReply> = Method {
    ty: MethodType::Unary,
    name: GET_CLUSTER_KEY,
    req_mar: service::REQ_MARSHALLER,
    resp_mar: service::REPLY_MARSHALLER,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDoc {
    cluster_id: String,
}

/// The `kms.Replica` service around `cluster`.
pub fn service(cluster: Arc<Cluster>) -> Service {
    ServiceBuilder::new()
        .add_unary_handler(&METHOD, move |ctx, req: RawRequest, sink| {
            let grpc_peer = ctx.peer();
            let peer = crate::gate::client_address(&grpc_peer);
            let cert = crate::service::peer_cert_pem(&ctx);
            let attested = || crate::gate::mark_attested(&grpc_peer);
            let outcome = serve_key(&cluster, &peer, cert.as_deref(), &req.0, attested);
            service::respond(&ctx, sink, outcome);
        })
        .build()
}

/// One GetClusterKey call: verify the caller under the replica policy, then answer.
pub fn serve_key(
    cluster: &Cluster,
    peer: &str,
    cert_pem: Option<&[u8]>,
    request: &[u8],
    attested: impl FnOnce(),
) -> Result<Zeroizing<Vec<u8>>, RpcStatus> {
    let audit = cluster.audit_log();
    let refuse = |code: RpcStatusCode, msg: String, identity: Identity| {
        // A refusal of a peer that did not pass is aggregated like every other refusal of an
        // unauthenticated caller, so a flood cannot fill the disk.
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some(peer);
        rec.identity = identity;
        rec.status = Some(crate::service::code_name(code));
        rec.reason = Some(format!("GetClusterKey refused: {msg}"));
        audit.write(&rec);
        RpcStatus::with_message(code, msg)
    };
    let Some(pem) = cert_pem else {
        return Err(refuse(
            RpcStatusCode::UNAUTHENTICATED,
            "no client certificate: a replica presents its RA-TLS certificate".into(),
            Identity::default(),
        ));
    };
    let now = crate::timefmt::now_unix();
    let verified = match cluster.replica_verifier.verify_certificate_pem(pem, now) {
        Ok(peer) => peer,
        Err(e) => {
            let identity = Identity::claimed_in_pem(pem);
            let code = if e.is_transient() {
                RpcStatusCode::UNAVAILABLE
            } else {
                RpcStatusCode::PERMISSION_DENIED
            };
            return Err(refuse(
                code,
                format!(
                    "the caller is not admitted under the replica policy (cluster.json replica_policy {}): check `{}`: {e}",
                    cluster.cfg.replica_policy.name(),
                    e.check()
                ),
                identity,
            ));
        }
    };
    attested();
    let identity = Identity::from_body(verified.report_body());
    if request.len() > MAX_KEY_REQUEST {
        return Err(refuse(
            RpcStatusCode::INVALID_ARGUMENT,
            format!("request larger than {MAX_KEY_REQUEST} bytes"),
            identity,
        ));
    }
    let doc: RequestDoc = serde_json::from_slice(request).map_err(|e| {
        refuse(
            RpcStatusCode::INVALID_ARGUMENT,
            format!("malformed request: {e}"),
            identity.clone(),
        )
    })?;
    if doc.cluster_id != cluster.cfg.cluster_id {
        return Err(refuse(
            RpcStatusCode::FAILED_PRECONDITION,
            format!(
                "the caller asks for cluster {:?}; this replica is in cluster {:?}",
                doc.cluster_id, cluster.cfg.cluster_id
            ),
            identity,
        ));
    }
    let Some(share) = cluster.share() else {
        return Err(refuse(
            RpcStatusCode::UNAVAILABLE,
            "this replica holds no cluster key yet".into(),
            identity,
        ));
    };
    let mut rec = Record::new(Event::Cluster, Verdict::Ok);
    rec.peer = Some(peer);
    rec.identity = identity;
    rec.reason = Some(format!(
        "cluster {}: peer-key-served: epoch {}, generation {} to a peer admitted under the replica policy",
        cluster.cfg.cluster_id, share.epoch, share.generation
    ));
    audit.write(&rec);
    Ok(encode_reply(&cluster.cfg.cluster_id, &share))
}

/// The joiner: obtains the key from `peer`, verifying it under `verifier` in the handshake
/// and presenting `identity`.
pub fn fetch(
    peer: &str,
    verifier: Arc<Verifier>,
    identity: &RaTlsIdentity,
    cluster_id: &str,
) -> Result<KeyShare, String> {
    let tls = ratls::tls::client_config(verifier, identity)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let cfg = ClientConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .call_timeout(CALL_TIMEOUT)
        .max_message_size(keywire::MAX_KEY_REPLY)
        .build();
    // RA-TLS ignores the name (trust comes from the quote); any valid one will do.
    let name = ServerName::try_from("kms").map_err(|e| format!("server name: {e}"))?;
    let mut channel = Channel::connect(peer, name, Arc::new(tls), &cfg).map_err(|e| {
        if let grpc_unary::Error::Tls { source, .. } = &e {
            if let Some(v) = ratls::tls::attestation_error(source) {
                return format!(
                    "the peer is not admitted under the replica policy: {v}; nothing was sent"
                );
            }
        }
        format!("connecting: {e}")
    })?;
    let request = serde_json::json!({ "cluster_id": cluster_id }).to_string();
    let reply = channel
        .unary(GET_CLUSTER_KEY, request.as_bytes())
        .map_err(|e| format!("{GET_CLUSTER_KEY}: {e}"))?;
    let _ = channel.close();
    decode_reply(&reply, cluster_id)
}

fn encode_reply(cluster_id: &str, share: &KeyShare) -> Zeroizing<Vec<u8>> {
    keywire::encode(
        cluster_id,
        &WireShare {
            epoch: share.epoch,
            key: Zeroizing::new(*share.key.as_bytes()),
            generation: share.generation,
            state_sha256: share.state_sha256,
        },
    )
}

fn decode_reply(reply: &[u8], cluster_id: &str) -> Result<KeyShare, String> {
    let wire = keywire::decode(reply, cluster_id)?;
    Ok(KeyShare {
        epoch: wire.epoch,
        key: ClusterKey::from_bytes(wire.key.as_slice()).map_err(|e| format!("key_b64: {e}"))?,
        generation: wire.generation,
        state_sha256: wire.state_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_and_a_wrong_cluster_or_key_is_refused() {
        let share = KeyShare {
            epoch: 3,
            key: ClusterKey::from_bytes(&[5u8; 32]).unwrap(),
            generation: 17,
            state_sha256: [6u8; 32],
        };
        let bytes = encode_reply("demo", &share);
        let back = decode_reply(&bytes, "demo").unwrap();
        assert_eq!((back.epoch, back.generation), (3, 17));
        assert_eq!(back.key.as_bytes(), &[5u8; 32]);
        assert_eq!(back.state_sha256, [6u8; 32]);
        let err = decode_reply(&bytes, "other").err().unwrap();
        assert!(err.contains("not \"other\""), "{err}");
        let short =
            br#"{"cluster_id":"demo","epoch":1,"gen":1,"state_sha256_hex":"00","key_b64":"AAAA"}"#;
        assert!(decode_reply(short, "demo").is_err());
        let err = decode_reply(b"{\"x\": 1}", "demo").err().unwrap();
        assert!(!err.contains("x\":"), "{err}");
    }
}
