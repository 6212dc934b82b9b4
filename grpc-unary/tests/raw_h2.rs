//! The client against a hand-written HTTP/2 server (rustls + std threads, loona-hpack for
//! its header blocks) that does on purpose what well-behaved servers rarely do:
//! CONTINUATION frames, PINGs mid-response, padding, tiny windows, larger frame sizes,
//! trailers-only responses, GOAWAY, RST_STREAM, oversize frames, silence and hang-ups.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{PATH, client_tls, localhost, pki, server_tls};
use grpc_unary::{Channel, ClientConfig, Code, Error, ErrorCode, Phase};
use loona_hpack::{Decoder, Encoder};
use rustls::{ServerConnection, StreamOwned};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Request {
    stream: u32,
    headers: Vec<(String, String)>,
    header_frames: Vec<u8>,
    data_frames: Vec<usize>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The server end of one connection.
struct Peer {
    tls: StreamOwned<ServerConnection, TcpStream>,
    enc: Encoder<'static>,
    dec: Decoder<'static>,
    buf: Vec<u8>,
    /// The client's windows as this server tracks them (the client never changes the
    /// initial 65,535).
    conn_window: i64,
    stream_window: i64,
    pings_acked: Vec<[u8; 8]>,
    window_updates: Vec<(u32, u32)>,
}

impl Peer {
    fn fill(&mut self, need: usize) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        while self.buf.len() < need {
            let n = self.tls.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    fn read_frame(&mut self) -> io::Result<Frame> {
        self.fill(9)?;
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        self.fill(9 + len)?;
        let frame = Frame {
            kind: self.buf[3],
            flags: self.buf[4],
            stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload: self.buf[9..9 + len].to_vec(),
        };
        self.buf.drain(..9 + len);
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[]),
            PING if frame.flags & ACK != 0 => self
                .pings_acked
                .push(frame.payload[..8].try_into().unwrap()),
            WINDOW_UPDATE => {
                let inc = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                self.window_updates.push((frame.stream, inc));
                if frame.stream == 0 {
                    self.conn_window += i64::from(inc);
                } else {
                    self.stream_window += i64::from(inc);
                }
            }
            _ => {}
        }
        Ok(frame)
    }

    /// A frame if one arrives within `wait`, else `None`.
    fn poll_frame(&mut self, wait: Duration) -> Option<Frame> {
        self.tls.sock.set_read_timeout(Some(wait)).unwrap();
        let got = self.read_frame();
        self.tls
            .sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match got {
            Ok(frame) => Some(frame),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tls.write_all(&frame).unwrap();
        self.tls.flush().unwrap();
    }

    fn settings(&mut self, params: &[(u16, u32)]) {
        let mut payload = Vec::new();
        for (id, value) in params {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        self.send(SETTINGS, 0, 0, &payload);
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.enc
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// A header block as HEADERS + CONTINUATION frames of at most `split` bytes each.
    fn send_block(&mut self, stream: u32, block: &[u8], end_stream: bool, split: usize) {
        let chunks: Vec<&[u8]> = block.chunks(split).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() {
                END_HEADERS
            } else {
                0
            };
            if i == 0 {
                let es = if end_stream { END_STREAM } else { 0 };
                self.send(HEADERS, es | last, stream, chunk);
            } else {
                self.send(CONTINUATION, last, stream, chunk);
            }
        }
    }

    /// Reads the client's frames until a request is complete (END_STREAM).
    fn read_request(&mut self) -> Request {
        let mut req = Request::default();
        let mut block = Vec::new();
        loop {
            let f = self.read_frame().unwrap();
            match f.kind {
                HEADERS | CONTINUATION => {
                    req.stream = f.stream;
                    req.header_frames.push(f.kind);
                    block.extend_from_slice(&f.payload);
                    if f.flags & END_HEADERS != 0 {
                        for (n, v) in self.dec.decode(&block).unwrap() {
                            req.headers.push((
                                String::from_utf8(n).unwrap(),
                                String::from_utf8(v).unwrap(),
                            ));
                        }
                    }
                    if f.kind == HEADERS && f.flags & END_STREAM != 0 {
                        return req;
                    }
                }
                DATA => {
                    req.data_frames.push(f.payload.len());
                    req.body.extend_from_slice(&f.payload);
                    if f.flags & END_STREAM != 0 {
                        return req;
                    }
                }
                _ => {}
            }
        }
    }

    fn response_headers(&mut self, stream: u32) {
        let block = self.block(&[(":status", "200"), ("content-type", "application/grpc")]);
        self.send_block(stream, &block, false, 16_384);
    }

    fn trailers(&mut self, stream: u32, status: &str) {
        let block = self.block(&[("grpc-status", status)]);
        self.send_block(stream, &block, true, 16_384);
    }

    /// Sends DATA within the client's windows, waiting for its WINDOW_UPDATEs.
    fn send_paced(&mut self, stream: u32, mut data: &[u8]) {
        while !data.is_empty() {
            while self.conn_window.min(self.stream_window) <= 0 {
                self.read_frame().unwrap();
            }
            let n = data
                .len()
                .min(16_384)
                .min(self.conn_window.min(self.stream_window) as usize);
            self.send(DATA, 0, stream, &data[..n]);
            self.conn_window -= n as i64;
            self.stream_window -= n as i64;
            data = &data[n..];
        }
    }

    /// Reads one whole request (through its END_STREAM) and answers it with `message`.
    fn answer_next(&mut self, message: &[u8]) {
        loop {
            let f = self.read_frame().unwrap();
            if f.kind == DATA && f.flags & END_STREAM != 0 {
                self.respond_ok(f.stream, message);
                return;
            }
        }
    }

    fn respond_ok(&mut self, stream: u32, message: &[u8]) {
        self.response_headers(stream);
        self.stream_window = 65_535;
        self.send_paced(stream, &grpc_message(message));
        self.trailers(stream, "0");
    }
}

fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Runs `scenario` as the server of one connection; the server sends `settings` first.
fn serve(
    config: Arc<rustls::ServerConfig>,
    settings: &'static [(u16, u32)],
    scenario: impl FnOnce(&mut Peer) + Send + 'static,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = ServerConnection::new(config).unwrap();
        let mut peer = Peer {
            tls: StreamOwned::new(conn, tcp),
            enc: Encoder::new(),
            dec: Decoder::new(),
            buf: Vec::new(),
            conn_window: 65_535,
            stream_window: 65_535,
            pings_acked: Vec::new(),
            window_updates: Vec::new(),
        };
        peer.settings(settings);
        peer.fill(CLIENT_PREFACE.len()).unwrap();
        assert_eq!(&peer.buf[..CLIENT_PREFACE.len()], CLIENT_PREFACE);
        peer.buf.drain(..CLIENT_PREFACE.len());
        let first = peer.read_frame().unwrap();
        assert_eq!(
            (first.kind, first.flags),
            (SETTINGS, 0),
            "client SETTINGS first"
        );
        scenario(&mut peer);
        // Linger until the client hangs up: closing with unread client bytes (a late
        // WINDOW_UPDATE) would make the kernel send RST and discard the client's unread
        // response.
        while peer.read_frame().is_ok() {}
    });
    (addr, handle)
}

