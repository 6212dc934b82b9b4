//! The secret store: `secret_config.json` parsed once into a validated, zeroize-on-drop map.
//!
//! Format (Occlum's, plus one extension):
//! `{ "name": "<base64>", "other": { "value": "<base64>", "allow": ["entry", …] } }`.
//! A plain string may be read by any verified client; an object's `allow` lists the
//! `sgx_mrs` entry names (policy `name` field) whose enclaves may read it. Guarantees: every
//! value is valid base64 (ASCII whitespace is ignored, as Occlum's decoder ignores it), names
//! are unique and non-empty, and no value ever appears in an error, a log or `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserializer;
use serde::de::{self, MapAccess, Visitor};
use zeroize::Zeroizing;

/// Largest `secret_config.json` accepted, in bytes.
pub const MAX_SECRETS_FILE_LEN: usize = 16 << 20;

/// How the base64 text is put into `SecretReply.secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyForm {
    /// `"<base64>"` with the quote characters, as Occlum's C++ server sends it (cJSON_Print)
    /// and its C++ client expects.
    Quoted,
    /// The bare base64 text.
    Bare,
}

/// One secret. No `Debug`, no `Clone`; the value and its encodings are wiped on drop.
pub struct Secret {
    base64: Zeroizing<String>,
    allow: Option<Vec<String>>,
}

impl Secret {
    /// The reply payload in the requested form.
    pub fn reply_text(&self, form: ReplyForm) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.base64.len() + 2));
        match form {
            ReplyForm::Quoted => {
                out.push(b'"');
                out.extend_from_slice(self.base64.as_bytes());
                out.push(b'"');
            }
            ReplyForm::Bare => out.extend_from_slice(self.base64.as_bytes()),
        }
        out
    }

    /// The entry names allowed to read this secret; `None` means any verified client.
    pub fn allow(&self) -> Option<&[String]> {
        self.allow.as_deref()
    }

    /// True if a client that matched policy entry `matched` may read this secret.
    pub fn is_released_to(&self, matched: Option<&str>) -> bool {
        match (&self.allow, matched) {
            (None, _) => true,
            (Some(allow), Some(name)) => allow.iter().any(|a| a == name),
            (Some(_), None) => false,
        }
    }
}

/// All secrets by name.
pub struct SecretStore {
    secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values never reach output.
        f.debug_struct("SecretStore")
            .field("names", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a secret file was refused. Names the secret, never its value.
#[derive(Debug)]
pub enum SecretsError {
    /// The file is larger than [`MAX_SECRETS_FILE_LEN`].
    TooLarge { len: usize },
    /// Not a JSON object of the expected shape (serde's message carries line and column).
    Syntax { detail: String },
    /// A value is not valid base64.
    NotBase64 { name: String },
    /// An `allow` list names an entry the policy does not have.
    UnknownEntry { name: String, entry: String },
}

impl fmt::Display for SecretsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => {
                write!(
                    f,
                    "secret file too large: {len} bytes, limit {MAX_SECRETS_FILE_LEN}"
                )
            }
            Self::Syntax { detail } => write!(f, "invalid secret file: {detail}"),
            Self::NotBase64 { name } => write!(f, "secret {name:?}: value is not valid base64"),
            Self::UnknownEntry { name, entry } => write!(
                f,
                "secret {name:?}: allow names {entry:?}, which is not the name of any sgx_mrs entry in the policy"
            ),
        }
    }
}

impl std::error::Error for SecretsError {}

impl SecretStore {
    /// Parses and validates `secret_config.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<SecretStore, SecretsError> {
        if bytes.len() > MAX_SECRETS_FILE_LEN {
            return Err(SecretsError::TooLarge { len: bytes.len() });
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw = de
            .deserialize_map(FileVisitor)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| SecretsError::Syntax {
                detail: e.to_string(),
            })?;
        let mut secrets = BTreeMap::new();
        for (name, raw) in raw {
            let secret = decode(&name, raw)?;
            secrets.insert(name, secret);
        }
        Ok(SecretStore { secrets })
    }

    /// Checks that every `allow` list names only entries in `entry_names`.
    pub fn check_allow_lists<'a>(
        &self,
        entry_names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), SecretsError> {
        for (name, secret) in &self.secrets {
            for entry in secret.allow().unwrap_or_default() {
                if !entry_names.clone().into_iter().any(|known| known == entry) {
                    return Err(SecretsError::UnknownEntry {
                        name: name.clone(),
                        entry: entry.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The secret called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }
}

/// A value as it appears in the file, before base64 validation.
struct RawSecret {
    text: Zeroizing<String>,
    allow: Option<Vec<String>>,
}

fn decode(name: &str, raw: RawSecret) -> Result<Secret, SecretsError> {
    // Sized up front: growing by reallocation would leave unwiped copies behind.
    let mut compact = Zeroizing::new(String::with_capacity(raw.text.len()));
    raw.text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .for_each(|c| compact.push(c));
    // Decoded only to validate; the decoded bytes are wiped at once (replies carry base64).
    let decoded = STANDARD
        .decode(compact.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| SecretsError::NotBase64 {
            name: name.to_owned(),
        })?;
    drop(decoded);
    Ok(Secret {
        base64: compact,
        allow: raw.allow,
    })
}

/// Visits the top-level object; rejects duplicate and empty names.
///
/// Hand-written visitors (no `#[serde(untagged)]`) so values go straight into zeroizing
/// buffers instead of serde's intermediate content tree.
struct FileVisitor;

impl<'de> Visitor<'de> for FileVisitor {
    type Value = Vec<(String, RawSecret)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object mapping secret names to base64 strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(String, RawSecret)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name.is_empty() {
                return Err(de::Error::custom("a secret has an empty name"));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format!("secret {name:?} appears twice")));
            }
            let value = map.next_value_seed(ValueSeed { name: &name })?;
            out.push((name, value));
        }
        Ok(out)
    }
}

