//! The two modes: each builds a [`Platform`] (quote source, trust anchor, mounter) and a hand
//! over; everything between is [`boot::boot`].
//!
//! - Occlum: `/dev/sgx` quotes, Intel's root, `SYS_MOUNT_FS`, exit 0. Written against Occlum's
//!   source (`tools/init_grpc_ratls/src/main.rs`, `src/libos/src/fs/syscalls.rs`); it cannot
//!   run on a machine without SGX and Occlum, so it is untested here beyond what `occlum-dcap`'s
//!   tests pin.
//! - Host: `sgx-sim` quotes, the simulated root (loudly), the sealed image unpacked to a
//!   private directory, then exec of the app.

#[cfg(feature = "simulation")]
use std::ffi::{OsStr, OsString};
#[cfg(feature = "simulation")]
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
#[cfg(feature = "simulation")]
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use occlum_dcap::OcclumDevice;
use ratls::verify::TrustAnchor;
#[cfg(feature = "simulation")]
use sgx_sim::{Identity, SimPlatform, SimQuoteSource};

use crate::boot::{self, BootConfig, Mounted, Mounter, Platform};
use crate::cli::HostArgs;
#[cfg(feature = "host-tools")]
use crate::cli::PackArgs;
#[cfg(feature = "simulation")]
use crate::config::CollateralChoice;
use crate::config::{self, ImageType, Overrides};
use crate::error::{InitError, Stage};
#[cfg(feature = "host-tools")]
use crate::image::{self, Seal};
use crate::image_key::ImageKey;
use crate::steplog::StepLog;
#[cfg(feature = "host-tools")]
use crate::steplog::timed;

/// Largest image_key file `pack-image` reads.
#[cfg(feature = "host-tools")]
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Occlum mode: boot, then exit 0 so the LibOS starts the app from the new rootfs.
pub fn occlum(log: &StepLog) -> Result<(), InitError> {
    let initfs = Path::new("/");
    let config = load_config(initfs, &Overrides::from_env(), log)?;
    let device = OcclumDevice::open()
        .map_err(|e| InitError::new(Stage::Quote, "opening Occlum's /dev/sgx", e))?;
    let platform = Platform {
        quotes: Box::new(device),
        anchor: TrustAnchor::intel(),
        default_collateral: None,
        mounter: Box::new(OcclumMount),
    };
    boot::boot(platform, config, log)?;
    log.step(
        "handover",
        Duration::ZERO,
        format_args!("exit 0: Occlum starts the app from the mounted rootfs"),
    );
    Ok(())
}

/// Host mode without the `simulation` feature: [`crate::cli`] never produces it; fail closed.
#[cfg(not(feature = "simulation"))]
pub fn host(_: HostArgs, _: &StepLog) -> Result<(), InitError> {
    Err(InitError::msg(
        Stage::Usage,
        "init host: this init was built without the `simulation` feature",
    ))
}

/// Host mode: boot on the simulated platform, then exec the app (or exit 0 without one).
#[cfg(feature = "simulation")]
pub fn host(args: HostArgs, log: &StepLog) -> Result<(), InitError> {
    let mut overrides = Overrides::from_env();
    if let Some(addr) = args.kms_server {
        overrides.kms_server = Some((addr, "--kms-server".into()));
    }
    if let Some(url) = args.pccs_url {
        overrides.pccs_url = Some((url, "--pccs-url".into()));
    }
    overrides.collateral_file = args.collateral;
    overrides.connect_deadline = args.connect_deadline;
    let config = load_config(&args.config_dir, &overrides, log)?;

    let platform = SimPlatform::open(&args.sim_platform)
        .map_err(|e| InitError::new(Stage::Quote, "opening the simulated platform", e))?;
    let identity = Identity::load(&args.sim_identity)
        .map_err(|e| InitError::new(Stage::Quote, "loading the simulated enclave identity", e))?;
    let anchor = ratls::danger::simulated_root(
        platform.root_ca_der().to_vec(),
        format!("SIMULATED root CA of {}", args.sim_platform.display()),
    );
    let default_collateral = Some(CollateralChoice::File {
        path: args.sim_platform.join(sgx_sim::files::COLLATERAL_JSON),
        origin: "--sim-platform (its own collateral)".into(),
    });
    let platform = Platform {
        quotes: Box::new(SimQuoteSource::new(platform, identity)),
        anchor,
        default_collateral,
        mounter: Box::new(HostImage {
            image: args.image,
            rootfs: args.rootfs,
        }),
    };
    if occlum_dcap::is_occlum() {
        // The CLI refuses `host` inside Occlum; this is the second lock on the same door.
        return Err(InitError::msg(
            Stage::Usage,
            "init host is refused inside Occlum: a simulated root would let the host forge the KMS",
        ));
    }
    let mounted = boot::boot(platform, config, log)?;
    handover(&mounted.root, args.app, log)
}

