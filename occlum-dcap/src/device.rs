//! [`OcclumDevice`]: Occlum's `/dev/sgx`, behind a safe API.
//!
//! Every size the LibOS reports is bounded by a named limit before anything is allocated,
//! generated quotes are checked to carry the requested report data, and derived keys only
//! ever live in zeroizing buffers.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::key::KeyRequest;
use quote_source::{QuoteError, QuoteSource};

use crate::sys;

/// Path of Occlum's SGX device inside the enclave (`src/libos/src/fs/dev_fs/mod.rs`).
pub const DEVICE_PATH: &str = "/dev/sgx";

/// How many times [`OcclumDevice::generate_quote`] asks while the quoting enclave is busy.
pub const QUOTE_BUSY_ATTEMPTS: u32 = 10;
/// Pause after the first `EBUSY`; it doubles after each further one.
pub const QUOTE_BUSY_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Cap on a single pause (the whole retry stays under six seconds).
pub const QUOTE_BUSY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Largest quote size the device may announce. SGX DCAP v3 quotes with a PEM PCK chain are
/// about 5 KiB; anything near this limit is a broken device, not a quote.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Largest supplemental-data size the device may announce (Intel's
/// `sgx_ql_qv_supplemental_t` is a few hundred bytes).
pub const MAX_SUPPLEMENTAL_LEN: usize = 64 * 1024;

/// Quote v3/v4 header length; the report body follows it.
const QUOTE_HEADER_LEN: usize = 48;
/// Offset of `report_data` inside the report body (Intel DCAP quote format, `sgx_report_body_t`).
const REPORT_DATA_OFFSET_IN_BODY: usize = 320;
/// Where a quote carries the enclave's report data.
const QUOTE_REPORT_DATA: std::ops::Range<usize> = QUOTE_HEADER_LEN + REPORT_DATA_OFFSET_IN_BODY
    ..QUOTE_HEADER_LEN + REPORT_DATA_OFFSET_IN_BODY + 64;

/// The `/dev/sgx` requests this crate issues, named as in Occlum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgxIoctl {
    /// `SGXIOC_GET_DCAP_QUOTE_SIZE`
    GetDcapQuoteSize,
    /// `SGXIOC_GEN_DCAP_QUOTE`
    GenDcapQuote,
    /// `SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE`
    GetDcapSupplementalSize,
    /// `SGXIOC_VER_DCAP_QUOTE`
    VerDcapQuote,
    /// `SGXIOC_GET_KEY`
    GetKey,
}

impl SgxIoctl {
    /// Occlum's name for the request.
    pub const fn name(self) -> &'static str {
        match self {
            Self::GetDcapQuoteSize => "SGXIOC_GET_DCAP_QUOTE_SIZE",
            Self::GenDcapQuote => "SGXIOC_GEN_DCAP_QUOTE",
            Self::GetDcapSupplementalSize => "SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE",
            Self::VerDcapQuote => "SGXIOC_VER_DCAP_QUOTE",
            Self::GetKey => "SGXIOC_GET_KEY",
        }
    }

    /// The ioctl request number (Linux `_IOR`/`_IOWR` encoding of `('s', nr, size)`).
    pub const fn request(self) -> u32 {
        match self {
            Self::GetDcapQuoteSize => sys::SGXIOC_GET_DCAP_QUOTE_SIZE,
            Self::GenDcapQuote => sys::SGXIOC_GEN_DCAP_QUOTE,
            Self::GetDcapSupplementalSize => sys::SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE,
            Self::VerDcapQuote => sys::SGXIOC_VER_DCAP_QUOTE,
            Self::GetKey => sys::SGXIOC_GET_KEY,
        }
    }
}

