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
                decode_dice(value).map_err(|detail| CertError::Encoding { format, detail })?;
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

/// TCG DICE evidence: `60000([bstr quote, bstr claims])`, nothing after it.
struct Dice<'a> {
    quote: &'a [u8],
    claims: &'a [u8],
    pubkey_hash: PubkeyHash,
}

fn decode_dice(value: &[u8]) -> Result<Dice<'_>, String> {
    let cbor = |e: CborError| format!("evidence: {e}");
    let mut c = Cbor::new(value);
    let tag = c.tag().map_err(cbor)?;
    if tag != CBOR_TAG_TEE_QUOTE {
        return Err(format!(
            "cbor tag {tag} is not {CBOR_TAG_TEE_QUOTE} (intel tee quote)"
        ));
    }
    let entries = c.array().map_err(cbor)?;
    if entries != 2 {
        return Err(format!(
            "evidence array has {entries} entries, expected 2 (quote, claims)"
        ));
    }
    let quote = c.bytes().map_err(cbor)?;
    let claims = c.bytes().map_err(cbor)?;
    c.end().map_err(cbor)?;
    if claims.len() > MAX_CLAIMS_LEN {
        return Err(format!(
            "claims are {} bytes, at most {MAX_CLAIMS_LEN}",
            claims.len()
        ));
    }
    let pubkey_hash = decode_claims(claims)?;
    Ok(Dice {
        quote,
        claims,
        pubkey_hash,
    })
}

/// The claims map: text keys, byte-string values, exactly one `pubkey-hash`, no duplicate keys.
fn decode_claims(claims: &[u8]) -> Result<PubkeyHash, String> {
    let cbor = |e: CborError| format!("claims: {e}");
    let mut c = Cbor::new(claims);
    let count = c.map().map_err(cbor)?;
    if count == 0 || count > MAX_CLAIMS as u64 {
        return Err(format!(
            "claims map has {count} entries, expected 1 to {MAX_CLAIMS}"
        ));
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut pubkey_hash = None;
    for _ in 0..count {
        let key = c.text().map_err(cbor)?;
        let value = c.bytes().map_err(cbor)?;
        if key.is_empty() {
            return Err("claims: empty claim name".into());
        }
        if keys.contains(&key) {
            let shown: String = key.chars().take(64).collect();
            return Err(format!("claims: claim {shown:?} appears twice"));
        }
        keys.push(key);
        if key == CLAIM_PUBKEY_HASH {
            pubkey_hash = Some(decode_pubkey_hash(value)?);
        }
    }
    c.end().map_err(cbor)?;
    pubkey_hash.ok_or_else(|| format!("claims: no {CLAIM_PUBKEY_HASH} claim"))
}

/// `pubkey-hash`: a serialized `[uint hash-alg-id, bstr hash]`.
fn decode_pubkey_hash(value: &[u8]) -> Result<PubkeyHash, String> {
    let cbor = |e: CborError| format!("{CLAIM_PUBKEY_HASH}: {e}");
    let mut c = Cbor::new(value);
    let entries = c.array().map_err(cbor)?;
    if entries != 2 {
        return Err(format!(
            "{CLAIM_PUBKEY_HASH}: array has {entries} entries, expected 2"
        ));
    }
    let id = c.uint().map_err(cbor)?;
    let hash = c.bytes().map_err(cbor)?;
    c.end().map_err(cbor)?;
    let alg = HashAlg::from_iana(id).ok_or_else(|| {
        format!("{CLAIM_PUBKEY_HASH}: hash algorithm id {id} is not 1, 7 or 8 (sha-256/384/512)")
    })?;
    if hash.len() != alg.len() {
        return Err(format!(
            "{CLAIM_PUBKEY_HASH}: {alg} hash is {} bytes, expected {}",
            hash.len(),
            alg.len()
        ));
    }
    Ok(PubkeyHash {
        alg,
        value: hash.to_vec(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
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
        assert!(e.contains("no pubkey-hash"), "{e}");
        let entry = hash_entry(1, 32);
        let e = decode_claims(&claims_with(&[
            ("pubkey-hash", &entry),
            ("pubkey-hash", &entry),
        ]))
        .unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn a_pubkey_hash_of_the_wrong_length_or_algorithm_is_refused() {
        let e = decode_claims(&claims_with(&[("pubkey-hash", &hash_entry(1, 48))])).unwrap_err();
        assert!(e.contains("expected 32"), "{e}");
        let e = decode_claims(&claims_with(&[("pubkey-hash", &hash_entry(2, 32))])).unwrap_err();
        assert!(e.contains("hash algorithm id 2"), "{e}");
    }

    #[test]
    fn evidence_with_another_tag_or_shape_is_refused() {
        // 60001([h'', h''])
        let e = decode_dice(&[0xd9, 0xea, 0x61, 0x82, 0x40, 0x40])
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("60001"), "{e}");
        // 60000([h''])
        let e = decode_dice(&[0xd9, 0xea, 0x60, 0x81, 0x40])
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("1 entries"), "{e}");
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
