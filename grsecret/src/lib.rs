//! The `ratls.GrSecret` wire contract, in one place for its client (init) and its server (the
//! KMS): the method path, the one message shape `message { string field = 1; }`
//! (`SecretRequest.name`, `SecretReply.secret`), the secret's text forms (base64, bare or
//! inside JSON quotes as Occlum's server sends it), the size limits, and the request batch.
//!
//! - [`wire`]: protobuf wire-format primitives (varints, fields, skipping unknown fields).
//! - [`client`]: what init sends and how it reads a reply ([`client::decode_secret`]).
//! - [`server`]: what the KMS accepts ([`server::decode_name`]) and how it replies.
//!
//! No transport: `grpc-unary` carries these bytes as it would any service's, and the KMS
//! serves them over grpcio. Depends on std, zeroize and base64 alone, because it is linked into
//! the Occlum init and KMS and compiled by the fuzz targets (fuzz/) without either.

#![forbid(unsafe_code)]

pub mod client;
pub mod server;
pub mod wire;

/// gRPC method of Occlum's secret service.
pub const GET_SECRET: &str = "/ratls.GrSecret/GetSecret";
