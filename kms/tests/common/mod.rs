//! Test harness: a simulated SGX platform, RA-TLS client certificates made on it, the real
//! `kms` binary on a loopback port (test-kit's launcher, in a scratch directory), and a grpcio
//! client speaking the raw GrSecret protocol.
//!
//! Every helper fails the test loudly (these are tests: `unwrap` is the assertion).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

pub mod etcd;
pub mod loopback;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use grpcio::{
    CallOption, ChannelBuilder, ChannelCredentialsBuilder, Client, Environment, GrpcSlice,
    Marshaller, MessageReader, Method, MethodType, RpcStatusCode,
};
use ratls::cert::RaTlsIdentity;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource, TcbStatus};
pub use test_kit::kms::Kms;
pub use test_kit::{TempDir, temp_dir};

/// The KMS certificate's common name (`ratls` mints every RA-TLS certificate with it), which
/// clients use as the TLS target name.
pub const KMS_TARGET_NAME: &str = "Occlum RA-TLS";

pub const KMS: &str = env!("CARGO_BIN_EXE_kms");

/// A simulated platform in its own directory.
pub struct Sim {
    pub dir: PathBuf,
    pub platform: Arc<SimPlatform>,
}

impl Sim {
    pub fn new(root: &TempDir, name: &str, customize: impl FnOnce(&mut PlatformOptions)) -> Sim {
        let dir = root.path().join(name);
        let mut opts = PlatformOptions::default();
        customize(&mut opts);
        let platform = SimPlatform::create(&dir, &opts).unwrap();
        Sim {
            dir,
            platform: Arc::new(platform),
        }
    }

    pub fn good(root: &TempDir) -> Sim {
        Sim::new(root, "platform", |_| {})
    }

    pub fn with_status(root: &TempDir, status: TcbStatus) -> Sim {
        Sim::new(root, "platform", |o| o.tcb_status = status)
    }

    /// Mints an RA-TLS certificate whose quote claims `identity`.
    pub fn client(&self, identity: &Identity) -> ClientCert {
        let source = SimQuoteSource {
            platform: Arc::clone(&self.platform),
            identity: identity.clone(),
        };
        let minted = RaTlsIdentity::mint(&source).unwrap();
        ClientCert {
            cert_pem: minted.cert_pem(),
            key_pem: minted.key_pem().to_string(),
        }
    }

