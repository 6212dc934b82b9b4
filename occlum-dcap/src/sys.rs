//! The raw kernel interface: Occlum's `/dev/sgx` ioctl ABI and `SYS_MOUNT_FS` (syscall 363).
//!
//! This module holds every `unsafe` block of the workspace. Each wrapper is a safe function
//! whose arguments are Rust references or owned buffers, so the pointers it hands to the LibOS
//! are valid for the whole call; the layouts below are pinned by size/offset tests against
//! Occlum's source (`src/libos/src/fs/dev_fs/dev_sgx/mod.rs`, `src/libos/src/config.rs`) and
//! Intel's `sgx_key.h`.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_long};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

// ---------------------------------------------------------------------------------------------
// ioctl request numbers
// ---------------------------------------------------------------------------------------------

/// The ioctl "type" byte of every Occlum `/dev/sgx` request (`SGX_MAGIC_CHAR`).
pub(crate) const SGX_IOC_MAGIC: u8 = b's';

/// Direction bits of Linux `asm-generic/ioctl.h`: the caller writes the argument (`_IOW`).
const IOC_WRITE: u32 = 1;
/// Direction bits of Linux `asm-generic/ioctl.h`: the caller reads the argument (`_IOR`).
const IOC_READ: u32 = 2;
/// The size field is 14 bits wide (`_IOC_SIZEBITS`).
const IOC_SIZE_LIMIT: usize = 1 << 14;

/// `_IOC(dir, type, nr, size)`: nr in bits 0..8, type in 8..16, size in 16..30, dir in 30..32.
/// Occlum decodes requests with the same layout (`StructuredIoctlNum::from_u32`).
const fn ioc(dir: u32, nr: u8, size: usize) -> u32 {
    assert!(
        size > 0 && size < IOC_SIZE_LIMIT,
        "ioctl argument size must fit in 14 bits"
    );
    (dir << 30) | ((size as u32) << 16) | ((SGX_IOC_MAGIC as u32) << 8) | nr as u32
}

/// `_IOR('s', nr, T)`: the LibOS writes a `T` back to the caller.
pub(crate) const fn ior<T>(nr: u8) -> u32 {
    ioc(IOC_READ, nr, size_of::<T>())
}

/// `_IOWR('s', nr, T)`: the LibOS reads and writes a `T`.
pub(crate) const fn iowr<T>(nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
}

/// `SGXIOC_GET_DCAP_QUOTE_SIZE`: `_IOR('s', 7, uint32_t)`.
pub(crate) const SGXIOC_GET_DCAP_QUOTE_SIZE: u32 = ior::<u32>(7);
/// `SGXIOC_GEN_DCAP_QUOTE`: `_IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)`.
pub(crate) const SGXIOC_GEN_DCAP_QUOTE: u32 = iowr::<GenDcapQuoteArg>(8);
/// `SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE`: `_IOR('s', 9, uint32_t)`.
pub(crate) const SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE: u32 = ior::<u32>(9);
/// `SGXIOC_VER_DCAP_QUOTE`: `_IOWR('s', 10, sgxioc_ver_dcap_quote_arg_t)`.
pub(crate) const SGXIOC_VER_DCAP_QUOTE: u32 = iowr::<VerDcapQuoteArg>(10);
/// `SGXIOC_GET_KEY`: `_IOWR('s', 11, sgxioc_get_key_arg_t)`.
pub(crate) const SGXIOC_GET_KEY: u32 = iowr::<GetKeyArg>(11);

// ---------------------------------------------------------------------------------------------
// ioctl argument structs (Occlum `dev_sgx/mod.rs`, `test/ioctl/main.c`)
// ---------------------------------------------------------------------------------------------

/// `sgxioc_gen_dcap_quote_arg_t` / LibOS `IoctlGenDCAPQuoteArg`.
///
/// Despite the "input/output" comment in Occlum, the LibOS only reads `*quote_size` (the
/// capacity of `quote_buf`); it writes exactly `GET_DCAP_QUOTE_SIZE` bytes and never updates
/// `*quote_size`.
#[repr(C)]
pub(crate) struct GenDcapQuoteArg {
    pub(crate) report_data: *const [u8; 64],
    pub(crate) quote_size: *mut u32,
    pub(crate) quote_buf: *mut u8,
}

