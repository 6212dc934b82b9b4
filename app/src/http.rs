//! HTTP/1.1 message framing over any deadline-aware byte stream: a request head of at most
//! [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] fields (parsed by `httparse`), bodies framed only by
//! `Content-Length` and capped at [`MAX_BODY_BYTES`], keep-alive and pipelining, and the
//! serialisation of responses. Every read runs under a deadline set by the caller's timeouts.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::pyjson;

/// Largest request head (request line and header fields) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A byte stream whose reads fail with `TimedOut`/`WouldBlock` once a deadline has passed.
pub trait Timed: Read + Write {
    fn set_deadline(&mut self, deadline: Instant);
}

/// One complete request, body included.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (origin form: path and optional query).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the client is willing to send another request on this connection.
    pub keep_alive: bool,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why no request could be read; all but `Io` are answered before the connection closes.
#[derive(Debug)]
pub enum RequestError {
    Malformed(&'static str),
    HeadTooLarge,
    TooManyHeaders,
    BodyTooLarge,
    LengthRequired,
    UnknownExpectation,
    Timeout,
    /// The connection broke or closed mid-request: nothing can be answered.
    Io(io::Error),
}

impl RequestError {
    /// The response owed to the client, if one can still be sent.
    pub fn response(&self) -> Option<Response> {
        let (status, message) = match self {
            RequestError::Malformed(detail) => (400, *detail),
            RequestError::HeadTooLarge => (431, "request head larger than 8192 bytes"),
            RequestError::TooManyHeaders => (431, "more than 32 header fields"),
            RequestError::BodyTooLarge => (413, "request body larger than 65536 bytes"),
            RequestError::LengthRequired => (
                411,
                "Transfer-Encoding request bodies are not supported; send Content-Length",
            ),
            RequestError::UnknownExpectation => (417, "only Expect: 100-continue is supported"),
            RequestError::Timeout => (408, "request not received in time"),
            RequestError::Io(_) => return None,
        };
        let mut response = Response::error(status, message);
        response.close = true;
        Some(response)
    }
}

/// Reads requests from one connection, keeping bytes of a pipelined next request.
pub struct RequestReader {
    buf: Vec<u8>,
    filled: usize,
}

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader {
            buf: vec![0; MAX_HEAD_BYTES],
            filled: 0,
        }
    }
}

impl RequestReader {
    /// True when no byte of a next request is buffered (nothing pipelined).
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Waits up to `idle` for a request to start, then up to `limit` for all of it.
    /// `Ok(None)`: the client closed or stayed idle, and nothing is owed to it.
    pub fn read_request<S: Timed>(
        &mut self,
        stream: &mut S,
        idle: Duration,
        limit: Duration,
    ) -> Result<Option<Request>, RequestError> {
        if self.filled == 0 {
            stream.set_deadline(Instant::now() + idle);
            match self.fill(stream) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(err) if is_timeout(&err) || is_disconnect(&err) => return Ok(None),
                Err(err) => return Err(RequestError::Io(err)),
            }
        }
        stream.set_deadline(Instant::now() + limit);
        let (head, head_len) = loop {
            let filled = self.buf.get(..self.filled).unwrap_or_default();
            if let Some(parsed) = parse_head(filled)? {
                break parsed;
            }
            if self.filled == self.buf.len() {
                return Err(RequestError::HeadTooLarge);
            }
            match self.fill(stream) {
                Ok(0) => return Err(RequestError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(err) => return Err(classify(err)),
            }
        };
        let body = self.read_body(stream, &head, head_len)?;
        Ok(Some(Request {
            keep_alive: head.keep_alive(),
            method: head.method,
            target: head.target,
            minor_version: head.minor_version,
            content_type: head.content_type,
            body,
        }))
    }

    fn fill<S: Read>(&mut self, stream: &mut S) -> io::Result<usize> {
        let free = self.buf.get_mut(self.filled..).unwrap_or_default();
        let n = stream.read(free)?;
        self.filled += n;
        Ok(n)
    }

