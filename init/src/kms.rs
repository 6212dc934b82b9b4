//! The KMS session: ONE mutually attested TLS connection, then every GetSecret over it, all
//! sent at once (concurrent HTTP/2 streams, leaving with the last TLS flight), so fetching
//! costs one round trip whatever the number of secrets.
//!
//! Guarantees: connection attempts go through every configured KMS address (and every address
//! a name resolves to) in order, and are retried in rounds with capped exponential backoff
//! until the deadline (and boot makes a new connection, from the next address, when one fails
//! after the handshake, see [`KmsError::is_transient`]), but attestation and policy failures
//! are final at whichever address they happen and name the failing check; a session exists
//! only with the [`VerifiedPeer`] the handshake produced; every reply is decoded strictly into
//! a zeroizing buffer; errors name secrets, never their values.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use grpc_unary::{Channel, ClientConfig, Code};
use ratls::tls::HandshakePeers;
use ratls::verify::VerifiedPeer;
use rustls_pki_types::ServerName;
use zeroize::Zeroizing;

use crate::config::KmsAddress;

pub use grsecret::GET_SECRET;
pub use grsecret::client::{MAX_REPLY_LEN, MAX_SECRET_LEN, decode_secret};

/// First pause after a failed connection attempt; it doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Smallest budget an attempt gets, even at the deadline.
pub const MIN_ATTEMPT_BUDGET: Duration = Duration::from_millis(100);
/// Budget of one TCP connect (never more than the time left before the deadline).
pub const ATTEMPT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Budget of one TLS handshake; it includes fetching the KMS's collateral.
pub const ATTEMPT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of each GetSecret call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An open, attested session with the KMS.
pub struct Session {
    channel: Channel,
    peer: VerifiedPeer,
    addr: String,
}

/// How the connection came about, for the log.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Attempts made (1 when the KMS answered at once).
    pub attempts: u32,
    /// The address that answered.
    pub target: Option<Target>,
    /// How many addresses the round had.
    pub candidates: usize,
}

/// A decoded secret. Never printed; zeroized on drop.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The secret's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Why the KMS session failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum KmsError {
    /// No connection before the deadline; `last` is the last attempt's error.
    Unreachable {
        addr: String,
        attempts: u32,
        waited: Duration,
        last: Box<grpc_unary::Error>,
    },
    /// The KMS's evidence failed a check of the pipeline; `detail` names the check (its
    /// [`ratls::verify::VerifyError`] message). Not retried.
    Attestation { addr: String, detail: String },
    /// The connection failed in a way retrying cannot fix (TLS alert, protocol error).
    Connection {
        addr: String,
        source: Box<grpc_unary::Error>,
    },
    /// The handshake completed without a verified peer (must not happen; fail closed).
    Unverified { addr: String },
    /// The batch of GetSecret calls failed as a whole (connection, deadline, protocol).
    Fetch {
        addr: String,
        names: Vec<String>,
        source: Box<grpc_unary::Error>,
    },
    /// GetSecret failed.
    Secret {
        name: String,
        source: Box<grpc_unary::Error>,
    },
    /// The reply does not hold (JSON-quoted) base64 of a non-empty secret.
    BadReply { name: String, detail: String },
}

impl KmsError {
    /// True for failures of the KMS's attestation or of our policy.
    pub fn is_attestation(&self) -> bool {
        matches!(self, Self::Attestation { .. } | Self::Unverified { .. })
    }