impl fmt::Display for SgxIoctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an operation on `/dev/sgx` failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeviceError {
    /// `/dev/sgx` could not be opened: not inside Occlum, or SGX is off.
    Unavailable {
        path: &'static str,
        source: io::Error,
    },
    /// `/dev/sgx` opened, but `uname` says this is not Occlum (a host SGX driver's node speaks
    /// a different ioctl ABI), so no request was sent.
    NotOcclum { sysname: String },
    /// The quoting enclave answered `EBUSY` to every attempt.
    Busy { op: SgxIoctl, attempts: u32 },
    /// `EIO`: Occlum's DCAP quote generator or verifier failed to initialise.
    DcapUnavailable { op: SgxIoctl, source: io::Error },
    /// `EINVAL`. Occlum up to at least 0.31 turns every `/dev/sgx` failure into `EINVAL`
    /// (`DevSgx::io_control` maps all errors to `FsError::IOCTLError`), including a busy
    /// quoting enclave, DCAP being unavailable and an EGETKEY refusal; the LibOS log says which.
    Rejected { op: SgxIoctl, source: io::Error },
    /// Any other OS error.
    Os { op: SgxIoctl, source: io::Error },
    /// The device announced a size outside the bounds this crate accepts.
    BadSize { op: SgxIoctl, size: u32, max: usize },
    /// The caller's input exceeds a limit.
    InputTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// The device returned a quote that does not carry the requested report data.
    BadQuote { detail: &'static str },
}

impl DeviceError {
    /// Classifies an OS error from `op`.
    fn from_os(op: SgxIoctl, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EBUSY) => Self::Busy { op, attempts: 1 },
            Some(libc::EIO) => Self::DcapUnavailable { op, source },
            Some(libc::EINVAL) => Self::Rejected { op, source },
            _ => Self::Os { op, source },
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { path, source } => {
                write!(
                    f,
                    "cannot open {path}: {source} (is this running inside Occlum?)"
                )
            }
            Self::NotOcclum { sysname } => write!(
                f,
                "{DEVICE_PATH} exists but uname reports {sysname:?}, not \"Occlum\": refusing to send Occlum ioctls"
            ),
            Self::Busy { op, attempts } => {
                write!(
                    f,
                    "{op} on {DEVICE_PATH}: quoting enclave still busy (EBUSY) after {attempts} attempts"
                )
            }
            Self::DcapUnavailable { op, source } => {
                write!(
                    f,
                    "{op} on {DEVICE_PATH}: DCAP is not available in this enclave: {source}"
                )
            }
            Self::Rejected { op, source } => write!(
                f,
                "{op} on {DEVICE_PATH} rejected: {source} (Occlum reports any failure this way; see the LibOS log)"
            ),
            Self::Os { op, source } => write!(f, "{op} on {DEVICE_PATH} failed: {source}"),
            Self::BadSize { op, size, max } => {
                write!(
                    f,
                    "{op} on {DEVICE_PATH}: device reported size {size}, expected 1..={max}"
                )
            }
            Self::InputTooLarge { what, len, max } => {
                write!(f, "{what} is {len} bytes, over the limit of {max}")
            }
            Self::BadQuote { detail } => {
                write!(f, "quote from {DEVICE_PATH} is unusable: {detail}")
            }
        }
    }
}

impl std::error::Error for DeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { source, .. }
            | Self::DcapUnavailable { source, .. }
            | Self::Rejected { source, .. }
            | Self::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<DeviceError> for QuoteError {
    fn from(err: DeviceError) -> Self {
        match err {
            DeviceError::Unavailable { path, source } => QuoteError::Unavailable {
                what: path.to_owned(),
                source,
            },
            DeviceError::NotOcclum { .. } => {
                let detail = err.to_string();
                QuoteError::Unavailable {
                    what: DEVICE_PATH.to_owned(),
                    source: io::Error::new(io::ErrorKind::Unsupported, detail),
                }
            }
            DeviceError::Busy { attempts, .. } => QuoteError::Busy { attempts },
            other => QuoteError::Platform {
                detail: other.to_string(),
            },
        }
    }
}

