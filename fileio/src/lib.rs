//! The workspace's two file primitives, written once.
//!
//! Guarantees: [`read_bounded`] never holds more than `max + 1` bytes of a file (a larger file
//! is an error, never a truncation) and reads into a buffer wiped on drop, because callers read
//! keys with it. [`write_atomic`] makes a file appear whole or not at all: the bytes go to a
//! temporary file next to the target, created exclusively (`O_EXCL`, never following or reusing
//! an existing name) with the final permission bits, then renamed over the target; on any error
//! the temporary file is removed.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

/// Why [`read_bounded`] returned no bytes.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened.
    Open(io::Error),
    /// Reading it failed.
    Read(io::Error),
    /// It is longer than `max` bytes (`read` is how many were read before stopping: `max + 1`).
    TooLarge { max: u64, read: u64 },
}

impl ReadError {
    /// The I/O error, when there is one (not for [`ReadError::TooLarge`]).
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            Self::Open(e) | Self::Read(e) => Some(e),
            Self::TooLarge { .. } => None,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => write!(f, "open: {e}"),
            Self::Read(e) => write!(f, "read: {e}"),
            Self::TooLarge { max, .. } => write!(f, "larger than {max} bytes"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open(e) | Self::Read(e) => Some(e),
            Self::TooLarge { .. } => None,
        }
    }
}

/// Reads the whole of `path`, refusing a file longer than `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let file = File::open(path).map_err(ReadError::Open)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Read)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > max {
        return Err(ReadError::TooLarge { max, read });
    }
    Ok(bytes)
}

/// Whether [`write_atomic`] waits for the data to reach the disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the temporary file before renaming it: the new content survives a crash.
    Fsync,
    /// No `fsync`: for files written again on every start, where the cost buys nothing.
    NoFsync,
}

/// Writes `bytes` to `path` atomically with permission bits `mode` (see the crate docs).
///
/// The temporary file is `<name>.tmp.<pid>.<n>` in the same directory, `n` unique within the
/// process, so concurrent writers of one path never share a temporary file; a name left by an
/// earlier process is skipped, not reused.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| match durability {
            Durability::Fsync => file.sync_all(),
            Durability::NoFsync => Ok(()),
        })
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Most temporary names tried before giving up.
const TEMP_ATTEMPTS: usize = 16;

/// The `n` of the next temporary name.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!("{name}.tmp.{}.{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique temporary file name")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_file_of_exactly_max_bytes_reads_and_one_more_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abcdef").unwrap();
        assert_eq!(read_bounded(&path, 6).unwrap().as_slice(), b"abcdef");
        let err = read_bounded(&path, 5).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { max: 5, read: 6 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "larger than 5 bytes");
        let err = read_bounded(&dir.path().join("missing"), 5).unwrap_err();
        assert_eq!(err.io().map(io::Error::kind), Some(io::ErrorKind::NotFound));
        assert!(err.to_string().starts_with("open: "), "{err}");
    }

    #[test]
    fn atomic_writes_replace_whole_files_with_the_mode_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"old contents, longer than the new ones").unwrap();
        for durability in [Durability::Fsync, Durability::NoFsync] {
            write_atomic(&path, b"new", 0o600, durability).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o600);
        }
        write_atomic(&path, b"public", 0o644, Durability::Fsync).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_temporary_name_left_behind_is_skipped_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Occupy the next names this process would pick (other tests may take some first).
        let next = COUNTER.load(Ordering::Relaxed);
        let stale: Vec<PathBuf> = (next..next + 4)
            .map(|n| dir.path().join(format!("f.tmp.{}.{n}", std::process::id())))
            .collect();
        for s in &stale {
            std::fs::write(s, b"someone else's").unwrap();
        }
        write_atomic(&path, b"mine", 0o600, Durability::NoFsync).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
        for s in &stale {
            assert_eq!(std::fs::read(s).unwrap(), b"someone else's");
        }
    }

    #[test]
    fn a_failed_write_leaves_neither_the_target_nor_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temporary file exists.
        let path = dir.path().join("d");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"new", 0o600, Durability::NoFsync).is_err());
        assert!(path.is_dir());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
