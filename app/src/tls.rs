//! The rustls server configuration: certificate chain and private key from PEM files (bounded
//! reads, key bytes zeroized), checked to belong together, TLS 1.2 and 1.3 on the ring provider.
//! Every error names the file and the flag that sets it: that is what failed provisioning
//! looks like from the app's side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// Largest PEM file accepted; a certificate chain or key is a few KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why the TLS configuration could not be built.
#[derive(Debug)]
pub enum TlsSetupError {
    /// The file could not be opened or read.
    Read {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exceeds [`MAX_PEM_BYTES`].
    TooLarge {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
    },
    /// No usable PEM section of the expected kind.
    NoPem {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    /// A PEM section is present but broken.
    BadPem {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The key does not belong to the certificate.
    Mismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the pair for another reason (unsupported key type, bad certificate).
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Read {
                what,
                flag,
                path,
                source,
            } => write!(
                f,
                "cannot read the {what} {} (set with {flag}): {source}",
                path.display()
            ),
            TlsSetupError::TooLarge { what, flag, path } => write!(
                f,
                "the {what} {} (set with {flag}) is larger than {MAX_PEM_BYTES} bytes",
                path.display()
            ),
            TlsSetupError::NoPem {
                what,
                flag,
                path,
                expected,
            } => write!(
                f,
                "the {what} {} (set with {flag}) holds no {expected}",
                path.display()
            ),
            TlsSetupError::BadPem {
                what,
                flag,
                path,
                detail,
            } => write!(
                f,
                "the {what} {} (set with {flag}) is not valid PEM: {detail}",
                path.display()
            ),
            TlsSetupError::Mismatch { cert, key } => write!(
                f,
                "the private key {} (--key) does not match the certificate {} (--cert)",
                key.display(),
                cert.display()
            ),
            TlsSetupError::Rejected { cert, key, detail } => write!(
                f,
                "the certificate {} (--cert) and key {} (--key) cannot be used: {detail}",
                cert.display(),
                key.display()
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {}

const CERT: &str = "certificate";
const KEY: &str = "private key";

/// Builds the server configuration from the two PEM files.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = load_chain(cert_path)?;
    let key = load_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| rejected(cert_path, key_path, &err))?;
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsSetupError::Mismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                }
            }
            other => rejected(cert_path, key_path, &other),
        })?;
    // Only HTTP/1.1 is spoken; clients offering h2 and http/1.1 (curl) pick http/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn rejected(cert: &Path, key: &Path, err: &rustls::Error) -> TlsSetupError {
    TlsSetupError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        detail: err.to_string(),
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_bounded(path, CERT, "--cert")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsSetupError::BadPem {
            what: CERT,
            flag: "--cert",
            path: path.to_owned(),
            detail: err.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoPem {
            what: CERT,
            flag: "--cert",
            path: path.to_owned(),
            expected: "PEM CERTIFICATE section",
        });
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read_bounded(path, KEY, "--key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => TlsSetupError::NoPem {
            what: KEY,
            flag: "--key",
            path: path.to_owned(),
            expected: "PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section",
        },
        // The pem error describes the encoding problem, never key bytes.
        other => TlsSetupError::BadPem {
            what: KEY,
            flag: "--key",
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

/// Reads a whole file of at most [`MAX_PEM_BYTES`]; the buffer is wiped when dropped because
/// it may hold key material.
fn read_bounded(
    path: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<Zeroizing<Vec<u8>>, TlsSetupError> {
    fileio::read_bounded(path, MAX_PEM_BYTES).map_err(|e| match e {
        fileio::ReadError::Open(source) | fileio::ReadError::Read(source) => TlsSetupError::Read {
            what,
            flag,
            path: path.to_owned(),
            source,
        },
        fileio::ReadError::TooLarge { .. } => TlsSetupError::TooLarge {
            what,
            flag,
            path: path.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_kit::{TempDir, temp_dir};

    /// Writes `contents` to `name` in `dir`; returns the path.
    fn file(dir: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = temp_dir("app-tls-ok");
        let (cert, key) = pair();
        let config = server_config(
            &file(&dir, "c.pem", cert.as_bytes()),
            &file(&dir, "k.pem", key.as_bytes()),
        )
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_key_from_another_pair_is_a_mismatch() {
        let dir = temp_dir("app-tls-mismatch");
        let (cert, _) = pair();
        let (_, other_key) = pair();
        let err = server_config(
            &file(&dir, "c.pem", cert.as_bytes()),
            &file(&dir, "k.pem", other_key.as_bytes()),
        )
        .unwrap_err();
        assert!(matches!(err, TlsSetupError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_flag() {
        let dir = temp_dir("app-tls-missing");
        let (_, key) = pair();
        let cert_path = dir.path().join("absent.crt");
        let err = server_config(&cert_path, &file(&dir, "k.pem", key.as_bytes())).unwrap_err();
        assert!(matches!(err, TlsSetupError::Read { flag: "--cert", .. }));
        let text = err.to_string();
        assert!(
            text.contains("absent.crt") && text.contains("--cert"),
            "{text}"
        );
    }

    #[test]
    fn a_key_file_without_a_key_is_rejected() {
        let dir = temp_dir("app-tls-nokey");
        let (cert, _) = pair();
        let cert_path = file(&dir, "c.pem", cert.as_bytes());
        // A certificate where the key should be: a classic copy mistake.
        let err = server_config(&cert_path, &cert_path).unwrap_err();
        assert!(
            matches!(err, TlsSetupError::NoPem { flag: "--key", .. }),
            "{err}"
        );
    }

    #[test]
    fn an_empty_certificate_file_is_rejected() {
        let dir = temp_dir("app-tls-empty");
        let (_, key) = pair();
        let err = server_config(
            &file(&dir, "c.pem", b""),
            &file(&dir, "k.pem", key.as_bytes()),
        )
        .unwrap_err();
        assert!(
            matches!(err, TlsSetupError::NoPem { flag: "--cert", .. }),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_file_is_rejected_without_reading_it_all() {
        let dir = temp_dir("app-tls-large");
        let (_, key) = pair();
        let big = vec![b'A'; MAX_PEM_BYTES as usize + 1];
        let err = server_config(
            &file(&dir, "c.pem", &big),
            &file(&dir, "k.pem", key.as_bytes()),
        )
        .unwrap_err();
        assert!(matches!(err, TlsSetupError::TooLarge { .. }), "{err}");
    }
}
