//! Test support for the workspace's integration tests and benches, one copy of each piece:
//! scratch directories ([`TempDir`], from the `tempfile` crate), starting a server binary and
//! reading the stdout line that says where it listens ([`process`]), the real `kms` binary on
//! a loopback port ([`kms::Kms`]), an in-process HTTP stub for tests that play a PCCS
//! ([`http::serve`]), and a TLS server verifier that accepts anything, for test clients that
//! play an attacker ([`danger::AnyServerCert`]).
//!
//! Dev-only: no shipped binary depends on this crate. Its helpers panic with a message that
//! says what went wrong: in a test, the panic is the failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod danger;
pub mod http;
pub mod kms;
pub mod process;

pub use tempfile::TempDir;

/// A fresh scratch directory under the system's temp dir, named after `tag` (so a leftover
/// one says which test made it), removed with everything in it when dropped.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory for {tag}: {e}"))
}
