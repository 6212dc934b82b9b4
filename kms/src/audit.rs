//! The audit log: one JSON object per line for every attestation (verification actually run),
//! every release and every refusal, plus start, reload and shutdown.
//!
//! Records carry identities, names and verdicts only; the type has no field that could hold a
//! secret value. Lines are written whole under a lock and flushed, so concurrent calls never
//! interleave. Writes to stderr by default, or appended to a file created with mode 0600.
//!
//! Refusals are aggregated so a flood cannot fill the disk (one connection can open tens of
//! thousands of refused streams): the first rejected record of a kind (event, peer address
//! without its port, status, failing check) is written in full; repeats within
//! [`AGGREGATION_WINDOW`] are only counted, and one summary record (`repeated`, `first`,
//! `last`) is written when the window closes. New kinds are written in full at most at
//! [`NEW_KIND_RATE`] per second; beyond that, and beyond [`MAX_KINDS`] open kinds, they are
//! counted into one overflow summary. Accepted records (releases, successful attestations,
//! start, reload, rotation, stop) are never aggregated or dropped.
//!
//! Every line is chained ([`verify`] checks a log): it opens with `seq` (0, 1, 2, ... within one
//! process) and `prev`, the lowercase hex SHA-256 of the previous line's exact bytes (without
//! its newline). A process's first line is a `chain_start` record with `seq` 0 whose `prev` is
//! 32 fresh random bytes (the genesis), so every process run, and every replica, is its own
//! chain, and a file appended to by several runs holds several chains one after another.
//! Summaries of aggregated refusals are lines like any other and are chained too. The chain
//! shows an edited, deleted, reordered or inserted line anywhere before the last one, unless
//! whoever changed it also rewrote every later line (it is not keyed: anyone can compute
//! SHA-256); a cut tail leaves a valid chain. Keep the last `seq` and hash (`kms audit verify`
//! prints them) somewhere the host cannot write to make both show.

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufRead as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::timefmt;

/// Repeats of a refusal within this window after its first record are counted, not written.
pub const AGGREGATION_WINDOW: Duration = Duration::from_secs(10);
/// New kinds of refusal written in full per second (sustained); the burst is [`NEW_KIND_BURST`].
pub const NEW_KIND_RATE: f64 = 20.0;
/// Kinds of refusal that may be written in full at once before the rate applies.
pub const NEW_KIND_BURST: f64 = 100.0;
/// Kinds of refusal tracked at once; more are counted into the overflow summary.
pub const MAX_KINDS: usize = 4096;
/// How often a background thread writes the summaries of closed windows.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Where audit records go.
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Mutex<Chain>,
    limiter: Mutex<Limiter>,
    window: Duration,
}

/// What a record is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The first line a process writes: a new audit chain (`seq` 0, `prev` the genesis).
    ChainStart,
    /// The server started.
    Start,
    /// A client certificate went through the verification pipeline (cache miss).
    Attestation,
    /// A GetSecret call was answered with the secret.
    Release,
    /// A GetSecret call, or a connection (`gate`), was refused.
    Refusal,
    /// A connection sent faster than the gate's ingress budget and is read more slowly.
    Throttle,
    /// SIGHUP reload, applied or rejected.
    Reload,
    /// The KMS's own RA-TLS certificate was re-minted (or re-minting failed).
    Rotation,
    /// Graceful shutdown.
    Stop,
    /// An admin API call (`kms.Admin`) by an admitted operator, applied or refused: the
    /// operator, the op, never values. Callers not admitted are `refusal`s (aggregated).
    Admin,
    /// Cluster mode: the cluster key obtained or served, a state applied or refused
    /// (`rollback-suspect`, `fork`), etcd reachability transitions. Never a value or the key.
    Cluster,
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

    /// Best effort, for a refused peer: the measurements of the quote its certificate (PEM)
    /// carries, if it carries a readable one; empty otherwise. Nothing here was verified.
    pub fn claimed_in_pem(pem: &[u8]) -> Identity {
        std::str::from_utf8(pem)
            .ok()
            .and_then(|text| ratls::cert::der_from_pem(text).ok())
            .and_then(|der| ratls::cert::extract(&der).ok())
            .map(|ev| Identity::from_body(&ev.quote.body))
            .unwrap_or_default()
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
    /// Summary records: how many records like the one written in full were not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    /// Summary records: the time of the first and the last record counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
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
            repeated: None,
            first: None,
            last: None,
        }
    }

    /// Refusals are aggregated; everything else is always written.
    fn is_aggregated(&self) -> bool {
        self.verdict == Verdict::Rejected
            && matches!(
                self.event,
                Event::Refusal | Event::Attestation | Event::Throttle
            )
    }
}

