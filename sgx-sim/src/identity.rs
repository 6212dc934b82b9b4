//! Enclave identities: the measurements a simulated quote's report body carries.
//!
//! The JSON form has the shape of an `sgx_mrs` entry of the policy format (`mr_enclave`,
//! `mr_signer`, `isv_prod_id`, `isv_svn`, `config_svn`, `debuggable`, optional `name`), plus
//! the optional KSS fields `isv_ext_prod_id`, `isv_family_id` (16 bytes) and `config_id`
//! (64 bytes) in hex. The format is ours, so unknown fields are rejected.

use std::fmt;
use std::path::Path;

use ratls::quote::{ATTRIBUTE_FLAG_DEBUG, ReportBody};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::keys::Entropy;

/// `attributes.flags` of a production enclave: INIT | MODE64BIT.
pub const ATTRIBUTE_FLAGS_PRODUCTION: u64 = 0x5;
/// `attributes.xfrm` of simulated enclaves: x87, SSE, AVX and AVX-512 state (what the
/// dcap-qvl sample quote's hardware reports).
pub const ATTRIBUTE_XFRM: u64 = 0xe7;
/// Largest identity file read.
pub const MAX_IDENTITY_FILE_LEN: u64 = 16 * 1024;

/// An enclave identity, as a quote's report body carries it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "IdentityFile", into = "IdentityFile")]
pub struct Identity {
    /// Optional label (the `name` of the `sgx_mrs` entry it corresponds to).
    pub name: Option<String>,
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    /// Launched in debug mode (its memory readable by the host).
    pub debuggable: bool,
    pub isv_ext_prod_id: [u8; 16],
    pub isv_family_id: [u8; 16],
    pub config_id: [u8; 64],
}

/// Why an identity file was rejected.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not JSON, a missing or unknown field, or a number out of range.
    Json(serde_json::Error),
    /// A hex field has the wrong form or length.
    Field { field: &'static str, detail: String },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "invalid enclave identity: {e}"),
            Self::Field { field, detail } => {
                write!(f, "invalid enclave identity field {field}: {detail}")
            }
        }
    }
}

impl std::error::Error for IdentityError {}

impl Identity {
    /// An identity with random `mr_enclave` and `mr_signer` (or seed-derived ones), every
    /// other field zero and not debuggable.
    pub fn random(seed: Option<u64>) -> Result<Self, SimError> {
        let entropy = Entropy::new(seed);
        Ok(Self {
            name: None,
            mr_enclave: entropy.bytes("identity mr_enclave")?,
            mr_signer: entropy.bytes("identity mr_signer")?,
            isv_prod_id: 0,
            isv_svn: 0,
            config_svn: 0,
            debuggable: false,
            isv_ext_prod_id: [0; 16],
            isv_family_id: [0; 16],
            config_id: [0; 64],
        })
    }

    /// Parses the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, IdentityError> {
        serde_json::from_slice::<IdentityFile>(bytes)
            .map_err(IdentityError::Json)?
            .try_into()
    }

    /// Reads and parses an identity file (at most [`MAX_IDENTITY_FILE_LEN`] bytes).
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let bytes =
            crate::files::read_bounded(path, MAX_IDENTITY_FILE_LEN, "reading enclave identity")?;
        Self::from_json(&bytes).map_err(|source| SimError::Identity {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The JSON form, pretty-printed, ending in a newline.
    pub fn to_json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(&IdentityFile::from(self.clone())).unwrap_or_default();
        s.push('\n');
        s
    }

    /// `attributes.flags` of this enclave: INIT | MODE64BIT, plus DEBUG when debuggable.
    pub fn attributes_flags(&self) -> u64 {
        if self.debuggable {
            ATTRIBUTE_FLAGS_PRODUCTION | ATTRIBUTE_FLAG_DEBUG
        } else {
            ATTRIBUTE_FLAGS_PRODUCTION
        }
    }

    /// The report body this enclave gets on a platform with `cpu_svn`.
    pub fn report_body(&self, cpu_svn: [u8; 16], report_data: [u8; 64]) -> ReportBody {
        ReportBody {
            cpu_svn,
            misc_select: 0,
            isv_ext_prod_id: self.isv_ext_prod_id,
            attributes_flags: self.attributes_flags(),
            attributes_xfrm: ATTRIBUTE_XFRM,
            mr_enclave: self.mr_enclave,
            mr_signer: self.mr_signer,
            config_id: self.config_id,
            isv_prod_id: self.isv_prod_id,
            isv_svn: self.isv_svn,
            config_svn: self.config_svn,
            isv_family_id: self.isv_family_id,
            report_data,
        }
    }
}

