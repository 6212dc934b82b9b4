//! `init`: the first process of an Occlum enclave, in Rust. One quote, one RA-TLS client
//! certificate, ONE mutually attested TLS connection to the KMS, every secret over it, then the
//! rootfs is mounted, the secrets are written into it, and the app starts.
//!
//! `main` parses the command line, calls the mode, and turns the result into the exit code
//! documented in [`init::error`]; the error chain is printed once. Nothing here prints a secret.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use init::cli::{self, Command};
use init::error::{InitError, Stage};
use init::modes;
use init::steplog::StepLog;

fn main() -> ExitCode {
    let log = StepLog::new(Instant::now());
    match run(&log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.note(format_args!(
                "FAILED ({:?}, exit {}): {e}",
                e.stage(),
                e.stage().exit_code()
            ));
            ExitCode::from(e.stage().exit_code())
        }
    }
}

fn run(log: &StepLog) -> Result<(), InitError> {
    let command = cli::parse(std::env::args_os().skip(1).collect())
        .map_err(|e| InitError::new(Stage::Usage, "usage", e))?;
    match command {
        Command::Occlum => modes::occlum(log),
        Command::Host(args) => modes::host(*args, log),
        #[cfg(feature = "host-tools")]
        Command::PackImage(args) => modes::pack_image(args, log),
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Command::Version => {
            println!("init {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
