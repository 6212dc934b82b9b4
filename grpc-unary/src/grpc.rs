//! gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md): `grpc-timeout` encoding, the
//! length-prefixed message framing, and the response header fields the client reads.
//!
//! The response message reader refuses a message over the limit as soon as its 5-byte prefix
//! arrives, before buffering any of it, and allocates exactly the announced size once.

use std::time::Duration;

use zeroize::Zeroizing;

/// Length of the message prefix: compressed flag (1 byte) + big-endian length (4 bytes).
pub(crate) const PREFIX_LEN: usize = 5;

/// `grpc-timeout` value: at most 8 digits and a unit, rounded up so that the server never
/// sees a shorter deadline than the client's.
pub(crate) fn encode_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX}H")
}

/// The 5-byte prefix of a request message, or `None` if it does not fit in 32 bits.
pub(crate) fn message_prefix(len: usize) -> Option<[u8; PREFIX_LEN]> {
    let [a, b, c, d] = u32::try_from(len).ok()?.to_be_bytes();
    Some([0, a, b, c, d])
}

/// `application/grpc`, optionally followed by `+format` or `;params` (case-insensitive).
pub(crate) fn is_grpc_content_type(value: &[u8]) -> bool {
    const BASE: &[u8] = b"application/grpc";
    match value.split_at_checked(BASE.len()) {
        Some((head, rest)) => {
            head.eq_ignore_ascii_case(BASE)
                && matches!(rest.first(), None | Some(b'+') | Some(b';'))
        }
        None => false,
    }
}

/// `grpc-message` is percent-encoded UTF-8; invalid sequences are replaced, not rejected.
pub(crate) fn decode_grpc_message(value: &[u8]) -> String {
    percent_encoding::percent_decode(value)
        .decode_utf8_lossy()
        .into_owned()
}

/// A `grpc-status` value: ASCII decimal. Codes outside 0..=16 become UNKNOWN later.
pub(crate) fn parse_status(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Why the response body was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge { size: u64, limit: u64 },
    Compressed,
    BadFlag(u8),
    SecondMessage,
}

/// Reassembles the single message of a unary response from DATA payloads.
pub(crate) struct MessageReader {
    limit: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    expected: usize,
    body: Option<Zeroizing<Vec<u8>>>,
}

impl MessageReader {
    pub(crate) fn new(limit: usize) -> Self {
        MessageReader {
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            expected: 0,
            body: None,
        }
    }

