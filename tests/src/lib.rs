//! Helpers for the end-to-end tests: locate (and if needed build) the real binaries, start the
//! KMS (test-kit's launcher) and the simulated PCCS, and build the files a simulated deployment
//! needs (platform, identities, policies, secrets,
//! init's config directory and sealed rootfs image).
//!
//! Binaries: `E2E_KMS_BIN`, `E2E_INIT_BIN`, `E2E_SGX_SIM_BIN`, `E2E_APP_BIN` override the
//! paths. Otherwise `kms`, `sgx-sim` and `app` come from `target/<profile>/` next to the test
//! executable (built with `cargo build` on first use if missing), and `init` is built by
//! `init/build-musl.sh --simulation`: the tests run the dynamically linked musl PIE Occlum's
//! initfs takes, with host mode (the `simulation` feature), under Debian's musl loader.
//!
//! These are test helpers: a failure panics with a message that says what went wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::missing_panics_doc
)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use test_kit::kms::{Kms, audit_records};
pub use test_kit::process::STARTUP_TIMEOUT;
use test_kit::process::{addr_after, collect, spawn_listening};
pub use test_kit::{TempDir, temp_dir};

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/<profile>/` of the running test executable (`target/<profile>/deps/<test>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// A workspace binary: `$env_var` if set, else `target/<profile>/<name>`, built with
/// `cargo build -p <package>` (same profile) if it does not exist yet.
pub fn workspace_bin(name: &str, package: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist",
            path.display()
        );
        return path;
    }
    let path = profile_dir().join(name);
    if !path.is_file() {
        static BUILD: Mutex<()> = Mutex::new(());
        let _guard = BUILD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !path.is_file() {
            let mut cargo =
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo
                .current_dir(workspace_root())
                .args(["build", "-p", package, "--bin", name]);
            if package == "kms" {
                // The simulated platform these tests run on (never in the Occlum build).
                cargo.args(["--features", "kms/simulation"]);
            }
            if profile_dir().ends_with("release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("running cargo build");
            assert!(
                status.success(),
                "cargo build -p {package} --bin {name} failed; set {env_var} to a built binary"
            );
        }
    }
    assert!(
        path.is_file(),
        "{} missing after cargo build",
        path.display()
    );
    path
}

/// The `kms` binary.
pub fn kms_bin() -> PathBuf {
    workspace_bin("kms", "kms", "E2E_KMS_BIN")
}

/// The `sgx-sim` binary.
pub fn sgx_sim_bin() -> PathBuf {
    workspace_bin("sgx-sim", "sgx-sim", "E2E_SGX_SIM_BIN")
}

/// The `app` binary.
pub fn app_bin() -> PathBuf {
    workspace_bin("app", "app", "E2E_APP_BIN")
}

/// The `init` binary: `$E2E_INIT_BIN`, else the musl PIE from `init/build-musl.sh` (built,
/// or found up to date, once per test process; the script also checks the ELF).
pub fn init_bin() -> PathBuf {
    static INIT: OnceLock<PathBuf> = OnceLock::new();
    INIT.get_or_init(|| {
        if let Some(path) = std::env::var_os("E2E_INIT_BIN") {
            return PathBuf::from(path);
        }
        let script = workspace_root().join("init/build-musl.sh");
        // Host mode runs on the simulated platform: the `--simulation` build (the Occlum build
        // has no host mode; test.sh checks it separately).
        let out = Command::new("bash")
            .arg(&script)
            .arg("--simulation")
            .stderr(Stdio::inherit())
            .output()
            .expect("running init/build-musl.sh");
        assert!(
            out.status.success(),
            "init/build-musl.sh failed (set E2E_INIT_BIN to skip it)"
        );
        let path = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let path = PathBuf::from(path);
        assert!(path.is_file(), "build-musl.sh printed no binary path");
        eprintln!("e2e: init binary {}", path.display());
        path
    })
    .clone()
}

/// A loopback port that was free a moment ago (for servers that must start later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion with output captured; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An enclave identity for the simulated platform.
#[derive(Debug, Clone)]
pub struct EnclaveId {
    pub name: String,
    pub mr_enclave: String,
    pub mr_signer: String,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub debuggable: bool,
}

impl EnclaveId {
    /// A production enclave whose measurements are derived from `name` (distinct per name).
    pub fn new(name: &str) -> Self {
        use sha2::Digest as _;
        let mr = |what: &str| hex::encode(sha2::Sha256::digest(format!("{what}:{name}")));
        Self {
            name: name.to_owned(),
            mr_enclave: mr("mr_enclave"),
            mr_signer: mr("mr_signer"),
            isv_prod_id: 1,
            isv_svn: 1,
            debuggable: false,
        }
    }

