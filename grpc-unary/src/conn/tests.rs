//! Scripted-server tests of the connection state machine: the server's bytes are prepared
//! up front, the client's output is parsed back into frames and checked.

use super::*;
use loona_hpack::Encoder;

const PATH: &str = "/ratls.GrSecret/GetSecret";

/// Server bytes handed out `chunk` at a time; what runs out is EOF or a read timeout.
struct Script {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    output: Vec<u8>,
    /// What each flush sent (the output since the previous flush).
    writes: Vec<Vec<u8>>,
    flushed: usize,
    timeout_at_end: bool,
    /// Whether non-blocking reads see the script (else they see "nothing arrived yet":
    /// scripted responses must not be read before their request is sent).
    idle_visible: bool,
    nonblocking: bool,
}

impl Script {
    fn new(input: Vec<u8>) -> Self {
        Script {
            input,
            pos: 0,
            chunk: 7, // odd-sized reads exercise frame reassembly
            output: Vec::new(),
            writes: Vec::new(),
            flushed: 0,
            timeout_at_end: false,
            idle_visible: false,
            nonblocking: false,
        }
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.input.len() - self.pos;
        if self.nonblocking && !self.idle_visible {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if left == 0 {
            if self.timeout_at_end {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            return Ok(0);
        }
        let n = left.min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.output.len() > self.flushed {
            self.writes.push(self.output[self.flushed..].to_vec());
            self.flushed = self.output.len();
        }
        Ok(())
    }
}

impl Transport for Script {
    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }
    fn shutdown(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Builds the server side of a conversation.
struct Server {
    bytes: Vec<u8>,
    enc: Encoder<'static>,
}

impl Server {
    fn new() -> Self {
        let mut s = Server {
            bytes: Vec::new(),
            enc: Encoder::new(),
        };
        s.frame(kind::SETTINGS, 0, 0, &[]);
        s
    }

    fn frame(&mut self, k: u8, flags: u8, stream: u32, payload: &[u8]) -> &mut Self {
        frame::put_header(&mut self.bytes, payload.len(), k, flags, stream);
        self.bytes.extend_from_slice(payload);
        self
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.enc
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> &mut Self {
        let block = self.block(fields);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::HEADERS, flags, stream, &block)
    }

    fn response_headers(&mut self, stream: u32) -> &mut Self {
        self.headers(
            stream,
            &[(":status", "200"), ("content-type", "application/grpc")],
            false,
        )
    }

    fn message(&mut self, stream: u32, msg: &[u8]) -> &mut Self {
        let mut body = grpc::message_prefix(msg.len()).unwrap().to_vec();
        body.extend_from_slice(msg);
        self.frame(kind::DATA, 0, stream, &body)
    }

    fn trailers(&mut self, stream: u32, status: &str, message: &str) -> &mut Self {
        self.headers(
            stream,
            &[("grpc-status", status), ("grpc-message", message)],
            true,
        )
    }

    fn ok_response(&mut self, stream: u32, msg: &[u8]) -> &mut Self {
        self.response_headers(stream)
            .message(stream, msg)
            .trailers(stream, "0", "")
    }
}

fn limits() -> Limits {
    Limits {
        max_message: 1 << 20,
        max_header_list: 16 * 1024,
    }
}

fn connect(server: &Server) -> Connection<Script> {
    connect_script(Script::new(server.bytes.clone()))
}

fn connect_script(script: Script) -> Connection<Script> {
    Connection::new(script, limits(), "kms:4433".into())
}

fn call(conn: &mut Connection<Script>, request: &[u8]) -> Result<Vec<u8>, Error> {
    conn.unary(PATH, request, Duration::from_secs(5))
        .map(|m| m.to_vec())
}

/// The frames in `bytes` (whole frames, no preface): (kind, flags, stream, payload).
fn frames_in(mut rest: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let h = FrameHeader::parse(rest[..9].try_into().unwrap());
        let end = 9 + h.len as usize;
        frames.push((h.kind, h.flags, h.stream, rest[9..end].to_vec()));
        rest = &rest[end..];
    }
    frames
}

/// The client's frames after its preface.
fn client_frames(conn: &Connection<Script>) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let out = &conn.io.output;
    assert!(out.starts_with(frame::PREFACE));
    frames_in(&out[frame::PREFACE.len()..])
}

fn count(frames: &[(u8, u8, u32, Vec<u8>)], k: u8) -> usize {
    frames.iter().filter(|f| f.0 == k).count()
}

#[test]
fn the_handshake_sends_preface_and_settings_and_acks_the_servers() {
    let mut server = Server::new();
    server.ok_response(1, b"");
    let mut conn = connect(&server);
    assert!(
        conn.io.output.is_empty(),
        "nothing is sent before the first call"
    );
    call(&mut conn, b"").unwrap();
    let frames = client_frames(&conn);
    assert_eq!(frames[0].0, kind::SETTINGS);
    assert_eq!(frames[0].1, 0);
    let params: Vec<_> = frame::settings_params(&frames[0].3).collect();
    assert_eq!(
        params,
        vec![
            (setting::ENABLE_PUSH, 0),
            (setting::MAX_HEADER_LIST_SIZE, 16 * 1024)
        ]
    );
    // The first request did not wait for the server's SETTINGS; their ACK follows it.
    let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(
        kinds,
        vec![
            (kind::SETTINGS, 0),
            (kind::HEADERS, flag::END_HEADERS),
            (kind::DATA, flag::END_STREAM),
            (kind::SETTINGS, flag::ACK),
        ]
    );
}

#[test]
fn preface_settings_and_the_first_requests_leave_in_one_write() {
    let mut server = Server::new();
    server.ok_response(1, b"a").ok_response(3, b"b");
    let mut conn = connect(&server);
    let replies = conn
        .unary_many(&[(PATH, b"x"), (PATH, b"y")], Duration::from_secs(5))
        .unwrap();
    assert_eq!(replies.len(), 2);
    let first = conn.io.writes.first().expect("a write");
    assert!(first.starts_with(frame::PREFACE));
    let kinds: Vec<_> = frames_in(&first[frame::PREFACE.len()..])
        .into_iter()
        .map(|f| (f.0, f.2))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (kind::SETTINGS, 0),
            (kind::HEADERS, 1),
            (kind::DATA, 1),
            (kind::HEADERS, 3),
            (kind::DATA, 3),
        ]
    );
}

