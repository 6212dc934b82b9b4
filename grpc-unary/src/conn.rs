//! The HTTP/2 client connection (RFC 9113) carrying gRPC unary calls, one at a time or a
//! batch at once, over any blocking byte transport with settable timeouts.
//!
//! Guarantees: every read and write is bounded by the current phase's deadline; every frame
//! is size-checked before its payload is read; flow control is enforced both ways; header
//! blocks are always HPACK-decoded (even for abandoned streams) so the compression state
//! never drifts; connection-level violations send GOAWAY and make the connection unusable,
//! while call-level failures reset only the call's stream.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::channel::Replies;
use crate::error::{Code, Error, ErrorCode, Phase};
use crate::frame::{
    self, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, Frame, FrameHeader, HEADER_LEN, MAX_STREAM_ID,
    MAX_WINDOW, flag, kind, setting,
};
use crate::grpc::{self, BodyError, MessageReader, PREFIX_LEN};
use crate::hpack::{self, HeaderDecoder};

/// Sent as `user-agent` on every call.
pub(crate) const USER_AGENT: &str = concat!("grpc-unary/", env!("CARGO_PKG_VERSION"));
/// Read buffer: room for two maximum-size frames at our SETTINGS_MAX_FRAME_SIZE.
const READ_BUF_LEN: usize = 2 * (HEADER_LEN + DEFAULT_MAX_FRAME_SIZE as usize);
/// Pending output is written out once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;
/// Receive windows are replenished once half of them has been consumed.
const WINDOW_REFILL_AT: u32 = DEFAULT_WINDOW / 2;
/// Most non-blocking reads made to catch up with frames that arrived while idle.
const MAX_IDLE_READS: usize = 64;
/// Longest GOAWAY debug text kept for the error message.
const MAX_GOAWAY_DEBUG: usize = 256;

/// A blocking byte stream whose reads and writes can be bounded in time.
pub(crate) trait Transport: Read + Write {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Switches reads to non-blocking (`WouldBlock` when nothing has arrived) and back.
    fn set_nonblocking(&mut self, on: bool) -> io::Result<()>;
    /// Sends what was written and not yet flushed, then ends the byte stream (TLS
    /// close_notify, TCP FIN).
    fn shutdown(&mut self) -> io::Result<()>;
}

/// Limits applied to what the server sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_message: usize,
    pub(crate) max_header_list: u32,
}

impl Limits {
    /// Largest encoded header block buffered before decoding: generous next to the decoded
    /// limit (HPACK rarely expands), and a hard bound on memory either way.
    fn max_block(&self) -> usize {
        usize::try_from(self.max_header_list)
            .unwrap_or(usize::MAX)
            .max(4096)
            .saturating_mul(2)
    }
}

/// A phase's deadline, and how I/O errors map to errors of that phase.
pub(crate) struct Budget {
    phase: Phase,
    deadline: Option<Instant>,
    total: Duration,
}

impl Budget {
    pub(crate) fn new(phase: Phase, total: Duration) -> Self {
        Budget {
            phase,
            deadline: Instant::now().checked_add(total),
            total,
        }
    }

    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Time left, or the phase's timeout error. `None` deadline (overflow) means a year.
    pub(crate) fn remaining(&self) -> Result<Duration, Error> {
        let left = match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(365 * 24 * 3600),
        };
        if left.is_zero() {
            Err(self.timeout())
        } else {
            Ok(left)
        }
    }

    pub(crate) fn timeout(&self) -> Error {
        Error::Timeout {
            phase: self.phase.clone(),
            after: self.total,
        }
    }

    pub(crate) fn io_error(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout(),
            io::ErrorKind::UnexpectedEof => Error::ConnectionClosed {
                phase: self.phase.clone(),
            },
            _ => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => Error::Tls {
                    phase: self.phase.clone(),
                    source: tls.clone(),
                },
                None => Error::Io {
                    phase: self.phase.clone(),
                    source: e,
                },
            },
        }
    }
}

/// One request of a batch, checked and ready to frame.
struct Request<'a> {
    path: &'a str,
    prefix: [u8; PREFIX_LEN],
    body: &'a [u8],
}

/// An HTTP/2 connection on which the client makes unary calls.
pub(crate) struct Connection<T> {
    io: T,
    reader: FrameReader,
    st: State,
}

