//! Fuzzing entry points (cargo feature `fuzzing`, off by default; not a stable API).
//!
//! `h2_frames` feeds arbitrary bytes to the frame parser and, as the server's side of a
//! connection, to the full client state machine over an in-memory transport. Either must
//! return errors, never panic, hang or allocate without bound.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::conn::{Connection, Limits, Transport};
use crate::frame::{self, FrameHeader, HEADER_LEN};

/// Parses `data` as a sequence of frames, then replays it as a server's bytes (after a
/// valid empty SETTINGS) against a client making a batch of two calls, then two single ones.
pub fn h2_frames(data: &[u8]) {
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<HEADER_LEN>() {
        let head = FrameHeader::parse(head);
        let len = usize::try_from(head.len)
            .unwrap_or(usize::MAX)
            .min(tail.len());
        let (payload, tail) = tail.split_at(len);
        let _ = frame::parse(head, payload);
        rest = tail;
    }

    let mut input = Vec::with_capacity(HEADER_LEN + data.len());
    frame::put_settings(&mut input, &[]);
    input.extend_from_slice(data);
    let transport = Memory {
        input,
        pos: 0,
        nonblocking: false,
    };
    let limits = Limits {
        max_message: 64 * 1024,
        max_header_list: 8 * 1024,
    };
    let mut conn = Connection::new(transport, limits, "fuzz:1".into());
    // A batch first (concurrent streams), then single calls on what is left.
    let path = "/ratls.GrSecret/GetSecret";
    let _ = conn.unary_many(
        &[(path, b"\x0a\x01k"), (path, b"\x0a\x01l")],
        Duration::from_secs(5),
    );
    for _ in 0..2 {
        let _ = conn.unary(path, b"\x0a\x01k", Duration::from_secs(5));
    }
}

/// Server bytes to read; writes are discarded; EOF when the input is used up.
struct Memory {
    input: Vec<u8>,
    pos: usize,
    nonblocking: bool,
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nonblocking {
            // Nothing arrives "while idle": the whole input is the server's replies.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Memory {
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
        Ok(())
    }
}
