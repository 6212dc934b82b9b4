//! The cluster state envelope: the one record a KMS cluster keeps in etcd, sealed with
//! AES-256-GCM under a key derived from the cluster key, so etcd (the host's) can store, replay,
//! withhold or delete it but can neither read it nor forge or alter one.
//!
//! Layout (binary, big-endian; binary rather than JSON so a 1,000,000-byte state fits etcd's
//! default `--max-request-bytes` of 1,572,864 without base64 inflation on top of the gateway's):
//!
//! ```text
//! offset size  field
//!      0    8  magic "OKMSST01"
//!      8    4  epoch  (u32; the cluster key's epoch, 1 at genesis, +1 per recovery)
//!     12    8  gen    (u64; 1 at genesis, +1 per write)
//!     20   32  prev   (SHA-256 of the previous generation's plaintext; zeros at generation 1)
//!     52   12  nonce  (random, per record)
//!     64    -  AES-256-GCM ciphertext of the plaintext, 16-byte tag appended
//! ```
//!
//! AAD = `"occlum-kms state v1" || cluster_id || bytes 0..64` (the header is fixed-length, so
//! the concatenation is unambiguous). Key = HKDF-SHA256(cluster key, salt `"occlum-kms
//! cluster"`, info `"state"`). Random 96-bit nonces: one record per admin write keeps the
//! number of encryptions under one key far below GCM's 2^32 random-nonce bound.
//!
//! Only [`open_state`] yields an [`OpenedState`], and only after the tag verified: the
//! plaintext of a record is never visible before authentication. [`peek_header`] reads the
//! header unauthenticated, for an operator's recovery (which must know the highest stored generation
//! and epoch without the lost key); nothing else may act on it.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// The record's first 8 bytes; the trailing digits version the whole layout.
pub const MAGIC: &[u8; 8] = b"OKMSST01";
/// Domain-separation label at the start of the AAD.
pub const AAD_LABEL: &[u8] = b"occlum-kms state v1";
/// Bytes before the ciphertext: magic, epoch, generation, prev, nonce.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 32 + NONCE_LEN;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// The largest plaintext (policy + secrets JSON) a record may carry. etcd refuses a request
/// over its `--max-request-bytes` (default 1,572,864); the record travels base64-encoded in a
/// JSON Txn, so 1,000,000 bytes of plaintext become ~1.33 MB on the wire.
pub const MAX_STATE_BYTES: usize = 1_000_000;
/// The largest record [`open_state`] and [`peek_header`] accept.
pub const MAX_RECORD_BYTES: usize = HEADER_LEN + MAX_STATE_BYTES + TAG_LEN;

const HKDF_SALT: &[u8] = b"occlum-kms cluster";
const HKDF_INFO: &[u8] = b"state";

/// The cluster key K: 32 random bytes that exist only inside attested replicas (and their
/// sealed slots). No `Debug`, no `Clone` by accident of derive; zeroized on drop.
pub struct ClusterKey(Zeroizing<[u8; 32]>);

impl ClusterKey {
    /// A fresh key from the operating system's CSPRNG (ring's `SystemRandom`).
    pub fn generate() -> Result<ClusterKey, EnvelopeError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| EnvelopeError::Random)?;
        Ok(ClusterKey(key))
    }

    /// A key received from a peer or unsealed from the local slot; exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterKey, EnvelopeError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| EnvelopeError::KeyLength {
            actual: bytes.len(),
        })?;
        Ok(ClusterKey(Zeroizing::new(array)))
    }

    /// The raw key, for sealing it into the local slot or sending it to an admitted peer.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy (the caller decides where a second copy of the key may live).
    pub fn duplicate(&self) -> ClusterKey {
        ClusterKey(Zeroizing::new(*self.0))
    }

    /// The AES-256-GCM state key derived from K.
    fn state_key(&self) -> Result<LessSafeKey, EnvelopeError> {
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(self.0.as_ref());
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .map_err(|_| EnvelopeError::KeyDerivation)?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// The unauthenticated header of a record (see [`peek_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub epoch: u32,
    pub generation: u64,
    pub prev: [u8; 32],
}