impl<T: Transport> Connection<T> {
    /// Queues the client preface and SETTINGS; nothing is sent yet. They leave with the
    /// first requests (RFC 9113 section 3.4 allows requests right after the preface), and
    /// the server's SETTINGS, which must be its first frame, are applied and acknowledged
    /// whenever they arrive. Until then the protocol's initial values hold.
    pub(crate) fn new(io: T, limits: Limits, authority: String) -> Self {
        let mut conn = Connection {
            io,
            reader: FrameReader::new(),
            st: State::new(limits, authority),
        };
        conn.st.out.extend_from_slice(frame::PREFACE);
        frame::put_settings(
            &mut conn.st.out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_HEADER_LIST_SIZE, limits.max_header_list),
            ],
        );
        conn
    }

    pub(crate) fn transport(&self) -> &T {
        &self.io
    }

    /// One unary call: HEADERS (+CONTINUATION), DATA honouring the peer's windows, then the
    /// response headers, exactly one message and the trailers (or a trailers-only response).
    pub(crate) fn unary(
        &mut self,
        path: &str,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.unary_many(&[(path, request)], timeout)?
            .pop()
            .unwrap_or_else(no_result)
    }

    /// Several unary calls on concurrent streams, all sent before any reply is awaited;
    /// results in request order. `Err` fails the whole batch (connection failure, deadline,
    /// invalid request); call-level failures are the inner results.
    ///
    /// At most the server's SETTINGS_MAX_CONCURRENT_STREAMS streams are open at once (the
    /// rest wait for the next round), and calls the server refused unprocessed
    /// (REFUSED_STREAM, RFC 9113 section 8.7) are retried in the next round, provided the
    /// round finished some other call, so a batch always ends.
    pub(crate) fn unary_many(
        &mut self,
        requests: &[(&str, &[u8])],
        timeout: Duration,
    ) -> Result<Replies, Error> {
        let budget = Budget::new(
            Phase::Call {
                path: batch_path(requests),
            },
            timeout,
        );
        // Frames can only have arrived while idle once a call was made.
        if self.st.last_stream > 0 {
            self.drain_pending(&budget)?;
        }
        self.st.check_usable()?;
        let mut checked = Vec::with_capacity(requests.len());
        for &(path, body) in requests {
            check_path(path)?;
            let prefix = grpc::message_prefix(body.len()).ok_or(Error::MessageTooLarge {
                size: u64::try_from(body.len()).unwrap_or(u64::MAX),
                limit: u64::from(u32::MAX),
            })?;
            checked.push(Request { path, prefix, body });
        }
        let mut results: Vec<Option<Result<Zeroizing<Vec<u8>>, Error>>> =
            requests.iter().map(|_| None).collect();
        let mut todo: VecDeque<usize> = (0..requests.len()).collect();
        while !todo.is_empty() {
            let room = self.st.stream_room().min(todo.len());
            let round: Vec<usize> = todo.drain(..room).collect();
            let mut calls = Vec::with_capacity(round.len());
            for _ in &round {
                let stream = self.st.open_stream()?;
                calls.push(Call::new(stream, &self.st));
            }
            let run = self.run_calls(&mut calls, &round, &checked, &budget);
            for call in &calls {
                self.end_call(call, &run);
            }
            run?;
            let mut refused = Vec::new();
            for (call, i) in calls.iter_mut().zip(round) {
                let outcome = call.outcome();
                if matches!(outcome, Err(Error::Reset { code }) if code == ErrorCode::REFUSED_STREAM)
                {
                    refused.push((i, outcome));
                } else if let Some(slot) = results.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
            let finished_some = refused.len() < calls.len();
            for (i, outcome) in refused.into_iter().rev() {
                if finished_some {
                    todo.push_front(i);
                } else if let Some(slot) = results.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(no_result))
            .collect())
    }

    /// Sends GOAWAY(NO_ERROR), then closes TLS and TCP.
    /// A peer that already hung up is not an error here: the connection is closed either way.
    pub(crate) fn close(&mut self, budget: &Budget) -> Result<(), Error> {
        let gone = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::NotConnected
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            )
        };
        let t = budget.remaining()?;
        let mut result = self.io.set_write_timeout(t);
        if self.st.dead.is_none() {
            // Written, not flushed: the shutdown sends GOAWAY and close_notify together.
            frame::put_goaway(&mut self.st.out, 0, ErrorCode::NO_ERROR);
            result = result.and_then(|()| self.io.write_all(&self.st.out));
            self.st.out.zeroize();
        }
        self.st.dead = Some("channel closed".into());
        result = result.and_then(|()| self.io.shutdown());
        match result {
            Err(e) if !gone(&e) => Err(budget.io_error(e)),
            _ => Ok(()),
        }
    }

    /// Queues every call's HEADERS and DATA (flushing only when a window is shut or the
    /// output is large), then reads until every call is done.
    fn run_calls(
        &mut self,
        calls: &mut [Call],
        round: &[usize],
        requests: &[Request<'_>],
        budget: &Budget,
    ) -> Result<(), Error> {
        let timeout = grpc::encode_timeout(budget.remaining()?);
        for (at, &i) in round.iter().enumerate() {
            let Some(request) = requests.get(i) else {
                continue;
            };
            if let Some(call) = calls.get_mut(at) {
                if call.done() {
                    continue; // failed while an earlier call waited for window
                }
                if let Err(e) = self.st.queue_headers(call.stream, request.path, &timeout) {
                    call.fail(e);
                    continue;
                }
                call.opened = true;
            }
            self.send_body(calls, at, request, budget)?;
        }
        while !calls.iter().all(Call::done) {
            self.step(calls, budget)?;
        }
        Ok(())
    }

    /// Sends the length-prefixed message as DATA frames within the connection and stream
    /// send windows, reading frames (WINDOW_UPDATE, SETTINGS...) whenever a window is shut.
    fn send_body(
        &mut self,
        calls: &mut [Call],
        at: usize,
        request: &Request<'_>,
        budget: &Budget,
    ) -> Result<(), Error> {
        let (prefix, body) = (&request.prefix, request.body);
        let total = PREFIX_LEN + body.len();
        let mut sent = 0usize;
        loop {
            let Some(call) = calls.get_mut(at) else {
                return Ok(());
            };
            if call.done() {
                return Ok(());
            }
            let window = self.st.send_window.min(call.send_window);
            if window <= 0 {
                self.step(calls, budget)?;
                continue;
            }
            let n = (total - sent)
                .min(usize::try_from(window).unwrap_or(usize::MAX))
                .min(usize::try_from(self.st.peer_max_frame).unwrap_or(usize::MAX));
            let end = sent + n == total;
            let flags = if end { flag::END_STREAM } else { 0 };
            frame::put_header(&mut self.st.out, n, kind::DATA, flags, call.stream);
            put_range(&mut self.st.out, prefix, body, sent, sent + n);
            let n64 = i64::try_from(n).unwrap_or(i64::MAX);
            self.st.send_window -= n64;
            call.send_window -= n64;
            sent += n;
            if end {
                call.sent_end = true;
                return Ok(());
            }
            if self.st.out.len() >= FLUSH_AT {
                self.flush(budget)?;
            }
        }
    }

    /// After a call: reset its stream if either side is still open, and scrub buffers.
    fn end_call(&mut self, call: &Call, result: &Result<(), Error>) {
        let reset_by_peer = matches!(call.failure, Some(Error::Reset { .. }));
        if call.opened
            && self.st.dead.is_none()
            && !reset_by_peer
            && !(call.got_end && call.sent_end)
        {
            // The response is complete but our request is not: "no longer needed" (RFC 9113
            // section 8.1). Otherwise the call was abandoned: CANCEL.
            let code = if call.got_end && result.is_ok() {
                ErrorCode::NO_ERROR
            } else {
                ErrorCode::CANCEL
            };
            frame::put_rst_stream(&mut self.st.out, call.stream, code);
        }
        self.reader.scrub();
    }

    /// Handles the frames that arrived while the connection was idle (GOAWAY, SETTINGS,
    /// PING...) without blocking, so that a server going away, or gone, is noticed before a
    /// new stream is opened.
    fn drain_pending(&mut self, budget: &Budget) -> Result<(), Error> {
        if self.st.dead.is_some() {
            return Ok(());
        }
        // Bounded: a peer streaming frames at an idle connection cannot keep us here.
        for _ in 0..MAX_IDLE_READS {
            loop {
                match self.reader.has_frame() {
                    Ok(true) => self.step(&mut [], budget)?,
                    Ok(false) => break,
                    Err(e) => return Err(self.read_failed(e, budget)),
                }
            }
            match self.reader.read_available(&mut self.io) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(self.read_failed(e, budget)),
            }
        }
        Ok(())
    }

    /// Flushes pending output, reads one frame and processes it.
    fn step(&mut self, calls: &mut [Call], budget: &Budget) -> Result<(), Error> {
        self.flush(budget)?;
        let (head, payload) = match self.reader.next_frame(&mut self.io, budget) {
            Ok(frame) => frame,
            Err(e) => return Err(self.read_failed(e, budget)),
        };
        let handled = self.st.handle(head, payload, calls);
        if handled.is_err() {
            self.flush_best_effort(budget);
        }
        handled
    }

    /// Maps a read failure to the call's error; all but a timeout end the connection.
    fn read_failed(&mut self, e: ReadError, budget: &Budget) -> Error {
        let e = match e {
            ReadError::TooBig(len) => {
                let e = self.st.conn_error(
                    ErrorCode::FRAME_SIZE_ERROR,
                    format!("frame of {len} bytes exceeds SETTINGS_MAX_FRAME_SIZE"),
                );
                self.flush_best_effort(budget);
                return e;
            }
            ReadError::Expired => return budget.timeout(),
            ReadError::Io(e) => budget.io_error(e),
            ReadError::Closed => match &self.st.goaway {
                Some(g) => g.to_error(),
                None => Error::ConnectionClosed {
                    phase: budget.phase().clone(),
                },
            },
        };
        if !matches!(e, Error::Timeout { .. }) && self.st.dead.is_none() {
            self.st.dead = Some(e.to_string());
        }
        e
    }

    fn flush(&mut self, budget: &Budget) -> Result<(), Error> {
        if self.st.out.is_empty() {
            return Ok(());
        }
        let t = budget.remaining()?;
        let written = self
            .io
            .set_write_timeout(t)
            .and_then(|()| self.io.write_all(&self.st.out))
            .and_then(|()| self.io.flush());
        // The request may name a secret: scrub the staging buffer whatever happened.
        self.st.out.zeroize();
        written.map_err(|e| {
            // A partial write leaves the framing unknown: the connection cannot be reused.
            let e = budget.io_error(e);
            self.st.dead = Some(e.to_string());
            e
        })
    }

    /// Tries to deliver a queued GOAWAY or RST_STREAM before reporting a failure.
    fn flush_best_effort(&mut self, budget: &Budget) {
        if budget.remaining().is_ok() {
            let _ = self.flush(budget);
        }
        self.st.out.zeroize();
    }
}

