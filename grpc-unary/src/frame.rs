//! HTTP/2 frame layer (RFC 9113 sections 4 and 6): parsing of untrusted frames into typed
//! values and encoding of the frames a client sends. Pure functions over byte slices, no I/O.
//!
//! Parsing never panics: every length is checked against the payload before it is used, and
//! every violation is a [`FrameError`] carrying the connection error code to send in GOAWAY.

use crate::error::ErrorCode;

/// Client connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of a frame header.
pub(crate) const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before any SETTINGS (and the smallest legal value).
pub(crate) const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest legal SETTINGS_MAX_FRAME_SIZE (2^24 - 1).
pub(crate) const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// Initial flow-control window of the connection and of every stream.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
/// Largest legal flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Largest stream identifier (31 bits).
pub(crate) const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 section 6).
pub(crate) mod kind {
    pub(crate) const DATA: u8 = 0x0;
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const PRIORITY: u8 = 0x2;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PUSH_PROMISE: u8 = 0x5;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const WINDOW_UPDATE: u8 = 0x8;
    pub(crate) const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub(crate) mod flag {
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const PADDED: u8 = 0x8;
    pub(crate) const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameters (RFC 9113 section 6.5.2).
pub(crate) mod setting {
    pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
    pub(crate) const ENABLE_PUSH: u16 = 0x2;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A connection error: the code for GOAWAY and a description of the violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameError {
    pub(crate) code: ErrorCode,
    pub(crate) detail: &'static str,
}

const fn protocol(detail: &'static str) -> FrameError {
    FrameError {
        code: ErrorCode::PROTOCOL_ERROR,
        detail,
    }
}

const fn frame_size(detail: &'static str) -> FrameError {
    FrameError {
        code: ErrorCode::FRAME_SIZE_ERROR,
        detail,
    }
}

/// The fixed 9-byte frame header (RFC 9113 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) len: u32,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    /// Stream identifier with the reserved bit cleared.
    pub(crate) stream: u32,
}

impl FrameHeader {
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *b;
        FrameHeader {
            len: u32::from_be_bytes([0, l0, l1, l2]),
            kind,
            flags,
            stream: u32::from_be_bytes([s0, s1, s2, s3]) & MAX_STREAM_ID,
        }
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// A parsed frame, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        /// The data without padding.
        data: &'a [u8],
        /// The whole payload length, padding included: what flow control counts.
        flow_len: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        fragment: &'a [u8],
    },
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// Six bytes per parameter; see [`settings_params`].
        params: &'a [u8],
    },
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// Unknown frame types must be ignored (RFC 9113 section 4.1).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// Parses one frame. `payload` must be exactly `header.len` bytes; the caller has already
/// checked `header.len` against its SETTINGS_MAX_FRAME_SIZE.
pub(crate) fn parse(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    if usize::try_from(header.len).ok() != Some(payload.len()) {
        return Err(frame_size("payload length differs from the frame header"));
    }
    let stream = header.stream;
    let needs_stream = |s: u32| {
        if s == 0 {
            Err(protocol("stream frame on stream 0"))
        } else {
            Ok(s)
        }
    };
    let needs_conn = |s: u32| {
        if s == 0 {
            Ok(())
        } else {
            Err(protocol("connection frame on a stream"))
        }
    };
    match header.kind {
        kind::DATA => {
            needs_stream(stream)?;
            let data = strip_padding(&header, payload)?;
            Ok(Frame::Data {
                stream,
                end_stream: header.has(flag::END_STREAM),
                data,
                flow_len: header.len,
            })
        }
        kind::HEADERS => {
            needs_stream(stream)?;
            let mut fragment = strip_padding(&header, payload)?;
            if header.has(flag::PRIORITY) {
                fragment = fragment
                    .get(5..)
                    .ok_or(frame_size("HEADERS too short for its priority fields"))?;
            }
            Ok(Frame::Headers {
                stream,
                end_stream: header.has(flag::END_STREAM),
                end_headers: header.has(flag::END_HEADERS),
                fragment,
            })
        }
        kind::PRIORITY => {
            needs_stream(stream)?;
            if payload.len() != 5 {
                return Err(frame_size("PRIORITY payload is not 5 bytes"));
            }
            Ok(Frame::Priority { stream })
        }
        kind::RST_STREAM => {
            needs_stream(stream)?;
            let code = u32_exact(payload, "RST_STREAM payload is not 4 bytes")?;
            Ok(Frame::RstStream {
                stream,
                code: ErrorCode(code),
            })
        }
        kind::SETTINGS => {
            needs_conn(stream)?;
            let ack = header.has(flag::ACK);
            if ack && !payload.is_empty() {
                return Err(frame_size("SETTINGS ACK with a payload"));
            }
            if payload.len() % 6 != 0 {
                return Err(frame_size("SETTINGS payload is not a multiple of 6 bytes"));
            }
            Ok(Frame::Settings {
                ack,
                params: payload,
            })
        }
        kind::PUSH_PROMISE => {
            needs_stream(stream)?;
            Ok(Frame::PushPromise { stream })
        }
        kind::PING => {
            needs_conn(stream)?;
            let payload: [u8; 8] = payload
                .try_into()
                .map_err(|_| frame_size("PING payload is not 8 bytes"))?;
            Ok(Frame::Ping {
                ack: header.has(flag::ACK),
                payload,
            })
        }
        kind::GOAWAY => {
            needs_conn(stream)?;
            let (fixed, debug) = payload
                .split_first_chunk::<8>()
                .ok_or(frame_size("GOAWAY shorter than 8 bytes"))?;
            let [a, b, c, d, e, f, g, h] = *fixed;
            Ok(Frame::GoAway {
                last_stream: u32::from_be_bytes([a, b, c, d]) & MAX_STREAM_ID,
                code: ErrorCode(u32::from_be_bytes([e, f, g, h])),
                debug,
            })
        }
        kind::WINDOW_UPDATE => {
            let raw = u32_exact(payload, "WINDOW_UPDATE payload is not 4 bytes")?;
            let increment = raw & MAX_WINDOW;
            if increment == 0 {
                return Err(protocol("WINDOW_UPDATE with a zero increment"));
            }
            Ok(Frame::WindowUpdate { stream, increment })
        }
        kind::CONTINUATION => {
            needs_stream(stream)?;
            Ok(Frame::Continuation {
                stream,
                end_headers: header.has(flag::END_HEADERS),
                fragment: payload,
            })
        }
        kind => Ok(Frame::Unknown { kind, stream }),
    }
}

/// The (identifier, value) pairs of a SETTINGS payload whose length is a multiple of 6.
pub(crate) fn settings_params(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params.chunks_exact(6).map(|c| match *c {
        [a, b, v0, v1, v2, v3] => (
            u16::from_be_bytes([a, b]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        ),
        // chunks_exact(6) yields only 6-byte chunks.
        _ => (0, 0),
    })
}

/// Removes the Pad Length byte and the padding of a PADDED frame (RFC 9113 section 6.1).
fn strip_padding<'a>(header: &FrameHeader, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if !header.has(flag::PADDED) {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(frame_size("padded frame without a pad length"))?;
    // "If the length of the padding is the length of the frame payload or greater, the
    // recipient MUST treat this as a connection error of type PROTOCOL_ERROR."
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(protocol("padding longer than the frame payload"))?;
    rest.get(..keep)
        .ok_or(protocol("padding longer than the frame payload"))
}

fn u32_exact(payload: &[u8], detail: &'static str) -> Result<u32, FrameError> {
    let bytes: [u8; 4] = payload.try_into().map_err(|_| frame_size(detail))?;
    Ok(u32::from_be_bytes(bytes))
}

// ---- encoding (frames the client sends) ----

/// Appends a frame header. `len` must fit in 24 bits: callers split payloads by the peer's
/// SETTINGS_MAX_FRAME_SIZE, which is at most 2^24 - 1.
pub(crate) fn put_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len)
        .unwrap_or(MAX_MAX_FRAME_SIZE)
        .min(MAX_MAX_FRAME_SIZE);
    let [_, l0, l1, l2] = len.to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, kind, flags]);
    out.extend_from_slice(&(stream & MAX_STREAM_ID).to_be_bytes());
}

