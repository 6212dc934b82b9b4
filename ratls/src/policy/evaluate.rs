//! Matching a report body against the policy: a peer passes if ANY `sgx_mrs` entry matches on
//! every enabled field. A rejection records, per entry, the first failing field with the
//! expected and actual values (hex for measurements, decimal for numbers), never a secret.

use std::fmt;

use super::{Checks, MeasurementEntry, RaPolicy, SvnRule};
use crate::quote::ReportBody;

/// A field of an `sgx_mrs` entry that a `verify_*` switch checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyField {
    MrEnclave,
    MrSigner,
    IsvProdId,
    IsvSvn,
    ConfigSvn,
    Debuggable,
}

impl PolicyField {
    /// Every field, in the order they are checked (Occlum's order).
    pub const ALL: [PolicyField; 6] = [
        Self::MrEnclave,
        Self::MrSigner,
        Self::IsvProdId,
        Self::IsvSvn,
        Self::ConfigSvn,
        Self::Debuggable,
    ];

    /// The entry field's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MrEnclave => "mr_enclave",
            Self::MrSigner => "mr_signer",
            Self::IsvProdId => "isv_prod_id",
            Self::IsvSvn => "isv_svn",
            Self::ConfigSvn => "config_svn",
            Self::Debuggable => "debuggable",
        }
    }

    /// The switch that enables the check.
    pub fn switch(self) -> &'static str {
        match self {
            Self::MrEnclave => "verify_mr_enclave",
            Self::MrSigner => "verify_mr_signer",
            Self::IsvProdId => "verify_isv_prod_id",
            Self::IsvSvn => "verify_isv_svn",
            Self::ConfigSvn => "verify_config_svn",
            Self::Debuggable => "verify_enclave_debuggable",
        }
    }

    pub(super) fn enabled_in(self, checks: &Checks) -> bool {
        match self {
            Self::MrEnclave => checks.mr_enclave,
            Self::MrSigner => checks.mr_signer,
            Self::IsvProdId => checks.isv_prod_id,
            Self::IsvSvn => checks.isv_svn,
            Self::ConfigSvn => checks.config_svn,
            Self::Debuggable => checks.enclave_debuggable,
        }
    }

    pub(super) fn is_unset_in(self, entry: &MeasurementEntry) -> bool {
        match self {
            Self::MrEnclave => entry.mr_enclave.is_none(),
            Self::MrSigner => entry.mr_signer.is_none(),
            Self::IsvProdId => entry.isv_prod_id.is_none(),
            Self::IsvSvn => entry.isv_svn.is_none(),
            Self::ConfigSvn => entry.config_svn.is_none(),
            Self::Debuggable => entry.debuggable.is_none(),
        }
    }

    /// `None` if `body` satisfies `entry` on this field, else what was expected and found.
    fn mismatch(self, entry: &MeasurementEntry, body: &ReportBody) -> Option<(Expected, String)> {
        let (expected, actual, ok) = match self {
            Self::MrEnclave => measurement(entry.mr_enclave.as_ref(), &body.mr_enclave),
            Self::MrSigner => measurement(entry.mr_signer.as_ref(), &body.mr_signer),
            Self::IsvProdId => number(entry.isv_prod_id, body.isv_prod_id),
            Self::ConfigSvn => number(entry.config_svn, body.config_svn),
            Self::IsvSvn => match entry.isv_svn {
                None => (Expected::Unset, body.isv_svn.to_string(), false),
                Some(SvnRule::Exact(v)) => number(Some(v), body.isv_svn),
                Some(SvnRule::AtLeast(v)) => (
                    Expected::AtLeast(v),
                    body.isv_svn.to_string(),
                    body.isv_svn >= v,
                ),
            },
            Self::Debuggable => {
                let actual = body.debuggable();
                let expected = entry
                    .debuggable
                    .map_or(Expected::Unset, |b| Expected::Value(b.to_string()));
                (
                    expected,
                    actual.to_string(),
                    entry.debuggable == Some(actual),
                )
            }
        };
        (!ok).then_some((expected, actual))
    }
}

impl fmt::Display for PolicyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The entry a peer matched: `index` into [`RaPolicy::entries`], and its `name` if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    pub index: usize,
    pub name: Option<String>,
}