    /// Mints a certificate in the form Occlum's C++ `grpc_ratls` makes (X.509 v1, RSA-2048,
    /// sha1WithRSA, raw quote in `1.2.840.113741.1`) whose quote claims `identity`.
    #[allow(dead_code)] // Only tests/occlum_client.rs uses it.
    pub fn occlum_client(&self, identity: &Identity) -> ClientCert {
        let source = SimQuoteSource {
            platform: Arc::clone(&self.platform),
            identity: identity.clone(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let minted = sgx_sim::occlum_form::identity(&source, now - 60, 24 * 3600).unwrap();
        ClientCert {
            cert_pem: minted.cert_pem(),
            key_pem: minted.key_pem().to_string(),
        }
    }

    /// Writes an identity file for the KMS itself.
    pub fn kms_identity(&self, root: &TempDir) -> PathBuf {
        let mut id = Identity::random(None).unwrap();
        id.name = Some("kms".into());
        let path = root.path().join("kms-identity.json");
        if !path.exists() {
            std::fs::write(&path, id.to_json()).unwrap();
        }
        path
    }
}

/// A client certificate and key (PEM).
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The app enclave identity the tests' policy allows.
pub fn app_identity() -> Identity {
    let mut id = Identity::random(Some(7)).unwrap();
    id.name = Some("app".into());
    id.isv_prod_id = 3;
    id.isv_svn = 88;
    id.config_svn = 1234;
    id.debuggable = false;
    id
}

/// A second allowed enclave ("tool") with its own measurements.
pub fn tool_identity() -> Identity {
    let mut id = Identity::random(Some(8)).unwrap();
    id.name = Some("tool".into());
    id.isv_prod_id = 9;
    id.isv_svn = 5;
    id.config_svn = 0;
    id
}

/// The policy: `app` pinned exactly, `tool` with a minimum isv_svn.
pub fn policy_json(app: &Identity, tool: &Identity) -> String {
    serde_json::json!({
        "verify_mr_enclave": "on",
        "verify_mr_signer": "on",
        "verify_isv_prod_id": "on",
        "verify_isv_svn": "on",
        "verify_config_svn": "on",
        "verify_enclave_debuggable": "on",
        "sgx_mrs": [
            {
                "name": "app",
                "mr_enclave": hex::encode(app.mr_enclave),
                "mr_signer": hex::encode(app.mr_signer),
                "isv_prod_id": app.isv_prod_id,
                "isv_svn": app.isv_svn,
                "config_svn": app.config_svn,
                "debuggable": false
            },
            {
                "name": "tool",
                "mr_enclave": hex::encode(tool.mr_enclave),
                "mr_signer": hex::encode(tool.mr_signer),
                "isv_prod_id": tool.isv_prod_id,
                "isv_svn_min": tool.isv_svn,
                "config_svn": tool.config_svn,
                "debuggable": false
            }
        ]
    })
    .to_string()
}

/// The test secrets: (name, raw value, allow list).
/// A test secret: name, raw value, `allow` list.
pub type TestSecret = (&'static str, Vec<u8>, Option<Vec<&'static str>>);

pub fn secrets() -> Vec<TestSecret> {
    vec![
        (
            "flask_cert",
            b"-----BEGIN CERTIFICATE-----\nMIIBsecret-cert-7f3a\n-----END CERTIFICATE-----\n"
                .to_vec(),
            None,
        ),
        (
            "flask_key",
            b"-----BEGIN PRIVATE KEY-----\nMIGHsecret-key-91c2\n-----END PRIVATE KEY-----\n"
                .to_vec(),
            None,
        ),
        (
            "image_key",
            b"a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff\n".to_vec(),
            Some(vec!["app"]),
        ),
        (
            "binary_blob",
            (0u8..=255).rev().chain(0u8..=255).collect(),
            None,
        ),
        (
            "tool_only",
            b"zq-tool-only-secret-5521".to_vec(),
            Some(vec!["tool"]),
        ),
    ]
}

pub fn secrets_json(secrets: &[TestSecret]) -> String {
    let mut map = serde_json::Map::new();
    for (name, value, allow) in secrets {
        let encoded = B64.encode(value);
        let v = match allow {
            None => serde_json::Value::String(encoded),
            Some(allow) => serde_json::json!({ "value": encoded, "allow": allow }),
        };
        map.insert((*name).to_owned(), v);
    }
    serde_json::Value::Object(map).to_string()
}

/// What to start the KMS with.
pub struct KmsSetup<'a> {
    pub dir: &'a TempDir,
    pub sim: &'a Sim,
    pub policy: String,
    pub secrets: String,
    pub extra: Vec<String>,
}

/// Writes `policy` and `secrets` and starts `kms serve` on 127.0.0.1:0.
pub fn start_kms(setup: KmsSetup<'_>) -> Kms {
    let dir = setup.dir;
    std::fs::write(dir.path().join("ra_config.json"), &setup.policy).unwrap();
    std::fs::write(dir.path().join("secret_config.json"), &setup.secrets).unwrap();
    let identity = setup.sim.kms_identity(dir);
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ra-config".into(),
        dir.path().join("ra_config.json").display().to_string(),
        "--sim-platform".into(),
        setup.sim.dir.display().to_string(),
        "--sim-identity".into(),
        identity.display().to_string(),
    ];
    if !setup.extra.iter().any(|a| a == "--sealed-secrets") {
        args.push("--secrets".into());
        args.push(dir.path().join("secret_config.json").display().to_string());
    }
    args.extend(setup.extra);
    spawn_kms(dir, &args)
}

/// Starts this package's `kms` with exactly `args` (plus `--cert-out` and `--audit-log`) in
/// `dir`.
pub fn spawn_kms(dir: &TempDir, args: &[String]) -> Kms {
    Kms::spawn(kms_path(), dir.path(), args)
}