/// A record whose tag verified under the cluster key and the cluster id.
pub struct OpenedState {
    pub epoch: u32,
    pub generation: u64,
    /// SHA-256 of the previous generation's plaintext (zeros at generation 1).
    pub prev: [u8; 32],
    /// SHA-256 of [`OpenedState::plaintext`]: the next record's `prev`, and the hash replicas
    /// compare to detect a fork (same generation, other content).
    pub sha256: [u8; 32],
    /// The state JSON. It holds secrets: never log it.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedState")
            .field("epoch", &self.epoch)
            .field("generation", &self.generation)
            .field("sha256", &hex_short(&self.sha256))
            .field(
                "plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .finish()
    }
}

/// Why a record could not be sealed or opened. Every message names the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The record is shorter than a header plus a tag (truncated or not a record).
    Truncated { actual: usize, min: usize },
    /// The record is longer than any record this version writes.
    RecordTooLarge { actual: usize, max: usize },
    /// The first 8 bytes are not `OKMSST01`.
    BadMagic { found: [u8; 8] },
    /// epoch 0 or generation 0: never written by [`seal_state`].
    ZeroCounter { epoch: u32, generation: u64 },
    /// The plaintext exceeds [`MAX_STATE_BYTES`].
    StateTooLarge { actual: usize },
    /// The AES-GCM tag did not verify: another cluster key, another cluster id, or any byte of
    /// the header, nonce or ciphertext altered.
    Authentication {
        cluster_id: String,
        epoch: u32,
        generation: u64,
    },
    /// A cluster key of the wrong length.
    KeyLength { actual: usize },
    /// The CSPRNG failed.
    Random,
    /// HKDF refused (cannot happen for a 32-byte output; reported rather than unwrapped).
    KeyDerivation,
    /// AES-GCM sealing failed.
    Seal,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::Truncated { actual, min } => write!(
                f,
                "state record truncated: {actual} bytes, a record has at least {min} \
                 (header {HEADER_LEN} + tag {TAG_LEN})"
            ),
            EnvelopeError::RecordTooLarge { actual, max } => write!(
                f,
                "state record too large: {actual} bytes, the limit is {max} \
                 (MAX_STATE_BYTES {MAX_STATE_BYTES} + header + tag)"
            ),
            EnvelopeError::BadMagic { found } => write!(
                f,
                "state record magic check failed: expected {:?}, found {}",
                String::from_utf8_lossy(MAGIC),
                hex_short(found)
            ),
            EnvelopeError::ZeroCounter { epoch, generation } => write!(
                f,
                "state record counter check failed: epoch {epoch}, generation {generation} (both start at 1)"
            ),
            EnvelopeError::StateTooLarge { actual } => write!(
                f,
                "cluster state too large: {actual} bytes of policy and secrets JSON, the cap is \
                 {MAX_STATE_BYTES} (MAX_STATE_BYTES, chosen under etcd's --max-request-bytes \
                 default of 1572864); store fewer or smaller secrets"
            ),
            EnvelopeError::Authentication {
                cluster_id,
                epoch,
                generation,
            } => write!(
                f,
                "state record authentication failed (AES-256-GCM tag) for cluster_id \
                 {cluster_id:?}, header epoch {epoch} generation {generation}: another cluster key or \
                 cluster_id, or the record was altered"
            ),
            EnvelopeError::KeyLength { actual } => {
                write!(
                    f,
                    "cluster key length check failed: {actual} bytes, expected 32"
                )
            }
            EnvelopeError::Random => write!(f, "the system random generator failed"),
            EnvelopeError::KeyDerivation => write!(f, "HKDF-SHA256 state key derivation failed"),
            EnvelopeError::Seal => write!(f, "AES-256-GCM sealing failed"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Seals `plaintext` as generation `generation` of `cluster_id`'s state under epoch `epoch`.
pub fn seal_state(
    key: &ClusterKey,
    cluster_id: &str,
    epoch: u32,
    generation: u64,
    prev: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if plaintext.len() > MAX_STATE_BYTES {
        return Err(EnvelopeError::StateTooLarge {
            actual: plaintext.len(),
        });
    }
    if epoch == 0 || generation == 0 {
        return Err(EnvelopeError::ZeroCounter { epoch, generation });
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| EnvelopeError::Random)?;
    let mut record = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&epoch.to_be_bytes());
    record.extend_from_slice(&generation.to_be_bytes());
    record.extend_from_slice(prev);
    record.extend_from_slice(&nonce);
    let aad = aad(cluster_id, &record);
    let mut body = plaintext.to_vec();
    key.state_key()?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| EnvelopeError::Seal)?;
    record.extend_from_slice(&body);
    Ok(record)
}

