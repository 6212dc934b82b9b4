//! The one error type of the simulated platform: what failed, on which file, and why.
//!
//! Messages never contain key material: keys are only ever named by their file. `Display`
//! leaves out the underlying cause; walk [`std::error::Error::source`] for the chain.

use std::fmt;
use std::path::PathBuf;

/// Why a simulated-platform operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SimError {
    /// Reading or writing a file of the platform directory failed.
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file of the platform directory did not parse.
    Json {
        what: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A file is larger than the limit for its kind.
    TooLarge { path: PathBuf, len: u64, max: u64 },
    /// A file's content is not what the simulator wrote there.
    Corrupt { path: PathBuf, detail: String },
    /// An enclave identity file is invalid.
    Identity {
        path: PathBuf,
        source: crate::IdentityError,
    },
    /// `create` was pointed at a directory that already holds a platform.
    AlreadyInitialized { path: PathBuf },
    /// An option or argument is out of range or inconsistent.
    InvalidOption { what: &'static str, detail: String },
    /// A key was rejected by the crypto library.
    Key { what: &'static str, detail: String },
    /// Building a certificate or CRL failed.
    Certificate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// An ECDSA signature or random generation failed inside the crypto library.
    Crypto { what: &'static str },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, .. } | Self::Json { what, path, .. } => {
                write!(f, "{what} failed: {}", path.display())
            }
            Self::TooLarge { path, len, max } => write!(
                f,
                "file too large: {}: {len} bytes, at most {max}",
                path.display()
            ),
            Self::Corrupt { path, detail } => {
                write!(
                    f,
                    "simulated platform file is corrupt: {}: {detail}",
                    path.display()
                )
            }
            Self::Identity { path, .. } => {
                write!(f, "reading enclave identity failed: {}", path.display())
            }
            Self::AlreadyInitialized { path } => write!(
                f,
                "refusing to create a simulated platform: {} already holds one",
                path.display()
            ),
            Self::InvalidOption { what, detail } => write!(f, "invalid {what}: {detail}"),
            Self::Key { what, detail } => write!(f, "{what} rejected: {detail}"),
            Self::Certificate { what, .. } => write!(f, "building {what} failed"),
            Self::Crypto { what } => write!(f, "{what} failed in the crypto library"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Json { source, .. } => Some(source),
            Self::Certificate { source, .. } => Some(source),
            Self::Identity { source, .. } => Some(source),
            _ => None,
        }
    }
}
