//! `kms admin <OP>`: an operator's client for the admin API.
//!
//! It speaks init's client stack (rustls with the `ratls` server verifier, `grpc-unary`): the
//! KMS's RA-TLS certificate must pass the attestation pipeline under `--ra-config` during the
//! handshake, before any request (which may carry a secret) is sent. The operator
//! authenticates with an ordinary certificate whose key the KMS pins. Errors name the file,
//! flag or field at fault; replies are printed as the KMS sent them (JSON), never a value.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grpc_unary::{Channel, ClientConfig};
use pccs_client::PccsClient;
use ratls::collateral::staple::Stapled;
use ratls::collateral::{CollateralSource, StaticCollateral};
use ratls::policy::{MAX_POLICY_LEN, RaPolicy};
use ratls::verify::{TrustAnchor, Verifier};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::admin;
use crate::cli::{AdminCommand, AdminConn, AdminOp, CollateralSpec};
use crate::operators::spki_sha256;
use crate::{fsutil, keygen};

/// Connect, handshake and call budgets of the admin client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply accepted (a log tail of at most `admin::MAX_LOG_TAIL`, escaped, and framing).
const MAX_REPLY: usize = 4 << 20;
/// Largest certificate or key file read.
const MAX_PEM_LEN: usize = 64 * 1024;

type Res<T> = Result<T, Box<dyn Error>>;

/// Runs one admin command.
pub fn run(cmd: AdminCommand) -> Res<()> {
    match (&cmd.op, &cmd.conn) {
        (
            AdminOp::Keygen {
                name,
                out_cert,
                out_key,
            },
            _,
        ) => {
            keygen::write_tls_cert(name, out_cert, out_key)?;
            print_entry(name, out_cert)
        }
        (AdminOp::Fingerprint { cert, name }, _) => print_entry(name, cert),
        (op, Some(conn)) => call(op, conn),
        (_, None) => Err("internal: admin operation without a connection".into()),
    }
}

/// Prints the `kms_operators.json` entry for the certificate at `cert`.
fn print_entry(name: &str, cert: &Path) -> Res<()> {
    let der = read_cert(cert)?;
    let fp = spki_sha256(der.as_ref()).map_err(|e| format!("{}: {e}", cert.display()))?;
    let entry = serde_json::json!({ "name": name, "spki_sha256": hex::encode(fp) });
    println!("{entry}");
    eprintln!(
        "kms: add this entry to \"operators\" in kms_operators.json (inside Occlum: /kms_operators.json in the image; host mode: --admin-operators FILE)"
    );
    Ok(())
}

fn call(op: &AdminOp, conn: &AdminConn) -> Res<()> {
    // Read and check every local input before connecting.
    let request = Request::prepare(op)?;
    let mut channel = connect(conn)?;
    let base_version = match (&request, &conn.base_version) {
        (Request::Read { .. }, _) => None,
        (_, Some(v)) => Some(v.clone()),
        (_, None) => Some(current_version(&mut channel, &conn.kms)?),
    };
    let (method, body) = request.body(base_version.as_deref())?;
    let reply = channel.unary(method, &body).map_err(|e| {
        let input = match op {
            AdminOp::SetPolicy { policy } => format!(" (--policy {})", policy.display()),
            AdminOp::PutSecret { name, .. } | AdminOp::DeleteSecret { name } => {
                format!(" (--name {name})")
            }
            _ => String::new(),
        };
        format!("{method}{input} on {}: {e}", conn.kms)
    })?;
    println!("{}", String::from_utf8_lossy(&reply));
    let _ = channel.close();
    Ok(())
}

/// A request, with its local inputs read.
enum Request {
    Read {
        method: &'static str,
        body: serde_json::Value,
    },
    Put {
        name: String,
        value: Zeroizing<String>,
        allow: Option<Vec<String>>,
    },
    Delete {
        name: String,
    },
    Policy {
        json: String,
    },
}