    /// An `sgx_mrs` entry that matches exactly this enclave.
    pub fn sgx_mrs_entry(&self) -> Value {
        json!({
            "mr_enclave": self.mr_enclave,
            "mr_signer": self.mr_signer,
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "config_svn": 0,
            "debuggable": self.debuggable,
        })
    }

    /// A policy (Occlum's ra_config format) admitting only this enclave, every check on.
    pub fn policy(&self) -> Value {
        json!({
            "verify_mr_enclave": "on",
            "verify_mr_signer": "on",
            "verify_isv_prod_id": "on",
            "verify_isv_svn": "on",
            "verify_config_svn": "on",
            "verify_enclave_debuggable": "on",
            "sgx_mrs": [self.sgx_mrs_entry()],
        })
    }
}

/// A simulated platform directory plus identity files, made with the `sgx-sim` binary.
pub struct Sim {
    pub dir: PathBuf,
}

impl Sim {
    /// `sgx-sim init <root>/platform`.
    pub fn create(root: &Path) -> Self {
        let dir = root.join("platform");
        run_ok(Command::new(sgx_sim_bin()).arg("init").arg(&dir));
        Self { dir }
    }

    /// `sgx-sim identity --out <root>/<name>.identity.json ...`; returns the file.
    pub fn identity(&self, root: &Path, id: &EnclaveId) -> PathBuf {
        let out = root.join(format!("{}.identity.json", id.name));
        let mut cmd = Command::new(sgx_sim_bin());
        cmd.arg("identity")
            .arg("--out")
            .arg(&out)
            .args([
                "--name",
                &id.name,
                "--mr-enclave",
                &id.mr_enclave,
                "--mr-signer",
                &id.mr_signer,
            ])
            .args([
                "--isv-prod-id",
                &id.isv_prod_id.to_string(),
                "--isv-svn",
                &id.isv_svn.to_string(),
            ]);
        if id.debuggable {
            cmd.arg("--debuggable");
        }
        run_ok(&mut cmd);
        out
    }

    /// The platform's collateral file (dcap-qvl JSON).
    pub fn collateral(&self) -> PathBuf {
        self.dir.join("collateral.json")
    }
}

/// Writes `value` as pretty JSON to `path` (parents created).
pub fn write_json(path: &Path, value: &Value) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// `secret_config.json` content: name -> base64 of the value.
pub fn secrets_json(secrets: &[(&str, &[u8])]) -> Value {
    use base64::Engine as _;
    let map: serde_json::Map<String, Value> = secrets
        .iter()
        .map(|(name, value)| {
            (
                (*name).to_owned(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(value)),
            )
        })
        .collect();
    Value::Object(map)
}

/// Options of a KMS started by [`Kms::start`].
pub struct KmsOptions<'a> {
    /// `host:port` to listen on (`127.0.0.1:0` picks a port).
    pub listen: String,
    pub ra_config: PathBuf,
    pub secrets: PathBuf,
    pub sim: &'a Sim,
    pub identity: &'a Path,
    /// The KMS's certificate and stderr go next to it.
    pub audit_log: PathBuf,
}

impl KmsOptions<'_> {
    /// Starts the KMS on the simulated platform and waits for its listening line.
    pub fn start(&self) -> Kms {
        let collateral = self.sim.collateral();
        self.start_with_collateral(&["--collateral".as_ref(), collateral.as_os_str()])
    }

    /// Like [`KmsOptions::start`], with `collateral` (e.g. `--pccs-url URL`) instead of the
    /// platform's collateral file.
    pub fn start_with_collateral(&self, collateral: &[&OsStr]) -> Kms {
        let mut args: Vec<&OsStr> = vec![
            "serve".as_ref(),
            "--listen".as_ref(),
            self.listen.as_ref(),
            "--ra-config".as_ref(),
            self.ra_config.as_os_str(),
            "--secrets".as_ref(),
            self.secrets.as_os_str(),
            "--sim-platform".as_ref(),
            self.sim.dir.as_os_str(),
            "--sim-identity".as_ref(),
            self.identity.as_os_str(),
        ];
        args.extend(collateral);
        args.extend(["--audit-log".as_ref(), self.audit_log.as_os_str()]);
        let dir = self
            .audit_log
            .parent()
            .expect("the audit log is in a directory");
        std::fs::create_dir_all(dir).unwrap();
        Kms::spawn(&kms_bin(), dir, &args)
    }
}