impl AuditLog {
    /// Audit records to stderr.
    pub fn stderr() -> AuditLog {
        AuditLog::with_sink(Box::new(io::stderr()), AGGREGATION_WINDOW)
    }

    /// Audit records appended to `path` (created 0600 if missing).
    pub fn file(path: &Path) -> io::Result<AuditLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog::with_sink(Box::new(file), AGGREGATION_WINDOW))
    }

    /// Any writer, with its own aggregation window (tests).
    #[cfg(test)]
    pub fn to_writer(w: Box<dyn Write + Send>, window: Duration) -> AuditLog {
        AuditLog::with_sink(w, window)
    }

    fn with_sink(sink: Box<dyn Write + Send>, window: Duration) -> AuditLog {
        let inner = Arc::new(Inner {
            sink: Mutex::new(Chain::new(sink)),
            limiter: Mutex::new(Limiter::new()),
            window,
        });
        let mut open = Record::new(Event::ChainStart, Verdict::Ok);
        open.reason = Some(format!(
            "new audit chain: kms {} process {}; prev is a random genesis value",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ));
        inner.write_line(&open);
        spawn_sweeper(Arc::downgrade(&inner));
        AuditLog { inner }
    }

    /// Writes one record as one line, or counts it into its kind's open window (refusals
    /// only). Audit failures are reported on stderr and otherwise ignored: a full disk must
    /// not turn into a denial of service for attested clients.
    pub fn write(&self, record: &Record<'_>) {
        let inner = &self.inner;
        if record.is_aggregated() {
            let now = Instant::now();
            let mut limiter = inner.lock_limiter();
            let summaries = limiter.sweep(now, inner.window, false);
            let admitted = limiter.admit(record, now);
            drop(limiter);
            summaries.iter().for_each(|s| inner.write_line(&s.record()));
            if admitted {
                inner.write_line(record);
            }
            return;
        }
        if record.event == Event::Stop {
            // Nothing may stay counted but unwritten when the process ends.
            self.flush_summaries();
        }
        inner.write_line(record);
    }

    /// Writes the summaries of every open window now, closed or not.
    pub fn flush_summaries(&self) {
        let summaries = self
            .inner
            .lock_limiter()
            .sweep(Instant::now(), self.inner.window, true);
        summaries
            .iter()
            .for_each(|s| self.inner.write_line(&s.record()));
    }
}

impl Inner {
    fn lock_limiter(&self) -> MutexGuard<'_, Limiter> {
        // The limiter's maps stay consistent between statements: a poisoned one is usable.
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_line(&self, record: &Record<'_>) {
        // Serialized outside the lock; only the chain fields are added under it.
        let body = match serde_json::to_vec(record) {
            Ok(body) => body,
            Err(e) => {
                eprintln!("kms: audit record not serializable: {e}");
                return;
            }
        };
        let mut chain = match self.sink.lock() {
            Ok(chain) => chain,
            // A panic while holding the lock cannot leave a half line: write_all then flush,
            // and the chain's state changes only after the line is built.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = chain.append(&body) {
            eprintln!("kms: audit log write failed: {e}");
        }
    }
}

