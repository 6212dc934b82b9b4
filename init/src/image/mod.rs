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
//!
//! Layout: [`crypt`] seals and opens the chunked stream, [`archive`] packs and unpacks the
//! tar archive with path safety, [`install`] moves an authenticated rootfs into place.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace as _, KeyInit as _, OsRng, rand_core::RngCore as _};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::fsutil;

mod archive;
mod crypt;
mod install;

use archive::{append_tree, extract};
use crypt::{Opener, Sealer};
use install::install;

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

fn io_err(what: &'static str, path: &Path, source: io::Error) -> ImageError {
    ImageError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
