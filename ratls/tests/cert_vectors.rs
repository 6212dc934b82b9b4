//! RA-TLS certificates made by other implementations (Gramine, Intel SGX SDK, rats-tls, and an
//! Occlum-style RSA-2048/SHA-1 one), and what damage to them must do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ratls::cert::{self, CertError, EvidenceFormat, KeyAlgorithm};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair as _};

const GRAMINE: &str = include_str!("../testdata/ratls-interop/gramine-cert.pem");
const INTEL_SGX_SDK: &str = include_str!("../testdata/ratls-interop/intel-sgxsdk-cert.pem");
const RATS_TLS: &str = include_str!("../testdata/ratls-interop/rats-tls-cert.pem");
const OCCLUM_RSA_SHA1: &[u8] =
    include_bytes!("../testdata/occlum-rsa-sha1/occlum-rsa2048-sha1.der");

fn der(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    pem.contents
}

/// Replaces the certificate's public key with a fresh one of the same curve, leaving the
/// signature (by the old key) and every extension untouched.
fn splice_new_key(cert_der: &[u8]) -> Vec<u8> {
    let ev = cert::extract(cert_der).unwrap();
    let alg = match ev.key_algorithm {
        KeyAlgorithm::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP384 => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        other => panic!("no splice for {other}"),
    };
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let fresh = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let new_point = fresh.public_key().as_ref();
    let old_point = &ev.spki_der[ev.spki_der.len() - new_point.len()..];
    let at = cert_der
        .windows(old_point.len())
        .position(|w| w == old_point)
        .unwrap();
    let mut out = cert_der.to_vec();
    out[at..at + new_point.len()].copy_from_slice(new_point);
    out
}

#[test]
fn pem_certificates_decode_to_the_same_der_as_x509_parser_reads() {
    for pem in [GRAMINE, INTEL_SGX_SDK, RATS_TLS] {
        assert_eq!(cert::der_from_pem(pem).unwrap(), der(pem));
    }
    let err = cert::der_from_pem("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n");
    assert!(
        matches!(
            err,
            Err(CertError::Pem {
                what: "certificate",
                ..
            })
        ),
        "{err:?}"
    );
    let err = cert::der_from_pem(RATS_TLS.replace("CERTIFICATE", "PUBLIC KEY").as_str());
    assert!(matches!(err, Err(CertError::Pem { .. })), "{err:?}");
}

