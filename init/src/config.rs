//! init's configuration files, parsed in two stages: tolerant serde structs for Occlum's
//! formats (an unchanged Occlum template keeps working, unknown fields are warnings), then
//! validated types built once at startup, whose errors name the file and the field.
//!
//! `/etc/init_ra_conf.json`:
//!
//! | field | meaning |
//! |---|---|
//! | `kms_server` | `host:port` of the KMS (Occlum's field); env `OCCLUM_INIT_RA_KMS_SERVER` overrides it |
//! | `kms_servers` (ours) | more `host:port` addresses of the same KMS (its replicas), tried after `kms_server` |
//! | `kms_keys` | `[{key, path}]`: secret names to fetch and where to write them (absolute, in the rootfs) |
//! | `ra_config` | the policy the KMS enclave must satisfy (`ratls::policy`) |
//! | `pccs_url` (ours) | PCCS base URL for DCAP collateral; env `OCCLUM_INIT_RA_PCCS_URL` overrides it |
//! | `collateral_file` (ours) | a collateral JSON file in the initfs, instead of a PCCS |
//! | `connect_deadline_secs` (ours) | how long to keep retrying the KMS connection (also a new one after a connection that failed before every secret arrived), default 30 |
//!
//! `/etc/image_config.json`: `{"image_type": "encrypted" | "integrity-only"}`.
//!
//! Several KMS addresses: the list init tries is `kms_server` first, then `kms_servers` in
//! order (an address given twice is tried once); either field alone is enough. Both together
//! are accepted rather than refused so that Occlum's template, whose `kms_server` an image
//! build keeps, gains replicas by adding one field. `OCCLUM_INIT_RA_KMS_SERVER` (and host
//! mode's `--kms-server`) take one address or a comma-separated list and replace both fields.
//! Every address a name resolves to is a candidate of its own (`kms`'s failover). The
//! addresses choose availability only: every KMS is attested against `ra_config` all the same.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ratls::policy::{PolicyError, RaPolicy};
use serde::Deserialize;

use crate::fsutil;

/// Where Occlum's init finds its RA configuration.
pub const INIT_RA_CONF: &str = "etc/init_ra_conf.json";
/// Where Occlum's init finds the image type.
pub const IMAGE_CONFIG: &str = "etc/image_config.json";
/// Intel's quote-provider configuration, read for its PCCS URL when the config names none.
pub const QCNL_CONF: &str = "etc/sgx_default_qcnl.conf";
/// Env var that overrides `kms_server` and `kms_servers` (Occlum's name; ours also takes a
/// comma-separated list).
pub const ENV_KMS_SERVER: &str = "OCCLUM_INIT_RA_KMS_SERVER";
/// Env var that overrides `pccs_url`.
pub const ENV_PCCS_URL: &str = "OCCLUM_INIT_RA_PCCS_URL";
/// Largest configuration file read.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;
/// Most KMS addresses (`kms_server` plus `kms_servers`, or an override's list).
pub const MAX_KMS_SERVERS: usize = 16;
/// Most `kms_keys` entries.
pub const MAX_KMS_KEYS: usize = 256;
/// Longest secret name (the KMS's limit).
pub const MAX_SECRET_NAME_LEN: usize = 1024;
/// Default for `connect_deadline_secs`.
pub const DEFAULT_CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Largest `connect_deadline_secs`.
pub const MAX_CONNECT_DEADLINE_SECS: u64 = 3600;
/// The secret that unlocks an encrypted rootfs (Occlum's name).
pub const IMAGE_KEY_SECRET: &str = "image_key";