/// What an entry expected of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The entry leaves the field unset (`""` or missing) while its check is on: no value can
    /// match.
    Unset,
    /// This exact value (hex for measurements, decimal for numbers, `true`/`false`).
    Value(String),
    /// At least this ISVSVN (`isv_svn_min`).
    AtLeast(u16),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unset => f.write_str("unset"),
            Self::Value(v) => f.write_str(v),
            Self::AtLeast(v) => write!(f, ">= {v}"),
        }
    }
}

/// Why one entry did not match: its first failing field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMismatch {
    index: usize,
    name: Option<String>,
    field: PolicyField,
    expected: Expected,
    actual: String,
}

impl EntryMismatch {
    /// The entry's index in `sgx_mrs`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The entry's `name`, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The first field that failed.
    pub fn field(&self) -> PolicyField {
        self.field
    }

    /// What the entry expected.
    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// The peer's value: lowercase hex for measurements, decimal for numbers, `true`/`false`.
    pub fn actual(&self) -> &str {
        &self.actual
    }
}

impl fmt::Display for EntryMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(name) = &self.name {
            write!(f, " ({name:?})")?;
        }
        match &self.expected {
            Expected::Unset => write!(
                f,
                ": {} is unset in the policy, so {} \"on\" can never match (actual {})",
                self.field,
                self.field.switch(),
                self.actual
            ),
            expected => write!(
                f,
                ": {} expected {expected}, actual {}",
                self.field, self.actual
            ),
        }
    }
}

/// Why a peer's report body did not pass the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRejection {
    /// A debug enclave while `verify_enclave_debuggable` is `"off"`: refused before any entry
    /// is looked at. Carries the peer's identity (hex) for the log.
    DebugEnclave {
        mr_enclave: String,
        mr_signer: String,
    },
    /// No entry matched; one mismatch per entry, in `sgx_mrs` order.
    NoMatch(Vec<EntryMismatch>),
}

impl PolicyRejection {
    /// Each entry's first failing field (empty for [`PolicyRejection::DebugEnclave`]).
    pub fn mismatches(&self) -> &[EntryMismatch] {
        match self {
            Self::NoMatch(m) => m,
            Self::DebugEnclave { .. } => &[],
        }
    }
}

impl fmt::Display for PolicyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DebugEnclave {
                mr_enclave,
                mr_signer,
            } => write!(
                f,
                "debug enclave refused (mr_enclave {mr_enclave}, mr_signer {mr_signer}): \
                 verify_enclave_debuggable is \"off\"; a debug enclave passes only with \
                 verify_enclave_debuggable \"on\" and a matching sgx_mrs entry with \"debuggable\": true"
            ),
            Self::NoMatch(mismatches) => {
                f.write_str("no sgx_mrs entry matched")?;
                for (i, m) in mismatches.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{m}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PolicyRejection {}

pub(super) fn evaluate(
    policy: &RaPolicy,
    body: &ReportBody,
) -> Result<PolicyMatch, PolicyRejection> {
    // Security first: with the switch off, Occlum would accept a debug enclave; we refuse it.
    if body.debuggable() && !policy.checks.enclave_debuggable {
        return Err(PolicyRejection::DebugEnclave {
            mr_enclave: hex::encode(body.mr_enclave),
            mr_signer: hex::encode(body.mr_signer),
        });
    }
    let mut mismatches = Vec::with_capacity(policy.entries.len());
    for (index, entry) in policy.entries.iter().enumerate() {
        let failed = PolicyField::ALL
            .into_iter()
            .filter(|field| field.enabled_in(&policy.checks))
            .find_map(|field| field.mismatch(entry, body).map(|m| (field, m)));
        match failed {
            None => {
                return Ok(PolicyMatch {
                    index,
                    name: entry.name.clone(),
                });
            }
            Some((field, (expected, actual))) => mismatches.push(EntryMismatch {
                index,
                name: entry.name.clone(),
                field,
                expected,
                actual,
            }),
        }
    }
    Err(PolicyRejection::NoMatch(mismatches))
}

fn measurement(expected: Option<&[u8; 32]>, actual: &[u8; 32]) -> (Expected, String, bool) {
    let shown = hex::encode(actual);
    match expected {
        None => (Expected::Unset, shown, false),
        Some(e) => (Expected::Value(hex::encode(e)), shown, e == actual),
    }
}

fn number(expected: Option<u16>, actual: u16) -> (Expected, String, bool) {
    match expected {
        None => (Expected::Unset, actual.to_string(), false),
        Some(e) => (
            Expected::Value(e.to_string()),
            actual.to_string(),
            e == actual,
        ),
    }
}