#[test]
fn pem_with_crlf_indentation_or_inner_spaces_decodes_to_the_same_der() {
    let expected = der(RATS_TLS);
    let crlf = RATS_TLS.replace('\n', "\r\n");
    let indented = RATS_TLS.replace('\n', "\n  ");
    let inner: String = RATS_TLS
        .lines()
        .map(|l| {
            if l.starts_with("-----") {
                l.to_owned()
            } else {
                let (a, b) = l.split_at(l.len() / 2);
                format!("{a} \t{b}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for pem in [crlf, indented, inner] {
        assert_eq!(cert::der_from_pem(&pem).unwrap(), expected, "{pem}");
    }
}

#[test]
fn gramine_certificate_binds_through_dice_and_its_legacy_extension() {
    let ev = cert::extract_bound(&der(GRAMINE)).unwrap();
    assert_eq!(ev.format, EvidenceFormat::TcgDice);
    assert_eq!(ev.additional_formats(), vec![EvidenceFormat::GramineLegacy]);
    assert_eq!(ev.key_algorithm, KeyAlgorithm::EcdsaP384);
    assert_eq!(ev.quote_bytes.len(), 4734);
    assert_eq!(ev.quote.header.version, 3);
}

#[test]
fn intel_sgx_sdk_certificate_binds_through_dice() {
    let ev = cert::extract_bound(&der(INTEL_SGX_SDK)).unwrap();
    assert_eq!(ev.format, EvidenceFormat::TcgDice);
    // Its copy of the quote in 1.2.840.113741.1.13.1 is not an evidence format here.
    assert!(ev.additional_formats().is_empty());
    assert_eq!(ev.key_algorithm, KeyAlgorithm::EcdsaP384);
    assert_eq!(ev.quote_bytes.len(), 4600);
}

#[test]
fn rats_tls_certificate_binds_through_dice() {
    let ev = cert::extract_bound(&der(RATS_TLS)).unwrap();
    assert_eq!(ev.format, EvidenceFormat::TcgDice);
    assert!(ev.additional_formats().is_empty());
    assert_eq!(ev.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(ev.quote_bytes.len(), 4734);
}

#[test]
fn the_three_interop_vectors_report_data_is_the_claims_hash_then_zeros() {
    for pem in [GRAMINE, INTEL_SGX_SDK, RATS_TLS] {
        let ev = cert::extract(&der(pem)).unwrap();
        assert_ne!(ev.quote.body.report_data[..32], [0u8; 32]);
        assert_eq!(ev.quote.body.report_data[32..], [0u8; 32]);
    }
}

#[test]
fn an_interop_certificate_with_another_key_spliced_in_fails_binding_and_signature() {
    for pem in [GRAMINE, INTEL_SGX_SDK, RATS_TLS] {
        let spliced = splice_new_key(&der(pem));
        let err = cert::extract(&spliced)
            .unwrap()
            .check_binding()
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::Binding {
                    format: EvidenceFormat::TcgDice,
                    rule: "claim pubkey-hash = SHA-256(SPKI DER)",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = cert::extract_bound(&spliced).unwrap_err();
        assert!(matches!(err, CertError::SelfSignature { .. }), "{err:?}");
    }
}

#[test]
fn an_occlum_rsa_2048_sha1_certificate_is_accepted() {
    cert::check_self_signature(OCCLUM_RSA_SHA1).unwrap();
    let ev = cert::extract_bound(OCCLUM_RSA_SHA1).unwrap();
    assert_eq!(ev.format, EvidenceFormat::Occlum);
    assert_eq!(ev.key_algorithm, KeyAlgorithm::Rsa { bits: 2048 });
    assert_eq!(
        hex::encode(&ev.quote.body.report_data[..32]),
        "25e51268daaa0f38a381cfb4d101cab168a94e08ee3764ea1cf0876fcb53a648"
    );
}

#[test]
fn a_tampered_signature_is_rejected() {
    for der in [OCCLUM_RSA_SHA1.to_vec(), der(RATS_TLS), der(GRAMINE)] {
        let mut bad = der.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x01;
        let err = cert::check_self_signature(&bad).unwrap_err();
        assert!(matches!(err, CertError::SelfSignature { .. }), "{err:?}");
        assert!(matches!(
            cert::extract_bound(&bad),
            Err(CertError::SelfSignature { .. })
        ));
    }
}

#[test]
fn a_tampered_signed_part_is_rejected() {
    // A byte inside the quote's PEM certification data: still parses, still binds.
    let mut bad = OCCLUM_RSA_SHA1.to_vec();
    let at = bad
        .windows(27)
        .position(|w| w == b"-----BEGIN CERTIFICATE-----")
        .unwrap()
        + 40;
    bad[at] ^= 0x01;
    cert::extract(&bad).unwrap().check_binding().unwrap();
    let err = cert::extract_bound(&bad).unwrap_err();
    assert!(
        matches!(&err, CertError::SelfSignature { algorithm, .. } if algorithm == "sha1-with-rsa with rsa-2048"),
        "{err:?}"
    );
}

#[test]
fn every_truncation_of_a_certificate_is_a_parse_error() {
    for der in [der(RATS_TLS), OCCLUM_RSA_SHA1.to_vec()] {
        for len in 0..der.len() {
            let err = cert::extract_bound(&der[..len]).unwrap_err();
            assert!(
                matches!(err, CertError::Parse { .. }),
                "prefix of {len}: {err:?}"
            );
        }
    }
}

#[test]
fn garbage_and_bit_flips_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for len in [0usize, 1, 2, 16, 300, 5000] {
        let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(cert::extract_bound(&garbage).is_err());
    }
    let der = der(RATS_TLS);
    for at in 0..der.len() {
        let mut bad = der.clone();
        bad[at] ^= 1 << (next() % 8);
        let _ = cert::extract_bound(&bad);
    }
}