#[test]
fn a_server_that_does_not_start_with_settings_is_refused() {
    let mut bytes = Vec::new();
    frame::put_header(&mut bytes, 8, kind::PING, 0, 0);
    bytes.extend_from_slice(&[0; 8]);
    let mut conn = connect_script(Script::new(bytes));
    let err = call(&mut conn, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                code: ErrorCode::PROTOCOL_ERROR,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_simple_call_sends_the_grpc_request_and_returns_the_message() {
    let mut server = Server::new();
    server.ok_response(1, b"reply");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"req").unwrap(), b"reply");

    let frames = client_frames(&conn);
    let (k, flags, stream, block) = &frames[1];
    assert_eq!((*k, *flags, *stream), (kind::HEADERS, flag::END_HEADERS, 1));
    let mut fields = Vec::new();
    HeaderDecoder::new()
        .decode(block, usize::MAX, |n, v| {
            fields.push((n.to_vec(), v.to_vec()))
        })
        .unwrap();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(get(":method").as_deref(), Some("POST"));
    assert_eq!(get(":scheme").as_deref(), Some("https"));
    assert_eq!(get(":path").as_deref(), Some(PATH));
    assert_eq!(get(":authority").as_deref(), Some("kms:4433"));
    assert_eq!(get("content-type").as_deref(), Some("application/grpc"));
    assert_eq!(get("te").as_deref(), Some("trailers"));
    assert!(get("grpc-timeout").unwrap().ends_with('u'));
    assert!(get("user-agent").unwrap().starts_with("grpc-unary/"));

    let (k, flags, stream, body) = &frames[2];
    assert_eq!((*k, *flags, *stream), (kind::DATA, flag::END_STREAM, 1));
    assert_eq!(body.as_slice(), b"\x00\x00\x00\x00\x03req");
}

#[test]
fn calls_use_consecutive_odd_stream_ids_on_one_connection() {
    let mut server = Server::new();
    server
        .ok_response(1, b"a")
        .ok_response(3, b"b")
        .ok_response(5, b"c");
    let mut conn = connect(&server);
    for want in [b"a", b"b", b"c"] {
        assert_eq!(call(&mut conn, b"").unwrap(), want);
    }
    let streams: Vec<u32> = client_frames(&conn)
        .iter()
        .filter(|f| f.0 == kind::HEADERS)
        .map(|f| f.2)
        .collect();
    assert_eq!(streams, vec![1, 3, 5]);
}

