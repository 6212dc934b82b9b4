//! `libocclum_dcap.so` for machines without SGX: the C API of Occlum's
//! `tools/toolchains/dcap_lib/inc/occlum_dcap.h` backed by this project's simulated platform.
//!
//! Occlum's C++ `grpc_ratls` (its gRPC 1.38 patch, `sgx_ra_tls_occlum.cc`) makes and checks
//! quotes through this API, which Occlum's own library implements with ioctls on `/dev/sgx`.
//! This one quotes as a configured `sgx-sim` enclave identity on a `sgx-sim` platform and
//! verifies quotes with `ratls`'s DCAP step (dcap-qvl) under that platform's SIMULATED root and
//! collateral. It exists only so `tests/occlum-cpp/interop.sh` can run Occlum's unmodified C++
//! client and server against the KMS and init; it is not part of the workspace and never part
//! of an Occlum build.
//!
//! Configuration (read once per `dcap_quote_open`, from the environment of the test process):
//! - `OCCLUM_DCAP_SIM_PLATFORM`: an `sgx-sim` platform directory (`sgx-sim create-platform`);
//! - `OCCLUM_DCAP_SIM_IDENTITY`: an `sgx-sim` identity JSON (what this process's quotes claim).
//!
//! Without them `dcap_quote_open` returns NULL and every call fails. Verification fails
//! closed: anything but a verified quote returns non-zero (Occlum's C++ code only prints the
//! `sgx_ql_qv_result_t`, it acts on the return value alone; see the interop README).
//!
//! `unsafe` is confined to turning the C caller's pointers into slices, each checked for NULL
//! and length first; this crate is test tooling outside the workspace's `forbid(unsafe_code)`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sgx_sim::{Identity, SimPlatform};

/// `SGX_QL_QV_RESULT_*` (Intel's `sgx_qve_header.h`).
const QV_OK: u32 = 0x0000;
const QV_CONFIG_NEEDED: u32 = 0xA001;
const QV_OUT_OF_DATE: u32 = 0xA002;
const QV_OUT_OF_DATE_CONFIG_NEEDED: u32 = 0xA003;
const QV_INVALID_SIGNATURE: u32 = 0xA004;
const QV_REVOKED: u32 = 0xA005;
const QV_SW_HARDENING_NEEDED: u32 = 0xA007;
const QV_CONFIG_AND_SW_HARDENING_NEEDED: u32 = 0xA008;

/// Occlum's `dcap_get_supplemental_data_size` reports what its ioctl says (the QVL's
/// supplemental data size); the C++ caller only allocates and zeroes the buffer and never reads
/// it. We write nothing into it.
const SUPPLEMENTAL_LEN: u32 = 64;

/// The handle behind `void *`.
struct Handle {
    platform: SimPlatform,
    identity: Identity,
    quote_len: u32,
}

fn log(msg: &str) {
    eprintln!("[occlum-dcap-sim] SIMULATED SGX: {msg}");
}

fn open() -> Result<Handle, String> {
    let dir = std::env::var_os("OCCLUM_DCAP_SIM_PLATFORM")
        .map(PathBuf::from)
        .ok_or("OCCLUM_DCAP_SIM_PLATFORM is not set (an sgx-sim platform directory)")?;
    let id_path = std::env::var_os("OCCLUM_DCAP_SIM_IDENTITY")
        .map(PathBuf::from)
        .ok_or("OCCLUM_DCAP_SIM_IDENTITY is not set (an sgx-sim identity JSON file)")?;
    let platform = SimPlatform::open(&dir)
        .map_err(|e| format!("OCCLUM_DCAP_SIM_PLATFORM={}: {e}", dir.display()))?;
    let identity = Identity::load(&id_path)
        .map_err(|e| format!("OCCLUM_DCAP_SIM_IDENTITY={}: {e}", id_path.display()))?;
    // The sim's quotes have one length per platform (its PCK chain is fixed).
    let probe = platform
        .quote(&identity, &[0u8; 64])
        .map_err(|e| format!("quoting on {}: {e}", dir.display()))?;
    let quote_len =
        u32::try_from(probe.len()).map_err(|_| format!("quote of {} bytes", probe.len()))?;
    Ok(Handle {
        platform,
        identity,
        quote_len,
    })
}

/// # Safety
/// `handle` is NULL or a live handle from `dcap_quote_open`.
unsafe fn handle_ref<'a>(handle: *mut std::ffi::c_void) -> Option<&'a Handle> {
    if handle.is_null() {
        log("called with a NULL handle (dcap_quote_open failed)");
        return None;
    }
    // SAFETY: non-NULL handles come only from `dcap_quote_open` (Box::into_raw) and live
    // until `dcap_quote_close`; Occlum's code uses each handle on one thread.
    Some(unsafe { &*(handle as *const Handle) })
}

