//! Protobuf wire-format primitives (<https://protobuf.dev/programming-guides/encoding/>):
//! varints, field keys, length-delimited fields, and skipping unknown fields by wire type.
//! [`client`](crate::client) and [`server`](crate::server) build the messages on them; they
//! are public for the tests that hand-craft messages.
//!
//! Every read is bounded by what is left of the message and fails with a [`WireError`]
//! instead of panicking. Depends on std alone.

use std::fmt;

/// Longest varint: 10 bytes encode 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// Wire types (protobuf encoding guide).
pub const WIRE_VARINT: u64 = 0;
pub const WIRE_I64: u64 = 1;
pub const WIRE_LEN: u64 = 2;
pub const WIRE_START_GROUP: u64 = 3;
pub const WIRE_END_GROUP: u64 = 4;
pub const WIRE_I32: u64 = 5;

/// A message that is not valid protobuf wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// A varint (`what` names it) ends with the message.
    TruncatedVarint { what: &'static str },
    /// A length-delimited or fixed-size field (`what` names it) runs past the end.
    TruncatedField { what: &'static str },
    /// A varint longer than [`MAX_VARINT_LEN`] bytes.
    VarintTooLong,
    /// A 10-byte varint whose last byte carries more than the 64th bit.
    VarintOverflow,
    /// Wire type 3 or 4 (groups, deprecated).
    Group { field: u64 },
    /// Wire type 6 or 7 (undefined).
    BadWireType { field: u64, wire_type: u64 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedVarint { what } => write!(f, "truncated varint ({what})"),
            Self::TruncatedField { what } => write!(f, "{what} runs past the end of the message"),
            Self::VarintTooLong => write!(f, "varint longer than {MAX_VARINT_LEN} bytes"),
            Self::VarintOverflow => write!(f, "varint overflows 64 bits"),
            Self::Group { field } => write!(f, "field {field} is a group (unsupported)"),
            Self::BadWireType { field, wire_type } => {
                write!(f, "field {field} has undefined wire type {wire_type}")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Appends `value` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends field `field` as a length-delimited field (key, length, bytes), even when `bytes`
/// is empty (proto3 encoders omit empty defaults: callers decide).
pub fn put_len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A forward-only cursor over one message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(message: &'a [u8]) -> Self {
        Reader { buf: message }
    }

    /// Whether the whole message has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads a varint; `what` names it in errors.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or(WireError::TruncatedVarint { what })?;
            self.buf = rest;
            let bits = u64::from(byte & 0x7f);
            // The 10th byte may only carry the 64th bit.
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// Reads a field key: `(field number, wire type)`. The field number is not checked.
    pub fn key(&mut self) -> Result<(u64, u64), WireError> {
        let key = self.varint("field key")?;
        Ok((key >> 3, key & 7))
    }

    /// The next `len` bytes; `what` names them in errors.
    pub fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], WireError> {
        let (head, rest) = usize::try_from(len)
            .ok()
            .and_then(|len| self.buf.split_at_checked(len))
            .ok_or(WireError::TruncatedField { what })?;
        self.buf = rest;
        Ok(head)
    }

    /// A length-delimited field's bytes (after its key).
    pub fn length_delimited(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.varint(what)?;
        self.take(len, what)
    }

    /// Skips the value of an unknown field (after its key) by its wire type.
    pub fn skip(&mut self, field: u64, wire_type: u64) -> Result<(), WireError> {
        match wire_type {
            WIRE_VARINT => self.varint("unknown varint field").map(drop),
            WIRE_I64 => self.take(8, "unknown fixed64 field").map(drop),
            WIRE_LEN => self
                .length_delimited("unknown length-delimited field")
                .map(drop),
            WIRE_I32 => self.take(4, "unknown fixed32 field").map(drop),
            WIRE_START_GROUP | WIRE_END_GROUP => Err(WireError::Group { field }),
            _ => Err(WireError::BadWireType { field, wire_type }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn malformed_varints_and_fields_are_told_apart() {
        let cases: [(&[u8], WireError); 6] = [
            (b"\x80", WireError::TruncatedVarint { what: "field key" }),
            (
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x01",
                WireError::VarintTooLong,
            ),
            (
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",
                WireError::VarintOverflow,
            ),
            (b"\x0b", WireError::Group { field: 1 }),
            (
                b"\x0e",
                WireError::BadWireType {
                    field: 1,
                    wire_type: 6,
                },
            ),
            (
                b"\x11\x01\x02",
                WireError::TruncatedField {
                    what: "unknown fixed64 field",
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut r = Reader::new(bytes);
            let got = r.key().and_then(|(field, wire)| r.skip(field, wire));
            assert_eq!(got, Err(expected), "{bytes:02x?}");
        }
    }

    #[test]
    fn a_huge_length_is_rejected_without_allocating() {
        let mut msg = vec![0x0a];
        put_varint(&mut msg, u64::MAX);
        let mut r = Reader::new(&msg);
        r.key().unwrap();
        assert_eq!(
            r.length_delimited("name"),
            Err(WireError::TruncatedField { what: "name" })
        );
    }

    #[test]
    fn a_len_field_is_key_length_bytes() {
        let mut out = Vec::new();
        put_len_field(&mut out, 1, b"ab");
        put_len_field(&mut out, 1, b"");
        assert_eq!(out, b"\x0a\x02ab\x0a\x00");
    }
}