#[test]
fn continuation_ping_and_padding_in_a_response_are_handled() {
    let mut server = Server::new();
    let head = server.block(&[
        (":status", "200"),
        ("content-type", "application/grpc+proto"),
        ("x-filler", &"f".repeat(100)),
    ]);
    let (a, b) = head.split_at(10);
    server
        .frame(kind::HEADERS, 0, 1, a)
        .frame(kind::CONTINUATION, flag::END_HEADERS, 1, b)
        .frame(kind::PING, 0, 0, b"pingpong")
        // padded DATA: pad length 4, prefix + "sec", then padding
        .frame(
            kind::DATA,
            flag::PADDED,
            1,
            b"\x04\x00\x00\x00\x00\x06secPPPP",
        )
        .frame(0xee, 0, 1, b"unknown frame type, ignored")
        .frame(kind::DATA, flag::PADDED, 1, b"\x00ret");
    let trailers = server.block(&[("grpc-status", "0"), ("x-long", &"t".repeat(200))]);
    let (a, b) = trailers.split_at(50);
    let (b, c) = b.split_at(100);
    server
        .frame(kind::HEADERS, flag::END_STREAM, 1, a)
        .frame(kind::CONTINUATION, 0, 1, b)
        .frame(kind::CONTINUATION, flag::END_HEADERS, 1, c);
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"x").unwrap(), b"secret");
    let frames = client_frames(&conn);
    assert!(
        frames
            .iter()
            .any(|f| f.0 == kind::PING && f.1 == flag::ACK && f.3 == b"pingpong")
    );
}

#[test]
fn a_large_response_is_paced_by_window_updates_for_connection_and_stream() {
    let big: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut body = grpc::message_prefix(big.len()).unwrap().to_vec();
    body.extend_from_slice(&big);
    let mut server = Server::new();
    server.response_headers(1);
    for chunk in body.chunks(16_384) {
        server.frame(kind::DATA, 0, 1, chunk);
    }
    server.trailers(1, "0", "");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), big);
    let updates: Vec<(u32, u32)> = client_frames(&conn)
        .iter()
        .filter(|f| f.0 == kind::WINDOW_UPDATE)
        .map(|f| (f.2, u32::from_be_bytes(f.3[..4].try_into().unwrap())))
        .collect();
    let conn_total: u32 = updates.iter().filter(|u| u.0 == 0).map(|u| u.1).sum();
    let stream_total: u32 = updates.iter().filter(|u| u.0 == 1).map(|u| u.1).sum();
    // Everything beyond the initial 64 KiB window must have been granted explicitly.
    assert!(conn_total as usize >= body.len() - 65_535, "{updates:?}");
    assert!(stream_total as usize >= body.len() - 65_535, "{updates:?}");
}

#[test]
fn a_frame_larger_than_our_max_frame_size_is_a_frame_size_error_and_kills_the_connection() {
    let mut server = Server::new();
    server.response_headers(1);
    frame::put_header(&mut server.bytes, 16_385, kind::DATA, 0, 1);
    server.bytes.extend(std::iter::repeat_n(0u8, 16_385));
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                code: ErrorCode::FRAME_SIZE_ERROR,
                ..
            }
        ),
        "{err}"
    );
    let goaway = client_frames(&conn)
        .into_iter()
        .find(|f| f.0 == kind::GOAWAY)
        .expect("GOAWAY sent");
    assert_eq!(
        &goaway.3[4..8],
        &ErrorCode::FRAME_SIZE_ERROR.0.to_be_bytes()
    );
    assert!(matches!(call(&mut conn, b""), Err(Error::Unusable { .. })));
}

#[test]
fn a_trailers_only_response_yields_its_status() {
    let mut server = Server::new();
    server.headers(
        1,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20secret%3A%20%E2%9C%93"),
        ],
        true,
    );
    let mut conn = connect(&server);
    match call(&mut conn, b"").unwrap_err() {
        Error::Status { code, message } => {
            assert_eq!(code, Code::NotFound);
            assert_eq!(message, "no such secret: \u{2713}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_non_ok_status_in_trailers_is_returned_even_after_a_message() {
    let mut server = Server::new();
    server
        .response_headers(1)
        .message(1, b"ignored")
        .trailers(1, "16", "who%20are%20you");
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthenticated));
}

#[test]
fn a_missing_grpc_status_is_a_protocol_error() {
    let mut server = Server::new();
    server
        .response_headers(1)
        .message(1, b"m")
        .headers(1, &[("x-other", "1")], true);
    let mut conn = connect(&server);
    assert!(matches!(call(&mut conn, b""), Err(Error::Protocol { .. })));
}

