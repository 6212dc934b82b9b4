//! Policy loading in two stages: a tolerant serde view of Occlum's `ra_config` format (unknown
//! fields allowed), then validation into a [`RaPolicy`]. Every error names the file and the
//! JSON path of the offending field, with what was expected and what was found.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::evaluate::PolicyField;
use super::{
    Checks, MAX_ENTRIES, MAX_GRACE_SECS, MAX_NAME_LEN, MAX_POLICY_LEN, MeasurementEntry, RaPolicy,
    SvnRule, TcbPolicy, TcbStatus,
};

/// Top-level fields this parser reads. Anything else is ignored with a warning, except
/// `other`, which Occlum's documented template carries.
const TOP_LEVEL_FIELDS: [&str; 10] = [
    "verify_mr_enclave",
    "verify_mr_signer",
    "verify_isv_prod_id",
    "verify_isv_svn",
    "verify_config_svn",
    "verify_enclave_debuggable",
    "sgx_mrs",
    "tcb_statuses",
    "reject_advisories",
    "collateral_grace_secs",
];
/// Fields of an `sgx_mrs` entry this parser reads.
const ENTRY_FIELDS: [&str; 8] = [
    "name",
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "isv_svn_min",
    "config_svn",
    "debuggable",
];
/// Longest excerpt of an offending value quoted in an error or warning, in characters.
const MAX_EXCERPT_CHARS: usize = 80;
/// Most warnings kept; the rest are counted in one final line.
const MAX_WARNINGS: usize = 32;

const EXPECTED_SWITCH: &str = "\"on\" or \"off\"";
const EXPECTED_MEASUREMENT: &str = "64 hex digits, or \"\" for unset";
const EXPECTED_U16: &str = "an integer from 0 to 65535";
const EXPECTED_BOOL: &str = "true or false";
const EXPECTED_ENTRIES: &str = "a non-empty list of measurement objects";
const EXPECTED_ENTRY: &str =
    "an object with mr_enclave, mr_signer, isv_prod_id, isv_svn, config_svn, debuggable";
const EXPECTED_ADVISORY: &str = "an advisory ID such as \"INTEL-SA-00615\"";

/// Why a policy did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is larger than [`MAX_POLICY_LEN`].
    TooLarge {
        file: String,
        len: usize,
        max: usize,
    },
    /// Not well-formed JSON, a duplicate key, or JSON of the wrong shape. `line` and `column`
    /// are 1-based, or 0 when the policy came from an already parsed value.
    Json {
        file: String,
        line: usize,
        column: usize,
        detail: String,
    },
    /// A required field is absent (or `null`).
    MissingField {
        file: String,
        path: String,
        expected: &'static str,
    },
    /// A field has a value outside its format.
    InvalidValue {
        file: String,
        path: String,
        expected: String,
        found: String,
    },
    /// `sgx_mrs` has more than [`MAX_ENTRIES`] entries.
    TooManyEntries {
        file: String,
        count: usize,
        max: usize,
    },
    /// Two fields contradict each other (`isv_svn` with `isv_svn_min`, a repeated name).
    Conflict {
        file: String,
        path: String,
        detail: String,
    },
    /// `tcb_statuses` lists `Revoked`, which can never be accepted.
    RevokedAccepted { file: String, path: String },
}

impl PolicyError {
    /// The file (or label) the policy came from.
    pub fn file(&self) -> &str {
        match self {
            Self::TooLarge { file, .. }
            | Self::Json { file, .. }
            | Self::MissingField { file, .. }
            | Self::InvalidValue { file, .. }
            | Self::TooManyEntries { file, .. }
            | Self::Conflict { file, .. }
            | Self::RevokedAccepted { file, .. } => file,
        }
    }

