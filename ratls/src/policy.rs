//! The measurement policy (`ra_config` / `dynamic_config.json`): which enclaves may connect.
//!
//! A policy is parsed once ([`RaPolicy::from_json`], [`RaPolicy::from_value`]) into a validated
//! value; every error names the file, the JSON path of the field, what was expected and what was
//! found. [`RaPolicy::evaluate`] then decides a peer's report body: it passes if ANY `sgx_mrs`
//! entry matches on every enabled field, and a rejection lists each entry's first failing field.
//!
//! # Format
//!
//! Occlum's format (`ra_config_template.json`, `dynamic_config.json`, the `ra_config` object in
//! `init_ra_conf.json`), unchanged templates included:
//!
//! | field | value |
//! |---|---|
//! | `verify_mr_enclave`, `verify_mr_signer`, `verify_isv_prod_id`, `verify_isv_svn`, `verify_config_svn`, `verify_enclave_debuggable` | exactly `"on"` or `"off"`; a missing switch is `"on"` (fail closed) |
//! | `sgx_mrs` | required, 1 to [`MAX_ENTRIES`] entries (objects) |
//! | `sgx_mrs[i].mr_enclave`, `.mr_signer` | 64 hex digits (either case), or `""` for unset |
//! | `sgx_mrs[i].isv_prod_id`, `.isv_svn`, `.config_svn` | integer 0..=65535 |
//! | `sgx_mrs[i].debuggable` | `true` or `false` |
//!
//! Extensions (optional, ours):
//!
//! | field | value |
//! |---|---|
//! | `sgx_mrs[i].name` | a unique label (1..=[`MAX_NAME_LEN`] bytes, no control characters); secrets' `allow` lists name entries |
//! | `sgx_mrs[i].isv_svn_min` | integer 0..=65535: with `verify_isv_svn` on, the peer's isv_svn must be at least this; an entry sets `isv_svn` or `isv_svn_min`, never both |
//! | `tcb_statuses` | non-empty list of accepted DCAP TCB statuses (see [`TcbStatus`]); default `["UpToDate"]`; `"Revoked"` is refused |
//! | `reject_advisories` | list of `INTEL-SA-NNNNN` IDs; a platform affected by one is rejected |
//! | `collateral_grace_secs` | seconds collateral may be used past its `nextUpdate`, 0..=[`MAX_GRACE_SECS`]; default 0 |
//!
//! Unknown fields are tolerated (Occlum's README template carries `"other": []`) and listed in
//! [`RaPolicy::warnings`]. A JSON `null` counts as a missing field.
//!
//! An entry field that is missing or `""` is *unset*. An enabled check against an unset field
//! can never match, and the rejection says so; the policy still loads, because Occlum's
//! templates ship exactly like that (all checks on, all measurements empty) to be filled in.
//!
//! # Where this deliberately differs from Occlum
//!
//! Occlum's C++ verifier (`grpc_ratls`, `parse_sgx_config_json` and
//! `verify_measurement_internal`) is lenient in ways that can silently weaken a policy. Here:
//!
//! - **Debug enclaves.** A debug enclave's memory is readable by the host, so it is accepted
//!   ONLY when `verify_enclave_debuggable` is `"on"` and the matching entry says
//!   `"debuggable": true`. With the switch `"off"`, Occlum accepts debug and production enclaves
//!   alike; we still refuse debug enclaves and name the knob (so Occlum's default
//!   `init_ra_conf.json`, all switches off, refuses a debug KMS). Production enclaves with the
//!   switch `"on"` must match an entry with `"debuggable": false`, exactly as in Occlum.
//! - **Switch spelling.** Occlum compares a prefix of `"on"`, so `""`, `"o"` and `"onward"` mean
//!   on and `"ON"`, `"yes"`, `true` silently mean off. We accept exactly `"on"` and `"off"`.
//! - **Missing fields.** A missing switch crashes Occlum's server; here it is `"on"`. A missing
//!   or empty `sgx_mrs` makes Occlum reject every peer; here it is a load error.
//! - **Measurements.** Occlum turns `""` into 32 zero bytes and stops at the first bad hex
//!   digit, keeping what it parsed; here wrong lengths and non-hex are load errors and `""` is
//!   unset (never matches).
//! - **Numbers.** Occlum truncates to 16 bits; here values outside 0..=65535 are load errors.
//! - **Entry count.** Occlum silently ignores entries after the 16th; here up to
//!   [`MAX_ENTRIES`] are honoured and more are a load error.
//! - **Duplicate keys.** cJSON keeps the first, serde_json the last; [`RaPolicy::from_json`]
//!   refuses the file instead.

mod evaluate;
mod parse;
mod tcb;

use std::fmt;

pub use evaluate::{EntryMismatch, Expected, PolicyField, PolicyMatch, PolicyRejection};
pub use parse::{PolicyError, reject_duplicate_keys};
pub use tcb::{TcbPolicy, TcbStatus};

/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_LEN: usize = 1024 * 1024;
/// Most `sgx_mrs` entries a policy may have.
pub const MAX_ENTRIES: usize = 256;
/// Longest entry `name`, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest `collateral_grace_secs`: 30 days. Longer would trust revocation data that old.
pub const MAX_GRACE_SECS: u64 = 30 * 24 * 60 * 60;

