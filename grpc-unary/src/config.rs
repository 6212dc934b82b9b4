//! Client configuration: one time budget per phase and the size limits applied to
//! everything the server sends. Built once with [`ClientConfig::builder`]; the defaults are
//! the production values.

use std::time::Duration;

/// Default budget for resolving the address and connecting TCP (all addresses together).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default budget for the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one unary call, sent to the server as `grpc-timeout`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest response message accepted: 4 MiB, gRPC's usual receive limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default largest decoded header list accepted (RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE,
/// counted as name + value + 32 per field): 16 KiB, as grpc-core.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Settings of a [`crate::Channel`]. `Default` gives the production values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    connect_timeout: Duration,
    handshake_timeout: Duration,
    call_timeout: Duration,
    max_message_size: usize,
    max_header_list_size: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
        }
    }
}

impl ClientConfig {
    /// Starts from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder(ClientConfig::default())
    }

    /// Budget for resolution plus TCP connect, across all resolved addresses.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Budget for the TLS handshake (and for closing). The HTTP/2 preface and the server's
    /// SETTINGS are exchanged within the first call's deadline.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Deadline of each unary call (every read and write of the call is bounded by it).
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Largest response message accepted, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Largest decoded response header list accepted (and advertised to the server).
    pub fn max_header_list_size(&self) -> u32 {
        self.max_header_list_size
    }
}

/// Builder for [`ClientConfig`]; every setter has a production default.
#[derive(Clone, Debug)]
pub struct ClientConfigBuilder(ClientConfig);

impl ClientConfigBuilder {
    /// Budget for resolution plus TCP connect (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// Budget for TLS plus the HTTP/2 preface (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.0.handshake_timeout = timeout;
        self
    }

    /// Deadline of each unary call (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.0.call_timeout = timeout;
        self
    }

    /// Largest response message accepted (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.0.max_message_size = bytes;
        self
    }

    /// Largest response header list accepted (default [`DEFAULT_MAX_HEADER_LIST_SIZE`]).
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.0.max_header_list_size = bytes;
        self
    }

    /// The finished configuration. A zero timeout is valid and means "already expired".
    pub fn build(self) -> ClientConfig {
        self.0
    }
}
