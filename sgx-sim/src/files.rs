//! The platform directory's file layout and bounded, permission-aware file access.
//!
//! Private keys are written with mode 0600 (and re-chmodded if the file existed); every read
//! is capped so a corrupted or hostile directory cannot exhaust memory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::SimError;

/// Platform parameters and the pre-signed QE report (public; JSON).
pub const PLATFORM_JSON: &str = "platform.json";
/// The simulated root CA certificate (its subject says SIMULATED).
pub const ROOT_CA_PEM: &str = "root-ca.pem";
/// The simulated PCK Processor CA certificate.
pub const PCK_CA_PEM: &str = "pck-ca.pem";
/// The PCK leaf certificate with the SGX extension.
pub const PCK_PEM: &str = "pck.pem";
/// The TCB signing certificate (signs TCB info and QE identity).
pub const TCB_SIGNING_PEM: &str = "tcb-signing.pem";
/// PCK leaf, PCK CA, root: the quote's certification data (type 5).
pub const PCK_CHAIN_PEM: &str = "pck-chain.pem";
/// Root CA CRL, DER.
pub const ROOT_CRL_DER: &str = "root-ca.crl";
/// PCK Processor CA CRL, DER.
pub const PCK_CRL_DER: &str = "pck-ca.crl";
/// TCB info as Intel's PCS serves it: `{"tcbInfo":{..},"signature":"<hex r||s>"}`.
pub const TCB_INFO_JSON: &str = "tcb-info.json";
/// QE identity as Intel's PCS serves it: `{"enclaveIdentity":{..},"signature":"<hex>"}`.
pub const QE_IDENTITY_JSON: &str = "qe-identity.json";
/// All collateral in dcap-qvl's `QuoteCollateralV3` JSON form.
pub const COLLATERAL_JSON: &str = "collateral.json";
/// A note for humans that this directory is a simulation.
pub const README_TXT: &str = "README.txt";
/// Private keys (PKCS#8 PEM, mode 0600).
pub const ROOT_CA_KEY: &str = "root-ca.key";
pub const PCK_CA_KEY: &str = "pck-ca.key";
pub const PCK_KEY: &str = "pck.key";
pub const TCB_SIGNING_KEY: &str = "tcb-signing.key";
pub const ATTESTATION_KEY: &str = "attestation.key";

/// Largest platform file read (collateral is about 10 KiB).
pub const MAX_PLATFORM_FILE_LEN: u64 = 1024 * 1024;

/// Reads `path` whole, refusing files over `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, SimError> {
    // Platform files hold simulated keys only: the caller gets a plain buffer, as before.
    let mut bytes = fileio::read_bounded(path, max).map_err(|e| match e {
        fileio::ReadError::Open(source) | fileio::ReadError::Read(source) => SimError::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        },
        fileio::ReadError::TooLarge { max, read } => SimError::TooLarge {
            path: path.to_path_buf(),
            len: read,
            max,
        },
    })?;
    Ok(std::mem::take(&mut *bytes))
}

/// Writes a public file (mode 0644).
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), SimError> {
    write_with_mode(path, contents, 0o644)
}

/// Writes a private file (mode 0600, enforced even if the file existed).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), SimError> {
    write_with_mode(path, contents, 0o600)
}

fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), SimError> {
    let io = |source| SimError::Io {
        what: "writing simulated platform file".to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}
