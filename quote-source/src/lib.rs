//! The one thing the rest of the workspace needs from a quoting platform: [`QuoteSource`], a
//! thing that produces an SGX DCAP quote over caller-chosen report data, and its error.
//!
//! Its own crate, with no dependencies, so that the verifier (`ratls`, which mints RA-TLS
//! certificates from any quote source) links neither the Occlum device code (`occlum-dcap`,
//! ioctls) nor the simulated platform (`sgx-sim`); both of those implement it.

#![forbid(unsafe_code)]

use std::fmt;

/// Something that can produce an SGX DCAP quote (v3) over caller-chosen report data.
///
/// Implemented by `occlum_dcap::OcclumDevice` (Occlum's `/dev/sgx`, real hardware) and by `sgx-sim`'s
/// simulated platform. Callers bind the quote to a key by putting a hash of that key into
/// `report_data`.
pub trait QuoteSource: Send + Sync {
    /// Returns a raw quote whose report body carries exactly `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, QuoteError>;

    /// A short human-readable description for logs, such as `occlum /dev/sgx` or
    /// `SIMULATED platform /path`.
    fn describe(&self) -> String;

    /// True when quotes come from a simulated platform, never from hardware.
    fn is_simulated(&self) -> bool;
}

/// Why a quote could not be produced.
#[derive(Debug)]
#[non_exhaustive]
pub enum QuoteError {
    /// The device or platform could not be opened.
    Unavailable {
        what: String,
        source: std::io::Error,
    },
    /// The quoting enclave stayed busy through every retry.
    Busy { attempts: u32 },
    /// The platform reported a failure; `detail` says which operation and how.
    Platform { detail: String },
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { what, source } => {
                write!(f, "quote source unavailable: {what}: {source}")
            }
            Self::Busy { attempts } => {
                write!(
                    f,
                    "quoting enclave busy: still EBUSY after {attempts} attempts"
                )
            }
            Self::Platform { detail } => write!(f, "quote generation failed: {detail}"),
        }
    }
}

impl std::error::Error for QuoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { source, .. } => Some(source),
            _ => None,
        }
    }
}