fn h2_server() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let pki = pki();
    (server_tls(&pki, &[b"h2"]), client_tls(&pki))
}

fn connect(addr: &str, tls: Arc<rustls::ClientConfig>, cfg: &ClientConfig) -> Channel {
    Channel::connect(addr, localhost(), tls, cfg).unwrap()
}

#[test]
fn continuation_pings_and_padding_in_responses_are_handled() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        for round in 0..2u8 {
            let req = peer.read_request();
            assert_eq!(req.stream, 1 + 2 * u32::from(round));
            peer.send(PING, 0, 0, b"pingpong");
            let block = peer.block(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("x-filler", &"f".repeat(3000)),
            ]);
            peer.send_block(req.stream, &block, false, 100);
            // "secret-N" in three padded DATA frames, a PING in between.
            let msg = grpc_message(format!("secret-{round}").as_bytes());
            let (a, b) = msg.split_at(4);
            let mut padded = vec![7u8];
            padded.extend_from_slice(a);
            padded.extend_from_slice(&[0; 7]);
            peer.send(DATA, PADDED, req.stream, &padded);
            peer.send(PING, 0, 0, b"midwayyy");
            peer.send(DATA, PADDED, req.stream, &[[0u8].as_slice(), b].concat());
            peer.send(DATA, PADDED, req.stream, &[3, 0, 0, 0]);
            let trailers = peer.block(&[("grpc-status", "0"), ("x-trailer", &"t".repeat(5000))]);
            peer.send_block(req.stream, &trailers, true, 1000);
        }
        while peer.pings_acked.len() < 4 {
            peer.read_frame().unwrap();
        }
        assert_eq!(peer.pings_acked[..2], [*b"pingpong", *b"midwayyy"]);
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    assert_eq!(channel.unary(PATH, b"q").unwrap().as_slice(), b"secret-0");
    assert_eq!(channel.unary(PATH, b"q").unwrap().as_slice(), b"secret-1");
    // One more exchange so that the PING ACKs queued at the end get flushed.
    let _ = channel.close();
    done.join().unwrap();
}

