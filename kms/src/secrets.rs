//! The secret store: `secret_config.json` parsed once into a validated, zeroize-on-drop map.
//!
//! Format (Occlum's, plus one extension):
//! `{ "name": "<base64>", "other": { "value": "<base64>", "allow": ["entry", …] } }`.
//! A plain string may be read by any verified client; an object's `allow` lists the
//! `sgx_mrs` entry names (policy `name` field) whose enclaves may read it. Guarantees: every
//! value is valid base64 (ASCII whitespace is ignored, as Occlum's decoder ignores it), names
//! are unique and non-empty, and no value ever appears in an error, a log or `Debug`.
//!
//! **Only a [`VerifiedPeer`] unlocks a secret.** The one way to a [`Secret`] is
//! [`SecretStore::release`], which takes the peer the attestation pipeline produced (only
//! `ratls::verify` can construct one) and applies the secret's `allow` list to it. There is no
//! lookup by name alone, so a new caller (the admin API, replicas) cannot hand a value to an
//! unverified party by mistake. Admin edits build a new store ([`SecretStore::with_put`],
//! [`SecretStore::without`]) and persist it through [`SecretStore::persist_with`], which hands
//! the serialized file to a sealing step and returns no value. This file is also the
//! `kms_secrets` library target, so the rule is checked by doctests:
//!
//! ```
//! use kms_secrets::{Denied, Secret, SecretStore};
//! use ratls::verify::VerifiedPeer;
//! fn fetch<'s>(store: &'s SecretStore, peer: &VerifiedPeer) -> Result<&'s Secret, Denied> {
//!     store.release(peer, "image_key")
//! }
//! ```
//!
//! A name alone is not enough:
//!
//! ```compile_fail,E0599
//! use kms_secrets::{Secret, SecretStore};
//! fn fetch<'s>(store: &'s SecretStore) -> Option<&'s Secret> {
//!     store.get("image_key")
//! }
//! ```
//!
//! nor is the map behind it:
//!
//! ```compile_fail,E0616
//! use kms_secrets::{Secret, SecretStore};
//! fn fetch<'s>(store: &'s SecretStore) -> Option<&'s Secret> {
//!     store.secrets.get("image_key")
//! }
//! ```
//!
//! nor a peer made up by the caller (its fields are private to `ratls::verify`):
//!
//! ```compile_fail,E0451
//! use kms_secrets::{Denied, Secret, SecretStore};
//! use ratls::verify::VerifiedPeer;
//! fn fetch<'s>(store: &'s SecretStore, forged: VerifiedPeer) -> Result<&'s Secret, Denied> {
//!     let peer = VerifiedPeer { ..forged };
//!     store.release(&peer, "image_key")
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ratls::verify::VerifiedPeer;
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

/// One secret. No `Debug`, no `Clone`; the value and its encodings are wiped on drop. Only
/// [`SecretStore::release`] hands one out.
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
    fn is_released_to(&self, matched: Option<&str>) -> bool {
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

/// Why [`SecretStore::release`] refused: names the secret and the peer's policy entry, never
/// a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No secret has this name.
    NotFound { name: String },
    /// The secret's `allow` list does not name the `sgx_mrs` entry the peer matched (`entry`
    /// is its name, `None` when the entry is unnamed; `index` is its position).
    NotReleased {
        name: String,
        entry: Option<String>,
        index: usize,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { name } => write!(f, "no secret named {name:?}"),
            Self::NotReleased {
                name,
                entry: Some(entry),
                ..
            } => write!(
                f,
                "secret {name:?} is not released to sgx_mrs entry {entry:?}"
            ),
            Self::NotReleased {
                name,
                entry: None,
                index,
            } => write!(
                f,
                "secret {name:?} is released only to named sgx_mrs entries; the peer matched unnamed entry #{index}"
            ),
        }
    }
}