/// A validated measurement policy. Built only by [`RaPolicy::from_json`] or
/// [`RaPolicy::from_value`]; immutable afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaPolicy {
    source: String,
    checks: Checks,
    entries: Vec<MeasurementEntry>,
    tcb: TcbPolicy,
    warnings: Vec<String>,
}

/// Which `verify_*` switches are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// `verify_mr_enclave`
    pub mr_enclave: bool,
    /// `verify_mr_signer`
    pub mr_signer: bool,
    /// `verify_isv_prod_id`
    pub isv_prod_id: bool,
    /// `verify_isv_svn`
    pub isv_svn: bool,
    /// `verify_config_svn`
    pub config_svn: bool,
    /// `verify_enclave_debuggable`
    pub enclave_debuggable: bool,
}

/// One `sgx_mrs` entry. `None` means unset: an enabled check against it never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementEntry {
    name: Option<String>,
    mr_enclave: Option<[u8; 32]>,
    mr_signer: Option<[u8; 32]>,
    isv_prod_id: Option<u16>,
    isv_svn: Option<SvnRule>,
    config_svn: Option<u16>,
    debuggable: Option<bool>,
}

/// How an entry constrains `isv_svn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvnRule {
    /// `isv_svn`: exactly this value (Occlum).
    Exact(u16),
    /// `isv_svn_min`: this value or higher (extension).
    AtLeast(u16),
}

impl RaPolicy {
    /// Parses a policy file's bytes. `source` names the file in error messages.
    ///
    /// Refuses input over [`MAX_POLICY_LEN`], malformed JSON (with line and column) and
    /// duplicate keys, then validates as [`RaPolicy::from_value`] does.
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self, PolicyError> {
        parse::from_json(bytes, source)
    }

    /// Validates a policy already parsed as JSON, such as the `ra_config` object embedded in
    /// `init_ra_conf.json`. `source` names it in error messages.
    pub fn from_value(value: &serde_json::Value, source: &str) -> Result<Self, PolicyError> {
        parse::from_value(value, source)
    }

    /// Decides whether an enclave with this report body passes the policy.
    ///
    /// A debug enclave is refused outright unless `verify_enclave_debuggable` is on; otherwise
    /// the first entry that matches on every enabled field wins.
    pub fn evaluate(
        &self,
        body: &crate::quote::ReportBody,
    ) -> Result<PolicyMatch, PolicyRejection> {
        evaluate::evaluate(self, body)
    }

    /// The file name or label the policy was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `verify_*` switches.
    pub fn checks(&self) -> Checks {
        self.checks
    }

    /// The `sgx_mrs` entries, in file order (a [`PolicyMatch::index`] indexes this).
    pub fn entries(&self) -> &[MeasurementEntry] {
        &self.entries
    }

    /// The entry called `name`, with its index. Names are unique within a policy.
    pub fn entry_named(&self, name: &str) -> Option<(usize, &MeasurementEntry)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.name() == Some(name))
    }

    /// The platform (TCB) part of the policy.
    pub fn tcb(&self) -> &TcbPolicy {
        &self.tcb
    }

    /// Things that load but probably do not do what the author meant (unknown fields, entries
    /// that can never match, switches that make a field irrelevant). Log them at startup.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl fmt::Display for RaPolicy {
    /// One line for a startup log: what is checked, how many entries, which TCB statuses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = PolicyField::ALL
            .iter()
            .filter(|field| field.enabled_in(&self.checks))
            .map(|field| field.as_str())
            .collect();
        let checked = if on.is_empty() {
            "nothing".to_owned()
        } else {
            on.join(", ")
        };
        let statuses: Vec<&str> = self
            .tcb
            .accepted_statuses()
            .iter()
            .map(|s| s.as_str())
            .collect();
        write!(
            f,
            "policy {}: checks {checked}; {} sgx_mrs entries; debug enclaves {}; tcb statuses {}; collateral grace {} s",
            self.source,
            self.entries.len(),
            if self.checks.enclave_debuggable {
                "only where an entry allows them"
            } else {
                "refused"
            },
            statuses.join(", "),
            self.tcb.grace_secs(),
        )
    }
}

impl MeasurementEntry {
    /// The entry's `name`, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Expected MRENCLAVE, unless unset.
    pub fn mr_enclave(&self) -> Option<&[u8; 32]> {
        self.mr_enclave.as_ref()
    }

    /// Expected MRSIGNER, unless unset.
    pub fn mr_signer(&self) -> Option<&[u8; 32]> {
        self.mr_signer.as_ref()
    }

    /// Expected ISVPRODID, unless unset.
    pub fn isv_prod_id(&self) -> Option<u16> {
        self.isv_prod_id
    }

    /// The ISVSVN rule (`isv_svn` exact or `isv_svn_min`), unless unset.
    pub fn isv_svn(&self) -> Option<SvnRule> {
        self.isv_svn
    }

    /// Expected CONFIGSVN, unless unset.
    pub fn config_svn(&self) -> Option<u16> {
        self.config_svn
    }

    /// Expected debug attribute, unless unset.
    pub fn debuggable(&self) -> Option<bool> {
        self.debuggable
    }
}
