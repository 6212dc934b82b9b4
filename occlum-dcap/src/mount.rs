//! Occlum's `SYS_MOUNT_FS` (syscall 363): mount the encrypted rootfs, once, from init.
//!
//! The syscall is only made after [`is_occlum`] says the process runs inside Occlum, so on
//! any other kernel [`mount_rootfs`] returns [`MountError::NotOcclum`] and does nothing.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// `uname(2)` `sysname` inside Occlum (`src/libos/src/misc/uname.rs`, unchanged since 2019).
pub const OCCLUM_SYSNAME: &str = "Occlum";

/// True when this process runs inside Occlum's LibOS.
///
/// The test is `uname().sysname == "Occlum"`: Occlum hard-codes that name, a Linux kernel
/// always says `"Linux"`, and it needs no file system (which init is about to replace).
/// `/dev/sgx` alone would not do: the out-of-tree Intel DCAP driver creates a `/dev/sgx`
/// directory on hosts. A failing `uname` counts as "not Occlum".
pub fn is_occlum() -> bool {
    sys::uname_sysname().is_ok_and(|name| name == OCCLUM_SYSNAME)
}

/// Runtime-boot parameters for `SYS_MOUNT_FS` (Occlum's `user_rootfs_config`).
///
/// Occlum's own init passes none (`NULL`), which mounts the rootfs described by
/// `Occlum.json`; that is what the init RA flow needs. These fields serve Occlum's
/// "runtime boot" mode, where init picks the image layers at run time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RootfsConfig {
    /// UnionFS upper (read-write) layer; replaces the container SEFS source.
    pub upper_layer: Option<PathBuf>,
    /// UnionFS lower (read-only, image) layer; replaces the image SEFS source.
    pub lower_layer: Option<PathBuf>,
    /// Entry point directory for the app.
    pub entry_point: Option<PathBuf>,
    /// Host directory to mount as HostFS.
    pub hostfs_source: Option<PathBuf>,
    /// Where HostFS is mounted; Occlum defaults to `/host`.
    pub hostfs_target: Option<PathBuf>,
    /// `NAME=value` entries. Non-empty: they become the trusted environment, merged with
    /// `Occlum.json`'s `env.default` (these win). Empty: Occlum's defaults stay.
    pub envs: Vec<String>,
}

impl fmt::Debug for RootfsConfig {
    /// Environment values may be secret: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self
            .envs
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
            .collect();
        f.debug_struct("RootfsConfig")
            .field("upper_layer", &self.upper_layer)
            .field("lower_layer", &self.lower_layer)
            .field("entry_point", &self.entry_point)
            .field("hostfs_source", &self.hostfs_source)
            .field("hostfs_target", &self.hostfs_target)
            .field("env_names", &env_names)
            .finish()
    }
}

/// Why the rootfs was not mounted.
#[derive(Debug)]
#[non_exhaustive]
pub enum MountError {
    /// Not running inside Occlum (by [`is_occlum`]); syscall 363 was not made.
    NotOcclum,
    /// `EPERM`: `SYS_MOUNT_FS` is callable once per enclave and the rootfs is already
    /// mounted. (Occlum marks it mounted as soon as the new root is opened, so a failure
    /// after that point also leaves later calls with `EPERM`.)
    AlreadyMounted,
    /// A config field cannot be passed as a C string.
    InvalidConfig {
        field: &'static str,
        detail: &'static str,
    },
    /// Occlum refused the mount (a wrong key or a corrupt image shows up here).
    Failed { source: io::Error },
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOcclum => {
                f.write_str("mount rootfs: not running inside Occlum; syscall 363 was not made")
            }
            Self::AlreadyMounted => f.write_str(
                "mount rootfs: already mounted (SYS_MOUNT_FS is callable once per enclave, EPERM)",
            ),
            Self::InvalidConfig { field, detail } => {
                write!(f, "mount rootfs: invalid config field {field}: {detail}")
            }
            Self::Failed { source } => write!(f, "mount rootfs: SYS_MOUNT_FS failed: {source}"),
        }
    }
}

impl std::error::Error for MountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed { source } => Some(source),
            _ => None,
        }
    }
}

/// Mounts Occlum's rootfs (`SYS_MOUNT_FS`), unlocking it with `key` when the image is
/// encrypted (`None` for an integrity-only image). `config` is `None` for the rootfs of
/// `Occlum.json`, as Occlum's own init does.
///
/// Callable once per enclave. The key is only read by the LibOS; the caller keeps (and
/// zeroizes) it.
pub fn mount_rootfs(
    key: Option<&[u8; 16]>,
    config: Option<&RootfsConfig>,
) -> Result<(), MountError> {
    let config = config.map(to_c_config).transpose()?;
    if !is_occlum() {
        return Err(MountError::NotOcclum);
    }
    sys::mount_fs(key, config.as_ref()).map_err(|source| match source.raw_os_error() {
        Some(libc::EPERM) => MountError::AlreadyMounted,
        _ => MountError::Failed { source },
    })
}