/// The sink and the chain's head: the next `seq` and the hash of the last line written.
struct Chain {
    out: Box<dyn Write + Send>,
    seq: u64,
    prev: [u8; 32],
}

impl Chain {
    fn new(out: Box<dyn Write + Send>) -> Chain {
        let mut genesis = [0u8; 32];
        // Without randomness two runs could share a genesis, which only makes their chains
        // look alike; the chain still links every line, so this is not a reason to stop.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut genesis).is_err() {
            eprintln!("kms: no randomness for the audit chain's genesis; using the time");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            genesis = line_hash(&nanos.to_le_bytes());
        }
        Chain {
            out,
            seq: 0,
            prev: genesis,
        }
    }

    /// Writes `body` (a serialized record, a JSON object) as one chained line. The head
    /// advances even if the write fails: the next line then names a line the log does not
    /// have, and `kms audit verify` shows the loss.
    fn append(&mut self, body: &[u8]) -> io::Result<()> {
        let rest = body.strip_prefix(b"{").unwrap_or(body);
        let mut line = Vec::with_capacity(body.len() + 100);
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(self.seq.to_string().as_bytes());
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(hex::encode(self.prev).as_bytes());
        line.extend_from_slice(b"\",");
        line.extend_from_slice(rest);
        self.prev = line_hash(&line);
        self.seq += 1;
        line.push(b'\n');
        self.out.write_all(&line).and_then(|()| self.out.flush())
    }
}

/// SHA-256 of one line's bytes, without its newline.
fn line_hash(line: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, line);
    // SHA-256 digests are 32 bytes.
    <[u8; 32]>::try_from(digest.as_ref()).unwrap_or_default()
}

/// Longest audit line [`verify`] reads (records are a few hundred bytes).
pub const MAX_VERIFIED_LINE: usize = 1024 * 1024;

/// What [`verify`] found in an intact log.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Lines (records) checked.
    pub records: u64,
    /// `chain_start` records: process runs whose records the file holds.
    pub chains: u64,
    /// The last record's `seq` and the hex SHA-256 of its line: keep them elsewhere to make a
    /// cut tail detectable.
    pub last_seq: u64,
    pub last_hash: String,
}

/// The first record where the chain breaks: its line number (from 1), its `seq` when readable,
/// and what did not match.
#[derive(Debug)]
pub struct ChainError {
    pub line: u64,
    pub seq: Option<u64>,
    pub kind: ChainBreak,
}

