//! A simulated SGX DCAP platform for machines without SGX — never mistakable for hardware.
//!
//! [`SimPlatform::create`] writes a platform directory: a root CA whose subject says
//! SIMULATED, a PCK Processor CA and a PCK leaf carrying Intel's SGX extension, a TCB signing
//! certificate, TCB info v3 and QE identity v2 signed over their exact bytes, both CRLs, an
//! attestation key and a QE report signed by the PCK key. [`SimPlatform::quote`] then signs
//! quotes v3 exactly as the hardware's quoting enclave does, so the real verifier (dcap-qvl)
//! accepts them under the simulated root — and only under it: Intel's root rejects them.
//! The PKI and collateral follow Intel's profiles closely enough that Intel's reference Quote
//! Verification Library returns STATUS_OK for every part under the simulated root
//! (`tests/qvl_oracle.rs` runs it beside ratls as an independent oracle).
//! [`pccs::Pccs`] serves the collateral as a PCCS v4 on loopback.
//!
//! Knobs for negative tests: the platform's TCB status and advisories, a revoked PCK leaf,
//! and the collateral's validity window. `--seed` makes every key reproducible.

#![forbid(unsafe_code)]

pub mod collateral;
mod error;
pub mod files;
pub mod identity;
mod keys;
pub mod occlum_form;
pub mod pccs;
mod pem;
pub mod pki;
pub mod platform;
mod source;
pub mod timefmt;

pub use collateral::TcbStatus;
pub use error::SimError;
pub use identity::{Identity, IdentityError};
pub use platform::{PlatformOptions, SIMULATED_NOTICE, SimPlatform};
pub use source::SimQuoteSource;
