//! Protobuf wire format for the one message shape of the `ratls.GrSecret` service:
//! `message { string field = 1; }` (`SecretRequest.name`, `SecretReply.secret`).
//!
//! Decoding is strict where it matters (valid varints, lengths within the buffer, UTF-8,
//! field 1 must be length-delimited) and tolerant where protobuf requires it (unknown fields
//! are skipped by wire type; a repeated field 1 keeps the last value). Decoded values are
//! returned zeroizing: a reply carries a secret.

use zeroize::Zeroizing;

use crate::error::Error;

/// Longest varint: 10 bytes encode 64 bits.
const MAX_VARINT_LEN: usize = 10;

/// Wire types (protobuf encoding guide).
const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_START_GROUP: u64 = 3;
const WIRE_END_GROUP: u64 = 4;
const WIRE_I32: u64 = 5;

/// Encodes `message { string field = 1; }`. An empty string is the default value and, as
/// protobuf encoders do, is not emitted: the message is then empty.
pub fn encode_string_field1(value: &str) -> Vec<u8> {
    if value.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(1 + MAX_VARINT_LEN + value.len());
    out.push(0x0a); // field 1, wire type 2
    put_varint(&mut out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
    out
}

/// Decodes `message { string field = 1; }`; a message without field 1 yields "".
pub fn decode_string_field1(message: &[u8]) -> Result<Zeroizing<String>, Error> {
    let mut rest = message;
    let mut value: &[u8] = &[];
    while !rest.is_empty() {
        let key = take_varint(&mut rest)?;
        let field = key >> 3;
        let wire = key & 7;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(decode("invalid field number"));
        }
        match wire {
            WIRE_VARINT => {
                take_varint(&mut rest)?;
            }
            WIRE_I64 => take(&mut rest, 8).map(drop)?,
            WIRE_LEN => {
                let len = take_varint(&mut rest)?;
                let len = usize::try_from(len).map_err(|_| decode("length overflows"))?;
                let bytes = take(&mut rest, len)?;
                if field == 1 {
                    value = bytes;
                }
            }
            WIRE_I32 => take(&mut rest, 4).map(drop)?,
            WIRE_START_GROUP | WIRE_END_GROUP => {
                return Err(decode("groups are not supported"));
            }
            _ => return Err(decode("invalid wire type")),
        }
        if field == 1 && wire != WIRE_LEN {
            return Err(decode("field 1 is not length-delimited"));
        }
    }
    let text = std::str::from_utf8(value).map_err(|_| decode("field 1 is not valid UTF-8"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn decode(detail: &'static str) -> Error {
    Error::Decode { detail }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, Error> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let (&byte, tail) = rest.split_first().ok_or(decode("truncated varint"))?;
        *rest = tail;
        let bits = u64::from(byte & 0x7f);
        // The 10th byte may only carry the 64th bit.
        if i == MAX_VARINT_LEN - 1 && bits > 1 {
            return Err(decode("varint overflows 64 bits"));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(decode("varint longer than 10 bytes"))
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], Error> {
    let (head, tail) = rest
        .split_at_checked(len)
        .ok_or(decode("field runs past the end of the message"))?;
    *rest = tail;
    Ok(head)
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