    /// True when the KMS never answered.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// True when fetching failed because the connection did, after the handshake: it was
    /// dropped, timed out, or shut down (GOAWAY, or gRPC's UNAVAILABLE from a server that is
    /// stopping) before every reply arrived. A new connection may well succeed. Answers the
    /// KMS gave (a refusal, a missing secret, a bad reply) and TLS alerts are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch { source, .. } => retryable(source),
            Self::Secret { source, .. } => {
                retryable(source)
                    || matches!(
                        source.as_ref(),
                        grpc_unary::Error::Status {
                            code: Code::Unavailable,
                            ..
                        }
                    )
            }
            _ => false,
        }
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable {
                addr,
                attempts,
                waited,
                last,
            } => write!(
                f,
                "KMS {addr} unreachable: {attempts} attempts in {:.1} s (deadline reached; raise \
                 connect_deadline_secs to wait longer); last error: {last}",
                waited.as_secs_f64()
            ),
            Self::Attestation { addr, detail } => {
                write!(f, "KMS {addr} failed attestation (not retried): {detail}")
            }
            Self::Connection { addr, source } => match source.as_ref() {
                grpc_unary::Error::Tls {
                    source: rustls::Error::AlertReceived(alert),
                    ..
                } => write!(
                    f,
                    "KMS {addr} ended the TLS handshake with alert {alert:?}: it probably refused this \
                     enclave's certificate, see the KMS's log"
                ),
                other => write!(f, "connection to KMS {addr} failed (not retried): {other}"),
            },
            Self::Unverified { addr } => {
                write!(
                    f,
                    "KMS {addr}: handshake completed without a verified RA-TLS peer; refusing to continue"
                )
            }
            Self::Fetch {
                addr,
                names,
                source,
            } => write!(f, "fetching {names:?} from KMS {addr} failed: {source}"),
            Self::Secret { name, source } => match source.as_ref() {
                grpc_unary::Error::Status {
                    code: Code::NotFound,
                    message,
                } => {
                    write!(
                        f,
                        "the KMS has no secret named {name:?} (NOT_FOUND: {message})"
                    )
                }
                grpc_unary::Error::Status {
                    code: Code::Unauthenticated,
                    message,
                } => {
                    write!(
                        f,
                        "the KMS refused this enclave's attestation when asked for {name:?} (UNAUTHENTICATED): {message}"
                    )
                }
                grpc_unary::Error::Status {
                    code: Code::PermissionDenied,
                    message,
                } => {
                    write!(
                        f,
                        "the KMS does not let this enclave read {name:?} (PERMISSION_DENIED): {message}"
                    )
                }
                other => write!(f, "GetSecret {name:?} failed: {other}"),
            },
            Self::BadReply { name, detail } => {
                write!(f, "the KMS's reply for {name:?} is unusable: {detail}")
            }
        }
    }
}

impl std::error::Error for KmsError {}

/// After this many connections in a row that completed the handshake and were closed before
/// any reply, init stops retrying: such a peer is most likely refusing us (Occlum's C++ server
/// closes without a word when its policy does not admit the client). One or two are a restart.
pub const MAX_CLOSED_BEFORE_REPLY: u32 = 3;

/// True when the calls failed because the peer closed (or reset) the connection after the
/// handshake, before the replies: not a GOAWAY (a server stopping says so), not a timeout.
pub fn closed_before_reply(e: &KmsError) -> bool {
    match e {
        KmsError::Fetch { source, .. } => matches!(
            source.as_ref(),
            grpc_unary::Error::ConnectionClosed { .. } | grpc_unary::Error::Io { .. }
        ),
        _ => false,
    }
}

/// The pause after `pause`: doubled, at most [`MAX_BACKOFF`].
pub fn next_backoff(pause: Duration) -> Duration {
    (pause * 2).min(MAX_BACKOFF)
}

/// One address to try: a configured KMS address and one socket address its name resolved to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The configured address it came from.
    pub server: KmsAddress,
    /// The socket address connected to.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    /// `host:port`, with the resolved address when the host is a name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.server.host.parse::<IpAddr>().is_ok() {
            write!(f, "{}", self.server.addr)
        } else {
            write!(f, "{} ({})", self.server.addr, self.addr)
        }
    }
}

/// What a failed attempt is followed by, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Next<'a> {
    /// The next address (shown as in the log), at once.
    Address(&'a str),
    /// Every address failed: a pause, then all of them again.
    Pause(Duration),
}