/// `init_ra_conf.json` as written, tolerant of fields it does not know.
#[derive(Deserialize)]
struct RawInitRaConf {
    kms_server: Option<String>,
    kms_servers: Option<Vec<String>>,
    kms_keys: Vec<RawKmsKey>,
    ra_config: serde_json::Value,
    pccs_url: Option<String>,
    collateral_file: Option<String>,
    connect_deadline_secs: Option<u64>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKmsKey {
    key: String,
    path: String,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawImageConfig {
    image_type: String,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// The validated `init_ra_conf.json`.
#[derive(Debug)]
pub struct InitRaConf {
    /// The KMS's addresses in the order they are tried (at least one), after the env
    /// override: `kms_server`, then `kms_servers`.
    pub kms_servers: Vec<KmsAddress>,
    /// Secrets to fetch and write.
    pub kms_keys: Vec<KmsKey>,
    /// The policy the KMS must satisfy.
    pub policy: RaPolicy,
    /// Where DCAP collateral comes from, if the file says.
    pub collateral: Option<CollateralChoice>,
    /// How long to keep retrying the connection.
    pub connect_deadline: Duration,
    /// Things that load but are probably not what was meant.
    pub warnings: Vec<String>,
}

/// A KMS address, `host:port`, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsAddress {
    /// `host:port` as given.
    pub addr: String,
    /// The host part (brackets removed from IPv6 literals), for TLS's server name.
    pub host: String,
    /// `init_ra_conf.json`, the env var, or a flag.
    pub origin: String,
}

/// One `kms_keys` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// The secret's name at the KMS.
    pub name: String,
    /// Where it goes, relative to the rootfs root.
    pub path: PathBuf,
}

/// Where DCAP collateral comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollateralChoice {
    /// A PCCS (or Intel's PCS) at this base URL.
    Pccs { url: String, origin: String },
    /// A collateral file.
    File { path: PathBuf, origin: String },
}

/// What `image_config.json` says about the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// Encrypted: `image_key` is fetched from the KMS.
    Encrypted,
    /// Integrity-only: no key.
    IntegrityOnly,
}

/// Why a configuration file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_LEN`].
    TooLarge { path: PathBuf },
    /// Not JSON of the expected shape (serde's message has line and column).
    Json { path: PathBuf, detail: String },
    /// A field is invalid.
    Field {
        path: PathBuf,
        field: String,
        detail: String,
    },
    /// An overriding env var or flag is invalid.
    Override { origin: String, detail: String },
    /// `ra_config` is not a valid policy.
    Policy(PolicyError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            Self::TooLarge { path } => write!(
                f,
                "{} is larger than {MAX_CONFIG_LEN} bytes",
                path.display()
            ),
            Self::Json { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::Field {
                path,
                field,
                detail,
            } => write!(f, "{}: {field}: {detail}", path.display()),
            Self::Override { origin, detail } => write!(f, "{origin}: {detail}"),
            Self::Policy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Policy(e) => Some(e),
            _ => None,
        }
    }
}

/// Environment inputs of the configuration (passed in, so tests do not touch the process env).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `host:port` (or a comma-separated list of them) from a flag or [`ENV_KMS_SERVER`], with
    /// its origin.
    pub kms_server: Option<(String, String)>,
    /// A PCCS URL from [`ENV_PCCS_URL`] or a flag, with its origin.
    pub pccs_url: Option<(String, String)>,
    /// A collateral file from a flag.
    pub collateral_file: Option<PathBuf>,
    /// A connect deadline from a flag.
    pub connect_deadline: Option<Duration>,
}

impl Overrides {
    /// The env vars Occlum's init honours, plus ours.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().map(|v| (v, format!("env {name}")));
        Self {
            kms_server: var(ENV_KMS_SERVER),
            pccs_url: var(ENV_PCCS_URL),
            ..Self::default()
        }
    }
}

/// Reads and validates `root/etc/init_ra_conf.json` (`root` is the initfs: `/` in Occlum).
pub fn load_init_ra_conf(root: &Path, overrides: &Overrides) -> Result<InitRaConf, ConfigError> {
    let path = root.join(INIT_RA_CONF);
    let bytes = read_bounded(&path)?;
    parse_init_ra_conf(&bytes, &path, root, overrides)
}

/// Reads `root/etc/image_config.json`.
pub fn load_image_type(root: &Path) -> Result<ImageType, ConfigError> {
    let path = root.join(IMAGE_CONFIG);
    let bytes = read_bounded(&path)?;
    parse_image_config(&bytes, &path)
}