impl Request {
    fn prepare(op: &AdminOp) -> Res<Request> {
        Ok(match op {
            AdminOp::Status => Request::Read {
                method: admin::STATUS,
                body: serde_json::json!({}),
            },
            AdminOp::Genesis => Request::Read {
                method: admin::GENESIS,
                body: serde_json::json!({}),
            },
            AdminOp::Recover => Request::Read {
                method: admin::RECOVER,
                body: serde_json::json!({}),
            },
            AdminOp::Log { max_bytes } => Request::Read {
                method: admin::RELEASE_LOG,
                body: match max_bytes {
                    Some(n) => serde_json::json!({ "max_bytes": n }),
                    None => serde_json::json!({}),
                },
            },
            AdminOp::PutSecret {
                name,
                value_file,
                allow,
            } => {
                let raw = fsutil::read_limited(value_file, admin::MAX_ADMIN_REQUEST / 2)
                    .map_err(|e| format!("--value-file {}: {e}", value_file.display()))?;
                if raw.is_empty() {
                    return Err(format!(
                        "--value-file {}: the file is empty",
                        value_file.display()
                    )
                    .into());
                }
                Request::Put {
                    name: name.clone(),
                    value: admin::encode_value(&raw),
                    allow: allow.clone(),
                }
            }
            AdminOp::DeleteSecret { name } => Request::Delete { name: name.clone() },
            AdminOp::SetPolicy { policy } => {
                let bytes = fsutil::read_limited(policy, MAX_POLICY_LEN)
                    .map_err(|e| format!("--policy {}: {e}", policy.display()))?;
                // Sent as it is: the KMS validates it with the parser a reload uses, and its
                // error names the field.
                let json = String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("--policy {}: not UTF-8", policy.display()))?;
                Request::Policy { json }
            }
            AdminOp::Keygen { .. } | AdminOp::Fingerprint { .. } => {
                return Err("internal: not a call".into());
            }
        })
    }

    /// The method and the JSON body (which may hold a secret: zeroized).
    fn body(&self, base_version: Option<&str>) -> Res<(&'static str, Zeroizing<Vec<u8>>)> {
        let v = base_version.unwrap_or_default();
        let (method, doc) = match self {
            Request::Read { method, body } => (*method, body.to_string().into_bytes()),
            Request::Put { name, value, allow } => {
                // Built by hand into a zeroizing buffer: base64 needs no escaping, and the
                // value never passes through serde_json's own buffers.
                let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 1024));
                let head = serde_json::json!({ "base_version": v, "name": name, "allow": allow });
                let head = head.to_string();
                let head = head.strip_suffix('}').unwrap_or(&head);
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(b",\"value\":\"");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\"}");
                return Ok((admin::PUT_SECRET, out));
            }
            Request::Delete { name } => (
                admin::DELETE_SECRET,
                serde_json::json!({ "base_version": v, "name": name })
                    .to_string()
                    .into_bytes(),
            ),
            Request::Policy { json } => (
                admin::SET_POLICY,
                serde_json::json!({ "base_version": v, "policy_json": json })
                    .to_string()
                    .into_bytes(),
            ),
        };
        Ok((method, Zeroizing::new(doc)))
    }
}

/// The state version, from a Status call on the same connection.
fn current_version(channel: &mut Channel, kms: &str) -> Res<String> {
    #[derive(Deserialize)]
    struct Status {
        version: String,
    }
    let reply = channel.unary(admin::STATUS, b"{}").map_err(|e| {
        format!(
            "{} on {kms} (reading the state version): {e}",
            admin::STATUS
        )
    })?;
    let status: Status = serde_json::from_slice(&reply)
        .map_err(|e| format!("{} reply from {kms}: {e}", admin::STATUS))?;
    Ok(status.version)
}