/// `pack-image`: seals a directory into a host-mode image.
#[cfg(feature = "host-tools")]
pub fn pack_image(args: PackArgs, log: &StepLog) -> Result<(), InitError> {
    let key = match &args.key_file {
        Some(path) => Some(read_key_file(path)?),
        None => None,
    };
    let seal = key
        .as_ref()
        .map_or(Seal::IntegrityOnly, |k| Seal::Encrypted(k.bytes()));
    timed(
        log,
        "pack",
        || {
            image::pack(seal, &args.input, &args.output)
                .map_err(|e| InitError::new(Stage::Pack, "packing the image", e))
        },
        |n| {
            format!(
                "{n} entries from {} sealed into {} ({seal:?})",
                args.input.display(),
                args.output.display()
            )
        },
    )
    .map(drop)
}

/// Loads both config files from the initfs at `initfs`.
fn load_config(
    initfs: &Path,
    overrides: &Overrides,
    log: &StepLog,
) -> Result<BootConfig, InitError> {
    let started = Instant::now();
    let conf = config::load_init_ra_conf(initfs, overrides)
        .map_err(|e| InitError::new(Stage::Config, "configuration", e))?;
    let image_type = config::load_image_type(initfs)
        .map_err(|e| InitError::new(Stage::Config, "configuration", e))?;
    log.step(
        "config",
        started.elapsed(),
        format_args!(
            "{} secrets + {} image, KMS {} (from {}), connect deadline {} s",
            conf.kms_keys.len(),
            match image_type {
                ImageType::Encrypted => "encrypted",
                ImageType::IntegrityOnly => "integrity-only",
            },
            kms_list(&conf.kms_servers),
            conf.kms_servers.first().map_or("", |a| a.origin.as_str()),
            conf.connect_deadline.as_secs()
        ),
    );
    for warning in &conf.warnings {
        log.note(format_args!("warning: {warning}"));
    }
    Ok(BootConfig {
        initfs: initfs.to_owned(),
        conf,
        image_type,
    })
}

/// The KMS addresses for the log: `a:1` or `a:1, b:2 (2 addresses, tried in this order)`.
fn kms_list(servers: &[config::KmsAddress]) -> String {
    let list: Vec<&str> = servers.iter().map(|a| a.addr.as_str()).collect();
    match list.len() {
        1 => list.join(""),
        n => format!("{} ({n} addresses, tried in this order)", list.join(", ")),
    }
}

/// Occlum's `SYS_MOUNT_FS`: mounts the rootfs of `Occlum.json`, as Occlum's own init does.
struct OcclumMount;

impl Mounter for OcclumMount {
    fn mount(
        &mut self,
        image_type: ImageType,
        key: Option<&ImageKey>,
    ) -> Result<Mounted, InitError> {
        occlum_dcap::mount_rootfs(key.map(ImageKey::bytes), None)
            .map_err(|e| InitError::new(Stage::Mount, "mounting the rootfs", e))?;
        let how = match image_type {
            ImageType::Encrypted => "encrypted rootfs unlocked with image_key",
            ImageType::IntegrityOnly => "integrity-only rootfs",
        };
        Ok(Mounted {
            root: PathBuf::from("/"),
            detail: format!("SYS_MOUNT_FS: {how}"),
        })
    }
}