    /// Takes the body from the buffered bytes, then from the stream; keeps any surplus (the
    /// start of a pipelined request) for the next call.
    fn read_body<S: Timed>(
        &mut self,
        stream: &mut S,
        head: &Head,
        head_len: usize,
    ) -> Result<Vec<u8>, RequestError> {
        let length = usize::try_from(head.content_length)
            .ok()
            .filter(|&n| n as u64 <= MAX_BODY_BYTES)
            .ok_or(RequestError::BodyTooLarge)?;
        let buffered = self.filled - head_len;
        if head.expect_continue && buffered < length {
            stream
                .write_all(CONTINUE)
                .and_then(|()| stream.flush())
                .map_err(RequestError::Io)?;
        }
        let take = buffered.min(length);
        let mut body = Vec::with_capacity(length);
        body.extend_from_slice(self.buf.get(head_len..head_len + take).unwrap_or_default());
        self.buf.copy_within(head_len + take..self.filled, 0);
        self.filled -= head_len + take;
        while body.len() < length {
            let start = body.len();
            body.resize(length, 0);
            let chunk = body.get_mut(start..).unwrap_or_default();
            match stream.read(chunk) {
                Ok(0) => return Err(RequestError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => body.truncate(start + n),
                Err(err) => return Err(classify(err)),
            }
        }
        Ok(body)
    }
}

/// The parts of a request head the server acts on.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    content_length: u64,
    content_type: Option<String>,
    expect_continue: bool,
    connection_close: bool,
    connection_keep_alive: bool,
}

impl Head {
    fn keep_alive(&self) -> bool {
        match self.minor_version {
            1 => !self.connection_close,
            _ => self.connection_keep_alive && !self.connection_close,
        }
    }
}

/// `Ok(None)` while the head is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, RequestError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(RequestError::Malformed("unsupported HTTP version"));
        }
        Err(_) => return Err(RequestError::Malformed("malformed request head")),
    };
    // Complete implies method, path and version are present.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(RequestError::Malformed("malformed request line"));
    };
    let mut head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor_version,
        content_length: 0,
        content_type: None,
        expect_continue: false,
        connection_close: false,
        connection_keep_alive: false,
    };
    let mut content_length: Option<u64> = None;
    for field in req.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(field.value)?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(RequestError::Malformed("conflicting Content-Length fields"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::LengthRequired);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in ascii(field.value)?.split(',').map(str::trim) {
                head.connection_close |= token.eq_ignore_ascii_case("close");
                head.connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(ascii(field.value)?.to_owned());
        } else if name.eq_ignore_ascii_case("expect") {
            if !ascii(field.value)?
                .trim()
                .eq_ignore_ascii_case("100-continue")
            {
                return Err(RequestError::UnknownExpectation);
            }
            head.expect_continue = minor_version == 1;
        }
    }
    head.content_length = content_length.unwrap_or(0);
    Ok(Some((head, head_len)))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6); no sign, no list, no whitespace inside.
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    let text = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(RequestError::Malformed("invalid Content-Length"))?;
    text.parse()
        .map_err(|_| RequestError::Malformed("invalid Content-Length"))
}

fn ascii(value: &[u8]) -> Result<&str, RequestError> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or(RequestError::Malformed("header field value is not ASCII"))
}

fn classify(err: io::Error) -> RequestError {
    if is_timeout(&err) {
        RequestError::Timeout
    } else {
        RequestError::Io(err)
    }
}

/// Socket read timeouts surface as `WouldBlock` (EAGAIN) on Linux, as `TimedOut` elsewhere.
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer went away (TCP close without TLS close_notify, reset).
pub fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A response with a JSON body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// `Allow` field for 405 responses.
    pub allow: Option<&'static str>,
    /// `Retry-After` seconds for 503 responses.
    pub retry_after: Option<u32>,
    /// Close the connection after this response whatever the client asked.
    pub close: bool,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            body,
            allow: None,
            retry_after: None,
            close: false,
        }
    }

    /// `{"error": "<message>"}\n`
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, pyjson::object(&[("error", message)]))
    }

    /// Appends the response to `out`. `head_only` answers HEAD: same fields, no body.
    pub fn write_to(&self, out: &mut Vec<u8>, head_only: bool, keep_alive: bool, http10: bool) {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(192);
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nServer: app\r\nDate: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            http_date(SystemTime::now()),
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        if let Some(secs) = self.retry_after {
            let _ = write!(head, "Retry-After: {secs}\r\n");
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        } else if http10 {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
    }
}

