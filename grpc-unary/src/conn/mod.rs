//! The HTTP/2 client connection (RFC 9113) carrying gRPC unary calls, one at a time or a
//! batch at once, over any blocking byte transport with settable timeouts.
//!
//! Guarantees: every read and write is bounded by the current phase's deadline; every frame
//! is size-checked before its payload is read; flow control is enforced both ways; header
//! blocks are always HPACK-decoded (even for abandoned streams) so the compression state
//! never drifts; connection-level violations send GOAWAY and make the connection unusable,
//! while call-level failures reset only the call's stream.
//!
//! Layout: this module drives calls over the transport ([`Connection`]); [`reader`] reads
//! frames, [`state`] holds the connection state and dispatches frames, [`settings`],
//! [`flow`] and [`headers`] handle SETTINGS/GOAWAY, windows and header blocks, and [`call`]
//! is the per-call state machine.

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

mod call;
mod flow;
mod headers;
mod reader;
mod settings;
mod state;

use call::Call;
use headers::{PendingBlock, ResponseFields};
use reader::{FrameReader, ReadError};
use settings::GoAwayInfo;
use state::{State, body_error, protocol_error};

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

#[cfg(test)]
mod tests;