#[test]
fn a_response_without_trailers_is_a_protocol_error() {
    let mut server = Server::new();
    server.response_headers(1);
    server.frame(kind::DATA, flag::END_STREAM, 1, b"\x00\x00\x00\x00\x01m");
    let mut conn = connect(&server);
    assert!(matches!(call(&mut conn, b""), Err(Error::Protocol { .. })));
}

#[test]
fn an_ok_status_without_a_message_is_a_protocol_error() {
    let mut server = Server::new();
    server.response_headers(1).trailers(1, "0", "");
    let mut conn = connect(&server);
    assert!(matches!(call(&mut conn, b""), Err(Error::Protocol { .. })));
}

#[test]
fn a_wrong_content_type_is_refused_and_the_stream_cancelled() {
    let mut server = Server::new();
    server.headers(
        1,
        &[(":status", "200"), ("content-type", "text/html")],
        false,
    );
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    let rst = client_frames(&conn)
        .into_iter()
        .find(|f| f.0 == kind::RST_STREAM);
    // The RST_STREAM is queued; it goes out with the next write.
    assert!(rst.is_none() || rst.unwrap().3 == ErrorCode::CANCEL.0.to_be_bytes());
}

#[test]
fn an_http_error_status_is_reported_as_such() {
    let mut server = Server::new();
    server.headers(1, &[(":status", "503")], true);
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 503 }), "{err}");
    assert_eq!(err.code(), Some(Code::Unavailable));
}

#[test]
fn a_compressed_message_is_refused() {
    let mut server = Server::new();
    server
        .response_headers(1)
        .frame(kind::DATA, 0, 1, b"\x01\x00\x00\x00\x01z")
        .trailers(1, "0", "");
    let mut conn = connect(&server);
    assert!(matches!(call(&mut conn, b""), Err(Error::Protocol { .. })));
}

#[test]
fn an_oversize_message_is_refused_and_the_connection_stays_usable() {
    let mut server = Server::new();
    server
        .response_headers(1)
        .frame(kind::DATA, 0, 1, b"\x00\x7f\x00\x00\x00")
        // the server notices the RST only later: its next frames on stream 1 are ignored
        .frame(kind::DATA, 0, 1, &[0u8; 1000])
        .ok_response(3, b"fine");
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 0x7f00_0000,
                limit: 1_048_576
            }
        ),
        "{err}"
    );
    assert_eq!(call(&mut conn, b"").unwrap(), b"fine");
    let rst: Vec<_> = client_frames(&conn)
        .into_iter()
        .filter(|f| f.0 == kind::RST_STREAM)
        .map(|f| (f.2, f.3))
        .collect();
    assert_eq!(rst[0], (1, ErrorCode::CANCEL.0.to_be_bytes().to_vec()));
}

#[test]
fn rst_stream_fails_the_call_with_its_code() {
    let mut server = Server::new();
    server.frame(
        kind::RST_STREAM,
        0,
        1,
        &ErrorCode::REFUSED_STREAM.0.to_be_bytes(),
    );
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Reset {
                code: ErrorCode::REFUSED_STREAM
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some(Code::Unavailable));
}

#[test]
fn goaway_below_our_stream_fails_the_call_and_refuses_new_ones() {
    let mut server = Server::new();
    server.frame(
        kind::GOAWAY,
        0,
        0,
        b"\x00\x00\x00\x00\x00\x00\x00\x00shutting down",
    );
    let mut conn = connect(&server);
    match call(&mut conn, b"").unwrap_err() {
        Error::GoAway {
            code,
            last_stream_id,
            debug,
        } => {
            assert_eq!(code, ErrorCode::NO_ERROR);
            assert_eq!(last_stream_id, 0);
            assert_eq!(debug, "shutting down");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(call(&mut conn, b""), Err(Error::GoAway { .. })));
}

#[test]
fn a_goaway_that_arrived_while_idle_refuses_the_next_call_before_sending() {
    let mut server = Server::new();
    server.ok_response(1, b"a");
    let goaway_at = server.bytes.len();
    server.frame(kind::GOAWAY, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), b"a");
    assert!(
        conn.io.pos < goaway_at + 9,
        "GOAWAY not read during the first call"
    );
    conn.io.idle_visible = true;
    assert!(matches!(
        call(&mut conn, b""),
        Err(Error::GoAway {
            last_stream_id: 1,
            ..
        })
    ));
    assert_eq!(count(&client_frames(&conn), kind::HEADERS), 1);
}

