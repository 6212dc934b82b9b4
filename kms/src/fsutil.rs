//! File helpers with the guarantees the KMS needs: bounded reads into zeroizing buffers, and
//! private (0600) writes that are atomic (temp file, fsync, rename) or refuse to overwrite.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use zeroize::Zeroizing;

/// Reads at most `limit` bytes of `path`; a longer file is an error, not a truncation.
pub fn read_limited(path: &Path, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let max = u64::try_from(limit).unwrap_or(u64::MAX);
    fileio::read_bounded(path, max).map_err(|e| match e {
        fileio::ReadError::Open(e) | fileio::ReadError::Read(e) => e,
        fileio::ReadError::TooLarge { .. } => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file larger than the {limit}-byte limit"),
        ),
    })
}

/// Why one of the KMS's own JSON files (operators, cluster) was refused; `what` names the
/// kind of file in messages ("operators file", "cluster file").
#[derive(Debug)]
pub enum ConfigFileError {
    Read {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    Invalid {
        what: &'static str,
        path: String,
        detail: String,
    },
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { what, path, source } => write!(f, "reading {what} {path}: {source}"),
            Self::Invalid { what, path, detail } => write!(f, "{what} {path}: {detail}"),
        }
    }
}

impl std::error::Error for ConfigFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Invalid { .. } => None,
        }
    }
}

/// Reads `path` (at most `limit` bytes) for `parse`, naming the file `what` in errors.
pub fn load_config<T>(
    path: &Path,
    limit: usize,
    what: &'static str,
    parse: impl FnOnce(&[u8], &str) -> Result<T, ConfigFileError>,
) -> Result<T, ConfigFileError> {
    let shown = path.display().to_string();
    let bytes = read_limited(path, limit).map_err(|source| ConfigFileError::Read {
        what,
        path: shown.clone(),
        source,
    })?;
    parse(&bytes, &shown)
}

/// Writes `bytes` to `path` with mode 0600.
///
/// `replace = true`: atomically, via a temporary file in the same directory and a rename, so
/// readers see the old or the new content, never a mix. `replace = false`: the file must not
/// exist yet (keys are never silently overwritten).
pub fn create_private(path: &Path, bytes: &[u8], replace: bool) -> io::Result<()> {
    if !replace {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(bytes)?;
        return file.sync_all();
    }
    write_atomic(path, bytes, 0o600)
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename) with
/// permission bits `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    fileio::write_atomic(path, bytes, mode, fileio::Durability::Fsync)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn reads_over_the_limit_fail_and_writes_are_private() {
        let dir = std::env::temp_dir().join(format!("kms-fsutil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        create_private(&path, b"0123456789", true).unwrap();
        create_private(&path, b"abcdef", true).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_limited(&path, 6).unwrap().as_slice(), b"abcdef");
        assert!(read_limited(&path, 5).is_err());
        assert!(create_private(&path, b"x", false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