/// A request left without a result: cannot happen (every round fills or requeues its
/// calls), reported rather than panicking.
fn no_result() -> Result<Zeroizing<Vec<u8>>, Error> {
    Err(protocol_error(ErrorCode::INTERNAL_ERROR, "no result"))
}

/// The path a batch's errors name: the one path, or all of them.
fn batch_path(requests: &[(&str, &[u8])]) -> String {
    let mut paths: Vec<&str> = requests.iter().map(|r| r.0).collect();
    paths.dedup();
    paths.join(", ")
}

/// Rejects paths that are not `/service/method`-like visible ASCII.
fn check_path(path: &str) -> Result<(), Error> {
    let ok = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest {
            detail: format!("path {path:?} is not a '/'-prefixed visible ASCII string"),
        })
    }
}

/// Appends bytes `from..to` of the concatenation `prefix ++ body`.
fn put_range(out: &mut Vec<u8>, prefix: &[u8], body: &[u8], from: usize, to: usize) {
    let p = prefix.len();
    if from < p {
        out.extend_from_slice(prefix.get(from..to.min(p)).unwrap_or(&[]));
    }
    if to > p {
        out.extend_from_slice(body.get(from.max(p) - p..to - p).unwrap_or(&[]));
    }
}

// ---- reading frames ----