/// The verdict of Intel's quote verification library (`sgx_ql_qv_result_t`,
/// `sgx_qve_header.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QvResult {
    /// `SGX_QL_QV_RESULT_OK` (0x0000)
    Ok,
    /// `SGX_QL_QV_RESULT_CONFIG_NEEDED` (0xA001)
    ConfigNeeded,
    /// `SGX_QL_QV_RESULT_OUT_OF_DATE` (0xA002)
    OutOfDate,
    /// `SGX_QL_QV_RESULT_OUT_OF_DATE_CONFIG_NEEDED` (0xA003)
    OutOfDateConfigNeeded,
    /// `SGX_QL_QV_RESULT_INVALID_SIGNATURE` (0xA004)
    InvalidSignature,
    /// `SGX_QL_QV_RESULT_REVOKED` (0xA005)
    Revoked,
    /// `SGX_QL_QV_RESULT_UNSPECIFIED` (0xA006)
    Unspecified,
    /// `SGX_QL_QV_RESULT_SW_HARDENING_NEEDED` (0xA007)
    SwHardeningNeeded,
    /// `SGX_QL_QV_RESULT_CONFIG_AND_SW_HARDENING_NEEDED` (0xA008)
    ConfigAndSwHardeningNeeded,
    /// A value this crate does not know (newer DCAP libraries add codes).
    Other(u32),
}

impl QvResult {
    /// Decodes the raw C enum value.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0x0000 => Self::Ok,
            0xA001 => Self::ConfigNeeded,
            0xA002 => Self::OutOfDate,
            0xA003 => Self::OutOfDateConfigNeeded,
            0xA004 => Self::InvalidSignature,
            0xA005 => Self::Revoked,
            0xA006 => Self::Unspecified,
            0xA007 => Self::SwHardeningNeeded,
            0xA008 => Self::ConfigAndSwHardeningNeeded,
            other => Self::Other(other),
        }
    }

    /// The raw C enum value.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ok => 0x0000,
            Self::ConfigNeeded => 0xA001,
            Self::OutOfDate => 0xA002,
            Self::OutOfDateConfigNeeded => 0xA003,
            Self::InvalidSignature => 0xA004,
            Self::Revoked => 0xA005,
            Self::Unspecified => 0xA006,
            Self::SwHardeningNeeded => 0xA007,
            Self::ConfigAndSwHardeningNeeded => 0xA008,
            Self::Other(raw) => raw,
        }
    }
}

/// What `SGXIOC_VER_DCAP_QUOTE` reported. This is Intel's verdict from the host's QvE, with
/// the LibOS's (untrusted) wall clock; the workspace's own pipeline (`ratls::verify`) is the
/// one that gates secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteVerification {
    /// `quote_verification_result`.
    pub result: QvResult,
    /// `collateral_expiration_status`: 0 when all collateral was valid at verification time.
    pub collateral_expiration_status: u32,
    /// `sgx_ql_qv_supplemental_t` bytes, exactly as many as the device announced.
    pub supplemental: Vec<u8>,
}

impl QuoteVerification {
    /// True when some collateral had expired (any non-zero status).
    pub fn collateral_expired(&self) -> bool {
        self.collateral_expiration_status != 0
    }
}

/// Occlum's `/dev/sgx`, opened read-only as Occlum's own DCAP library does.
///
/// Written against Occlum's source (see the crate docs for the version); it has not run on
/// SGX hardware in this project's tests.
pub struct OcclumDevice {
    file: File,
}

impl fmt::Debug for OcclumDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OcclumDevice")
            .field("path", &DEVICE_PATH)
            .finish()
    }
}

impl OcclumDevice {
    /// Opens `/dev/sgx` and checks that this is Occlum before any ioctl is sent.
    pub fn open() -> Result<Self, DeviceError> {
        let file = File::open(DEVICE_PATH).map_err(|source| DeviceError::Unavailable {
            path: DEVICE_PATH,
            source,
        })?;
        let sysname = sys::uname_sysname().map_err(|source| DeviceError::Unavailable {
            path: "uname",
            source,
        })?;
        if sysname != crate::OCCLUM_SYSNAME {
            return Err(DeviceError::NotOcclum { sysname });
        }
        Ok(Self { file })
    }

    /// The size of a DCAP quote on this platform (`SGXIOC_GET_DCAP_QUOTE_SIZE`).
    pub fn quote_size(&self) -> Result<usize, DeviceError> {
        self.read_size(SgxIoctl::GetDcapQuoteSize, MAX_QUOTE_LEN)
    }