/// Why a record does not continue the chain.
#[derive(Debug)]
pub enum ChainBreak {
    /// The file could not be read.
    Read(io::Error),
    /// The log holds no record.
    Empty,
    /// Longer than [`MAX_VERIFIED_LINE`] or without its newline at the end of the file.
    Line(String),
    /// Not a JSON object with a numeric `seq` and a string `prev`.
    NotChained(String),
    /// A `seq` 0 record that is not `chain_start`, or whose genesis is not 64 hex digits.
    BadStart(String),
    /// The first record, or a record after a cut, does not start a chain.
    NoStart { seq: u64 },
    /// `seq` is not the previous record's plus one (a record deleted, inserted or moved).
    Seq { expected: u64, actual: u64 },
    /// `prev` is not the hash of the previous line (that line, or this one's link, changed).
    Prev { expected: String, actual: String },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": ")?;
        match &self.kind {
            ChainBreak::Read(e) => write!(f, "reading: {e}"),
            ChainBreak::Empty => write!(f, "the log holds no record"),
            ChainBreak::Line(detail) => write!(f, "{detail}"),
            ChainBreak::NotChained(detail) => write!(
                f,
                "not a chained audit record (a JSON object with `seq` and `prev`): {detail}"
            ),
            ChainBreak::BadStart(detail) => write!(f, "seq 0 must start a chain: {detail}"),
            ChainBreak::NoStart { seq } => write!(
                f,
                "expected a chain_start record (seq 0) to open the log, found seq {seq}: the records before it are missing"
            ),
            ChainBreak::Seq { expected, actual } => write!(
                f,
                "seq: expected {expected} (the previous record's plus one), found {actual}: a record was deleted, inserted or moved here"
            ),
            ChainBreak::Prev { expected, actual } => write!(
                f,
                "prev: expected {expected} (SHA-256 of the previous line), found {actual}: the previous line or this record was changed, or records were reordered"
            ),
        }
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ChainBreak::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// Checks every line of an audit log: each `chain_start` (seq 0) opens a chain, and every other
/// line has the previous line's `seq` plus one and its hash as `prev`. Returns the first break.
pub fn verify(mut input: impl io::BufRead) -> Result<ChainReport, ChainError> {
    #[derive(serde::Deserialize)]
    struct Link {
        seq: u64,
        prev: String,
        event: Option<String>,
    }
    let mut report = ChainReport {
        records: 0,
        chains: 0,
        last_seq: 0,
        last_hash: String::new(),
    };
    let mut head: Option<(u64, [u8; 32])> = None;
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        let fail = |seq, kind| ChainError {
            line: number,
            seq,
            kind,
        };
        buf.clear();
        let read = io::Read::take(&mut input, MAX_VERIFIED_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| fail(None, ChainBreak::Read(e)))?;
        if read == 0 {
            break;
        }
        let Some(line) = buf.strip_suffix(b"\n") else {
            let why = if buf.len() > MAX_VERIFIED_LINE {
                format!("longer than {MAX_VERIFIED_LINE} bytes")
            } else {
                "the last line has no newline: a write was cut short".to_owned()
            };
            return Err(fail(None, ChainBreak::Line(why)));
        };
        let link: Link = serde_json::from_slice(line)
            .map_err(|e| fail(None, ChainBreak::NotChained(e.to_string())))?;
        let fail = |kind| fail(Some(link.seq), kind);
        if link.seq == 0 {
            if link.event.as_deref() != Some("chain_start") {
                return Err(fail(ChainBreak::BadStart(format!(
                    "event is {:?}, expected \"chain_start\"",
                    link.event.as_deref().unwrap_or("(none)")
                ))));
            }
            if link.prev.len() != 64 || hex::decode(&link.prev).is_err() {
                return Err(fail(ChainBreak::BadStart(format!(
                    "genesis prev {:?} is not 64 hex digits",
                    link.prev
                ))));
            }
            report.chains += 1;
        } else {
            let Some((seq, hash)) = head else {
                return Err(fail(ChainBreak::NoStart { seq: link.seq }));
            };
            if link.seq != seq + 1 {
                return Err(fail(ChainBreak::Seq {
                    expected: seq + 1,
                    actual: link.seq,
                }));
            }
            let expected = hex::encode(hash);
            if link.prev != expected {
                return Err(fail(ChainBreak::Prev {
                    expected,
                    actual: link.prev,
                }));
            }
        }
        head = Some((link.seq, line_hash(line)));
        report.records += 1;
    }
    let Some((seq, hash)) = head else {
        return Err(ChainError {
            line: 1,
            seq: None,
            kind: ChainBreak::Empty,
        });
    };
    report.last_seq = seq;
    report.last_hash = hex::encode(hash);
    Ok(report)
}

/// Writes the summaries of closed windows even when no new record arrives; ends with the log.
fn spawn_sweeper(inner: Weak<Inner>) {
    let spawned = std::thread::Builder::new()
        .name("kms-audit-sweep".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                std::thread::sleep(SWEEP_INTERVAL);
                let Some(inner) = inner.upgrade() else { return };
                let summaries = inner
                    .lock_limiter()
                    .sweep(Instant::now(), inner.window, false);
                summaries.iter().for_each(|s| inner.write_line(&s.record()));
            }
        });
    if let Err(e) = spawned {
        // Summaries are then written by the next refusal or at stop instead.
        eprintln!("kms: audit summary thread not started: {e}");
    }
}

