//! The enclave's own SGX sealing key through Occlum's `/dev/sgx` (`SGXIOC_GET_KEY`), for
//! `--seal-key enclave` / `enclave-signer`.
//!
//! The current CPUSVN and ISVSVN come from the enclave's own quote (a report of itself), so a
//! file is sealed for the TCB the KMS runs on now; the parameters are stored in the sealed
//! file's header so a later start derives the same key.

use occlum_dcap::{KeyPolicy, KeyRequest, OcclumDevice};
use quote_source::QuoteSource as _;
use ratls::quote::Quote;
use zeroize::Zeroizing;

use crate::seal::{EnclaveKeyParams, EnclaveKeys, EnclavePolicy, SealError};

/// Sealing keys from the enclave this process runs in.
pub struct OcclumEnclaveKeys {
    device: OcclumDevice,
}

impl OcclumEnclaveKeys {
    /// Opens `/dev/sgx`; fails outside an Occlum enclave.
    pub fn open() -> Result<OcclumEnclaveKeys, SealError> {
        let device = OcclumDevice::open().map_err(|e| SealError::EnclaveKey {
            detail: format!(
                "{e} (the enclave sealing key exists only inside an Occlum SGX enclave)"
            ),
        })?;
        Ok(OcclumEnclaveKeys { device })
    }
}

impl EnclaveKeys for OcclumEnclaveKeys {
    fn current_svns(&self) -> Result<([u8; 16], u16), SealError> {
        let quote = self
            .device
            .quote(&[0u8; 64])
            .map_err(|e| SealError::EnclaveKey {
                detail: format!("reading own report: {e}"),
            })?;
        let quote = Quote::parse(&quote).map_err(|e| SealError::EnclaveKey {
            detail: format!("reading own report: {e}"),
        })?;
        Ok((quote.body.cpu_svn, quote.body.isv_svn))
    }

    fn sealing_key(&self, params: &EnclaveKeyParams) -> Result<Zeroizing<[u8; 16]>, SealError> {
        let mut request = KeyRequest::seal_mrsigner(params.key_id, params.cpu_svn, params.isv_svn);
        request.key_policy = match params.policy {
            EnclavePolicy::MrEnclave => KeyPolicy::MRENCLAVE,
            EnclavePolicy::MrSigner => KeyPolicy::MRSIGNER,
        };
        self.device
            .get_key(&request)
            .map_err(|e| SealError::EnclaveKey {
                detail: format!("EGETKEY: {e}"),
            })
    }
}