/// A running `sgx-sim pccs` (the simulated PCCS), killed on drop; its log is collected.
pub struct SimPccs {
    child: Child,
    /// `http://host:port`.
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl SimPccs {
    /// Serves `sim`'s collateral on `listen` (`127.0.0.1:0` picks a port).
    pub fn start(sim: &Sim, listen: &str) -> Self {
        let mut cmd = Command::new(sgx_sim_bin());
        cmd.arg("pccs")
            .arg(&sim.dir)
            .args(["--listen", listen])
            .stderr(Stdio::piped());
        let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
            .unwrap_or_else(|e| panic!("sgx-sim pccs did not start: {e}"));
        let mut child = started.child;
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let addr = addr_after(&started.line, "listening on ")
            .unwrap_or_else(|| panic!("sgx-sim pccs printed {:?}", started.line));
        Self {
            url: format!("http://{addr}"),
            child,
            stderr,
        }
    }

    /// Connections the PCCS has closed so far, and the requests it served.
    pub fn counts(&self) -> (usize, usize) {
        let log = self.stderr.lock().unwrap().clone();
        (
            log.matches("connection closed after").count(),
            log.matches("\"GET ").count(),
        )
    }

    /// Stops it (SIGKILL) and waits.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SimPccs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `image_key` text `occlum gen-image-key` would write for `key`.
pub fn image_key_text(key: &[u8; 16]) -> String {
    let parts: Vec<String> = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}\n", parts.join("-"))
}

/// `init pack-image --key <key file> --in <dir> --out <image>`.
pub fn pack_image(key_file: &Path, input: &Path, image: &Path) {
    run_ok(
        Command::new(init_bin())
            .arg("pack-image")
            .arg("--key")
            .arg(key_file)
            .arg("--in")
            .arg(input)
            .arg("--out")
            .arg(image),
    );
}

/// Everything a host-mode boot needs, laid out in one temporary directory:
/// `platform/`, `kms.identity.json`, `app.identity.json`, `kms/{ra_config,secrets}.json`,
/// `initfs/etc/{init_ra_conf,image_config}.json`, `image_key`, `image-src/`, `rootfs.img`.
pub struct Deployment {
    pub tmp: TempDir,
    pub sim: Sim,
    pub kms_id: EnclaveId,
    pub app_id: EnclaveId,
    pub kms_identity: PathBuf,
    pub app_identity: PathBuf,
    /// Secret name -> value, as the KMS holds them (image_key included).
    pub secrets: HashMap<String, Vec<u8>>,
    /// `kms_keys`: name -> path in the rootfs.
    pub kms_keys: Vec<(String, String)>,
    pub image_key: [u8; 16],
}

impl Deployment {
    /// A deployment with `kms_keys` secrets (name, path, value) and a random image key.
    pub fn new(kms_keys: &[(&str, &str, &[u8])]) -> Self {
        let tmp = temp_dir("e2e-init");
        let sim = Sim::create(tmp.path());
        let kms_id = EnclaveId::new("kms");
        let app_id = EnclaveId::new("app");
        let kms_identity = sim.identity(tmp.path(), &kms_id);
        let app_identity = sim.identity(tmp.path(), &app_id);
        let mut image_key = [0u8; 16];
        random_bytes(&mut image_key);
        let mut secrets: HashMap<String, Vec<u8>> = kms_keys
            .iter()
            .map(|(name, _, value)| ((*name).to_owned(), value.to_vec()))
            .collect();
        secrets.insert("image_key".into(), image_key_text(&image_key).into_bytes());
        let kms_keys = kms_keys
            .iter()
            .map(|(name, path, _)| ((*name).to_owned(), (*path).to_owned()))
            .collect();
        let d = Self {
            tmp,
            sim,
            kms_id,
            app_id,
            kms_identity,
            app_identity,
            secrets,
            kms_keys,
            image_key,
        };
        d.write_kms_files();
        d.write_init_conf(|_| {});
        d.write_image(|_| {});
        d
    }

    /// A path inside the deployment directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// (Re)writes the KMS's policy (admits the app enclave) and secrets.
    pub fn write_kms_files(&self) {
        write_json(&self.path("kms/ra_config.json"), &self.app_id.policy());
        let pairs: Vec<(&str, &[u8])> = self
            .secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        write_json(&self.path("kms/secrets.json"), &secrets_json(&pairs));
    }