/// `sgxioc_ver_dcap_quote_arg_t` / LibOS `IoctlVerDCAPQuoteArg` (48 bytes with padding).
///
/// The LibOS writes through `collateral_expiration_status` and `quote_verification_result`
/// without checking them, so both must always be valid.
#[repr(C)]
pub(crate) struct VerDcapQuoteArg {
    pub(crate) quote_buf: *const u8,
    pub(crate) quote_size: u32,
    pub(crate) collateral_expiration_status: *mut u32,
    /// `sgx_ql_qv_result_t`, a C enum: 4 bytes.
    pub(crate) quote_verification_result: *mut u32,
    pub(crate) supplemental_data_size: u32,
    pub(crate) supplemental_data: *mut u8,
}

/// `sgxioc_get_key_arg_t` / LibOS `IoctlGetKeyArg`.
#[repr(C)]
pub(crate) struct GetKeyArg {
    pub(crate) key_request: *const SgxKeyRequest,
    pub(crate) key: *mut [u8; 16],
}

/// `sgx_attributes_t` (Intel SDK `sgx_attributes.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SgxAttributes {
    pub(crate) flags: u64,
    pub(crate) xfrm: u64,
}

/// `SGX_KEY_REQUEST_RESERVED2_BYTES` (Intel SDK `sgx_key.h`).
pub(crate) const KEY_REQUEST_RESERVED2_BYTES: usize = 434;

/// `sgx_key_request_t` (Intel SDK `sgx_key.h`; the EGETKEY KEYREQUEST, 512 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SgxKeyRequest {
    pub(crate) key_name: u16,
    pub(crate) key_policy: u16,
    pub(crate) isv_svn: u16,
    pub(crate) reserved1: u16,
    pub(crate) cpu_svn: [u8; 16],
    pub(crate) attribute_mask: SgxAttributes,
    pub(crate) key_id: [u8; 32],
    pub(crate) misc_mask: u32,
    pub(crate) config_svn: u16,
    pub(crate) reserved2: [u8; KEY_REQUEST_RESERVED2_BYTES],
}

// ---------------------------------------------------------------------------------------------
// SYS_MOUNT_FS (Occlum `src/libos/src/syscall/mod.rs`: `(MountRootFS = 363)`)
// ---------------------------------------------------------------------------------------------

/// Occlum's `SYS_MOUNT_FS`. On Linux x86_64, numbers 335..=423 are unassigned (the gap
/// before the unified 424+ numbering), so the host kernel answers `ENOSYS`.
pub(crate) const SYS_MOUNT_FS: c_long = 363;

/// `user_rootfs_config` (Occlum `src/libos/src/config.rs`). The LibOS rejects the struct with
/// `EINVAL` unless `len == size_of::<user_rootfs_config>()`.
#[repr(C)]
pub(crate) struct RawUserRootfsConfig {
    pub(crate) len: usize,
    pub(crate) upper_layer_path: *const c_char,
    pub(crate) lower_layer_path: *const c_char,
    pub(crate) entry_point: *const c_char,
    pub(crate) hostfs_source: *const c_char,
    pub(crate) hostfs_target: *const c_char,
    /// NULL, or an array of C strings terminated by a NULL pointer.
    pub(crate) envp: *const *const c_char,
}

/// Owned C strings for a `user_rootfs_config`; [`UserRootfsConfig::raw`] borrows them, so the
/// pointers inside the raw struct cannot outlive the strings.
pub(crate) struct UserRootfsConfig {
    pub(crate) upper_layer_path: Option<CString>,
    pub(crate) lower_layer_path: Option<CString>,
    pub(crate) entry_point: Option<CString>,
    pub(crate) hostfs_source: Option<CString>,
    pub(crate) hostfs_target: Option<CString>,
    pub(crate) envs: Vec<CString>,
}

