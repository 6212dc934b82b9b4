//! `cluster.json`: the measured switch into cluster mode and its trust inputs (the cluster's
//! id, the operators who may create or recover it and change its state, the replica policy,
//! the staleness bound).
//!
//! Inside Occlum the file is the measured image's [`OCCLUM_IMAGE_CLUSTER`]: its presence puts
//! the KMS in cluster mode and no flag can turn that off (otherwise the host could drop the
//! flag and have the image's stale seed files served). In host mode `--cluster FILE` names it.
//! The format is ours, so unknown fields are refused and every error names the field.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::operators::{Operators, RawOperator};

/// Inside Occlum: the cluster configuration at the root of the measured image.
pub const OCCLUM_IMAGE_CLUSTER: &str = "/cluster.json";
/// Inside Occlum: the local sealed slot, in the encrypted writable rootfs.
pub const OCCLUM_CLUSTER_SLOT: &str = "/var/lib/kms/cluster.slot";
/// Largest cluster.json read.
pub const MAX_CLUSTER_FILE_LEN: usize = 64 * 1024;
/// Longest `cluster_id` (it is part of every etcd key and of the envelope's AAD).
pub const MAX_CLUSTER_ID_LEN: usize = 64;
/// Default `max_stale_secs`.
pub const DEFAULT_MAX_STALE_SECS: u64 = 3600;

/// Which peers may obtain the cluster key, relative to this replica's own quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaPolicy {
    /// Same mr_enclave (and mr_signer, isv_prod_id, debug flag; isv_svn at least ours).
    SameEnclave,
    /// Same mr_signer and isv_prod_id, isv_svn at least ours, same debug flag.
    SameSigner,
}

impl ReplicaPolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::SameEnclave => "same-enclave",
            Self::SameSigner => "same-signer",
        }
    }
}

/// A validated cluster.json.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub cluster_id: String,
    /// The admin operators; in cluster mode they replace `--admin-operators` and
    /// `/kms_operators.json`.
    pub operators: Operators,
    pub replica_policy: ReplicaPolicy,
    /// `None`: unlimited (`max_stale_secs: 0`).
    pub max_stale: Option<Duration>,
    /// Where it was read from, for messages.
    pub source: String,
}

/// Why cluster.json was refused.
pub type ConfigError = crate::fsutil::ConfigFileError;

/// How cluster files are named in messages.
const WHAT: &str = "cluster file";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_id: String,
    operators: Vec<RawOperator>,
    #[serde(default)]
    replica_policy: Option<String>,
    #[serde(default)]
    max_stale_secs: Option<u64>,
}

impl ClusterConfig {
    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        crate::fsutil::load_config(path, MAX_CLUSTER_FILE_LEN, WHAT, ClusterConfig::from_json)
    }

    /// Parses and validates cluster.json; `label` names the file in errors.
    pub fn from_json(bytes: &[u8], label: &str) -> Result<ClusterConfig, ConfigError> {
        let invalid = |detail: String| ConfigError::Invalid {
            what: WHAT,
            path: label.to_owned(),
            detail,
        };
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        check_cluster_id(&raw.cluster_id).map_err(|e| invalid(format!("cluster_id: {e}")))?;
        let replica_policy = match raw.replica_policy.as_deref() {
            None | Some("same-enclave") => ReplicaPolicy::SameEnclave,
            Some("same-signer") => ReplicaPolicy::SameSigner,
            Some(other) => {
                return Err(invalid(format!(
                    "replica_policy: expected \"same-enclave\" or \"same-signer\", got {other:?}"
                )));
            }
        };
        let max_stale = match raw.max_stale_secs.unwrap_or(DEFAULT_MAX_STALE_SECS) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        // The same format and checks as kms_operators.json's list.
        let operators = Operators::from_entries(raw.operators, &format!("{label} (operators)"))
            .map_err(invalid)?;
        Ok(ClusterConfig {
            cluster_id: raw.cluster_id,
            operators,
            replica_policy,
            max_stale,
            source: label.to_owned(),
        })
    }

    /// The etcd key of the state record: `/occlum-kms/v1/<cluster_id>/state`.
    pub fn state_key(&self) -> Vec<u8> {
        format!("/occlum-kms/v1/{}/state", self.cluster_id).into_bytes()
    }
}

/// 1 to [`MAX_CLUSTER_ID_LEN`] of `[A-Za-z0-9._-]`: it goes into etcd keys unescaped.
fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CLUSTER_ID_LEN {
        return Err(format!(
            "expected 1 to {MAX_CLUSTER_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn parse(json: &str) -> Result<ClusterConfig, String> {
        ClusterConfig::from_json(json.as_bytes(), "cluster.json").map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let cfg = parse(&format!(
            r#"{{"cluster_id": "demo", "operators": [{{"name": "alice", "spki_sha256": "{FP}"}}]}}"#
        ))
        .unwrap();
        assert_eq!(cfg.cluster_id, "demo");
        assert_eq!(cfg.replica_policy, ReplicaPolicy::SameEnclave);
        assert_eq!(cfg.max_stale, Some(Duration::from_secs(3600)));
        assert_eq!(cfg.operators.len(), 1);
        assert_eq!(cfg.state_key(), b"/occlum-kms/v1/demo/state".to_vec());
    }

    #[test]
    fn every_field_parses() {
        let cfg = parse(&format!(
            r#"{{"cluster_id": "prod-eu_1.a", "operators": [{{"name": "alice", "spki_sha256": "{FP}"}}],
                "replica_policy": "same-signer", "max_stale_secs": 0}}"#
        ))
        .unwrap();
        assert_eq!(cfg.replica_policy, ReplicaPolicy::SameSigner);
        assert_eq!(cfg.max_stale, None);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_naming_the_field() {
        let ops = format!(r#"[{{"name": "alice", "spki_sha256": "{FP}"}}]"#);
        let err = parse(&format!(
            r#"{{"cluster_id": "demo", "operators": {ops}, "genesis": "seed"}}"#
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `genesis`"), "{err}");
        let err = parse(&format!(r#"{{"cluster_id": "a/b", "operators": {ops}}}"#)).unwrap_err();
        assert!(err.contains("cluster_id") && err.contains("'/'"), "{err}");
        let err = parse(&format!(r#"{{"cluster_id": "", "operators": {ops}}}"#)).unwrap_err();
        assert!(err.contains("cluster_id"), "{err}");
        let err = parse(&format!(
            r#"{{"cluster_id": "d", "operators": {ops}, "replica_policy": "anyone"}}"#
        ))
        .unwrap_err();
        assert!(
            err.contains("replica_policy") && err.contains("anyone"),
            "{err}"
        );
        let err = parse(r#"{"cluster_id": "d", "operators": []}"#).unwrap_err();
        assert!(err.contains("operators") && err.contains("empty"), "{err}");
        let err =
            parse(r#"{"cluster_id": "d", "operators": [{"name": "a", "spki_sha256": "zz"}]}"#)
                .unwrap_err();
        assert!(err.contains("operators[0].spki_sha256"), "{err}");
        let err = parse(r#"{"operators": []}"#).unwrap_err();
        assert!(err.contains("cluster_id"), "{err}");
    }
}
