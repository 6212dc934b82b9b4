//! `app`: the seed's Flask-TLS customer portal (`rest_api.py`) in Rust — HTTPS on rustls,
//! customers in an embedded SQLite file — the workload the attested provisioning flow protects.
//!
//! In Occlum it is started from the encrypted rootfs after init has written `/etc/flask.crt`
//! and `/etc/flask.key`; with no arguments it behaves like `rest_api.py` (HTTPS on
//! `0.0.0.0:4996` with those two files). It runs unchanged as a plain Linux process.
//!
//! # Command line
//!
//! ```text
//! app [--listen ADDR] [--cert FILE] [--key FILE] [--data-dir DIR] [--workers N]
//!     [--request-timeout SECS] [--idle-timeout SECS] [--quiet] [--help]
//! ```
//!
//! | flag | default | meaning |
//! |---|---|---|
//! | `--listen ADDR` | `0.0.0.0:4996` | address to bind; port `0` picks a free port |
//! | `--cert FILE` | `/etc/flask.crt` | PEM certificate chain, leaf first |
//! | `--key FILE` | `/etc/flask.key` | PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) matching the leaf |
//! | `--data-dir DIR` | `/var/lib/app` | holds `customers.sqlite3`; created (mode 0700) if missing |
//! | `--workers N` | `16` | connection worker threads (1..=1024); up to `4 × N` accepted connections wait |
//! | `--request-timeout SECS` | `10` | TLS handshake, reading one request, writing one response |
//! | `--idle-timeout SECS` | `5` | how long a kept-alive connection may sit idle between requests |
//! | `--quiet` | off | no per-request log lines (start-up and errors are still printed) |
//!
//! The data directory defaults to `/var/lib/app` because, like the certificate paths, it lives
//! in the rootfs: under Occlum that is the encrypted, integrity-protected SEFS whose writable
//! layer persists between runs of the same instance. Outside Occlum pass `--data-dir`.
//! The process runs `workers + 2` threads (the workers, the accept loop, the busy responder):
//! Occlum's `resource_limits.max_num_of_threads` must allow at least that many.
//!
//! Once the socket is bound the app prints exactly one line to stdout,
//! `listening on https://ADDR`, with the real port when `--listen` asked for port 0.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | `--help` or `--version` printed |
//! | 1 | the server stopped on an unexpected I/O error |
//! | 2 | bad command line |
//! | 3 | certificate or key missing, unreadable, invalid, or not matching each other (failed provisioning) |
//! | 4 | data directory or database unusable (including another instance holding it) |
//! | 5 | cannot listen on the requested address |
//!
//! The server otherwise runs until killed. Every `PUT` is committed and fsynced before it is
//! answered, so SIGTERM or SIGKILL loses nothing that was acknowledged.
//!
//! # HTTP API (the seed's, plus defined errors)
//!
//! All bodies are JSON in Python's `json.dumps` format followed by `\n`, which is what
//! Flask-RESTful's `output_json` sends: `{"1": "Tom"}\n` (separators `", "` and `": "`,
//! non-ASCII escaped as `\uXXXX`). `Content-Type: application/json`.
//!
//! | request | response |
//! |---|---|
//! | `PUT /customer/<id>` with form field `data` (`application/x-www-form-urlencoded`, as `curl -d data=Tom` sends; no Content-Type is read as a form) or JSON `{"data": "..."}` | `200 {"<id>": "<data>"}` |
//! | `GET /customer/<id>` (and `HEAD`) | `200 {"<id>": "<data>"}`, or `404 {"error": "customer not found"}` |
//! | other method on `/customer/<id>` | `405` with `Allow: GET, HEAD, PUT` |
//! | any other path | `404 {"error": "not found"}` |
//!
//! `<id>` is one non-empty path segment, percent-decoded (`%2F` is part of the id, not a
//! separator); the query string is ignored. Errors are `{"error": "<reason>"}`: `400`
//! malformed request / missing `data` / invalid JSON / not UTF-8, `408` request not received
//! in time, `411` chunked (or any `Transfer-Encoding`) request body, `413` body over 64 KiB,
//! `415` other content types (multipart is not supported), `417` unknown `Expect`, `431` head
//! over 8 KiB or more than 32 header fields, `500` database failure, `503` all workers and
//! the waiting queue busy. `Expect: 100-continue` is honoured (curl sends it for large bodies).
//!
//! Compared with the original `rest_api.py` under Flask 3 and Flask-RESTful: every success
//! body is byte-identical (escapes, repeated fields, invalid `%` escapes kept literally).
//! Differences on purpose: an unknown id is `404` (Flask raises `KeyError`: `500
//! {"message": "Internal Server Error"}`); errors are `{"error": ...}` (Flask-RESTful says
//! `message`; unknown routes get Flask's HTML page); JSON bodies are accepted (Flask: 400); a
//! form value whose escapes decode to invalid UTF-8 is a 400 (Werkzeug 3 stores the escape
//! text, e.g. `%FF`); `%2F` inside an id is part of the id (Flask: 404); `OPTIONS` is a 405.
//!
//! Connections are kept alive (HTTP/1.1 default, HTTP/1.0 with `Connection: keep-alive`) until
//! the client closes, the idle timeout passes, or accepted connections are waiting with no
//! idle worker: then the response carries `Connection: close`, so every client is served.
//!
//! # Why SQLite (rusqlite, bundled)
//!
//! The choice was between SQLite and redb, both single-file embedded stores:
//!
//! - **Occlum compatibility.** Occlum's `fcntl` implements classic POSIX record locks
//!   (`F_GETLK`/`F_SETLK`/`F_SETLKW`) and `flock`, but not the open-file-description locks
//!   (`F_OFD_SETLK`) that redb 4 takes on its file; SQLite needs only the classic ones. SQLite
//!   runs in WAL mode with `locking_mode=EXCLUSIVE`, which keeps the WAL index in heap memory:
//!   no `-shm` file and no shared `mmap`, which Occlum only emulates inside the enclave.
//! - **fsync.** On the encrypted SEFS every fsync flushes encrypted blocks and their MACs, and
//!   file creation is expensive. WAL with `synchronous=FULL` appends to one file and fsyncs it
//!   once per commit; no journal file is created and deleted per write.
//! - **Single writer.** The app is the only process using the database; the exclusive lock,
//!   taken at start-up, makes a second instance on the same directory fail fast (exit 4).
//!   Inside the process one connection behind a mutex serialises reads and writes, which is
//!   far from the bottleneck (TLS is).
//! - **Size and maturity.** SQLite adds about 1 MB of code, needs only a C compiler
//!   (`musl-gcc` for the musl target) and has the most widely deployed, stable file format;
//!   `temp_store=MEMORY` avoids temporary files altogether.

