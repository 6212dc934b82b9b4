//! The library behind the `init` binary: configuration, the KMS session, the image and the
//! boot sequence. `main.rs` only parses arguments and maps errors to exit codes; the library
//! form also lets the fuzz targets reach the parsers of what the KMS sends
//! (`image_key::ImageKey::parse`; the reply's codec is the `grsecret` crate's). Not a stable API.

#![forbid(unsafe_code)]

pub mod boot;
pub mod cli;
pub mod config;
pub mod error;
pub mod fsutil;
#[cfg(feature = "host-tools")]
pub mod image;
pub mod image_key;
pub mod kms;
pub mod modes;
pub mod steplog;
