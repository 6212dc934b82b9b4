//! The server's side of `ratls.GrSecret` (the KMS's): decoding `SecretRequest` (and
//! `grpc.health.v1.HealthCheckRequest`, the same layout) and encoding `SecretReply`
//! (and `HealthCheckResponse`).
//!
//! The decoder is bounded: it reads by length through a cursor, caps the message and the
//! name, skips unknown fields of every valid wire type, and rejects anything malformed
//! (truncated varints or lengths, groups, invalid UTF-8) with a [`DecodeError`] instead of
//! panicking. Encoding follows the protobuf encoding guide
//! (<https://protobuf.dev/programming-guides/encoding/>).

use std::fmt;

use crate::wire::{self, Reader, WIRE_LEN, WireError, put_varint};
use zeroize::Zeroizing;

/// Largest request message accepted, in bytes. A request is one short name.
pub const MAX_REQUEST_LEN: usize = 4096;

/// Longest secret or service name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// `HealthCheckResponse { status: SERVING }`: field 1, varint, value 1.
pub const HEALTH_SERVING: [u8; 2] = [0x08, 0x01];
/// `HealthCheckResponse { status: NOT_SERVING }`: field 1, varint, value 2.
pub const HEALTH_NOT_SERVING: [u8; 2] = [0x08, 0x02];

/// Field number of `SecretRequest.name`, `SecretReply.secret` and `HealthCheckRequest.service`.
const FIELD_ONE: u64 = 1;