/// Connects to the KMS, attesting it under `--ra-config` in the handshake.
fn connect(conn: &AdminConn) -> Res<Channel> {
    let verifier = Arc::new(verifier(conn)?);
    let cert = read_cert(&conn.cert)?;
    let key = read_key(&conn.key)?;
    let (tls, _peers) =
        ratls::tls::attested_client_config_with_key(verifier, cert, key).map_err(|e| {
            format!(
                "--cert {} / --key {}: {e}",
                conn.cert.display(),
                conn.key.display()
            )
        })?;
    let cfg = ClientConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .call_timeout(CALL_TIMEOUT)
        .max_message_size(MAX_REPLY)
        .build();
    // RA-TLS ignores the name (trust comes from the quote); any valid one will do.
    let name = ServerName::try_from("kms").map_err(|e| format!("server name: {e}"))?;
    Channel::connect(&conn.kms, name, Arc::new(tls), &cfg).map_err(|e| {
        let why = if let grpc_unary::Error::Tls { source, .. } = &e {
            ratls::tls::attestation_error(source).map(|v| {
                format!(
                    "the KMS at {} failed attestation under --ra-config {}: {v}; nothing was sent",
                    conn.kms,
                    conn.ra_config.display()
                )
            })
        } else {
            None
        };
        why.unwrap_or_else(|| format!("connecting to the KMS at {}: {e}", conn.kms))
            .into()
    })
}

/// The pipeline the KMS's certificate must pass: `--ra-config`, Intel's root (or, in
/// simulation builds with `--sim-platform`, the simulated one), the staple or a PCCS.
fn verifier(conn: &AdminConn) -> Res<Verifier> {
    let bytes = fsutil::read_limited(&conn.ra_config, MAX_POLICY_LEN)
        .map_err(|e| format!("--ra-config {}: {e}", conn.ra_config.display()))?;
    let policy = RaPolicy::from_json(&bytes, &format!("--ra-config {}", conn.ra_config.display()))?;
    let (anchor, default): (TrustAnchor, Option<Arc<dyn CollateralSource>>) = match &conn
        .sim_platform
    {
        #[cfg(feature = "simulation")]
        Some(dir) => {
            let platform = sgx_sim::SimPlatform::open(dir)
                .map_err(|e| format!("--sim-platform {}: {e}", dir.display()))?;
            eprintln!(
                "kms: WARNING: verifying the KMS against the SIMULATED root of {} (tests only)",
                dir.display()
            );
            let anchor = ratls::danger::simulated_root(
                platform.root_ca_der().to_vec(),
                format!("SIMULATED root of {}", dir.display()),
            );
            let collateral: Arc<dyn CollateralSource> = Arc::new(StaticCollateral::new(
                platform.collateral(),
                format!("SIMULATED platform {}", dir.display()),
            ));
            (anchor, Some(collateral))
        }
        #[cfg(not(feature = "simulation"))]
        Some(_) => return Err("--sim-platform needs a build with the `simulation` feature".into()),
        None => (TrustAnchor::intel(), None),
    };
    let fallback: Arc<dyn CollateralSource> = match (&conn.collateral, default) {
        (CollateralSpec::File(path), _) => Arc::new(
            pccs_client::read_collateral_file(path)
                .map_err(|e| format!("--collateral {}: {e}", path.display()))?,
        ),
        (CollateralSpec::Pccs(url), _) => {
            Arc::new(PccsClient::new(url).with_trust_anchor(anchor.clone()))
        }
        (CollateralSpec::DefaultPccs, Some(sim)) => sim,
        (CollateralSpec::DefaultPccs, None) => {
            let (url, verify_tls) = crate::server::default_pccs();
            let client = if verify_tls {
                PccsClient::new(&url)
            } else {
                PccsClient::without_tls_verification(&url)
            };
            Arc::new(client.with_trust_anchor(anchor.clone()))
        }
    };
    // The KMS staples its own collateral to its certificate; the PCCS is the fallback.
    let collateral: Arc<dyn CollateralSource> = Arc::new(Stapled::new(fallback));
    Ok(Verifier::new(anchor, collateral, policy))
}

fn read_cert(path: &Path) -> Res<CertificateDer<'static>> {
    let pem = fsutil::read_limited(path, MAX_PEM_LEN)
        .map_err(|e| format!("--cert {}: {e}", path.display()))?;
    CertificateDer::from_pem_slice(&pem)
        .map_err(|e| format!("--cert {}: no PEM certificate: {e}", path.display()).into())
}

fn read_key(path: &Path) -> Res<PrivateKeyDer<'static>> {
    let pem = fsutil::read_limited(path, MAX_PEM_LEN)
        .map_err(|e| format!("--key {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("--key {}: no PEM private key: {e}", path.display()).into())
}
