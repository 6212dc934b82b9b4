//! Attestation core: SGX DCAP quotes, RA-TLS certificates, the measurement policy, and the
//! verification pipeline that everything else in this project trusts.
//!
//! Untrusted bytes go through [`reader::Reader`]; verification is one linear pipeline in
//! [`verify`]; only that pipeline can construct a [`verify::VerifiedPeer`].

#![forbid(unsafe_code)]

pub mod anchor;
pub mod cert;
pub mod collateral;
pub mod danger;
pub mod policy;
pub mod quote;
pub mod reader;
pub mod tls;
pub mod verify;
