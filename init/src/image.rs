//! The host-mode rootfs image: a tar archive sealed under `image_key` with AES-128-GCM in a
//! chunked STREAM construction, and its unpacker.
//!
//! Guarantees: every byte of plaintext is released only after its chunk's tag verified; a
//! wrong key, any flipped byte, reordered or dropped chunks, truncation and trailing data are
//! all detected; the image is streamed (one chunk in memory at a time); and unpacking writes
//! into a private temporary directory next to the destination that is renamed into place only
//! after the whole image authenticated, so a refused image leaves nothing behind.
//!
//! # Format (version 1, all integers little-endian)
//!
//! ```text
//! header  (24 bytes) magic "INITRFS\0" | version u16 = 1 | flags u16 | chunk_size u32 |
//!                    nonce_prefix [7] | reserved u8 = 0
//! key check (16 bytes) AES-GCM tag over an empty message, nonce = prefix || 0xffffffff || 0x02,
//!                    AAD = header: proves the key (and the header) before any chunk is read
//! chunk i  (n_i + 16 bytes) AES-GCM(plaintext_i), nonce = prefix || i as u32 big-endian ||
//!                    last flag (0x01 on the final chunk, else 0x00), AAD = header
//! ```
//!
//! Every chunk but the last carries exactly `chunk_size` plaintext bytes; the last carries
//! 0..=`chunk_size` (an empty image is one empty last chunk). The counter in the nonce fixes
//! each chunk's position, the last flag marks the end (Hoang, Reyhanitabar, Rogaway, Vizár,
//! "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015,
//! section 7: STREAM), and the header as AAD binds the chunk size and flags. Flag bit 0 marks
//! an integrity-only image, sealed under the all-zero key: it detects corruption, but anyone
//! can forge one, exactly as anyone can build an unencrypted Occlum image.
//!
//! The plaintext is a tar stream of regular files, directories and symlinks. Unpacking
//! refuses absolute paths, `..`, symlinks whose target leaves the root, entries below a
//! symlink, duplicate entries and every other entry type; file modes are masked to `0o777`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace as _, KeyInit as _, OsRng, rand_core::RngCore as _};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::fsutil;

/// First bytes of every image.
pub const MAGIC: [u8; 8] = *b"INITRFS\0";
/// The format version this module reads and writes.
pub const VERSION: u16 = 1;
/// Header length, excluding the key-check tag.
pub const HEADER_LEN: usize = 24;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk written by [`pack`].
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Smallest chunk size accepted when reading.
pub const MIN_CHUNK_SIZE: usize = 4 * 1024;
/// Largest chunk size accepted when reading (bounds the one buffer unpacking allocates).
pub const MAX_CHUNK_SIZE: usize = 1024 * 1024;
/// Most archive entries an image may hold.
pub const MAX_ENTRIES: u64 = 1 << 20;
/// Header flag: integrity-only image, sealed under the all-zero key.
pub const FLAG_INTEGRITY_ONLY: u16 = 1;

const NONCE_PREFIX_LEN: usize = 7;
const LAST_CHUNK: u8 = 1;
const KEY_CHECK: u8 = 2;
const KEY_CHECK_COUNTER: u32 = u32::MAX;

/// How an image is sealed: under `image_key`, or integrity-only.
#[derive(Clone, Copy)]
pub enum Seal<'a> {
    /// Encrypted and authenticated under the 16-byte `image_key`.
    Encrypted(&'a [u8; 16]),
    /// Authenticated under the all-zero key: detects corruption, not forgery.
    IntegrityOnly,
}

impl fmt::Debug for Seal<'_> {
    /// The key is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encrypted(_) => f.write_str("Encrypted(<key>)"),
            Self::IntegrityOnly => f.write_str("IntegrityOnly"),
        }
    }
}

/// What an unpacked image held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Plaintext bytes of file contents.
    pub bytes: u64,
}