#[test]
fn a_connection_closed_while_idle_is_noticed_before_sending() {
    let mut server = Server::new();
    server.ok_response(1, b"a");
    let mut conn = connect(&server);
    call(&mut conn, b"").unwrap();
    conn.io.idle_visible = true;
    assert!(matches!(
        call(&mut conn, b""),
        Err(Error::ConnectionClosed { .. })
    ));
    assert_eq!(count(&client_frames(&conn), kind::HEADERS), 1);
}

#[test]
fn a_graceful_goaway_lets_the_call_in_flight_complete() {
    let mut server = Server::new();
    server
        .response_headers(1)
        .frame(kind::GOAWAY, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00")
        .message(1, b"done")
        .trailers(1, "0", "");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), b"done");
    assert!(matches!(call(&mut conn, b""), Err(Error::GoAway { .. })));
}

#[test]
fn eof_mid_call_is_connection_closed() {
    let mut server = Server::new();
    server.response_headers(1);
    let mut conn = connect(&server);
    let err = call(&mut conn, b"").unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err}");
    assert!(matches!(call(&mut conn, b""), Err(Error::Unusable { .. })));
}

#[test]
fn a_silent_server_times_the_call_out() {
    let mut script = Script::new(Server::new().bytes);
    script.timeout_at_end = true;
    let mut conn = connect_script(script);
    let err = call(&mut conn, b"").unwrap_err();
    match &err {
        Error::Timeout {
            phase: Phase::Call { path },
            ..
        } => assert_eq!(path, PATH),
        other => panic!("{other}"),
    }
    assert_eq!(err.code(), Some(Code::DeadlineExceeded));
}

#[test]
fn a_request_larger_than_the_peer_window_waits_for_window_update() {
    let mut server = Server::new();
    // Replace the empty SETTINGS with one granting a 10-byte stream window.
    server.bytes.clear();
    let mut params = Vec::new();
    params.extend_from_slice(&setting::INITIAL_WINDOW_SIZE.to_be_bytes());
    params.extend_from_slice(&10u32.to_be_bytes());
    // The first call leaves before the SETTINGS arrive (initial window 65,535); the second
    // one is held to the server's 10 bytes.
    server
        .frame(kind::SETTINGS, 0, 0, &params)
        .ok_response(1, b"first")
        .frame(kind::WINDOW_UPDATE, 0, 3, &100u32.to_be_bytes())
        .ok_response(3, b"ok");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), b"first");
    let request = [7u8; 50];
    assert_eq!(call(&mut conn, &request).unwrap(), b"ok");
    let data: Vec<_> = client_frames(&conn)
        .into_iter()
        .filter(|f| f.0 == kind::DATA && f.2 == 3)
        .collect();
    assert_eq!(
        data[0].3.len(),
        10,
        "first DATA limited by the 10-byte window"
    );
    let total: usize = data.iter().map(|f| f.3.len()).sum();
    assert_eq!(total, 55);
    assert_eq!(data.last().unwrap().1, flag::END_STREAM);
}

#[test]
fn a_zero_window_without_updates_times_out_instead_of_overrunning() {
    let mut server = Server::new();
    server.bytes.clear();
    let mut params = Vec::new();
    params.extend_from_slice(&setting::INITIAL_WINDOW_SIZE.to_be_bytes());
    params.extend_from_slice(&0u32.to_be_bytes());
    server
        .frame(kind::SETTINGS, 0, 0, &params)
        .ok_response(1, b"first");
    let mut script = Script::new(server.bytes.clone());
    script.timeout_at_end = true;
    let mut conn = connect_script(script);
    assert_eq!(call(&mut conn, b"").unwrap(), b"first");
    let err = call(&mut conn, b"abc").unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let frames = client_frames(&conn);
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.0 == kind::DATA && f.2 == 3)
            .count(),
        0
    );
}

#[test]
fn a_small_max_frame_size_and_a_huge_path_produce_continuation_frames() {
    let mut server = Server::new();
    server.ok_response(1, b"ok");
    let mut conn = connect(&server);
    let path = format!("/{}", "p".repeat(40_000));
    assert_eq!(
        conn.unary(&path, b"", Duration::from_secs(5))
            .unwrap()
            .as_slice(),
        b"ok"
    );
    let frames = client_frames(&conn);
    assert_eq!(count(&frames, kind::CONTINUATION), 2);
}

