//! `kms`: the key-management server of the Occlum init-RA flow, and its operator tools.
//!
//! `main` parses the command line, calls [`run`] and maps the outcome to an exit code:
//! 0 success, 1 runtime error (the error chain is printed once to stderr), 2 usage error.

#![forbid(unsafe_code)]

mod admin;
mod admin_client;
mod audit;
mod cli;
mod enclave;
mod fsutil;
mod gate;
mod grpclog;
mod keygen;
mod limits;
mod operators;
mod proto;
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

use crate::cli::{Command, KeySpec};
use crate::seal::{FileKey, Sealer};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("kms: {e}");
            return ExitCode::from(2);
        }
    };
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
        Command::Unseal { key, input, output } => {
            let json = with_sealer(&key, |sealer| sealer.open_file(&input))?;
            fsutil::create_private(&output, &json, false)
                .map_err(|e| format!("writing {}: {e}", output.display()))?;
        }
        Command::GenSealKey { out } => {
            FileKey::generate()?.write_file(&out)?;
        }
        Command::GenCert {
            cn,
            out_cert,
            out_key,
        } => keygen::write_tls_cert(&cn, &out_cert, &out_key)?,
        Command::GenImageKey { out } => keygen::write_image_key(&out)?,
        Command::Admin(cmd) => admin_client::run(*cmd)?,
    }
    Ok(())
}

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