enum ReadError {
    Io(io::Error),
    Expired,
    Closed,
    TooBig(u32),
}

/// Buffered frame reader; returns one whole frame at a time.
struct FrameReader {
    buf: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            buf: Zeroizing::new(vec![0; READ_BUF_LEN]),
            start: 0,
            end: 0,
        }
    }

    fn next_frame<T: Transport>(
        &mut self,
        io: &mut T,
        budget: &Budget,
    ) -> Result<(FrameHeader, &[u8]), ReadError> {
        self.fill(HEADER_LEN, io, budget)?;
        let head: [u8; HEADER_LEN] = self
            .buf
            .get(self.start..self.start + HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(ReadError::Closed)?;
        let head = FrameHeader::parse(&head);
        if head.len > DEFAULT_MAX_FRAME_SIZE {
            return Err(ReadError::TooBig(head.len));
        }
        // head.len <= 16384, so the frame fits in the buffer.
        let total = HEADER_LEN + head.len as usize;
        self.fill(total, io, budget)?;
        let payload_at = self.start + HEADER_LEN;
        let frame_end = self.start + total;
        self.start = frame_end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let payload = self
            .buf
            .get(payload_at..frame_end)
            .ok_or(ReadError::Closed)?;
        Ok((head, payload))
    }

    /// Whether a whole frame is buffered; an error if its header announces an oversize one.
    fn has_frame(&self) -> Result<bool, ReadError> {
        let buffered = self.end - self.start;
        let head: Option<[u8; HEADER_LEN]> = self
            .buf
            .get(self.start..self.start + HEADER_LEN)
            .filter(|_| buffered >= HEADER_LEN)
            .and_then(|s| s.try_into().ok());
        let Some(head) = head else { return Ok(false) };
        let head = FrameHeader::parse(&head);
        if head.len > DEFAULT_MAX_FRAME_SIZE {
            return Err(ReadError::TooBig(head.len));
        }
        Ok(buffered >= HEADER_LEN + head.len as usize)
    }

    /// One non-blocking read of whatever has already arrived; `false` if nothing had.
    fn read_available<T: Transport>(&mut self, io: &mut T) -> Result<bool, ReadError> {
        if self.start > 0 && self.buf.len() - self.end < READ_BUF_LEN / 2 {
            self.compact();
        }
        let dst = self.buf.get_mut(self.end..).unwrap_or(&mut []);
        if dst.is_empty() {
            return Ok(false);
        }
        io.set_nonblocking(true).map_err(ReadError::Io)?;
        let read = io.read(dst);
        io.set_nonblocking(false).map_err(ReadError::Io)?;
        match read {
            Ok(0) => Err(ReadError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Reads until at least `need` unconsumed bytes are buffered.
    fn fill<T: Transport>(
        &mut self,
        need: usize,
        io: &mut T,
        budget: &Budget,
    ) -> Result<(), ReadError> {
        while self.end - self.start < need {
            if self.start + need > self.buf.len() {
                self.compact();
            }
            let t = budget.remaining().map_err(|_| ReadError::Expired)?;
            io.set_read_timeout(t).map_err(ReadError::Io)?;
            let dst = self.buf.get_mut(self.end..).unwrap_or(&mut []);
            match io.read(dst) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ReadError::Closed);
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(())
    }

    /// Zeroes everything but the unread bytes (response plaintext may be secret).
    fn scrub(&mut self) {
        let (start, end) = (self.start, self.end);
        if let Some(head) = self.buf.get_mut(..start) {
            head.zeroize();
        }
        if let Some(tail) = self.buf.get_mut(end..) {
            tail.zeroize();
        }
    }
}

// ---- connection state ----

struct GoAwayInfo {
    code: ErrorCode,
    last_stream: u32,
    debug: String,
}

impl GoAwayInfo {
    fn to_error(&self) -> Error {
        Error::GoAway {
            code: self.code,
            last_stream_id: self.last_stream,
            debug: self.debug.clone(),
        }
    }
}

/// A header block being reassembled from HEADERS + CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

struct State {
    out: Vec<u8>,
    decoder: HeaderDecoder,
    limits: Limits,
    authority: String,
    settings_seen: bool,
    peer_max_frame: u32,
    peer_initial_window: u32,
    peer_max_streams: Option<u32>,
    peer_max_header_list: Option<u32>,
    peer_table_size: u32,
    announce_table_size: bool,
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    next_stream: u32,
    last_stream: u32,
    goaway: Option<GoAwayInfo>,
    dead: Option<String>,
    pending: Option<PendingBlock>,
}

impl State {
    fn new(limits: Limits, authority: String) -> Self {
        State {
            out: Vec::with_capacity(4096),
            decoder: HeaderDecoder::new(),
            limits,
            authority,
            settings_seen: false,
            peer_max_frame: DEFAULT_MAX_FRAME_SIZE,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_streams: None,
            peer_max_header_list: None,
            peer_table_size: 4096,
            announce_table_size: true,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            next_stream: 1,
            last_stream: 0,
            goaway: None,
            dead: None,
            pending: None,
        }
    }

    fn check_usable(&self) -> Result<(), Error> {
        if let Some(reason) = &self.dead {
            return Err(Error::Unusable {
                reason: reason.clone(),
            });
        }
        if let Some(g) = &self.goaway {
            return Err(g.to_error());
        }
        Ok(())
    }

    /// How many streams may be opened at once: the server's SETTINGS_MAX_CONCURRENT_STREAMS
    /// (unlimited until it says otherwise), at least 1 so that a limit of 0 is reported by
    /// [`State::open_stream`].
    fn stream_room(&self) -> usize {
        self.peer_max_streams
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .max(1)
    }

    /// Queues the request HEADERS (+CONTINUATION) for `stream`; DATA follows.
    fn queue_headers(&mut self, stream: u32, path: &str, timeout: &str) -> Result<(), Error> {
        let fields = hpack::request_fields(path, &self.authority, timeout, USER_AGENT);
        if let Some(max) = self.peer_max_header_list {
            let size = hpack::list_size(&fields);
            if u64::try_from(size).unwrap_or(u64::MAX) > u64::from(max) {
                return Err(Error::InvalidRequest {
                    detail: format!(
                        "request headers ({size} bytes) exceed the server's limit of {max}"
                    ),
                });
            }
        }
        let mut block = Vec::with_capacity(128 + path.len());
        hpack::encode(&mut block, self.announce_table_size, &fields);
        self.announce_table_size = false;
        frame::put_headers(&mut self.out, stream, &block, self.peer_max_frame, false);
        Ok(())
    }

    fn open_stream(&mut self) -> Result<u32, Error> {
        if self.peer_max_streams == Some(0) {
            return Err(Error::Unusable {
                reason: "server allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)".into(),
            });
        }
        let id = self.next_stream;
        if id > MAX_STREAM_ID {
            return Err(Error::Unusable {
                reason: "stream identifiers exhausted".into(),
            });
        }
        self.next_stream = id.saturating_add(2);
        self.last_stream = id;
        Ok(id)
    }

    /// Records a connection error: GOAWAY is queued and the connection is dead.
    fn conn_error(&mut self, code: ErrorCode, detail: impl Into<String>) -> Error {
        let detail = detail.into();
        frame::put_goaway(&mut self.out, 0, code);
        self.dead = Some(format!("protocol violation by server ({code}): {detail}"));
        Error::Protocol { code, detail }
    }

    /// Processes one frame. `Err` is a connection error; call-level failures are stored in
    /// the calls.
    fn handle(
        &mut self,
        head: FrameHeader,
        payload: &[u8],
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let frame = match frame::parse(head, payload) {
            Ok(f) => f,
            Err(e) => return Err(self.conn_error(e.code, e.detail)),
        };
        if !self.settings_seen && !matches!(frame, Frame::Settings { ack: false, .. }) {
            return Err(self.conn_error(
                ErrorCode::PROTOCOL_ERROR,
                "server preface does not start with SETTINGS",
            ));
        }
        if let Some(p) = &self.pending {
            if !matches!(frame, Frame::Continuation { stream, .. } if stream == p.stream) {
                return Err(self.conn_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "frame interleaved in a header block",
                ));
            }
        }
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len, calls),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                self.pending = Some(PendingBlock {
                    stream,
                    end_stream,
                    block: Vec::new(),
                });
                self.on_fragment(fragment, end_headers, calls)
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                if self.pending.is_none() {
                    return Err(self.conn_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "CONTINUATION without a preceding HEADERS",
                    ));
                }
                self.on_fragment(fragment, end_headers, calls)
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
            Frame::RstStream { stream, code } => {
                if let Some(call) = self.active(stream, calls)? {
                    if !call.got_end {
                        call.fail(Error::Reset { code });
                    }
                }
                Ok(())
            }
            Frame::Settings { ack, params } => {
                if ack {
                    return Ok(());
                }
                self.on_settings(params, calls)?;
                frame::put_settings_ack(&mut self.out);
                self.settings_seen = true;
                Ok(())
            }
            Frame::PushPromise { .. } => Err(self.conn_error(
                ErrorCode::PROTOCOL_ERROR,
                "PUSH_PROMISE although push is disabled",
            )),
            Frame::Ping { ack, payload } => {
                if !ack {
                    frame::put_ping_ack(&mut self.out, &payload);
                }
                Ok(())
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                self.on_goaway(last_stream, code, debug, calls);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                self.on_window_update(stream, increment, calls)
            }
        }
    }

    /// The call on `stream`; `None` for an earlier, closed stream; a connection error for
    /// a stream the server may not use.
    fn active<'c>(
        &mut self,
        stream: u32,
        calls: &'c mut [Call],
    ) -> Result<Option<&'c mut Call>, Error> {
        if let Some(call) = calls.iter_mut().find(|c| c.stream == stream) {
            return Ok(Some(call));
        }
        if stream % 2 == 1 && stream <= self.last_stream {
            return Ok(None);
        }
        Err(self.conn_error(
            ErrorCode::PROTOCOL_ERROR,
            format!("frame on idle stream {stream}"),
        ))
    }

    fn on_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let len = i64::from(flow_len);
        if len > self.recv_window {
            return Err(self.conn_error(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA exceeds the connection receive window",
            ));
        }
        // Whatever stream the data is for, it used connection window: give it back.
        self.recv_window -= len;
        self.recv_unacked += flow_len;
        if self.recv_unacked >= WINDOW_REFILL_AT {
            frame::put_window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
        let Some(call) = self.active(stream, calls)? else {
            return Ok(());
        };
        if call.got_end {
            return Err(self.conn_error(ErrorCode::STREAM_CLOSED, "DATA after END_STREAM"));
        }
        if len > call.recv_window {
            call.fail(protocol_error(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA exceeds the stream receive window",
            ));
            return Ok(());
        }
        call.recv_window -= len;
        if !call.response_started {
            call.fail(protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "DATA before the response headers",
            ));
            return Ok(());
        }
        if let Err(e) = call.message.push(data) {
            call.fail(body_error(e));
            return Ok(());
        }
        if end_stream {
            call.got_end = true;
            if call.status.is_none() {
                call.fail(protocol_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "response ended without trailers (no grpc-status)",
                ));
            }
            return Ok(());
        }
        call.recv_unacked += flow_len;
        if call.recv_unacked >= WINDOW_REFILL_AT {
            frame::put_window_update(&mut self.out, call.stream, call.recv_unacked);
            call.recv_window += i64::from(call.recv_unacked);
            call.recv_unacked = 0;
        }
        Ok(())
    }

    fn on_fragment(
        &mut self,
        fragment: &[u8],
        end_headers: bool,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let max_block = self.limits.max_block();
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        if pending.block.len() + fragment.len() > max_block {
            return Err(self.conn_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                format!("header block larger than {max_block} bytes"),
            ));
        }
        pending.block.extend_from_slice(fragment);
        if !end_headers {
            return Ok(());
        }
        let Some(PendingBlock {
            stream,
            end_stream,
            block,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let max_list = usize::try_from(self.limits.max_header_list).unwrap_or(usize::MAX);
        let mut fields = ResponseFields::default();
        let decoded = self
            .decoder
            .decode(&block, max_list, |name, value| fields.record(name, value));
        let over = match decoded {
            Ok(over) => over,
            Err(hpack::DecodeError::Compression(detail)) => {
                return Err(
                    self.conn_error(ErrorCode::COMPRESSION_ERROR, format!("hpack: {detail}"))
                );
            }
        };
        let max_header_list = self.limits.max_header_list;
        if let Some(call) = self.active(stream, calls)? {
            if call.got_end {
                return Err(self.conn_error(ErrorCode::STREAM_CLOSED, "HEADERS after END_STREAM"));
            }
            call.on_headers(fields, end_stream, over, max_header_list);
        }
        Ok(())
    }

    fn on_settings(&mut self, params: &[u8], calls: &mut [Call]) -> Result<(), Error> {
        for (id, value) in frame::settings_params(params) {
            match id {
                setting::HEADER_TABLE_SIZE if value != self.peer_table_size => {
                    self.peer_table_size = value;
                    self.announce_table_size = true;
                }
                setting::ENABLE_PUSH if value != 0 => {
                    return Err(self.conn_error(
                        ErrorCode::PROTOCOL_ERROR,
                        format!("server sent SETTINGS_ENABLE_PUSH {value}"),
                    ));
                }
                setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = Some(value),
                setting::INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err(self.conn_error(
                            ErrorCode::FLOW_CONTROL_ERROR,
                            format!("SETTINGS_INITIAL_WINDOW_SIZE {value} above 2^31-1"),
                        ));
                    }
                    // RFC 9113 section 6.9.2: open streams' windows move by the difference.
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    self.peer_initial_window = value;
                    for call in calls.iter_mut() {
                        call.send_window += delta;
                    }
                    if calls.iter().any(|c| c.send_window > i64::from(MAX_WINDOW)) {
                        return Err(self.conn_error(
                            ErrorCode::FLOW_CONTROL_ERROR,
                            "stream window above 2^31-1 after SETTINGS",
                        ));
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&value) {
                        return Err(self.conn_error(
                            ErrorCode::PROTOCOL_ERROR,
                            format!("SETTINGS_MAX_FRAME_SIZE {value} out of range"),
                        ));
                    }
                    self.peer_max_frame = value;
                }
                setting::MAX_HEADER_LIST_SIZE => self.peer_max_header_list = Some(value),
                _ => {}
            }
        }
        Ok(())
    }

    fn on_goaway(&mut self, last_stream: u32, code: ErrorCode, debug: &[u8], calls: &mut [Call]) {
        let debug = debug.get(..MAX_GOAWAY_DEBUG).unwrap_or(debug);
        let info = GoAwayInfo {
            code,
            last_stream,
            debug: String::from_utf8_lossy(debug).into_owned(),
        };
        for call in calls.iter_mut() {
            // Streams up to last_stream may still complete after a graceful GOAWAY.
            if !call.got_end && (call.stream > last_stream || code != ErrorCode::NO_ERROR) {
                call.fail(info.to_error());
            }
        }
        self.goaway = Some(info);
    }

    fn on_window_update(
        &mut self,
        stream: u32,
        increment: u32,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        if stream == 0 {
            self.send_window += i64::from(increment);
            if self.send_window > i64::from(MAX_WINDOW) {
                return Err(self.conn_error(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "connection send window above 2^31-1",
                ));
            }
            return Ok(());
        }
        if let Some(call) = self.active(stream, calls)? {
            call.send_window += i64::from(increment);
            if call.send_window > i64::from(MAX_WINDOW) {
                call.fail(protocol_error(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "stream send window above 2^31-1",
                ));
            }
        }
        Ok(())
    }
}