#[unsafe(no_mangle)]
pub extern "C" fn dcap_quote_open() -> *mut std::ffi::c_void {
    match open() {
        Ok(h) => Box::into_raw(Box::new(h)) as *mut std::ffi::c_void,
        Err(e) => {
            log(&format!("dcap_quote_open failed: {e}"));
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `handle` is NULL or a live handle from `dcap_quote_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dcap_get_quote_size(handle: *mut std::ffi::c_void) -> u32 {
    // SAFETY: the caller's contract above.
    unsafe { handle_ref(handle) }.map_or(0, |h| h.quote_len)
}

/// # Safety
/// `handle` is NULL or a live handle; `quote_buf` holds `dcap_get_quote_size()` bytes;
/// `report_data` points at 64 bytes (`sgx_report_data_t`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dcap_generate_quote(
    handle: *mut std::ffi::c_void,
    quote_buf: *mut u8,
    report_data: *const u8,
) -> i32 {
    // SAFETY: the caller's contract above.
    let Some(h) = (unsafe { handle_ref(handle) }) else {
        return -1;
    };
    if quote_buf.is_null() || report_data.is_null() {
        log("dcap_generate_quote: NULL buffer or report data");
        return -1;
    }
    let mut rd = [0u8; 64];
    // SAFETY: `report_data` points at an `sgx_report_data_t` (64 bytes) per the C API.
    rd.copy_from_slice(unsafe { std::slice::from_raw_parts(report_data, 64) });
    let quote = match h.platform.quote(&h.identity, &rd) {
        Ok(q) => q,
        Err(e) => {
            log(&format!("dcap_generate_quote: {e}"));
            return -1;
        }
    };
    if quote.len() != h.quote_len as usize {
        log(&format!(
            "dcap_generate_quote: quote is {} bytes, dcap_get_quote_size said {}",
            quote.len(),
            h.quote_len
        ));
        return -1;
    }
    // SAFETY: the C API's contract: `quote_buf` holds dcap_get_quote_size() bytes.
    unsafe { std::slice::from_raw_parts_mut(quote_buf, quote.len()) }.copy_from_slice(&quote);
    0
}

/// # Safety
/// `handle` is NULL or a live handle from `dcap_quote_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dcap_get_supplemental_data_size(handle: *mut std::ffi::c_void) -> u32 {
    // SAFETY: the caller's contract above.
    unsafe { handle_ref(handle) }.map_or(0, |_| SUPPLEMENTAL_LEN)
}

fn qv_result(tcb_status: &str) -> u32 {
    match tcb_status {
        "UpToDate" => QV_OK,
        "ConfigurationNeeded" => QV_CONFIG_NEEDED,
        "OutOfDate" => QV_OUT_OF_DATE,
        "OutOfDateConfigurationNeeded" => QV_OUT_OF_DATE_CONFIG_NEEDED,
        "SWHardeningNeeded" => QV_SW_HARDENING_NEEDED,
        "ConfigurationAndSWHardeningNeeded" => QV_CONFIG_AND_SW_HARDENING_NEEDED,
        "Revoked" => QV_REVOKED,
        _ => QV_INVALID_SIGNATURE,
    }
}

/// # Safety
/// `handle` is NULL or a live handle; `quote_buf` holds `quote_size` bytes; the two result
/// pointers are NULL or writable `uint32_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dcap_verify_quote(
    handle: *mut std::ffi::c_void,
    quote_buf: *const u8,
    quote_size: u32,
    collateral_expiration_status: *mut u32,
    quote_verification_result: *mut u32,
    _supplemental_data_size: u32,
    _supplemental_data: *mut u8,
) -> i32 {
    // SAFETY: the caller's contract above.
    let Some(h) = (unsafe { handle_ref(handle) }) else {
        return -1;
    };
    if quote_buf.is_null()
        || collateral_expiration_status.is_null()
        || quote_verification_result.is_null()
    {
        log("dcap_verify_quote: NULL argument");
        return -1;
    }
    // SAFETY: the caller passes the quote it extracted and its length.
    let quote = unsafe { std::slice::from_raw_parts(quote_buf, quote_size as usize) };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let anchor = ratls::danger::simulated_root(
        h.platform.root_ca_der().to_vec(),
        format!("SIMULATED root of {}", h.platform.dir().display()),
    );
    let outcome = ratls::verify::dcap_verify(&anchor, quote, &h.platform.collateral(), now, 0);
    let (ret, result, expired) = match outcome {
        Ok(v) => {
            log(&format!(
                "dcap_verify_quote: verified under the SIMULATED root, TCB status {}",
                v.tcb_status
            ));
            (0, qv_result(&v.tcb_status), 0)
        }
        Err(e) => {
            log(&format!("dcap_verify_quote: REJECTED: {e}"));
            let result = if e.check() == "revocation" {
                QV_REVOKED
            } else {
                QV_INVALID_SIGNATURE
            };
            let expired = u32::from(e.check() == "collateral-expiry");
            (-1, result, expired)
        }
    };
    // SAFETY: both are out-parameters of the caller, checked non-NULL above.
    unsafe {
        *collateral_expiration_status = expired;
        *quote_verification_result = result;
    }
    ret
}

/// # Safety
/// `handle` is NULL or a handle from `dcap_quote_open`, not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dcap_quote_close(handle: *mut std::ffi::c_void) {
    if !handle.is_null() {
        // SAFETY: `handle` came from `dcap_quote_open`'s Box::into_raw and is closed once.
        drop(unsafe { Box::from_raw(handle as *mut Handle) });
    }
}