/// What makes two refusals "the same": the event, the peer's address without its port, the
/// status and the failing check (not the full reason, which carries per-certificate values).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    event: Event,
    peer: String,
    status: Option<&'static str>,
    check: String,
}

impl Kind {
    fn of(record: &Record<'_>) -> Kind {
        Kind {
            event: record.event,
            peer: record.peer.map(peer_host).unwrap_or_default().to_owned(),
            status: record.status,
            check: record.reason.as_deref().map(check_of).unwrap_or_default(),
        }
    }
}

/// `ipv4:127.0.0.1:5555` -> `ipv4:127.0.0.1`, `ipv6:[::1]:5555` -> `ipv6:[::1]`: every
/// connection of one peer counts together.
fn peer_host(peer: &str) -> &str {
    match peer.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => peer,
    }
}

/// The name of the failing check (`attestation check `X` failed: ...`), else the reason up
/// to its first colon, at most 64 characters.
fn check_of(reason: &str) -> String {
    if let Some(rest) = reason.strip_prefix("attestation check `") {
        if let Some((check, _)) = rest.split_once('`') {
            return check.to_owned();
        }
    }
    reason
        .split(':')
        .next()
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect()
}

/// An open aggregation window: the first record was written at `opened`.
struct Window {
    opened: Instant,
    suppressed: u64,
    first: Option<String>,
    last: Option<String>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            opened: now,
            suppressed: 0,
            first: None,
            last: None,
        }
    }

    fn count(&mut self, time: &str) {
        self.suppressed += 1;
        if self.first.is_none() {
            self.first = Some(time.to_owned());
        }
        self.last = Some(time.to_owned());
    }
}

/// A summary to write: `kind` None is the overflow summary.
struct Summary {
    kind: Option<Kind>,
    window: Window,
}

impl Summary {
    fn record(&self) -> Record<'_> {
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.repeated = Some(self.window.suppressed);
        rec.first = self.window.first.clone();
        rec.last = self.window.last.clone();
        match &self.kind {
            Some(kind) => {
                rec.event = kind.event;
                rec.peer = Some(&kind.peer)
                    .filter(|p| !p.is_empty())
                    .map(String::as_str);
                rec.status = kind.status;
                rec.reason = Some(format!(
                    "{} more refusals of this peer failing `{}` were counted, not written \
                     (aggregated; see first and last)",
                    self.window.suppressed, kind.check
                ));
            }
            None => {
                rec.reason = Some(format!(
                    "{} refusals of new kinds (peers or checks) not written one by one: more \
                     than {NEW_KIND_RATE} per second or {MAX_KINDS} at once (aggregated)",
                    self.window.suppressed
                ));
            }
        }
        rec
    }
}

/// Per-kind windows, a token bucket for new kinds, and the overflow window.
struct Limiter {
    windows: HashMap<Kind, Window>,
    overflow: Option<Window>,
    tokens: f64,
    refilled: Instant,
    swept: Instant,
}

impl Limiter {
    fn new() -> Limiter {
        let now = Instant::now();
        Limiter {
            windows: HashMap::new(),
            overflow: None,
            tokens: NEW_KIND_BURST,
            refilled: now,
            swept: now,
        }
    }

    /// True when `record` is to be written in full; otherwise it has been counted.
    fn admit(&mut self, record: &Record<'_>, now: Instant) -> bool {
        let kind = Kind::of(record);
        if let Some(open) = self.windows.get_mut(&kind) {
            open.count(&record.time);
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 && self.windows.len() < MAX_KINDS {
            self.tokens -= 1.0;
            self.windows.insert(kind, Window::new(now));
            return true;
        }
        self.overflow
            .get_or_insert_with(|| Window::new(now))
            .count(&record.time);
        false
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * NEW_KIND_RATE).min(NEW_KIND_BURST);
        self.refilled = now;
    }

