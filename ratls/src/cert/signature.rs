//! Self-signature check of an RA-TLS certificate, with ring, over an explicit allow-list.
//!
//! Guarantees: the outer `signatureAlgorithm` equals `tbsCertificate.signature` (RFC 5280
//! section 4.1.1.2), the algorithm is on the list in [`super::check_self_signature`] and fits
//! the key, and the signature verifies over the exact TBS bytes under the certificate's key.

use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{Any, Oid, Tag};
use x509_parser::oid_registry::{
    OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSASSAPSS,
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::prelude::X509Certificate;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::AlgorithmIdentifier;

use super::{CertError, KeyAlgorithm, parse};

/// `id-mgf1` (RFC 8017 appendix B.2.1), DER content bytes of `1.2.840.113549.1.1.8`.
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

pub(super) fn check(cert: &X509Certificate<'_>) -> Result<(), CertError> {
    let outer = &cert.signature_algorithm;
    let key = parse::key_algorithm(cert.public_key())?;
    let reject = |reason| CertError::SelfSignature {
        algorithm: format!("{} with {key}", algorithm_name(&outer.algorithm)),
        reason,
    };
    if *outer != cert.tbs_certificate.signature {
        return Err(reject(
            "signatureAlgorithm differs from tbsCertificate.signature",
        ));
    }
    let alg = ring_algorithm(outer, key).map_err(reject)?;
    if cert.signature_value.unused_bits != 0 {
        return Err(reject("signature bit string has unused bits"));
    }
    UnparsedPublicKey::new(alg, &cert.public_key().subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| reject("signature does not verify under the certificate's own key"))
}

/// The ring verifier for an allowed (signature algorithm, key) pair.
fn ring_algorithm(
    id: &AlgorithmIdentifier<'_>,
    key: KeyAlgorithm,
) -> Result<&'static dyn VerificationAlgorithm, &'static str> {
    let oid = &id.algorithm;
    let is_rsa = matches!(key, KeyAlgorithm::Rsa { .. });
    if *oid == OID_SIG_ECDSA_WITH_SHA256 || *oid == OID_SIG_ECDSA_WITH_SHA384 {
        // RFC 5758 section 3.2 says absent; mbedTLS (Gramine, Intel's SDK) writes NULL.
        if !null_or_absent(id.parameters.as_ref()) {
            return Err("ecdsa algorithm parameters must be absent");
        }
        let sha384 = *oid == OID_SIG_ECDSA_WITH_SHA384;
        return match (key, sha384) {
            (KeyAlgorithm::EcdsaP256, false) => Ok(&sig::ECDSA_P256_SHA256_ASN1),
            (KeyAlgorithm::EcdsaP256, true) => Ok(&sig::ECDSA_P256_SHA384_ASN1),
            (KeyAlgorithm::EcdsaP384, false) => Ok(&sig::ECDSA_P384_SHA256_ASN1),
            (KeyAlgorithm::EcdsaP384, true) => Ok(&sig::ECDSA_P384_SHA384_ASN1),
            (KeyAlgorithm::Rsa { .. }, _) => Err("ecdsa signature with an rsa key"),
        };
    }
    let pkcs1: Option<&'static dyn VerificationAlgorithm> = if *oid == OID_PKCS1_SHA256WITHRSA {
        Some(&sig::RSA_PKCS1_2048_8192_SHA256)
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        Some(&sig::RSA_PKCS1_2048_8192_SHA384)
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        Some(&sig::RSA_PKCS1_2048_8192_SHA512)
    } else if *oid == OID_PKCS1_SHA1WITHRSA {
        // Occlum's C++ RA-TLS signs its self-signed certificates with SHA-1 (X509_sign with
        // EVP_sha1). Acceptable only because the signature proves key possession, not identity.
        Some(&sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY)
    } else {
        None
    };
    if let Some(alg) = pkcs1 {
        if !is_rsa {
            return Err("rsa signature with an ec key");
        }
        // RFC 4055 section 5 says NULL; some encoders omit it.
        if !null_or_absent(id.parameters.as_ref()) {
            return Err("rsa pkcs#1 algorithm parameters must be null");
        }
        return Ok(alg);
    }
    if *oid == OID_PKCS1_RSASSAPSS {
        if !is_rsa {
            return Err("rsa-pss signature with an ec key");
        }
        return pss_algorithm(id.parameters.as_ref());
    }
    Err("signature algorithm not allowed for ra-tls certificates")
}

/// RSASSA-PSS (RFC 4055 section 3.1) restricted to what ring verifies: SHA-256/384/512, MGF1
/// with the same hash, salt length equal to the hash length, trailer field 1.
fn pss_algorithm(
    params: Option<&Any<'_>>,
) -> Result<&'static dyn VerificationAlgorithm, &'static str> {
    let params = params.ok_or("rsa-pss without parameters")?;
    let params = RsaSsaPssParams::try_from(params).map_err(|_| "malformed rsa-pss parameters")?;
    let hash = params.hash_algorithm_oid();
    let (alg, hash_len): (&'static dyn VerificationAlgorithm, u32) =
        if *hash == OID_NIST_HASH_SHA256 {
            (&sig::RSA_PSS_2048_8192_SHA256, 32)
        } else if *hash == OID_NIST_HASH_SHA384 {
            (&sig::RSA_PSS_2048_8192_SHA384, 48)
        } else if *hash == OID_NIST_HASH_SHA512 {
            (&sig::RSA_PSS_2048_8192_SHA512, 64)
        } else {
            return Err("rsa-pss hash must be sha-256, sha-384 or sha-512");
        };
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| "malformed rsa-pss mask generation")?;
    if mgf.mgf.as_bytes() != OID_MGF1 || mgf.hash != *hash {
        return Err("rsa-pss mask generation must be mgf1 with the signature hash");
    }
    if params.salt_length() != hash_len {
        return Err("rsa-pss salt length must equal the hash length");
    }
    if params.trailer_field() != 1 {
        return Err("rsa-pss trailer field must be 1");
    }
    Ok(alg)
}

fn null_or_absent(params: Option<&Any<'_>>) -> bool {
    params.is_none_or(|p| p.tag() == Tag::Null && p.data.is_empty())
}

fn algorithm_name(oid: &Oid<'_>) -> String {
    let known = [
        (&OID_SIG_ECDSA_WITH_SHA256, "ecdsa-with-sha256"),
        (&OID_SIG_ECDSA_WITH_SHA384, "ecdsa-with-sha384"),
        (&OID_PKCS1_SHA1WITHRSA, "sha1-with-rsa"),
        (&OID_PKCS1_SHA256WITHRSA, "sha256-with-rsa"),
        (&OID_PKCS1_SHA384WITHRSA, "sha384-with-rsa"),
        (&OID_PKCS1_SHA512WITHRSA, "sha512-with-rsa"),
        (&OID_PKCS1_RSASSAPSS, "rsassa-pss"),
    ];
    known
        .iter()
        .find(|(k, _)| *k == oid)
        .map_or_else(|| oid.to_id_string(), |(_, name)| (*name).to_string())
}
