//! Minimal blocking gRPC unary client: HTTP/2 (RFC 9113) over rustls, no async runtime.
//! It carries serialized messages as bytes for any service; the messages of this workspace's
//! service are the `grsecret` crate's.
//!
//! One obvious entry point: [`Channel::connect`] resolves, connects, completes a TLS
//! handshake that must select ALPN `h2`, and queues the HTTP/2 preface; then
//! [`Channel::unary`] makes calls one at a time over that one connection, and
//! [`Channel::unary_many`] makes several at once (concurrent streams, one round trip).
//! Every phase has its own time budget in [`ClientConfig`], every socket operation is
//! bounded by it, and everything the server sends is size-limited. Response messages are returned as
//! [`Zeroizing`](zeroize::Zeroizing) buffers and never logged: they carry secrets.
//!
//! ```no_run
//! # fn demo(tls: std::sync::Arc<rustls::ClientConfig>) -> Result<(), grpc_unary::Error> {
//! use grpc_unary::{Channel, ClientConfig};
//! use grsecret::{client, GET_SECRET};
//! let name = rustls_pki_types::ServerName::try_from("kms.example").unwrap();
//! let mut channel = Channel::connect("kms.example:4433", name, tls, &ClientConfig::default())?;
//! let reply = channel.unary(GET_SECRET, &client::encode_string_field1("image_key"))?;
//! let secret = client::decode_string_field1(&reply);
//! channel.close()?;
//! # drop(secret); Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod channel;
mod config;
mod conn;
mod error;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod hpack;

pub use channel::{Channel, Replies, resolve};
pub use config::{
    ClientConfig, ClientConfigBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HEADER_LIST_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use error::{Code, Error, ErrorCode, Phase};