    /// Writes init's `init_ra_conf.json` (admitting the KMS enclave) and
    /// `image_config.json` (encrypted), after `edit` changes the former.
    pub fn write_init_conf(&self, edit: impl FnOnce(&mut Value)) {
        let keys: Vec<Value> = self
            .kms_keys
            .iter()
            .map(|(k, p)| json!({"key": k, "path": p}))
            .collect();
        let mut conf = json!({
            "kms_server": "127.0.0.1:1",
            "kms_keys": keys,
            "ra_config": self.kms_id.policy(),
        });
        edit(&mut conf);
        write_json(&self.path("initfs/etc/init_ra_conf.json"), &conf);
        write_json(
            &self.path("initfs/etc/image_config.json"),
            &json!({"image_type": "encrypted"}),
        );
    }

    /// Builds the app's rootfs tree (`image-src/`), lets `edit` change it, and seals it into
    /// `rootfs.img` under the image key.
    pub fn write_image(&self, edit: impl FnOnce(&Path)) {
        let src = self.path("image-src");
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), b"occlum-app\n").unwrap();
        std::fs::write(src.join("bin/hello.txt"), b"hello from the sealed rootfs\n").unwrap();
        edit(&src);
        let key_file = self.path("image_key");
        std::fs::write(&key_file, image_key_text(&self.image_key)).unwrap();
        pack_image(&key_file, &src, &self.path("rootfs.img"));
    }

    /// Starts the KMS (policy admits the app enclave) on `listen`.
    pub fn start_kms(&self, listen: &str) -> Kms {
        self.kms_options(listen).start()
    }

    /// Starts the KMS with its collateral from the PCCS at `pccs_url` (as the demo runs it).
    pub fn start_kms_with_pccs(&self, listen: &str, pccs_url: &str) -> Kms {
        self.kms_options(listen)
            .start_with_collateral(&["--pccs-url".as_ref(), pccs_url.as_ref()])
    }

    /// The KMS's options in this deployment (its files under `kms/`), listening on `listen`.
    pub fn kms_options(&self, listen: &str) -> KmsOptions<'_> {
        KmsOptions {
            listen: listen.to_owned(),
            ra_config: self.path("kms/ra_config.json"),
            secrets: self.path("kms/secrets.json"),
            sim: &self.sim,
            identity: &self.kms_identity,
            audit_log: self.path("kms/audit.log"),
        }
    }

    /// The KMS's audit records so far.
    pub fn audit(&self) -> Vec<Value> {
        audit_records(&self.path("kms/audit.log"))
    }

    /// Where init unpacks the rootfs.
    pub fn rootfs(&self) -> PathBuf {
        self.path("rootfs")
    }

    /// `init host ...` against `kms_addr`, with extra flags and the app command (may be empty).
    pub fn init_command(&self, kms_addr: &str, extra: &[&str], app: &[&str]) -> Command {
        self.init_command_from_config(&[&["--kms-server", kms_addr], extra].concat(), app)
    }

    /// `init host ...` with the KMS addresses of `init_ra_conf.json` (no `--kms-server`, and
    /// `OCCLUM_INIT_RA_KMS_SERVER` removed), extra flags and the app command.
    pub fn init_command_from_config(&self, extra: &[&str], app: &[&str]) -> Command {
        let mut cmd = Command::new(init_bin());
        cmd.arg("host")
            .arg("--config-dir")
            .arg(self.path("initfs"))
            .arg("--sim-platform")
            .arg(&self.sim.dir)
            .arg("--sim-identity")
            .arg(&self.app_identity)
            .arg("--image")
            .arg(self.path("rootfs.img"))
            .arg("--rootfs")
            .arg(self.rootfs())
            .args(extra)
            .env_remove("OCCLUM_INIT_RA_KMS_SERVER")
            .env_remove("OCCLUM_INIT_RA_PCCS_URL");
        if !app.is_empty() {
            cmd.arg("--").args(app);
        }
        cmd
    }

    /// Runs init; returns its outcome.
    pub fn run_init(&self, kms_addr: &str, extra: &[&str], app: &[&str]) -> InitOutcome {
        let started = Instant::now();
        let out = run(&mut self.init_command(kms_addr, extra, app));
        InitOutcome {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        }
    }
}

/// How an init run ended.
#[derive(Debug)]
pub struct InitOutcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl InitOutcome {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with init's output unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "init exited {:?}, expected {code}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Lists every file below `dir` (relative paths, sorted); empty if `dir` does not exist.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.map_while(Result::ok) {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Fills `buf` from the OS's random source.
pub fn random_bytes(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}
