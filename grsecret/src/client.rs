//! The client's side of `ratls.GrSecret` (init's): encoding `SecretRequest`s, one or a batch,
//! and decoding a `SecretReply` down to the secret's bytes.
//!
//! The message codec is `message { string field = 1; }` (`SecretRequest.name`,
//! `SecretReply.secret`).
//! Decoding is strict where it matters (valid varints, lengths within the buffer, UTF-8,
//! field 1 must be length-delimited) and tolerant where protobuf requires it (unknown fields
//! are skipped by wire type; a repeated field 1 keeps the last value). Decoded values are
//! returned zeroizing: a reply carries a secret.

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::GET_SECRET;
use crate::wire::{self, MAX_VARINT_LEN, Reader, WIRE_LEN, WireError};

/// Largest decoded secret accepted (Occlum's client caps secrets at 10 KiB; certificates and
/// keys fit easily, and anything near this is not a secret file).
pub const MAX_SECRET_LEN: usize = 1024 * 1024;
/// Largest reply message accepted: base64 of [`MAX_SECRET_LEN`], quotes and framing.
pub const MAX_REPLY_LEN: usize = MAX_SECRET_LEN / 3 * 4 + 64;

/// A message that does not decode as `message { string field = 1; }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What was wrong.
    pub detail: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protobuf decode: {}", self.detail)
    }
}

impl std::error::Error for Error {}

/// The `SecretRequest`s of one batch of GetSecret calls, one a name, in `names` order.
#[derive(Debug, Clone)]
pub struct Batch {
    requests: Vec<Vec<u8>>,
}

impl Batch {
    /// Encodes one `SecretRequest` per name.
    pub fn new(names: &[&str]) -> Self {
        Batch {
            requests: names
                .iter()
                .map(|name| encode_string_field1(name))
                .collect(),
        }
    }

    /// `(method path, request message)` pairs, as `grpc_unary::Channel::unary_many` takes them.
    pub fn calls(&self) -> Vec<(&'static str, &[u8])> {
        self.requests
            .iter()
            .map(|r| (GET_SECRET, r.as_slice()))
            .collect()
    }
}

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

/// Decodes `SecretReply.secret`: base64 (standard alphabet, canonical padding), optionally
/// inside one pair of JSON quotes as Occlum's server sends it. Empty secrets are refused, as
/// Occlum's client does.
pub fn decode_secret(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let inner = match text {
        [b'"', inner @ .., b'"'] => inner,
        [b'"', ..] | [.., b'"'] => {
            return Err("unbalanced JSON quotes around the base64 text".into());
        }
        bare => bare,
    };
    if inner.is_empty() {
        return Err("the secret is empty".into());
    }
    let engine = &base64::engine::general_purpose::STANDARD;
    let estimate = base64::decoded_len_estimate(inner.len());
    if estimate > MAX_SECRET_LEN + 3 {
        return Err(format!(
            "about {estimate} bytes, more than the {MAX_SECRET_LEN}-byte limit"
        ));
    }
    // Reserve first, so decoding never reallocates and leaves an unzeroized copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(estimate));
    engine
        .decode_vec(inner, &mut out)
        .map_err(|e| format!("not canonical base64 ({})", describe_base64_error(&e)))?;
    if out.len() > MAX_SECRET_LEN {
        return Err(format!(
            "{} bytes, more than the {MAX_SECRET_LEN}-byte limit",
            out.len()
        ));
    }
    Ok(out)
}

fn decode(detail: &'static str) -> Error {
    Error { detail }
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

/// The position and kind of a base64 error, without the offending byte (it is secret material).
fn describe_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) => format!("invalid character at offset {at}"),
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("non-canonical last symbol at offset {at}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

#[cfg(test)]
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
                matches!(decode_string_field1(case), Err(Error { .. })),
                "{case:02x?}"
            );
        }
    }

    #[test]
    fn an_empty_message_is_the_empty_string() {
        assert_eq!(decoded(b"").unwrap(), "");
    }

    #[test]
    fn a_batch_is_one_get_secret_call_per_name_in_order() {
        let batch = Batch::new(&["image_key", "flask_cert"]);
        let calls = batch.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], (GET_SECRET, &b"\x0a\x09image_key"[..]));
        assert_eq!(calls[1], (GET_SECRET, &b"\x0a\x0aflask_cert"[..]));
        assert_eq!(GET_SECRET, "/ratls.GrSecret/GetSecret");
    }

    #[test]
    fn quoted_and_bare_base64_decode_to_the_same_secret() {
        assert_eq!(
            &*decode_secret(b"\"dGVzdCBzYW1wbGUga2V5Cg==\"").unwrap(),
            b"test sample key\n"
        );
        assert_eq!(
            &*decode_secret(b"dGVzdCBzYW1wbGUga2V5Cg==").unwrap(),
            b"test sample key\n"
        );
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"\"dGVzdA==",
            b"dGVzdA==\"",
            b"dGVzdA",
            b"dGVzdA=",
            b"dGV zdA==",
            b"dGVzdB==",
            b"\"dGVzdA==\"\n",
            b"dGVz\ndA==",
        ] {
            assert!(
                decode_secret(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn decode_errors_do_not_echo_the_reply() {
        let err = decode_secret(b"c2VjcmV0!").unwrap_err();
        assert!(!err.contains("c2Vj") && !err.contains('!'), "{err}");
    }

    #[test]
    fn oversized_secrets_are_refused() {
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SECRET_LEN + 1]);
        assert!(decode_secret(big.as_bytes()).is_err());
        let max = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SECRET_LEN]);
        assert_eq!(decode_secret(max.as_bytes()).unwrap().len(), MAX_SECRET_LEN);
        assert!(format!("\"{max}\"").len() <= MAX_REPLY_LEN);
    }
}