#[test]
fn the_request_carries_the_grpc_headers_and_a_huge_path_uses_continuation() {
    let (server, client) = h2_server();
    let long_path = format!("/ratls.GrSecret/{}", "m".repeat(40_000));
    let expected_path = long_path.clone();
    let (addr, done) = serve(server, &[], move |peer| {
        let req = peer.read_request();
        assert_eq!(req.header(":method"), Some("POST"));
        assert_eq!(req.header(":scheme"), Some("https"));
        assert_eq!(req.header(":path"), Some(PATH));
        assert!(req.header(":authority").unwrap().starts_with("127.0.0.1:"));
        assert_eq!(req.header("content-type"), Some("application/grpc"));
        assert_eq!(req.header("te"), Some("trailers"));
        let timeout = req.header("grpc-timeout").unwrap();
        assert!(timeout.len() <= 9 && timeout.ends_with('u'), "{timeout}");
        assert!(req.header("user-agent").unwrap().starts_with("grpc-unary/"));
        assert_eq!(req.headers[0].0, ":method", "pseudo-headers first");
        assert_eq!(req.header_frames, [HEADERS]);
        assert_eq!(req.body, grpc_message(b"hello"));
        peer.respond_ok(req.stream, b"first");

        let req = peer.read_request();
        assert_eq!(req.header(":path"), Some(expected_path.as_str()));
        assert_eq!(req.header_frames, [HEADERS, CONTINUATION, CONTINUATION]);
        peer.respond_ok(req.stream, b"second");
    });
    let cfg = ClientConfig::builder()
        .call_timeout(Duration::from_secs(7))
        .build();
    let mut channel = connect(&addr, client, &cfg);
    assert_eq!(channel.unary(PATH, b"hello").unwrap().as_slice(), b"first");
    assert_eq!(
        channel.unary(&long_path, b"").unwrap().as_slice(),
        b"second"
    );
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_tiny_stream_window_makes_the_client_wait_for_window_update() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[(INITIAL_WINDOW_SIZE, 16)], |peer| {
        // The first call leaves before our SETTINGS arrive (RFC 9113 initial values).
        peer.answer_next(b"warm");
        let mut sent = 0;
        let mut stream = 0;
        while sent < 16 {
            let f = peer.read_frame().unwrap();
            if f.kind == DATA {
                sent += f.payload.len();
                stream = f.stream;
            }
        }
        assert_eq!(sent, 16, "never more than the window");
        assert!(
            peer.poll_frame(Duration::from_millis(300)).is_none(),
            "the client must wait for WINDOW_UPDATE"
        );
        peer.send(WINDOW_UPDATE, 0, stream, &1000u32.to_be_bytes());
        let mut body = 16;
        loop {
            let f = peer.read_frame().unwrap();
            if f.kind == DATA {
                body += f.payload.len();
                if f.flags & END_STREAM != 0 {
                    break;
                }
            }
        }
        assert_eq!(body, 105);
        peer.respond_ok(stream, b"thanks");
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    assert_eq!(channel.unary(PATH, b"").unwrap().as_slice(), b"warm");
    let started = Instant::now();
    assert_eq!(
        channel.unary(PATH, &[9u8; 100]).unwrap().as_slice(),
        b"thanks"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(channel);
    done.join().unwrap();
}

#[test]
fn the_connection_window_and_a_larger_max_frame_size_are_honoured() {
    let (server, client) = h2_server();
    let (addr, done) = serve(
        server,
        &[(INITIAL_WINDOW_SIZE, 1 << 20), (MAX_FRAME_SIZE, 32_768)],
        |peer| {
            // The first call (5 bytes of connection window) also brings our SETTINGS over.
            peer.answer_next(b"warm");
            let mut received = 0;
            let mut frames = Vec::new();
            let mut stream = 0;
            while received < 65_530 {
                let f = peer.read_frame().unwrap();
                if f.kind == DATA {
                    received += f.payload.len();
                    frames.push(f.payload.len());
                    stream = f.stream;
                }
            }
            assert_eq!(
                received, 65_530,
                "exactly what is left of the connection window"
            );
            assert!(peer.poll_frame(Duration::from_millis(300)).is_none());
            assert!(frames.iter().all(|&n| n <= 32_768));
            assert!(frames.iter().any(|&n| n > 16_384), "{frames:?}");
            peer.send(WINDOW_UPDATE, 0, 0, &(1u32 << 20).to_be_bytes());
            loop {
                let f = peer.read_frame().unwrap();
                if f.kind == DATA {
                    received += f.payload.len();
                    if f.flags & END_STREAM != 0 {
                        break;
                    }
                }
            }
            assert_eq!(received, 200 * 1024 + 5);
            peer.respond_ok(stream, b"got it");
        },
    );
    let mut channel = connect(&addr, client, &ClientConfig::default());
    assert_eq!(channel.unary(PATH, b"").unwrap().as_slice(), b"warm");
    let request = vec![1u8; 200 * 1024];
    assert_eq!(channel.unary(PATH, &request).unwrap().as_slice(), b"got it");
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_200_kib_reply_needs_the_clients_window_updates() {
    let (server, client) = h2_server();
    let reply: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 253) as u8).collect();
    let expected = reply.clone();
    let (addr, done) = serve(server, &[], move |peer| {
        let req = peer.read_request();
        peer.respond_ok(req.stream, &reply);
        assert!(
            peer.window_updates.iter().any(|u| u.0 == 0),
            "connection update"
        );
        assert!(
            peer.window_updates.iter().any(|u| u.0 == 1),
            "stream update"
        );
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    assert_eq!(channel.unary(PATH, b"").unwrap().as_slice(), expected);
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_trailers_only_response_is_a_status() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        let req = peer.read_request();
        let block = peer.block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "7"),
            ("grpc-message", "denied%20here%3A%20%C3%A9"),
        ]);
        peer.send_block(req.stream, &block, true, 16_384);
        let req = peer.read_request();
        peer.respond_ok(req.stream, b"still fine");
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    match channel.unary(PATH, b"").unwrap_err() {
        Error::Status { code, message } => {
            assert_eq!(code, Code::PermissionDenied);
            assert_eq!(message, "denied here: \u{e9}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(channel.unary(PATH, b"").unwrap().as_slice(), b"still fine");
    drop(channel);
    done.join().unwrap();
}

#[test]
fn goaway_fails_the_call_and_no_new_stream_is_opened() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        peer.read_request();
        let mut payload = vec![0, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(b"maintenance");
        peer.send(GOAWAY, 0, 0, &payload);
        let mut later = Vec::new();
        while let Ok(f) = peer.read_frame() {
            later.push(f.kind);
        }
        assert!(!later.contains(&HEADERS), "{later:?}");
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    match channel.unary(PATH, b"").unwrap_err() {
        Error::GoAway {
            code,
            last_stream_id,
            debug,
        } => {
            assert_eq!((code, last_stream_id), (ErrorCode::NO_ERROR, 0));
            assert_eq!(debug, "maintenance");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        channel.unary(PATH, b""),
        Err(Error::GoAway { .. })
    ));
    drop(channel);
    done.join().unwrap();
}

#[test]
fn rst_stream_fails_only_that_call() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        let req = peer.read_request();
        peer.send(
            RST_STREAM,
            0,
            req.stream,
            &ErrorCode::ENHANCE_YOUR_CALM.0.to_be_bytes(),
        );
        let req = peer.read_request();
        assert_eq!(req.stream, 3);
        peer.respond_ok(req.stream, b"ok");
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    let err = channel.unary(PATH, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Reset {
                code: ErrorCode::ENHANCE_YOUR_CALM
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some(Code::ResourceExhausted));
    assert_eq!(channel.unary(PATH, b"").unwrap().as_slice(), b"ok");
    drop(channel);
    done.join().unwrap();
}

#[test]
fn an_oversize_frame_is_answered_with_goaway_frame_size_error() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        let req = peer.read_request();
        peer.response_headers(req.stream);
        peer.send(DATA, 0, req.stream, &vec![0u8; 20_000]);
        loop {
            let f = peer.read_frame().unwrap();
            if f.kind == GOAWAY {
                assert_eq!(
                    &f.payload[4..8],
                    &ErrorCode::FRAME_SIZE_ERROR.0.to_be_bytes()
                );
                break;
            }
        }
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    let err = channel.unary(PATH, b"").unwrap_err();
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
    assert!(matches!(
        channel.unary(PATH, b""),
        Err(Error::Unusable { .. })
    ));
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_server_hanging_up_mid_call_is_connection_closed() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        let req = peer.read_request();
        peer.response_headers(req.stream);
        let _ = peer.tls.sock.shutdown(std::net::Shutdown::Both);
    });
    let mut channel = connect(&addr, client, &ClientConfig::default());
    let err = channel.unary(PATH, b"").unwrap_err();
    assert!(
        matches!(err, Error::ConnectionClosed { .. } | Error::Io { .. }),
        "{err}"
    );
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_silent_server_hits_the_call_deadline() {
    let (server, client) = h2_server();
    let (addr, done) = serve(server, &[], |peer| {
        peer.read_request();
        std::thread::sleep(Duration::from_millis(3000));
    });
    let cfg = ClientConfig::builder()
        .call_timeout(Duration::from_millis(250))
        .build();
    let mut channel = connect(&addr, client, &cfg);
    let started = Instant::now();
    let err = channel.unary(PATH, b"").unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::Timeout {
            phase: Phase::Call { path },
            after,
        } => {
            assert_eq!(path, PATH);
            assert_eq!(*after, Duration::from_millis(250));
        }
        other => panic!("{other}"),
    }
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    // The 250 ms timeout plus a wide margin, below the peer's 3 s silence.
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    drop(channel);
    done.join().unwrap();
}

