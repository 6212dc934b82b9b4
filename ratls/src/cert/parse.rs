//! Strict parsing of an RA-TLS certificate and decoding of each evidence extension it carries.
//!
//! Guarantees: input is capped at [`MAX_CERT_LEN`]; trailing bytes, duplicate extensions and
//! unrecognized critical extensions are rejected; every evidence extension present is decoded
//! (one bad extension fails the whole certificate, whichever format it is).

use x509_parser::asn1_rs::Oid;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::cbor::{Cbor, CborError};
use super::{
    CBOR_TAG_TEE_QUOTE, CertError, Commitment, Evidence, EvidenceFormat, HashAlg, KeyAlgorithm,
    MAX_CERT_LEN, MAX_CLAIMS, MAX_CLAIMS_LEN, PubkeyHash, Secondary,
};
use crate::collateral::staple::OID_STAPLED_COLLATERAL;
use crate::quote::Quote;

/// The DICE claim that commits to the certificate's key.
const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";

/// Parses exactly one DER certificate of at most [`MAX_CERT_LEN`] bytes.
pub(super) fn certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    if der.len() > MAX_CERT_LEN {
        return Err(CertError::TooLarge {
            len: der.len(),
            max: MAX_CERT_LEN,
        });
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::Parse {
            detail: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Finds and decodes every evidence extension; the first in precedence order is the primary.
pub(super) fn evidence(cert: &X509Certificate<'_>) -> Result<Evidence, CertError> {
    cert.extensions_map().map_err(|_| CertError::Parse {
        detail: "an extension appears more than once (rfc 5280 section 4.2)".into(),
    })?;
    let key_algorithm = key_algorithm(cert.public_key())?;

    let mut found: Vec<(EvidenceFormat, &[u8])> = Vec::new();
    let mut staple = None;
    for ext in cert.extensions() {
        if ext.oid.as_bytes() == OID_STAPLED_COLLATERAL {
            // Decoded (bounded) only by whoever uses it: see crate::collateral::staple.
            staple = Some(ext.value.to_vec());
            continue;
        }
        match EvidenceFormat::from_oid_bytes(ext.oid.as_bytes()) {
            Some(format) => found.push((format, ext.value)),
            None if ext.critical && !understood(ext.parsed_extension()) => {
                return Err(CertError::CriticalExtension {
                    oid: ext.oid.to_id_string(),
                });
            }
            None => {}
        }
    }
    found.sort_by_key(|(format, _)| *format);
    // Gramine's legacy extension has two encodings; both at once is the same evidence twice.
    if let Some(format) = found.windows(2).find_map(|pair| match pair {
        [(a, _), (b, _)] if a == b => Some(*a),
        _ => None,
    }) {
        return Err(CertError::Parse {
            detail: format!("evidence extension {format} appears twice"),
        });
    }

    let mut decoded = found
        .into_iter()
        .map(|(format, value)| decode(format, value));
    let Some(primary) = decoded.next() else {
        return Err(CertError::NoEvidence);
    };
    let primary = primary?;
    let others = decoded
        .map(|d| {
            d.map(|d| Secondary {
                format: d.format,
                quote: d.quote,
                commitment: d.commitment,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let validity = cert.validity();
    Ok(Evidence {
        format: primary.format,
        quote_bytes: primary.quote_bytes,
        quote: primary.quote,
        spki_der: cert.public_key().raw.to_vec(),
        key_algorithm,
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        commitment: primary.commitment,
        others,
        staple,
    })
}

/// The key type of a `SubjectPublicKeyInfo`, checking the key encodes what ring will accept.
pub(super) fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, CertError> {
    let unsupported = |detail: String| CertError::UnsupportedKey { detail };
    let alg = &spki.algorithm;
    if spki.subject_public_key.unused_bits != 0 {
        return Err(unsupported("public key bit string has unused bits".into()));
    }
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| Oid::try_from(p).ok());
        let (key, point_len) = match curve {
            Some(c) if c == OID_EC_P256 => (KeyAlgorithm::EcdsaP256, 65),
            Some(c) if c == OID_NIST_EC_P384 => (KeyAlgorithm::EcdsaP384, 97),
            Some(c) => return Err(unsupported(format!("elliptic curve {}", c.to_id_string()))),
            None => return Err(unsupported("ec key without a named curve".into())),
        };
        let point = &spki.subject_public_key.data;
        if point.len() != point_len || point.first() != Some(&0x04) {
            return Err(unsupported(format!(
                "{key} point must be uncompressed ({point_len} bytes from 0x04), got {} bytes",
                point.len()
            )));
        }
        Ok(key)
    } else if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Ok(KeyAlgorithm::Rsa {
                bits: modulus_bits(rsa.modulus),
            }),
            _ => Err(unsupported("malformed rsa public key".into())),
        }
    } else {
        Err(unsupported(format!(
            "algorithm {}",
            alg.algorithm.to_id_string()
        )))
    }
}

/// Significant bits of a big-endian modulus (leading zero bytes and bits excluded).
fn modulus_bits(modulus: &[u8]) -> usize {
    let mut digits = modulus.iter().skip_while(|b| **b == 0);
    match digits.next() {
        Some(first) => (digits.count() + 1) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Extensions x509-parser decodes (basic constraints, key usage, SAN, ...) are understood.
fn understood(parsed: &ParsedExtension<'_>) -> bool {
    !matches!(
        parsed,
        ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
    )
}

/// One evidence extension, decoded.
struct Decoded {
    format: EvidenceFormat,
    quote_bytes: Vec<u8>,
    quote: Quote,
    commitment: Commitment,
}

fn decode(format: EvidenceFormat, value: &[u8]) -> Result<Decoded, CertError> {
    let (quote_bytes, commitment) = match format {
        EvidenceFormat::Occlum | EvidenceFormat::GramineLegacy => (value, Commitment::PublicKey),
        EvidenceFormat::TcgDice => {
            let dice =
                decode_dice(value).map_err(|source| CertError::Encoding { format, source })?;
            (
                dice.quote,
                Commitment::Claims {
                    claims: dice.claims.to_vec(),
                    pubkey_hash: dice.pubkey_hash,
                },
            )
        }
    };
    let quote =
        Quote::parse(quote_bytes).map_err(|source| CertError::Evidence { format, source })?;
    Ok(Decoded {
        format,
        quote_bytes: quote_bytes.to_vec(),
        quote,
        commitment,
    })
}

/// Why TCG DICE evidence (`60000([quote, claims])`) does not have the shape the CCC
/// "Interoperable RA-TLS" evidence format gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiceError {
    /// The CBOR of one part (`evidence`, `claims` or `pubkey-hash`) is not the expected item.
    Cbor {
        part: &'static str,
        source: CborError,
    },
    /// The evidence is tagged with another number than [`CBOR_TAG_TEE_QUOTE`].
    Tag { found: u64 },
    /// The evidence array does not have two entries (quote, claims).
    EvidenceEntries { found: u64 },
    /// The serialized claims are longer than [`MAX_CLAIMS_LEN`].
    ClaimsTooLarge { len: usize, max: usize },
    /// The claims map is empty or has more than [`MAX_CLAIMS`] entries.
    ClaimCount { found: u64, max: usize },
    /// A claim has an empty name.
    EmptyClaimName,
    /// A claim name appears twice (the name as found, at most 64 characters).
    DuplicateClaim { name: String },
    /// No `pubkey-hash` claim: the evidence would bind no key.
    NoPubkeyHash,
    /// `pubkey-hash` is not a two-entry array.
    PubkeyHashEntries { found: u64 },
    /// `pubkey-hash` names a hash algorithm other than SHA-256/384/512.
    HashAlgorithm { id: u64 },
    /// `pubkey-hash` holds a hash of the wrong length for its algorithm.
    HashLength {
        alg: &'static str,
        len: usize,
        expected: usize,
    },
}

impl std::fmt::Display for DiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cbor { part, source } => write!(f, "{part}: {source}"),
            Self::Tag { found } => write!(
                f,
                "cbor tag {found} is not {CBOR_TAG_TEE_QUOTE} (intel tee quote)"
            ),
            Self::EvidenceEntries { found } => write!(
                f,
                "evidence array has {found} entries, expected 2 (quote, claims)"
            ),
            Self::ClaimsTooLarge { len, max } => {
                write!(f, "claims are {len} bytes, at most {max}")
            }
            Self::ClaimCount { found, max } => {
                write!(f, "claims map has {found} entries, expected 1 to {max}")
            }
            Self::EmptyClaimName => write!(f, "claims: empty claim name"),
            Self::DuplicateClaim { name } => write!(f, "claims: claim {name:?} appears twice"),
            Self::NoPubkeyHash => write!(f, "claims: no {CLAIM_PUBKEY_HASH} claim"),
            Self::PubkeyHashEntries { found } => write!(
                f,
                "{CLAIM_PUBKEY_HASH}: array has {found} entries, expected 2"
            ),
            Self::HashAlgorithm { id } => write!(
                f,
                "{CLAIM_PUBKEY_HASH}: hash algorithm id {id} is not 1, 7 or 8 (sha-256/384/512)"
            ),
            Self::HashLength { alg, len, expected } => write!(
                f,
                "{CLAIM_PUBKEY_HASH}: {alg} hash is {len} bytes, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for DiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Cbor { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// TCG DICE evidence: `60000([bstr quote, bstr claims])`, nothing after it.
struct Dice<'a> {
    quote: &'a [u8],
    claims: &'a [u8],
    pubkey_hash: PubkeyHash,
}

/// Names the part of the evidence a CBOR error was found in.
fn cbor(part: &'static str) -> impl Fn(CborError) -> DiceError {
    move |source| DiceError::Cbor { part, source }
}

fn decode_dice(value: &[u8]) -> Result<Dice<'_>, DiceError> {
    let cbor = cbor("evidence");
    let mut c = Cbor::new(value);
    let tag = c.tag().map_err(&cbor)?;
    if tag != CBOR_TAG_TEE_QUOTE {
        return Err(DiceError::Tag { found: tag });
    }
    let entries = c.array().map_err(&cbor)?;
    if entries != 2 {
        return Err(DiceError::EvidenceEntries { found: entries });
    }
    let quote = c.bytes().map_err(&cbor)?;
    let claims = c.bytes().map_err(&cbor)?;
    c.end().map_err(&cbor)?;
    if claims.len() > MAX_CLAIMS_LEN {
        return Err(DiceError::ClaimsTooLarge {
            len: claims.len(),
            max: MAX_CLAIMS_LEN,
        });
    }
    let pubkey_hash = decode_claims(claims)?;
    Ok(Dice {
        quote,
        claims,
        pubkey_hash,
    })
}

/// The claims map: text keys, byte-string values, exactly one `pubkey-hash`, no duplicate keys.
fn decode_claims(claims: &[u8]) -> Result<PubkeyHash, DiceError> {
    let cbor = cbor("claims");
    let mut c = Cbor::new(claims);
    let count = c.map().map_err(&cbor)?;
    if count == 0 || count > MAX_CLAIMS as u64 {
        return Err(DiceError::ClaimCount {
            found: count,
            max: MAX_CLAIMS,
        });
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut pubkey_hash = None;
    for _ in 0..count {
        let key = c.text().map_err(&cbor)?;
        let value = c.bytes().map_err(&cbor)?;
        if key.is_empty() {
            return Err(DiceError::EmptyClaimName);
        }
        if keys.contains(&key) {
            return Err(DiceError::DuplicateClaim {
                name: key.chars().take(64).collect(),
            });
        }
        keys.push(key);
        if key == CLAIM_PUBKEY_HASH {
            pubkey_hash = Some(decode_pubkey_hash(value)?);
        }
    }
    c.end().map_err(&cbor)?;
    pubkey_hash.ok_or(DiceError::NoPubkeyHash)
}

/// `pubkey-hash`: a serialized `[uint hash-alg-id, bstr hash]`.
fn decode_pubkey_hash(value: &[u8]) -> Result<PubkeyHash, DiceError> {
    let cbor = cbor(CLAIM_PUBKEY_HASH);
    let mut c = Cbor::new(value);
    let entries = c.array().map_err(&cbor)?;
    if entries != 2 {
        return Err(DiceError::PubkeyHashEntries { found: entries });
    }
    let id = c.uint().map_err(&cbor)?;
    let hash = c.bytes().map_err(&cbor)?;
    c.end().map_err(&cbor)?;
    let alg = HashAlg::from_iana(id).ok_or(DiceError::HashAlgorithm { id })?;
    if hash.len() != alg.len() {
        return Err(DiceError::HashLength {
            alg: alg.name(),
            len: hash.len(),
            expected: alg.len(),
        });
    }
    Ok(PubkeyHash {
        alg,
        value: hash.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0xa0 | entries.len() as u8];
        for (k, v) in entries {
            out.push(0x60 | k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&[0x58, v.len() as u8]);
            out.extend_from_slice(v);
        }
        out
    }

    fn hash_entry(alg: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0x82, alg, 0x58, len as u8];
        out.extend(std::iter::repeat_n(0xab, len));
        out
    }

    #[test]
    fn claims_with_one_pubkey_hash_decode_for_each_hash_algorithm() {
        for (alg, len, want) in [
            (1, 32, HashAlg::Sha256),
            (7, 48, HashAlg::Sha384),
            (8, 64, HashAlg::Sha512),
        ] {
            let entry = hash_entry(alg, len);
            let h =
                decode_claims(&claims_with(&[("nonce", b"n"), ("pubkey-hash", &entry)])).unwrap();
            assert_eq!(h.alg, want);
            assert_eq!(h.value, vec![0xab; len]);
        }
    }

    #[test]
    fn claims_without_or_with_two_pubkey_hashes_are_refused() {
        let e = decode_claims(&claims_with(&[("nonce", b"n")])).unwrap_err();
        assert_eq!(e, DiceError::NoPubkeyHash);
        let entry = hash_entry(1, 32);
        let e = decode_claims(&claims_with(&[
            ("pubkey-hash", &entry),
            ("pubkey-hash", &entry),
        ]))
        .unwrap_err();
        assert_eq!(
            e,
            DiceError::DuplicateClaim {
                name: "pubkey-hash".into()
            }
        );
    }

    #[test]
    fn a_pubkey_hash_of_the_wrong_length_or_algorithm_is_refused() {
        let e = decode_claims(&claims_with(&[("pubkey-hash", &hash_entry(1, 48))])).unwrap_err();
        assert_eq!(
            e,
            DiceError::HashLength {
                alg: "sha-256",
                len: 48,
                expected: 32
            }
        );
        let e = decode_claims(&claims_with(&[("pubkey-hash", &hash_entry(2, 32))])).unwrap_err();
        assert_eq!(e, DiceError::HashAlgorithm { id: 2 });
    }

    #[test]
    fn evidence_with_another_tag_or_shape_is_refused() {
        // 60001([h'', h''])
        let e = decode_dice(&[0xd9, 0xea, 0x61, 0x82, 0x40, 0x40])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e, DiceError::Tag { found: 60001 });
        // 60000([h''])
        let e = decode_dice(&[0xd9, 0xea, 0x60, 0x81, 0x40])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e, DiceError::EvidenceEntries { found: 1 });
    }

    #[test]
    fn dice_errors_name_the_part_and_the_expected_value() {
        // The texts people read in a rejected handshake (`evidence malformed: ...`).
        assert_eq!(
            DiceError::HashLength {
                alg: "sha-256",
                len: 48,
                expected: 32
            }
            .to_string(),
            "pubkey-hash: sha-256 hash is 48 bytes, expected 32"
        );
        let e = decode_claims(&[0x41, 0x00]).unwrap_err();
        assert!(matches!(e, DiceError::Cbor { part: "claims", .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "claims: cbor item at offset 0: expected a map, found major type 2"
        );
    }

    #[test]
    fn modulus_bits_ignore_the_der_sign_byte() {
        let mut m = vec![0x00, 0x80];
        m.extend([0u8; 255]);
        assert_eq!(modulus_bits(&m), 2048);
        assert_eq!(modulus_bits(&[0x00, 0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
