//! gRPC C-core's log lines, written as the KMS's own: `kms: grpc <LEVEL>: <message> (<file>:<line>)`.
//!
//! By default C-core writes its lines straight to stderr. Here they go through grpcio's `log`
//! bridge instead, with the same levels: `GRPC_VERBOSITY` (`DEBUG`, `INFO`, `ERROR`, `NONE`;
//! default `ERROR`) still chooses them, as for any gRPC program.
//!
//! One message is dropped: "No match found for server name: NAME.", which C-core logs as an
//! ERROR on every connection from a client that sends SNI (gRPC clients send their target's
//! host name; init sends the KMS address's host). It means that no certificate of the server
//! names that host, so the only one is used, which is the KMS's RA-TLS certificate either way:
//! RA-TLS peers trust the quote, not a name. Left in, it is an error line per attestation that
//! says nothing is wrong, and costs a formatted timestamp and a write per connection.
//!
//! One message is also audited: "SSL_write failed with error ..." (`SSL_ERROR_WANT_WRITE` for
//! a certificate of 8.5 KB, `SSL_ERROR_SSL` for 32 KB) is how gRPC core 1.56 loses a TLS 1.3
//! connection whose client certificate is larger than about 8 KB DER. BoringSSL puts the client's certificate into each of the two session tickets it
//! issues, and sends them with the server's first write; gRPC's TSI layer pushes that write
//! through a 17 KiB memory BIO and treats the BIO being full as fatal (`DoSslWrite`), so the
//! connection closes before any call reaches the service. Nothing in grpcio's API turns the
//! tickets off, so the KMS cannot fix it; it records a refusal naming the cause and the way
//! out (a certificate under 8 KB, or TLS 1.2, where it works), instead of losing it silently.

use std::sync::{Arc, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::audit::{self, AuditLog, Event, Verdict};

/// The message dropped (see the module documentation), up to the host name.
const SNI_MISMATCH: &str = "No match found for server name: ";
/// gRPC core's message when a TLS 1.3 session's tickets do not fit its write buffer. Its
/// writes go to a memory BIO, so SSL_write fails for no other reason a peer controls.
const TICKET_OVERFLOW: &str = "SSL_write failed with error ";
/// The audit reason for [`TICKET_OVERFLOW`].
pub const TICKET_OVERFLOW_REASON: &str = "tls: a connection was closed after its handshake, before any call \
     (gRPC core's SSL_write failed): most likely its client certificate is too large for \
     TLS 1.3 in gRPC core 1.56, which cannot send the \
     session tickets that carry it (limit about 8 KB DER over TLS 1.3); use a smaller \
     RA-TLS certificate or TLS 1.2";

/// Where [`TICKET_OVERFLOW`] is audited, once the server has its audit log.
static AUDIT: OnceLock<Arc<AuditLog>> = OnceLock::new();

/// Audits connections gRPC core loses to oversized client certificates (see the module
/// documentation) in `audit`. A second call changes nothing.
pub fn audit_tls_failures(audit: Arc<AuditLog>) {
    let _ = AUDIT.set(audit);
}

struct GrpcLog;

static LOGGER: GrpcLog = GrpcLog;

/// Routes C-core's log lines here, at the level `GRPC_VERBOSITY` names. Call before gRPC
/// starts; a second call changes nothing.
pub fn install() {
    let level = level_from(std::env::var("GRPC_VERBOSITY").ok().as_deref());
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
    grpcio::redirect_log();
}

/// `GRPC_VERBOSITY` as gRPC reads it (case-insensitive); anything else is C-core's default.
fn level_from(verbosity: Option<&str>) -> LevelFilter {
    match verbosity.map(str::to_ascii_uppercase).as_deref() {
        Some("DEBUG") => LevelFilter::Debug,
        Some("INFO") => LevelFilter::Info,
        Some("NONE") => LevelFilter::Off,
        _ => LevelFilter::Error,
    }
}

impl Log for GrpcLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if let Some(audit) = AUDIT.get() {
            audit_record(audit, record);
        }
        if let Some(line) = format_line(record) {
            eprintln!("{line}");
        }
    }

    fn flush(&self) {}
}

fn audit_record(audit: &AuditLog, record: &Record<'_>) {
    if record.level() != Level::Error {
        return;
    }
    if !record.args().to_string().starts_with(TICKET_OVERFLOW) {
        return;
    }
    let mut rec = audit::Record::new(Event::Refusal, Verdict::Rejected);
    rec.status = Some("UNAVAILABLE");
    rec.reason = Some(TICKET_OVERFLOW_REASON.to_owned());
    audit.write(&rec);
}

/// The line for `record`, or `None` when it is filtered out.
fn format_line(record: &Record<'_>) -> Option<String> {
    if record.level() > log::max_level() {
        return None;
    }
    let message = record.args().to_string();
    if message.starts_with(SNI_MISMATCH) {
        return None;
    }
    let file = record.file().unwrap_or("?");
    let file = file.rsplit('/').next().unwrap_or(file);
    let level = match record.level() {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    };
    Some(format!(
        "kms: grpc {level}: {} ({file}:{})",
        message.trim_end(),
        record.line().unwrap_or(0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: Level, message: &str) -> Option<String> {
        log::set_max_level(LevelFilter::Error);
        format_line(
            &Record::builder()
                .level(level)
                .args(format_args!("{message}"))
                .file(Some("/src/core/tsi/ssl_transport_security.cc"))
                .line(Some(1420))
                .build(),
        )
    }

    #[test]
    fn errors_keep_their_message_and_source_in_the_kms_format() {
        assert_eq!(
            line(
                Level::Error,
                "Handshake failed with fatal error SSL_ERROR_SSL.\n"
            )
            .unwrap(),
            "kms: grpc ERROR: Handshake failed with fatal error SSL_ERROR_SSL. \
             (ssl_transport_security.cc:1420)"
        );
    }

    #[test]
    fn the_sni_mismatch_is_dropped_and_nothing_else_is() {
        assert_eq!(
            line(Level::Error, "No match found for server name: localhost."),
            None
        );
        assert!(line(Level::Error, "No match found for ALPN").is_some());
    }

    #[test]
    fn levels_below_grpc_verbosity_are_dropped() {
        assert_eq!(line(Level::Info, "grpc_init"), None);
    }

    #[test]
    fn grpc_verbosity_is_read_as_grpc_reads_it() {
        assert_eq!(level_from(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from(Some("INFO")), LevelFilter::Info);
        assert_eq!(level_from(Some("NONE")), LevelFilter::Off);
        assert_eq!(level_from(Some("ERROR")), LevelFilter::Error);
        assert_eq!(level_from(Some("loud")), LevelFilter::Error);
        assert_eq!(level_from(None), LevelFilter::Error);
    }
}
