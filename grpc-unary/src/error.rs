//! Errors of the gRPC unary client: one enum whose variants carry the context needed to act
//! on a failure (which phase, which code), plus the gRPC status codes and HTTP/2 error codes.
//!
//! No variant ever holds request or response payload bytes: those may be secrets.

use std::fmt;
use std::io;
use std::time::Duration;

/// What the client was doing when an error happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the address and establishing the TCP connection.
    Connect {
        /// The `host:port` given to [`crate::Channel::connect`].
        addr: String,
    },
    /// The TLS handshake (the HTTP/2 preface leaves with the first call).
    Handshake,
    /// A unary call.
    Call {
        /// The gRPC method path, e.g. `/ratls.GrSecret/GetSecret`.
        path: String,
    },
    /// Closing the channel (GOAWAY and TLS close_notify).
    Close,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Connect { addr } => write!(f, "connect to {addr}"),
            Phase::Handshake => f.write_str("tls/http2 handshake"),
            Phase::Call { path } => write!(f, "call to {path}"),
            Phase::Close => f.write_str("close"),
        }
    }
}

/// Everything that can go wrong with a [`crate::Channel`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No resolved address of `addr` accepted a TCP connection.
    Connect {
        /// The `host:port` given to [`crate::Channel::connect`].
        addr: String,
        /// The error of the last address tried (or of name resolution).
        source: io::Error,
    },
    /// A socket read or write failed after the TCP connection was up.
    Io {
        /// What the client was doing.
        phase: Phase,
        /// The underlying error.
        source: io::Error,
    },
    /// The peer closed the connection (TCP FIN or TLS close_notify) while more was expected.
    ConnectionClosed {
        /// What the client was doing.
        phase: Phase,
    },
    /// rustls refused the peer (certificate verification, alert, bad record...).
    Tls {
        /// What the client was doing.
        phase: Phase,
        /// The rustls error.
        source: rustls::Error,
    },
    /// The TLS handshake succeeded but the peer cannot be used as an HTTP/2 server (it did
    /// not select ALPN `h2`). A server whose first frame is not SETTINGS fails the first call
    /// with [`Error::Protocol`].
    Handshake {
        /// What was wrong.
        detail: String,
    },
    /// A phase's deadline passed.
    Timeout {
        /// The phase whose deadline passed.
        phase: Phase,
        /// The configured time budget of that phase.
        after: Duration,
    },
    /// The peer broke the HTTP/2 or gRPC protocol. For connection-level violations the
    /// channel sent GOAWAY with `code` and cannot be used any more.
    Protocol {
        /// The HTTP/2 error code describing the violation.
        code: ErrorCode,
        /// What was wrong.
        detail: String,
    },
    /// The server sent GOAWAY: the call was not (or not completely) processed, and the
    /// channel accepts no new calls.
    GoAway {
        /// The HTTP/2 error code of the GOAWAY.
        code: ErrorCode,
        /// The highest stream id the server may have processed.
        last_stream_id: u32,
        /// The server's debug data (lossy UTF-8, truncated).
        debug: String,
    },
    /// The server reset the call's stream (RST_STREAM).
    Reset {
        /// The HTTP/2 error code of the RST_STREAM.
        code: ErrorCode,
    },
    /// The server answered with a non-OK gRPC status.
    Status {
        /// The gRPC status code.
        code: Code,
        /// The percent-decoded `grpc-message` (empty if absent).
        message: String,
    },
    /// The server answered with an HTTP status other than 200 and no gRPC status.
    HttpStatus {
        /// The HTTP `:status`.
        status: u16,
    },
    /// A message is larger than the configured (or the protocol's) limit.
    MessageTooLarge {
        /// The announced size of the message in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The call cannot be expressed (bad path, header list over the peer's limit...).
    InvalidRequest {
        /// What was wrong.
        detail: String,
    },
    /// A previous failure left the channel unusable; open a new one.
    Unusable {
        /// Why the channel is unusable.
        reason: String,
    },
    /// A protobuf message could not be decoded. This crate carries bytes and never decodes a
    /// message: the caller's codec (init's, `grsecret`) reports its failures through it.
    Decode {
        /// What was wrong.
        detail: &'static str,
    },
}