    /// Feeds DATA bytes. Errors are final for the call.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> Result<(), BodyError> {
        while !data.is_empty() {
            if let Some(body) = &mut self.body {
                let room = self.expected - body.len();
                if room == 0 {
                    return Err(BodyError::SecondMessage);
                }
                let (take, rest) = data.split_at(room.min(data.len()));
                body.extend_from_slice(take);
                data = rest;
                continue;
            }
            let need = PREFIX_LEN - self.prefix_len;
            let (take, rest) = data.split_at(need.min(data.len()));
            if let Some(dst) = self
                .prefix
                .get_mut(self.prefix_len..self.prefix_len + take.len())
            {
                dst.copy_from_slice(take);
            }
            self.prefix_len += take.len();
            data = rest;
            if self.prefix_len == PREFIX_LEN {
                self.start_body()?;
            }
        }
        Ok(())
    }

    fn start_body(&mut self) -> Result<(), BodyError> {
        let [flag, a, b, c, d] = self.prefix;
        match flag {
            0 => {}
            1 => return Err(BodyError::Compressed),
            other => return Err(BodyError::BadFlag(other)),
        }
        let size = u32::from_be_bytes([a, b, c, d]);
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        if len > self.limit {
            return Err(BodyError::TooLarge {
                size: u64::from(size),
                limit: u64::try_from(self.limit).unwrap_or(u64::MAX),
            });
        }
        self.expected = len;
        self.body = Some(Zeroizing::new(Vec::with_capacity(len)));
        Ok(())
    }

    /// True once a message prefix has started arriving but the message is not complete.
    pub(crate) fn is_partial(&self) -> bool {
        match &self.body {
            Some(body) => body.len() < self.expected,
            None => self.prefix_len > 0,
        }
    }

    /// The complete message, if exactly one arrived.
    pub(crate) fn take(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        if self.is_partial() {
            return None;
        }
        self.body.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_use_the_finest_unit_that_fits_eight_digits() {
        assert_eq!(encode_timeout(Duration::from_millis(300)), "300000u");
        assert_eq!(
            encode_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(encode_timeout(Duration::from_secs(10)), "10000000u");
        assert_eq!(encode_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(encode_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(
            encode_timeout(Duration::from_secs(100_000_000 * 60)),
            "1666667H"
        );
        assert_eq!(encode_timeout(Duration::ZERO), "0n");
        assert_eq!(encode_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn timeouts_round_up_never_down() {
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_001)), "100001u");
    }

    #[test]
    fn grpc_content_types_are_recognised_and_others_refused() {
        for ok in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC;charset=x",
        ] {
            assert!(is_grpc_content_type(ok));
        }
        for bad in [
            &b"application/json"[..],
            b"application/grpcx",
            b"text/html",
            b"",
        ] {
            assert!(!is_grpc_content_type(bad));
        }
    }

    #[test]
    fn grpc_messages_are_percent_decoded_as_utf8() {
        assert_eq!(
            decode_grpc_message(b"no%20key%20for%20%E2%9C%93"),
            "no key for \u{2713}"
        );
        assert_eq!(decode_grpc_message(b"bad%FFbyte"), "bad\u{fffd}byte");
    }

    #[test]
    fn statuses_must_be_plain_decimal() {
        assert_eq!(parse_status(b"5"), Some(5));
        assert_eq!(parse_status(b"16"), Some(16));
        assert_eq!(parse_status(b"99"), Some(99));
        for bad in [&b""[..], b"-1", b"1 ", b"0x5", b"99999999999"] {
            assert_eq!(parse_status(bad), None);
        }
    }

    #[test]
    fn a_message_split_across_data_frames_is_reassembled() {
        let mut r = MessageReader::new(100);
        for chunk in [&b"\x00\x00"[..], b"\x00\x00\x05he", b"l", b"lo"] {
            r.push(chunk).unwrap();
        }
        assert!(!r.is_partial());
        assert_eq!(r.take().unwrap().as_slice(), b"hello");
    }

    #[test]
    fn an_oversize_message_is_refused_at_its_prefix() {
        let mut r = MessageReader::new(4);
        assert_eq!(
            r.push(b"\x00\x00\x00\x00\x05"),
            Err(BodyError::TooLarge { size: 5, limit: 4 })
        );
        let mut r = MessageReader::new(4);
        r.push(b"\x00\x00\x00\x00\x04").unwrap();
        assert_eq!(r.body.as_ref().unwrap().capacity(), 4);
    }

    #[test]
    fn compressed_and_unknown_flags_are_refused() {
        assert_eq!(
            MessageReader::new(10).push(b"\x01\x00\x00\x00\x00"),
            Err(BodyError::Compressed)
        );
        assert_eq!(
            MessageReader::new(10).push(b"\x02\x00\x00\x00\x00"),
            Err(BodyError::BadFlag(2))
        );
    }

    #[test]
    fn a_second_message_is_refused() {
        let mut r = MessageReader::new(10);
        assert_eq!(
            r.push(b"\x00\x00\x00\x00\x01a\x00"),
            Err(BodyError::SecondMessage)
        );
    }

    #[test]
    fn an_empty_message_is_complete_and_a_cut_one_is_partial() {
        let mut r = MessageReader::new(10);
        r.push(b"\x00\x00\x00\x00\x00").unwrap();
        assert_eq!(r.take().unwrap().len(), 0);
        let mut r = MessageReader::new(10);
        r.push(b"\x00\x00\x00\x00\x03ab").unwrap();
        assert!(r.is_partial());
        assert!(r.take().is_none());
    }
}