#[test]
fn data_on_an_idle_stream_is_a_protocol_error() {
    let mut server = Server::new();
    server.frame(kind::DATA, 0, 7, b"x");
    let mut conn = connect(&server);
    assert!(matches!(
        call(&mut conn, b""),
        Err(Error::Protocol {
            code: ErrorCode::PROTOCOL_ERROR,
            ..
        })
    ));
}

#[test]
fn a_frame_interleaved_in_a_header_block_is_a_protocol_error() {
    let mut server = Server::new();
    let block = server.block(&[(":status", "200")]);
    server
        .frame(kind::HEADERS, 0, 1, &block)
        .frame(kind::PING, 0, 0, &[0; 8]);
    let mut conn = connect(&server);
    assert!(matches!(
        call(&mut conn, b""),
        Err(Error::Protocol {
            code: ErrorCode::PROTOCOL_ERROR,
            ..
        })
    ));
}

#[test]
fn corrupt_hpack_is_a_compression_error() {
    let mut server = Server::new();
    server.frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    );
    let mut conn = connect(&server);
    assert!(matches!(
        call(&mut conn, b""),
        Err(Error::Protocol {
            code: ErrorCode::COMPRESSION_ERROR,
            ..
        })
    ));
}

#[test]
fn push_promise_is_refused_because_push_is_disabled() {
    let mut server = Server::new();
    server.frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]);
    let mut conn = connect(&server);
    assert!(matches!(call(&mut conn, b""), Err(Error::Protocol { .. })));
}

