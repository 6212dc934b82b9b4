//! Secrets at rest: `secret_config.json` sealed with AES-256-GCM under a key file or the
//! enclave's sealing key.
//!
//! Sealed file layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `OCKMSSEA` |
//! | 8 | 2 | format version, 1 |
//! | 10 | 1 | key kind: 1 = key file, 2 = enclave sealing key (HKDF-SHA256) |
//! | 11 | 1 | reserved, 0 |
//! | 12 | 12 | random nonce |
//! | 24 | 52 | key kind 2 only: EGETKEY parameters (below) |
//! | 24 or 76 | n + 16 | AES-256-GCM ciphertext of the JSON, then the 16-byte tag |
//!
//! EGETKEY parameters (key kind 2): key_policy u16 (1 = MRENCLAVE, 2 = MRSIGNER), isv_svn
//! u16, cpu_svn 16 bytes, key_id 32 random bytes. They are what EGETKEY needs to derive the
//! same sealing key again; the 16-byte key becomes the AES-256 key through HKDF-SHA256.
//!
//! The whole header is the associated data, so a flipped bit anywhere (header, nonce,
//! ciphertext or tag) refuses to open. A key file is 64 lowercase hex characters and a
//! newline, mode 0600. Keys and plaintexts are zeroized on drop.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ratls::reader::Reader;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::fsutil;
use crate::secrets::MAX_SECRETS_FILE_LEN;

/// File magic.
pub const MAGIC: &[u8; 8] = b"OCKMSSEA";
/// The only format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Length of the fixed header part.
pub const FIXED_HEADER_LEN: usize = 24;
/// Length of the EGETKEY parameters that follow the fixed header for key kind 2.
pub const ENCLAVE_PARAMS_LEN: usize = 52;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest sealed file accepted.
pub const MAX_SEALED_LEN: usize =
    FIXED_HEADER_LEN + ENCLAVE_PARAMS_LEN + MAX_SECRETS_FILE_LEN + TAG_LEN;
/// Largest key file accepted (64 hex characters and some whitespace).
const MAX_KEY_FILE_LEN: usize = 256;

/// HKDF salt and info that turn the enclave's 16-byte sealing key into the AES-256 key.
const HKDF_SALT: &[u8] = b"occlum-kms sealed secrets";
const HKDF_INFO: &[u8] = b"aes-256-gcm key v1";

/// Where a sealing key comes from; recorded in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A 32-byte key read from a file.
    File = 1,
    /// Derived from the SGX sealing key of the enclave running the KMS.
    Enclave = 2,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::File => "a key file",
            KeyKind::Enclave => "the enclave sealing key",
        })
    }
}

/// Which enclave identity an enclave sealing key is bound to (`SGX_KEYPOLICY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnclavePolicy {
    /// This exact KMS build (MRENCLAVE): an upgraded KMS must re-seal.
    MrEnclave = 1,
    /// Every enclave of the KMS's signer and product ID (MRSIGNER).
    MrSigner = 2,
}

/// The EGETKEY inputs stored in a sealed file so the same key can be derived again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveKeyParams {
    pub policy: EnclavePolicy,
    pub isv_svn: u16,
    pub cpu_svn: [u8; 16],
    pub key_id: [u8; 32],
}

/// Access to the SGX sealing key of the enclave this process runs in.
pub trait EnclaveKeys {
    /// The enclave's current (CPUSVN, ISVSVN), to seal for the current TCB.
    fn current_svns(&self) -> Result<([u8; 16], u16), SealError>;
    /// EGETKEY(SEAL) with these parameters.
    fn sealing_key(&self, params: &EnclaveKeyParams) -> Result<Zeroizing<[u8; 16]>, SealError>;
}

/// What seals and opens: a key file's key, or the enclave's sealing key.
pub enum Sealer<'a> {
    /// A 32-byte key from a key file.
    File(FileKey),
    /// The enclave sealing key, bound to `policy`.
    Enclave {
        keys: &'a dyn EnclaveKeys,
        policy: EnclavePolicy,
    },
}

/// A key-file AES-256 key. No `Debug`; wiped on drop.
#[derive(Clone)]
pub struct FileKey {
    bytes: Zeroizing<[u8; 32]>,
}