/// Converts to owned C strings, refusing interior NULs and env entries without `=`.
fn to_c_config(config: &RootfsConfig) -> Result<sys::UserRootfsConfig, MountError> {
    let path = |field: &'static str, p: &Option<PathBuf>| -> Result<Option<CString>, MountError> {
        p.as_deref().map(|p| c_path(field, p)).transpose()
    };
    let envs = config
        .envs
        .iter()
        .map(|e| {
            if !e.contains('=') {
                return Err(MountError::InvalidConfig {
                    field: "envs",
                    detail: "entry without '='",
                });
            }
            CString::new(e.as_bytes()).map_err(|_| MountError::InvalidConfig {
                field: "envs",
                detail: "contains a NUL byte",
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sys::UserRootfsConfig {
        upper_layer_path: path("upper_layer", &config.upper_layer)?,
        lower_layer_path: path("lower_layer", &config.lower_layer)?,
        entry_point: path("entry_point", &config.entry_point)?,
        hostfs_source: path("hostfs_source", &config.hostfs_source)?,
        hostfs_target: path("hostfs_target", &config.hostfs_target)?,
        envs,
    })
}

fn c_path(field: &'static str, path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::InvalidConfig {
        field,
        detail: "contains a NUL byte",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_host_is_not_occlum() {
        assert!(!is_occlum());
    }

    #[test]
    fn mounting_outside_occlum_refuses_without_making_the_syscall() {
        let key = [0x11; 16];
        assert!(matches!(
            mount_rootfs(Some(&key), None),
            Err(MountError::NotOcclum)
        ));
        assert!(matches!(
            mount_rootfs(None, None),
            Err(MountError::NotOcclum)
        ));
        let cfg = RootfsConfig {
            lower_layer: Some("/lower".into()),
            ..RootfsConfig::default()
        };
        let err = mount_rootfs(None, Some(&cfg)).unwrap_err();
        assert!(matches!(err, MountError::NotOcclum));
        assert!(err.to_string().contains("syscall 363 was not made"));
    }

    #[test]
    fn a_path_with_a_nul_byte_is_refused() {
        let cfg = RootfsConfig {
            upper_layer: Some("/up\0per".into()),
            ..RootfsConfig::default()
        };
        assert!(matches!(
            mount_rootfs(None, Some(&cfg)),
            Err(MountError::InvalidConfig {
                field: "upper_layer",
                ..
            })
        ));
    }

    #[test]
    fn an_env_entry_without_equals_or_with_a_nul_is_refused() {
        let cfg = RootfsConfig {
            envs: vec!["NOVALUE".into()],
            ..RootfsConfig::default()
        };
        assert!(matches!(
            to_c_config(&cfg),
            Err(MountError::InvalidConfig { field: "envs", .. })
        ));
        let cfg = RootfsConfig {
            envs: vec!["A=b\0c".into()],
            ..RootfsConfig::default()
        };
        assert!(matches!(
            to_c_config(&cfg),
            Err(MountError::InvalidConfig { field: "envs", .. })
        ));
    }

    #[test]
    fn a_config_converts_field_by_field() {
        let cfg = RootfsConfig {
            upper_layer: Some("/u".into()),
            lower_layer: Some("/l".into()),
            entry_point: Some("/bin".into()),
            hostfs_source: Some("/tmp".into()),
            hostfs_target: None,
            envs: vec!["A=1".into(), "B=x=y".into()],
        };
        let c = to_c_config(&cfg).unwrap();
        assert_eq!(c.upper_layer_path.as_deref(), Some(c"/u"));
        assert_eq!(c.lower_layer_path.as_deref(), Some(c"/l"));
        assert_eq!(c.entry_point.as_deref(), Some(c"/bin"));
        assert_eq!(c.hostfs_source.as_deref(), Some(c"/tmp"));
        assert_eq!(c.hostfs_target, None);
        assert_eq!(c.envs, [c"A=1".to_owned(), c"B=x=y".to_owned()]);
    }

    #[test]
    fn debug_output_shows_env_names_but_not_values() {
        let cfg = RootfsConfig {
            envs: vec!["TOKEN=hunter2".into()],
            ..RootfsConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(text.contains("TOKEN"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_second_call_error_says_it_is_callable_once() {
        let text = MountError::AlreadyMounted.to_string();
        assert!(text.contains("callable once"), "{text}");
    }
}