/// Why an image could not be packed or opened. No variant holds key material or file contents.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageError {
    /// A file system operation failed.
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file does not start with [`MAGIC`].
    NotAnImage,
    /// The header names a version this build does not read.
    UnsupportedVersion { version: u16 },
    /// A header field is out of range.
    BadHeader { detail: String },
    /// The image's seal does not match what `image_config.json` says.
    SealMismatch {
        image: &'static str,
        expected: &'static str,
    },
    /// The key check failed: a wrong `image_key`, or a corrupted header.
    WrongKey,
    /// A chunk failed authentication.
    Tampered { chunk: u32 },
    /// The image ended early, or has bytes after its last chunk.
    Truncated { detail: String },
    /// The archive inside is malformed.
    Archive { detail: String },
    /// An archive entry is refused.
    UnsafeEntry { path: String, reason: String },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, source } => write!(f, "{what} {}: {source}", path.display()),
            Self::NotAnImage => write!(f, "not a rootfs image (no {:?} magic)", "INITRFS"),
            Self::UnsupportedVersion { version } => {
                write!(
                    f,
                    "image format version {version} is not supported (this init reads {VERSION})"
                )
            }
            Self::BadHeader { detail } => write!(f, "image header: {detail}"),
            Self::SealMismatch { image, expected } => {
                write!(
                    f,
                    "the image is {image} but image_config.json says {expected}"
                )
            }
            Self::WrongKey => f.write_str(
                "image_key does not open this image (wrong key, or the image header is corrupted)",
            ),
            Self::Tampered { chunk } => write!(
                f,
                "image chunk {chunk} failed authentication: the image is corrupted, tampered with or reordered"
            ),
            Self::Truncated { detail } => write!(f, "image truncated or extended: {detail}"),
            Self::Archive { detail } => write!(f, "image archive: {detail}"),
            Self::UnsafeEntry { path, reason } => {
                write!(f, "image entry {path:?} refused: {reason}")
            }
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Packs the directory `input` into a sealed image at `output` (written to a temporary file
/// and renamed, so `output` is either complete or untouched).
pub fn pack(seal: Seal<'_>, input: &Path, output: &Path) -> Result<u64, ImageError> {
    let tmp = fsutil::temp_sibling(output, "pack");
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| io_err("create", &tmp, source))?;
        let mut sealer = Sealer::new(seal, io::BufWriter::new(file))
            .map_err(|source| io_err("write", &tmp, source))?;
        let entries = {
            let mut builder = tar::Builder::new(&mut sealer);
            let count = append_tree(&mut builder, input, Path::new(""))?;
            builder
                .finish()
                .map_err(|source| io_err("write", &tmp, source))?;
            count
        };
        let file = sealer
            .finish()
            .map_err(|source| io_err("write", &tmp, source))?;
        let file = file
            .into_inner()
            .map_err(|e| io_err("write", &tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|source| io_err("sync", &tmp, source))?;
        fs::rename(&tmp, output).map_err(|source| io_err("rename into", output, source))?;
        Ok(entries)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Seals an arbitrary byte stream as an image (tests craft hostile archives with it).
#[cfg(test)]
pub fn seal_stream(seal: Seal<'_>, mut plaintext: impl Read, out: impl Write) -> io::Result<()> {
    let mut sealer = Sealer::new(seal, out)?;
    io::copy(&mut plaintext, &mut sealer)?;
    sealer.finish()?.flush()
}

/// Opens the image at `image`, checks it is sealed as `seal` says, and unpacks it to
/// `rootfs` (replacing an earlier rootfs there) only if every chunk authenticated.
pub fn unpack(seal: Seal<'_>, image: &Path, rootfs: &Path) -> Result<UnpackReport, ImageError> {
    let file = File::open(image).map_err(|source| io_err("open image", image, source))?;
    let mut opener = Opener::new(seal, BufReader::with_capacity(64 * 1024, file))?;
    let staging = fsutil::temp_sibling(rootfs, "unpack");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|source| io_err("create directory", &staging, source))?;
    let result = extract(&mut opener, &staging).and_then(|report| {
        install(&staging, rootfs)?;
        Ok(report)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Reads `seal`'s header from `reader` and verifies the key check.
struct Opener<R> {
    inner: R,
    cipher: Aes128Gcm,
    header: [u8; HEADER_LEN],
    prefix: [u8; NONCE_PREFIX_LEN],
    chunk_size: usize,
    counter: u32,
    /// Ciphertext, then plaintext, of the current chunk.
    chunk: Zeroizing<Vec<u8>>,
    pos: usize,
    finished: bool,
    failure: Option<ImageError>,
}

impl<R: BufRead> Opener<R> {
    fn new(seal: Seal<'_>, mut inner: R) -> Result<Self, ImageError> {
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
            cipher,
            header: header_arr,
            prefix: header.prefix,
            chunk_size: header.chunk_size,
            counter: 0,
            chunk: Zeroizing::new(Vec::with_capacity(header.chunk_size + TAG_LEN)),
            pos: 0,
            finished: false,
            failure: None,
        })
    }

    /// Reads and authenticates the next chunk into `self.chunk`.
    fn next_chunk(&mut self) -> Result<(), ImageError> {
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
        self.chunk.truncate(n);
        let (body, tag) = self.chunk.split_at_mut(n - TAG_LEN);
        let flag = if at_end { LAST_CHUNK } else { 0 };
        self.cipher
            .decrypt_in_place_detached(&nonce(&self.prefix, self.counter, flag), &self.header, body, Tag::from_slice(tag))
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
        self.chunk.truncate(n - TAG_LEN);
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
    fn drain(&mut self) -> Result<(), ImageError> {
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
struct Sealer<W: Write> {
    inner: W,
    cipher: Aes128Gcm,
    header: [u8; HEADER_LEN],
    prefix: [u8; NONCE_PREFIX_LEN],
    counter: u32,
    chunk: Zeroizing<Vec<u8>>,
}

impl<W: Write> Sealer<W> {
    fn new(seal: Seal<'_>, mut inner: W) -> io::Result<Self> {
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
            cipher,
            header,
            prefix,
            counter: 0,
            chunk: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE + TAG_LEN)),
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let flag = if last { LAST_CHUNK } else { 0 };
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &nonce(&self.prefix, self.counter, flag),
                &self.header,
                &mut self.chunk,
            )
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        self.inner.write_all(&self.chunk)?;
        self.inner.write_all(&tag)?;
        self.chunk.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("image too large: more than 2^32 - 1 chunks"))?;
        Ok(())
    }

    /// Writes the last chunk and returns the inner writer.
    fn finish(mut self) -> io::Result<W> {
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

struct Header {
    flags: u16,
    chunk_size: usize,
    prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, ImageError> {
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

    fn to_bytes(&self) -> [u8; HEADER_LEN] {
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

fn cipher_for(seal: Seal<'_>) -> Aes128Gcm {
    let zero = [0u8; 16];
    let key = match seal {
        Seal::Encrypted(key) => key,
        Seal::IntegrityOnly => &zero,
    };
    Aes128Gcm::new(key.into())
}

fn nonce(
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
fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    match rest.split_first_chunk::<N>() {
        Some((head, tail)) => {
            *rest = tail;
            *head
        }
        None => [0; N],
    }
}

/// Reads until `buf` is full or the reader is at its end; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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

fn io_err(what: &'static str, path: &Path, source: io::Error) -> ImageError {
    ImageError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Appends `dir` (recursively, in name order, symlinks as symlinks) under `prefix`.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
) -> Result<u64, ImageError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|source| io_err("read directory", dir, source))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|source| io_err("read directory", dir, source))?;
    names.sort();
    let mut count = 0;
    for name in names {
        let path = dir.join(&name);
        let archived = prefix.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|source| io_err("stat", &path, source))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.permissions().mode() & 0o777);
        header.set_mtime(0);
        let write_err = |source| io_err("write image entry", &path, source);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &archived, io::empty())
                .map_err(write_err)?;
            count += 1 + append_tree(builder, &path, &archived)?;
        } else if meta.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let file = File::open(&path).map_err(|source| io_err("open", &path, source))?;
            builder
                .append_data(&mut header, &archived, file)
                .map_err(write_err)?;
            count += 1;
        } else if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&path).map_err(|source| io_err("read symlink", &path, source))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &archived, &target)
                .map_err(write_err)?;
            count += 1;
        } else {
            return Err(ImageError::UnsafeEntry {
                path: path.display().to_string(),
                reason: "only regular files, directories and symlinks can be packed".into(),
            });
        }
    }
    Ok(count)
}

