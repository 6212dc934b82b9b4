//! Test harness: a fresh "localhost" certificate per test (rcgen), the real `app` binary on a
//! random loopback port (test-kit starts it and reads its listening line), and three HTTPS clients: curl (the seed's commands), ureq, and a raw
//! rustls socket for requests no well-behaved client would send.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::ServerName;
use test_kit::process::{collect, spawn_listening};
pub use test_kit::{TempDir, temp_dir};

pub const APP: &str = env!("CARGO_BIN_EXE_app");

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: Vec<u8>,
}

impl TestCert {
    pub fn new(dir: &TempDir, stem: &str) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join(format!("{stem}.crt"));
        let key_path = dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TestCert {
            cert_path,
            key_path,
            der: cert.der().to_vec(),
        }
    }
}

/// A running `app`; killed on drop. stderr is collected (it must be drained anyway).
pub struct App {
    child: Child,
    pub port: u16,
    pub listening_line: String,
    stderr: Arc<Mutex<String>>,
}

impl App {
    /// Starts the app on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(cert: &TestCert, data_dir: &Path, extra: &[&str]) -> App {
        let mut cmd = Command::new(APP);
        cmd.args(["--listen", "127.0.0.1:0", "--cert"])
            .arg(&cert.cert_path)
            .arg("--key")
            .arg(&cert.key_path)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stderr(Stdio::piped());
        let started = spawn_listening(&mut cmd, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("app did not start: {e}"));
        let mut child = started.child;
        let stderr = collect(child.stderr.take().unwrap());
        let line = started.line;
        let port = line
            .strip_prefix("listening on https://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        App {
            child,
            port,
            listening_line: line,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the server (as a crash or `occlum stop` would) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the app to completion (for start-up failures), with a time limit.
pub fn run_to_exit(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(APP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("app did not exit within 30 s; args {args:?}");
}

/// `curl -sS --cacert <cert> <args...>`; returns stdout, asserting curl itself succeeded.
pub fn curl(cert: &TestCert, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&cert.cert_path)
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A ureq agent that trusts only the test certificate and returns 4xx/5xx as responses.
pub fn agent(cert: &TestCert) -> ureq::Agent {
    let roots = vec![ureq::tls::Certificate::from_der(&cert.der).to_owned()];
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Status and body text of a ureq call.
pub fn status_body(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = result.unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

pub fn put_form(agent: &ureq::Agent, url: &str, body: &str) -> (u16, String) {
    status_body(
        agent
            .put(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body),
    )
}

pub fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    status_body(agent.get(url).call())
}

/// A TLS connection that trusts only the test certificate, for hand-written requests.
pub fn raw_tls(
    app: &App,
    cert: &TestCert,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// Everything the server sends until it closes the connection (or 20 s pass).
pub fn read_until_close(stream: &mut impl Read) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            // A close without close_notify still ends the response.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(err) => panic!("reading the response failed: {err}; got so far {all:?}"),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Sends raw bytes on a fresh TLS connection and returns the whole answer.
pub fn raw_exchange(app: &App, cert: &TestCert, request: &[u8]) -> String {
    let mut stream = raw_tls(app, cert);
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    read_until_close(&mut stream)
}

/// Status code and body of one raw HTTP response.
pub fn parse_response(text: &str) -> (u16, String) {
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_owned())
}
