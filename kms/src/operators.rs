//! The operators the admin API admits: public keys pinned in `kms_operators.json`, which inside
//! Occlum is the measured image's [`OCCLUM_IMAGE_OPERATORS`] (never a host-chosen path).
//!
//! Format (ours, so unknown fields are refused):
//! `{"operators": [{"name": "alice", "spki_sha256": "<64 hex>"}]}`. `spki_sha256` is the
//! SHA-256 of the DER `SubjectPublicKeyInfo` of the operator's TLS client certificate (`kms
//! admin fingerprint --cert FILE` prints it). The TLS handshake proves the client holds the
//! matching private key; the certificate's issuer, validity and names are not consulted.
//! Guarantees: names and fingerprints are unique, fingerprints are 32 bytes, and an empty list
//! is an error (write no file to disable the admin API).

use std::path::Path;

use serde::Deserialize;

/// Inside Occlum: the pinned operators, at the root of the measured image. Absent: admin off.
pub const OCCLUM_IMAGE_OPERATORS: &str = "/kms_operators.json";
/// Largest operators file read.
pub const MAX_OPERATORS_LEN: usize = 64 * 1024;

/// One admitted operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub spki_sha256: [u8; 32],
}

/// The pinned operators (possibly none: then every admin call is refused).
#[derive(Debug, Clone, Default)]
pub struct Operators {
    list: Vec<Operator>,
    /// Where the list came from, for messages ("none pinned" names what to set).
    source: String,
}

/// Why an operators file was refused.
pub type OperatorsError = crate::fsutil::ConfigFileError;

/// How operators files are named in messages.
const WHAT: &str = "operators file";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    operators: Vec<RawOperator>,
}

/// One entry of an operators list, as written (also cluster.json's `operators`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    name: String,
    spki_sha256: String,
}

impl Operators {
    /// No operators: the admin API refuses every call, naming `why` (what would pin some).
    pub fn none(why: &str) -> Operators {
        Operators {
            list: Vec::new(),
            source: why.to_owned(),
        }
    }

    /// Reads and validates an operators file.
    pub fn load(path: &Path) -> Result<Operators, OperatorsError> {
        crate::fsutil::load_config(path, MAX_OPERATORS_LEN, WHAT, Operators::from_json)
    }

    /// Parses and validates operators JSON; `label` names the file in errors.
    pub fn from_json(bytes: &[u8], label: &str) -> Result<Operators, OperatorsError> {
        let invalid = |detail: String| OperatorsError::Invalid {
            what: WHAT,
            path: label.to_owned(),
            detail,
        };
        let raw: RawFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        Operators::from_entries(raw.operators, label).map_err(invalid)
    }

    /// Validates a list of entries read from `label`; the error is the detail (which entry,
    /// which field, what was wrong).
    pub fn from_entries(entries: Vec<RawOperator>, label: &str) -> Result<Operators, String> {
        if entries.is_empty() {
            return Err(
                "field `operators` is empty (to disable the admin API, ship no operators file)"
                    .into(),
            );
        }
        let mut list: Vec<Operator> = Vec::with_capacity(entries.len());
        for (i, op) in entries.into_iter().enumerate() {
            if op.name.is_empty() {
                return Err(format!("operators[{i}].name is empty"));
            }
            let spki_sha256 = parse_fingerprint(&op.spki_sha256).ok_or_else(|| {
                format!(
                    "operators[{i}].spki_sha256: expected 64 hex characters (SHA-256 of the DER SubjectPublicKeyInfo; `kms admin fingerprint --cert FILE` prints it), got {:?}",
                    op.spki_sha256
                )
            })?;
            if list.iter().any(|o| o.name == op.name) {
                return Err(format!("operators[{i}].name {:?} appears twice", op.name));
            }
            if list.iter().any(|o| o.spki_sha256 == spki_sha256) {
                return Err(format!(
                    "operators[{i}].spki_sha256 pins the same key as an earlier entry"
                ));
            }
            list.push(Operator {
                name: op.name,
                spki_sha256,
            });
        }
        Ok(Operators {
            list,
            source: label.to_owned(),
        })
    }

    /// The operator whose key has this fingerprint, if pinned.
    pub fn find(&self, spki_sha256: &[u8; 32]) -> Option<&Operator> {
        self.list.iter().find(|o| &o.spki_sha256 == spki_sha256)
    }

    /// True if no operator is pinned (the admin API is disabled).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of pinned operators.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Where the list came from, or why there is none.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// SHA-256 of the DER `SubjectPublicKeyInfo` of a certificate (DER).
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32], String> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    if !rest.is_empty() {
        return Err("the client certificate has trailing data".into());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    fn parse(json: &str) -> Result<Operators, OperatorsError> {
        Operators::from_json(json.as_bytes(), "ops.json")
    }

    #[test]
    fn pinned_operators_parse_and_are_found_by_fingerprint() {
        let ops = parse(&format!(
            r#"{{"operators": [{{"name": "alice", "spki_sha256": "{A}"}}, {{"name": "bob", "spki_sha256": "{B}"}}]}}"#
        ))
        .unwrap();
        assert_eq!(ops.len(), 2);
        let mut key = [0u8; 32];
        hex::decode_to_slice(B, &mut key).unwrap();
        assert_eq!(ops.find(&key).unwrap().name, "bob");
        assert!(ops.find(&[0u8; 32]).is_none());
    }

    #[test]
    fn malformed_operator_files_are_refused_by_field() {
        let cases = [
            (r#"{"operators": []}"#.to_owned(), "empty"),
            (
                format!(r#"{{"operators": [{{"name": "", "spki_sha256": "{A}"}}]}}"#),
                "operators[0].name",
            ),
            (
                r#"{"operators": [{"name": "a", "spki_sha256": "abc"}]}"#.to_owned(),
                "operators[0].spki_sha256",
            ),
            (
                format!(
                    r#"{{"operators": [{{"name": "a", "spki_sha256": "{A}"}}, {{"name": "a", "spki_sha256": "{B}"}}]}}"#
                ),
                "appears twice",
            ),
            (
                format!(
                    r#"{{"operators": [{{"name": "a", "spki_sha256": "{A}"}}, {{"name": "b", "spki_sha256": "{A}"}}]}}"#
                ),
                "same key",
            ),
            (
                format!(r#"{{"operators": [{{"name": "a", "spki_sha256": "{A}", "role": "x"}}]}}"#),
                "unknown field",
            ),
        ];
        for (json, expected) in cases {
            let err = parse(&json).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains("ops.json"),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn the_fingerprint_is_over_the_certificates_spki() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["op".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let expected = ring::digest::digest(
            &ring::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        assert_eq!(
            spki_sha256(cert.der()).unwrap().as_slice(),
            expected.as_ref()
        );
        assert!(spki_sha256(b"not a certificate").is_err());
    }
}