/// Verifies and decrypts a record read from etcd. The size and magic are checked first, then
/// the tag over the header, the nonce, the ciphertext and `cluster_id`; nothing of the
/// plaintext is returned unless all of it verified.
pub fn open_state(
    key: &ClusterKey,
    cluster_id: &str,
    bytes: &[u8],
) -> Result<OpenedState, EnvelopeError> {
    let header = peek_header(bytes)?;
    let (head, sealed) = bytes.split_at(HEADER_LEN);
    let nonce_bytes: [u8; NONCE_LEN] = head
        .get(HEADER_LEN - NONCE_LEN..)
        .and_then(|n| n.try_into().ok())
        .ok_or(EnvelopeError::Truncated {
            actual: bytes.len(),
            min: HEADER_LEN + TAG_LEN,
        })?;
    let aad = aad(cluster_id, head);
    let mut body = Zeroizing::new(sealed.to_vec());
    let plain_len = key
        .state_key()?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            body.as_mut(),
        )
        .map_err(|_| EnvelopeError::Authentication {
            cluster_id: cluster_id.to_owned(),
            epoch: header.epoch,
            generation: header.generation,
        })?
        .len();
    body.truncate(plain_len);
    let sha256 = sha256(&body);
    Ok(OpenedState {
        epoch: header.epoch,
        generation: header.generation,
        prev: header.prev,
        sha256,
        plaintext: body,
    })
}

/// Reads a record's header WITHOUT authenticating it (size, magic and non-zero counters are
/// checked). For an operator's recovery only, which must learn the stored epoch and generation when
/// no replica holds the key; a host can put any header in etcd, so nothing may trust it.
pub fn peek_header(bytes: &[u8]) -> Result<Header, EnvelopeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(EnvelopeError::RecordTooLarge {
            actual: bytes.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    let truncated = EnvelopeError::Truncated {
        actual: bytes.len(),
        min: HEADER_LEN + TAG_LEN,
    };
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(truncated);
    }
    let field = |range: std::ops::Range<usize>| bytes.get(range).ok_or(truncated.clone());
    let magic: [u8; 8] = field(0..8)?.try_into().map_err(|_| truncated.clone())?;
    if &magic != MAGIC {
        return Err(EnvelopeError::BadMagic { found: magic });
    }
    let epoch = u32::from_be_bytes(field(8..12)?.try_into().map_err(|_| truncated.clone())?);
    let generation = u64::from_be_bytes(field(12..20)?.try_into().map_err(|_| truncated.clone())?);
    let prev: [u8; 32] = field(20..52)?.try_into().map_err(|_| truncated.clone())?;
    if epoch == 0 || generation == 0 {
        return Err(EnvelopeError::ZeroCounter { epoch, generation });
    }
    Ok(Header {
        epoch,
        generation,
        prev,
    })
}

/// SHA-256 of a state plaintext (what the next record's `prev` must be).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

fn aad(cluster_id: &str, header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + cluster_id.len() + header.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(cluster_id.as_bytes());
    aad.extend_from_slice(header);
    aad
}

