//! The tar archive inside an image: packing a directory tree and unpacking entries with
//! path safety (no absolute paths, `..`, escaping symlinks, entries below symlinks,
//! duplicates or other entry types).

use super::*;

/// Appends `dir` (recursively, in name order, symlinks as symlinks) under `prefix`.
pub(super) fn append_tree<W: Write>(
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
pub(super) fn extract<R: BufRead>(
    opener: &mut Opener<R>,
    root: &Path,
) -> Result<UnpackReport, ImageError> {
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

pub(super) fn archive_err(e: io::Error) -> ImageError {
    ImageError::Archive {
        detail: e.to_string(),
    }
}

pub(super) fn unpack_entry<R: Read>(
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
