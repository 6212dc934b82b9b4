//! File-system helpers shared by the image unpacker and the secret writer.
//!
//! Guarantees: paths taken from configuration or from an image stay below their root (no
//! absolute paths, no `..`, no symlinked ancestors, no symlink targets that leave the root),
//! and secret files appear atomically (temporary file, rename) with mode 0600.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Mode of directories created on the way to a secret or an image entry.
pub const DIR_MODE: u32 = 0o755;
/// Mode of every secret file.
pub const SECRET_MODE: u32 = 0o600;

/// A fresh, unlikely-to-collide name next to `path`: `.{name}.{tag}-{pid}-{nanos}`.
pub fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "rootfs".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let sibling = format!(".{name}.{tag}-{}-{nanos}", std::process::id());
    match path.parent() {
        Some(parent) => parent.join(sibling),
        None => PathBuf::from(sibling),
    }
}

/// Checks that `path` is relative and stays below its root; returns it without `.`
/// components, or `None` when it names the root itself.
pub fn relative_path(path: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` is not allowed".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed".into());
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Checks that a symlink at `link` (relative to the root) pointing at `target` resolves
/// below the root, judged on the names alone (the unpacker refuses entries below symlinks,
/// so no other symlink can take part in the resolution).
pub fn check_symlink_target(link: &Path, target: &Path) -> Result<(), String> {
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("symlink target {target:?} leaves the root"))?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink target {target:?} is absolute"));
            }
        }
    }
    Ok(())
}

/// Creates the missing parent directories of `relative` below `root`, refusing any existing
/// ancestor that is not a real directory (a symlink could lead out of the root). Returns
/// `root/relative`.
pub fn prepare_parents(root: &Path, relative: &Path) -> io::Result<PathBuf> {
    let mut current = root.to_path_buf();
    if let Some(parent) = relative.parent() {
        for component in parent.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let kind = if meta.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    return Err(io::Error::other(format!("{} is {kind}", current.display())));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(DIR_MODE).create(&current) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(root.join(relative))
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file in the same
/// directory, renamed over `path`, so a reader sees the whole file or none.
///
/// No fsync: init writes every secret again on every boot, before the app starts, so nothing
/// needs the file to survive a host crash; an fsync per file and directory only lengthened
/// every boot (and not every LibOS file system supports fsync on directories).
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fileio::write_atomic(path, bytes, SECRET_MODE, fileio::Durability::NoFsync)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn relative_paths_drop_dots_and_refuse_escapes() {
        assert_eq!(
            relative_path(Path::new("./a/./b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(relative_path(Path::new(".")).unwrap(), None);
        assert!(relative_path(Path::new("a/../b")).is_err());
        assert!(relative_path(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn symlink_targets_must_stay_below_the_root() {
        assert!(check_symlink_target(Path::new("etc/link"), Path::new("../bin/app")).is_ok());
        assert!(check_symlink_target(Path::new("etc/link"), Path::new("../../x")).is_err());
        assert!(check_symlink_target(Path::new("link"), Path::new("/etc")).is_err());
        assert!(check_symlink_target(Path::new("a/b/link"), Path::new("c/../../..")).is_ok());
        assert!(check_symlink_target(Path::new("a/b/link"), Path::new("c/../../../..")).is_err());
    }

    #[test]
    fn parents_are_created_but_symlinked_ancestors_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let target = prepare_parents(root.path(), Path::new("etc/ssl/key.pem")).unwrap();
        assert_eq!(target, root.path().join("etc/ssl/key.pem"));
        assert!(root.path().join("etc/ssl").is_dir());
        std::os::unix::fs::symlink("/tmp", root.path().join("out")).unwrap();
        assert!(prepare_parents(root.path(), Path::new("out/key")).is_err());
    }

    #[test]
    fn secret_files_are_written_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, b"old contents, longer than the new ones").unwrap();
        write_secret_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }
}