fn hex_short(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "demo";

    fn key() -> ClusterKey {
        ClusterKey::from_bytes(&[7u8; 32]).unwrap()
    }

    fn record() -> Vec<u8> {
        seal_state(
            &key(),
            ID,
            3,
            9,
            &[5u8; 32],
            br#"{"policy":{},"secrets":{}}"#,
        )
        .unwrap()
    }

    fn assert_auth_failure(bytes: &[u8], cluster_id: &str, key: &ClusterKey) {
        match open_state(key, cluster_id, bytes) {
            Err(EnvelopeError::Authentication { .. }) => {}
            other => panic!("expected an authentication failure, got {other:?}"),
        }
    }

    #[test]
    fn a_sealed_record_opens_to_its_plaintext_and_header() {
        let plain = br#"{"policy":{"x":1},"secrets":{"a":"b"}}"#;
        let rec = seal_state(&key(), ID, 2, 41, &[9u8; 32], plain).unwrap();
        assert_eq!(rec.len(), HEADER_LEN + plain.len() + TAG_LEN);
        assert_eq!(&rec[..8], MAGIC);
        let opened = open_state(&key(), ID, &rec).unwrap();
        assert_eq!(opened.epoch, 2);
        assert_eq!(opened.generation, 41);
        assert_eq!(opened.prev, [9u8; 32]);
        assert_eq!(opened.plaintext.as_slice(), plain);
        assert_eq!(opened.sha256, sha256(plain));
        assert_eq!(
            peek_header(&rec).unwrap(),
            Header {
                epoch: 2,
                generation: 41,
                prev: [9u8; 32]
            }
        );
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        let rec = seal_state(&key(), ID, 1, 1, &[0u8; 32], b"").unwrap();
        assert_eq!(open_state(&key(), ID, &rec).unwrap().plaintext.len(), 0);
    }

    #[test]
    fn two_seals_of_the_same_state_use_different_nonces() {
        assert_ne!(record(), record());
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_plaintext() {
        let secret = b"s3cr3t-value-that-must-not-leak";
        let rec = seal_state(&key(), ID, 1, 1, &[0u8; 32], secret).unwrap();
        assert!(!rec.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn every_altered_header_or_body_byte_is_refused_by_the_tag_check() {
        let rec = record();
        // Magic bytes have their own check; every other byte is covered by the tag.
        for i in 8..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x01;
            match open_state(&key(), ID, &bad) {
                Err(EnvelopeError::Authentication { .. }) => {}
                // generation/epoch flipped to zero is caught before the tag.
                Err(EnvelopeError::ZeroCounter { .. }) if (8..20).contains(&i) => {}
                other => panic!("byte {i} altered: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_altered_epoch_gen_prev_nonce_or_tag_names_the_authentication_check() {
        let rec = record();
        for (what, offset) in [
            ("epoch", 11),
            ("generation", 19),
            ("prev", 30),
            ("nonce", 60),
            ("ciphertext", HEADER_LEN),
            ("tag", rec.len() - 1),
        ] {
            let mut bad = rec.clone();
            bad[offset] ^= 0x80;
            let err = open_state(&key(), ID, &bad).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Authentication { .. }),
                "{what}: {err:?}"
            );
            assert!(err.to_string().contains("authentication failed"), "{what}");
        }
    }

    #[test]
    fn a_record_of_another_cluster_id_is_refused() {
        assert_auth_failure(&record(), "demo2", &key());
        assert_auth_failure(&record(), "dem", &key());
        let err = open_state(&key(), "other", &record()).unwrap_err();
        assert!(err.to_string().contains("\"other\""), "{err}");
    }

    #[test]
    fn a_record_under_another_cluster_key_is_refused() {
        let mut other = [7u8; 32];
        other[31] = 8;
        assert_auth_failure(&record(), ID, &ClusterKey::from_bytes(&other).unwrap());
        assert_auth_failure(&record(), ID, &ClusterKey::generate().unwrap());
    }

    #[test]
    fn a_record_with_another_magic_is_refused_by_the_magic_check() {
        let mut bad = record();
        bad[7] = b'2';
        let err = open_state(&key(), ID, &bad).unwrap_err();
        assert!(matches!(err, EnvelopeError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains("magic check failed"));
        assert!(matches!(
            peek_header(&bad),
            Err(EnvelopeError::BadMagic { .. })
        ));
    }

    #[test]
    fn truncated_records_are_refused_at_every_length() {
        let rec = record();
        for len in 0..rec.len() {
            let err = open_state(&key(), ID, &rec[..len]).unwrap_err();
            if len < HEADER_LEN + TAG_LEN {
                assert_eq!(
                    err,
                    EnvelopeError::Truncated {
                        actual: len,
                        min: HEADER_LEN + TAG_LEN
                    },
                    "len {len}"
                );
                assert!(err.to_string().contains("truncated"));
            } else {
                assert!(
                    matches!(err, EnvelopeError::Authentication { .. }),
                    "len {len}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_after_the_tag_are_refused() {
        let mut rec = record();
        rec.push(0);
        assert_auth_failure(&rec, ID, &key());
    }

    #[test]
    fn a_plaintext_over_the_cap_is_refused_naming_the_cap_and_etcds_limit() {
        let big = vec![b'x'; MAX_STATE_BYTES + 1];
        let err = seal_state(&key(), ID, 1, 1, &[0u8; 32], &big).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::StateTooLarge {
                actual: MAX_STATE_BYTES + 1
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("1000000") && text.contains("--max-request-bytes"),
            "{text}"
        );
        // Exactly the cap is accepted and opens.
        let max = vec![b'y'; MAX_STATE_BYTES];
        let rec = seal_state(&key(), ID, 1, 1, &[0u8; 32], &max).unwrap();
        assert_eq!(rec.len(), MAX_RECORD_BYTES);
        assert_eq!(
            open_state(&key(), ID, &rec).unwrap().plaintext.len(),
            MAX_STATE_BYTES
        );
    }

    #[test]
    fn a_record_over_the_size_cap_is_refused_before_decryption() {
        let mut rec = record();
        rec.resize(MAX_RECORD_BYTES + 1, 0);
        let err = open_state(&key(), ID, &rec).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::RecordTooLarge { .. }),
            "{err:?}"
        );
        assert!(matches!(
            peek_header(&rec),
            Err(EnvelopeError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn zero_epoch_or_gen_is_never_sealed_nor_accepted() {
        for (epoch, generation) in [(0, 1), (1, 0)] {
            assert_eq!(
                seal_state(&key(), ID, epoch, generation, &[0u8; 32], b"{}").unwrap_err(),
                EnvelopeError::ZeroCounter { epoch, generation }
            );
        }
        let mut rec = record();
        rec[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            open_state(&key(), ID, &rec),
            Err(EnvelopeError::ZeroCounter {
                epoch: 0,
                generation: 9
            })
        ));
    }

    #[test]
    fn peek_header_reads_an_unauthenticated_header() {
        let mut rec = record();
        // Altering the ciphertext does not affect what peek reports (it authenticates nothing).
        let last = rec.len() - 1;
        rec[last] ^= 1;
        let h = peek_header(&rec).unwrap();
        assert_eq!((h.epoch, h.generation, h.prev), (3, 9, [5u8; 32]));
    }

    #[test]
    fn cluster_keys_of_the_wrong_length_are_refused() {
        for len in [0, 16, 31, 33, 64] {
            assert!(matches!(
                ClusterKey::from_bytes(&vec![1u8; len]),
                Err(EnvelopeError::KeyLength { actual }) if actual == len
            ));
        }
        let a = ClusterKey::generate().unwrap();
        let b = ClusterKey::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.duplicate().as_bytes(), a.as_bytes());
    }

    #[test]
    fn debug_of_an_opened_state_redacts_the_plaintext() {
        let opened = open_state(&key(), ID, &record()).unwrap();
        let text = format!("{opened:?}");
        assert!(!text.contains("policy"), "{text}");
        assert!(text.contains("redacted"));
    }
}
