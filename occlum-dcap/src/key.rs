//! SGX key requests (EGETKEY's KEYREQUEST) for Occlum's `SGXIOC_GET_KEY`.
//!
//! [`KeyRequest`] is the safe, typed form of Intel's `sgx_key_request_t`; it converts to the
//! 512-byte C struct with every reserved byte zero. The request itself is not secret (its
//! `key_id` is normally stored next to sealed data); the key it derives is.

use std::ops::BitOr;

use crate::sys;

/// Which key EGETKEY derives (`SGX_KEYSELECT_*`, Intel SDK `sgx_key.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum KeyName {
    /// `SGX_KEYSELECT_EINITTOKEN` (launch enclaves only).
    EinitToken = 0x0000,
    /// `SGX_KEYSELECT_PROVISION` (needs the PROVISION_KEY attribute).
    Provision = 0x0001,
    /// `SGX_KEYSELECT_PROVISION_SEAL` (needs the PROVISION_KEY attribute).
    ProvisionSeal = 0x0002,
    /// `SGX_KEYSELECT_REPORT`: the key that MACs reports targeted at this enclave.
    Report = 0x0003,
    /// `SGX_KEYSELECT_SEAL`: the sealing key.
    Seal = 0x0004,
}

/// Which identity a key is bound to (`SGX_KEYPOLICY_*`, Intel SDK `sgx_key.h`); combine with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPolicy(u16);

impl KeyPolicy {
    /// `SGX_KEYPOLICY_MRENCLAVE`: bound to this exact enclave build.
    pub const MRENCLAVE: Self = Self(0x0001);
    /// `SGX_KEYPOLICY_MRSIGNER`: bound to the signer (and product ID); survives upgrades.
    pub const MRSIGNER: Self = Self(0x0002);
    /// `SGX_KEYPOLICY_NOISVPRODID` (KSS): leave ISVPRODID out of the derivation.
    pub const NOISVPRODID: Self = Self(0x0004);
    /// `SGX_KEYPOLICY_CONFIGID` (KSS): include CONFIGID.
    pub const CONFIGID: Self = Self(0x0008);
    /// `SGX_KEYPOLICY_ISVFAMILYID` (KSS): include ISVFAMILYID.
    pub const ISVFAMILYID: Self = Self(0x0010);
    /// `SGX_KEYPOLICY_ISVEXTPRODID` (KSS): include ISVEXTPRODID.
    pub const ISVEXTPRODID: Self = Self(0x0020);

    /// The raw `key_policy` bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl BitOr for KeyPolicy {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The SDK's default ATTRIBUTES mask for sealing, `TSEAL_DEFAULT_FLAGSMASK`: every flag bit
/// except those with no security meaning (reserved bits 6..=55, MODE64BIT, PROVISION_KEY,
/// EINITTOKEN_KEY; `tseal_migration_attr.h`). Occlum's own auto-key uses the same mask.
pub const TSEAL_DEFAULT_FLAGSMASK: u64 = !(0x00FF_FFFF_FFFF_FFC0
    | SGX_FLAGS_MODE64BIT
    | SGX_FLAGS_PROVISION_KEY
    | SGX_FLAGS_EINITTOKEN_KEY);

/// The SDK's default MISCSELECT mask for sealing, `TSEAL_DEFAULT_MISCMASK`: bits 0..=27 have
/// no security meaning (`tseal_migration_attr.h`).
pub const TSEAL_DEFAULT_MISCMASK: u32 = !0x0FFF_FFFF;

/// `SGX_FLAGS_MODE64BIT` (`sgx_attributes.h`).
const SGX_FLAGS_MODE64BIT: u64 = 0x04;
/// `SGX_FLAGS_PROVISION_KEY` (`sgx_attributes.h`).
const SGX_FLAGS_PROVISION_KEY: u64 = 0x10;
/// `SGX_FLAGS_EINITTOKEN_KEY` (`sgx_attributes.h`).
const SGX_FLAGS_EINITTOKEN_KEY: u64 = 0x20;

/// A key request, the typed form of `sgx_key_request_t`.
///
/// EGETKEY refuses (and Occlum reports `EINVAL`) when `cpu_svn`, `isv_svn` or `config_svn`
/// exceed the enclave's current values. Passing the enclave's current values (from its own
/// report) binds the key to the current TCB; lower values derive a key that older enclave
/// versions or TCBs can derive too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// Which key.
    pub key_name: KeyName,
    /// Which identity it is bound to.
    pub key_policy: KeyPolicy,
    /// ISVSVN to derive for.
    pub isv_svn: u16,
    /// CPUSVN to derive for.
    pub cpu_svn: [u8; 16],
    /// ATTRIBUTES.FLAGS bits that enter the derivation.
    pub attribute_mask_flags: u64,
    /// ATTRIBUTES.XFRM bits that enter the derivation.
    pub attribute_mask_xfrm: u64,
    /// Key wear-out protection value; store it to derive the same key again.
    pub key_id: [u8; 32],
    /// MISCSELECT bits that enter the derivation.
    pub misc_mask: u32,
    /// CONFIGSVN to derive for (KSS; `occlum run --config-svn`).
    pub config_svn: u16,
}