/// Connects to the first of `servers` that answers, retrying until `deadline` elapses. `tls`
/// and `peers` come from [`ratls::tls::attested_client_config`]: the session holds the
/// [`VerifiedPeer`] the handshake produced for the certificate the server proved it holds.
/// `on_failure` hears of every failed attempt: the address, the attempt number, the error and
/// what comes next.
///
/// Each round resolves every server (a name may resolve to several addresses, each tried) and
/// tries the addresses in order, moving to the next one at once when one cannot be reached
/// (refused, timed out, reset or closed during the handshake, name not resolved); after a
/// round in which every address failed it pauses (capped exponential backoff) and starts
/// again, until the deadline. A round starts after `after` when that address is in it, so a
/// session that failed after its handshake is made again with the next replica first.
/// Attestation failures and TLS alerts end the loop at once, whichever address produced them:
/// every address names the same KMS (replicas of one cluster run the same measured image under
/// one policy), so a refusal there is a refusal everywhere, and trying the others would only
/// hide it.
pub fn connect(
    servers: &[KmsAddress],
    after: Option<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
    peers: &HandshakePeers,
    deadline: Duration,
    mut on_failure: impl FnMut(&str, u32, &grpc_unary::Error, Next<'_>),
) -> Result<(Session, Connected), KmsError> {
    let started = Instant::now();
    let end = started + deadline;
    let mut backoff = INITIAL_BACKOFF;
    let mut attempts = 0u32;
    loop {
        let round = rotate_after(resolve_all(servers), after);
        let labels: Vec<String> = round.iter().map(Candidate::label).collect();
        let mut last = None;
        for (i, candidate) in round.into_iter().enumerate() {
            let left = end.saturating_duration_since(Instant::now());
            if i > 0 && left.is_zero() {
                break;
            }
            attempts += 1;
            let label = labels.get(i).map_or("", String::as_str);
            let error = match candidate {
                Candidate::Unresolved(_, error) => error,
                // Every round's first attempt gets at least MIN_ATTEMPT_BUDGET, so the round
                // made when the backoff reaches the deadline is a real attempt.
                Candidate::Resolved(target) => {
                    match attempt(&target, &tls, left.max(MIN_ATTEMPT_BUDGET)) {
                        Ok(channel) => {
                            let (session, mut connected) =
                                open(channel, peers, label.to_owned(), attempts)?;
                            connected.target = Some(target);
                            connected.candidates = labels.len();
                            return Ok((session, connected));
                        }
                        Err(e) => e,
                    }
                }
            };
            if let Some(detail) = attestation_failure(&error) {
                return Err(KmsError::Attestation {
                    addr: label.to_owned(),
                    detail,
                });
            }
            if !retryable(&error) {
                return Err(KmsError::Connection {
                    addr: label.to_owned(),
                    source: Box::new(error),
                });
            }
            let left = end.saturating_duration_since(Instant::now());
            match labels.get(i + 1) {
                Some(next) if !left.is_zero() => {
                    on_failure(label, attempts, &error, Next::Address(next));
                }
                None if !left.is_zero() => {
                    on_failure(label, attempts, &error, Next::Pause(backoff.min(left)));
                }
                _ => {}
            }
            last = Some(error);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KmsError::Unreachable {
                addr: servers
                    .iter()
                    .map(|s| s.addr.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                attempts,
                waited: started.elapsed(),
                last: Box::new(last.unwrap_or_else(|| grpc_unary::Error::Connect {
                    addr: String::new(),
                    source: std::io::Error::other("no address was tried"),
                })),
            });
        }
        thread::sleep(backoff.min(left));
        backoff = next_backoff(backoff);
    }
}

/// One address of a round.
enum Candidate {
    /// An address to connect to.
    Resolved(Target),
    /// A configured name that did not resolve (the server's address, the error): retried like
    /// a refused connection, since a name that does not resolve yet (a Service being created)
    /// is a server not up yet.
    Unresolved(String, grpc_unary::Error),
}

impl Candidate {
    fn label(&self) -> String {
        match self {
            Self::Resolved(target) => target.to_string(),
            Self::Unresolved(addr, _) => addr.clone(),
        }
    }
}

/// Every server's addresses in order (a name's in its resolver's order; an address reached
/// through two names is tried once).
fn resolve_all(servers: &[KmsAddress]) -> Vec<Candidate> {
    let mut round: Vec<Candidate> = Vec::with_capacity(servers.len());
    for server in servers {
        let unresolved = |source| {
            Candidate::Unresolved(
                server.addr.clone(),
                grpc_unary::Error::Connect {
                    addr: server.addr.clone(),
                    source,
                },
            )
        };
        match grpc_unary::resolve(&server.addr) {
            Ok(addrs) if addrs.is_empty() => round.push(unresolved(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "name resolved to no addresses",
            ))),
            Ok(addrs) => {
                for addr in addrs {
                    let seen = round
                        .iter()
                        .any(|c| matches!(c, Candidate::Resolved(t) if t.addr == addr));
                    if !seen {
                        round.push(Candidate::Resolved(Target {
                            server: server.clone(),
                            addr,
                        }));
                    }
                }
            }
            Err(source) => round.push(unresolved(source)),
        }
    }
    round
}

/// `round` starting after the address `after` (wrapping around), or unchanged when it is not
/// in it.
fn rotate_after(mut round: Vec<Candidate>, after: Option<SocketAddr>) -> Vec<Candidate> {
    let at = after.and_then(|a| {
        round
            .iter()
            .position(|c| matches!(c, Candidate::Resolved(t) if t.addr == a))
    });
    if let Some(at) = at {
        let len = round.len();
        round.rotate_left((at + 1) % len);
    }
    round
}

