//! Key material of the simulated platform: P-256 keys as PKCS#8, from the system RNG or,
//! for reproducible test vectors, derived from a seed.
//!
//! Private keys live in [`PrivateKey`], which zeroizes its PKCS#8 bytes on drop and has no
//! `Debug` that could print them. Signatures are made by ring (ECDSA P-256, SHA-256, `r || s`).

use p256::pkcs8::EncodePrivateKey;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::SimError;

/// Where randomness comes from: the OS, or a seed (test vectors only; the seed is public).
pub(crate) enum Entropy {
    System(SystemRandom),
    Seeded(u64),
}

impl Entropy {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        match seed {
            Some(seed) => Self::Seeded(seed),
            None => Self::System(SystemRandom::new()),
        }
    }

    /// `N` bytes for the purpose named by `label` (distinct labels give independent bytes
    /// when seeded).
    pub(crate) fn bytes<const N: usize>(&self, label: &str) -> Result<[u8; N], SimError> {
        let mut out = [0u8; N];
        match self {
            Self::System(rng) => rng.fill(&mut out).map_err(|_| SimError::Crypto {
                what: "random generation",
            })?,
            Self::Seeded(seed) => {
                for (block, chunk) in (0u32..).zip(out.chunks_mut(32)) {
                    let d = seeded_block(*seed, label, block);
                    for (dst, src) in chunk.iter_mut().zip(d.as_ref()) {
                        *dst = *src;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A fresh P-256 key for the purpose named by `label`.
    pub(crate) fn p256_key(&self, label: &str) -> Result<PrivateKey, SimError> {
        match self {
            Self::System(rng) => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
                    .map_err(|_| SimError::Crypto {
                        what: "P-256 key generation",
                    })?;
                PrivateKey::from_pkcs8(doc.as_ref().to_vec(), "generated P-256 key")
            }
            Self::Seeded(seed) => {
                // A uniformly derived 32-byte string is a valid scalar except with probability
                // about 2^-32; try the next block until one is.
                for block in 0u32..64 {
                    let d = seeded_block(*seed, label, block);
                    let Ok(secret) = p256::SecretKey::from_slice(d.as_ref()) else {
                        continue;
                    };
                    let doc = secret.to_pkcs8_der().map_err(|e| SimError::Key {
                        what: "seeded P-256 key",
                        detail: e.to_string(),
                    })?;
                    return PrivateKey::from_pkcs8(doc.as_bytes().to_vec(), "seeded P-256 key");
                }
                Err(SimError::Crypto {
                    what: "seeded P-256 key derivation",
                })
            }
        }
    }
}

/// SHA-256("sgx-sim seed v1" || seed || label || block): domain-separated, deterministic.
fn seeded_block(seed: u64, label: &str, block: u32) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"sgx-sim seed v1\0");
    ctx.update(&seed.to_be_bytes());
    ctx.update(&u64::try_from(label.len()).unwrap_or(u64::MAX).to_be_bytes());
    ctx.update(label.as_bytes());
    ctx.update(&block.to_be_bytes());
    ctx.finish()
}

/// A P-256 private key (PKCS#8 DER) with its ring signer.
pub(crate) struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: EcdsaKeyPair,
}

impl PrivateKey {
    /// Parses PKCS#8 DER (v1 with the public key, as ring requires).
    pub(crate) fn from_pkcs8(pkcs8: Vec<u8>, what: &'static str) -> Result<Self, SimError> {
        let pkcs8 = Zeroizing::new(pkcs8);
        let signer = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| SimError::Key {
            what,
            detail: e.to_string(),
        })?;
        Ok(Self { pkcs8, signer })
    }

    /// Parses a `PRIVATE KEY` PEM block.
    pub(crate) fn from_pem(pem: &[u8], what: &'static str) -> Result<Self, SimError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| SimError::Key {
            what,
            detail: format!("not a PKCS#8 PEM key: {e}"),
        })?;
        Self::from_pkcs8(der.secret_pkcs8_der().to_vec(), what)
    }

    /// The key as a `PRIVATE KEY` PEM block.
    pub(crate) fn to_pem(&self) -> Zeroizing<String> {
        ratls::cert::pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The key for rcgen, to sign certificates and CRLs.
    pub(crate) fn rcgen(&self) -> Result<rcgen::KeyPair, SimError> {
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256).map_err(
            |source| SimError::Certificate {
                what: "rcgen key pair",
                source,
            },
        )
    }

    /// The public key as Intel lays it out in quotes: `x || y`, 64 bytes.
    pub(crate) fn public_raw(&self) -> Result<[u8; 64], SimError> {
        // SEC1 uncompressed point: 0x04 || x || y.
        let point = self.signer.public_key().as_ref();
        point
            .get(1..)
            .and_then(|xy| <[u8; 64]>::try_from(xy).ok())
            .ok_or(SimError::Crypto {
                what: "P-256 public key encoding",
            })
    }

    /// ECDSA P-256 SHA-256 over `msg`, as `r || s` (the form Intel uses in quotes and in
    /// TCB info / QE identity signatures).
    pub(crate) fn sign(&self, msg: &[u8], rng: &SystemRandom) -> Result<[u8; 64], SimError> {
        let sig = self.signer.sign(rng, msg).map_err(|_| SimError::Crypto {
            what: "ECDSA signing",
        })?;
        <[u8; 64]>::try_from(sig.as_ref()).map_err(|_| SimError::Crypto {
            what: "ECDSA signature encoding",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_derives_the_same_key_and_labels_separate_keys() {
        let a = Entropy::new(Some(7)).p256_key("root").unwrap();
        let b = Entropy::new(Some(7)).p256_key("root").unwrap();
        let c = Entropy::new(Some(7)).p256_key("pck").unwrap();
        let d = Entropy::new(Some(8)).p256_key("root").unwrap();
        assert_eq!(a.public_raw().unwrap(), b.public_raw().unwrap());
        assert_ne!(a.public_raw().unwrap(), c.public_raw().unwrap());
        assert_ne!(a.public_raw().unwrap(), d.public_raw().unwrap());
    }

    #[test]
    fn system_keys_differ_every_time() {
        let e = Entropy::new(None);
        let a = e.p256_key("x").unwrap();
        let b = e.p256_key("x").unwrap();
        assert_ne!(a.public_raw().unwrap(), b.public_raw().unwrap());
    }

    #[test]
    fn a_key_survives_its_pem_form_and_signs_verifiably() {
        let key = Entropy::new(Some(1)).p256_key("k").unwrap();
        let again = PrivateKey::from_pem(key.to_pem().as_bytes(), "k").unwrap();
        assert_eq!(key.public_raw().unwrap(), again.public_raw().unwrap());
        let sig = again.sign(b"message", &SystemRandom::new()).unwrap();
        let mut point = vec![4u8];
        point.extend_from_slice(&key.public_raw().unwrap());
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(b"message", &sig)
            .unwrap();
        key.rcgen().unwrap();
    }

    #[test]
    fn seeded_bytes_are_deterministic_and_longer_than_one_block() {
        let a: [u8; 40] = Entropy::new(Some(3)).bytes("ppid").unwrap();
        let b: [u8; 40] = Entropy::new(Some(3)).bytes("ppid").unwrap();
        assert_eq!(a, b);
        assert_ne!(a[..32], a[8..]);
    }
}
