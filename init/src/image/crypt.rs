//! The sealed stream: header, key check and AES-128-GCM chunks, read by [`Opener`] and
//! written by [`Sealer`]. The chunks are the aead crate's STREAM construction with a 32-bit
//! big-endian counter ([`StreamBE32`]: nonce = prefix || counter || last flag), so the
//! crate, not this module, builds every chunk nonce. The key check uses the last flag value
//! 0x02, which STREAM never produces, so its nonce cannot collide with a chunk's.

use aes_gcm::aead::stream::{NewStream as _, StreamBE32, StreamPrimitive as _};

use super::*;

/// Reads `seal`'s header from `reader` and verifies the key check.
pub(super) struct Opener<R> {
    pub(super) inner: R,
    pub(super) stream: StreamBE32<Aes128Gcm>,
    pub(super) header: [u8; HEADER_LEN],
    pub(super) chunk_size: usize,
    pub(super) counter: u32,
    /// Ciphertext, then plaintext, of the current chunk.
    pub(super) chunk: Zeroizing<Vec<u8>>,
    pub(super) pos: usize,
    pub(super) finished: bool,
    pub(super) failure: Option<ImageError>,
}

impl<R: BufRead> Opener<R> {
    pub(super) fn new(seal: Seal<'_>, mut inner: R) -> Result<Self, ImageError> {
        let mut header_arr = [0u8; HEADER_LEN];
        let mut check = [0u8; TAG_LEN];
        let n = read_full(&mut inner, &mut header_arr)
            .map_err(|source| io_err("read image", Path::new("header"), source))?;
        let m = read_full(&mut inner, &mut check)
            .map_err(|source| io_err("read image", Path::new("header"), source))?;
        if n + m < HEADER_LEN + TAG_LEN {
            let magic_seen = header_arr
                .iter()
                .zip(MAGIC.iter())
                .take(n)
                .all(|(a, b)| a == b);
            if !magic_seen {
                return Err(ImageError::NotAnImage);
            }
            return Err(ImageError::Truncated {
                detail: format!("{}-byte file is shorter than the header", n + m),
            });
        }
        let header = Header::parse(&header_arr)?;
        match (seal, header.flags & FLAG_INTEGRITY_ONLY != 0) {
            (Seal::Encrypted(_), true) => {
                return Err(ImageError::SealMismatch {
                    image: "integrity-only",
                    expected: "encrypted",
                });
            }
            (Seal::IntegrityOnly, false) => {
                return Err(ImageError::SealMismatch {
                    image: "encrypted",
                    expected: "integrity-only",
                });
            }
            _ => {}
        }
        let cipher = cipher_for(seal);
        let mut empty: [u8; 0] = [];
        cipher
            .decrypt_in_place_detached(
                &nonce(&header.prefix, KEY_CHECK_COUNTER, KEY_CHECK),
                &header_arr,
                &mut empty,
                Tag::from_slice(&check),
            )
            .map_err(|_| ImageError::WrongKey)?;
        Ok(Self {
            inner,
            stream: StreamBE32::from_aead(cipher, (&header.prefix).into()),
            header: header_arr,
            chunk_size: header.chunk_size,
            counter: 0,
            chunk: Zeroizing::new(Vec::with_capacity(header.chunk_size + TAG_LEN)),
            pos: 0,
            finished: false,
            failure: None,
        })
    }

    /// Reads and authenticates the next chunk into `self.chunk`.
    pub(super) fn next_chunk(&mut self) -> Result<(), ImageError> {
        let full = self.chunk_size + TAG_LEN;
        self.chunk.clear();
        self.chunk.resize(full, 0);
        self.pos = 0;
        let n = read_full(&mut self.inner, &mut self.chunk)
            .map_err(|source| io_err("read image", Path::new("chunk"), source))?;
        if n < TAG_LEN {
            return Err(ImageError::Truncated {
                detail: format!("chunk {} has {n} bytes, less than its tag", self.counter),
            });
        }
        let at_end = n < full
            || self
                .inner
                .fill_buf()
                .map_err(|source| io_err("read image", Path::new("chunk"), source))?
                .is_empty();
        // Ciphertext || tag; authenticated in place, leaving the plaintext.
        self.chunk.truncate(n);
        self.stream
            .decrypt_in_place(self.counter, at_end, &self.header, &mut *self.chunk)
            .map_err(|_| {
                if at_end {
                    ImageError::Truncated {
                        detail: format!(
                            "chunk {} is the last in the file but does not authenticate as the last chunk",
                            self.counter
                        ),
                    }
                } else {
                    ImageError::Tampered { chunk: self.counter }
                }
            })?;
        self.finished = at_end;
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| ImageError::BadHeader {
                detail: "more than 2^32 - 1 chunks".into(),
            })?;
        Ok(())
    }

    /// Reads to the end, so the final chunk's tag and last flag are checked even when the
    /// archive inside ended earlier.
    pub(super) fn drain(&mut self) -> Result<(), ImageError> {
        let mut sink = [0u8; 4096];
        loop {
            match self.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(self
                        .failure
                        .take()
                        .unwrap_or_else(|| io_err("read image", Path::new("chunk"), e)));
                }
            }
        }
    }
}

