//! Protobuf wire format for the one message shape of the `ratls.GrSecret` service:
//! `message { string field = 1; }` (`SecretRequest.name`, `SecretReply.secret`).
//!
//! Decoding is strict where it matters (valid varints, lengths within the buffer, UTF-8,
//! field 1 must be length-delimited) and tolerant where protobuf requires it (unknown fields
//! are skipped by wire type; a repeated field 1 keeps the last value). Decoded values are
//! returned zeroizing: a reply carries a secret.

use zeroize::Zeroizing;

use crate::error::Error;
use crate::wire::{self, MAX_VARINT_LEN, Reader, WIRE_LEN, WireError};

/// Encodes `message { string field = 1; }`. An empty string is the default value and, as
/// protobuf encoders do, is not emitted: the message is then empty.
pub fn encode_string_field1(value: &str) -> Vec<u8> {
    if value.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(1 + MAX_VARINT_LEN + value.len());
    wire::put_len_field(&mut out, 1, value.as_bytes());
    out
}

/// Decodes `message { string field = 1; }`; a message without field 1 yields "".
pub fn decode_string_field1(message: &[u8]) -> Result<Zeroizing<String>, Error> {
    let mut rest = Reader::new(message);
    let mut value: &[u8] = &[];
    while !rest.is_empty() {
        let (field, wire_type) = rest.key().map_err(wire_error)?;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(decode("invalid field number"));
        }
        if wire_type == WIRE_LEN {
            let bytes = rest.length_delimited("field").map_err(wire_error)?;
            if field == 1 {
                value = bytes;
            }
        } else {
            rest.skip(field, wire_type).map_err(wire_error)?;
            if field == 1 {
                return Err(decode("field 1 is not length-delimited"));
            }
        }
    }
    let text = std::str::from_utf8(value).map_err(|_| decode("field 1 is not valid UTF-8"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn decode(detail: &'static str) -> Error {
    Error::Decode { detail }
}

fn wire_error(e: WireError) -> Error {
    decode(match e {
        WireError::TruncatedVarint { .. } => "truncated varint",
        WireError::TruncatedField { .. } => "field runs past the end of the message",
        WireError::VarintTooLong => "varint longer than 10 bytes",
        WireError::VarintOverflow => "varint overflows 64 bits",
        WireError::Group { .. } => "groups are not supported",
        _ => "invalid wire type",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Result<String, Error> {
        decode_string_field1(bytes).map(|s| s.as_str().to_owned())
    }

    #[test]
    fn a_string_round_trips() {
        for s in ["image_key", "", "\u{2713} unicode", &"x".repeat(300)] {
            assert_eq!(decoded(&encode_string_field1(s)).unwrap(), s);
        }
        assert_eq!(encode_string_field1("ab"), b"\x0a\x02ab");
    }

    #[test]
    fn a_long_string_gets_a_multi_byte_length() {
        let s = "y".repeat(200);
        let enc = encode_string_field1(&s);
        assert_eq!(&enc[..3], b"\x0a\xc8\x01");
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut msg = Vec::new();
        msg.extend_from_slice(b"\x10\x96\x01"); // field 2 varint 150
        msg.extend_from_slice(b"\x19\x01\x02\x03\x04\x05\x06\x07\x08"); // field 3 fixed64
        msg.extend_from_slice(b"\x22\x03abc"); // field 4 bytes
        msg.extend_from_slice(b"\x2d\x01\x02\x03\x04"); // field 5 fixed32
        msg.extend_from_slice(b"\x0a\x06secret");
        msg.extend_from_slice(b"\xa2\x06\x00"); // field 100, empty bytes
        assert_eq!(decoded(&msg).unwrap(), "secret");
    }

    #[test]
    fn the_last_occurrence_of_field_1_wins() {
        assert_eq!(decoded(b"\x0a\x01a\x0a\x01b").unwrap(), "b");
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let cases: [&[u8]; 10] = [
            b"\x0a\x05abc",                                      // length past the end
            b"\x0a",                                             // missing length
            b"\x08\x01",                                         // field 1 as varint
            b"\x0a\x02\xff\xfe",                                 // not UTF-8
            b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // varint too long
            b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",     // varint overflows
            b"\x0b\x0c",                                         // group
            b"\x0e",                                             // wire type 6
            b"\x02\x00",                                         // field 0
            b"\x19\x01\x02",                                     // fixed64 truncated
        ];
        for case in cases {
            assert!(
                matches!(decode_string_field1(case), Err(Error::Decode { .. })),
                "{case:02x?}"
            );
        }
    }

    #[test]
    fn an_empty_message_is_the_empty_string() {
        assert_eq!(decoded(b"").unwrap(), "");
    }
}