fn protocol_error(code: ErrorCode, detail: &str) -> Error {
    Error::Protocol {
        code,
        detail: detail.to_owned(),
    }
}

fn body_error(e: BodyError) -> Error {
    match e {
        BodyError::TooLarge { size, limit } => Error::MessageTooLarge { size, limit },
        BodyError::Compressed => protocol_error(
            ErrorCode::PROTOCOL_ERROR,
            "compressed response message, but no compression was negotiated",
        ),
        BodyError::BadFlag(f) => Error::Protocol {
            code: ErrorCode::PROTOCOL_ERROR,
            detail: format!("invalid message compressed-flag {f}"),
        },
        BodyError::SecondMessage => protocol_error(
            ErrorCode::PROTOCOL_ERROR,
            "unary response carries more than one message",
        ),
    }
}

// ---- the call ----

/// The header fields of a response block that the client looks at.
#[derive(Default)]
struct ResponseFields {
    status: Option<Option<u16>>,
    other_pseudo: bool,
    content_type: Option<(bool, String)>,
    grpc_status: Option<Option<u32>>,
    grpc_message: Option<String>,
}

impl ResponseFields {
    fn record(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b":status" => {
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| s.len() == 3)
                    .and_then(|s| s.parse().ok());
                // A repeated :status is malformed; remember it as invalid.
                self.status = Some(if self.status.is_some() { None } else { parsed });
            }
            b"content-type" => {
                let shown = String::from_utf8_lossy(value.get(..64).unwrap_or(value)).into_owned();
                self.content_type = Some((grpc::is_grpc_content_type(value), shown));
            }
            b"grpc-status" => self.grpc_status = Some(grpc::parse_status(value)),
            b"grpc-message" => self.grpc_message = Some(grpc::decode_grpc_message(value)),
            _ if name.first() == Some(&b':') => self.other_pseudo = true,
            _ => {}
        }
    }
}

