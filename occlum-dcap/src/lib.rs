//! Occlum's `/dev/sgx` DCAP interface and `SYS_MOUNT_FS`, behind a safe API.
//!
//! This is the only crate in the workspace that contains `unsafe`, all of it in the private
//! `sys` module: `#[repr(C)]` argument structs, the ioctl request numbers and thin wrappers
//! around `ioctl(2)`, `uname(2)`, `syscall(363, ..)` and glibc's `malloc_trim`. Everything above it sees
//! [`QuoteSource`], which the simulated platform (`sgx-sim`) implements too, so the KMS and
//! init run the same code with or without SGX.
//!
//! - [`OcclumDevice`]: `/dev/sgx` — quote size, quote generation (bounded retry on `EBUSY`),
//!   supplemental size, Intel's quote verification, EGETKEY ([`KeyRequest`]).
//! - [`mount_rootfs`]: `SYS_MOUNT_FS`, guarded by [`is_occlum`].
//!
//! # Provenance and testing
//!
//! Written against Occlum's source at commit `690d5dbf34f3b08e4b5e48e16ce16231550e78c4`
//! (`v0.31.0-9-g690d5dbf`, 2025-06-12): `src/libos/src/fs/dev_fs/dev_sgx/{mod,consts}.rs`,
//! `src/libos/src/fs/file_ops/ioctl/non_builtin.rs`, `src/libos/src/fs/syscalls.rs`
//! (`do_mount_rootfs`), `src/libos/src/fs/fs_ops/mount.rs`, `src/libos/src/config.rs`
//! (`user_rootfs_config`), `src/libos/src/misc/uname.rs`, `tools/toolchains/dcap_lib`,
//! `tools/init`, `tools/init_grpc_ratls` and `test/ioctl/main.c`; `sgx_key_request_t` from
//! Intel's SGX SDK `sgx_key.h`.
//!
//! **Untested on hardware.** No SGX machine or Occlum runtime was available: the tests pin
//! every request number (checked against an independent `_IOR`/`_IOWR` implementation),
//! every struct size and field offset, the key-request encoding, the retry and size-limit
//! logic, and the behaviour outside Occlum (clear `Unavailable`/`NotOcclum` errors, no
//! syscall 363). They cannot show that the LibOS answers as its source says.
//!
//! # Errors as Occlum reports them
//!
//! Inside the LibOS, `GEN_DCAP_QUOTE` fails with `EBUSY` (quoting enclave busy), `EIO` (DCAP
//! not initialised) or `EINVAL` (buffer too small). But `DevSgx::io_control` maps every
//! failure to `FsError::IOCTLError`, which reaches user space as `EINVAL`; on Occlum up to
//! at least 0.31 the app therefore only ever sees `EINVAL` ([`DeviceError::Rejected`]). The
//! `EBUSY` retry and `EIO` mapping are kept for LibOS versions that pass the errno through.

use std::fmt;

mod device;
mod key;
mod mount;
mod sys;

pub use device::{
    DEVICE_PATH, DeviceError, MAX_QUOTE_LEN, MAX_SUPPLEMENTAL_LEN, OcclumDevice,
    QUOTE_BUSY_ATTEMPTS, QUOTE_BUSY_BACKOFF_INITIAL, QUOTE_BUSY_BACKOFF_MAX, QuoteVerification,
    QvResult, SgxIoctl,
};
pub use key::{KeyName, KeyPolicy, KeyRequest, TSEAL_DEFAULT_FLAGSMASK, TSEAL_DEFAULT_MISCMASK};
pub use mount::{MountError, OCCLUM_SYSNAME, RootfsConfig, is_occlum, mount_rootfs};

/// Returns the C allocator's free memory to the kernel: glibc's `malloc_trim(0)`, the only
/// route to it (Rust's allocator is the C one, and gRPC core's memory is too). The KMS calls
/// it once a flood has passed. True if anything was released; always false on musl, which has
/// no such call. Inside Occlum (untested there) the KMS runs on Occlum's glibc; its user space
/// is reserved up front, so at most the call releases nothing, and it changes no memory the
/// program still uses (it gives back only pages malloc holds free).
pub fn trim_heap() -> bool {
    sys::malloc_trim()
}

/// Something that can produce an SGX DCAP quote (v3) over caller-chosen report data.
///
/// Implemented by [`OcclumDevice`] (Occlum's `/dev/sgx`, real hardware) and by `sgx-sim`'s
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