/// Unpacks every entry into `root` (a fresh private directory), then drains the image.
fn extract<R: BufRead>(opener: &mut Opener<R>, root: &Path) -> Result<UnpackReport, ImageError> {
    let mut report = UnpackReport::default();
    let mut dir_modes = Vec::new();
    let outcome = (|| {
        let mut archive = tar::Archive::new(&mut *opener);
        let entries = archive.entries().map_err(archive_err)?;
        for (index, entry) in entries.enumerate() {
            if index as u64 >= MAX_ENTRIES {
                return Err(ImageError::Archive {
                    detail: format!("more than {MAX_ENTRIES} entries"),
                });
            }
            let mut entry = entry.map_err(archive_err)?;
            unpack_entry(&mut entry, root, &mut report, &mut dir_modes)?;
        }
        Ok(())
    })();
    // An authentication failure surfaces inside tar as a generic read error: report the cause.
    if let Some(failure) = opener.failure.take() {
        return Err(failure);
    }
    outcome?;
    opener.drain()?;
    for (path, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|source| io_err("set permissions", &path, source))?;
    }
    Ok(report)
}

fn archive_err(e: io::Error) -> ImageError {
    ImageError::Archive {
        detail: e.to_string(),
    }
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    report: &mut UnpackReport,
    dir_modes: &mut Vec<(PathBuf, u32)>,
) -> Result<(), ImageError> {
    let raw = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let refuse = |reason: &str| ImageError::UnsafeEntry {
        path: shown.clone(),
        reason: reason.to_owned(),
    };
    let relative = fsutil::relative_path(&entry.path().map_err(archive_err)?)
        .map_err(|reason| refuse(&reason))?;
    let Some(relative) = relative else {
        // "." or "./": the root itself, which already exists with mode 0700.
        return Ok(());
    };
    let target = fsutil::prepare_parents(root, &relative).map_err(|e| refuse(&e.to_string()))?;
    let exists = fs::symlink_metadata(&target).ok();
    let mode = entry.header().mode().map_err(archive_err)? & 0o777;
    match entry.header().entry_type() {
        tar::EntryType::Directory => {
            match exists {
                Some(meta) if meta.is_dir() => {}
                Some(_) => return Err(refuse("a directory entry replaces a file or symlink")),
                None => fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&target)
                    .map_err(|source| io_err("create directory", &target, source))?,
            }
            dir_modes.push((target, mode | 0o700));
            report.dirs += 1;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if exists.is_some() {
                return Err(refuse("duplicate entry"));
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(|source| io_err("create", &target, source))?;
            let written =
                io::copy(entry, &mut file).map_err(|source| io_err("write", &target, source))?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|source| io_err("set permissions", &target, source))?;
            report.files += 1;
            report.bytes += written;
        }
        tar::EntryType::Symlink => {
            if exists.is_some() {
                return Err(refuse("duplicate entry"));
            }
            let link = entry
                .link_name()
                .map_err(archive_err)?
                .ok_or_else(|| refuse("symlink without a target"))?;
            fsutil::check_symlink_target(&relative, &link).map_err(|reason| refuse(&reason))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|source| io_err("create symlink", &target, source))?;
            report.symlinks += 1;
        }
        other => {
            return Err(refuse(&format!(
                "entry type {other:?} is not allowed (only files, directories, symlinks)"
            )));
        }
    }
    Ok(())
}

