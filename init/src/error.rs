//! init's failure type: which stage failed (that decides the exit code) and why.
//!
//! Exit codes (stable, documented in `init --help` and the README):
//!
//! | code | stage |
//! |---|---|
//! | 0 | success (Occlum mode: rootfs mounted and secrets written; host mode without an app) |
//! | 1 | internal error |
//! | 2 | usage: bad command line |
//! | 3 | config: `init_ra_conf.json`, `image_config.json`, collateral settings |
//! | 4 | quote: the platform could not produce a quote / RA-TLS certificate |
//! | 5 | unreachable: no connection to the KMS before the deadline, or its calls timed out |
//! | 6 | attestation: the KMS failed attestation or the policy (not retried) |
//! | 7 | secrets: the KMS refused a secret, or sent one that is malformed |
//! | 8 | mount: the rootfs could not be mounted / unpacked (wrong key, tampered image) |
//! | 9 | write: a secret could not be written into the rootfs |
//! | 10 | handover: the app could not be started (host mode) |
//! | 11 | pack-image failed |
//!
//! Messages never contain secret values: every source error in this crate is built from
//! names, paths, sizes and verdicts only.

use std::fmt;

/// The stage a failure belongs to; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Internal = 1,
    Usage = 2,
    Config = 3,
    Quote = 4,
    Unreachable = 5,
    Attestation = 6,
    Secrets = 7,
    Mount = 8,
    Write = 9,
    Handover = 10,
    Pack = 11,
}

impl Stage {
    /// The process exit code for this stage.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// A failure of init: the stage, what was being done, and the cause.
#[derive(Debug)]
pub struct InitError {
    stage: Stage,
    context: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl InitError {
    /// A failure with a cause.
    pub fn new(
        stage: Stage,
        context: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            stage,
            context: context.into(),
            cause: Some(cause.into()),
        }
    }

    /// A failure described by its context alone.
    pub fn msg(stage: Stage, context: impl Into<String>) -> Self {
        Self {
            stage,
            context: context.into(),
            cause: None,
        }
    }

    /// The failing stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }
}

impl fmt::Display for InitError {
    /// The context, then the cause's own message (each error type in this crate describes
    /// itself completely, so the chain is printed once, not walked).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InitError {}