#[test]
fn the_invalid_settings_values_are_connection_errors() {
    for (id, value, code) in [
        (setting::MAX_FRAME_SIZE, 100u32, ErrorCode::PROTOCOL_ERROR),
        (setting::MAX_FRAME_SIZE, 1 << 24, ErrorCode::PROTOCOL_ERROR),
        (
            setting::INITIAL_WINDOW_SIZE,
            1 << 31,
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        (setting::ENABLE_PUSH, 1, ErrorCode::PROTOCOL_ERROR),
    ] {
        let mut server = Server::new();
        let mut params = id.to_be_bytes().to_vec();
        params.extend_from_slice(&value.to_be_bytes());
        server.frame(kind::SETTINGS, 0, 0, &params);
        let mut conn = connect(&server);
        let err = call(&mut conn, b"").unwrap_err();
        assert!(
            matches!(err, Error::Protocol { code: c, .. } if c == code),
            "{id} {err}"
        );
    }
}

#[test]
fn a_header_table_size_change_is_announced_in_the_next_header_block() {
    let mut server = Server::new();
    let mut params = setting::HEADER_TABLE_SIZE.to_be_bytes().to_vec();
    params.extend_from_slice(&0u32.to_be_bytes());
    server.response_headers(1).message(1, b"a");
    server.frame(kind::SETTINGS, 0, 0, &params);
    server.trailers(1, "0", "").ok_response(3, b"b");
    let mut conn = connect(&server);
    call(&mut conn, b"").unwrap();
    call(&mut conn, b"").unwrap();
    let blocks: Vec<_> = client_frames(&conn)
        .into_iter()
        .filter(|f| f.0 == kind::HEADERS)
        .map(|f| f.3)
        .collect();
    assert_eq!(blocks[0][0], 0x20, "size update to 0 opens the first block");
    assert_eq!(
        blocks[1][0], 0x20,
        "and the block after a HEADER_TABLE_SIZE change"
    );
}

#[test]
fn invalid_paths_are_refused_before_anything_is_sent() {
    let mut conn = connect(&Server::new());
    for path in ["no-slash", "/with space", "/new\nline", ""] {
        assert!(matches!(
            conn.unary(path, b"", Duration::from_secs(1)),
            Err(Error::InvalidRequest { .. })
        ));
    }
    assert!(conn.io.output.is_empty(), "not even the preface was sent");
}

/// Drives a connection over arbitrary server bytes; used by the unit sweep below and
/// usable from a fuzz target.
pub(crate) fn drive(bytes: &[u8]) {
    let mut input = Server::new().bytes;
    input.extend_from_slice(bytes);
    let mut script = Script::new(input);
    script.chunk = 1 << 16;
    let limits = Limits {
        max_message: 4096,
        max_header_list: 4096,
    };
    let mut conn = Connection::new(script, limits, "a:1".into());
    let _ = conn.unary_many(&[(PATH, b"q"), (PATH, b"r")], Duration::from_secs(1));
    for _ in 0..2 {
        let _ = conn.unary(PATH, b"q", Duration::from_secs(1));
    }
}

#[test]
fn arbitrary_server_bytes_never_panic_the_client() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2_000 {
        let len = (next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards plausible frame headers: small lengths, known types, stream 1.
        if bytes.len() >= 9 {
            bytes[0] = 0;
            bytes[1] = 0;
            bytes[2] %= 64;
            bytes[3] %= 11;
            bytes[5..8].copy_from_slice(&[0, 0, 0]);
            bytes[8] %= 4;
        }
        drive(&bytes);
    }
}

#[test]
fn close_sends_goaway_no_error_and_ends_the_channel() {
    let mut server = Server::new();
    server.ok_response(1, b"a");
    let mut conn = connect(&server);
    call(&mut conn, b"").unwrap();
    let budget = Budget::new(Phase::Close, Duration::from_secs(1));
    conn.close(&budget).unwrap();
    let goaway = client_frames(&conn)
        .into_iter()
        .find(|f| f.0 == kind::GOAWAY)
        .expect("GOAWAY sent");
    assert_eq!(goaway.3, [0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(call(&mut conn, b""), Err(Error::Unusable { .. })));
}

// ---- batches: several calls on concurrent streams ----

fn batch(conn: &mut Connection<Script>, bodies: &[&[u8]]) -> Vec<Result<Vec<u8>, Error>> {
    let requests: Vec<(&str, &[u8])> = bodies.iter().map(|b| (PATH, *b)).collect();
    conn.unary_many(&requests, Duration::from_secs(5))
        .unwrap()
        .into_iter()
        .map(|r| r.map(|m| m.to_vec()))
        .collect()
}

/// The request body the client sent on `stream` (without the gRPC prefix).
fn body_on(conn: &Connection<Script>, stream: u32) -> Vec<u8> {
    let data: Vec<u8> = client_frames(conn)
        .into_iter()
        .filter(|f| f.0 == kind::DATA && f.2 == stream)
        .flat_map(|f| f.3)
        .collect();
    data[PREFIX_LEN..].to_vec()
}

fn settings_frame(server: &mut Server, params: &[(u16, u32)]) {
    server.bytes.clear();
    let mut payload = Vec::new();
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    server.frame(kind::SETTINGS, 0, 0, &payload);
}

fn refuse(server: &mut Server, stream: u32) {
    server.frame(
        kind::RST_STREAM,
        0,
        stream,
        &ErrorCode::REFUSED_STREAM.0.to_be_bytes(),
    );
}

#[test]
fn a_batch_sends_everything_before_reading_and_matches_interleaved_replies() {
    let mut server = Server::new();
    // Replies out of order and interleaved frame by frame.
    server
        .response_headers(5)
        .response_headers(1)
        .message(5, b"five")
        .response_headers(3)
        .message(1, b"one")
        .trailers(5, "0", "")
        .message(3, b"three")
        .trailers(3, "0", "")
        .trailers(1, "0", "");
    let mut conn = connect(&server);
    let results = batch(&mut conn, &[b"a", b"b", b"c"]);
    let replies: Vec<Vec<u8>> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        replies,
        vec![b"one".to_vec(), b"three".to_vec(), b"five".to_vec()]
    );
    assert_eq!(conn.io.writes.len(), 2, "requests, then the SETTINGS ACK");
    assert_eq!(body_on(&conn, 1), b"a");
    assert_eq!(body_on(&conn, 3), b"b");
    assert_eq!(body_on(&conn, 5), b"c");
    // The connection stays usable: the next stream is 7.
    let mut more = Server::new();
    more.ok_response(7, b"seven");
    conn.io.input.extend_from_slice(&more.bytes[HEADER_LEN..]);
    assert_eq!(call(&mut conn, b"d").unwrap(), b"seven");
}

#[test]
fn a_failed_call_in_a_batch_fails_alone() {
    let mut server = Server::new();
    server
        .ok_response(1, b"one")
        .headers(
            3,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "no such secret"),
            ],
            true,
        )
        .frame(kind::RST_STREAM, 0, 5, &ErrorCode::CANCEL.0.to_be_bytes());
    let mut conn = connect(&server);
    let results = batch(&mut conn, &[b"a", b"b", b"c"]);
    assert_eq!(results[0].as_deref().unwrap(), b"one");
    match &results[1] {
        Err(Error::Status { code, message }) => {
            assert_eq!(*code, Code::NotFound);
            assert_eq!(message, "no such secret");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        results[2],
        Err(Error::Reset {
            code: ErrorCode::CANCEL
        })
    ));
}

