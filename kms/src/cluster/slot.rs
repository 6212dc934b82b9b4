//! The local sealed slot: `{cluster_id, epoch, K, high_water_gen, state_sha256}`, sealed with
//! the KMS's seal format (`crate::seal`: the `--seal-key-file` key in host mode, the enclave's
//! sealing key inside Occlum), so a replica restarts with every peer down.
//!
//! `high_water_gen` is the highest state generation this replica has accepted: it never
//! accepts a lower one from etcd afterwards. The host can roll the file itself back, but only
//! to a generation this replica once saw (a floor, not proof of freshness). The file is
//! rewritten atomically (temp file, fsync, rename) whenever the high water rises.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::{EnclaveKeys, EnclavePolicy, FileKey, SealError, Sealer};

/// What a slot holds. The key is wiped on drop; no `Debug`.
pub struct Slot {
    pub cluster_id: String,
    pub epoch: u32,
    pub key: Zeroizing<[u8; 32]>,
    pub high_water_gen: u64,
    pub state_sha256: [u8; 32],
}

/// The slot's file and the key that seals it.
pub struct SlotStore {
    path: PathBuf,
    key: SlotKey,
}

/// Which key seals the slot.
pub enum SlotKey {
    File(FileKey),
    Enclave {
        keys: Box<dyn EnclaveKeys + Send + Sync>,
        policy: EnclavePolicy,
    },
}

/// Why a slot could not be read or written.
#[derive(Debug)]
pub enum SlotError {
    Seal {
        path: String,
        source: SealError,
    },
    /// The slot opened but its content is not a slot (names the field).
    Malformed {
        path: String,
        detail: String,
    },
    /// The slot belongs to another cluster.
    OtherCluster {
        path: String,
        found: String,
        expected: String,
    },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seal { path, source } => write!(f, "cluster slot {path}: {source}"),
            Self::Malformed { path, detail } => write!(f, "cluster slot {path}: {detail}"),
            Self::OtherCluster {
                path,
                found,
                expected,
            } => write!(
                f,
                "cluster slot {path} belongs to cluster {found:?}, not {expected:?} (cluster_id in cluster.json); move it away to join {expected:?} through a peer"
            ),
        }
    }
}

impl std::error::Error for SlotError {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    cluster_id: String,
    epoch: u32,
    key_hex: String,
    high_water_gen: u64,
    state_sha256: String,
}

impl SlotStore {
    pub fn new(path: PathBuf, key: SlotKey) -> SlotStore {
        SlotStore { path, key }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot, if the file exists; an error if it exists but does not open, does not parse
    /// or belongs to another cluster than `cluster_id`.
    pub fn load(&self, cluster_id: &str) -> Result<Option<Slot>, SlotError> {
        if !self.path.exists() {
            return Ok(None);
        }
        let shown = self.path.display().to_string();
        let plain = self
            .with_sealer(|s| s.open_file(&self.path))
            .map_err(|source| SlotError::Seal {
                path: shown.clone(),
                source,
            })?;
        let malformed = |detail: String| SlotError::Malformed {
            path: shown.clone(),
            detail,
        };
        let raw: RawSlot = serde_json::from_slice(&plain).map_err(|e| {
            // Never quote a value: one of them is the key.
            malformed(format!(
                "not a cluster slot at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let raw_key = Zeroizing::new(raw.key_hex);
        if raw.cluster_id != cluster_id {
            return Err(SlotError::OtherCluster {
                path: shown,
                found: raw.cluster_id,
                expected: cluster_id.to_owned(),
            });
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(raw_key.as_bytes(), key.as_mut_slice())
            .map_err(|_| malformed("key_hex: expected 64 hex characters".into()))?;
        let mut state_sha256 = [0u8; 32];
        hex::decode_to_slice(raw.state_sha256.as_bytes(), &mut state_sha256)
            .map_err(|_| malformed("state_sha256: expected 64 hex characters".into()))?;
        if raw.epoch == 0 {
            return Err(malformed("epoch: 0 (epochs start at 1)".into()));
        }
        Ok(Some(Slot {
            cluster_id: raw.cluster_id,
            epoch: raw.epoch,
            key,
            high_water_gen: raw.high_water_gen,
            state_sha256,
        }))
    }

    /// Seals `slot` over the file, atomically.
    pub fn save(&self, slot: &Slot) -> Result<(), SlotError> {
        let shown = self.path.display().to_string();
        let raw = RawSlot {
            cluster_id: slot.cluster_id.clone(),
            epoch: slot.epoch,
            key_hex: hex::encode(slot.key.as_slice()),
            high_water_gen: slot.high_water_gen,
            state_sha256: hex::encode(slot.state_sha256),
        };
        let json = Zeroizing::new(serde_json::to_vec(&raw).unwrap_or_default());
        let _wipe = Zeroizing::new(raw.key_hex);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SlotError::Seal {
                path: shown.clone(),
                source: SealError::Io {
                    path: dir.display().to_string(),
                    source,
                },
            })?;
        }
        self.with_sealer(|s| s.seal(&json))
            .and_then(|bytes| crate::seal::write_sealed(&self.path, &bytes))
            .map_err(|source| SlotError::Seal {
                path: shown,
                source,
            })
    }

    fn with_sealer<T>(
        &self,
        f: impl FnOnce(&Sealer<'_>) -> Result<T, SealError>,
    ) -> Result<T, SealError> {
        match &self.key {
            SlotKey::File(key) => f(&Sealer::File(key.clone())),
            SlotKey::Enclave { keys, policy } => f(&Sealer::Enclave {
                keys: keys.as_ref(),
                policy: *policy,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, key: &FileKey) -> SlotStore {
        SlotStore::new(dir.join("sub/cluster.slot"), SlotKey::File(key.clone()))
    }

    #[test]
    fn a_slot_round_trips_sealed_and_refuses_another_key_or_cluster() {
        let dir = std::env::temp_dir().join(format!("kms-slot-{}", std::process::id()));
        let key = FileKey::generate().unwrap();
        let slots = store(&dir, &key);
        assert!(slots.load("demo").unwrap().is_none());
        let slot = Slot {
            cluster_id: "demo".into(),
            epoch: 2,
            key: Zeroizing::new([7u8; 32]),
            high_water_gen: 41,
            state_sha256: [9u8; 32],
        };
        slots.save(&slot).unwrap();
        let bytes = std::fs::read(slots.path()).unwrap();
        assert!(!bytes.windows(32).any(|w| w == [7u8; 32]));
        assert!(!String::from_utf8_lossy(&bytes).contains(&hex::encode([7u8; 32])));
        let back = slots.load("demo").unwrap().unwrap();
        assert_eq!((back.epoch, back.high_water_gen), (2, 41));
        assert_eq!(*back.key, [7u8; 32]);
        assert_eq!(back.state_sha256, [9u8; 32]);
        let err = slots.load("other").err().unwrap().to_string();
        assert!(err.contains("belongs to cluster \"demo\""), "{err}");
        let other = store(&dir, &FileKey::generate().unwrap());
        let err = other.load("demo").err().unwrap().to_string();
        assert!(err.contains("do not authenticate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