    /// Closes the windows older than `window` (all of them with `all`) and returns the
    /// summaries of those that counted something. Scans at most once per sweep interval.
    fn sweep(&mut self, now: Instant, window: Duration, all: bool) -> Vec<Summary> {
        if !all && now.saturating_duration_since(self.swept) < SWEEP_INTERVAL.min(window) {
            return Vec::new();
        }
        self.swept = now;
        let closed = |w: &Window| all || now.saturating_duration_since(w.opened) >= window;
        let keys: Vec<Kind> = self
            .windows
            .iter()
            .filter(|(_, w)| closed(w))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(w) = self.windows.remove(&key) {
                if w.suppressed > 0 {
                    out.push(Summary {
                        kind: Some(key),
                        window: w,
                    });
                }
            }
        }
        if self.overflow.as_ref().is_some_and(closed) {
            if let Some(w) = self.overflow.take() {
                out.push(Summary {
                    kind: None,
                    window: w,
                });
            }
        }
        out
    }
}

/// Audit lines written to memory, for the tests of this module and of the gate.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Captured {
    /// The records written so far, one JSON value a line, without the chain's opening record.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] != "chain_start")
            .collect()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Shared = Captured;

    #[test]
    fn records_are_single_json_lines_with_escaped_names() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()), AGGREGATION_WINDOW);
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some("ipv4:127.0.0.1:5555");
        rec.secret = Some("evil\"\nname");
        rec.status = Some("NOT_FOUND");
        rec.identity.mr_enclave = Some("ab".repeat(32));
        rec.identity.matched = Some("app".into());
        log.write(&rec);
        log.write(&Record::new(Event::Stop, Verdict::Ok));
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["event"], "refusal");
        assert_eq!(v["verdict"], "rejected");
        assert_eq!(v["secret"], "evil\"\nname");
        assert_eq!(v["matched"], "app");
        assert_eq!(v["mr_enclave"].as_str().unwrap().len(), 64);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("mr_signer").is_none());
    }

    fn refusal<'a>(peer: &'a str, status: &'static str, reason: &str) -> Record<'a> {
        let mut rec = Record::new(Event::Refusal, Verdict::Rejected);
        rec.peer = Some(peer);
        rec.status = Some(status);
        rec.reason = Some(reason.to_owned());
        rec
    }

    fn lines(out: &Shared) -> Vec<serde_json::Value> {
        out.records()
    }

    /// Every counted record shows up either in full or in a summary's `repeated`.
    fn accounted(lines: &[serde_json::Value], event: &str) -> u64 {
        lines
            .iter()
            .filter(|v| v["event"] == event && v["verdict"] == "rejected")
            .map(|v| v["repeated"].as_u64().unwrap_or(1))
            .sum()
    }

    #[test]
    fn twenty_thousand_refusals_on_one_connection_write_a_handful_of_lines_and_lose_no_release() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()), Duration::from_secs(3600));
        let reason = "attestation check `measurement-policy` failed: no sgx_mrs entry matched";
        for i in 0..20_000u32 {
            let mut att = refusal("ipv4:127.0.0.1:40000", "UNAUTHENTICATED", reason);
            att.event = Event::Attestation;
            log.write(&att);
            log.write(&refusal("ipv4:127.0.0.1:40000", "UNAUTHENTICATED", reason));
            if i % 1000 == 0 {
                let mut release = Record::new(Event::Release, Verdict::Ok);
                release.peer = Some("ipv4:127.0.0.1:40001");
                release.secret = Some("image_key");
                log.write(&release);
            }
        }
        log.write(&Record::new(Event::Stop, Verdict::Ok));
        let lines = lines(&out);
        assert!(lines.len() <= 30, "{} lines", lines.len());
        assert_eq!(lines.iter().filter(|v| v["event"] == "release").count(), 20);
        assert_eq!(accounted(&lines, "refusal"), 20_000);
        assert_eq!(accounted(&lines, "attestation"), 20_000);
        let summary = lines.iter().find(|v| v["repeated"].is_u64()).unwrap();
        assert_eq!(summary["peer"], "ipv4:127.0.0.1", "ports are merged");
        assert!(summary["first"].is_string() && summary["last"].is_string());
        assert_eq!(
            lines.last().unwrap()["event"],
            "stop",
            "summaries precede stop"
        );
    }

    #[test]
    fn a_closed_window_is_summarized_by_the_sweeper_without_another_record() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()), Duration::from_millis(200));
        for _ in 0..5 {
            log.write(&refusal(
                "ipv6:[::1]:1",
                "UNAUTHENTICATED",
                "no client certificate",
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(&out).len() < 2 {
            assert!(Instant::now() < deadline, "no summary: {:?}", lines(&out));
            std::thread::sleep(Duration::from_millis(50));
        }
        let lines = lines(&out);
        assert_eq!(lines[1]["repeated"], 4);
        assert_eq!(lines[1]["peer"], "ipv6:[::1]");
        // After the window a new refusal is written in full again.
        log.write(&refusal(
            "ipv6:[::1]:2",
            "UNAUTHENTICATED",
            "no client certificate",
        ));
        assert!(self::lines(&out)[2].get("repeated").is_none());
    }

    #[test]
    fn new_kinds_beyond_the_rate_are_counted_into_one_overflow_summary() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()), Duration::from_secs(3600));
        let peers: Vec<String> = (0..1000)
            .map(|i| format!("ipv4:10.0.{}.{}:1", i / 250, i % 250))
            .collect();
        for peer in &peers {
            log.write(&refusal(peer, "UNAUTHENTICATED", "no client certificate"));
        }
        log.flush_summaries();
        let lines = lines(&out);
        assert!(
            lines.len() <= NEW_KIND_BURST as usize + 20,
            "{}",
            lines.len()
        );
        assert_eq!(accounted(&lines, "refusal"), 1000);
        assert!(
            lines
                .iter()
                .any(|v| v.get("peer").is_none() && v["repeated"].is_u64())
        );
    }

    #[test]
    fn peers_lose_their_port_and_checks_their_detail() {
        assert_eq!(peer_host("ipv4:127.0.0.1:5555"), "ipv4:127.0.0.1");
        assert_eq!(peer_host("ipv6:[::1]:5555"), "ipv6:[::1]");
        assert_eq!(peer_host("unix:"), "unix:");
        assert_eq!(
            check_of("attestation check `tcb-status` failed: TCB status OutOfDate"),
            "tcb-status"
        );
        assert_eq!(check_of("no secret named \"x\""), "no secret named \"x\"");
    }

    /// A log of two process runs appended to one file, with releases, refusals and an
    /// aggregated summary: the raw lines.
    fn two_runs() -> Vec<String> {
        let out = Shared::default();
        for run in 0..2 {
            let log = AuditLog::to_writer(Box::new(out.clone()), Duration::from_secs(3600));
            log.write(&Record::new(Event::Start, Verdict::Ok));
            for i in 0..3 {
                let mut release = Record::new(Event::Release, Verdict::Ok);
                release.peer = Some("ipv4:127.0.0.1:40001");
                release.secret = Some("image_key");
                release.reason = Some(format!("run {run} release {i}"));
                log.write(&release);
                log.write(&refusal(
                    "ipv4:127.0.0.1:1",
                    "NOT_FOUND",
                    "no secret named \"x\"",
                ));
            }
            log.write(&Record::new(Event::Stop, Verdict::Ok));
        }
        out.text().lines().map(str::to_owned).collect()
    }

    fn verify_lines(lines: &[String]) -> Result<ChainReport, ChainError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify(text.as_bytes())
    }

    #[test]
    fn an_intact_log_of_two_runs_verifies_as_two_chains() {
        let lines = two_runs();
        assert!(
            lines.iter().any(|l| l.contains("\"repeated\":2")),
            "{lines:?}"
        );
        let report = verify_lines(&lines).unwrap();
        assert_eq!(report.records, lines.len() as u64);
        assert_eq!(report.chains, 2);
        let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(report.last_seq, last["seq"].as_u64().unwrap());
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["event"], "chain_start");
        assert_eq!(first["seq"], 0);
        assert!(
            lines[0].starts_with("{\"seq\":0,\"prev\":\""),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn each_chain_starts_from_a_fresh_genesis() {
        let lines = two_runs();
        let starts: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["seq"] == 0)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_ne!(starts[0]["prev"], starts[1]["prev"]);
    }

    #[test]
    fn audit_verify_catches_an_edited_record() {
        let mut lines = two_runs();
        assert!(
            lines[2].contains("\"secret\":\"image_key\""),
            "{}",
            lines[2]
        );
        lines[2] = lines[2].replace("image_key", "image_kez");
        let err = verify_lines(&lines).unwrap_err();
        assert_eq!(
            err.line, 4,
            "the record after the edited one names the break"
        );
        assert!(matches!(err.kind, ChainBreak::Prev { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("line 4 (seq 3): prev: expected "),
            "{err}"
        );
    }

    #[test]
    fn audit_verify_catches_a_deleted_record() {
        let mut lines = two_runs();
        lines.remove(4);
        let err = verify_lines(&lines).unwrap_err();
        assert_eq!(err.line, 5);
        assert_eq!(err.seq, Some(5));
        assert!(
            matches!(
                err.kind,
                ChainBreak::Seq {
                    expected: 4,
                    actual: 5
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn audit_verify_catches_a_reordered_record() {
        let mut lines = two_runs();
        lines.swap(3, 4);
        let err = verify_lines(&lines).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(
            matches!(
                err.kind,
                ChainBreak::Seq {
                    expected: 3,
                    actual: 4
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn audit_verify_catches_a_renumbered_move_and_an_insertion() {
        // Moving a record and fixing its seq still breaks the hash links.
        let mut lines = two_runs();
        let mut moved: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
        let mut other: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        std::mem::swap(&mut moved["seq"], &mut other["seq"]);
        lines[3] = moved.to_string();
        lines[4] = other.to_string();
        assert!(matches!(
            verify_lines(&lines).unwrap_err().kind,
            ChainBreak::Prev { .. }
        ));
        let mut lines = two_runs();
        let copy = lines[2].clone();
        lines.insert(3, copy);
        assert!(matches!(
            verify_lines(&lines).unwrap_err().kind,
            ChainBreak::Seq { .. }
        ));
    }

    #[test]
    fn a_cut_tail_is_not_detectable_by_the_chain_alone() {
        let mut lines = two_runs();
        let full = verify_lines(&lines).unwrap();
        lines.truncate(lines.len() - 3);
        let cut = verify_lines(&lines).unwrap();
        // Only a copy of the last seq and hash kept elsewhere shows the cut.
        assert_ne!(cut.last_hash, full.last_hash);
        assert_eq!(cut.last_seq + 3, full.last_seq);
    }

    #[test]
    fn audit_verify_refuses_logs_that_do_not_open_a_chain_or_are_not_chained() {
        let lines = two_runs();
        let err = verify_lines(&lines[1..]).unwrap_err();
        assert!(matches!(err.kind, ChainBreak::NoStart { seq: 1 }), "{err}");
        let err = verify_lines(&["{\"event\":\"start\"}".to_owned()]).unwrap_err();
        assert!(matches!(err.kind, ChainBreak::NotChained(_)), "{err}");
        let mut forged = lines.clone();
        forged[5] = forged[5].replacen("\"seq\":5", "\"seq\":0", 1);
        let err = verify_lines(&forged).unwrap_err();
        assert!(matches!(err.kind, ChainBreak::BadStart(_)), "{err}");
        assert!(matches!(
            verify(&b""[..]).unwrap_err().kind,
            ChainBreak::Empty
        ));
        let text = format!("{}\n{}", lines[0], lines[1]);
        let err = verify(text.as_bytes()).unwrap_err();
        assert!(matches!(err.kind, ChainBreak::Line(_)), "{err}");
        assert_eq!(err.line, 2);
    }
}
