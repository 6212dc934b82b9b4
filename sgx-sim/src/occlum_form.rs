//! RA-TLS certificates in the exact form Occlum's C++ `grpc_ratls` makes them, for interop
//! tests: X.509 **v1** (no version field: `occlum_get_key_cert` calls `X509_new()` and never
//! `X509_set_version`) that still carries the non-critical extension `1.2.840.113741.1` with
//! the raw quote, an RSA-2048 key, `sha1WithRSAEncryption`, subject and issuer
//! `C=CN, O=Intel Inc., CN=localhost`, `report_data = SHA-256(SPKI DER) ‖ 0³²`.
//!
//! Test and simulation only: the key is [`TEST_KEY_PEM`], a fixed key in this crate's test data
//! (made once with `openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt`), and the quote comes
//! from whatever [`QuoteSource`] the caller hands over (a simulated platform).

use quote_source::QuoteSource;
use ratls::cert::RaTlsIdentity;
use ring::digest;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use yasna::models::{ObjectIdentifier, UTCTime};

/// The fixed RSA-2048 PKCS#8 test key Occlum-form certificates are made with. A test key:
/// never use it for anything but tests.
pub const TEST_KEY_PEM: &str = include_str!("../testdata/occlum-form-rsa2048.key.pem");

/// `sha1WithRSAEncryption`, 1.2.840.113549.1.1.5.
const SHA1_WITH_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 5];
/// Occlum's quote extension, 1.2.840.113741.1.
const OCCLUM_QUOTE: &[u64] = &[1, 2, 840, 113741, 1];
/// DigestInfo prefix of a SHA-1 hash (RFC 8017 section 9.2, note 1).
const SHA1_DIGEST_INFO: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// Why an Occlum-form identity could not be made.
#[derive(Debug)]
pub struct OcclumFormError(pub String);

impl std::fmt::Display for OcclumFormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "occlum-form certificate: {}", self.0)
    }
}

impl std::error::Error for OcclumFormError {}

/// An Occlum-form RA-TLS identity (certificate and [`TEST_KEY_PEM`]) whose quote `source`
/// makes, valid from `not_before` for `valid_secs` seconds (Unix seconds, UTCTime range).
pub fn identity(
    source: &dyn QuoteSource,
    not_before: i64,
    valid_secs: i64,
) -> Result<RaTlsIdentity, OcclumFormError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| OcclumFormError(format!("{what}: {e}"));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PEM).map_err(|e| fail("test key", &e))?;
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| fail("public key", &e))?;
    let spki = spki.as_bytes();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(digest::digest(&digest::SHA256, spki).as_ref());
    let quote = source.quote(&report_data).map_err(|e| fail("quote", &e))?;

    let time = |t: i64| {
        Ok::<_, OcclumFormError>(UTCTime::from_datetime(
            time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| fail("validity", &e))?,
        ))
    };
    let (from, until) = (time(not_before)?, time(not_before + valid_secs)?);
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // No [0] version: X.509 v1, as Occlum's certificates are.
            w.next().write_u64(1);
            write_algorithm(w.next());
            write_name(w.next());
            w.next().write_sequence(|w| {
                w.next().write_utctime(&from);
                w.next().write_utctime(&until);
            });
            write_name(w.next());
            w.next().write_der(spki);
            w.next().write_tagged(yasna::Tag::context(3), |w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OCCLUM_QUOTE));
                        w.next().write_bytes(&quote);
                    });
                });
            });
        });
    });
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &tbs);
    let scheme = rsa::Pkcs1v15Sign {
        hash_len: Some(20),
        prefix: SHA1_DIGEST_INFO.into(),
    };
    let signature = key
        .sign(scheme, hash.as_ref())
        .map_err(|e| fail("signature", &e))?;
    let cert = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            write_algorithm(w.next());
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        });
    });
    let cert_pem = ratls::cert::pem_encode("CERTIFICATE", &cert);
    RaTlsIdentity::from_pem(&cert_pem, TEST_KEY_PEM).map_err(|e| fail("loading it back", &e))
}

fn write_algorithm(w: yasna::DERWriter<'_>) {
    w.write_sequence(|w| {
        w.next()
            .write_oid(&ObjectIdentifier::from_slice(SHA1_WITH_RSA));
        w.next().write_null();
    });
}

/// `C=CN, O=Intel Inc., CN=localhost`, as Occlum's `occlum_get_key_cert` names both sides.
fn write_name(w: yasna::DERWriter<'_>) {
    let rdn = |w: yasna::DERWriter<'_>, oid: &[u64], value: &str, printable: bool| {
        w.write_set(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                if printable {
                    w.next().write_printable_string(value);
                } else {
                    w.next().write_utf8_string(value);
                }
            });
        });
    };
    w.write_sequence(|w| {
        rdn(w.next(), &[2, 5, 4, 6], "CN", true);
        rdn(w.next(), &[2, 5, 4, 10], "Intel Inc.", false);
        rdn(w.next(), &[2, 5, 4, 3], "localhost", false);
    });
}