impl<R: BufRead> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "image failed authentication",
            ));
        }
        while self.pos >= self.chunk.len() {
            if self.finished {
                return Ok(0);
            }
            if let Err(e) = self.next_chunk() {
                let message = e.to_string();
                self.failure = Some(e);
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
        }
        let available = self.chunk.get(self.pos..).unwrap_or_default();
        let n = available.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

/// Encrypts a byte stream into image chunks.
pub(super) struct Sealer<W: Write> {
    pub(super) inner: W,
    pub(super) stream: StreamBE32<Aes128Gcm>,
    pub(super) header: [u8; HEADER_LEN],
    pub(super) counter: u32,
    pub(super) chunk: Zeroizing<Vec<u8>>,
}

impl<W: Write> Sealer<W> {
    pub(super) fn new(seal: Seal<'_>, mut inner: W) -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        OsRng
            .try_fill_bytes(&mut prefix)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let flags = match seal {
            Seal::Encrypted(_) => 0,
            Seal::IntegrityOnly => FLAG_INTEGRITY_ONLY,
        };
        let header = Header {
            flags,
            chunk_size: CHUNK_SIZE,
            prefix,
        }
        .to_bytes();
        let cipher = cipher_for(seal);
        let mut empty: [u8; 0] = [];
        let check = cipher
            .encrypt_in_place_detached(
                &nonce(&prefix, KEY_CHECK_COUNTER, KEY_CHECK),
                &header,
                &mut empty,
            )
            .map_err(|_| io::Error::other("AES-GCM refused the key check"))?;
        inner.write_all(&header)?;
        inner.write_all(&check)?;
        Ok(Self {
            inner,
            stream: StreamBE32::from_aead(cipher, (&prefix).into()),
            header,
            counter: 0,
            chunk: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE + TAG_LEN)),
        })
    }

    pub(super) fn emit(&mut self, last: bool) -> io::Result<()> {
        // The tag is appended in place: the buffer has room for it, so the plaintext is never
        // copied to a reallocation that zeroizing would miss.
        self.stream
            .encrypt_in_place(self.counter, last, &self.header, &mut *self.chunk)
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        self.inner.write_all(&self.chunk)?;
        self.chunk.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("image too large: more than 2^32 - 1 chunks"))?;
        Ok(())
    }

    /// Writes the last chunk and returns the inner writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full chunk is emitted only once more data arrives, so the final chunk can always
        // be marked last, even when the stream length is a multiple of the chunk size.
        if self.chunk.len() == CHUNK_SIZE {
            self.emit(false)?;
        }
        let n = data.len().min(CHUNK_SIZE - self.chunk.len());
        self.chunk
            .extend_from_slice(data.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(super) struct Header {
    pub(super) flags: u16,
    pub(super) chunk_size: usize,
    pub(super) prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    pub(super) fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, ImageError> {
        let mut rest: &[u8] = bytes;
        if take::<8>(&mut rest) != MAGIC {
            return Err(ImageError::NotAnImage);
        }
        let version = u16::from_le_bytes(take(&mut rest));
        if version != VERSION {
            return Err(ImageError::UnsupportedVersion { version });
        }
        let flags = u16::from_le_bytes(take(&mut rest));
        if flags & !FLAG_INTEGRITY_ONLY != 0 {
            return Err(ImageError::BadHeader {
                detail: format!("unknown flags {flags:#06x}"),
            });
        }
        let chunk_size = u32::from_le_bytes(take(&mut rest)) as usize;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(ImageError::BadHeader {
                detail: format!(
                    "chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
                ),
            });
        }
        let prefix = take::<NONCE_PREFIX_LEN>(&mut rest);
        if take::<1>(&mut rest) != [0] {
            return Err(ImageError::BadHeader {
                detail: "reserved byte is not zero".into(),
            });
        }
        Ok(Self {
            flags,
            chunk_size,
            prefix,
        })
    }

    pub(super) fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (magic, rest) = out.split_at_mut(8);
        magic.copy_from_slice(&MAGIC);
        let (version, rest) = rest.split_at_mut(2);
        version.copy_from_slice(&VERSION.to_le_bytes());
        let (flags, rest) = rest.split_at_mut(2);
        flags.copy_from_slice(&self.flags.to_le_bytes());
        let (size, rest) = rest.split_at_mut(4);
        // CHUNK_SIZE and everything parsed are at most MAX_CHUNK_SIZE, far below u32::MAX.
        size.copy_from_slice(&(self.chunk_size as u32).to_le_bytes());
        let (prefix, _reserved) = rest.split_at_mut(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(&self.prefix);
        out
    }
}

pub(super) fn cipher_for(seal: Seal<'_>) -> Aes128Gcm {
    let zero = [0u8; 16];
    let key = match seal {
        Seal::Encrypted(key) => key,
        Seal::IntegrityOnly => &zero,
    };
    Aes128Gcm::new(key.into())
}

pub(super) fn nonce(
    prefix: &[u8; NONCE_PREFIX_LEN],
    counter: u32,
    flag: u8,
) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    let (p, rest) = n.split_at_mut(NONCE_PREFIX_LEN);
    p.copy_from_slice(prefix);
    let (c, f) = rest.split_at_mut(4);
    c.copy_from_slice(&counter.to_be_bytes());
    f.copy_from_slice(&[flag]);
    n.into()
}

/// The next `N` bytes of a fixed-size header (zeros past its end, which callers rule out by
/// passing whole headers).
pub(super) fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    match rest.split_first_chunk::<N>() {
        Some((head, tail)) => {
            *rest = tail;
            *head
        }
        None => [0; N],
    }
}

/// Reads until `buf` is full or the reader is at its end; returns the bytes read.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
