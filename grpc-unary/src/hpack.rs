//! HPACK (RFC 7541) for the client: a stateless request encoder and a bounded decoder.
//!
//! The encoder never inserts into the dynamic table (static-table indices and literals
//! "without indexing" only), so it honours any SETTINGS_HEADER_TABLE_SIZE the server picks;
//! it announces a table size of 0 at the start of the first block and after every change of
//! that setting (RFC 7541 section 4.2). Decoding is delegated to `loona-hpack`, capped at the
//! 4096-byte dynamic table this client advertises, and every decoded list is size-checked.

use loona_hpack::Decoder;

/// SETTINGS_HEADER_TABLE_SIZE the client advertises (the protocol default, never changed):
/// the largest dynamic table the server's encoder may make us keep.
pub(crate) const DECODER_TABLE_SIZE: usize = 4096;

/// RFC 7541 Appendix A indices of the static-table entries the request uses.
const STATIC_AUTHORITY: usize = 1;
const STATIC_METHOD_POST: usize = 3;
const STATIC_PATH: usize = 4;
const STATIC_SCHEME_HTTPS: usize = 7;
const STATIC_CONTENT_TYPE: usize = 31;
const STATIC_USER_AGENT: usize = 58;

/// One request header: either a full static-table match, or a name (static index or literal)
/// with a literal value.
pub(crate) enum Field<'a> {
    Indexed(usize),
    IndexedName(usize, &'a [u8]),
    Literal(&'a [u8], &'a [u8]),
}

/// The request header list of a gRPC unary call, in order (pseudo-headers first).
pub(crate) fn request_fields<'a>(
    path: &'a str,
    authority: &'a str,
    timeout: &'a str,
    user_agent: &'a str,
) -> [Field<'a>; 8] {
    [
        Field::Indexed(STATIC_METHOD_POST),
        Field::Indexed(STATIC_SCHEME_HTTPS),
        Field::IndexedName(STATIC_PATH, path.as_bytes()),
        Field::IndexedName(STATIC_AUTHORITY, authority.as_bytes()),
        Field::IndexedName(STATIC_CONTENT_TYPE, b"application/grpc"),
        Field::Literal(b"te", b"trailers"),
        Field::Literal(b"grpc-timeout", timeout.as_bytes()),
        Field::IndexedName(STATIC_USER_AGENT, user_agent.as_bytes()),
    ]
}

/// Header list size as RFC 9113 section 6.5.2 counts it (name + value + 32 per field).
pub(crate) fn list_size(fields: &[Field<'_>]) -> usize {
    fields
        .iter()
        .map(|f| match f {
            // ":method POST" / ":scheme https": small fixed sizes.
            Field::Indexed(_) => 32 + 12,
            Field::IndexedName(_, v) => 32 + 16 + v.len(),
            Field::Literal(n, v) => 32 + n.len() + v.len(),
        })
        .sum()
}

/// Encodes `fields` into `out`, optionally preceded by a dynamic table size update to 0.
pub(crate) fn encode(out: &mut Vec<u8>, announce_zero_table: bool, fields: &[Field<'_>]) {
    if announce_zero_table {
        put_int(out, 0x20, 5, 0);
    }
    for field in fields {
        match field {
            Field::Indexed(index) => put_int(out, 0x80, 7, *index),
            // Literal Header Field without Indexing, indexed name (section 6.2.2).
            Field::IndexedName(index, value) => {
                put_int(out, 0x00, 4, *index);
                put_string(out, value);
            }
            Field::Literal(name, value) => {
                out.push(0x00);
                put_string(out, name);
                put_string(out, value);
            }
        }
    }
}

/// An integer with an N-bit prefix (RFC 7541 section 5.1).
fn put_int(out: &mut Vec<u8>, pattern: u8, prefix_bits: u8, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        // Fits in the prefix: value < 2^prefix_bits <= 128.
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A string literal without Huffman coding (section 5.2).
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// Why a header block could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// HPACK-level corruption: the connection's compression state is lost.
    Compression(String),
}

/// The connection's HPACK decoder.
pub(crate) struct HeaderDecoder {
    inner: Decoder<'static>,
}

impl HeaderDecoder {
    pub(crate) fn new() -> Self {
        let mut inner = Decoder::new();
        inner.set_max_allowed_table_size(DECODER_TABLE_SIZE);
        HeaderDecoder { inner }
    }

    /// Decodes a complete header block, calling `f` for every field while the list stays
    /// within `max_list_size`. Always decodes the whole block (the dynamic table must stay in
    /// step with the server's encoder); returns whether the list exceeded the limit.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<bool, DecodeError> {
        let mut size = 0usize;
        let mut over = false;
        self.inner
            .decode_with_cb(block, |name, value| {
                size = size.saturating_add(32 + name.len() + value.len());
                if size > max_list_size {
                    over = true;
                } else {
                    f(&name, &value);
                }
            })
            .map_err(|e| DecodeError::Compression(e.to_string()))?;
        Ok(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let over = HeaderDecoder::new()
            .decode(block, usize::MAX, |n, v| {
                out.push((
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                ))
            })
            .unwrap();
        assert!(!over);
        out
    }

    #[test]
    fn the_request_block_decodes_to_the_grpc_request_headers() {
        let long_path = format!("/svc/{}", "m".repeat(300));
        let fields = request_fields(&long_path, "kms:4433", "10S", "grpc-unary/0.1");
        let mut block = Vec::new();
        encode(&mut block, true, &fields);
        let got = decode_all(&block);
        let want: Vec<(String, String)> = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", long_path.as_str()),
            (":authority", "kms:4433"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "10S"),
            ("user-agent", "grpc-unary/0.1"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn integers_use_continuation_bytes_past_the_prefix() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        put_int(&mut out, 0x80, 7, 127);
        assert_eq!(out, [0xff, 0x00]);
    }

    #[test]
    fn a_list_over_the_limit_is_reported_but_still_decoded_whole() {
        let mut block = Vec::new();
        encode(
            &mut block,
            false,
            &[Field::Literal(b"a", b"1"), Field::Literal(b"b", b"2")],
        );
        let mut seen = Vec::new();
        let over = HeaderDecoder::new()
            .decode(&block, 40, |n, _| seen.push(n.to_vec()))
            .unwrap();
        assert!(over);
        assert_eq!(seen, vec![b"a".to_vec()]);
    }

    #[test]
    fn a_table_size_update_above_the_advertised_size_is_a_compression_error() {
        let mut block = Vec::new();
        put_int(&mut block, 0x20, 5, DECODER_TABLE_SIZE + 1);
        block.push(0x82);
        let err = HeaderDecoder::new().decode(&block, usize::MAX, |_, _| {});
        assert!(matches!(err, Err(DecodeError::Compression(_))));
    }

    #[test]
    fn truncated_blocks_are_errors_not_panics() {
        // 0x3f: a size update whose integer continues past the end (RUSTSEC-2023-0085).
        for block in [&[0x3f][..], &[0x40, 0x05, b'a'], &[0xff], &[0x00, 0x81]] {
            assert!(
                HeaderDecoder::new()
                    .decode(block, usize::MAX, |_, _| {})
                    .is_err()
            );
        }
    }
}
