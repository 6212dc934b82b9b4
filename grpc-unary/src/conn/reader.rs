//! Frame reading: a buffered reader that yields one whole, size-checked frame at a time,
//! every read bounded by the phase deadline.

use super::*;

pub(super) enum ReadError {
    Io(io::Error),
    Expired,
    Closed,
    TooBig(u32),
}

/// Buffered frame reader; returns one whole frame at a time.
pub(super) struct FrameReader {
    pub(super) buf: Zeroizing<Vec<u8>>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl FrameReader {
    pub(super) fn new() -> Self {
        FrameReader {
            buf: Zeroizing::new(vec![0; READ_BUF_LEN]),
            start: 0,
            end: 0,
        }
    }

    pub(super) fn next_frame<T: Transport>(
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
    pub(super) fn has_frame(&self) -> Result<bool, ReadError> {
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
    pub(super) fn read_available<T: Transport>(&mut self, io: &mut T) -> Result<bool, ReadError> {
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

    pub(super) fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Reads until at least `need` unconsumed bytes are buffered.
    pub(super) fn fill<T: Transport>(
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
    pub(super) fn scrub(&mut self) {
        let (start, end) = (self.start, self.end);
        if let Some(head) = self.buf.get_mut(..start) {
            head.zeroize();
        }
        if let Some(tail) = self.buf.get_mut(end..) {
            tail.zeroize();
        }
    }
}