pub(crate) fn put_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    put_header(out, params.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub(crate) fn put_settings_ack(out: &mut Vec<u8>) {
    put_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub(crate) fn put_ping_ack(out: &mut Vec<u8>, payload: &[u8; 8]) {
    put_header(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(payload);
}

pub(crate) fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

pub(crate) fn put_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    put_header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.0.to_be_bytes());
}

pub(crate) fn put_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode) {
    put_header(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_STREAM_ID).to_be_bytes());
    out.extend_from_slice(&code.0.to_be_bytes());
}

/// Appends a header block as one HEADERS frame plus as many CONTINUATION frames as
/// `max_frame` requires (RFC 9113 section 6.10).
pub(crate) fn put_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    max_frame: u32,
    end_stream: bool,
) {
    let max = usize::try_from(max_frame.max(DEFAULT_MAX_FRAME_SIZE)).unwrap_or(usize::MAX);
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    put_header(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        put_header(out, chunk.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn parse_bytes(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
        let (head, payload) = bytes.split_first_chunk::<HEADER_LEN>().unwrap();
        parse(FrameHeader::parse(head), payload)
    }

    #[test]
    fn a_frame_header_round_trips_and_drops_the_reserved_bit() {
        let mut out = Vec::new();
        put_header(&mut out, 0x12_3456, kind::HEADERS, 0x25, 7);
        out[5] |= 0x80; // reserved bit set by a sloppy peer
        let h = FrameHeader::parse(out[..9].try_into().unwrap());
        assert_eq!(
            h,
            FrameHeader {
                len: 0x12_3456,
                kind: kind::HEADERS,
                flags: 0x25,
                stream: 7
            }
        );
    }

    #[test]
    fn padded_data_yields_the_data_without_padding_but_counts_all_for_flow_control() {
        let bytes = frame(
            kind::DATA,
            flag::PADDED | flag::END_STREAM,
            1,
            b"\x03abcXYZ",
        );
        assert_eq!(
            parse_bytes(&bytes),
            Ok(Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"abc",
                flow_len: 7
            })
        );
    }

    #[test]
    fn padding_as_long_as_the_payload_is_a_protocol_error() {
        let bytes = frame(kind::DATA, flag::PADDED, 1, b"\x04abc");
        assert_eq!(
            parse_bytes(&bytes).unwrap_err().code,
            ErrorCode::PROTOCOL_ERROR
        );
        let bytes = frame(kind::DATA, flag::PADDED, 1, b"\xffabc");
        assert_eq!(
            parse_bytes(&bytes).unwrap_err().code,
            ErrorCode::PROTOCOL_ERROR
        );
        // Padding that leaves zero bytes of data is fine.
        let bytes = frame(kind::DATA, flag::PADDED, 1, b"\x03abc");
        assert!(matches!(
            parse_bytes(&bytes),
            Ok(Frame::Data { data: b"", .. })
        ));
    }

    #[test]
    fn a_padded_frame_without_its_pad_length_byte_is_rejected() {
        let bytes = frame(kind::HEADERS, flag::PADDED, 1, b"");
        assert_eq!(
            parse_bytes(&bytes).unwrap_err().code,
            ErrorCode::FRAME_SIZE_ERROR
        );
    }

    #[test]
    fn headers_with_priority_and_padding_expose_only_the_fragment() {
        let payload = b"\x02\x00\x00\x00\x00\x10HBpp";
        let bytes = frame(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            3,
            payload,
        );
        assert_eq!(
            parse_bytes(&bytes),
            Ok(Frame::Headers {
                stream: 3,
                end_stream: false,
                end_headers: true,
                fragment: b"HB"
            })
        );
        let short = frame(kind::HEADERS, flag::PRIORITY, 3, b"\x00\x00");
        assert_eq!(
            parse_bytes(&short).unwrap_err().code,
            ErrorCode::FRAME_SIZE_ERROR
        );
    }

    #[test]
    fn fixed_size_frames_of_the_wrong_size_are_frame_size_errors() {
        for (k, stream, len) in [
            (kind::PING, 0, 7),
            (kind::PING, 0, 9),
            (kind::RST_STREAM, 1, 3),
            (kind::WINDOW_UPDATE, 0, 5),
            (kind::PRIORITY, 1, 4),
            (kind::GOAWAY, 0, 7),
            (kind::SETTINGS, 0, 5),
        ] {
            let bytes = frame(k, 0, stream, &vec![1u8; len]);
            assert_eq!(
                parse_bytes(&bytes).unwrap_err().code,
                ErrorCode::FRAME_SIZE_ERROR,
                "kind {k} len {len}"
            );
        }
        let ack = frame(kind::SETTINGS, flag::ACK, 0, &[0; 6]);
        assert_eq!(
            parse_bytes(&ack).unwrap_err().code,
            ErrorCode::FRAME_SIZE_ERROR
        );
    }

    #[test]
    fn frames_on_the_wrong_stream_are_protocol_errors() {
        for (k, stream, len) in [
            (kind::DATA, 0, 1),
            (kind::HEADERS, 0, 1),
            (kind::RST_STREAM, 0, 4),
            (kind::CONTINUATION, 0, 1),
            (kind::SETTINGS, 1, 0),
            (kind::PING, 1, 8),
            (kind::GOAWAY, 1, 8),
        ] {
            let bytes = frame(k, 0, stream, &vec![0u8; len]);
            assert_eq!(
                parse_bytes(&bytes).unwrap_err().code,
                ErrorCode::PROTOCOL_ERROR,
                "kind {k}"
            );
        }
    }

    #[test]
    fn a_zero_window_increment_is_a_protocol_error() {
        let bytes = frame(kind::WINDOW_UPDATE, 0, 0, &[0x80, 0, 0, 0]);
        assert_eq!(
            parse_bytes(&bytes).unwrap_err().code,
            ErrorCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn a_payload_shorter_than_its_header_says_is_rejected() {
        let mut bytes = frame(kind::DATA, 0, 1, b"abcd");
        bytes.truncate(11);
        assert_eq!(
            parse_bytes(&bytes).unwrap_err().code,
            ErrorCode::FRAME_SIZE_ERROR
        );
    }

    #[test]
    fn goaway_carries_last_stream_code_and_debug_data() {
        let bytes = frame(kind::GOAWAY, 0, 0, b"\x80\x00\x00\x05\x00\x00\x00\x0bcalm");
        assert_eq!(
            parse_bytes(&bytes),
            Ok(Frame::GoAway {
                last_stream: 5,
                code: ErrorCode::ENHANCE_YOUR_CALM,
                debug: b"calm"
            })
        );
    }

    #[test]
    fn unknown_frame_types_parse_as_unknown() {
        let bytes = frame(0xfa, 0xff, 9, b"whatever");
        assert_eq!(
            parse_bytes(&bytes),
            Ok(Frame::Unknown {
                kind: 0xfa,
                stream: 9
            })
        );
    }

    #[test]
    fn settings_parameters_are_read_in_order() {
        let mut out = Vec::new();
        put_settings(&mut out, &[(setting::MAX_FRAME_SIZE, 20_000), (0x99, 1)]);
        let Frame::Settings { ack, params } = parse_bytes(&out).unwrap() else {
            panic!("not settings")
        };
        assert!(!ack);
        let got: Vec<_> = settings_params(params).collect();
        assert_eq!(got, vec![(setting::MAX_FRAME_SIZE, 20_000), (0x99, 1)]);
    }

    #[test]
    fn a_large_header_block_is_split_into_headers_and_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        put_headers(&mut out, 5, &block, DEFAULT_MAX_FRAME_SIZE, true);
        let mut rest = &out[..];
        let mut seen = Vec::new();
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest[..9].try_into().unwrap());
            let end = 9 + h.len as usize;
            seen.extend_from_slice(&rest[9..end]);
            frames.push((h.kind, h.flags, h.len));
            rest = &rest[end..];
        }
        assert_eq!(seen, block);
        assert_eq!(
            frames,
            vec![
                (kind::HEADERS, flag::END_STREAM, 16_384),
                (kind::CONTINUATION, 0, 16_384),
                (kind::CONTINUATION, flag::END_HEADERS, 40_000 - 2 * 16_384),
            ]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        // A cheap deterministic sweep; the fuzz target does the real work.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            let kind = bytes[0] % 12;
            let flags = bytes[1];
            let len = usize::from(bytes[2] % 16);
            let payload: Vec<u8> = (0..len).map(|i| bytes[3 + i % 5]).collect();
            let head = FrameHeader {
                len: len as u32,
                kind,
                flags,
                stream: u32::from(bytes[7] % 3),
            };
            let _ = parse(head, &payload);
        }
    }
}
