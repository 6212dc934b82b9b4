//! The running configuration: a verifier (trust anchor + collateral + measurement policy) and
//! the secret store, loaded together and swapped together.
//!
//! [`Loader::load`] parses the policy and the secrets and cross-checks them (every `allow`
//! name must be a policy entry name). On SIGHUP a new [`Runtime`] is built the same way and
//! replaces the old one only if everything loaded, so clients see the old configuration or the
//! new one, never a mix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ratls::collateral::CollateralSource;
use ratls::policy::{MAX_POLICY_LEN, PolicyError, RaPolicy};
use ratls::verify::{TrustAnchor, Verifier};
use zeroize::Zeroizing;

use crate::fsutil;
use crate::seal::{EnclaveKeys, EnclavePolicy, FileKey, SealError, Sealer};
use crate::secrets::{MAX_SECRETS_FILE_LEN, SecretStore, SecretsError};

/// One consistent configuration.
pub struct Runtime {
    pub verifier: Verifier,
    pub secrets: SecretStore,
}

/// Where the secrets are read from, with any key needed to open them kept in memory so a
/// reload does not depend on the key file still being there.
pub enum SecretsFile {
    Plain(PathBuf),
    SealedWithFile {
        path: PathBuf,
        key: FileKey,
    },
    SealedWithEnclave {
        path: PathBuf,
        keys: Box<dyn EnclaveKeys + Send + Sync>,
        policy: EnclavePolicy,
    },
}

/// Builds [`Runtime`]s from the configured files.
pub struct Loader {
    pub ra_config: PathBuf,
    pub secrets: SecretsFile,
    pub anchor: TrustAnchor,
    pub collateral: Arc<dyn CollateralSource>,
}

/// Why a configuration was not loaded.
#[derive(Debug)]
pub enum LoadError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The policy file does not parse or validate (the error names the file and field).
    Policy(PolicyError),
    Sealed {
        path: PathBuf,
        source: SealError,
    },
    Secrets {
        path: PathBuf,
        source: SecretsError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            Self::Policy(e) => write!(f, "{e}"),
            Self::Sealed { path, source } => write!(f, "opening {}: {source}", path.display()),
            Self::Secrets { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Sealed { source, .. } => Some(source),
            Self::Secrets { source, .. } => Some(source),
            Self::Policy(e) => Some(e),
        }
    }
}

impl Loader {
    /// Loads the policy and the secrets and checks them against each other.
    pub fn load(&self) -> Result<Runtime, LoadError> {
        let policy = self.load_policy()?;
        let secrets = self.load_secrets()?;
        let entry_names = policy.entries().iter().filter_map(|e| e.name());
        secrets
            .check_allow_lists(entry_names)
            .map_err(|source| LoadError::Secrets {
                path: self.secrets_path().to_owned(),
                source,
            })?;
        let verifier = Verifier::new(self.anchor.clone(), Arc::clone(&self.collateral), policy);
        Ok(Runtime { verifier, secrets })
    }

    /// The secrets file's path, for messages.
    pub fn secrets_path(&self) -> &Path {
        match &self.secrets {
            SecretsFile::Plain(path)
            | SecretsFile::SealedWithFile { path, .. }
            | SecretsFile::SealedWithEnclave { path, .. } => path,
        }
    }

    fn load_policy(&self) -> Result<RaPolicy, LoadError> {
        let path = &self.ra_config;
        let bytes =
            fsutil::read_limited(path, MAX_POLICY_LEN).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
        RaPolicy::from_json(&bytes, &path.display().to_string()).map_err(LoadError::Policy)
    }

    fn load_secrets(&self) -> Result<SecretStore, LoadError> {
        let path = self.secrets_path().to_owned();
        let json: Zeroizing<Vec<u8>> =
            match &self.secrets {
                SecretsFile::Plain(path) => fsutil::read_limited(path, MAX_SECRETS_FILE_LEN)
                    .map_err(|source| LoadError::Read {
                        path: path.clone(),
                        source,
                    })?,
                SecretsFile::SealedWithFile { path, key } => {
                    let sealer = Sealer::File(key.clone());
                    sealer.open_file(path).map_err(|source| LoadError::Sealed {
                        path: path.clone(),
                        source,
                    })?
                }
                SecretsFile::SealedWithEnclave { path, keys, policy } => {
                    let sealer = Sealer::Enclave {
                        keys: keys.as_ref(),
                        policy: *policy,
                    };
                    sealer.open_file(path).map_err(|source| LoadError::Sealed {
                        path: path.clone(),
                        source,
                    })?
                }
            };
        SecretStore::from_json(&json).map_err(|source| LoadError::Secrets { path, source })
    }
}
