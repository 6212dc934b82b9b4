//! RA-TLS certificates we mint, and certificates built here to break one rule at a time.
//!
//! Quotes come from the real dcap-sample quote with its `report_data` spliced: structurally
//! valid, which is all extraction and binding look at (DCAP is the verifier's job).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quote_source::{QuoteError, QuoteSource};
use ratls::cert::{
    self, CertError, DEFAULT_VALIDITY, EvidenceFormat, IdentityError, KeyAlgorithm, MAX_CERT_LEN,
    MAX_VALIDITY, RaTlsIdentity,
};
use rcgen::{
    CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha256, Sha384, Sha512};

const SAMPLE_QUOTE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");
const REPORT_DATA: std::ops::Range<usize> = 48 + 320..48 + 384;
const MR_ENCLAVE: std::ops::Range<usize> = 48 + 64..48 + 96;

const OCCLUM: &[u64] = &[1, 2, 840, 113741, 1];
const DICE: &[u64] = &[2, 23, 133, 5, 4, 9];
/// What Gramine emits: its OID constant includes the OID's own tag and length bytes.
const GRAMINE_WIRE: &[u64] = &[0, 6, 9, 42, 840, 113741, 1337, 6];
const GRAMINE_PROPER: &[u64] = &[1, 2, 840, 113741, 1337, 6];

/// A quote source for tests: the dcap-sample quote carrying the requested report data.
struct SampleSource {
    ignore_report_data: bool,
}

impl QuoteSource for SampleSource {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, QuoteError> {
        Ok(quote_with(if self.ignore_report_data {
            [0; 64]
        } else {
            *report_data
        }))
    }
    fn describe(&self) -> String {
        "test: dcap sample quote with spliced report_data".into()
    }
    fn is_simulated(&self) -> bool {
        true
    }
}

struct FailingSource;

impl QuoteSource for FailingSource {
    fn quote(&self, _: &[u8; 64]) -> Result<Vec<u8>, QuoteError> {
        Err(QuoteError::Platform {
            detail: "GEN_DCAP_QUOTE: EIO".into(),
        })
    }
    fn describe(&self) -> String {
        "test: always fails".into()
    }
    fn is_simulated(&self) -> bool {
        true
    }
}

fn quote_with(report_data: [u8; 64]) -> Vec<u8> {
    let mut q = SAMPLE_QUOTE.to_vec();
    q[REPORT_DATA].copy_from_slice(&report_data);
    q
}

fn occlum_report_data(spki: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(spki));
    rd
}

fn claims_report_data(claims: &[u8]) -> [u8; 64] {
    occlum_report_data(claims)
}

fn cert_with(key: &KeyPair, extensions: Vec<CustomExtension>) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.custom_extensions = extensions;
    params.self_signed(key).unwrap().der().to_vec()
}

fn ext(oid: &[u64], content: Vec<u8>) -> CustomExtension {
    CustomExtension::from_oid_content(oid, content)
}

/// A CBOR head (RFC 8949 section 3) for lengths up to 2^32.
fn cbor_head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => vec![m | 25, (n >> 8) as u8, n as u8],
        _ => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
    }
}

fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn tstr(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{"pubkey-hash": h'<[alg, h'hash']>'}` plus any extra byte-string claims.
fn claims(alg: u8, hash: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entry = vec![0x82, alg];
    entry.extend(bstr(hash));
    let mut v = cbor_head(5, 1 + extra.len());
    v.extend(tstr("pubkey-hash"));
    v.extend(bstr(&entry));
    for (k, val) in extra {
        v.extend(tstr(k));
        v.extend(bstr(val));
    }
    v
}

/// `60000([h'quote', h'claims'])`.
fn dice(quote: &[u8], claims: &[u8]) -> Vec<u8> {
    let mut v = vec![0xd9, 0xea, 0x60, 0x82];
    v.extend(bstr(quote));
    v.extend(bstr(claims));
    v
}

fn dice_for(key: &KeyPair) -> Vec<u8> {
    let c = claims(1, &Sha256::digest(key.subject_public_key_info()), &[]);
    dice(&quote_with(claims_report_data(&c)), &c)
}

fn occlum_for(key: &KeyPair) -> Vec<u8> {
    quote_with(occlum_report_data(&key.subject_public_key_info()))
}

fn binding_rule(err: CertError) -> (EvidenceFormat, &'static str) {
    match err {
        CertError::Binding { format, rule, .. } => (format, rule),
        other => panic!("expected a binding error, got {other:?}: {other}"),
    }
}

use rcgen::PublicKeyData as _;

#[test]
fn a_minted_identity_round_trips_through_extract_bound() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let ev = cert::extract_bound(id.cert_der()).unwrap();
    assert_eq!(ev.format, EvidenceFormat::Occlum);
    assert!(ev.additional_formats().is_empty());
    assert_eq!(ev.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(ev.quote_bytes, id.quote());
    assert_eq!(
        &ev.quote.body.report_data[..32],
        Sha256::digest(&ev.spki_der).as_slice()
    );
    assert_eq!(ev.quote.body.report_data[32..], [0u8; 32]);
    // Everything but report_data is the sample's.
    assert_eq!(ev.quote.body.mr_enclave[..], SAMPLE_QUOTE[MR_ENCLAVE]);
}

#[test]
fn the_minted_key_is_the_certificates_key_and_rustls_accepts_the_pair() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let ev = cert::extract(id.cert_der()).unwrap();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        id.key_pkcs8_der(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    use ring::signature::KeyPair as _;
    assert!(ev.spki_der.ends_with(key.public_key().as_ref()));

    let (cert_der, key_der) = id.rustls_pair();
    assert_eq!(cert_der.as_ref(), id.cert_der());
    assert_eq!(key_der.secret_der(), id.key_pkcs8_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
}

#[test]
fn the_occlum_extension_is_non_critical_and_holds_exactly_the_raw_quote() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(id.cert_der()).unwrap();
    let oid = x509_parser::oid_registry::Oid::from(OCCLUM).unwrap();
    let ext = parsed
        .get_extension_unique(&oid)
        .unwrap()
        .expect("occlum extension present");
    assert!(!ext.critical);
    assert_eq!(ext.value, id.quote());
    assert_eq!(parsed.subject().to_string(), "CN=Occlum RA-TLS");
    assert_eq!(parsed.issuer(), parsed.subject());
    assert!(
        parsed
            .tbs_certificate
            .raw_serial()
            .first()
            .is_some_and(|b| b & 0x80 == 0)
    );
}

#[test]
fn minted_validity_is_backdated_one_hour_and_lasts_the_requested_period() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let src = SampleSource {
        ignore_report_data: false,
    };
    let id = RaTlsIdentity::mint_valid_for(&src, now, DEFAULT_VALIDITY).unwrap();
    let ev = cert::extract(id.cert_der()).unwrap();
    assert_eq!(ev.not_before_unix, 1_800_000_000 - 3600);
    assert_eq!(ev.not_after_unix, 1_800_000_000 + 86_400);
    assert_eq!(id.not_after(), now + DEFAULT_VALIDITY);
    ev.check_validity(1_800_000_000).unwrap();
    assert!(matches!(
        ev.check_validity(1_800_000_000 + 86_401),
        Err(CertError::Validity { .. })
    ));
    assert!(matches!(
        ev.check_validity(1_800_000_000 - 3601),
        Err(CertError::Validity { .. })
    ));
}

#[test]
fn a_validity_of_zero_or_beyond_the_maximum_is_refused() {
    let src = SampleSource {
        ignore_report_data: false,
    };
    for v in [Duration::ZERO, MAX_VALIDITY + Duration::from_secs(1)] {
        let err = RaTlsIdentity::mint_valid_for(&src, SystemTime::now(), v).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::Validity { requested_secs, max_secs }
                    if requested_secs == v.as_secs() && max_secs == MAX_VALIDITY.as_secs()
            ),
            "{err:?}"
        );
    }
}

#[test]
fn a_quote_source_that_ignores_report_data_cannot_mint() {
    let err = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: true,
    })
    .unwrap_err();
    let IdentityError::Certificate(err) = err else {
        panic!("expected the minted certificate to be rejected, got {err:?}");
    };
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::Occlum,
            "report_data[0..32] = SHA-256(SPKI DER)"
        )
    );
}

#[test]
fn a_failing_quote_source_fails_minting_with_its_error() {
    let err = RaTlsIdentity::mint(&FailingSource).unwrap_err();
    assert!(
        matches!(err, IdentityError::QuoteSource(QuoteError::Platform { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("quote for a new certificate failed: "),
        "{err}"
    );
}

#[test]
fn an_identity_written_as_pem_loads_back_identically() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let cert_pem = id.cert_pem();
    let key_pem = id.key_pem();
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(cert_pem.lines().all(|l| l.len() <= 64));
    let back = RaTlsIdentity::from_pem(&cert_pem, &key_pem).unwrap();
    assert_eq!(back.cert_der(), id.cert_der());
    assert_eq!(back.key_pkcs8_der(), id.key_pkcs8_der());
    assert_eq!(back.quote(), id.quote());
    assert_eq!(back.not_after(), id.not_after());
}

#[test]
fn another_identitys_key_does_not_load_with_the_certificate() {
    let src = SampleSource {
        ignore_report_data: false,
    };
    let a = RaTlsIdentity::mint(&src).unwrap();
    let b = RaTlsIdentity::mint(&src).unwrap();
    let err = RaTlsIdentity::from_pem(&a.cert_pem(), &b.key_pem()).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch), "{err:?}");
}

#[test]
fn malformed_pem_is_a_pem_error() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let err = RaTlsIdentity::from_pem("not pem", &id.key_pem()).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Pem {
                what: "certificate",
                ..
            }
        ),
        "{err:?}"
    );
    let broken = id.key_pem().replace('A', "*");
    let err = RaTlsIdentity::from_pem(&id.cert_pem(), &broken).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Pem {
                what: "private key",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn debug_output_never_shows_the_private_key() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let shown = format!("{id:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let key_b64: String = id
        .key_pem()
        .lines()
        .nth(1)
        .unwrap()
        .chars()
        .take(20)
        .collect();
    assert!(!shown.contains(&key_b64), "{shown}");
    assert!(
        !shown.contains(&hex::encode(&id.key_pkcs8_der()[..16])),
        "{shown}"
    );
}

#[test]
fn a_quote_bound_to_another_key_fails_binding_though_the_signature_is_fine() {
    let quoted = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let signer = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(&signer, vec![ext(OCCLUM, occlum_for(&quoted))]);
    cert::check_self_signature(&der).unwrap();
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::Occlum,
            "report_data[0..32] = SHA-256(SPKI DER)"
        )
    );
}

#[test]
fn non_zero_report_data_after_the_key_hash_fails_binding() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut rd = occlum_report_data(&key.subject_public_key_info());
    rd[63] = 1;
    let der = cert_with(&key, vec![ext(OCCLUM, quote_with(rd))]);
    let err = cert::extract_bound(&der).unwrap_err();
    let text = err.to_string();
    assert_eq!(
        binding_rule(err),
        (EvidenceFormat::Occlum, "report_data[32..64] = zero")
    );
    assert!(
        text.contains(&format!("got {}01", "00".repeat(31))),
        "{text}"
    );
}

#[test]
fn a_certificate_without_evidence_is_no_evidence() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(
        &key,
        vec![ext(&[1, 2, 840, 113741, 1, 13, 1], occlum_for(&key))],
    );
    let err = cert::extract_bound(&der).unwrap_err();
    assert!(matches!(err, CertError::NoEvidence), "{err:?}");
}

#[test]
fn an_evidence_extension_without_a_valid_quote_is_an_evidence_error() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut q = occlum_for(&key);
    q.truncate(1000);
    let err = cert::extract(&cert_with(&key, vec![ext(OCCLUM, q)])).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::Evidence {
                format: EvidenceFormat::Occlum,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unknown_critical_extension_is_refused_but_a_critical_evidence_extension_is_not() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut unknown = ext(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
    unknown.set_criticality(true);
    let der = cert_with(&key, vec![ext(OCCLUM, occlum_for(&key)), unknown]);
    let err = cert::extract_bound(&der).unwrap_err();
    assert!(
        matches!(&err, CertError::CriticalExtension { oid } if oid == "1.3.6.1.4.1.99999.1"),
        "{err:?}"
    );

    let mut critical = ext(OCCLUM, occlum_for(&key));
    critical.set_criticality(true);
    cert::extract_bound(&cert_with(&key, vec![critical])).unwrap();
}

#[test]
fn the_same_evidence_extension_twice_is_a_parse_error() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(
        &key,
        vec![ext(OCCLUM, occlum_for(&key)), ext(OCCLUM, occlum_for(&key))],
    );
    assert!(matches!(cert::extract(&der), Err(CertError::Parse { .. })));
    // Gramine's two encodings of its OID are the same evidence.
    let der = cert_with(
        &key,
        vec![
            ext(GRAMINE_WIRE, occlum_for(&key)),
            ext(GRAMINE_PROPER, occlum_for(&key)),
        ],
    );
    let err = cert::extract(&der).unwrap_err();
    assert!(
        matches!(&err, CertError::Parse { detail } if detail.contains("gramine")),
        "{err:?}"
    );
}

#[test]
fn gramine_legacy_evidence_is_found_under_both_encodings_of_its_oid() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    for oid in [GRAMINE_WIRE, GRAMINE_PROPER] {
        let ev = cert::extract_bound(&cert_with(&key, vec![ext(oid, occlum_for(&key))])).unwrap();
        assert_eq!(ev.format, EvidenceFormat::GramineLegacy);
        assert_eq!(ev.key_algorithm, KeyAlgorithm::EcdsaP384);
    }
    let other = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let der = cert_with(&key, vec![ext(GRAMINE_WIRE, occlum_for(&other))]);
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::GramineLegacy,
            "report_data[0..32] = SHA-256(SPKI DER)"
        )
    );
}

#[test]
fn dice_evidence_binds_with_each_pubkey_hash_algorithm() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let spki = key.subject_public_key_info();
    let hashes: [(u8, Vec<u8>); 3] = [
        (1, Sha256::digest(&spki).to_vec()),
        (7, Sha384::digest(&spki).to_vec()),
        (8, Sha512::digest(&spki).to_vec()),
    ];
    for (alg, hash) in hashes {
        let c = claims(alg, &hash, &[("nonce", b"0123")]);
        let der = cert_with(
            &key,
            vec![ext(DICE, dice(&quote_with(claims_report_data(&c)), &c))],
        );
        let ev = cert::extract_bound(&der).unwrap();
        assert_eq!(ev.format, EvidenceFormat::TcgDice);
    }
}

#[test]
fn dice_claims_not_committed_by_the_quote_fail_binding() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let c = claims(1, &Sha256::digest(key.subject_public_key_info()), &[]);
    let other = claims(
        1,
        &Sha256::digest(key.subject_public_key_info()),
        &[("nonce", b"x")],
    );
    let der = cert_with(
        &key,
        vec![ext(DICE, dice(&quote_with(claims_report_data(&other)), &c))],
    );
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::TcgDice,
            "report_data[0..32] = SHA-256(claims)"
        )
    );
}

#[test]
fn a_dice_pubkey_hash_of_another_key_fails_binding() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(&key, vec![ext(DICE, dice_for(&other))]);
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::TcgDice,
            "claim pubkey-hash = SHA-256(SPKI DER)"
        )
    );
}

#[test]
fn malformed_dice_evidence_is_an_encoding_error() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let good = dice_for(&key);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut indefinite = good.clone();
    indefinite[3] = 0x9f; // array of indefinite length
    let c = tstr("no map");
    let not_a_map = dice(&quote_with(claims_report_data(&c)), &c);
    for value in [
        trailing,
        indefinite,
        not_a_map,
        good[..good.len() - 1].to_vec(),
    ] {
        let err = cert::extract(&cert_with(&key, vec![ext(DICE, value)])).unwrap_err();
        assert!(
            matches!(
                err,
                CertError::Encoding {
                    format: EvidenceFormat::TcgDice,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn with_several_formats_dice_is_primary_and_every_other_quote_must_bind_too() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(
        &key,
        vec![ext(OCCLUM, occlum_for(&key)), ext(DICE, dice_for(&key))],
    );
    let ev = cert::extract_bound(&der).unwrap();
    assert_eq!(ev.format, EvidenceFormat::TcgDice);
    assert_eq!(ev.additional_formats(), vec![EvidenceFormat::Occlum]);

    // The primary passing does not excuse a secondary that does not bind.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = cert_with(
        &key,
        vec![ext(OCCLUM, occlum_for(&other)), ext(DICE, dice_for(&key))],
    );
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(
        binding_rule(err),
        (
            EvidenceFormat::Occlum,
            "report_data[0..32] = SHA-256(SPKI DER)"
        )
    );

    // Nor does a secondary that passes excuse a primary that does not.
    let der = cert_with(
        &key,
        vec![ext(OCCLUM, occlum_for(&key)), ext(DICE, dice_for(&other))],
    );
    let err = cert::extract_bound(&der).unwrap_err();
    assert_eq!(binding_rule(err).0, EvidenceFormat::TcgDice);
}

#[test]
fn quotes_of_two_different_enclaves_in_one_certificate_are_refused() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut occlum = occlum_for(&key);
    occlum[MR_ENCLAVE][0] ^= 1;
    let der = cert_with(&key, vec![ext(OCCLUM, occlum), ext(DICE, dice_for(&key))]);
    let err = cert::extract_bound(&der).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::Disagreement {
                format: EvidenceFormat::Occlum,
                primary: EvidenceFormat::TcgDice,
                field: "mr_enclave",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unsupported_key_type_is_named() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let der = cert_with(&key, vec![ext(OCCLUM, occlum_for(&key))]);
    let err = cert::extract_bound(&der).unwrap_err();
    assert!(
        matches!(&err, CertError::UnsupportedKey { detail } if detail.contains("1.3.101.112")),
        "{err:?}"
    );
    let err = cert::check_self_signature(&der).unwrap_err();
    assert!(matches!(err, CertError::UnsupportedKey { .. }), "{err:?}");
}

#[test]
fn input_over_the_size_limit_is_refused_before_parsing() {
    let big = vec![0x30; MAX_CERT_LEN + 1];
    let err = cert::extract_bound(&big).unwrap_err();
    assert!(
        matches!(err, CertError::TooLarge { len, max } if len == MAX_CERT_LEN + 1 && max == MAX_CERT_LEN)
    );
}

#[test]
fn bytes_after_the_certificate_are_refused() {
    let id = RaTlsIdentity::mint(&SampleSource {
        ignore_report_data: false,
    })
    .unwrap();
    let mut der = id.cert_der().to_vec();
    der.push(0);
    let err = cert::extract_bound(&der).unwrap_err();
    assert!(
        matches!(&err, CertError::Parse { detail } if detail.contains("trailing")),
        "{err:?}"
    );
}