/// A `user_rootfs_config` whose pointers borrow a [`UserRootfsConfig`] (and its envp array).
pub(crate) struct BorrowedRootfsConfig<'a> {
    pub(crate) raw: RawUserRootfsConfig,
    /// Keeps the NULL-terminated envp array alive as long as `raw.envp` points into it.
    _envp: Vec<*const c_char>,
    _strings: PhantomData<&'a UserRootfsConfig>,
}

impl UserRootfsConfig {
    /// Builds the C view. An empty env list becomes a NULL `envp` (Occlum keeps its defaults).
    pub(crate) fn raw(&self) -> BorrowedRootfsConfig<'_> {
        fn ptr_of(s: &Option<CString>) -> *const c_char {
            s.as_deref().map_or(ptr::null(), CStr::as_ptr)
        }
        let envp: Vec<*const c_char> = if self.envs.is_empty() {
            Vec::new()
        } else {
            self.envs
                .iter()
                .map(|e| e.as_ptr())
                .chain([ptr::null()])
                .collect()
        };
        let raw = RawUserRootfsConfig {
            len: size_of::<RawUserRootfsConfig>(),
            upper_layer_path: ptr_of(&self.upper_layer_path),
            lower_layer_path: ptr_of(&self.lower_layer_path),
            entry_point: ptr_of(&self.entry_point),
            hostfs_source: ptr_of(&self.hostfs_source),
            hostfs_target: ptr_of(&self.hostfs_target),
            envp: if envp.is_empty() {
                ptr::null()
            } else {
                envp.as_ptr()
            },
        };
        BorrowedRootfsConfig {
            raw,
            _envp: envp,
            _strings: PhantomData,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Safe wrappers
// ---------------------------------------------------------------------------------------------

/// An ioctl whose argument is one `u32` written by the LibOS (`GET_DCAP_QUOTE_SIZE`,
/// `GET_DCAP_SUPPLEMENTAL_SIZE`).
/// Any other request is refused with `EINVAL` before reaching the kernel, so a request
/// encoding a larger argument can never be pointed at this 4-byte buffer.
pub(crate) fn ioctl_read_u32(fd: BorrowedFd<'_>, request: u32) -> io::Result<u32> {
    if request != ior::<u32>(request as u8) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut value: u32 = 0;
    // SAFETY: `fd` is an open descriptor borrowed for the call. The request was just checked
    // to be `_IOR('s', nr, u32)`, i.e. a 4-byte output argument, and the pointer refers to a
    // live, writable, aligned `u32` on this stack frame; the LibOS writes that one `u32`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &raw mut value) };
    check(ret).map(|()| value)
}

/// `SGXIOC_GEN_DCAP_QUOTE` into `buf`. The LibOS fails with an error unless
/// `buf.len() >= GET_DCAP_QUOTE_SIZE`, and then writes exactly that many bytes.
pub(crate) fn gen_dcap_quote(
    fd: BorrowedFd<'_>,
    report_data: &[u8; 64],
    buf: &mut [u8],
) -> io::Result<()> {
    let mut capacity = u32::try_from(buf.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "quote buffer over 4 GiB"))?;
    let arg = GenDcapQuoteArg {
        report_data,
        quote_size: &raw mut capacity,
        quote_buf: buf.as_mut_ptr(),
    };
    // SAFETY: the request encodes `size_of::<GenDcapQuoteArg>()`, matching `arg`. Every
    // pointer in `arg` comes from a reference that outlives the call: `report_data` (64
    // readable bytes), `capacity` (a writable `u32`) and `buf` (`capacity` writable bytes).
    // The LibOS bounds its write by `capacity` (`check_mut_array` + the size check).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), SGXIOC_GEN_DCAP_QUOTE as _, &raw const arg) };
    check(ret)
}

/// What `SGXIOC_VER_DCAP_QUOTE` writes besides the supplemental data.
pub(crate) struct RawVerification {
    pub(crate) collateral_expiration_status: u32,
    pub(crate) quote_verification_result: u32,
}

/// `SGXIOC_VER_DCAP_QUOTE`. An empty `supplemental` passes NULL (no supplemental data);
/// otherwise the LibOS fails unless it holds at least `GET_DCAP_SUPPLEMENTAL_SIZE` bytes and
/// then writes exactly that many.
pub(crate) fn ver_dcap_quote(
    fd: BorrowedFd<'_>,
    quote: &[u8],
    supplemental: &mut [u8],
) -> io::Result<RawVerification> {
    let too_big = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let quote_size = u32::try_from(quote.len()).map_err(|_| too_big("quote over 4 GiB"))?;
    let supplemental_size =
        u32::try_from(supplemental.len()).map_err(|_| too_big("supplemental buffer over 4 GiB"))?;
    // Occlum initialises the status to 1 ("expired") before asking the QvE; do the same so a
    // LibOS that forgets to write it fails closed.
    let mut out = RawVerification {
        collateral_expiration_status: 1,
        quote_verification_result: 0,
    };
    let arg = VerDcapQuoteArg {
        quote_buf: quote.as_ptr(),
        quote_size,
        collateral_expiration_status: &raw mut out.collateral_expiration_status,
        quote_verification_result: &raw mut out.quote_verification_result,
        supplemental_data_size: supplemental_size,
        supplemental_data: if supplemental.is_empty() {
            ptr::null_mut()
        } else {
            supplemental.as_mut_ptr()
        },
    };
    // SAFETY: the request encodes `size_of::<VerDcapQuoteArg>()`, matching `arg`. `quote_buf`
    // points to `quote_size` readable bytes of `quote`; both status pointers refer to live
    // `u32`s in `out`; `supplemental_data` is NULL or points to `supplemental_size` writable
    // bytes, and the LibOS writes no more than that. All borrows outlive the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), SGXIOC_VER_DCAP_QUOTE as _, &raw const arg) };
    check(ret).map(|()| out)
}

/// `SGXIOC_GET_KEY`: EGETKEY through the LibOS, writing the 128-bit key into `key`.
pub(crate) fn get_key(
    fd: BorrowedFd<'_>,
    request: &SgxKeyRequest,
    key: &mut [u8; 16],
) -> io::Result<()> {
    let arg = GetKeyArg {
        key_request: request,
        key,
    };
    // SAFETY: the request encodes `size_of::<GetKeyArg>()`, matching `arg`. `key_request`
    // points to a complete 512-byte `sgx_key_request_t` and `key` to 16 writable bytes, both
    // borrowed for the duration of the call; the LibOS writes exactly one `sgx_key_128bit_t`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), SGXIOC_GET_KEY as _, &raw const arg) };
    check(ret)
}

/// Occlum's `SYS_MOUNT_FS(key, rootfs_config)`. Callers must make sure they run inside
/// Occlum: on another kernel the number could mean something else.
#[cfg(target_arch = "x86_64")]
pub(crate) fn mount_fs(
    key: Option<&[u8; 16]>,
    config: Option<&UserRootfsConfig>,
) -> io::Result<()> {
    let key_ptr: *const [u8; 16] = key.map_or(ptr::null(), |k| k);
    let borrowed = config.map(UserRootfsConfig::raw);
    let config_ptr: *const RawUserRootfsConfig =
        borrowed.as_ref().map_or(ptr::null(), |b| &raw const b.raw);
    // SAFETY: syscall 363 takes two pointers, each NULL or valid for the whole call: `key_ptr`
    // refers to the caller's 16-byte key; `config_ptr` to a `user_rootfs_config` in
    // `borrowed`, whose string and envp pointers borrow `config` (alive until we return).
    // The LibOS only reads through them. Outside Occlum on x86_64 the number is unassigned.
    let ret = unsafe { libc::syscall(SYS_MOUNT_FS, key_ptr, config_ptr) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Occlum runs on x86_64 only; elsewhere the syscall is never made.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn mount_fs(
    _key: Option<&[u8; 16]>,
    _config: Option<&UserRootfsConfig>,
) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// `uname(2)`'s `sysname`: `"Occlum"` inside Occlum (`src/libos/src/misc/uname.rs`),
/// `"Linux"` on a Linux host.
pub(crate) fn uname_sysname() -> io::Result<String> {
    let mut uts = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `uts` is a writable, properly sized and aligned `utsname`; uname writes only
    // into it.
    let ret = unsafe { libc::uname(uts.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `uts` was zero-initialised (a valid bit pattern for arrays of `c_char`) and
    // uname returned success, so every field is initialised.
    let uts = unsafe { uts.assume_init() };
    // The kernel NUL-terminates sysname; treat a missing NUL as "whole array" anyway.
    let bytes: Vec<u8> = uts
        .sysname
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// glibc's `malloc_trim(0)`: hands the free memory of every malloc arena back to the kernel
/// (`madvise(MADV_DONTNEED)` on whole free pages, and the top of the main heap). True if any
/// was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes no pointer; it walks glibc's own arenas under their locks and
    // is safe to call from any thread at any time (glibc manual, "Memory Allocation Tunables"
    // / malloc_trim(3): MT-Safe).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// musl (init's build) has no `malloc_trim`: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn malloc_trim() -> bool {
    false
}

/// Maps the `-1`-and-errno convention to `io::Result`.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn every_request_number_matches_occlum_and_the_design_table() {
        assert_eq!(SGXIOC_GET_DCAP_QUOTE_SIZE, 0x8004_7307);
        assert_eq!(SGXIOC_GEN_DCAP_QUOTE, 0xc018_7308);
        assert_eq!(SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE, 0x8004_7309);
        assert_eq!(SGXIOC_VER_DCAP_QUOTE, 0xc030_730a);
        assert_eq!(SGXIOC_GET_KEY, 0xc010_730b);
    }

    #[test]
    fn request_numbers_decode_the_way_occlum_decodes_them() {
        // StructuredIoctlNum::from_u32: nr [0,8), magic [8,16), size [16,30), type [30,32).
        let decode = |r: u32| (r & 0xff, (r >> 8) & 0xff, (r >> 16) & 0x3fff, r >> 30);
        assert_eq!(decode(SGXIOC_GEN_DCAP_QUOTE), (8, u32::from(b's'), 24, 3));
        assert_eq!(
            decode(SGXIOC_GET_DCAP_QUOTE_SIZE),
            (7, u32::from(b's'), 4, 2)
        );
        assert_eq!(decode(SGXIOC_VER_DCAP_QUOTE), (10, u32::from(b's'), 48, 3));
        assert_eq!(decode(SGXIOC_GET_KEY), (11, u32::from(b's'), 16, 3));
    }

    #[test]
    fn our_encoding_agrees_with_the_libc_crate_ioctl_macros() {
        // An independent implementation of _IOR/_IOWR (libc's), fed the same struct sizes.
        let magic = u32::from(SGX_IOC_MAGIC);
        assert_eq!(
            libc::_IOR::<u32>(magic, 7) as u32,
            SGXIOC_GET_DCAP_QUOTE_SIZE
        );
        assert_eq!(
            libc::_IOWR::<GenDcapQuoteArg>(magic, 8) as u32,
            SGXIOC_GEN_DCAP_QUOTE
        );
        assert_eq!(
            libc::_IOR::<u32>(magic, 9) as u32,
            SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE
        );
        assert_eq!(
            libc::_IOWR::<VerDcapQuoteArg>(magic, 10) as u32,
            SGXIOC_VER_DCAP_QUOTE
        );
        assert_eq!(libc::_IOWR::<GetKeyArg>(magic, 11) as u32, SGXIOC_GET_KEY);
        // Occlum's SGXIOC_IS_EDMM_SUPPORTED = _IOR('s', 0, int), from test/ioctl/main.c.
        assert_eq!(ior::<i32>(0), 0x8004_7300);
    }

    #[test]
    fn a_request_without_a_u32_argument_is_not_sent_to_the_u32_wrapper() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&f);
        for request in [
            SGXIOC_GEN_DCAP_QUOTE,
            SGXIOC_GET_KEY,
            ior::<u64>(7),
            iowr::<u32>(7),
        ] {
            let err = ioctl_read_u32(fd, request).unwrap_err();
            // EINVAL from the check, not ENOTTY from /dev/null: the kernel never saw it.
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{request:#x}");
        }
    }

    #[test]
    fn gen_dcap_quote_arg_layout_is_pinned() {
        assert_eq!(size_of::<GenDcapQuoteArg>(), 24);
        assert_eq!(offset_of!(GenDcapQuoteArg, report_data), 0);
        assert_eq!(offset_of!(GenDcapQuoteArg, quote_size), 8);
        assert_eq!(offset_of!(GenDcapQuoteArg, quote_buf), 16);
    }

    #[test]
    fn ver_dcap_quote_arg_layout_is_pinned() {
        assert_eq!(size_of::<VerDcapQuoteArg>(), 48);
        assert_eq!(offset_of!(VerDcapQuoteArg, quote_buf), 0);
        assert_eq!(offset_of!(VerDcapQuoteArg, quote_size), 8);
        assert_eq!(
            offset_of!(VerDcapQuoteArg, collateral_expiration_status),
            16
        );
        assert_eq!(offset_of!(VerDcapQuoteArg, quote_verification_result), 24);
        assert_eq!(offset_of!(VerDcapQuoteArg, supplemental_data_size), 32);
        assert_eq!(offset_of!(VerDcapQuoteArg, supplemental_data), 40);
    }

    #[test]
    fn get_key_arg_layout_is_pinned() {
        assert_eq!(size_of::<GetKeyArg>(), 16);
        assert_eq!(offset_of!(GetKeyArg, key_request), 0);
        assert_eq!(offset_of!(GetKeyArg, key), 8);
    }

    #[test]
    fn sgx_key_request_is_512_bytes_at_intel_offsets() {
        assert_eq!(size_of::<SgxKeyRequest>(), 512);
        assert_eq!(align_of::<SgxKeyRequest>(), 8);
        assert_eq!(offset_of!(SgxKeyRequest, key_name), 0);
        assert_eq!(offset_of!(SgxKeyRequest, key_policy), 2);
        assert_eq!(offset_of!(SgxKeyRequest, isv_svn), 4);
        assert_eq!(offset_of!(SgxKeyRequest, reserved1), 6);
        assert_eq!(offset_of!(SgxKeyRequest, cpu_svn), 8);
        assert_eq!(offset_of!(SgxKeyRequest, attribute_mask), 24);
        assert_eq!(offset_of!(SgxKeyRequest, key_id), 40);
        assert_eq!(offset_of!(SgxKeyRequest, misc_mask), 72);
        assert_eq!(offset_of!(SgxKeyRequest, config_svn), 76);
        assert_eq!(offset_of!(SgxKeyRequest, reserved2), 78);
        // reserved2 reaches the end exactly: no padding byte that could carry garbage.
        assert_eq!(KEY_REQUEST_RESERVED2_BYTES, 434);
        assert_eq!(78 + KEY_REQUEST_RESERVED2_BYTES, size_of::<SgxKeyRequest>());
        assert_eq!(size_of::<SgxAttributes>(), 16);
        assert_eq!(offset_of!(SgxAttributes, flags), 0);
        assert_eq!(offset_of!(SgxAttributes, xfrm), 8);
    }

    #[test]
    fn user_rootfs_config_layout_is_pinned() {
        assert_eq!(size_of::<RawUserRootfsConfig>(), 56);
        assert_eq!(offset_of!(RawUserRootfsConfig, len), 0);
        assert_eq!(offset_of!(RawUserRootfsConfig, upper_layer_path), 8);
        assert_eq!(offset_of!(RawUserRootfsConfig, lower_layer_path), 16);
        assert_eq!(offset_of!(RawUserRootfsConfig, entry_point), 24);
        assert_eq!(offset_of!(RawUserRootfsConfig, hostfs_source), 32);
        assert_eq!(offset_of!(RawUserRootfsConfig, hostfs_target), 40);
        assert_eq!(offset_of!(RawUserRootfsConfig, envp), 48);
    }

    #[test]
    fn the_raw_rootfs_config_points_at_its_own_strings() {
        let cfg = UserRootfsConfig {
            upper_layer_path: Some(c"/upper".to_owned()),
            lower_layer_path: None,
            entry_point: Some(c"/bin".to_owned()),
            hostfs_source: None,
            hostfs_target: None,
            envs: vec![c"A=1".to_owned(), c"B=2".to_owned()],
        };
        let b = cfg.raw();
        assert_eq!(b.raw.len, 56);
        assert_eq!(
            b.raw.upper_layer_path,
            cfg.upper_layer_path
                .as_deref()
                .map_or(ptr::null(), CStr::as_ptr)
        );
        assert!(b.raw.lower_layer_path.is_null());
        assert!(b.raw.hostfs_source.is_null());
        assert!(b.raw.hostfs_target.is_null());
        assert_eq!(b.raw.envp, b._envp.as_ptr());
        let expected: Vec<*const c_char> = cfg
            .envs
            .iter()
            .map(|e| e.as_ptr())
            .chain([ptr::null()])
            .collect();
        assert_eq!(b._envp, expected, "envp must be NULL-terminated");
    }

    #[test]
    fn an_empty_env_list_becomes_a_null_envp() {
        let cfg = UserRootfsConfig {
            upper_layer_path: None,
            lower_layer_path: None,
            entry_point: None,
            hostfs_source: None,
            hostfs_target: None,
            envs: Vec::new(),
        };
        assert!(cfg.raw().raw.envp.is_null());
    }

    #[test]
    fn an_ioctl_on_a_non_sgx_descriptor_fails_without_touching_memory() {
        // /dev/null answers every ioctl with ENOTTY: the wrappers report the OS error.
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&f);
        assert_eq!(
            ioctl_read_u32(fd, SGXIOC_GET_DCAP_QUOTE_SIZE)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTTY)
        );
        let mut buf = [0xaau8; 64];
        let err = gen_dcap_quote(fd, &[0; 64], &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        assert!(buf.iter().all(|&b| b == 0xaa));
        let mut key = [0u8; 16];
        let req = SgxKeyRequest {
            key_name: 4,
            key_policy: 2,
            isv_svn: 0,
            reserved1: 0,
            cpu_svn: [0; 16],
            attribute_mask: SgxAttributes::default(),
            key_id: [0; 32],
            misc_mask: 0,
            config_svn: 0,
            reserved2: [0; KEY_REQUEST_RESERVED2_BYTES],
        };
        assert_eq!(
            get_key(fd, &req, &mut key).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        let mut supp = [0u8; 8];
        assert_eq!(
            ver_dcap_quote(fd, &[1, 2, 3], &mut supp)
                .err()
                .and_then(|e| e.raw_os_error()),
            Some(libc::ENOTTY)
        );
    }

    #[test]
    fn this_host_is_not_occlum() {
        assert_ne!(uname_sysname().unwrap(), "Occlum");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn syscall_363_is_unassigned_on_this_linux_kernel() {
        // Only ever made outside Occlum (inside, it would mount the rootfs). Linux x86_64
        // leaves 335..=423 unassigned, so the kernel answers ENOSYS; a seccomp filter (some
        // container runtimes) may answer EPERM instead. Either way nothing happens.
        if uname_sysname().unwrap() == "Occlum" {
            return;
        }
        let err = mount_fs(None, None).unwrap_err();
        let errno = err.raw_os_error();
        assert!(
            errno == Some(libc::ENOSYS) || errno == Some(libc::EPERM),
            "syscall 363 did something on this kernel: {err}"
        );
    }
}