/// A request that does not decode as the expected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The message is longer than [`MAX_REQUEST_LEN`].
    TooLong { len: usize },
    /// A varint, length or fixed-size field ran past the end of the message.
    Truncated { what: &'static str },
    /// A varint is longer than 10 bytes or overflows 64 bits.
    BadVarint,
    /// Wire type 3/4 (groups) or 6/7 (undefined).
    BadWireType { field: u64, wire_type: u64 },
    /// Field number 0 is reserved.
    FieldZero,
    /// Field 1 must be length-delimited (a string).
    WrongTypeForName { wire_type: u64 },
    /// The name is longer than [`MAX_NAME_LEN`].
    NameTooLong { len: usize },
    /// A proto3 `string` must be UTF-8.
    NotUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => {
                write!(f, "malformed request: {len} bytes, limit {MAX_REQUEST_LEN}")
            }
            Self::Truncated { what } => write!(f, "malformed request: truncated {what}"),
            Self::BadVarint => write!(f, "malformed request: invalid varint"),
            Self::BadWireType { field, wire_type } => {
                write!(
                    f,
                    "malformed request: field {field} has unsupported wire type {wire_type}"
                )
            }
            Self::FieldZero => write!(f, "malformed request: field number 0"),
            Self::WrongTypeForName { wire_type } => {
                write!(
                    f,
                    "malformed request: field 1 must be a string, got wire type {wire_type}"
                )
            }
            Self::NameTooLong { len } => {
                write!(
                    f,
                    "malformed request: name of {len} bytes, limit {MAX_NAME_LEN}"
                )
            }
            Self::NotUtf8 => write!(f, "malformed request: name is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `SecretRequest { string name = 1; }` and returns the name ("" when absent, as
/// proto3 defines). The same layout serves `HealthCheckRequest { string service = 1; }`.
pub fn decode_name(msg: &[u8]) -> Result<String, DecodeError> {
    if msg.len() > MAX_REQUEST_LEN {
        return Err(DecodeError::TooLong { len: msg.len() });
    }
    let mut cursor = Cursor(Reader::new(msg));
    let mut name: &[u8] = &[];
    while !cursor.is_empty() {
        let key = cursor.varint("field key")?;
        let field = key >> 3;
        let wire_type = key & 0x7;
        if field == 0 {
            return Err(DecodeError::FieldZero);
        }
        if field == FIELD_ONE {
            if wire_type != WIRE_LEN {
                return Err(DecodeError::WrongTypeForName { wire_type });
            }
            // proto3: for a repeated singular field the last value wins.
            name = cursor.length_delimited("name")?;
            if name.len() > MAX_NAME_LEN {
                return Err(DecodeError::NameTooLong { len: name.len() });
            }
            continue;
        }
        cursor.skip(field, wire_type)?;
    }
    String::from_utf8(name.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

/// Encodes `SecretReply { string secret = 1; }`. The buffer holds secret material, so it is
/// returned zeroize-on-drop.
pub fn encode_reply(secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(secret.len() + 11));
    if secret.is_empty() {
        // proto3 omits default values.
        return out;
    }
    out.push(((FIELD_ONE << 3) | WIRE_LEN) as u8);
    put_varint(&mut out, secret.len() as u64);
    out.extend_from_slice(secret);
    out
}

/// Encodes `SecretRequest { name }`.
#[cfg(test)]
fn encode_request(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 11);
    if !name.is_empty() {
        out.push(((FIELD_ONE << 3) | WIRE_LEN) as u8);
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
    }
    out
}

/// Decodes a `SecretReply` into its `secret` string bytes.
#[cfg(test)]
fn decode_reply(msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let mut cursor = Cursor(Reader::new(msg));
    let mut secret: &[u8] = &[];
    while !cursor.is_empty() {
        let key = cursor.varint("field key")?;
        let (field, wire_type) = (key >> 3, key & 0x7);
        if field == FIELD_ONE && wire_type == WIRE_LEN {
            secret = cursor.length_delimited("secret")?;
        } else if field == FIELD_ONE {
            return Err(DecodeError::WrongTypeForName { wire_type });
        } else {
            cursor.skip(field, wire_type)?;
        }
    }
    Ok(Zeroizing::new(secret.to_vec()))
}

/// A forward-only cursor over the message: [`wire::Reader`] with its errors in the KMS's terms.
struct Cursor<'a>(Reader<'a>);

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(self.0.varint(what)?)
    }

    fn length_delimited(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        Ok(self.0.length_delimited(what)?)
    }

    fn skip(&mut self, field: u64, wire_type: u64) -> Result<(), DecodeError> {
        self.0.skip(field, wire_type).map_err(|e| match e {
            // Groups (3, 4; deprecated, never in these messages) are as unsupported here as
            // the undefined types 6 and 7, and the error keeps the wire type seen.
            WireError::Group { field } => DecodeError::BadWireType { field, wire_type },
            e => e.into(),
        })
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TruncatedVarint { what } | WireError::TruncatedField { what } => {
                Self::Truncated { what }
            }
            WireError::VarintTooLong | WireError::VarintOverflow => Self::BadVarint,
            WireError::BadWireType { field, wire_type } => Self::BadWireType { field, wire_type },
            WireError::Group { field } => Self::BadWireType {
                field,
                wire_type: wire::WIRE_START_GROUP,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        assert_eq!(
            decode_name(&encode_request("image_key")).unwrap(),
            "image_key"
        );
    }

    #[test]
    fn an_empty_message_is_the_empty_name() {
        assert_eq!(decode_name(&[]).unwrap(), "");
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut msg = vec![0x10, 0x96, 0x01]; // field 2 varint 150
        msg.extend_from_slice(&[0x19, 1, 2, 3, 4, 5, 6, 7, 8]); // field 3 fixed64
        msg.extend_from_slice(&[0x22, 0x02, b'h', b'i']); // field 4 bytes
        msg.extend_from_slice(&[0x2d, 1, 2, 3, 4]); // field 5 fixed32
        msg.extend_from_slice(&encode_request("k"));
        assert_eq!(decode_name(&msg).unwrap(), "k");
    }

    #[test]
    fn the_last_name_wins() {
        let mut msg = encode_request("first");
        msg.extend_from_slice(&encode_request("second"));
        assert_eq!(decode_name(&msg).unwrap(), "second");
    }

    #[test]
    fn a_truncated_name_is_rejected() {
        assert_eq!(
            decode_name(&[0x0a, 0x05, b'a']),
            Err(DecodeError::Truncated { what: "name" })
        );
    }

    #[test]
    fn a_huge_length_is_rejected_without_allocating() {
        let msg = [
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            decode_name(&msg),
            Err(DecodeError::Truncated { what: "name" })
        );
    }

    #[test]
    fn an_overlong_varint_is_rejected() {
        let msg = [
            0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert_eq!(decode_name(&msg), Err(DecodeError::BadVarint));
        let msg = [
            0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert_eq!(decode_name(&msg), Err(DecodeError::BadVarint));
    }

    #[test]
    fn a_truncated_varint_is_rejected() {
        assert_eq!(
            decode_name(&[0x80]),
            Err(DecodeError::Truncated { what: "field key" })
        );
        assert_eq!(
            decode_name(&[0x10, 0x80]),
            Err(DecodeError::Truncated {
                what: "unknown varint field"
            })
        );
    }

    #[test]
    fn groups_and_undefined_wire_types_are_rejected() {
        for key in [0x13u8, 0x14, 0x16, 0x17] {
            assert!(
                matches!(decode_name(&[key]), Err(DecodeError::BadWireType { .. })),
                "{key:#x}"
            );
        }
    }

    #[test]
    fn field_zero_is_rejected() {
        assert_eq!(decode_name(&[0x02, 0x00]), Err(DecodeError::FieldZero));
    }

    #[test]
    fn a_name_sent_as_a_varint_is_rejected() {
        assert_eq!(
            decode_name(&[0x08, 0x01]),
            Err(DecodeError::WrongTypeForName { wire_type: 0 })
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_rejected() {
        assert_eq!(
            decode_name(&[0x0a, 0x02, 0xc3, 0x28]),
            Err(DecodeError::NotUtf8)
        );
    }

    #[test]
    fn limits_are_enforced() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            decode_name(&encode_request(&long)),
            Err(DecodeError::NameTooLong { .. })
        ));
        let msg = vec![0u8; MAX_REQUEST_LEN + 1];
        assert!(matches!(
            decode_name(&msg),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn a_reply_encodes_as_field_one_bytes() {
        let secret = vec![b'x'; 300];
        let reply = encode_reply(&secret);
        assert_eq!(&reply[..3], &[0x0a, 0xac, 0x02]);
        assert_eq!(decode_reply(&reply).unwrap().as_slice(), secret.as_slice());
    }
}
