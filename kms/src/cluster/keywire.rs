//! The wire form of `kms.Replica/GetClusterKey`'s reply (`keyshare`), apart so the fuzz target
//! compiles it by path: external crates only (no `crate::` paths).
//!
//! `{"cluster_id", "epoch", "gen", "state_sha256_hex", "key_b64"}`; unknown fields are refused,
//! the key must be exactly 32 bytes, the epoch at least 1, and no error quotes a value (one of
//! them is the key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Largest reply accepted.
pub const MAX_KEY_REPLY: usize = 4096;

/// A parsed reply. The key is wiped on drop; no `Debug`.
pub struct WireShare {
    pub epoch: u32,
    pub key: Zeroizing<[u8; 32]>,
    pub generation: u64,
    pub state_sha256: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyDoc {
    cluster_id: String,
    epoch: u32,
    key_b64: String,
    #[serde(rename = "gen")]
    generation: u64,
    state_sha256_hex: String,
}

/// The reply's bytes (zeroizing: they carry the key).
pub fn encode(cluster_id: &str, share: &WireShare) -> Zeroizing<Vec<u8>> {
    let key_b64 = Zeroizing::new(STANDARD.encode(share.key.as_slice()));
    let head = serde_json::json!({
        "cluster_id": cluster_id,
        "epoch": share.epoch,
        "gen": share.generation,
        "state_sha256_hex": hex::encode(share.state_sha256),
    })
    .to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    let mut out = Zeroizing::new(Vec::with_capacity(head.len() + key_b64.len() + 16));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b",\"key_b64\":\"");
    out.extend_from_slice(key_b64.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// Parses a peer's reply for `cluster_id`.
pub fn decode(reply: &[u8], cluster_id: &str) -> Result<WireShare, String> {
    if reply.len() > MAX_KEY_REPLY {
        return Err(format!("reply larger than {MAX_KEY_REPLY} bytes"));
    }
    let doc: ReplyDoc = serde_json::from_slice(reply)
        .map_err(|e| format!("malformed reply at line {} column {}", e.line(), e.column()))?;
    let key_b64 = Zeroizing::new(doc.key_b64);
    if doc.cluster_id != cluster_id {
        return Err(format!(
            "the peer answered for cluster {:?}, not {cluster_id:?}",
            doc.cluster_id
        ));
    }
    if doc.epoch == 0 {
        return Err("the peer answered epoch 0".into());
    }
    let raw = Zeroizing::new(
        STANDARD
            .decode(key_b64.as_bytes())
            .map_err(|_| "key_b64 is not base64".to_owned())?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != key.len() {
        return Err(format!("key_b64: {} bytes, expected 32", raw.len()));
    }
    key.copy_from_slice(&raw);
    let mut state_sha256 = [0u8; 32];
    hex::decode_to_slice(doc.state_sha256_hex.as_bytes(), &mut state_sha256)
        .map_err(|_| "state_sha256_hex: expected 64 hex characters".to_owned())?;
    Ok(WireShare {
        epoch: doc.epoch,
        key,
        generation: doc.generation,
        state_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_and_a_wrong_cluster_or_key_is_refused() {
        let share = WireShare {
            epoch: 3,
            key: Zeroizing::new([5u8; 32]),
            generation: 17,
            state_sha256: [6u8; 32],
        };
        let bytes = encode("demo", &share);
        let back = decode(&bytes, "demo").unwrap();
        assert_eq!((back.epoch, back.generation), (3, 17));
        assert_eq!(*back.key, [5u8; 32]);
        assert_eq!(back.state_sha256, [6u8; 32]);
        let err = decode(&bytes, "other").err().unwrap();
        assert!(err.contains("not \"other\""), "{err}");
        let short =
            br#"{"cluster_id":"demo","epoch":1,"gen":1,"state_sha256_hex":"00","key_b64":"AAAA"}"#;
        let err = decode(short, "demo").err().unwrap();
        assert!(err.contains("expected 32"), "{err}");
        let err = decode(b"{\"x\": \"c2VjcmV0\"}", "demo").err().unwrap();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let zero =
            br#"{"cluster_id":"demo","epoch":0,"gen":1,"state_sha256_hex":"00","key_b64":"AAAA"}"#;
        assert!(decode(zero, "demo").err().unwrap().contains("epoch 0"));
    }
}