/// Like [`spawn_kms`], returning stderr if the process exits before listening.
pub fn try_spawn_kms(dir: &TempDir, args: &[String]) -> Result<Kms, String> {
    Kms::try_spawn(kms_path(), dir.path(), args)
}

/// `kms serve` with `flag` set to `value` exits with a usage error (2) naming the flag and
/// the value, and saying what form it wants (`expected`).
#[allow(dead_code)] // Each test crate uses its own subset of this module.
pub fn assert_usage_error(flag: &str, value: &str, expected: &str) {
    let out = std::process::Command::new(kms_path())
        .args(["serve", "--listen", "127.0.0.1:0", flag, value])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{flag} {value}")) && stderr.contains(expected),
        "{stderr}"
    );
}

/// `kms serve` (a good simulated platform, the test policy and secrets) with `flag` set to a
/// loopback address another socket holds: it must not start. Returns the address and the
/// error it printed.
#[allow(dead_code)] // Each test crate uses its own subset of this module.
pub fn start_error_with_address_taken(tag: &str, flag: &str) -> (String, String) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir(tag);
    let sim = Sim::good(&dir);
    let ra_config = dir.path().join("ra_config.json");
    std::fs::write(&ra_config, policy_json(&app_identity(), &tool_identity())).unwrap();
    let secrets_file = dir.path().join("secret_config.json");
    std::fs::write(&secrets_file, secrets_json(&secrets())).unwrap();
    let args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ra-config".into(),
        ra_config.display().to_string(),
        "--secrets".into(),
        secrets_file.display().to_string(),
        "--sim-platform".into(),
        sim.dir.display().to_string(),
        "--sim-identity".into(),
        sim.kms_identity(&dir).display().to_string(),
        flag.into(),
        addr.clone(),
    ];
    let err = try_spawn_kms(&dir, &args)
        .err()
        .unwrap_or_else(|| panic!("the KMS started with its {flag} address taken"));
    drop(taken);
    (addr, err)
}

/// Asserts no secret value (its first 24 bytes), raw or base64, appears in the KMS's stdout,
/// stderr or audit log.
pub fn assert_logs_clean(kms: &Kms, secrets: &[TestSecret]) {
    let logs = kms.logs();
    assert!(!logs.is_empty());
    for (name, value, _) in secrets {
        for needle in [value.clone(), B64.encode(value).into_bytes()] {
            let needle = if needle.len() > 24 {
                needle[..24].to_vec()
            } else {
                needle
            };
            assert!(
                !logs.windows(needle.len()).any(|w| w == needle.as_slice()),
                "secret {name} appears in the logs"
            );
        }
    }
}

// ----- a grpcio client with raw marshallers -----

pub struct Raw(pub Vec<u8>);

fn ser(m: &Raw, buf: &mut GrpcSlice) -> grpcio::Result<()> {
    *buf = GrpcSlice::from(m.0.as_slice());
    Ok(())
}

fn de(mut reader: MessageReader) -> grpcio::Result<Raw> {
    let mut v = Vec::new();
    reader.read_to_end(&mut v).unwrap();
    Ok(Raw(v))
}

pub const GET_SECRET: Method<Raw, Raw> = Method {
    ty: MethodType::Unary,
    name: "/ratls.GrSecret/GetSecret",
    req_mar: Marshaller { ser, de },
    resp_mar: Marshaller { ser, de },
};

pub const HEALTH_CHECK: Method<Raw, Raw> = Method {
    ty: MethodType::Unary,
    name: "/grpc.health.v1.Health/Check",
    req_mar: Marshaller { ser, de },
    resp_mar: Marshaller { ser, de },
};

/// One gRPC channel (one TLS connection) to the KMS.
pub struct GrpcClient {
    pub client: Client,
    _env: Arc<Environment>,
}

