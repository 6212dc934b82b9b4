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

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The message dropped (see the module documentation), up to the host name.
const SNI_MISMATCH: &str = "No match found for server name: ";

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
        if let Some(line) = format_line(record) {
            eprintln!("{line}");
        }
    }

    fn flush(&self) {}
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
#[allow(clippy::unwrap_used)]
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