/// The JSON form, field by field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    mr_enclave: String,
    mr_signer: String,
    isv_prod_id: u16,
    isv_svn: u16,
    config_svn: u16,
    debuggable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    isv_ext_prod_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    isv_family_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_id: Option<String>,
}

impl TryFrom<IdentityFile> for Identity {
    type Error = IdentityError;

    fn try_from(f: IdentityFile) -> Result<Self, IdentityError> {
        Ok(Self {
            name: f.name,
            mr_enclave: hex_field("mr_enclave", &f.mr_enclave)?,
            mr_signer: hex_field("mr_signer", &f.mr_signer)?,
            isv_prod_id: f.isv_prod_id,
            isv_svn: f.isv_svn,
            config_svn: f.config_svn,
            debuggable: f.debuggable,
            isv_ext_prod_id: optional_hex("isv_ext_prod_id", f.isv_ext_prod_id.as_deref())?,
            isv_family_id: optional_hex("isv_family_id", f.isv_family_id.as_deref())?,
            config_id: optional_hex("config_id", f.config_id.as_deref())?,
        })
    }
}

impl From<Identity> for IdentityFile {
    fn from(id: Identity) -> Self {
        let nonzero = |bytes: &[u8]| bytes.iter().any(|b| *b != 0).then(|| hex::encode(bytes));
        Self {
            name: id.name,
            mr_enclave: hex::encode(id.mr_enclave),
            mr_signer: hex::encode(id.mr_signer),
            isv_prod_id: id.isv_prod_id,
            isv_svn: id.isv_svn,
            config_svn: id.config_svn,
            debuggable: id.debuggable,
            isv_ext_prod_id: nonzero(&id.isv_ext_prod_id),
            isv_family_id: nonzero(&id.isv_family_id),
            config_id: nonzero(&id.config_id),
        }
    }
}

/// Exactly `N` bytes of hex (either case).
pub(crate) fn hex_field<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| IdentityError::Field {
        field,
        detail: format!("expected {} hex digits: {e}", 2 * N),
    })?;
    Ok(out)
}

fn optional_hex<const N: usize>(
    field: &'static str,
    text: Option<&str>,
) -> Result<[u8; N], IdentityError> {
    text.map_or(Ok([0u8; N]), |t| hex_field(field, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"mr_enclave": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        "mr_signer": "815F42F11CF64430C30BAB7816BA596A1DA0130C3B028B673133A66CF9A3E0E6",
        "isv_prod_id": 1, "isv_svn": 2, "config_svn": 3, "debuggable": false}"#;

    #[test]
    fn an_sgx_mrs_shaped_entry_parses() {
        let id = Identity::from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(id.mr_enclave[0], 0x33);
        assert_eq!(id.mr_signer[31], 0xe6);
        assert_eq!((id.isv_prod_id, id.isv_svn, id.config_svn), (1, 2, 3));
        assert_eq!(id.config_id, [0; 64]);
        assert_eq!(id.attributes_flags(), 0x5);
    }

    #[test]
    fn the_json_form_round_trips_including_kss_fields() {
        let mut id = Identity::random(Some(5)).unwrap();
        id.name = Some("kms".into());
        id.debuggable = true;
        id.config_id[63] = 9;
        id.isv_family_id[0] = 1;
        let back = Identity::from_json(id.to_json().as_bytes()).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.attributes_flags(), 0x7);
    }

    #[test]
    fn unknown_fields_and_bad_hex_are_rejected() {
        let extra = MINIMAL.replace(
            "\"debuggable\"",
            "\"verify_mr_enclave\": \"on\", \"debuggable\"",
        );
        assert!(matches!(
            Identity::from_json(extra.as_bytes()),
            Err(IdentityError::Json(_))
        ));
        let short = MINIMAL.replace("33d8736d", "33d873");
        assert!(matches!(
            Identity::from_json(short.as_bytes()),
            Err(IdentityError::Field {
                field: "mr_enclave",
                ..
            })
        ));
        let missing = MINIMAL.replace("\"isv_svn\": 2,", "");
        assert!(Identity::from_json(missing.as_bytes()).is_err());
        let big = MINIMAL.replace("\"isv_svn\": 2", "\"isv_svn\": 65536");
        assert!(Identity::from_json(big.as_bytes()).is_err());
    }

    #[test]
    fn the_report_body_carries_every_identity_field() {
        let id = Identity::from_json(MINIMAL.as_bytes()).unwrap();
        let body = id.report_body([7; 16], [9; 64]);
        assert_eq!(body.mr_enclave, id.mr_enclave);
        assert_eq!(body.mr_signer, id.mr_signer);
        assert_eq!((body.isv_prod_id, body.isv_svn, body.config_svn), (1, 2, 3));
        assert_eq!(body.cpu_svn, [7; 16]);
        assert_eq!(body.report_data, [9; 64]);
        assert!(!body.debuggable());
    }
}