struct Call {
    stream: u32,
    /// Whether its HEADERS were queued (else there is no stream to reset).
    opened: bool,
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    sent_end: bool,
    got_end: bool,
    response_started: bool,
    message: MessageReader,
    status: Option<(Code, String)>,
    failure: Option<Error>,
}

impl Call {
    fn new(stream: u32, st: &State) -> Self {
        Call {
            stream,
            opened: false,
            send_window: i64::from(st.peer_initial_window),
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            sent_end: false,
            got_end: false,
            response_started: false,
            message: MessageReader::new(st.limits.max_message),
            status: None,
            failure: None,
        }
    }

    fn done(&self) -> bool {
        self.got_end || self.failure.is_some()
    }

    /// Keeps the first failure: later ones are consequences.
    fn fail(&mut self, e: Error) {
        if self.failure.is_none() {
            self.failure = Some(e);
        }
    }

    fn on_headers(&mut self, f: ResponseFields, end_stream: bool, over: bool, limit: u32) {
        if over {
            self.fail(Error::Protocol {
                code: ErrorCode::PROTOCOL_ERROR,
                detail: format!("response header list exceeds {limit} bytes"),
            });
            return;
        }
        if self.response_started {
            self.on_trailers(f, end_stream);
            return;
        }
        let status = match f.status {
            Some(Some(s)) => s,
            Some(None) => return self.fail_malformed("invalid :status"),
            None => return self.fail_malformed("response headers lack :status"),
        };
        if f.other_pseudo {
            return self.fail_malformed("unexpected pseudo-header in response");
        }
        if (100..200).contains(&status) {
            if end_stream || status == 101 {
                return self.fail_malformed("informational response ends the stream");
            }
            return; // 1xx: the final response follows
        }
        if status != 200 {
            // As gRPC clients do: a grpc-status in a non-200 response wins over the mapping.
            if let (true, Some(Some(code))) = (end_stream, f.grpc_status) {
                self.got_end = true;
                self.status = Some((Code::from_u32(code), f.grpc_message.unwrap_or_default()));
            } else {
                self.fail(Error::HttpStatus { status });
            }
            return;
        }
        match &f.content_type {
            Some((true, _)) => {}
            Some((false, shown)) => {
                return self
                    .fail_malformed(&format!("content-type {shown:?} is not application/grpc"));
            }
            // Trailers-only responses may omit it; a response with a body may not.
            None if end_stream => {}
            None => return self.fail_malformed("response lacks content-type"),
        }
        self.response_started = true;
        if end_stream {
            self.got_end = true;
            self.take_status(f);
        }
    }