/// Why sealing or opening failed. Never carries key or plaintext bytes.
#[derive(Debug)]
pub enum SealError {
    /// Reading or writing a file failed.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The key file is not 64 hex characters.
    BadKeyFile { path: String },
    /// The system random generator failed.
    Random,
    /// The input is larger than the format allows.
    TooLarge { len: usize, limit: usize },
    /// Not a sealed file, or a version this build does not read.
    BadHeader { detail: String },
    /// The file was sealed with another kind of key.
    WrongKeyKind {
        sealed_with: KeyKind,
        given: KeyKind,
    },
    /// The enclave sealing key is not available (not in an SGX enclave, or EGETKEY failed).
    EnclaveKey { detail: String },
    /// Authentication failed: wrong key, or the file was modified.
    Unauthentic,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{path}: {source}"),
            Self::BadKeyFile { path } => {
                write!(
                    f,
                    "seal key file {path}: expected 64 hex characters (a 32-byte key)"
                )
            }
            Self::Random => write!(f, "system random generator failed"),
            Self::TooLarge { len, limit } => {
                write!(f, "input too large: {len} bytes, limit {limit}")
            }
            Self::BadHeader { detail } => write!(f, "not a sealed secrets file: {detail}"),
            Self::WrongKeyKind { sealed_with, given } => {
                write!(f, "sealed with {sealed_with}, but opened with {given}")
            }
            Self::EnclaveKey { detail } => write!(f, "enclave sealing key: {detail}"),
            Self::Unauthentic => write!(
                f,
                "sealed secrets do not authenticate: wrong seal key, or the file was modified"
            ),
        }
    }
}