/// Validates `init_ra_conf.json`'s bytes; `path` is for messages, `root` resolves
/// `collateral_file`.
pub fn parse_init_ra_conf(
    bytes: &[u8],
    path: &Path,
    root: &Path,
    overrides: &Overrides,
) -> Result<InitRaConf, ConfigError> {
    // cJSON (Occlum's init) keeps the first of two equal keys and serde_json the last: a file
    // that names the KMS's policy must not mean two things, at any depth (ra_config included).
    ratls::policy::reject_duplicate_keys(bytes).map_err(|e| ConfigError::Json {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let raw: RawInitRaConf = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let field = |field: &str, detail: String| ConfigError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        detail,
    };
    let mut warnings: Vec<String> = raw
        .unknown
        .keys()
        .map(|k| format!("{}: unknown field {k:?} ignored", path.display()))
        .collect();

    let kms_servers = kms_servers(&raw, path, overrides, &mut warnings)?;

    if raw.kms_keys.len() > MAX_KMS_KEYS {
        return Err(field(
            "kms_keys",
            format!("{} entries, at most {MAX_KMS_KEYS}", raw.kms_keys.len()),
        ));
    }
    let mut kms_keys: Vec<KmsKey> = Vec::with_capacity(raw.kms_keys.len());
    for (i, entry) in raw.kms_keys.iter().enumerate() {
        let key = validate_key_entry(entry)
            .map_err(|(name, d)| field(&format!("kms_keys[{i}].{name}"), d))?;
        if let Some(first) = kms_keys.iter().position(|k| k.path == key.path) {
            return Err(field(
                &format!("kms_keys[{i}].path"),
                format!("{:?} is already the path of kms_keys[{first}]", entry.path),
            ));
        }
        warnings.extend(entry.unknown.keys().map(|k| {
            format!(
                "{}: kms_keys[{i}]: unknown field {k:?} ignored",
                path.display()
            )
        }));
        kms_keys.push(key);
    }

    let policy = RaPolicy::from_value(&raw.ra_config, &format!("{} ra_config", path.display()))
        .map_err(ConfigError::Policy)?;
    warnings.extend(policy.warnings().iter().cloned());

    let collateral = collateral_choice(&raw, path, root, overrides)?;

    let connect_deadline = match (overrides.connect_deadline, raw.connect_deadline_secs) {
        (Some(deadline), _) => deadline,
        (None, Some(secs)) if (1..=MAX_CONNECT_DEADLINE_SECS).contains(&secs) => {
            Duration::from_secs(secs)
        }
        (None, Some(secs)) => {
            return Err(field(
                "connect_deadline_secs",
                format!("{secs} is outside 1..={MAX_CONNECT_DEADLINE_SECS}"),
            ));
        }
        (None, None) => DEFAULT_CONNECT_DEADLINE,
    };

    Ok(InitRaConf {
        kms_servers,
        kms_keys,
        policy,
        collateral,
        connect_deadline,
        warnings,
    })
}

/// Validates `image_config.json`'s bytes.
pub fn parse_image_config(bytes: &[u8], path: &Path) -> Result<ImageType, ConfigError> {
    let raw: RawImageConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if let Some(unknown) = raw.unknown.keys().next() {
        // Occlum's own init refuses unknown fields here (deny_unknown_fields); so do we.
        return Err(ConfigError::Field {
            path: path.to_owned(),
            field: unknown.clone(),
            detail: "unknown field".into(),
        });
    }
    match raw.image_type.as_str() {
        "encrypted" => Ok(ImageType::Encrypted),
        "integrity-only" => Ok(ImageType::IntegrityOnly),
        other => Err(ConfigError::Field {
            path: path.to_owned(),
            field: "image_type".into(),
            detail: format!("{other:?} is neither \"encrypted\" nor \"integrity-only\""),
        }),
    }
}

/// The KMS addresses in the order they are tried: the override's list if there is one, else
/// `kms_server` then `kms_servers` (see the module documentation), each validated, without
/// repeats, at most [`MAX_KMS_SERVERS`].
fn kms_servers(
    raw: &RawInitRaConf,
    path: &Path,
    overrides: &Overrides,
    warnings: &mut Vec<String>,
) -> Result<Vec<KmsAddress>, ConfigError> {
    let file = path.display().to_string();
    let field = |field: String, detail: String| ConfigError::Field {
        path: path.to_owned(),
        field,
        detail,
    };
    let mut out: Vec<KmsAddress> = Vec::new();
    let mut push = |address: KmsAddress, warnings: &mut Vec<String>| {
        if let Some(first) = out.iter().find(|a| a.addr == address.addr) {
            warnings.push(format!(
                "{}: {:?} is already listed ({}); tried once",
                address.origin, address.addr, first.origin
            ));
        } else {
            out.push(address);
        }
    };
    if let Some((list, origin)) = &overrides.kms_server {
        let refuse = |detail: String| ConfigError::Override {
            origin: origin.clone(),
            detail,
        };
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.len() > MAX_KMS_SERVERS {
            return Err(refuse(format!(
                "{} addresses, at most {MAX_KMS_SERVERS}",
                entries.len()
            )));
        }
        for (i, entry) in entries.iter().enumerate() {
            if entry.is_empty() {
                return Err(refuse(format!(
                    "{list:?}: address {} of {} is empty (separate host:port addresses with single commas)",
                    i + 1,
                    entries.len()
                )));
            }
            let origin = if entries.len() == 1 {
                origin.clone()
            } else {
                format!("{origin} [{i}]")
            };
            push(parse_address(entry, &origin).map_err(refuse)?, warnings);
        }
        return Ok(out);
    }
    let listed = raw.kms_servers.as_deref().unwrap_or_default();
    if raw.kms_server.is_none() && listed.is_empty() {
        return Err(field(
            "kms_server".into(),
            "missing: name the KMS as \"host:port\" in kms_server (or list its replicas in kms_servers), or set OCCLUM_INIT_RA_KMS_SERVER"
                .into(),
        ));
    }
    if raw.kms_servers.is_some() && listed.is_empty() {
        return Err(field(
            "kms_servers".into(),
            "empty list: list at least one \"host:port\" or leave the field out".into(),
        ));
    }
    let total = listed.len() + usize::from(raw.kms_server.is_some());
    if total > MAX_KMS_SERVERS {
        return Err(field(
            "kms_servers".into(),
            format!("{total} addresses with kms_server, at most {MAX_KMS_SERVERS}"),
        ));
    }
    if let Some(addr) = &raw.kms_server {
        let address = parse_address(addr, &format!("{file} kms_server"))
            .map_err(|d| field("kms_server".into(), d))?;
        push(address, warnings);
    }
    for (i, addr) in listed.iter().enumerate() {
        let name = format!("kms_servers[{i}]");
        let address = parse_address(addr, &format!("{file} {name}")).map_err(|d| field(name, d))?;
        push(address, warnings);
    }
    Ok(out)
}

/// Splits and checks `host:port` (`[v6]:port` for IPv6 literals).
fn parse_address(addr: &str, origin: &str) -> Result<KmsAddress, String> {
    let bad = |why: &str| format!("{addr:?} is not host:port ({why})");
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port is not a number 1..=65535"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(|| bad("unclosed ["))?,
        None if host.contains(':') => return Err(bad("IPv6 addresses need brackets, [::1]:port")),
        None => host,
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(bad("empty or malformed host"));
    }
    Ok(KmsAddress {
        addr: addr.to_owned(),
        host: host.to_owned(),
        origin: origin.to_owned(),
    })
}

fn validate_key_entry(entry: &RawKmsKey) -> Result<KmsKey, (&'static str, String)> {
    let name = &entry.key;
    if name.is_empty() || name.len() > MAX_SECRET_NAME_LEN || name.chars().any(char::is_control) {
        return Err((
            "key",
            format!("must be 1..={MAX_SECRET_NAME_LEN} bytes without control characters"),
        ));
    }
    let path = secret_path(&entry.path).map_err(|d| ("path", d))?;
    Ok(KmsKey {
        name: name.clone(),
        path,
    })
}

/// A secret's path from the config (`/etc/flask.key`), relative to the rootfs root.
fn secret_path(text: &str) -> Result<PathBuf, String> {
    if text.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let relative = fsutil::relative_path(Path::new(text.trim_start_matches('/')))
        .map_err(|e| format!("{text:?}: {e}"))?;
    let path = relative.ok_or_else(|| format!("{text:?} names no file"))?;
    if text.ends_with('/') {
        return Err(format!("{text:?} names a directory"));
    }
    Ok(path)
}

fn collateral_choice(
    raw: &RawInitRaConf,
    path: &Path,
    root: &Path,
    overrides: &Overrides,
) -> Result<Option<CollateralChoice>, ConfigError> {
    let check_url = |url: &str, origin: &str| -> Result<CollateralChoice, String> {
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(CollateralChoice::Pccs {
                url: url.to_owned(),
                origin: origin.to_owned(),
            })
        } else {
            Err(format!("{url:?} is not an http(s) URL"))
        }
    };
    if let Some(file) = &overrides.collateral_file {
        return Ok(Some(CollateralChoice::File {
            path: file.clone(),
            origin: "--collateral".into(),
        }));
    }
    if let Some((url, origin)) = &overrides.pccs_url {
        return check_url(url, origin)
            .map(Some)
            .map_err(|detail| ConfigError::Override {
                origin: origin.clone(),
                detail,
            });
    }
    let field = |field: &str, detail: String| ConfigError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        detail,
    };
    match (&raw.pccs_url, &raw.collateral_file) {
        (Some(_), Some(_)) => Err(field(
            "pccs_url",
            "set pccs_url or collateral_file, not both".into(),
        )),
        (Some(url), None) => check_url(url, "init_ra_conf.json pccs_url")
            .map(Some)
            .map_err(|d| field("pccs_url", d)),
        (None, Some(file)) => {
            let relative = secret_path(file).map_err(|d| field("collateral_file", d))?;
            Ok(Some(CollateralChoice::File {
                path: root.join(relative),
                origin: "init_ra_conf.json collateral_file".into(),
            }))
        }
        (None, None) => Ok(None),
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = fileio::read_bounded(path, MAX_CONFIG_LEN).map_err(|e| match e {
        fileio::ReadError::Open(source) | fileio::ReadError::Read(source) => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
        fileio::ReadError::TooLarge { .. } => ConfigError::TooLarge {
            path: path.to_owned(),
        },
    })?;
    // Configuration is not secret: a plain buffer, as before.
    Ok(std::mem::take(&mut *bytes))
}

