//! `kms`: the key-management server of the Occlum init-RA flow, and its operator tools.
//!
//! `main` parses the command line, calls [`run`] and maps the outcome to an exit code:
//! 0 success, 1 runtime error (the error chain is printed once to stderr), 2 usage error,
//! 3 `kms audit verify` read the log and found its chain broken.

#![forbid(unsafe_code)]

mod admin;
// `kms admin`, the operator's client: a host tool, not in the KMS built for Occlum.
#[cfg(feature = "host-tools")]
mod admin_client;
mod audit;
mod cli;
mod cluster;
mod compat;
mod enclave;
mod fsutil;
mod gate;
mod grpclog;
mod health;
#[cfg(feature = "host-tools")]
mod keygen;
mod limits;
mod metrics;
mod operators;
mod rotation;
mod runtime;
mod seal;
mod server;
mod service;
mod timefmt;

// The secret store is the `kms_secrets` library target (src/secrets.rs), so its release rule
// is checked by doctests; the modules here reach it as `crate::secrets`.
use kms_secrets as secrets;

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::Command;
#[cfg(feature = "host-tools")]
use crate::cli::KeySpec;
#[cfg(feature = "host-tools")]
use crate::seal::{FileKey, Sealer};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("kms: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::AuditVerify { path } = &command {
        return audit_verify(path);
    }
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms: {}", chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// Runs one validated command.
fn run(command: Command) -> Result<(), Box<dyn Error>> {
    match command {
        Command::Help => print!("{}", cli::USAGE),
        Command::Version => println!("kms {}", env!("CARGO_PKG_VERSION")),
        Command::Serve(cfg) => server::serve(&cfg)?,
        #[cfg(feature = "host-tools")]
        Command::Seal { key, input, output } => {
            let json = fsutil::read_limited(&input, secrets::MAX_SECRETS_FILE_LEN)
                .map_err(|e| format!("reading {}: {e}", input.display()))?;
            // Refuse to seal something the server would refuse to load.
            secrets::SecretStore::from_json(&json)
                .map_err(|e| format!("{}: {e}", input.display()))?;
            let sealed = with_sealer(&key, |sealer| sealer.seal(&json))?;
            seal::write_sealed(&output, &sealed)?;
            eprintln!("kms: sealed {} into {}", input.display(), output.display());
        }
        #[cfg(feature = "host-tools")]
        Command::Unseal { key, input, output } => {
            let json = with_sealer(&key, |sealer| sealer.open_file(&input))?;
            fsutil::create_private(&output, &json, false)
                .map_err(|e| format!("writing {}: {e}", output.display()))?;
        }
        #[cfg(feature = "host-tools")]
        Command::GenSealKey { out } => {
            FileKey::generate()?.write_file(&out)?;
        }
        #[cfg(feature = "host-tools")]
        Command::GenCert {
            cn,
            out_cert,
            out_key,
        } => keygen::write_tls_cert(&cn, &out_cert, &out_key)?,
        #[cfg(feature = "host-tools")]
        Command::GenImageKey { out } => keygen::write_image_key(&out)?,
        #[cfg(feature = "host-tools")]
        Command::Admin(cmd) => admin_client::run(*cmd)?,
        // `main` runs it through `audit_verify`, which has its own exit code (3).
        Command::AuditVerify { path } => {
            let report = audit::verify(std::io::BufReader::new(
                std::fs::File::open(&path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?,
            ))?;
            println!("{}: intact: {} records", path.display(), report.records);
        }
    }
    Ok(())
}

/// `kms audit verify FILE`: 0 intact, 1 unreadable, 3 the chain breaks (the first break named).
fn audit_verify(path: &Path) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("kms: audit verify: opening {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    match audit::verify(std::io::BufReader::new(file)) {
        Ok(report) => {
            println!(
                "{}: intact: {} records in {} chains; last seq {}, last line's SHA-256 {} \
                 (a cut tail is not detectable from the file alone: compare with a copy of these)",
                path.display(),
                report.records,
                report.chains,
                report.last_seq,
                report.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(e) if matches!(e.kind, audit::ChainBreak::Read(_)) => {
            eprintln!("kms: audit verify: {}: {e}", path.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("kms: audit verify: {}: chain broken at {e}", path.display());
            ExitCode::from(3)
        }
    }
}

#[cfg(feature = "host-tools")]
fn with_sealer<T>(
    key: &KeySpec,
    f: impl FnOnce(&Sealer<'_>) -> Result<T, seal::SealError>,
) -> Result<T, Box<dyn Error>> {
    match key {
        KeySpec::File(path) => Ok(f(&Sealer::File(read_key(path)?))?),
        KeySpec::Enclave(policy) => {
            let keys = enclave::OcclumEnclaveKeys::open()?;
            Ok(f(&Sealer::Enclave {
                keys: &keys,
                policy: *policy,
            })?)
        }
    }
}

#[cfg(feature = "host-tools")]
fn read_key(path: &Path) -> Result<FileKey, seal::SealError> {
    FileKey::read_file(path)
}

/// "outer: inner: innermost", skipping sources whose text the outer message already contains.
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