impl KeyRequest {
    /// The common sealing request: `SGX_KEYSELECT_SEAL` under `SGX_KEYPOLICY_MRSIGNER`, with
    /// the SDK's default attribute and misc masks (as `sgx_seal_data` and Occlum's own
    /// auto-key use), XFRM not bound, and CONFIGSVN 0.
    ///
    /// The same `key_id`, `cpu_svn` and `isv_svn` give the same key to every enclave from the
    /// same signer and product ID.
    pub fn seal_mrsigner(key_id: [u8; 32], cpu_svn: [u8; 16], isv_svn: u16) -> Self {
        Self {
            key_name: KeyName::Seal,
            key_policy: KeyPolicy::MRSIGNER,
            isv_svn,
            cpu_svn,
            attribute_mask_flags: TSEAL_DEFAULT_FLAGSMASK,
            attribute_mask_xfrm: 0,
            key_id,
            misc_mask: TSEAL_DEFAULT_MISCMASK,
            config_svn: 0,
        }
    }

    /// The 512-byte C struct, reserved fields zero.
    pub(crate) fn to_raw(&self) -> sys::SgxKeyRequest {
        sys::SgxKeyRequest {
            key_name: self.key_name as u16,
            key_policy: self.key_policy.bits(),
            isv_svn: self.isv_svn,
            reserved1: 0,
            cpu_svn: self.cpu_svn,
            attribute_mask: sys::SgxAttributes {
                flags: self.attribute_mask_flags,
                xfrm: self.attribute_mask_xfrm,
            },
            key_id: self.key_id,
            misc_mask: self.misc_mask,
            config_svn: self.config_svn,
            reserved2: [0; sys::KEY_REQUEST_RESERVED2_BYTES],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_seal_masks_match_the_intel_sdk() {
        // ~(0xFFFFFFFFFFFFC0 | MODE64BIT | PROVISION_KEY | EINITTOKEN_KEY): INITTED, DEBUG,
        // bit 3 and the top byte stay bound.
        assert_eq!(TSEAL_DEFAULT_FLAGSMASK, 0xFF00_0000_0000_000B);
        assert_eq!(TSEAL_DEFAULT_MISCMASK, 0xF000_0000);
    }

    #[test]
    fn a_seal_mrsigner_request_fills_the_c_struct_as_the_sdk_does() {
        let raw = KeyRequest::seal_mrsigner([7; 32], [9; 16], 3).to_raw();
        assert_eq!(raw.key_name, 0x0004, "SGX_KEYSELECT_SEAL");
        assert_eq!(raw.key_policy, 0x0002, "SGX_KEYPOLICY_MRSIGNER");
        assert_eq!(raw.isv_svn, 3);
        assert_eq!(raw.reserved1, 0);
        assert_eq!(raw.cpu_svn, [9; 16]);
        assert_eq!(raw.attribute_mask.flags, 0xFF00_0000_0000_000B);
        assert_eq!(raw.attribute_mask.xfrm, 0);
        assert_eq!(raw.key_id, [7; 32]);
        assert_eq!(raw.misc_mask, 0xF000_0000);
        assert_eq!(raw.config_svn, 0);
        assert!(raw.reserved2.iter().all(|&b| b == 0));
    }

    #[test]
    fn policies_combine_bitwise() {
        assert_eq!(
            (KeyPolicy::MRSIGNER | KeyPolicy::NOISVPRODID).bits(),
            0x0006
        );
        assert_eq!((KeyPolicy::MRENCLAVE | KeyPolicy::CONFIGID).bits(), 0x0009);
        assert_eq!(
            KeyPolicy::ISVFAMILYID.bits() | KeyPolicy::ISVEXTPRODID.bits(),
            0x0030
        );
    }

    #[test]
    fn key_names_have_the_sdk_values() {
        let names = [
            (KeyName::EinitToken, 0),
            (KeyName::Provision, 1),
            (KeyName::ProvisionSeal, 2),
            (KeyName::Report, 3),
            (KeyName::Seal, 4),
        ];
        for (name, value) in names {
            let mut req = KeyRequest::seal_mrsigner([0; 32], [0; 16], 0);
            req.key_name = name;
            assert_eq!(req.to_raw().key_name, value, "{name:?}");
        }
    }
}