    fn on_trailers(&mut self, f: ResponseFields, end_stream: bool) {
        if !end_stream {
            return self.fail_malformed("trailers without END_STREAM");
        }
        self.got_end = true;
        if f.status.is_some() || f.other_pseudo {
            return self.fail_malformed("pseudo-header in trailers");
        }
        self.take_status(f);
    }

    fn take_status(&mut self, f: ResponseFields) {
        match f.grpc_status {
            Some(Some(code)) => {
                self.status = Some((Code::from_u32(code), f.grpc_message.unwrap_or_default()));
            }
            Some(None) => self.fail_malformed("invalid grpc-status"),
            None => self.fail_malformed("response ended without grpc-status"),
        }
    }

    fn fail_malformed(&mut self, detail: &str) {
        self.fail(protocol_error(ErrorCode::PROTOCOL_ERROR, detail));
    }

    /// The result of a finished call.
    fn outcome(&mut self) -> Result<Zeroizing<Vec<u8>>, Error> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        match self.status.take() {
            Some((Code::Ok, _)) => {
                if self.message.is_partial() {
                    return Err(protocol_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "response ended inside a message",
                    ));
                }
                self.message.take().ok_or(protocol_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "OK status without a response message",
                ))
            }
            Some((code, message)) => Err(Error::Status { code, message }),
            None => Err(protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "response ended without grpc-status",
            )),
        }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