struct ValueSeed<'n> {
    name: &'n str,
}

impl<'de> de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = RawSecret;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawSecret, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret {:?}: a base64 string or {{\"value\": …, \"allow\": […]}}",
            self.name
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
        Ok(RawSecret {
            text: Zeroizing::new(v.to_owned()),
            allow: None,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawSecret, E> {
        Ok(RawSecret {
            text: Zeroizing::new(v),
            allow: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut text: Option<Zeroizing<String>> = None;
        let mut allow: Option<Vec<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "value" if text.is_none() => {
                    text = Some(Zeroizing::new(map.next_value::<String>()?));
                }
                "allow" if allow.is_none() => allow = Some(map.next_value::<Vec<String>>()?),
                "value" | "allow" => {
                    return Err(de::Error::custom(format!(
                        "secret {:?}: field {key:?} appears twice",
                        self.name
                    )));
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "secret {:?}: unknown field {other:?} (expected \"value\" or \"allow\")",
                        self.name
                    )));
                }
            }
        }
        let Some(text) = text else {
            return Err(de::Error::custom(format!(
                "secret {:?}: missing \"value\"",
                self.name
            )));
        };
        Ok(RawSecret { text, allow })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn value(store: &SecretStore, name: &str) -> Vec<u8> {
        STANDARD
            .decode(
                store
                    .get(name)
                    .unwrap()
                    .reply_text(ReplyForm::Bare)
                    .as_slice(),
            )
            .unwrap()
    }

    const SEED: &str = r#"{
        "flask_cert" : "dGVzdCBzYW1wbGUgY2VydGlmaWNhdGVzCg==",
        "flask_key" : "dGVzdCBzYW1wbGUga2V5Cg==",
        "image_key" : {"value": "YTUtNmQK", "allow": ["app"]}
    }"#;

    #[test]
    fn the_occlum_format_and_the_extension_parse() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(value(&store, "flask_key"), b"test sample key\n");
        assert_eq!(value(&store, "image_key"), b"a5-6d\n");
        assert_eq!(
            store.get("image_key").unwrap().allow().unwrap(),
            ["app".to_owned()]
        );
        assert!(store.get("flask_key").unwrap().allow().is_none());
    }

    #[test]
    fn replies_are_quoted_by_default_form() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let secret = store.get("flask_key").unwrap();
        assert_eq!(
            secret.reply_text(ReplyForm::Quoted).as_slice(),
            b"\"dGVzdCBzYW1wbGUga2V5Cg==\""
        );
        assert_eq!(
            secret.reply_text(ReplyForm::Bare).as_slice(),
            b"dGVzdCBzYW1wbGUga2V5Cg=="
        );
    }

    #[test]
    fn whitespace_inside_base64_is_ignored_and_not_served() {
        let store = SecretStore::from_json(br#"{"k": "dGVzdCBz\nYW1wbGUga2V5Cg=="}"#).unwrap();
        assert_eq!(
            store
                .get("k")
                .unwrap()
                .reply_text(ReplyForm::Bare)
                .as_slice(),
            b"dGVzdCBzYW1wbGUga2V5Cg=="
        );
    }

    #[test]
    fn invalid_base64_names_the_secret_but_not_the_value() {
        let err = SecretStore::from_json(br#"{"db_password": "hunter2!"}"#).unwrap_err();
        assert!(matches!(&err, SecretsError::NotBase64 { name } if name == "db_password"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn syntax_errors_do_not_echo_values() {
        let err =
            SecretStore::from_json(br#"{"k": {"value": "c2VjcmV0", "bogus": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field \"bogus\""), "{err}");
        assert!(!err.to_string().contains("c2VjcmV0"));
        let err = SecretStore::from_json(br#"{"k": 42}"#).unwrap_err();
        assert!(err.to_string().contains("secret \"k\""), "{err}");
    }

    #[test]
    fn duplicate_and_empty_names_are_rejected() {
        assert!(SecretStore::from_json(br#"{"a": "", "a": ""}"#).is_err());
        assert!(SecretStore::from_json(br#"{"": ""}"#).is_err());
        assert!(SecretStore::from_json(br#"{"a": {"value": "", "value": ""}}"#).is_err());
        assert!(SecretStore::from_json(br#"{"a": {"allow": []}}"#).is_err());
    }

    #[test]
    fn trailing_data_and_non_objects_are_rejected() {
        assert!(SecretStore::from_json(br#"{"a": ""} x"#).is_err());
        assert!(SecretStore::from_json(br#"["a"]"#).is_err());
    }

    #[test]
    fn allow_lists_must_name_policy_entries() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        store.check_allow_lists(["app", "kms"]).unwrap();
        let err = store.check_allow_lists(["kms"]).unwrap_err();
        assert!(
            matches!(&err, SecretsError::UnknownEntry { name, entry } if name == "image_key" && entry == "app")
        );
    }

    #[test]
    fn release_follows_the_allow_list() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let open = store.get("flask_key").unwrap();
        let acl = store.get("image_key").unwrap();
        assert!(open.is_released_to(None));
        assert!(acl.is_released_to(Some("app")));
        assert!(!acl.is_released_to(Some("other")));
        assert!(!acl.is_released_to(None));
    }

    #[test]
    fn debug_shows_names_only() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains("image_key") && !shown.contains("YTUtNmQK"));
    }
}