    /// A DCAP quote whose report body carries `report_data`, retrying while the quoting
    /// enclave is busy (`QUOTE_BUSY_ATTEMPTS`, backoff from `QUOTE_BUSY_BACKOFF_INITIAL`
    /// doubling up to `QUOTE_BUSY_BACKOFF_MAX`).
    pub fn generate_quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, DeviceError> {
        let size = self.quote_size()?;
        let mut quote = vec![0u8; size];
        retry_while_busy(
            SgxIoctl::GenDcapQuote,
            || sys::gen_dcap_quote(self.file.as_fd(), report_data, &mut quote),
            thread::sleep,
        )?;
        check_quote(&quote, report_data)?;
        Ok(quote)
    }

    /// The size of the supplemental data `verify_quote` returns
    /// (`SGXIOC_GET_DCAP_SUPPLEMENTAL_SIZE`).
    pub fn supplemental_size(&self) -> Result<usize, DeviceError> {
        self.read_size(SgxIoctl::GetDcapSupplementalSize, MAX_SUPPLEMENTAL_LEN)
    }

    /// Intel's verdict on `quote` (`SGXIOC_VER_DCAP_QUOTE`), with the supplemental data.
    pub fn verify_quote(&self, quote: &[u8]) -> Result<QuoteVerification, DeviceError> {
        if quote.is_empty() || quote.len() > MAX_QUOTE_LEN {
            return Err(DeviceError::InputTooLarge {
                what: "quote to verify",
                len: quote.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut supplemental = vec![0u8; self.supplemental_size()?];
        let raw = sys::ver_dcap_quote(self.file.as_fd(), quote, &mut supplemental)
            .map_err(|e| DeviceError::from_os(SgxIoctl::VerDcapQuote, e))?;
        Ok(QuoteVerification {
            result: QvResult::from_raw(raw.quote_verification_result),
            collateral_expiration_status: raw.collateral_expiration_status,
            supplemental,
        })
    }

    /// Derives an SGX key (EGETKEY via `SGXIOC_GET_KEY`). The key is written straight into a
    /// zeroizing buffer; never print or log it.
    pub fn get_key(&self, request: &KeyRequest) -> Result<Zeroizing<[u8; 16]>, DeviceError> {
        let mut key = Zeroizing::new([0u8; 16]);
        sys::get_key(self.file.as_fd(), &request.to_raw(), &mut key)
            .map_err(|e| DeviceError::from_os(SgxIoctl::GetKey, e))?;
        Ok(key)
    }

    /// A size-reporting ioctl, bounded to `1..=max`.
    fn read_size(&self, op: SgxIoctl, max: usize) -> Result<usize, DeviceError> {
        let size = sys::ioctl_read_u32(self.file.as_fd(), op.request())
            .map_err(|e| DeviceError::from_os(op, e))?;
        checked_size(op, size, max)
    }
}

impl QuoteSource for OcclumDevice {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, QuoteError> {
        Ok(self.generate_quote(report_data)?)
    }

    fn describe(&self) -> String {
        format!("occlum {DEVICE_PATH} (DCAP)")
    }

    fn is_simulated(&self) -> bool {
        false
    }
}

/// Accepts a device-reported size in `1..=max`.
fn checked_size(op: SgxIoctl, size: u32, max: usize) -> Result<usize, DeviceError> {
    match usize::try_from(size) {
        Ok(n) if n > 0 && n <= max => Ok(n),
        _ => Err(DeviceError::BadSize { op, size, max }),
    }
}

/// Runs `attempt` until it stops failing with `EBUSY`, at most `QUOTE_BUSY_ATTEMPTS` times,
/// sleeping with exponential backoff in between. Other errors end the loop at once.
fn retry_while_busy(
    op: SgxIoctl,
    mut attempt: impl FnMut() -> io::Result<()>,
    mut sleep: impl FnMut(Duration),
) -> Result<(), DeviceError> {
    let mut backoff = QUOTE_BUSY_BACKOFF_INITIAL;
    for n in 1..=QUOTE_BUSY_ATTEMPTS {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if n < QUOTE_BUSY_ATTEMPTS {
                    sleep(backoff);
                    backoff = (backoff * 2).min(QUOTE_BUSY_BACKOFF_MAX);
                }
            }
            Err(e) => return Err(DeviceError::from_os(op, e)),
        }
    }
    Err(DeviceError::Busy {
        op,
        attempts: QUOTE_BUSY_ATTEMPTS,
    })
}

/// A generated quote must at least reach the end of the report body and carry the report
/// data we asked for; full verification is the peer's job.
fn check_quote(quote: &[u8], report_data: &[u8; 64]) -> Result<(), DeviceError> {
    match quote.get(QUOTE_REPORT_DATA) {
        None => Err(DeviceError::BadQuote {
            detail: "shorter than a quote header and report body",
        }),
        Some(got) if got != report_data => Err(DeviceError::BadQuote {
            detail: "report_data differs from the requested value",
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn opening_the_device_outside_occlum_is_a_clear_unavailable_error() {
        let err = OcclumDevice::open().unwrap_err();
        match &err {
            DeviceError::Unavailable { path, source } => {
                assert_eq!(*path, "/dev/sgx");
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("/dev/sgx"), "{text}");
        assert!(text.starts_with("cannot open /dev/sgx: "), "{text}");
    }

    #[test]
    fn an_unavailable_device_becomes_an_unavailable_quote_source() {
        let err = QuoteError::from(OcclumDevice::open().unwrap_err());
        match err {
            QuoteError::Unavailable { what, .. } => assert_eq!(what, "/dev/sgx"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn a_device_node_on_a_non_occlum_kernel_is_refused_as_not_occlum() {
        let err = QuoteError::from(DeviceError::NotOcclum {
            sysname: "Linux".into(),
        });
        let QuoteError::Unavailable { what, source } = err else {
            panic!("wrong variant")
        };
        assert_eq!(what, "/dev/sgx");
        assert!(source.to_string().contains("\"Linux\""));
    }

    #[test]
    fn request_numbers_are_exposed_per_operation() {
        assert_eq!(SgxIoctl::GetDcapQuoteSize.request(), 0x8004_7307);
        assert_eq!(SgxIoctl::GenDcapQuote.request(), 0xc018_7308);
        assert_eq!(SgxIoctl::GetDcapSupplementalSize.request(), 0x8004_7309);
        assert_eq!(SgxIoctl::VerDcapQuote.request(), 0xc030_730a);
        assert_eq!(SgxIoctl::GetKey.request(), 0xc010_730b);
        assert_eq!(SgxIoctl::GenDcapQuote.to_string(), "SGXIOC_GEN_DCAP_QUOTE");
    }

    #[test]
    fn errnos_map_to_distinct_errors() {
        let op = SgxIoctl::GenDcapQuote;
        assert!(matches!(
            DeviceError::from_os(op, os(libc::EIO)),
            DeviceError::DcapUnavailable { .. }
        ));
        assert!(matches!(
            DeviceError::from_os(op, os(libc::EINVAL)),
            DeviceError::Rejected { .. }
        ));
        assert!(matches!(
            DeviceError::from_os(op, os(libc::EBUSY)),
            DeviceError::Busy { .. }
        ));
        assert!(matches!(
            DeviceError::from_os(op, os(libc::ENOTTY)),
            DeviceError::Os { .. }
        ));
        let text = DeviceError::from_os(op, os(libc::EIO)).to_string();
        assert!(
            text.starts_with("SGXIOC_GEN_DCAP_QUOTE on /dev/sgx: DCAP is not available"),
            "{text}"
        );
    }

    #[test]
    fn a_busy_quoting_enclave_is_retried_until_it_answers() {
        let mut calls = 0;
        let mut sleeps = Vec::new();
        let result = retry_while_busy(
            SgxIoctl::GenDcapQuote,
            || {
                calls += 1;
                if calls < 4 {
                    Err(os(libc::EBUSY))
                } else {
                    Ok(())
                }
            },
            |d| sleeps.push(d),
        );
        assert!(result.is_ok());
        assert_eq!(calls, 4);
        assert_eq!(sleeps, [50, 100, 200].map(Duration::from_millis));
    }

    #[test]
    fn a_quoting_enclave_busy_forever_gives_up_after_the_bounded_attempts() {
        let mut calls = 0;
        let mut slept = Duration::ZERO;
        let err = retry_while_busy(
            SgxIoctl::GenDcapQuote,
            || {
                calls += 1;
                Err(os(libc::EBUSY))
            },
            |d| slept += d,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DeviceError::Busy {
                attempts: QUOTE_BUSY_ATTEMPTS,
                ..
            }
        ));
        assert_eq!(calls, QUOTE_BUSY_ATTEMPTS);
        // 50+100+200+400+800 ms, then four capped 1 s pauses; none after the last attempt.
        assert_eq!(slept, Duration::from_millis(5550));
        assert!(
            QuoteError::from(err)
                .to_string()
                .contains("after 10 attempts")
        );
    }

    #[test]
    fn a_non_busy_failure_is_not_retried() {
        let mut calls = 0;
        let err = retry_while_busy(
            SgxIoctl::GenDcapQuote,
            || {
                calls += 1;
                Err(os(libc::EINVAL))
            },
            |_| panic!("must not sleep"),
        )
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(
            err,
            DeviceError::Rejected {
                op: SgxIoctl::GenDcapQuote,
                ..
            }
        ));
    }

    #[test]
    fn device_sizes_outside_the_bounds_are_refused() {
        let op = SgxIoctl::GetDcapQuoteSize;
        assert_eq!(checked_size(op, 4600, MAX_QUOTE_LEN).unwrap(), 4600);
        assert_eq!(checked_size(op, 65536, MAX_QUOTE_LEN).unwrap(), 65536);
        assert!(matches!(
            checked_size(op, 0, MAX_QUOTE_LEN),
            Err(DeviceError::BadSize { size: 0, .. })
        ));
        assert!(matches!(
            checked_size(op, 65537, MAX_QUOTE_LEN),
            Err(DeviceError::BadSize { size: 65537, .. })
        ));
        assert!(matches!(
            checked_size(op, u32::MAX, MAX_QUOTE_LEN),
            Err(DeviceError::BadSize { .. })
        ));
    }

    #[test]
    fn a_quote_carrying_the_requested_report_data_passes_the_check() {
        let mut quote = vec![0u8; 1000];
        let rd = [0x5a; 64];
        quote[368..432].copy_from_slice(&rd);
        assert!(check_quote(&quote, &rd).is_ok());
    }

    #[test]
    fn a_quote_with_other_report_data_is_refused() {
        let mut quote = vec![0u8; 1000];
        quote[368..432].copy_from_slice(&[0x5a; 64]);
        let mut rd = [0x5a; 64];
        rd[63] = 0x5b;
        assert!(matches!(
            check_quote(&quote, &rd),
            Err(DeviceError::BadQuote { .. })
        ));
    }

    #[test]
    fn a_quote_too_short_for_a_report_body_is_refused() {
        let rd = [0; 64];
        assert!(matches!(
            check_quote(&[0; 431], &rd),
            Err(DeviceError::BadQuote { .. })
        ));
        assert!(check_quote(&[0; 432], &rd).is_ok());
    }

    #[test]
    fn verification_results_round_trip_and_unknown_codes_survive() {
        for raw in [
            0, 0xA001, 0xA002, 0xA003, 0xA004, 0xA005, 0xA006, 0xA007, 0xA008, 0xA009, 7,
        ] {
            assert_eq!(QvResult::from_raw(raw).raw(), raw);
        }
        assert_eq!(QvResult::from_raw(0xA005), QvResult::Revoked);
        assert_eq!(QvResult::from_raw(0xA009), QvResult::Other(0xA009));
    }

    #[test]
    fn a_non_zero_expiration_status_means_expired_collateral() {
        let v = |s| QuoteVerification {
            result: QvResult::Ok,
            collateral_expiration_status: s,
            supplemental: vec![],
        };
        assert!(!v(0).collateral_expired());
        assert!(v(1).collateral_expired());
    }
}
