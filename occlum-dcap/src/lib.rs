//! Occlum's `/dev/sgx` DCAP interface and `SYS_MOUNT_FS`, behind a safe API.
//!
//! This is the only crate in the workspace that contains `unsafe`, all of it in the private
//! `sys` module: `#[repr(C)]` argument structs, the ioctl request numbers and thin wrappers
//! around `ioctl(2)`, `uname(2)`, `syscall(363, ..)` and glibc's `malloc_trim`. Everything above it sees
//! [`quote_source::QuoteSource`] (its own dependency-free crate), which [`OcclumDevice`]
//! implements and the simulated platform (`sgx-sim`) implements too, so the KMS and init run
//! the same code with or without SGX.
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