#[test]
fn refused_streams_are_retried_within_the_servers_stream_limit() {
    let mut server = Server::new();
    settings_frame(&mut server, &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    refuse(&mut server, 3);
    refuse(&mut server, 5);
    server
        .ok_response(1, b"one")
        .ok_response(7, b"two")
        .ok_response(9, b"three");
    let mut conn = connect(&server);
    let replies: Vec<Vec<u8>> = batch(&mut conn, &[b"a", b"b", b"c"])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        replies,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    // The refused requests went out again, in order, one stream at a time.
    assert_eq!(body_on(&conn, 7), b"b");
    assert_eq!(body_on(&conn, 9), b"c");
    let frames = client_frames(&conn);
    let rst: Vec<_> = frames.iter().filter(|f| f.0 == kind::RST_STREAM).collect();
    assert!(
        rst.is_empty(),
        "refused streams are closed already: {rst:?}"
    );
}

#[test]
fn a_round_in_which_every_stream_is_refused_ends_the_batch() {
    let mut server = Server::new();
    refuse(&mut server, 1);
    refuse(&mut server, 3);
    let mut conn = connect(&server);
    let results = batch(&mut conn, &[b"a", b"b"]);
    for r in &results {
        assert!(
            matches!(
                r,
                Err(Error::Reset {
                    code: ErrorCode::REFUSED_STREAM
                })
            ),
            "{r:?}"
        );
    }
}

#[test]
fn a_known_stream_limit_opens_streams_one_round_at_a_time() {
    let mut server = Server::new();
    settings_frame(&mut server, &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    server
        .ok_response(1, b"first")
        .ok_response(3, b"a")
        .ok_response(5, b"b");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), b"first");
    let before = conn.io.writes.len();
    let replies = batch(&mut conn, &[b"x", b"y"]);
    assert!(replies.iter().all(Result::is_ok));
    for w in &conn.io.writes[before..] {
        let frames = frames_in(w);
        let headers = |stream: u32| frames.iter().any(|f| f.0 == kind::HEADERS && f.2 == stream);
        assert!(
            !(headers(3) && headers(5)),
            "stream 5 was opened while 3 was"
        );
    }
}

#[test]
fn a_graceful_goaway_mid_batch_fails_only_the_streams_above_its_last_id() {
    let mut server = Server::new();
    server
        .frame(
            kind::GOAWAY,
            0,
            0,
            b"\x00\x00\x00\x01\x00\x00\x00\x00draining",
        )
        .ok_response(1, b"one");
    let mut conn = connect(&server);
    let results = batch(&mut conn, &[b"a", b"b", b"c"]);
    assert_eq!(results[0].as_deref().unwrap(), b"one");
    for r in &results[1..] {
        assert!(
            matches!(
                r,
                Err(Error::GoAway {
                    last_stream_id: 1,
                    ..
                })
            ),
            "{r:?}"
        );
    }
}

#[test]
fn the_servers_initial_window_holds_every_stream_of_a_batch() {
    // Two 40-byte requests after the server's SETTINGS set the initial stream window to 10:
    // each stream sends 10 bytes, then waits for its own WINDOW_UPDATE.
    let mut server = Server::new();
    settings_frame(&mut server, &[(setting::INITIAL_WINDOW_SIZE, 10)]);
    server
        .ok_response(1, b"first")
        .frame(kind::WINDOW_UPDATE, 0, 3, &100u32.to_be_bytes())
        .frame(kind::WINDOW_UPDATE, 0, 5, &100u32.to_be_bytes())
        .ok_response(3, b"a")
        .ok_response(5, b"b");
    let mut conn = connect(&server);
    assert_eq!(call(&mut conn, b"").unwrap(), b"first");
    let results = batch(&mut conn, &[&[1u8; 40], &[2u8; 40]]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for stream in [3, 5] {
        let data: Vec<_> = client_frames(&conn)
            .into_iter()
            .filter(|f| f.0 == kind::DATA && f.2 == stream)
            .collect();
        assert_eq!(
            data[0].3.len(),
            10,
            "stream {stream} starts within 10 bytes"
        );
        assert_eq!(data.iter().map(|f| f.3.len()).sum::<usize>(), 45);
    }
}

#[test]
fn an_invalid_path_anywhere_in_a_batch_sends_nothing() {
    let mut conn = connect(&Server::new());
    let err = conn
        .unary_many(&[(PATH, b"a"), ("bad path", b"b")], Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
    assert!(conn.io.output.is_empty());
}
