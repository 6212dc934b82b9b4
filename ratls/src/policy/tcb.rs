//! The platform part of the policy: accepted DCAP TCB statuses, rejected advisories, and the
//! collateral grace period. `Revoked` cannot be represented as accepted.

use std::fmt;

/// A TCB status a policy may accept, spelled as Intel's TCB Info JSON and dcap-qvl spell it.
/// `Revoked` is deliberately absent: a policy can never accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcbStatus {
    /// The platform is patched.
    UpToDate,
    /// Patched, but software mitigations (for example for LVI) are expected in the enclave.
    SwHardeningNeeded,
    /// Patched, but the platform configuration (for example hyper-threading) needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSwHardeningNeeded,
    /// Microcode or SGX components are missing security updates.
    OutOfDate,
    /// Out of date and misconfigured.
    OutOfDateConfigurationNeeded,
}

impl TcbStatus {
    /// Every acceptable status, in order of decreasing trust.
    pub const ALL: [TcbStatus; 6] = [
        Self::UpToDate,
        Self::SwHardeningNeeded,
        Self::ConfigurationNeeded,
        Self::ConfigurationAndSwHardeningNeeded,
        Self::OutOfDate,
        Self::OutOfDateConfigurationNeeded,
    ];

    /// The status's name in TCB Info JSON (case-sensitive).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
        }
    }

    /// The status called `name` exactly; `None` for `Revoked` and unknown names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy requires of the platform: applied by the verifier after DCAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbPolicy {
    pub(super) statuses: Vec<TcbStatus>,
    pub(super) reject_advisories: Vec<String>,
    pub(super) grace_secs: u64,
}

impl Default for TcbPolicy {
    /// UpToDate only, no advisory list, no grace: the secure default.
    fn default() -> Self {
        Self {
            statuses: vec![TcbStatus::UpToDate],
            reject_advisories: Vec::new(),
            grace_secs: 0,
        }
    }
}

impl TcbPolicy {
    /// True if a platform with this DCAP TCB status (as dcap-qvl reports it) is acceptable.
    /// Always false for `Revoked` and for names this policy does not list.
    pub fn accepts_status(&self, status: &str) -> bool {
        TcbStatus::from_name(status).is_some_and(|s| self.statuses.contains(&s))
    }

    /// The first of the platform's advisory IDs that the policy rejects, if any.
    /// IDs compare case-insensitively.
    pub fn rejected_advisory<'a>(&self, ids: &'a [String]) -> Option<&'a str> {
        ids.iter()
            .find(|id| {
                self.reject_advisories
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(id))
            })
            .map(String::as_str)
    }

    /// Seconds collateral may still be used after its `nextUpdate`.
    pub fn grace_secs(&self) -> u64 {
        self.grace_secs
    }

    /// The accepted statuses, deduplicated, in [`TcbStatus::ALL`] order.
    pub fn accepted_statuses(&self) -> &[TcbStatus] {
        &self.statuses
    }

    /// The rejected advisory IDs, upper case.
    pub fn rejected_advisories(&self) -> &[String] {
        &self.reject_advisories
    }
}
