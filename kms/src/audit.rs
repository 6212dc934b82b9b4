//! The audit log: one JSON object per line for every attestation (verification actually run),
//! every release and every refusal, plus start, reload and shutdown.
//!
//! Records carry identities, names and verdicts only; the type has no field that could hold a
//! secret value. Lines are written whole under a lock and flushed, so concurrent calls never
//! interleave. Writes to stderr by default, or appended to a file created with mode 0600.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::timefmt;

/// Where audit records go.
pub struct AuditLog {
    sink: Mutex<Box<dyn Write + Send>>,
}

/// What a record is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The server started.
    Start,
    /// A client certificate went through the verification pipeline (cache miss).
    Attestation,
    /// A GetSecret call was answered with the secret.
    Release,
    /// A GetSecret call was refused.
    Refusal,
    /// SIGHUP reload, applied or rejected.
    Reload,
    /// The KMS's own RA-TLS certificate was re-minted (or re-minting failed).
    Rotation,
    /// Graceful shutdown.
    Stop,
}

/// The outcome.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Rejected,
}

/// Enclave identity fields of an audit record (hex for measurements).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_enclave: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_signer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isv_prod_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isv_svn: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_svn: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    /// The `sgx_mrs` entry the peer matched: its name, or `#<index>` when unnamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
}

impl Identity {
    /// Fills the measurement fields from a report body.
    pub fn from_body(body: &ratls::quote::ReportBody) -> Identity {
        Identity {
            mr_enclave: Some(hex::encode(body.mr_enclave)),
            mr_signer: Some(hex::encode(body.mr_signer)),
            isv_prod_id: Some(body.isv_prod_id),
            isv_svn: Some(body.isv_svn),
            config_svn: Some(body.config_svn),
            debug: Some(body.debuggable()),
            ..Identity::default()
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub event: Event,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    #[serde(flatten)]
    pub identity: Identity,
    /// The requested secret's name (names are not secret; values never appear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// The gRPC status code name for GetSecret answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Which check failed, or what happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl<'a> Record<'a> {
    /// A record stamped now.
    pub fn new(event: Event, verdict: Verdict) -> Record<'a> {
        Record {
            time: timefmt::rfc3339_now(),
            event,
            verdict,
            peer: None,
            identity: Identity::default(),
            secret: None,
            status: None,
            reason: None,
        }
    }
}

impl AuditLog {
    /// Audit records to stderr.
    pub fn stderr() -> AuditLog {
        AuditLog {
            sink: Mutex::new(Box::new(io::stderr())),
        }
    }

    /// Audit records appended to `path` (created 0600 if missing).
    pub fn file(path: &Path) -> io::Result<AuditLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog {
            sink: Mutex::new(Box::new(file)),
        })
    }

    /// Any writer (tests).
    #[cfg(test)]
    pub fn to_writer(w: Box<dyn Write + Send>) -> AuditLog {
        AuditLog {
            sink: Mutex::new(w),
        }
    }

    /// Writes one record as one line. Audit failures are reported on stderr and otherwise
    /// ignored: a full disk must not turn into a denial of service for attested clients.
    pub fn write(&self, record: &Record<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("kms: audit record not serializable: {e}");
                return;
            }
        };
        line.push(b'\n');
        let mut sink = match self.sink.lock() {
            Ok(sink) => sink,
            // A panic while holding the lock cannot leave a half line: write_all then flush.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
            eprintln!("kms: audit log write failed: {e}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_single_json_lines_with_escaped_names() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()));
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some("ipv4:127.0.0.1:5555");
        rec.secret = Some("evil\"\nname");
        rec.status = Some("NOT_FOUND");
        rec.identity.mr_enclave = Some("ab".repeat(32));
        rec.identity.matched = Some("app".into());
        log.write(&rec);
        log.write(&Record::new(Event::Stop, Verdict::Ok));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "refusal");
        assert_eq!(v["verdict"], "rejected");
        assert_eq!(v["secret"], "evil\"\nname");
        assert_eq!(v["matched"], "app");
        assert_eq!(v["mr_enclave"].as_str().unwrap().len(), 64);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("mr_signer").is_none());
    }
}