#[test]
fn a_server_without_h2_alpn_is_refused_at_the_handshake() {
    let pki = pki();
    let server = server_tls(&pki, &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let done = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(server).unwrap(), tcp);
        let _ = tls.read(&mut [0u8; 64]);
    });
    let err = Channel::connect(
        &addr,
        localhost(),
        client_tls(&pki),
        &ClientConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    done.join().unwrap();
}

#[test]
fn a_server_that_never_speaks_tls_hits_the_handshake_timeout() {
    let pki = pki();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = ClientConfig::builder()
        .handshake_timeout(Duration::from_millis(200))
        .build();
    let err = Channel::connect(&addr, localhost(), client_tls(&pki), &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Handshake,
                ..
            }
        ),
        "{err}"
    );
    drop(listener);
}

#[test]
fn a_closed_port_is_a_connect_error_naming_the_address() {
    let pki = pki();
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    match Channel::connect(
        &addr,
        localhost(),
        client_tls(&pki),
        &ClientConfig::default(),
    ) {
        Err(Error::Connect { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_certificate_from_another_ca_is_a_tls_error() {
    let (server, _) = h2_server();
    let other_client = client_tls(&pki());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let done = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(server).unwrap(), tcp);
        let _ = tls.read(&mut [0u8; 64]);
    });
    let err =
        Channel::connect(&addr, localhost(), other_client, &ClientConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls {
                phase: Phase::Handshake,
                ..
            }
        ),
        "{err}"
    );
    done.join().unwrap();
}

/// The client's last TLS flight leaves with its first call (see `Channel::connect`), so a
/// server that refuses the client certificate says so in that call's result: a TLS alert.
#[test]
fn a_server_refusing_the_client_certificate_answers_the_first_call_with_an_alert() {
    let server_pki = pki();
    let server = server_tls(&server_pki, &[b"h2"]);
    let stranger = pki();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_pki.ca_der.clone()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(stranger.client_key_der.clone().into());
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![stranger.client_der.clone()], key)
    .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let done = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(server).unwrap(), tcp);
        assert!(tls.read(&mut [0u8; 64]).is_err(), "the client is refused");
        // Drain until the client hangs up: closing with unread bytes would send RST and
        // could discard the alert before the client reads it.
        let _ = io::copy(&mut tls.sock, &mut io::sink());
    });
    let mut channel = Channel::connect(
        &addr,
        localhost(),
        Arc::new(client),
        &ClientConfig::default(),
    )
    .expect("the handshake completes on the client's side");
    let err = channel.unary(PATH, b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls {
                phase: Phase::Call { .. },
                source: rustls::Error::AlertReceived(_),
            }
        ),
        "{err:?}"
    );
    drop(channel);
    done.join().unwrap();
}