impl GrpcClient {
    /// Connects with `cert` as the client certificate (or none), pinning the KMS certificate.
    pub fn connect(kms: &Kms, cert: Option<&ClientCert>) -> GrpcClient {
        let env = Arc::new(Environment::new(1));
        let mut creds =
            ChannelCredentialsBuilder::new().root_cert(kms.cert_pem.clone().into_bytes());
        if let Some(c) = cert {
            creds = creds.cert(
                c.cert_pem.clone().into_bytes(),
                c.key_pem.clone().into_bytes(),
            );
        }
        let channel = ChannelBuilder::new(Arc::clone(&env))
            .override_ssl_target(KMS_TARGET_NAME)
            .set_credentials(creds.build())
            .connect(&kms.addr);
        GrpcClient {
            client: Client::new(channel),
            _env: env,
        }
    }

    pub fn call_raw(
        &self,
        method: &Method<Raw, Raw>,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, (RpcStatusCode, String)> {
        let opt = CallOption::default().timeout(Duration::from_secs(20));
        match self.client.unary_call(method, &Raw(body), opt) {
            Ok(Raw(v)) => Ok(v),
            Err(grpcio::Error::RpcFailure(status)) => {
                Err((status.code(), status.message().to_owned()))
            }
            Err(e) => Err((RpcStatusCode::UNKNOWN, e.to_string())),
        }
    }

    /// GetSecret; returns the `secret` field's text.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, (RpcStatusCode, String)> {
        self.call_raw(&GET_SECRET, encode_field1(name.as_bytes()))
            .map(|reply| decode_field1(&reply))
    }

    /// GetSecret, then strip Occlum's quotes and decode the base64.
    pub fn get_decoded(&self, name: &str) -> Result<Vec<u8>, (RpcStatusCode, String)> {
        let text = self.get(name)?;
        let text = std::str::from_utf8(&text).unwrap();
        let inner = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .expect("Occlum's quoted form");
        Ok(B64.decode(inner).unwrap())
    }
}

pub fn encode_field1(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    grsecret::wire::put_len_field(&mut out, 1, bytes);
    out
}

pub fn decode_field1(msg: &[u8]) -> Vec<u8> {
    let mut reader = grsecret::wire::Reader::new(msg);
    assert_eq!(
        reader.key().ok(),
        Some((1, grsecret::wire::WIRE_LEN)),
        "reply must be field 1, length-delimited"
    );
    let value = reader.length_delimited("secret").unwrap();
    assert!(reader.is_empty(), "reply has exactly one field");
    value.to_vec()
}

/// A standard setup: one good platform, the app/tool policy and the test secrets.
pub struct Fixture {
    pub dir: TempDir,
    pub sim: Sim,
    pub app: Identity,
    pub tool: Identity,
    pub kms: Kms,
}

impl Fixture {
    pub fn start(tag: &str) -> Fixture {
        Fixture::start_with(tag, |_| {}, Vec::new())
    }

    pub fn start_with(
        tag: &str,
        platform: impl FnOnce(&mut PlatformOptions),
        extra: Vec<String>,
    ) -> Fixture {
        let dir = temp_dir(&format!("kms-it-{tag}"));
        let sim = Sim::new(&dir, "platform", platform);
        let app = app_identity();
        let tool = tool_identity();
        let kms = start_kms(KmsSetup {
            dir: &dir,
            sim: &sim,
            policy: policy_json(&app, &tool),
            secrets: secrets_json(&secrets()),
            extra,
        });
        Fixture {
            dir,
            sim,
            app,
            tool,
            kms,
        }
    }

    pub fn client(&self, identity: &Identity) -> GrpcClient {
        GrpcClient::connect(&self.kms, Some(&self.sim.client(identity)))
    }
}

/// Asserts `result` is a refusal with `code` whose message contains `needle`.
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, (RpcStatusCode, String)>,
    code: RpcStatusCode,
    needle: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?}, got a reply {v:?}"),
        Err((got, msg)) => {
            assert_eq!(got, code, "message: {msg}");
            assert!(
                msg.contains(needle),
                "message {msg:?} should mention {needle:?}"
            );
        }
    }
}

pub fn kms_path() -> &'static Path {
    Path::new(KMS)
}