impl std::error::Error for SealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl FileKey {
    /// A fresh random key.
    #[cfg(any(test, feature = "host-tools"))]
    pub fn generate() -> Result<FileKey, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut_slice())
            .map_err(|_| SealError::Random)?;
        Ok(FileKey { bytes })
    }

    /// Reads a key file (64 hex characters, surrounding whitespace ignored).
    pub fn read_file(path: &Path) -> Result<FileKey, SealError> {
        let shown = path.display().to_string();
        let text =
            fsutil::read_limited(path, MAX_KEY_FILE_LEN).map_err(|source| SealError::Io {
                path: shown.clone(),
                source,
            })?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim_ascii(), bytes.as_mut_slice())
            .map_err(|_| SealError::BadKeyFile { path: shown })?;
        Ok(FileKey { bytes })
    }

    /// Writes the key as a new file with mode 0600; refuses to overwrite.
    #[cfg(any(test, feature = "host-tools"))]
    pub fn write_file(&self, path: &Path) -> Result<(), SealError> {
        let mut text = Zeroizing::new(hex::encode(self.bytes.as_slice()));
        text.push('\n');
        fsutil::create_private(path, text.as_bytes(), false).map_err(|source| SealError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

impl Sealer<'_> {
    /// Seals `plaintext` into the file format above.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_SECRETS_FILE_LEN {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                limit: MAX_SECRETS_FILE_LEN,
            });
        }
        let rng = SystemRandom::new();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut header = Vec::with_capacity(FIXED_HEADER_LEN + ENCLAVE_PARAMS_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.push(self.kind() as u8);
        header.push(0);
        header.extend_from_slice(&nonce);
        let key = match self {
            Sealer::File(key) => key.bytes.clone(),
            Sealer::Enclave { keys, policy } => {
                let (cpu_svn, isv_svn) = keys.current_svns()?;
                let mut key_id = [0u8; 32];
                rng.fill(&mut key_id).map_err(|_| SealError::Random)?;
                let params = EnclaveKeyParams {
                    policy: *policy,
                    isv_svn,
                    cpu_svn,
                    key_id,
                };
                header.extend_from_slice(&(params.policy as u16).to_le_bytes());
                header.extend_from_slice(&params.isv_svn.to_le_bytes());
                header.extend_from_slice(&params.cpu_svn);
                header.extend_from_slice(&params.key_id);
                derive_aes_key(&*keys.sealing_key(&params)?)
            }
        };
        let ciphertext = cipher(&key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            .map_err(|_| SealError::TooLarge {
                len: plaintext.len(),
                limit: MAX_SECRETS_FILE_LEN,
            })?;
        header.extend_from_slice(&ciphertext);
        Ok(header)
    }

    /// Opens a sealed file's bytes; the plaintext is zeroized on drop.
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SealError::TooLarge {
                len: sealed.len(),
                limit: MAX_SEALED_LEN,
            });
        }
        let header = parse_header(sealed)?;
        if header.kind != self.kind() {
            return Err(SealError::WrongKeyKind {
                sealed_with: header.kind,
                given: self.kind(),
            });
        }
        let key = match (self, &header.enclave) {
            (Sealer::File(key), _) => key.bytes.clone(),
            (Sealer::Enclave { keys, .. }, Some(params)) => {
                derive_aes_key(&*keys.sealing_key(params)?)
            }
            (Sealer::Enclave { .. }, None) => {
                return Err(SealError::BadHeader {
                    detail: "missing EGETKEY parameters".into(),
                });
            }
        };
        let (aad, body) = sealed.split_at(header.len);
        if body.len() < TAG_LEN {
            return Err(SealError::BadHeader {
                detail: "no authentication tag".into(),
            });
        }
        cipher(&key)
            .decrypt(Nonce::from_slice(&header.nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unauthentic)
    }

    /// Reads and opens a sealed file.
    pub fn open_file(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let sealed =
            fsutil::read_limited(path, MAX_SEALED_LEN).map_err(|source| SealError::Io {
                path: path.display().to_string(),
                source,
            })?;
        self.open(&sealed)
    }

    fn kind(&self) -> KeyKind {
        match self {
            Sealer::File(_) => KeyKind::File,
            Sealer::Enclave { .. } => KeyKind::Enclave,
        }
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (temp file, fsync, rename).
pub fn write_sealed(path: &Path, bytes: &[u8]) -> Result<(), SealError> {
    fsutil::create_private(path, bytes, true).map_err(|source| SealError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Derives the AES key from the enclave's 16-byte SGX sealing key (HKDF-SHA256, RFC 5869).
pub fn derive_aes_key(sealing_key: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, HKDF_SALT).extract(sealing_key);
    // 32 bytes is within HKDF-SHA256's 255 * 32 output limit, so expand and fill cannot fail.
    let filled = prk
        .expand(&[HKDF_INFO], Len32)
        .and_then(|okm| okm.fill(bytes.as_mut_slice()));
    debug_assert!(filled.is_ok());
    bytes
}

struct Header {
    len: usize,
    kind: KeyKind,
    nonce: [u8; NONCE_LEN],
    enclave: Option<EnclaveKeyParams>,
}

fn parse_header(sealed: &[u8]) -> Result<Header, SealError> {
    let bad = |detail: &str| SealError::BadHeader {
        detail: detail.to_owned(),
    };
    let mut r = Reader::new(sealed);
    let short = |_| SealError::BadHeader {
        detail: format!("only {} bytes", sealed.len()),
    };
    if r.array::<8>("magic").map_err(short)? != *MAGIC {
        return Err(bad("wrong magic"));
    }
    let version = r.u16_le("version").map_err(short)?;
    if version != VERSION {
        return Err(SealError::BadHeader {
            detail: format!("version {version}, this build reads {VERSION}"),
        });
    }
    let [kind, reserved] = r.array::<2>("key kind").map_err(short)?;
    if reserved != 0 {
        return Err(bad("reserved byte is not zero"));
    }
    let nonce = r.array::<NONCE_LEN>("nonce").map_err(short)?;
    let (kind, enclave) = match kind {
        1 => (KeyKind::File, None),
        2 => {
            let policy = match r.u16_le("key policy").map_err(short)? {
                1 => EnclavePolicy::MrEnclave,
                2 => EnclavePolicy::MrSigner,
                other => {
                    return Err(SealError::BadHeader {
                        detail: format!("unknown key policy {other}"),
                    });
                }
            };
            let isv_svn = r.u16_le("isv_svn").map_err(short)?;
            let cpu_svn = r.array::<16>("cpu_svn").map_err(short)?;
            let key_id = r.array::<32>("key_id").map_err(short)?;
            (
                KeyKind::Enclave,
                Some(EnclaveKeyParams {
                    policy,
                    isv_svn,
                    cpu_svn,
                    key_id,
                }),
            )
        }
        other => {
            return Err(SealError::BadHeader {
                detail: format!("unknown key kind {other}"),
            });
        }
    };
    Ok(Header {
        len: r.offset(),
        kind,
        nonce,
        enclave,
    })
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

struct Len32;

impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] = br#"{"image_key": "YTUtNmQK"}"#;

    /// A stand-in for EGETKEY: HMAC of the parameters under a per-"CPU" secret.
    struct FakeEnclave {
        cpu_secret: [u8; 32],
    }

    impl EnclaveKeys for FakeEnclave {
        fn current_svns(&self) -> Result<([u8; 16], u16), SealError> {
            Ok(([3; 16], 5))
        }
        fn sealing_key(&self, p: &EnclaveKeyParams) -> Result<Zeroizing<[u8; 16]>, SealError> {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.cpu_secret);
            let mut ctx = ring::hmac::Context::with_key(&key);
            ctx.update(&(p.policy as u16).to_le_bytes());
            ctx.update(&p.isv_svn.to_le_bytes());
            ctx.update(&p.cpu_svn);
            ctx.update(&p.key_id);
            let mut out = Zeroizing::new([0u8; 16]);
            out.copy_from_slice(&ctx.sign().as_ref()[..16]);
            Ok(out)
        }
    }

    fn file_sealer() -> Sealer<'static> {
        Sealer::File(FileKey::generate().unwrap())
    }

    #[test]
    fn sealing_round_trips() {
        let sealer = file_sealer();
        let sealed = sealer.seal(PLAIN).unwrap();
        assert_eq!(&sealed[..8], MAGIC);
        assert_eq!(sealed.len(), FIXED_HEADER_LEN + PLAIN.len() + TAG_LEN);
        assert_eq!(sealer.open(&sealed).unwrap().as_slice(), PLAIN);
    }

    #[test]
    fn two_seals_use_different_nonces() {
        let sealer = file_sealer();
        assert_ne!(sealer.seal(PLAIN).unwrap(), sealer.seal(PLAIN).unwrap());
    }

    #[test]
    fn a_wrong_key_refuses_to_open() {
        let sealed = file_sealer().seal(PLAIN).unwrap();
        assert!(matches!(
            file_sealer().open(&sealed),
            Err(SealError::Unauthentic)
        ));
    }

    #[test]
    fn every_flipped_bit_refuses_to_open() {
        let sealer = file_sealer();
        let sealed = sealer.seal(PLAIN).unwrap();
        for i in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= bit;
                assert!(sealer.open(&bad).is_err(), "byte {i} bit {bit:#x}");
            }
        }
    }

    #[test]
    fn truncated_files_are_rejected() {
        let sealer = file_sealer();
        let sealed = sealer.seal(PLAIN).unwrap();
        for len in [
            0,
            7,
            FIXED_HEADER_LEN - 1,
            FIXED_HEADER_LEN,
            FIXED_HEADER_LEN + TAG_LEN - 1,
            sealed.len() - 1,
        ] {
            assert!(sealer.open(&sealed[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn enclave_sealing_round_trips_and_records_the_egetkey_parameters() {
        let cpu = FakeEnclave {
            cpu_secret: [1; 32],
        };
        let sealer = Sealer::Enclave {
            keys: &cpu,
            policy: EnclavePolicy::MrEnclave,
        };
        let sealed = sealer.seal(PLAIN).unwrap();
        assert_eq!(
            sealed.len(),
            FIXED_HEADER_LEN + ENCLAVE_PARAMS_LEN + PLAIN.len() + TAG_LEN
        );
        let header = parse_header(&sealed).unwrap();
        let params = header.enclave.unwrap();
        assert_eq!(
            (params.policy, params.isv_svn, params.cpu_svn),
            (EnclavePolicy::MrEnclave, 5, [3; 16])
        );
        assert_eq!(sealer.open(&sealed).unwrap().as_slice(), PLAIN);
        // Another CPU (another sealing key) cannot open it.
        let other = FakeEnclave {
            cpu_secret: [2; 32],
        };
        let other = Sealer::Enclave {
            keys: &other,
            policy: EnclavePolicy::MrEnclave,
        };
        assert!(matches!(other.open(&sealed), Err(SealError::Unauthentic)));
        // Tampering with the stored parameters is caught too.
        let mut bad = sealed.clone();
        bad[FIXED_HEADER_LEN + 2] ^= 1;
        assert!(sealer.open(&bad).is_err());
    }

    #[test]
    fn a_file_sealed_for_the_enclave_names_the_key_kind() {
        let cpu = FakeEnclave {
            cpu_secret: [1; 32],
        };
        let sealed = Sealer::Enclave {
            keys: &cpu,
            policy: EnclavePolicy::MrSigner,
        }
        .seal(PLAIN)
        .unwrap();
        let err = file_sealer().open(&sealed).unwrap_err();
        assert!(matches!(
            err,
            SealError::WrongKeyKind {
                sealed_with: KeyKind::Enclave,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("sealed with the enclave sealing key"),
            "{err}"
        );
    }

    #[test]
    fn enclave_key_derivation_is_hkdf_sha256() {
        // Recomputed with ring's HMAC: PRK = HMAC(salt, ikm); OKM = HMAC(PRK, info || 0x01).
        let ikm = [7u8; 16];
        let prk = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HKDF_SALT),
            &ikm,
        );
        let mut t1 = HKDF_INFO.to_vec();
        t1.push(1);
        let okm = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, prk.as_ref()),
            &t1,
        );
        assert_eq!(derive_aes_key(&ikm).as_slice(), okm.as_ref());
    }

    #[test]
    fn key_files_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("kms-seal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let _ = std::fs::remove_file(&path);
        let key = FileKey::generate().unwrap();
        key.write_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let again = FileKey::read_file(&path).unwrap();
        assert_eq!(again.bytes.as_slice(), key.bytes.as_slice());
        assert!(
            key.write_file(&path).is_err(),
            "must not overwrite an existing key"
        );
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            FileKey::read_file(&path),
            Err(SealError::BadKeyFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