#![forbid(unsafe_code)]

mod api;
mod cli;
mod http;
mod pyjson;
mod server;
mod store;
mod tls;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use cli::{Command, Config};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("app: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Everything that can stop the app, each mapped to one documented exit code.
#[derive(Debug)]
enum AppError {
    Usage(cli::UsageError),
    Tls(tls::TlsSetupError),
    Store(store::StoreError),
    Listen {
        addr: String,
        source: std::io::Error,
    },
    Serve(std::io::Error),
}

impl AppError {
    fn exit_code(&self) -> u8 {
        match self {
            AppError::Serve(_) => 1,
            AppError::Usage(_) => 2,
            AppError::Tls(_) => 3,
            AppError::Store(_) => 4,
            AppError::Listen { .. } => 5,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Usage(err) => write!(f, "{err} (see --help)"),
            AppError::Tls(err) => write!(f, "{err}"),
            AppError::Store(err) => write!(f, "{err}"),
            AppError::Listen { addr, source } => {
                write!(f, "cannot listen on {addr} (--listen): {source}")
            }
            AppError::Serve(err) => write!(f, "server stopped: {err}"),
        }
    }
}

fn run() -> Result<(), AppError> {
    let config = match cli::parse(std::env::args_os().skip(1)).map_err(AppError::Usage)? {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Command::Version => {
            println!("app {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Serve(config) => config,
    };
    serve(config)
}

/// Loads the certificate first (the usual failure after bad provisioning), then the
/// database, then binds, announces the address and serves until an I/O error.
fn serve(config: Config) -> Result<(), AppError> {
    let tls = tls::server_config(&config.cert, &config.key).map_err(AppError::Tls)?;
    let store = store::Store::open(&config.data_dir).map_err(AppError::Store)?;
    let listener = TcpListener::bind(&config.listen).map_err(|source| AppError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| AppError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    announce(&local);
    eprintln!(
        "app: serving {} with {} workers, data in {}",
        config.cert.display(),
        config.server.workers,
        store.path().display()
    );
    server::serve(listener, tls, Arc::new(store), &config.server).map_err(AppError::Serve)
}

/// The one stdout line tests and scripts wait for.
fn announce(local: &std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the server; the address is also implied by --listen.
    let _ = writeln!(out, "listening on https://{local}");
    let _ = out.flush();
}
