//! Test harness: a real etcd cluster (Debian's `etcd` 3.4, `/usr/bin/etcd` or `$ETCD_BIN`) of
//! n members on free 127.0.0.1 ports, data in a temporary directory, for the cluster tests.
//! Members can be SIGKILLed and restarted on the same data directory; dropping the cluster
//! kills every member and removes the directory.
//!
//! A missing `etcd` fails the test loudly: CI installs `etcd-server`, and a skipped cluster
//! test would be a test that cannot fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a fresh cluster may take to elect a leader and answer `/health`.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts at starting a cluster when a port chosen as free was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// The etcd binary: `$ETCD_BIN`, else `/usr/bin/etcd`.
pub fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        path.exists(),
        "etcd not found at {} (install Debian's etcd-server, or set ETCD_BIN); the cluster \
         tests need a real etcd and are not skipped",
        path.display()
    );
    path
}

/// One etcd member.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    /// The cluster's directory (members' data and logs), removed on drop.
    pub dir: PathBuf,
    _tmp: test_kit::TempDir,
    pub members: Vec<Member>,
    initial_cluster: String,
    token: String,
    extra_args: Vec<String>,
}

impl EtcdCluster {
    /// Starts `n` members with etcd's defaults and waits until every member reports healthy.
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, &[])
    }

    /// As [`EtcdCluster::start`], with extra etcd flags for every member (for example
    /// `--max-request-bytes=...`).
    pub fn start_with(n: usize, extra_args: &[&str]) -> EtcdCluster {
        let binary = etcd_binary();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = EtcdCluster::spawn(&binary, n, extra_args);
            match cluster.wait_healthy(START_DEADLINE) {
                Ok(()) => return cluster,
                Err(e) => last_error = e, // likely a port taken meanwhile: new ports, new try
            }
        }
        panic!("etcd cluster of {n} did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// The client URLs (`http://127.0.0.1:PORT`), member 0 first.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// SIGKILLs member `i` (no-op if it is not running) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory and ports. Waits until it answers
    /// `/health` when a quorum of members is running, else until its client port accepts
    /// connections (it cannot be healthy without a quorum).
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        let binary = etcd_binary();
        let child = self.spawn_member(&binary, i);
        self.members[i].child = Some(child);
        let running = self.members.iter().filter(|m| m.child.is_some()).count();
        let result = if running > self.members.len() / 2 {
            self.wait_member_healthy(i, START_DEADLINE)
        } else {
            self.wait_member_listening(i, START_DEADLINE)
        };
        if let Err(e) = result {
            panic!("etcd member {i} did not come back: {e}");
        }
    }

    /// SIGSTOPs (`frozen`) or SIGCONTs member `i`: a frozen member keeps its sockets, so calls
    /// to it hang until the caller's timeout instead of failing at once.
    pub fn freeze(&self, i: usize, frozen: bool) {
        let child = self.members[i].child.as_ref().expect("member is running");
        let status = std::process::Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -STOP/-CONT of etcd member {i}");
    }

    /// The index of the member that is the raft leader now (`/v3/maintenance/status` of each
    /// running member: its own id against the leader it reports).
    pub fn leader(&self) -> usize {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "2", "-X", "POST", "-d", "{}"])
                .arg(format!("{}/v3/maintenance/status", m.client_url))
                .output()
                .unwrap();
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if status["leader"].is_string() && status["leader"] == status["header"]["member_id"] {
                return i;
            }
        }
        panic!("no running etcd member reports itself as the leader");
    }

    /// SIGKILLs every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Whether member `i` is running (started and not killed by this harness).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Waits until every running member answers `/health` with `"health":"true"`.
    pub fn wait_healthy(&mut self, deadline: Duration) -> Result<(), String> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() {
                self.wait_member_healthy(i, deadline)?;
            }
        }
        Ok(())
    }

    fn spawn(binary: &Path, n: usize, extra_args: &[&str]) -> EtcdCluster {
        assert!(n > 0);
        static N: AtomicUsize = AtomicUsize::new(0);
        let seq = N.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{seq}", std::process::id());
        let tmp = test_kit::temp_dir("kms-etcd");
        let dir = tmp.path().to_path_buf();
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", ports[2 * i]),
                peer_url: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                data_dir: dir.join(format!("m{i}.etcd")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            _tmp: tmp,
            members,
            initial_cluster,
            token: format!("kms-test-{tag}"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            let child = cluster.spawn_member(binary, i);
            cluster.members[i].child = Some(child);
        }
        cluster
    }

    fn spawn_member(&self, binary: &Path, i: usize) -> Child {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        Command::new(binary)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            // Metrics and pprof stay off; nothing listens beyond the two loopback URLs.
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
    }

    fn wait_member_healthy(&mut self, i: usize, deadline: Duration) -> Result<(), String> {
        let url = format!("{}/health", self.members[i].client_url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let end = Instant::now() + deadline;
        let mut last = String::from("no answer yet");
        while Instant::now() < end {
            self.check_alive(i)?;
            match agent.get(&url).call() {
                Ok(mut r) => {
                    let body = r.body_mut().read_to_string().unwrap_or_default();
                    if r.status() == 200 && body.contains("\"health\":\"true\"") {
                        return Ok(());
                    }
                    last = format!("HTTP {}: {body}", r.status());
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "member {i} ({url}) not healthy within {deadline:?}: {last}\n{}",
            self.log_tail(i)
        ))
    }

    fn wait_member_listening(&mut self, i: usize, deadline: Duration) -> Result<(), String> {
        let addr = self.members[i]
            .client_url
            .trim_start_matches("http://")
            .to_owned();
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            self.check_alive(i)?;
            if TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "member {i} not listening on {addr} within {deadline:?}\n{}",
            self.log_tail(i)
        ))
    }

    /// An error (with the member's log) if member `i` exited.
    fn check_alive(&mut self, i: usize) -> Result<(), String> {
        let exited = match self.members[i].child.as_mut() {
            Some(child) => child.try_wait().unwrap(),
            None => return Err(format!("member {i} is not running")),
        };
        match exited {
            None => Ok(()),
            Some(status) => {
                self.members[i].child = None;
                Err(format!(
                    "member {i} exited ({status})\n{}",
                    self.log_tail(i)
                ))
            }
        }
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        format!(
            "--- {} (last lines) ---\n{}",
            self.members[i].log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // The directory goes with `_tmp`, after this.
        self.stop_all();
    }
}

/// `n` distinct loopback ports that were free a moment ago (all listeners are held until every
/// port is chosen, so they differ from each other).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