/// One TCP connect and TLS handshake to `target`, within `left` (and the per-phase caps).
fn attempt(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    left: Duration,
) -> Result<Channel, grpc_unary::Error> {
    let name = ServerName::try_from(target.server.host.clone()).unwrap_or_else(|_| {
        // RA-TLS ignores the name (trust comes from the quote); any valid one will do.
        ServerName::try_from("kms")
            .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
    });
    let cfg = ClientConfig::builder()
        .connect_timeout(left.min(ATTEMPT_CONNECT_TIMEOUT))
        .handshake_timeout(left.min(ATTEMPT_HANDSHAKE_TIMEOUT))
        .call_timeout(CALL_TIMEOUT)
        .max_message_size(MAX_REPLY_LEN)
        .build();
    // A socket address: Channel resolves nothing more, and its errors name this address.
    Channel::connect(&target.addr.to_string(), name, Arc::clone(tls), &cfg)
}

impl Session {
    /// The KMS enclave as the handshake verified it.
    pub fn peer(&self) -> &VerifiedPeer {
        &self.peer
    }

    /// The address connected to, as the log shows it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Fetches and decodes the secrets `names`, in that order, with one batch of GetSecret
    /// calls (see the module documentation). The first failure in `names` order is the error.
    ///
    /// The first calls carry the client's last TLS flight, so a KMS that refuses this
    /// enclave's certificate at the TLS level answers them with an alert: that is reported as
    /// [`KmsError::Connection`], like an alert during the handshake.
    pub fn get_secrets(&mut self, names: &[&str]) -> Result<Vec<Secret>, KmsError> {
        let batch = grsecret::client::Batch::new(names);
        let replies = self.channel.unary_many(&batch.calls()).map_err(|source| {
            let source = Box::new(source);
            match source.as_ref() {
                grpc_unary::Error::Tls { .. } => KmsError::Connection {
                    addr: self.addr.clone(),
                    source,
                },
                _ => KmsError::Fetch {
                    addr: self.addr.clone(),
                    names: names.iter().map(|n| (*n).to_owned()).collect(),
                    source,
                },
            }
        })?;
        names
            .iter()
            .zip(replies)
            .map(|(name, reply)| decode_reply(name, reply))
            .collect()
    }

    /// Closes the connection politely; errors are irrelevant once every secret is in hand.
    pub fn close(self) {
        let _ = self.channel.close();
    }
}

/// One call's result: `SecretReply.secret`, decoded.
fn decode_reply(
    name: &str,
    reply: Result<Zeroizing<Vec<u8>>, grpc_unary::Error>,
) -> Result<Secret, KmsError> {
    let failed = |source| KmsError::Secret {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let reply = reply.map_err(failed)?;
    let text = grsecret::client::decode_string_field1(&reply)
        .map_err(|e| failed(grpc_unary::Error::Decode { detail: e.detail }))?;
    decode_secret(text.as_bytes())
        .map(Secret)
        .map_err(|detail| KmsError::BadReply {
            name: name.to_owned(),
            detail,
        })
}

/// The session on a connected channel, with the peer its handshake verified. No clock is read
/// here: a second, time-filtered lookup would refuse a KMS verified inside the collateral's
/// grace period or in the last second of a validity window.
fn open(
    channel: Channel,
    peers: &HandshakePeers,
    addr: String,
    attempts: u32,
) -> Result<(Session, Connected), KmsError> {
    let peer = channel
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| peers.take(cert))
        .ok_or_else(|| KmsError::Unverified { addr: addr.clone() })?;
    Ok((
        Session {
            channel,
            peer,
            addr,
        },
        Connected {
            attempts,
            target: None,
            candidates: 1,
        },
    ))
}

/// The verifier's message (`attestation check `<check>` failed: ...`), when a handshake
/// failed attestation.
fn attestation_failure(error: &grpc_unary::Error) -> Option<String> {
    match error {
        grpc_unary::Error::Tls { source, .. } => {
            ratls::tls::attestation_error(source).map(ToString::to_string)
        }
        _ => None,
    }
}