    /// The JSON path of the offending field (`sgx_mrs[1].mr_enclave`), where there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::MissingField { path, .. }
            | Self::InvalidValue { path, .. }
            | Self::Conflict { path, .. }
            | Self::RevokedAccepted { path, .. } => Some(path),
            Self::TooManyEntries { .. } => Some("sgx_mrs"),
            Self::TooLarge { .. } | Self::Json { .. } => None,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { file, len, max } => {
                write!(f, "policy {file} too large: {len} bytes, at most {max}")
            }
            Self::Json {
                file,
                line: 0,
                detail,
                ..
            } => write!(f, "policy {file}: {detail}"),
            Self::Json {
                file,
                line,
                column,
                detail,
            } => {
                write!(
                    f,
                    "policy {file}: invalid JSON at line {line} column {column}: {detail}"
                )
            }
            Self::MissingField {
                file,
                path,
                expected,
            } => {
                write!(f, "policy {file}: {path} is missing: expected {expected}")
            }
            Self::InvalidValue {
                file,
                path,
                expected,
                found,
            } => {
                write!(
                    f,
                    "policy {file}: {path}: expected {expected}, found {found}"
                )
            }
            Self::TooManyEntries { file, count, max } => {
                write!(
                    f,
                    "policy {file}: sgx_mrs has {count} entries, at most {max} are allowed"
                )
            }
            Self::Conflict { file, path, detail } => write!(f, "policy {file}: {path}: {detail}"),
            Self::RevokedAccepted { file, path } => write!(
                f,
                "policy {file}: {path}: \"Revoked\" can never be accepted (a revoked platform's keys may be in anyone's hands)"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Stage one: Occlum's top level as serde sees it. Leaves stay JSON values so that stage two
/// can name the field in every error; unknown fields are ignored.
#[derive(Deserialize)]
struct RawPolicy {
    verify_mr_enclave: Option<Value>,
    verify_mr_signer: Option<Value>,
    verify_isv_prod_id: Option<Value>,
    verify_isv_svn: Option<Value>,
    verify_config_svn: Option<Value>,
    verify_enclave_debuggable: Option<Value>,
    sgx_mrs: Option<Value>,
    tcb_statuses: Option<Value>,
    reject_advisories: Option<Value>,
    collateral_grace_secs: Option<Value>,
}

/// Stage one of an `sgx_mrs` entry.
#[derive(Deserialize)]
struct RawEntry {
    name: Option<Value>,
    mr_enclave: Option<Value>,
    mr_signer: Option<Value>,
    isv_prod_id: Option<Value>,
    isv_svn: Option<Value>,
    isv_svn_min: Option<Value>,
    config_svn: Option<Value>,
    debuggable: Option<Value>,
}

pub(super) fn from_json(bytes: &[u8], file: &str) -> Result<RaPolicy, PolicyError> {
    if bytes.len() > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            file: file.to_owned(),
            len: bytes.len(),
            max: MAX_POLICY_LEN,
        });
    }
    // cJSON, which Occlum uses, skips a UTF-8 byte order mark; so do we.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    serde_json::from_slice::<NoDuplicateKeys>(bytes).map_err(|e| json_error(file, &e))?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| json_error(file, &e))?;
    from_value(&value, file)
}

pub(super) fn from_value(value: &Value, file: &str) -> Result<RaPolicy, PolicyError> {
    let cx = Cx { file };
    let Some(object) = value.as_object() else {
        return Err(cx.invalid(
            "(top level)",
            "a JSON object with verify_* switches and sgx_mrs",
            value,
        ));
    };
    let raw = RawPolicy::deserialize(value).map_err(|e| json_error(file, &e))?;
    let mut warnings = Vec::new();
    unknown_fields(object, None, &TOP_LEVEL_FIELDS, &mut warnings);

    let checks = Checks {
        mr_enclave: cx.switch("verify_mr_enclave", raw.verify_mr_enclave.as_ref())?,
        mr_signer: cx.switch("verify_mr_signer", raw.verify_mr_signer.as_ref())?,
        isv_prod_id: cx.switch("verify_isv_prod_id", raw.verify_isv_prod_id.as_ref())?,
        isv_svn: cx.switch("verify_isv_svn", raw.verify_isv_svn.as_ref())?,
        config_svn: cx.switch("verify_config_svn", raw.verify_config_svn.as_ref())?,
        enclave_debuggable: cx.switch(
            "verify_enclave_debuggable",
            raw.verify_enclave_debuggable.as_ref(),
        )?,
    };
    let entries = cx.entries(raw.sgx_mrs.as_ref(), &mut warnings)?;
    let tcb = TcbPolicy {
        statuses: cx.statuses(raw.tcb_statuses.as_ref())?,
        reject_advisories: cx.advisories(raw.reject_advisories.as_ref())?,
        grace_secs: cx.grace(raw.collateral_grace_secs.as_ref())?,
    };
    warn_about_entries(&checks, &entries, &mut warnings);
    cap_warnings(&mut warnings);
    Ok(RaPolicy {
        source: file.to_owned(),
        checks,
        entries,
        tcb,
        warnings,
    })
}

/// Stage two: validation context (the file name for errors).
struct Cx<'a> {
    file: &'a str,
}

