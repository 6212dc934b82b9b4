//! The running configuration: a verifier (trust anchor + collateral + measurement policy) and
//! the secret store, loaded together and swapped together.
//!
//! [`Loader::load`] parses the policy and the secrets and cross-checks them (every `allow`
//! name must be a policy entry name). On SIGHUP a new [`Runtime`] is built the same way and
//! replaces the old one only if everything loaded, so clients see the old configuration or the
//! new one, never a mix.
//!
//! Admin changes (`crate::admin`) are validated by the same [`Loader::assemble`] and, with
//! sealed secrets, persisted by [`Loader::persist_secrets`] / [`Loader::persist_policy`]:
//! the secrets file is rewritten sealed, and a policy set through the API is sealed next to it
//! as `<sealed secrets>.policy`, which then takes the place of the image's `--ra-config` at
//! every load. Each change rewrites one file atomically (temp file, fsync, rename).

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

/// One consistent configuration. Shared parts are `Arc`s so an admin change of the secrets
/// keeps the verifier (and its cache) and a policy change keeps the secrets.
pub struct Runtime {
    pub verifier: Arc<Verifier>,
    pub secrets: Arc<SecretStore>,
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

/// Suffix of the sealed policy an admin set, next to the sealed secrets file.
pub const SEALED_POLICY_SUFFIX: &str = ".policy";

/// Why an admin change could not be persisted.
#[derive(Debug)]
pub enum PersistError {
    /// The KMS reads plain `secret_config.json`: nothing it could write would be read back
    /// sealed at the next start, so writes are refused (names the file).
    PlainSecrets(PathBuf),
    Seal {
        path: PathBuf,
        source: SealError,
    },
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlainSecrets(path) => write!(
                f,
                "admin changes are refused: this KMS reads plain secrets from {} (Occlum's `server` mode), where a change could not be persisted sealed and would be lost at restart; serve sealed secrets (--sealed-secrets FILE with --seal-key-file KEY, or --seal-key enclave|enclave-signer inside Occlum)",
                path.display()
            ),
            Self::Seal { path, source } => write!(f, "writing {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for PersistError {}

impl Loader {
    /// Loads the policy and the secrets and checks them against each other.
    pub fn load(&self) -> Result<Runtime, LoadError> {
        let policy = self.load_policy()?;
        let secrets = self.load_secrets()?;
        let verifier = Verifier::new(self.anchor.clone(), Arc::clone(&self.collateral), policy);
        self.assemble(Arc::new(verifier), Arc::new(secrets))
    }

    /// Cluster mode before the replica holds a verified state: the image's policy and no
    /// secrets (nothing is released before the cluster state is verified anyway).
    pub fn placeholder(&self) -> Result<Runtime, LoadError> {
        let policy = self.load_policy()?;
        let secrets = SecretStore::from_json(b"{}").map_err(|source| LoadError::Secrets {
            path: self.secrets_path().to_owned(),
            source,
        })?;
        self.assemble(Arc::new(self.verifier(policy)), Arc::new(secrets))
    }

    /// The one cross-check of a configuration, for loads, reloads and admin changes: every
    /// `allow` name must be the name of an `sgx_mrs` entry of the policy.
    pub fn assemble(
        &self,
        verifier: Arc<Verifier>,
        secrets: Arc<SecretStore>,
    ) -> Result<Runtime, LoadError> {
        let entry_names = verifier.policy().entries().iter().filter_map(|e| e.name());
        secrets
            .check_allow_lists(entry_names)
            .map_err(|source| LoadError::Secrets {
                path: self.secrets_path().to_owned(),
                source,
            })?;
        Ok(Runtime { verifier, secrets })
    }

    /// A verifier for `policy` with this loader's trust anchor and collateral, as a load makes.
    pub fn verifier(&self, policy: RaPolicy) -> Verifier {
        Verifier::new(self.anchor.clone(), Arc::clone(&self.collateral), policy)
    }

    /// Where admin changes go: the sealed secrets file, or why there is none.
    pub fn check_persistent(&self) -> Result<(), PersistError> {
        match &self.secrets {
            SecretsFile::Plain(path) => Err(PersistError::PlainSecrets(path.clone())),
            _ => Ok(()),
        }
    }

    /// Seals `secrets` over the sealed secrets file (atomically).
    pub fn persist_secrets(&self, secrets: &SecretStore) -> Result<(), PersistError> {
        self.check_persistent()?;
        let path = self.secrets_path().to_owned();
        secrets.persist_with(|json| self.seal_to(&path, json))
    }

    /// Seals policy JSON (already validated) as `<sealed secrets>.policy` (atomically).
    pub fn persist_policy(&self, policy_json: &[u8]) -> Result<(), PersistError> {
        self.check_persistent()?;
        self.seal_to(&self.sealed_policy_path(), policy_json)
    }

    /// `<sealed secrets>.policy`: an admin-set policy, preferred over `ra_config` when present.
    pub fn sealed_policy_path(&self) -> PathBuf {
        let mut path = self.secrets_path().as_os_str().to_owned();
        path.push(SEALED_POLICY_SUFFIX);
        PathBuf::from(path)
    }

    fn seal_to(&self, path: &Path, plaintext: &[u8]) -> Result<(), PersistError> {
        let sealed = self.with_sealer(|sealer| sealer.seal(plaintext));
        sealed
            .and_then(|bytes| crate::seal::write_sealed(path, &bytes))
            .map_err(|source| PersistError::Seal {
                path: path.to_owned(),
                source,
            })
    }

    fn with_sealer<T>(
        &self,
        f: impl FnOnce(&Sealer<'_>) -> Result<T, SealError>,
    ) -> Result<T, SealError> {
        match &self.secrets {
            SecretsFile::SealedWithFile { key, .. } => f(&Sealer::File(key.clone())),
            SecretsFile::SealedWithEnclave { keys, policy, .. } => f(&Sealer::Enclave {
                keys: keys.as_ref(),
                policy: *policy,
            }),
            SecretsFile::Plain(_) => Err(SealError::Io {
                path: self.secrets_path().display().to_string(),
                source: std::io::Error::other("plain secrets are not sealed"),
            }),
        }
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
        // A policy an operator set through the admin API, sealed next to the secrets.
        if !matches!(self.secrets, SecretsFile::Plain(_)) {
            let path = self.sealed_policy_path();
            if path.exists() {
                let json =
                    self.with_sealer(|sealer| sealer.open_file(&path))
                        .map_err(|source| LoadError::Sealed {
                            path: path.clone(),
                            source,
                        })?;
                let label = format!("{} (set through the admin API)", path.display());
                return RaPolicy::from_json(&json, &label).map_err(LoadError::Policy);
            }
        }
        let path = &self.ra_config;
        let bytes =
            fsutil::read_limited(path, MAX_POLICY_LEN).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
        RaPolicy::from_json(&bytes, &path.display().to_string()).map_err(LoadError::Policy)
    }

    /// The secrets from the configured file alone (cluster mode imports them at genesis).
    pub fn load_secrets(&self) -> Result<SecretStore, LoadError> {
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