/// Failures a KMS that is still starting (or briefly overloaded) produces.
fn retryable(error: &grpc_unary::Error) -> bool {
    use grpc_unary::Error as E;
    matches!(
        error,
        E::Connect { .. }
            | E::Io { .. }
            | E::ConnectionClosed { .. }
            | E::Timeout { .. }
            | E::GoAway { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_name_the_secret_and_the_kms_reason() {
        let status = |code, message: &str| KmsError::Secret {
            name: "flask_key".into(),
            source: Box::new(grpc_unary::Error::Status {
                code,
                message: message.into(),
            }),
        };
        let text = status(Code::NotFound, "no such secret").to_string();
        assert!(
            text.contains("\"flask_key\"") && text.contains("NOT_FOUND"),
            "{text}"
        );
        let text = status(
            Code::Unauthenticated,
            "measurement-policy: mr_enclave differs",
        )
        .to_string();
        assert!(
            text.contains("measurement-policy: mr_enclave differs"),
            "{text}"
        );
    }

    fn address(addr: &str) -> KmsAddress {
        KmsAddress {
            addr: addr.into(),
            host: addr
                .rsplit_once(':')
                .unwrap()
                .0
                .trim_matches(['[', ']'])
                .into(),
            origin: "test".into(),
        }
    }

    fn labels(round: &[Candidate]) -> Vec<String> {
        round.iter().map(Candidate::label).collect()
    }

    #[test]
    fn every_address_of_every_server_is_a_candidate_in_order() {
        let round = resolve_all(&[
            address("127.0.0.2:7"),
            address("localhost:9"),
            address("[::1]:9"),
            address("no-such-host.invalid:1"),
        ]);
        assert_eq!(
            labels(&round),
            [
                "127.0.0.2:7",
                "localhost:9 (127.0.0.1:9)",
                "localhost:9 ([::1]:9)",
                "no-such-host.invalid:1"
            ],
            "[::1]:9 is reached through localhost already"
        );
        assert!(matches!(round[3], Candidate::Unresolved(..)));
    }

    #[test]
    fn a_round_starts_after_the_address_that_failed() {
        let servers = [
            address("127.0.0.1:1"),
            address("127.0.0.1:2"),
            address("127.0.0.1:3"),
        ];
        let after = |a: &str| Some(a.parse().unwrap());
        let rotated = |a| labels(&rotate_after(resolve_all(&servers), a));
        assert_eq!(rotated(None), ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(
            rotated(after("127.0.0.1:2")),
            ["127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"]
        );
        assert_eq!(
            rotated(after("127.0.0.1:3")),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
        assert_eq!(
            rotated(after("127.0.0.1:9")),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let refused = grpc_unary::Error::Connect {
            addr: "x:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(retryable(&refused));
        let alert = grpc_unary::Error::Tls {
            phase: grpc_unary::Phase::Handshake,
            source: rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        };
        assert!(!retryable(&alert));
    }

    #[test]
    fn fetch_failures_are_transient_only_when_the_connection_failed() {
        use grpc_unary::Error as E;
        let fetch = |source| KmsError::Fetch {
            addr: "kms:1".into(),
            names: vec!["a".into()],
            source: Box::new(source),
        };
        let secret = |source| KmsError::Secret {
            name: "a".into(),
            source: Box::new(source),
        };
        let status = |code| E::Status {
            code,
            message: String::new(),
        };
        let closed = || E::ConnectionClosed {
            phase: grpc_unary::Phase::Handshake,
        };
        let goaway = || E::GoAway {
            code: grpc_unary::ErrorCode::NO_ERROR,
            last_stream_id: 1,
            debug: String::new(),
        };
        assert!(fetch(closed()).is_transient());
        assert!(fetch(goaway()).is_transient());
        assert!(secret(goaway()).is_transient());
        assert!(secret(status(Code::Unavailable)).is_transient());

        assert!(!secret(status(Code::Unauthenticated)).is_transient());
        assert!(!secret(status(Code::PermissionDenied)).is_transient());
        assert!(!secret(status(Code::NotFound)).is_transient());
        assert!(
            !fetch(E::Protocol {
                code: grpc_unary::ErrorCode::PROTOCOL_ERROR,
                detail: String::new(),
            })
            .is_transient()
        );
        let bad = KmsError::BadReply {
            name: "a".into(),
            detail: String::new(),
        };
        assert!(!bad.is_transient());
        let refused = KmsError::Attestation {
            addr: "kms:1".into(),
            detail: String::new(),
        };
        assert!(!refused.is_transient());
        // The unreachable case is the connect loop's, which already retried until the deadline.
        let unreachable = KmsError::Unreachable {
            addr: "kms:1".into(),
            attempts: 3,
            waited: Duration::from_secs(1),
            last: Box::new(closed()),
        };
        assert!(!unreachable.is_transient());
    }
}