impl std::error::Error for Denied {}

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

    /// The secret called `name` for `peer`, if its `allow` list admits the `sgx_mrs` entry the
    /// peer matched. The only way to a [`Secret`] (see the module documentation).
    pub fn release(&self, peer: &VerifiedPeer, name: &str) -> Result<&Secret, Denied> {
        let secret = self.secrets.get(name).ok_or_else(|| Denied::NotFound {
            name: name.to_owned(),
        })?;
        let matched = peer.matched();
        if secret.is_released_to(matched.name.as_deref()) {
            Ok(secret)
        } else {
            Err(Denied::NotReleased {
                name: name.to_owned(),
                entry: matched.name.clone(),
                index: matched.index,
            })
        }
    }

    /// Names and `allow` lists (`None`: any verified client), in name order; never values.
    pub fn acls(&self) -> impl Iterator<Item = (&str, Option<&[String]>)> {
        self.secrets
            .iter()
            .map(|(name, secret)| (name.as_str(), secret.allow()))
    }

    /// True if a secret called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    /// A new store: this one with `name` set to `base64` (validated as the file's values are)
    /// and `allow` (`None`: any verified client). The caller checks the `allow` names against
    /// the policy, as a reload does ([`SecretStore::check_allow_lists`]).
    pub fn with_put(
        &self,
        name: &str,
        base64: Zeroizing<String>,
        allow: Option<Vec<String>>,
    ) -> Result<SecretStore, SecretsError> {
        if name.is_empty() {
            return Err(SecretsError::Syntax {
                detail: "a secret has an empty name".into(),
            });
        }
        let secret = decode(
            name,
            RawSecret {
                text: base64,
                allow,
            },
        )?;
        let mut secrets = self.copy();
        secrets.insert(name.to_owned(), secret);
        Ok(SecretStore { secrets })
    }

    /// A new store without `name`; `None` if there is no such secret.
    pub fn without(&self, name: &str) -> Option<SecretStore> {
        let mut secrets = self.copy();
        secrets.remove(name)?;
        Some(SecretStore { secrets })
    }

    /// Serializes the store as `secret_config.json` into a zeroizing buffer and hands it to
    /// `seal`, the step that persists it encrypted. Returns no value: the plaintext lives only
    /// for the call (admin changes use this to rewrite the sealed secrets file).
    pub fn persist_with<E>(&self, seal: impl FnOnce(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let capacity = self
            .secrets
            .iter()
            .map(|(name, s)| {
                let allow: usize = s.allow.iter().flatten().map(|e| e.len() * 6 + 4).sum();
                name.len() * 6 + s.base64.len() + allow + 64
            })
            .sum::<usize>()
            + 4;
        // Sized up front so no reallocation leaves an unwiped copy behind.
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        out.push(b'{');
        for (i, (name, secret)) in self.secrets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'\n');
            json_string(&mut out, name);
            out.extend_from_slice(b": {\"value\": \"");
            // Base64 needs no JSON escaping.
            out.extend_from_slice(secret.base64.as_bytes());
            out.push(b'"');
            if let Some(allow) = &secret.allow {
                out.extend_from_slice(b", \"allow\": [");
                for (j, entry) in allow.iter().enumerate() {
                    if j > 0 {
                        out.extend_from_slice(b", ");
                    }
                    json_string(&mut out, entry);
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"\n}\n");
        seal(&out)
    }

    /// A copy of every entry (values into fresh zeroizing buffers).
    fn copy(&self) -> BTreeMap<String, Secret> {
        self.secrets
            .iter()
            .map(|(name, s)| {
                let secret = Secret {
                    base64: s.base64.clone(),
                    allow: s.allow.clone(),
                };
                (name.clone(), secret)
            })
            .collect()
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// True if there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Appends `text` as a JSON string (names are not secret; serde_json escapes them).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
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
mod tests {
    use std::sync::{Arc, OnceLock};

    use ratls::cert::RaTlsIdentity;
    use ratls::collateral::StaticCollateral;
    use ratls::policy::RaPolicy;
    use ratls::verify::Verifier;
    use sgx_sim::{Identity as SimIdentity, PlatformOptions, SimPlatform, SimQuoteSource};

    use super::*;

    /// One simulated platform and enclave for every test of this module.
    fn sim() -> &'static (Arc<SimPlatform>, SimIdentity, String) {
        static SIM: OnceLock<(Arc<SimPlatform>, SimIdentity, String)> = OnceLock::new();
        SIM.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kms-secrets-{}", std::process::id()));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let platform = Arc::new(SimPlatform::create(&dir, &PlatformOptions::new(now)).unwrap());
            let identity = SimIdentity::random(None).unwrap();
            let source = SimQuoteSource {
                platform: Arc::clone(&platform),
                identity: identity.clone(),
            };
            let pem = RaTlsIdentity::mint(&source).unwrap().cert_pem();
            (platform, identity, pem)
        })
    }

    /// A peer verified by the real pipeline, having matched an `sgx_mrs` entry called `entry`
    /// (unnamed with `None`).
    fn peer(entry: Option<&str>) -> VerifiedPeer {
        let (platform, id, pem) = sim();
        let mut mrs = serde_json::json!({
            "mr_enclave": hex::encode(id.mr_enclave), "mr_signer": hex::encode(id.mr_signer),
            "isv_prod_id": id.isv_prod_id, "isv_svn": id.isv_svn,
            "config_svn": id.config_svn, "debuggable": false });
        if let Some(name) = entry {
            mrs["name"] = name.into();
        }
        let policy = serde_json::json!({
            "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [mrs] });
        let verifier = Verifier::new(
            ratls::danger::simulated_root(platform.root_ca_der().to_vec(), "test".into()),
            Arc::new(StaticCollateral::new(platform.collateral(), "sim")),
            RaPolicy::from_json(policy.to_string().as_bytes(), "policy").unwrap(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        verifier
            .verify_certificate_pem(pem.as_bytes(), now)
            .unwrap()
    }

    fn get<'s>(store: &'s SecretStore, name: &str) -> &'s Secret {
        store.release(&peer(Some("app")), name).unwrap()
    }

    fn value(store: &SecretStore, name: &str) -> Vec<u8> {
        STANDARD
            .decode(get(store, name).reply_text(ReplyForm::Bare).as_slice())
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
            get(&store, "image_key").allow().unwrap(),
            ["app".to_owned()]
        );
        assert!(get(&store, "flask_key").allow().is_none());
    }

    #[test]
    fn replies_are_quoted_by_default_form() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let secret = get(&store, "flask_key");
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
            get(&store, "k").reply_text(ReplyForm::Bare).as_slice(),
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
        let (app, other, unnamed) = (peer(Some("app")), peer(Some("other")), peer(None));
        for p in [&app, &other, &unnamed] {
            assert!(
                store.release(p, "flask_key").is_ok(),
                "no allow list: any peer"
            );
        }
        assert!(store.release(&app, "image_key").is_ok());
        assert_eq!(
            store.release(&other, "image_key").err().unwrap(),
            Denied::NotReleased {
                name: "image_key".into(),
                entry: Some("other".into()),
                index: 0
            }
        );
        let err = store.release(&unnamed, "image_key").err().unwrap();
        assert!(matches!(
            err,
            Denied::NotReleased {
                entry: None,
                index: 0,
                ..
            }
        ));
        assert!(err.to_string().contains("unnamed entry #0"), "{err}");
        assert_eq!(
            store.release(&app, "nope").err().unwrap(),
            Denied::NotFound {
                name: "nope".into()
            }
        );
    }

    #[test]
    fn edits_make_new_stores_and_persist_as_the_file_format() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let put = store
            .with_put(
                "new \"one\"",
                Zeroizing::new("bmV3\n".into()),
                Some(vec!["app".into()]),
            )
            .unwrap();
        assert_eq!(store.len(), 3, "the old store is unchanged");
        assert_eq!(put.len(), 4);
        assert_eq!(value(&put, "new \"one\""), b"new");
        let removed = put.without("flask_key").unwrap();
        assert!(!removed.contains("flask_key") && removed.contains("image_key"));
        assert!(put.without("missing").is_none());
        let err = store
            .with_put("x", Zeroizing::new("not base64!".into()), None)
            .err()
            .unwrap();
        assert!(matches!(err, SecretsError::NotBase64 { ref name } if name == "x"));
        // The persisted document parses back to the same names, values and allow lists.
        let mut doc = Vec::new();
        removed
            .persist_with(|json| {
                doc = json.to_vec();
                Ok::<(), ()>(())
            })
            .unwrap();
        let back = SecretStore::from_json(&doc).unwrap();
        assert_eq!(
            back.acls().collect::<Vec<_>>(),
            removed.acls().collect::<Vec<_>>()
        );
        assert_eq!(value(&back, "new \"one\""), b"new");
        assert_eq!(value(&back, "image_key"), b"a5-6d\n");
    }

    #[test]
    fn debug_shows_names_only() {
        let store = SecretStore::from_json(SEED.as_bytes()).unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains("image_key") && !shown.contains("YTUtNmQK"));
    }
}