/// Reads a small text file such as `sgx_default_qcnl.conf`; `None` if absent.
pub fn read_optional_text(path: &Path) -> Result<Option<String>, ConfigError> {
    match read_bounded(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Occlum's `etc/template/init_grpc_ratls.json`, copied unchanged (see testdata/README.md).
    const OCCLUM_TEMPLATE: &[u8] = include_bytes!("../testdata/occlum/init_grpc_ratls.json");

    fn parse(json: &str) -> Result<InitRaConf, ConfigError> {
        parse_init_ra_conf(
            json.as_bytes(),
            Path::new("init_ra_conf.json"),
            Path::new("/initfs"),
            &Overrides::default(),
        )
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<InitRaConf, ConfigError> {
        let mut value: serde_json::Value = serde_json::from_slice(OCCLUM_TEMPLATE).unwrap();
        edit(&mut value);
        parse(&value.to_string())
    }

    fn addrs(conf: &InitRaConf) -> Vec<&str> {
        conf.kms_servers.iter().map(|a| a.addr.as_str()).collect()
    }

    fn with_override(list: &str) -> Result<InitRaConf, ConfigError> {
        let mut value: serde_json::Value = serde_json::from_slice(OCCLUM_TEMPLATE).unwrap();
        value["kms_servers"] = serde_json::json!(["file-b:2"]);
        let overrides = Overrides {
            kms_server: Some((list.into(), "env X".into())),
            ..Overrides::default()
        };
        parse_init_ra_conf(
            value.to_string().as_bytes(),
            Path::new("t"),
            Path::new("/"),
            &overrides,
        )
    }

    fn field_of(err: ConfigError) -> String {
        match err {
            ConfigError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn occlums_template_parses_unchanged() {
        let conf = parse_init_ra_conf(
            OCCLUM_TEMPLATE,
            Path::new("t"),
            Path::new("/"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(addrs(&conf), ["localhost:50051"]);
        assert_eq!(conf.kms_servers[0].host, "localhost");
        assert_eq!(conf.kms_servers[0].origin, "t kms_server");
        assert_eq!(
            conf.kms_keys,
            [KmsKey {
                name: "demo_key".into(),
                path: "etc/demo_key".into()
            }]
        );
        assert_eq!(conf.connect_deadline, DEFAULT_CONNECT_DEADLINE);
        assert_eq!(conf.collateral, None);
    }

    #[test]
    fn the_env_override_replaces_kms_server() {
        let overrides = Overrides {
            kms_server: Some(("10.0.0.1:4433".into(), "env X".into())),
            ..Overrides::default()
        };
        let conf = parse_init_ra_conf(OCCLUM_TEMPLATE, Path::new("t"), Path::new("/"), &overrides)
            .unwrap();
        assert_eq!(addrs(&conf), ["10.0.0.1:4433"]);
        assert_eq!(conf.kms_servers[0].origin, "env X");
        let overrides = Overrides {
            kms_server: Some(("nonsense".into(), "env X".into())),
            ..Overrides::default()
        };
        let err = parse_init_ra_conf(OCCLUM_TEMPLATE, Path::new("t"), Path::new("/"), &overrides)
            .unwrap_err();
        assert!(matches!(err, ConfigError::Override { .. }), "{err}");
    }

    #[test]
    fn kms_server_comes_first_then_kms_servers_without_repeats() {
        let conf = with(|v| {
            v["kms_servers"] = serde_json::json!(["kms-1:50051", "localhost:50051", "[::1]:7"]);
        })
        .unwrap();
        assert_eq!(addrs(&conf), ["localhost:50051", "kms-1:50051", "[::1]:7"]);
        assert_eq!(
            conf.kms_servers[1].origin,
            "init_ra_conf.json kms_servers[0]"
        );
        assert!(
            conf.warnings
                .iter()
                .any(|w| w.contains("kms_servers[1]") && w.contains("tried once")),
            "{:?}",
            conf.warnings
        );
    }

    #[test]
    fn kms_servers_alone_is_enough() {
        let conf = with(|v| {
            v.as_object_mut().unwrap().remove("kms_server");
            v["kms_servers"] = serde_json::json!(["a:1", "b:2"]);
        })
        .unwrap();
        assert_eq!(addrs(&conf), ["a:1", "b:2"]);
    }

    #[test]
    fn bad_kms_servers_are_refused_naming_the_entry() {
        let err = with(|v| v["kms_servers"] = serde_json::json!(["a:1", "b"])).unwrap_err();
        assert_eq!(field_of(err), "kms_servers[1]");
        let err = with(|v| v["kms_servers"] = serde_json::json!([])).unwrap_err();
        assert_eq!(field_of(err), "kms_servers");
        let err = with(|v| v["kms_servers"] = "a:1".into()).unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }), "{err}");
        let many: Vec<String> = (1..=MAX_KMS_SERVERS).map(|i| format!("k{i}:1")).collect();
        let err = with(|v| v["kms_servers"] = serde_json::json!(many)).unwrap_err();
        assert_eq!(field_of(err), "kms_servers");
        let err = with(|v| {
            v.as_object_mut().unwrap().remove("kms_server");
            v["kms_servers"] = serde_json::json!(many);
        });
        assert_eq!(err.unwrap().kms_servers.len(), MAX_KMS_SERVERS);
    }

    #[test]
    fn the_env_override_takes_a_comma_separated_list_and_replaces_both_fields() {
        let conf = with_override("10.0.0.1:1, kms.svc:50051,[::1]:3").unwrap();
        assert_eq!(addrs(&conf), ["10.0.0.1:1", "kms.svc:50051", "[::1]:3"]);
        assert_eq!(conf.kms_servers[1].origin, "env X [1]");
        let conf = with_override("10.0.0.1:1").unwrap();
        assert_eq!(conf.kms_servers[0].origin, "env X");
        for bad in ["a:1,", ",a:1", "a:1,,b:2", "a:1,b", " "] {
            let err = with_override(bad).unwrap_err();
            assert!(
                matches!(err, ConfigError::Override { .. }),
                "{bad:?}: {err}"
            );
        }
        let many: Vec<String> = (0..=MAX_KMS_SERVERS).map(|i| format!("k{i}:1")).collect();
        let err = with_override(&many.join(",")).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn duplicate_keys_anywhere_are_refused() {
        let good = String::from_utf8(OCCLUM_TEMPLATE.to_vec()).unwrap();
        assert!(parse(&good).is_ok());
        for (from, to) in [
            // top level
            (
                "\"kms_server\"",
                "\"kms_server\": \"evil:1\", \"kms_server\"",
            ),
            // inside ra_config
            (
                "\"verify_mr_enclave\"",
                "\"verify_mr_enclave\": \"off\", \"verify_mr_enclave\"",
            ),
            // inside an sgx_mrs entry
            ("\"mr_signer\"", "\"mr_signer\": \"\", \"mr_signer\""),
        ] {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1);
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains("duplicate key"), "{from}: {err}");
        }
    }

    #[test]
    fn our_optional_fields_parse() {
        let conf = with(|v| {
            v["pccs_url"] = "https://pccs.example:8081".into();
            v["connect_deadline_secs"] = 5.into();
        })
        .unwrap();
        assert_eq!(conf.connect_deadline, Duration::from_secs(5));
        assert!(
            matches!(conf.collateral, Some(CollateralChoice::Pccs { ref url, .. }) if url == "https://pccs.example:8081")
        );
        let conf = with(|v| v["collateral_file"] = "/etc/collateral.json".into()).unwrap();
        assert_eq!(
            conf.collateral,
            Some(CollateralChoice::File {
                path: "/initfs/etc/collateral.json".into(),
                origin: "init_ra_conf.json collateral_file".into()
            })
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        for name in ["kms_server", "kms_keys", "ra_config"] {
            let err = with(|v| drop(v.as_object_mut().unwrap().remove(name))).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn bad_addresses_are_refused() {
        for addr in [
            "localhost",
            "localhost:0",
            "localhost:99999",
            ":50051",
            "::1:50051",
            "[::1:50051",
            "a b:1",
        ] {
            assert_eq!(
                field_of(with(|v| v["kms_server"] = addr.into()).unwrap_err()),
                "kms_server",
                "{addr}"
            );
        }
        let conf = with(|v| v["kms_server"] = "[::1]:50051".into()).unwrap();
        assert_eq!(conf.kms_servers[0].host, "::1");
    }

    #[test]
    fn secret_paths_must_stay_in_the_rootfs() {
        for path in ["/etc/../../x", "../x", "/", "", "/etc/"] {
            let err = with(|v| v["kms_keys"][0]["path"] = path.into()).unwrap_err();
            assert_eq!(field_of(err), "kms_keys[0].path", "{path:?}");
        }
    }

    #[test]
    fn two_secrets_cannot_share_a_path() {
        let err = with(|v| {
            v["kms_keys"] = serde_json::json!([{"key": "a", "path": "/etc/x"}, {"key": "b", "path": "etc/./x"}]);
        })
        .unwrap_err();
        assert_eq!(field_of(err), "kms_keys[1].path");
    }

    #[test]
    fn empty_secret_names_are_refused() {
        assert_eq!(
            field_of(with(|v| v["kms_keys"][0]["key"] = "".into()).unwrap_err()),
            "kms_keys[0].key"
        );
    }

    #[test]
    fn out_of_range_deadlines_and_conflicting_collateral_are_refused() {
        assert_eq!(
            field_of(with(|v| v["connect_deadline_secs"] = 0.into()).unwrap_err()),
            "connect_deadline_secs"
        );
        let err = with(|v| {
            v["pccs_url"] = "https://x".into();
            v["collateral_file"] = "/etc/c.json".into();
        })
        .unwrap_err();
        assert_eq!(field_of(err), "pccs_url");
        assert_eq!(
            field_of(with(|v| v["pccs_url"] = "ftp://x".into()).unwrap_err()),
            "pccs_url"
        );
    }

    #[test]
    fn a_bad_policy_is_a_policy_error() {
        let err = with(|v| v["ra_config"]["verify_mr_enclave"] = "yes".into()).unwrap_err();
        assert!(matches!(err, ConfigError::Policy(_)), "{err}");
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let conf = with(|v| {
            v["ua_env_pccs_url"] = "".into();
            v["kms_keys"][0]["service"] = "s".into();
        })
        .unwrap();
        assert_eq!(
            conf.warnings
                .iter()
                .filter(|w| w.contains("unknown field"))
                .count(),
            2,
            "{:?}",
            conf.warnings
        );
    }

    #[test]
    fn malformed_json_is_refused_with_its_position() {
        let err = parse("{\"kms_server\": ").unwrap_err();
        assert!(
            matches!(err, ConfigError::Json { .. }) && err.to_string().contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn image_config_accepts_only_occlums_two_types() {
        let p = Path::new("image_config.json");
        assert_eq!(
            parse_image_config(br#"{"image_type": "encrypted"}"#, p).unwrap(),
            ImageType::Encrypted
        );
        assert_eq!(
            parse_image_config(br#"{"image_type":"integrity-only"}"#, p).unwrap(),
            ImageType::IntegrityOnly
        );
        assert!(parse_image_config(br#"{"image_type": "plain"}"#, p).is_err());
        assert!(parse_image_config(br#"{"image_type": "encrypted", "x": 1}"#, p).is_err());
        assert!(parse_image_config(b"{}", p).is_err());
    }
}