/// Moves the staged tree to `rootfs`, replacing what was there.
fn install(staging: &Path, rootfs: &Path) -> Result<(), ImageError> {
    let old = match fs::symlink_metadata(rootfs) {
        Ok(_) => {
            let old = fsutil::temp_sibling(rootfs, "old");
            fs::rename(rootfs, &old)
                .map_err(|source| io_err("move aside old rootfs", rootfs, source))?;
            Some(old)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(io_err("stat", rootfs, source)),
    };
    fs::rename(staging, rootfs)
        .map_err(|source| io_err("rename unpacked image to", rootfs, source))?;
    if let Some(old) = old {
        let removal = if fs::symlink_metadata(&old)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            fs::remove_dir_all(&old)
        } else {
            fs::remove_file(&old)
        };
        removal.map_err(|source| io_err("remove old rootfs", &old, source))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [7; 16];

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::create_dir_all(dir.path().join("etc/ssl")).unwrap();
        fs::write(dir.path().join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(
            dir.path().join("bin/app"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let big: Vec<u8> = (0..(3 * CHUNK_SIZE + 123))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        fs::write(dir.path().join("etc/big.bin"), &big).unwrap();
        fs::write(dir.path().join("etc/empty"), b"").unwrap();
        std::os::unix::fs::symlink("../bin/app", dir.path().join("etc/app-link")).unwrap();
        dir
    }

    fn packed(seal: Seal<'_>) -> (tempfile::TempDir, PathBuf) {
        let src = tree();
        let out = tempfile::tempdir().unwrap();
        let image = out.path().join("rootfs.img");
        pack(seal, src.path(), &image).unwrap();
        (out, image)
    }

    fn sealed_bytes(seal: Seal<'_>, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal_stream(seal, plaintext, &mut out).unwrap();
        out
    }

    fn open_all(seal: Seal<'_>, bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
        let mut opener = Opener::new(seal, BufReader::new(bytes))?;
        let mut out = Vec::new();
        match opener.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(opener.failure.take().unwrap_or(ImageError::Archive {
                detail: e.to_string(),
            })),
        }
    }

    fn unpack_bytes(
        seal: Seal<'_>,
        bytes: &[u8],
    ) -> (tempfile::TempDir, Result<UnpackReport, ImageError>) {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        fs::write(&image, bytes).unwrap();
        let result = unpack(seal, &image, &dir.path().join("rootfs"));
        (dir, result)
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.retain(|n| n != "img");
        names.sort();
        names
    }

    #[test]
    fn a_packed_tree_unpacks_byte_exact() {
        let src = tree();
        let (out, image) = packed(Seal::Encrypted(&KEY));
        let rootfs = out.path().join("rootfs");
        let report = unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
        assert_eq!(report.files, 3);
        assert_eq!(report.symlinks, 1);
        assert_eq!(report.dirs, 3);
        for file in ["bin/app", "etc/big.bin", "etc/empty"] {
            assert_eq!(
                fs::read(rootfs.join(file)).unwrap(),
                fs::read(src.path().join(file)).unwrap(),
                "{file}"
            );
        }
        assert_eq!(
            fs::read_link(rootfs.join("etc/app-link")).unwrap(),
            Path::new("../bin/app")
        );
        let mode = fs::metadata(rootfs.join("bin/app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755);
        let root_mode = fs::metadata(&rootfs).unwrap().permissions().mode() & 0o777;
        assert_eq!(root_mode, 0o700);
    }

    #[test]
    fn the_image_is_not_plaintext() {
        let (_out, image) = packed(Seal::Encrypted(&KEY));
        let bytes = fs::read(image).unwrap();
        assert!(
            !bytes
                .windows(9)
                .any(|w| w == b"echo hi\n\0" || w.starts_with(b"echo hi"))
        );
    }

    #[test]
    fn stream_round_trips_at_every_chunk_boundary() {
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
        ] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
            let chunks = len.div_ceil(CHUNK_SIZE).max(1);
            assert_eq!(
                sealed.len(),
                HEADER_LEN + TAG_LEN + len + chunks * TAG_LEN,
                "len {len}"
            );
            assert_eq!(
                open_all(Seal::Encrypted(&KEY), &sealed).unwrap(),
                data,
                "len {len}"
            );
        }
    }

    #[test]
    fn a_wrong_key_refuses_to_open_and_writes_nothing() {
        let (out, image) = packed(Seal::Encrypted(&KEY));
        let rootfs = out.path().join("rootfs");
        let err = unpack(Seal::Encrypted(&[8; 16]), &image, &rootfs).unwrap_err();
        assert!(matches!(err, ImageError::WrongKey), "{err}");
        assert!(!rootfs.exists());
        assert_eq!(leftovers(out.path()), ["rootfs.img"]);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 10))
            .map(|i| (i % 256) as u8)
            .collect();
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
        let positions = (0..HEADER_LEN + TAG_LEN + 64)
            .chain((HEADER_LEN + TAG_LEN..sealed.len()).step_by(997))
            .chain(sealed.len() - 20..sealed.len());
        for at in positions {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert!(
                open_all(Seal::Encrypted(&KEY), &bad).is_err(),
                "flip at {at} went unnoticed"
            );
        }
    }

    #[test]
    fn a_flipped_byte_in_a_chunk_names_the_chunk() {
        let data = vec![5u8; 2 * CHUNK_SIZE + 10];
        let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
        let second = HEADER_LEN + TAG_LEN + CHUNK_SIZE + TAG_LEN + 3;
        sealed[second] ^= 0x80;
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &sealed),
            Err(ImageError::Tampered { chunk: 1 })
        ));
    }

    #[test]
    fn a_flipped_header_byte_fails_the_key_check() {
        let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"data");
        sealed[17] ^= 1; // inside the nonce prefix
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &sealed),
            Err(ImageError::WrongKey)
        ));
    }

    #[test]
    fn reordered_chunks_are_refused() {
        let data: Vec<u8> = (0..(3 * CHUNK_SIZE))
            .map(|i| (i / CHUNK_SIZE) as u8)
            .collect();
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
        let start = HEADER_LEN + TAG_LEN;
        let unit = CHUNK_SIZE + TAG_LEN;
        let mut swapped = sealed[..start].to_vec();
        swapped.extend_from_slice(&sealed[start + unit..start + 2 * unit]);
        swapped.extend_from_slice(&sealed[start..start + unit]);
        swapped.extend_from_slice(&sealed[start + 2 * unit..]);
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &swapped),
            Err(ImageError::Tampered { chunk: 0 })
        ));
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_refused() {
        let data = vec![1u8; 3 * CHUNK_SIZE];
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
        let cut = HEADER_LEN + TAG_LEN + 2 * (CHUNK_SIZE + TAG_LEN);
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &sealed[..cut]),
            Err(ImageError::Truncated { .. })
        ));
    }

    #[test]
    fn truncation_inside_a_chunk_and_to_the_header_is_refused() {
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &vec![1u8; CHUNK_SIZE + 100]);
        for cut in [
            sealed.len() - 1,
            HEADER_LEN + TAG_LEN + 5,
            HEADER_LEN + TAG_LEN,
            HEADER_LEN + 3,
            4,
        ] {
            let err = open_all(Seal::Encrypted(&KEY), &sealed[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ImageError::Truncated { .. } | ImageError::Tampered { .. }
                ),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_last_chunk_are_refused() {
        let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"short");
        sealed.extend_from_slice(&[0u8; 40]);
        assert!(open_all(Seal::Encrypted(&KEY), &sealed).is_err());
    }

    #[test]
    fn a_flipped_byte_in_a_packed_image_writes_nothing() {
        let (out, image) = packed(Seal::Encrypted(&KEY));
        let mut bytes = fs::read(&image).unwrap();
        let at = bytes.len() - 30; // in the last chunk, after the archive's files were streamed
        bytes[at] ^= 0x20;
        fs::write(&image, &bytes).unwrap();
        let rootfs = out.path().join("rootfs");
        assert!(unpack(Seal::Encrypted(&KEY), &image, &rootfs).is_err());
        assert!(!rootfs.exists());
        assert_eq!(leftovers(out.path()), ["rootfs.img"]);
    }

    #[test]
    fn a_refused_image_keeps_the_previous_rootfs() {
        let (out, image) = packed(Seal::Encrypted(&KEY));
        let rootfs = out.path().join("rootfs");
        unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
        fs::write(rootfs.join("marker"), b"old").unwrap();
        assert!(unpack(Seal::Encrypted(&[0; 16]), &image, &rootfs).is_err());
        assert_eq!(fs::read(rootfs.join("marker")).unwrap(), b"old");
        unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
        assert!(!rootfs.join("marker").exists());
        assert_eq!(leftovers(out.path()), ["rootfs", "rootfs.img"]);
    }

    #[test]
    fn the_seal_must_match_the_image_type() {
        let sealed = sealed_bytes(Seal::IntegrityOnly, b"x");
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &sealed),
            Err(ImageError::SealMismatch { .. })
        ));
        assert_eq!(open_all(Seal::IntegrityOnly, &sealed).unwrap(), b"x");
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), b"x");
        assert!(matches!(
            open_all(Seal::IntegrityOnly, &sealed),
            Err(ImageError::SealMismatch { .. })
        ));
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        assert!(matches!(
            open_all(
                Seal::Encrypted(&KEY),
                b"hello world, this is not an image at all"
            ),
            Err(ImageError::NotAnImage)
        ));
        let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"x");
        sealed[8] = 2;
        assert!(matches!(
            open_all(Seal::Encrypted(&KEY), &sealed),
            Err(ImageError::UnsupportedVersion { version: 2 })
        ));
    }

    /// A tar stream with one entry whose raw name and type are chosen by the test.
    fn raw_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link);
            }
        }
        header.set_entry_type(kind);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn refused(tar_bytes: &[u8]) -> ImageError {
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), tar_bytes);
        let (dir, result) = unpack_bytes(Seal::Encrypted(&KEY), &sealed);
        let err = result.expect_err("unsafe entry accepted");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        err
    }

    #[test]
    fn path_traversal_entries_are_refused() {
        for name in [&b"../escape"[..], b"a/../../escape", b"/etc/passwd"] {
            let err = refused(&raw_tar(name, tar::EntryType::Regular, None, b"x"));
            assert!(
                matches!(
                    err,
                    ImageError::UnsafeEntry { .. } | ImageError::Archive { .. }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        for target in [&b"/etc"[..], b"../..", b"a/../../x"] {
            let err = refused(&raw_tar(
                b"link",
                tar::EntryType::Symlink,
                Some(target),
                b"",
            ));
            assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
        }
    }

    #[test]
    fn entries_below_a_symlink_are_refused() {
        let mut stream = raw_tar(b"dir", tar::EntryType::Symlink, Some(b"."), b"");
        stream.truncate(512); // drop the end-of-archive blocks of the first entry
        stream.extend_from_slice(&raw_tar(b"dir/file", tar::EntryType::Regular, None, b"x"));
        let err = refused(&stream);
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    }

    #[test]
    fn duplicate_entries_are_refused() {
        let mut stream = raw_tar(b"file", tar::EntryType::Regular, None, b"one");
        stream.truncate(1024);
        stream.extend_from_slice(&raw_tar(b"file", tar::EntryType::Regular, None, b"two"));
        assert!(matches!(refused(&stream), ImageError::UnsafeEntry { .. }));
    }

    #[test]
    fn hard_links_and_devices_are_refused() {
        for kind in [
            tar::EntryType::Link,
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let err = refused(&raw_tar(b"node", kind, Some(b"other"), b""));
            assert!(
                matches!(err, ImageError::UnsafeEntry { .. }),
                "{kind:?}: {err}"
            );
        }
    }

    #[test]
    fn setuid_bits_are_dropped() {
        let mut stream = raw_tar(b"tool", tar::EntryType::Regular, None, b"x");
        let mut header = tar::Header::from_byte_slice(&stream[..512]).clone();
        header.set_mode(0o4755);
        header.set_cksum();
        stream[..512].copy_from_slice(header.as_bytes());
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &stream);
        let (dir, result) = unpack_bytes(Seal::Encrypted(&KEY), &sealed);
        result.unwrap();
        let mode = fs::metadata(dir.path().join("rootfs/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755);
    }
}
