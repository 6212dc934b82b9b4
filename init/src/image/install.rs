//! Installing an authenticated, staged rootfs in place of the previous one.

use super::*;

/// Moves the staged tree to `rootfs`, replacing what was there.
pub(super) fn install(staging: &Path, rootfs: &Path) -> Result<(), ImageError> {
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