/// Reason phrases (RFC 9110 §15) for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. A clock before 1970
/// reads as the epoch; one past year 9999 (which the format's 4-digit year cannot hold) as the
/// last second of 9999.
pub fn http_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dt = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|dt| dt.year() <= 9999)
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc());
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // Every component of a year-1970..=9999 date-time has a field in this format.
    dt.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted peer: each read returns the next chunk (or error); then EOF.
    #[derive(Default)]
    struct Script {
        reads: VecDeque<Result<Vec<u8>, io::ErrorKind>>,
        written: Vec<u8>,
    }

    impl Script {
        fn new(chunks: &[&[u8]]) -> Script {
            Script {
                reads: chunks.iter().map(|c| Ok(c.to_vec())).collect(),
                written: Vec::new(),
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None => Ok(0),
                Some(Err(kind)) => Err(kind.into()),
                Some(Ok(chunk)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.reads.push_front(Ok(chunk[n..].to_vec()));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Timed for Script {
        fn set_deadline(&mut self, _: Instant) {}
    }

    const T: Duration = Duration::from_secs(1);

    fn read(reader: &mut RequestReader, s: &mut Script) -> Result<Option<Request>, RequestError> {
        reader.read_request(s, T, T)
    }

    #[test]
    fn a_get_is_parsed_and_keeps_the_connection_alive() {
        let mut s = Script::new(&[b"GET /customer/1?x=y HTTP/1.1\r\nHost: a\r\n\r\n"]);
        let req = read(&mut RequestReader::default(), &mut s)
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/customer/1?x=y");
        assert_eq!(req.minor_version, 1);
        assert!(req.keep_alive);
        assert!(req.body.is_empty());
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        let mut s = Script::new(&[b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"]);
        assert!(
            !read(&mut RequestReader::default(), &mut s)
                .unwrap()
                .unwrap()
                .keep_alive
        );
        let mut s = Script::new(&[b"GET / HTTP/1.0\r\n\r\n"]);
        assert!(
            !read(&mut RequestReader::default(), &mut s)
                .unwrap()
                .unwrap()
                .keep_alive
        );
        let mut s = Script::new(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        assert!(
            read(&mut RequestReader::default(), &mut s)
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn a_body_split_across_reads_is_reassembled() {
        let mut s = Script::new(&[
            b"PUT /customer/1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\nda",
            b"ta",
            b"=Tom",
        ]);
        let req = read(&mut RequestReader::default(), &mut s)
            .unwrap()
            .unwrap();
        assert_eq!(req.body, b"data=Tom");
        assert_eq!(
            req.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[test]
    fn pipelined_requests_are_read_one_after_the_other() {
        let mut s = Script::new(&[
            b"PUT /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n",
            b"\r\n",
        ]);
        let mut reader = RequestReader::default();
        let first = read(&mut reader, &mut s).unwrap().unwrap();
        assert_eq!(
            (first.target.as_str(), first.body.as_slice()),
            ("/a", &b"abc"[..])
        );
        assert_eq!(read(&mut reader, &mut s).unwrap().unwrap().target, "/b");
        assert_eq!(read(&mut reader, &mut s).unwrap().unwrap().target, "/c");
        assert!(read(&mut reader, &mut s).unwrap().is_none());
    }

    #[test]
    fn a_clean_close_or_idle_timeout_before_a_request_is_not_an_error() {
        assert!(
            read(&mut RequestReader::default(), &mut Script::new(&[]))
                .unwrap()
                .is_none()
        );
        let mut s = Script::default();
        s.reads.push_back(Err(io::ErrorKind::WouldBlock));
        assert!(
            read(&mut RequestReader::default(), &mut s)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_timeout_inside_a_request_is_408() {
        let mut s = Script::new(&[b"GET / HTTP/1.1\r\n"]);
        s.reads.push_back(Err(io::ErrorKind::WouldBlock));
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert!(matches!(err, RequestError::Timeout));
        assert_eq!(err.response().unwrap().status, 408);
    }

    #[test]
    fn an_eof_inside_the_body_owes_no_response() {
        let mut s = Script::new(&[b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert!(matches!(err, RequestError::Io(_)));
        assert!(err.response().is_none());
    }

    #[test]
    fn an_oversized_body_is_refused_before_it_is_read() {
        let mut s = Script::new(&[b"PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert_eq!(err.response().unwrap().status, 413);
        let mut s =
            Script::new(&[b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert_eq!(err.response().unwrap().status, 400);
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_accepted() {
        let head = format!("PUT / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n");
        let body = vec![b'x'; MAX_BODY_BYTES as usize];
        let mut s = Script::new(&[head.as_bytes(), &body]);
        let req = read(&mut RequestReader::default(), &mut s)
            .unwrap()
            .unwrap();
        assert_eq!(req.body.len() as u64, MAX_BODY_BYTES);
    }

    #[test]
    fn chunked_bodies_are_411() {
        let mut s = Script::new(&[b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert_eq!(err.response().unwrap().status, 411);
    }

    #[test]
    fn bad_or_conflicting_content_lengths_are_400() {
        for head in [
            &b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let mut s = Script::new(&[head]);
            let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
            assert!(matches!(err, RequestError::Malformed(_)), "{head:?}");
        }
    }

    #[test]
    fn garbage_and_bad_versions_are_400() {
        for head in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"\x16\x03\x01\x00\x05hello",
        ] {
            let mut s = Script::new(&[head]);
            let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
            assert_eq!(err.response().unwrap().status, 400, "{head:?}");
        }
    }

    #[test]
    fn a_head_over_the_limit_is_431() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let mut s = Script::new(&[long.as_bytes()]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert!(matches!(err, RequestError::HeadTooLarge));
        assert_eq!(err.response().unwrap().status, 431);
    }

    #[test]
    fn too_many_header_fields_is_431() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let mut s = Script::new(&[head.as_bytes()]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert!(matches!(err, RequestError::TooManyHeaders));
    }

    #[test]
    fn expect_100_continue_gets_an_interim_response() {
        let mut s = Script::new(&[
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            b"abc",
        ]);
        let req = read(&mut RequestReader::default(), &mut s)
            .unwrap()
            .unwrap();
        assert_eq!(req.body, b"abc");
        assert_eq!(s.written, CONTINUE);
    }

    #[test]
    fn an_unknown_expectation_is_417() {
        let mut s = Script::new(&[b"PUT / HTTP/1.1\r\nExpect: coffee\r\n\r\n"]);
        let err = read(&mut RequestReader::default(), &mut s).unwrap_err();
        assert_eq!(err.response().unwrap().status, 417);
    }

    #[test]
    fn responses_carry_length_type_and_connection_fields() {
        let mut out = Vec::new();
        Response::json(200, "{\"1\": \"Tom\"}\n".into()).write_to(&mut out, false, true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nServer: app\r\nDate: "),
            "{text}"
        );
        assert!(text.ends_with(
            "GMT\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"1\": \"Tom\"}\n"
        ));

        let mut out = Vec::new();
        let mut r = Response::error(405, "method not allowed");
        r.allow = Some("GET, HEAD, PUT");
        r.write_to(&mut out, true, false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nAllow: GET, HEAD, PUT\r\nConnection: close\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "HEAD has no body");
    }

    /// Mutations of valid requests, split at random points: the reader must answer with a
    /// request or an error, never panic, and never return a body over the limit.
    #[test]
    fn random_mutations_never_panic_the_reader() {
        let seeds: [&[u8]; 3] = [
            b"PUT /customer/1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\ndata=Tom",
            b"GET /customer/1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 6) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => {
                        let alphabet = b"\r\n:0123456789 ";
                        bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]);
                    }
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at.max(1)),
                }
            }
            let split = (next() as usize) % (bytes.len() + 1);
            let mut s = Script::new(&[&bytes[..split], &bytes[split..]]);
            let mut reader = RequestReader::default();
            for _ in 0..4 {
                match read(&mut reader, &mut s) {
                    Ok(Some(req)) => assert!(req.body.len() as u64 <= MAX_BODY_BYTES),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            http_date(at(1_735_689_599)),
            "Tue, 31 Dec 2024 23:59:59 GMT"
        );
        assert_eq!(
            http_date(at(1_700_000_000)),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            http_date(at(253_402_300_799)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(1)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
