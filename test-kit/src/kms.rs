//! The real `kms` binary on a loopback port: started in a directory of its own, it writes its
//! certificate (`--cert-out`), audit log (`--audit-log`) and stderr there; the handle knows
//! its address, certificate and logs, and kills the process on drop.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{STARTUP_TIMEOUT, spawn_listening};

/// What `kms serve` prints first on stdout, before its address.
const LISTENING: &str = "listening on ";

/// A running `kms` (or a view of one, see [`Kms::view`]).
pub struct Kms {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its RA-TLS certificate (PEM), from `--cert-out`.
    pub cert_pem: String,
    pub audit_log: PathBuf,
    /// Its stderr: `kms.stderr` in its directory (`kms.N.stderr` when that is taken, so a
    /// restarted KMS does not write over the log of the one before).
    pub stderr_log: PathBuf,
    /// Its listening line.
    pub stdout_text: String,
}

impl Kms {
    /// Runs `bin` with `args` plus `--cert-out <dir>/kms-cert.pem` and `--audit-log
    /// <dir>/audit.log` (unless `args` name an audit log), in `dir`, and waits for its
    /// listening line; panics with its stderr if it does not come.
    pub fn spawn(bin: &Path, dir: &Path, args: &[impl AsRef<OsStr>]) -> Kms {
        Kms::try_spawn(bin, dir, args).unwrap_or_else(|e| panic!("kms did not start: {e}"))
    }

    /// Like [`Kms::spawn`], returning what went wrong (with the KMS's stderr) if the process
    /// exits before listening.
    pub fn try_spawn(bin: &Path, dir: &Path, args: &[impl AsRef<OsStr>]) -> Result<Kms, String> {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let cert_out = dir.join("kms-cert.pem");
        let _ = std::fs::remove_file(&cert_out);
        let named_audit = args
            .iter()
            .position(|a| a == "--audit-log")
            .and_then(|i| args.get(i + 1));
        let audit_log = named_audit.map_or_else(|| dir.join("audit.log"), PathBuf::from);
        let (stderr_log, stderr) = new_log(dir);
        let mut cmd = Command::new(bin);
        cmd.args(&args).arg("--cert-out").arg(&cert_out);
        if named_audit.is_none() {
            cmd.arg("--audit-log").arg(&audit_log);
        }
        cmd.current_dir(dir)
            // The environment must not pick the collateral source behind the test's back.
            .env_remove("PCCS_URL")
            .stderr(stderr);
        let stderr_text = || std::fs::read_to_string(&stderr_log).unwrap_or_default();
        let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT)
            .map_err(|e| format!("{e}\nstderr:\n{}", stderr_text()))?;
        let mut child = started.child;
        let Some(addr) = started.line.strip_prefix(LISTENING) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "first stdout line {:?}, expected {LISTENING:?}\nstderr:\n{}",
                started.line,
                stderr_text()
            ));
        };
        assert!(
            !addr.ends_with(":0"),
            "port 0 must be replaced by the bound port: {addr}"
        );
        Ok(Kms {
            addr: addr.to_owned(),
            cert_pem: std::fs::read_to_string(&cert_out)
                .unwrap_or_else(|e| panic!("kms is listening but {}: {e}", cert_out.display())),
            audit_log,
            stderr_log,
            stdout_text: started.line,
            child: Some(child),
        })
    }

    /// A handle to the same server (address, certificate, logs) that does not own the process.
    pub fn view(other: &Kms) -> Kms {
        Kms {
            child: None,
            addr: other.addr.clone(),
            cert_pem: other.cert_pem.clone(),
            audit_log: other.audit_log.clone(),
            stderr_log: other.stderr_log.clone(),
            stdout_text: other.stdout_text.clone(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("not a view").id() as i32
    }

    /// Sends signal number `sig` (with kill(1): no unsafe code in the tests).
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// What the KMS wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Where its admin API listens, from the stderr line `kms serve --admin-listen` prints
    /// before the listening line (`kms: admin API listening on ADDR; ...`).
    pub fn admin_addr(&self) -> Option<String> {
        self.stderr()
            .lines()
            .find_map(|l| l.strip_prefix("kms: admin API listening on "))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
    }

    /// Everything it wrote: audit log, stderr, stdout (for "no secret in any output" checks).
    pub fn logs(&self) -> Vec<u8> {
        let mut logs = std::fs::read(&self.audit_log).unwrap_or_default();
        logs.extend(std::fs::read(&self.stderr_log).unwrap_or_default());
        logs.extend(self.stdout_text.as_bytes());
        logs
    }

    /// The audit log as parsed JSON lines.
    pub fn audit(&self) -> Vec<Value> {
        audit_records(&self.audit_log)
    }

    /// Waits until an audit record satisfies `pred` (records are flushed per line).
    pub fn wait_audit(&self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_audit_for(Duration::from_secs(10), pred)
    }

    /// [`Kms::wait_audit`] with an explicit timeout.
    pub fn wait_audit_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(rec) = self.audit().into_iter().find(|r| pred(r)) {
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit record in:\n{:#?}",
                self.audit()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns the exit status (panics after 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(15);
        let mut child = self.child.take().expect("not a view");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kms did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Kms {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a JSON-lines audit log (a missing file has no records; any line that is not JSON,
/// a blank one included, fails the test).
pub fn audit_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

/// A new stderr file in `dir`: `kms.stderr`, else the first free `kms.N.stderr`.
fn new_log(dir: &Path) -> (PathBuf, Stdio) {
    for n in 1.. {
        let path = if n == 1 {
            dir.join("kms.stderr")
        } else {
            dir.join(format!("kms.{n}.stderr"))
        };
        match File::create_new(&path) {
            Ok(file) => return (path, Stdio::from(file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("creating {}: {e}", path.display()),
        }
    }
    unreachable!("an unbounded range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kms_started_in_a_directory_gets_a_stderr_log_of_its_own() {
        let dir = crate::temp_dir("test-kit-log");
        let (first, _) = new_log(dir.path());
        let (second, _) = new_log(dir.path());
        assert_eq!(first, dir.path().join("kms.stderr"));
        assert_eq!(second, dir.path().join("kms.2.stderr"));
    }

    #[test]
    fn a_blank_audit_line_fails_the_test() {
        let dir = crate::temp_dir("test-kit-audit");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"event\":\"release\"}\n").unwrap();
        assert_eq!(audit_records(&path).len(), 1);
        std::fs::write(&path, "{\"event\":\"release\"}\n\n").unwrap();
        assert!(std::panic::catch_unwind(|| audit_records(&path)).is_err());
    }

    #[test]
    fn a_scratch_directory_is_removed_on_drop() {
        let dir = crate::temp_dir("test-kit-drop");
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