impl Cx<'_> {
    fn switch(&self, path: &str, value: Option<&Value>) -> Result<bool, PolicyError> {
        match value {
            // Fail closed: a forgotten switch checks, it does not skip.
            None => Ok(true),
            Some(Value::String(s)) if s == "on" => Ok(true),
            Some(Value::String(s)) if s == "off" => Ok(false),
            Some(other) => Err(self.invalid(path, EXPECTED_SWITCH, other)),
        }
    }

    fn entries(
        &self,
        value: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<MeasurementEntry>, PolicyError> {
        let Some(value) = value else {
            return Err(self.missing("sgx_mrs", EXPECTED_ENTRIES));
        };
        let Some(list) = value.as_array() else {
            return Err(self.invalid("sgx_mrs", EXPECTED_ENTRIES, value));
        };
        if list.is_empty() {
            return Err(self.invalid("sgx_mrs", EXPECTED_ENTRIES, value));
        }
        if list.len() > MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries {
                file: self.file.to_owned(),
                count: list.len(),
                max: MAX_ENTRIES,
            });
        }
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(list.len());
        for (index, value) in list.iter().enumerate() {
            let entry = self.entry(index, value, warnings)?;
            if let Some(name) = entry.name() {
                if !names.insert(name.to_owned()) {
                    return Err(self.conflict(
                        &format!("sgx_mrs[{index}].name"),
                        format!(
                            "{} names an earlier entry too; names must be unique",
                            excerpt_str(name)
                        ),
                    ));
                }
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn entry(
        &self,
        index: usize,
        value: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<MeasurementEntry, PolicyError> {
        let path = format!("sgx_mrs[{index}]");
        let Some(object) = value.as_object() else {
            return Err(self.invalid(&path, EXPECTED_ENTRY, value));
        };
        unknown_fields(object, Some(&path), &ENTRY_FIELDS, warnings);
        let raw = RawEntry::deserialize(value).map_err(|e| json_error(self.file, &e))?;
        let at = |field: &str| format!("{path}.{field}");

        let exact = self.u16_field(&at("isv_svn"), raw.isv_svn.as_ref())?;
        let min = self.u16_field(&at("isv_svn_min"), raw.isv_svn_min.as_ref())?;
        let isv_svn = match (exact, min) {
            (Some(_), Some(_)) => {
                return Err(self.conflict(
                    &path,
                    "sets both isv_svn (exact) and isv_svn_min (at least); choose one and remove the other"
                        .to_owned(),
                ));
            }
            (Some(v), None) => Some(SvnRule::Exact(v)),
            (None, Some(v)) => Some(SvnRule::AtLeast(v)),
            (None, None) => None,
        };
        Ok(MeasurementEntry {
            name: self.name(&at("name"), raw.name.as_ref())?,
            mr_enclave: self.measurement(&at("mr_enclave"), raw.mr_enclave.as_ref())?,
            mr_signer: self.measurement(&at("mr_signer"), raw.mr_signer.as_ref())?,
            isv_prod_id: self.u16_field(&at("isv_prod_id"), raw.isv_prod_id.as_ref())?,
            isv_svn,
            config_svn: self.u16_field(&at("config_svn"), raw.config_svn.as_ref())?,
            debuggable: self.bool_field(&at("debuggable"), raw.debuggable.as_ref())?,
        })
    }

    fn measurement(
        &self,
        path: &str,
        value: Option<&Value>,
    ) -> Result<Option<[u8; 32]>, PolicyError> {
        let s = match value {
            None => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s,
            Some(other) => return Err(self.invalid(path, EXPECTED_MEASUREMENT, other)),
        };
        if let Some((pos, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(self.invalid_found(
                path,
                EXPECTED_MEASUREMENT,
                format!(
                    "{} (non-hex character {c:?} at position {pos})",
                    excerpt_str(s)
                ),
            ));
        }
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(self.invalid_found(
                path,
                EXPECTED_MEASUREMENT,
                format!("{} ({} hex digits)", excerpt_str(s), s.len()),
            ));
        }
        Ok(Some(out))
    }

    fn u16_field(&self, path: &str, value: Option<&Value>) -> Result<Option<u16>, PolicyError> {
        match value {
            None => Ok(None),
            Some(v) => match v.as_u64().map(u16::try_from) {
                Some(Ok(n)) => Ok(Some(n)),
                _ => Err(self.invalid(path, EXPECTED_U16, v)),
            },
        }
    }

    fn bool_field(&self, path: &str, value: Option<&Value>) -> Result<Option<bool>, PolicyError> {
        match value {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(path, EXPECTED_BOOL, other)),
        }
    }

    fn name(&self, path: &str, value: Option<&Value>) -> Result<Option<String>, PolicyError> {
        match value {
            None => Ok(None),
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control) =>
            {
                Ok(Some(s.clone()))
            }
            Some(other) => Err(self.invalid_found(
                path,
                &format!("a string of 1 to {MAX_NAME_LEN} bytes without control characters"),
                excerpt(other),
            )),
        }
    }

    fn statuses(&self, value: Option<&Value>) -> Result<Vec<TcbStatus>, PolicyError> {
        let Some(value) = value else {
            return Ok(TcbPolicy::default().statuses);
        };
        let expected_list = "a non-empty list of TCB status names";
        let list = match value.as_array() {
            Some(list) if !list.is_empty() => list,
            _ => return Err(self.invalid("tcb_statuses", expected_list, value)),
        };
        let mut statuses = Vec::new();
        for (index, item) in list.iter().enumerate() {
            let path = format!("tcb_statuses[{index}]");
            let status = match item.as_str() {
                Some("Revoked") => {
                    return Err(PolicyError::RevokedAccepted {
                        file: self.file.to_owned(),
                        path,
                    });
                }
                Some(name) => TcbStatus::from_name(name),
                None => None,
            };
            let Some(status) = status else {
                let names: Vec<&str> = TcbStatus::ALL.iter().map(|s| s.as_str()).collect();
                return Err(self.invalid(&path, &format!("one of {}", names.join(", ")), item));
            };
            statuses.push(status);
        }
        statuses.sort_unstable();
        statuses.dedup();
        Ok(statuses)
    }

    fn advisories(&self, value: Option<&Value>) -> Result<Vec<String>, PolicyError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let Some(list) = value.as_array() else {
            return Err(self.invalid("reject_advisories", "a list of advisory IDs", value));
        };
        let mut ids = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            match item.as_str().filter(|s| is_advisory_id(s)) {
                Some(id) => ids.push(id.to_ascii_uppercase()),
                None => {
                    return Err(self.invalid(
                        &format!("reject_advisories[{index}]"),
                        EXPECTED_ADVISORY,
                        item,
                    ));
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn grace(&self, value: Option<&Value>) -> Result<u64, PolicyError> {
        let Some(value) = value else {
            return Ok(0);
        };
        match value.as_u64() {
            Some(secs) if secs <= MAX_GRACE_SECS => Ok(secs),
            _ => Err(self.invalid(
                "collateral_grace_secs",
                &format!("an integer number of seconds from 0 to {MAX_GRACE_SECS}"),
                value,
            )),
        }
    }

    fn missing(&self, path: &str, expected: &'static str) -> PolicyError {
        PolicyError::MissingField {
            file: self.file.to_owned(),
            path: path.to_owned(),
            expected,
        }
    }

    fn invalid(&self, path: &str, expected: &str, found: &Value) -> PolicyError {
        self.invalid_found(path, expected, excerpt(found))
    }

    fn invalid_found(&self, path: &str, expected: &str, found: String) -> PolicyError {
        PolicyError::InvalidValue {
            file: self.file.to_owned(),
            path: path.to_owned(),
            expected: expected.to_owned(),
            found,
        }
    }

    fn conflict(&self, path: &str, detail: String) -> PolicyError {
        PolicyError::Conflict {
            file: self.file.to_owned(),
            path: path.to_owned(),
            detail,
        }
    }
}

/// `INTEL-SA-` (any case) followed by exactly five digits.
fn is_advisory_id(s: &str) -> bool {
    let prefix = "INTEL-SA-";
    match (s.get(..prefix.len()), s.get(prefix.len()..)) {
        (Some(p), Some(digits)) => {
            p.eq_ignore_ascii_case(prefix)
                && digits.len() == 5
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

fn unknown_fields(
    object: &Map<String, Value>,
    parent: Option<&str>,
    known: &[&str],
    warnings: &mut Vec<String>,
) {
    for key in object.keys() {
        if known.contains(&key.as_str()) || (parent.is_none() && key == "other") {
            continue;
        }
        let key = excerpt_str(key);
        warnings.push(match parent {
            Some(parent) => format!("{parent}: unknown field {key} ignored"),
            None => format!("unknown field {key} ignored"),
        });
    }
}

fn warn_about_entries(checks: &Checks, entries: &[MeasurementEntry], warnings: &mut Vec<String>) {
    let identity_checked = PolicyField::ALL
        .iter()
        .any(|f| *f != PolicyField::Debuggable && f.enabled_in(checks));
    if !identity_checked {
        warnings.push(
            "every measurement check is off: any genuine SGX enclave passes this policy".to_owned(),
        );
    } else if !checks.mr_enclave {
        warnings.push(
            "SECURITY: verify_mr_enclave is \"off\": the peer's code is not pinned, so ANY enclave \
             that matches the other fields (for example any enclave signed with the same mr_signer) \
             passes this policy; pin the peer's mr_enclave (`occlum print mrenclave`) and set \
             verify_mr_enclave \"on\""
                .to_owned(),
        );
    }
    for (index, entry) in entries.iter().enumerate() {
        let unset: Vec<&str> = PolicyField::ALL
            .iter()
            .filter(|f| f.enabled_in(checks) && f.is_unset_in(entry))
            .map(|f| f.as_str())
            .collect();
        if !unset.is_empty() {
            warnings.push(format!(
                "sgx_mrs[{index}] can never match: {} unset while checked",
                unset.join(", ")
            ));
        }
        if entry.debuggable == Some(true) && !checks.enclave_debuggable {
            warnings.push(format!(
                "sgx_mrs[{index}].debuggable is true but verify_enclave_debuggable is \"off\": debug enclaves are refused"
            ));
        }
        if matches!(entry.isv_svn, Some(SvnRule::AtLeast(_))) && !checks.isv_svn {
            warnings.push(format!(
                "sgx_mrs[{index}].isv_svn_min is ignored: verify_isv_svn is \"off\""
            ));
        }
    }
}

fn cap_warnings(warnings: &mut Vec<String>) {
    if warnings.len() > MAX_WARNINGS {
        let dropped = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("... and {dropped} more warnings"));
    }
}

/// A serde_json error with its position split out of the message.
fn json_error(file: &str, e: &serde_json::Error) -> PolicyError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let detail = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    PolicyError::Json {
        file: file.to_owned(),
        line,
        column,
        detail,
    }
}

/// A value as JSON text, cut to [`MAX_EXCERPT_CHARS`].
fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    cut(&text)
}

/// A string as a JSON string literal, cut to [`MAX_EXCERPT_CHARS`].
fn excerpt_str(s: &str) -> String {
    excerpt(&Value::String(s.to_owned()))
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((at, _)) => format!("{}...", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// Fails on the first object with a repeated key anywhere in the JSON document `bytes` (a
/// UTF-8 byte order mark is skipped), for files that embed a policy (`init_ra_conf.json`).
pub fn reject_duplicate_keys(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    serde_json::from_slice::<NoDuplicateKeys>(bytes).map(drop)
}

/// Walks any JSON document and fails on the first object with a repeated key. cJSON (Occlum)
/// keeps the first of two equal keys and serde_json the last: a policy must not mean two things.
#[derive(Debug)]
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}",
                    excerpt_str(&key)
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
            seen.insert(key);
        }
        Ok(NoDuplicateKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_ids_need_the_intel_prefix_and_five_digits() {
        assert!(is_advisory_id("INTEL-SA-00615"));
        assert!(is_advisory_id("intel-sa-00615"));
        assert!(!is_advisory_id("INTEL-SA-0615"));
        assert!(!is_advisory_id("INTEL-SA-006155"));
        assert!(!is_advisory_id("INTEL-SA-0061x"));
        assert!(!is_advisory_id("AMD-SB-00615"));
        assert!(!is_advisory_id("INTEL-SA-"));
        assert!(!is_advisory_id("INTEL-SA-ééééé"));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "a".repeat(1000);
        let text = excerpt_str(&long);
        assert!(text.chars().count() <= MAX_EXCERPT_CHARS + 3, "{text}");
        assert!(text.ends_with("..."));
        assert_eq!(excerpt_str("ON"), "\"ON\"");
    }

    #[test]
    fn nested_duplicate_keys_are_found_with_their_position() {
        let json = b"{\"a\": [{\"b\": 1,\n \"b\": 2}]}";
        let e = serde_json::from_slice::<NoDuplicateKeys>(json).unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.to_string().contains("duplicate key \"b\""), "{e}");
        serde_json::from_slice::<NoDuplicateKeys>(b"{\"a\": {\"b\": 1}, \"b\": [1, {\"a\": 2}]}")
            .unwrap();
    }

    #[test]
    fn too_many_warnings_are_summarised() {
        let mut warnings = vec![String::new(); MAX_WARNINGS + 5];
        cap_warnings(&mut warnings);
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(warnings[MAX_WARNINGS], "... and 5 more warnings");
    }
}