/// Host mode's "mount": unpack the sealed image into the rootfs directory.
#[cfg(feature = "simulation")]
struct HostImage {
    image: PathBuf,
    rootfs: PathBuf,
}

#[cfg(feature = "simulation")]
impl Mounter for HostImage {
    fn mount(
        &mut self,
        image_type: ImageType,
        key: Option<&ImageKey>,
    ) -> Result<Mounted, InitError> {
        let seal = match (image_type, key) {
            (ImageType::Encrypted, Some(key)) => Seal::Encrypted(key.bytes()),
            (ImageType::IntegrityOnly, None) => Seal::IntegrityOnly,
            _ => {
                return Err(InitError::msg(
                    Stage::Internal,
                    "image type and image_key disagree",
                ));
            }
        };
        let report = image::unpack(seal, &self.image, &self.rootfs).map_err(|e| {
            InitError::new(
                Stage::Mount,
                format!("opening the rootfs image {}", self.image.display()),
                e,
            )
        })?;
        let root = std::fs::canonicalize(&self.rootfs).unwrap_or_else(|_| self.rootfs.clone());
        Ok(Mounted {
            detail: format!(
                "image {} authenticated and unpacked to {}: {} files, {} dirs, {} symlinks, {} bytes",
                self.image.display(),
                root.display(),
                report.files,
                report.dirs,
                report.symlinks,
                report.bytes
            ),
            root,
        })
    }
}

/// Starts the app in place of init, or returns (exit 0) when there is none.
#[cfg(feature = "simulation")]
fn handover(root: &Path, app: Vec<OsString>, log: &StepLog) -> Result<(), InitError> {
    let mut words = app
        .into_iter()
        .map(|w| substitute_rootfs(&w, root.as_os_str()));
    let Some(program) = words.next() else {
        log.step(
            "handover",
            Duration::ZERO,
            format_args!("no app given: exit 0"),
        );
        return Ok(());
    };
    log.step(
        "handover",
        Duration::ZERO,
        format_args!("exec {}", Path::new(&program).display()),
    );
    let error = std::process::Command::new(&program).args(words).exec();
    Err(InitError::new(
        Stage::Handover,
        format!("starting the app {}", Path::new(&program).display()),
        error,
    ))
}

/// Replaces every `{rootfs}` in `word` with `root`.
#[cfg(feature = "simulation")]
fn substitute_rootfs(word: &OsStr, root: &OsStr) -> OsString {
    const PLACEHOLDER: &[u8] = b"{rootfs}";
    let mut out = Vec::with_capacity(word.len());
    let mut rest = word.as_bytes();
    while let Some(at) = rest
        .windows(PLACEHOLDER.len())
        .position(|w| w == PLACEHOLDER)
    {
        let (before, after) = rest.split_at(at);
        out.extend_from_slice(before);
        out.extend_from_slice(root.as_bytes());
        rest = after.get(PLACEHOLDER.len()..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    OsString::from_vec(out)
}

#[cfg(feature = "host-tools")]
fn read_key_file(path: &Path) -> Result<ImageKey, InitError> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| {
        InitError::new(
            Stage::Pack,
            format!("reading image_key file {}", path.display()),
            e,
        )
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(fail)?;
    ImageKey::parse(&text)
        .map_err(|e| InitError::new(Stage::Pack, format!("image_key file {}", path.display()), e))
}

#[cfg(all(test, feature = "simulation"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_placeholder_is_replaced_everywhere() {
        let root = OsStr::new("/tmp/r");
        assert_eq!(
            substitute_rootfs(OsStr::new("{rootfs}/bin/app"), root),
            "/tmp/r/bin/app"
        );
        assert_eq!(
            substitute_rootfs(OsStr::new("--a={rootfs},{rootfs}"), root),
            "--a=/tmp/r,/tmp/r"
        );
        assert_eq!(
            substitute_rootfs(OsStr::new("plain {root}"), root),
            "plain {root}"
        );
    }
}