impl Error {
    /// The gRPC status code this error corresponds to, following gRPC's
    /// `PROTOCOL-HTTP2.md` and `http-grpc-status-mapping.md`, where one applies.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::HttpStatus { status } => Some(Code::from_http_status(*status)),
            Error::Reset { code } => code.grpc_code(),
            Error::Timeout {
                phase: Phase::Call { .. },
                ..
            } => Some(Code::DeadlineExceeded),
            Error::GoAway { .. }
            | Error::Connect { .. }
            | Error::ConnectionClosed { .. }
            | Error::Timeout { .. } => Some(Code::Unavailable),
            Error::MessageTooLarge { .. } => Some(Code::ResourceExhausted),
            Error::Protocol { .. } => Some(Code::Internal),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source } => write!(f, "connect to {addr}: {source}"),
            Error::Io { phase, source } => write!(f, "{phase}: i/o error: {source}"),
            Error::ConnectionClosed { phase } => {
                write!(f, "{phase}: connection closed by peer")?;
                if *phase == Phase::Handshake {
                    // TLS 1.3 servers judge the client certificate after the client's
                    // handshake is done; some then hang up without an alert.
                    f.write_str(" (it may have rejected the client certificate)")?;
                }
                Ok(())
            }
            Error::Tls { phase, source } => write!(f, "{phase}: tls: {source}"),
            Error::Handshake { detail } => write!(f, "http2 handshake: {detail}"),
            Error::Timeout { phase, after } => write!(f, "{phase}: timed out after {after:?}"),
            Error::Protocol { code, detail } => {
                write!(f, "protocol violation by server ({code}): {detail}")
            }
            Error::GoAway {
                code,
                last_stream_id,
                debug,
            } => {
                write!(
                    f,
                    "server is going away ({code}, last stream {last_stream_id})"
                )?;
                if !debug.is_empty() {
                    write!(f, ": {debug}")?;
                }
                Ok(())
            }
            Error::Reset { code } => write!(f, "stream reset by server: {code}"),
            Error::Status { code, message } => {
                write!(f, "grpc status {code}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Error::HttpStatus { status } => {
                write!(f, "server answered http status {status} instead of 200")
            }
            Error::MessageTooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Error::InvalidRequest { detail } => write!(f, "invalid request: {detail}"),
            Error::Unusable { reason } => write!(f, "channel unusable: {reason}"),
            Error::Decode { detail } => write!(f, "protobuf decode: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Tls { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// gRPC status codes (`grpc/doc/statuscodes.md`): all 17 of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    /// 0: not an error.
    Ok = 0,
    /// 1: the operation was cancelled.
    Cancelled = 1,
    /// 2: unknown error.
    Unknown = 2,
    /// 3: the client specified an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// 5: some requested entity was not found.
    NotFound = 5,
    /// 6: the entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// 7: the caller does not have permission.
    PermissionDenied = 7,
    /// 8: some resource has been exhausted.
    ResourceExhausted = 8,
    /// 9: the system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// 10: the operation was aborted.
    Aborted = 10,
    /// 11: the operation was attempted past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or supported.
    Unimplemented = 12,
    /// 13: internal error.
    Internal = 13,
    /// 14: the service is currently unavailable.
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the request lacks valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// The code for a numeric `grpc-status`; numbers outside 0..=16 are `Unknown`, as the
    /// gRPC specification requires.
    pub fn from_u32(value: u32) -> Code {
        match value {
            0 => Code::Ok,
            1 => Code::Cancelled,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            15 => Code::DataLoss,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }

    /// The code gRPC clients derive from an HTTP status when no `grpc-status` was sent
    /// (`grpc/doc/http-grpc-status-mapping.md`).
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The canonical upper-case name, e.g. `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), *self as u8)
    }
}

/// An HTTP/2 error code (RFC 9113 section 7), as carried by RST_STREAM and GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Graceful shutdown / no error.
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    /// Protocol error detected.
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x1);
    /// Implementation fault.
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x2);
    /// Flow-control limits exceeded.
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x3);
    /// Settings not acknowledged.
    pub const SETTINGS_TIMEOUT: ErrorCode = ErrorCode(0x4);
    /// Frame received for a closed stream.
    pub const STREAM_CLOSED: ErrorCode = ErrorCode(0x5);
    /// Frame size incorrect.
    pub const FRAME_SIZE_ERROR: ErrorCode = ErrorCode(0x6);
    /// Stream not processed.
    pub const REFUSED_STREAM: ErrorCode = ErrorCode(0x7);
    /// Stream cancelled.
    pub const CANCEL: ErrorCode = ErrorCode(0x8);
    /// Compression state not updated.
    pub const COMPRESSION_ERROR: ErrorCode = ErrorCode(0x9);
    /// TCP connection error for CONNECT method.
    pub const CONNECT_ERROR: ErrorCode = ErrorCode(0xa);
    /// Processing capacity exceeded.
    pub const ENHANCE_YOUR_CALM: ErrorCode = ErrorCode(0xb);
    /// Negotiated TLS parameters not acceptable.
    pub const INADEQUATE_SECURITY: ErrorCode = ErrorCode(0xc);
    /// Use HTTP/1.1 for the request.
    pub const HTTP_1_1_REQUIRED: ErrorCode = ErrorCode(0xd);

    /// The registered name, if the code is one of RFC 9113's.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        usize::try_from(self.0)
            .ok()
            .and_then(|i| NAMES.get(i))
            .copied()
    }

    /// The gRPC code a client reports for a stream reset with this code
    /// (`grpc/doc/PROTOCOL-HTTP2.md`, "Errors"); `None` for codes without a mapping.
    pub fn grpc_code(self) -> Option<Code> {
        match self {
            ErrorCode::NO_ERROR
            | ErrorCode::PROTOCOL_ERROR
            | ErrorCode::INTERNAL_ERROR
            | ErrorCode::FLOW_CONTROL_ERROR
            | ErrorCode::SETTINGS_TIMEOUT
            | ErrorCode::FRAME_SIZE_ERROR
            | ErrorCode::COMPRESSION_ERROR
            | ErrorCode::CONNECT_ERROR => Some(Code::Internal),
            ErrorCode::REFUSED_STREAM => Some(Code::Unavailable),
            ErrorCode::CANCEL => Some(Code::Cancelled),
            ErrorCode::ENHANCE_YOUR_CALM => Some(Code::ResourceExhausted),
            ErrorCode::INADEQUATE_SECURITY => Some(Code::PermissionDenied),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown error code {:#x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_round_trips_through_its_number() {
        for n in 0..=16u32 {
            assert_eq!(Code::from_u32(n) as u32, n);
        }
        assert_eq!(Code::from_u32(17), Code::Unknown);
        assert_eq!(Code::from_u32(u32::MAX), Code::Unknown);
    }

    #[test]
    fn http2_error_codes_have_names_and_unknown_ones_show_their_number() {
        assert_eq!(ErrorCode::CANCEL.to_string(), "CANCEL");
        assert_eq!(ErrorCode(0xd).to_string(), "HTTP_1_1_REQUIRED");
        assert_eq!(ErrorCode(0x42).to_string(), "unknown error code 0x42");
    }

    #[test]
    fn resets_map_to_grpc_codes_as_the_grpc_spec_says() {
        assert_eq!(
            ErrorCode::REFUSED_STREAM.grpc_code(),
            Some(Code::Unavailable)
        );
        assert_eq!(ErrorCode::CANCEL.grpc_code(), Some(Code::Cancelled));
        assert_eq!(
            ErrorCode::ENHANCE_YOUR_CALM.grpc_code(),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(ErrorCode::STREAM_CLOSED.grpc_code(), None);
    }
}
