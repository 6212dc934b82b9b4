//! Drives the real `sgx-sim` binary: init, identity, quote, cert and pccs end to end, over
//! real files and a real loopback socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use percent_encoding::percent_decode_str;
use test_kit::process::{STARTUP_TIMEOUT, addr_after, spawn_listening};
use test_kit::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_sgx-sim");

fn sgx_sim(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run sgx-sim")
}

fn ok(args: &[&str]) -> String {
    let out = sgx_sim(args);
    assert!(
        out.status.success(),
        "sgx-sim {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("SIMULATED"),
        "output of {args:?} does not say SIMULATED: {stdout}"
    );
    stdout
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn collateral(dir: &Path) -> QuoteCollateralV3 {
    serde_json::from_slice(&std::fs::read(dir.join("collateral.json")).unwrap()).unwrap()
}

fn root_der(dir: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(dir.join("root-ca.pem"))
        .unwrap()
        .to_vec()
}

#[test]
fn init_identity_and_quote_make_a_quote_dcap_qvl_accepts() {
    let tmp = temp_dir("quote");
    let platform = tmp.path().join("platform");
    let p = platform.to_str().unwrap();
    ok(&[
        "init",
        p,
        "--tcb-status",
        "OutOfDate",
        "--advisory",
        "SIM-SA-00042",
    ]);
    let id = tmp.path().join("kms.json");
    let mr_enclave = "ab".repeat(32);
    ok(&[
        "identity",
        "--out",
        id.to_str().unwrap(),
        "--name",
        "kms",
        "--mr-enclave",
        &mr_enclave,
        "--isv-prod-id",
        "3",
        "--isv-svn",
        "4",
    ]);
    let quote_path = tmp.path().join("quote.bin");
    ok(&[
        "quote",
        p,
        "--identity",
        id.to_str().unwrap(),
        "--report-data",
        "48656c6c6f",
        "--out",
        quote_path.to_str().unwrap(),
    ]);

    let quote = std::fs::read(&quote_path).unwrap();
    let report = QuoteVerifier::new(root_der(&platform))
        .verify(&quote, &collateral(&platform), now())
        .unwrap();
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, ["SIM-SA-00042"]);
    let parsed = ratls::quote::Quote::parse(&quote).unwrap();
    assert_eq!(hex::encode(parsed.body.mr_enclave), mr_enclave);
    assert_eq!((parsed.body.isv_prod_id, parsed.body.isv_svn), (3, 4));
    assert_eq!(&parsed.body.report_data[..6], b"Hello\0");
    assert!(
        QuoteVerifier::new_prod()
            .verify(&quote, &collateral(&platform), now())
            .is_err()
    );
}

#[test]
fn cert_mints_an_ra_tls_certificate_bound_to_a_simulated_quote() {
    let tmp = temp_dir("cert");
    let platform = tmp.path().join("platform");
    let p = platform.to_str().unwrap();
    ok(&["init", p, "--seed", "5"]);
    let id = tmp.path().join("client.json");
    ok(&["identity", "--out", id.to_str().unwrap(), "--seed", "6"]);
    let (cert, key) = (tmp.path().join("client.crt"), tmp.path().join("client.key"));
    ok(&[
        "cert",
        p,
        "--identity",
        id.to_str().unwrap(),
        "--out-cert",
        cert.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let minted = ratls::cert::RaTlsIdentity::from_pem(&cert_pem, &key_pem).unwrap();
    let evidence = ratls::cert::extract(minted.cert_der()).unwrap();
    evidence.check_binding().unwrap();
    QuoteVerifier::new(root_der(&platform))
        .verify(minted.quote(), &collateral(&platform), now())
        .unwrap();
    let identity = sgx_sim::Identity::load(&id).unwrap();
    let parsed = ratls::quote::Quote::parse(minted.quote()).unwrap();
    assert_eq!(parsed.body.mr_enclave, identity.mr_enclave);
}

#[test]
fn init_with_a_revoked_pck_and_a_past_window_yields_rejected_quotes() {
    let tmp = temp_dir("negative");
    let id = tmp.path().join("id.json");
    ok(&["identity", "--out", id.to_str().unwrap()]);
    let cases: [(&str, Vec<String>); 2] = [
        ("revoked", vec!["--revoke-pck".into()]),
        (
            "expired",
            vec![
                "--not-before".into(),
                (now() - 10_000).to_string(),
                "--not-after".into(),
                (now() - 5_000).to_string(),
            ],
        ),
    ];
    for (name, extra) in cases {
        let platform = tmp.path().join(name);
        let p = platform.to_str().unwrap();
        let mut args = vec!["init", p];
        args.extend(extra.iter().map(String::as_str));
        ok(&args);
        let q = tmp.path().join(format!("{name}.quote"));
        ok(&[
            "quote",
            p,
            "--identity",
            id.to_str().unwrap(),
            "--report-data",
            "00",
            "--out",
            q.to_str().unwrap(),
        ]);
        let quote = std::fs::read(&q).unwrap();
        assert!(
            QuoteVerifier::new(root_der(&platform))
                .verify(&quote, &collateral(&platform), now())
                .is_err(),
            "{name} verified"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let out = sgx_sim(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    assert_eq!(
        sgx_sim(&["init", "/tmp/x", "--tcb-status", "Great"])
            .status
            .code(),
        Some(2)
    );
    let tmp = temp_dir("fail");
    let out = sgx_sim(&[
        "quote",
        tmp.path().join("missing").to_str().unwrap(),
        "--identity",
        "i",
        "--report-data",
        "00",
        "--out",
        "q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("platform.json") && stderr.contains("No such file"),
        "{stderr}"
    );
    // A second init over a platform is refused rather than replacing its keys.
    let p = tmp.path().join("p");
    ok(&["init", p.to_str().unwrap()]);
    assert_eq!(
        sgx_sim(&["init", p.to_str().unwrap()]).status.code(),
        Some(1)
    );
}

/// The `sgx-sim pccs` child, stopped with SIGTERM when dropped.
struct Pccs {
    child: Child,
    addr: SocketAddr,
}

impl Pccs {
    fn start(dir: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["pccs", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped());
        let started = spawn_listening(&mut cmd, STARTUP_TIMEOUT).unwrap();
        let line = started.line;
        assert!(line.contains("SIMULATED"), "{line}");
        let addr = addr_after(&line, "listening on ")
            .expect("listening line")
            .parse()
            .unwrap();
        let child = started.child;
        Self { child, addr }
    }

    fn get(&self, target: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        raw_get(
            self.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
    }

    /// SIGTERM, then the exit status and everything logged to stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

fn raw_get(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let body = response[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect::<Vec<_>>();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
    (status, headers, body)
}

fn header(headers: &[(String, String)], name: &str) -> String {
    let value = &headers
        .iter()
        .find(|(n, _)| n == &name.to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no {name}"))
        .1;
    percent_decode_str(value)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[test]
fn the_pccs_serves_exactly_what_collateral_json_holds() {
    let tmp = temp_dir("pccs");
    let platform = tmp.path().join("platform");
    ok(&["init", platform.to_str().unwrap()]);
    let c = collateral(&platform);
    let pccs = Pccs::start(&platform);

    let (status, headers, body) =
        pccs.get("/sgx/certification/v4/pckcrl?ca=processor&encoding=der");
    assert_eq!(status, 200);
    assert_eq!(body, c.pck_crl);
    assert_eq!(
        header(&headers, "SGX-PCK-CRL-Issuer-Chain"),
        c.pck_crl_issuer_chain
    );
    assert_eq!(header(&headers, "X-SGX-Sim"), "SIMULATED");

    let (status, headers, body) = pccs.get("/sgx/certification/v4/tcb?fmspc=0053494D0000");
    assert_eq!(status, 200);
    let expected = format!(
        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
        c.tcb_info,
        hex::encode(&c.tcb_info_signature)
    );
    assert_eq!(String::from_utf8(body).unwrap(), expected);
    assert_eq!(
        header(&headers, "TCB-Info-Issuer-Chain"),
        c.tcb_info_issuer_chain
    );

    let (status, headers, body) = pccs.get("/sgx/certification/v4/qe/identity");
    assert_eq!(status, 200);
    let expected = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        c.qe_identity,
        hex::encode(&c.qe_identity_signature)
    );
    assert_eq!(String::from_utf8(body).unwrap(), expected);
    assert_eq!(
        header(&headers, "SGX-Enclave-Identity-Issuer-Chain"),
        c.qe_identity_issuer_chain
    );

    let (status, _, body) = pccs.get("/sgx/certification/v4/rootcacrl");
    assert_eq!(status, 200);
    assert_eq!(hex::decode(body).unwrap(), c.root_ca_crl);

    assert_eq!(
        pccs.get("/sgx/certification/v4/tcb?fmspc=00A067110000").0,
        404
    );
    assert_eq!(pccs.get("/nothing/here").0, 404);
    let huge = format!(
        "GET /sgx/certification/v4/qe/identity HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(raw_get(pccs.addr, &huge).0, 431);
    assert_eq!(raw_get(pccs.addr, "BREW /pot HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(raw_get(pccs.addr, "nonsense\r\n\r\n").0, 400);

    let (status, stderr) = pccs.stop();
    assert!(status.success(), "pccs exited with {status}: {stderr}");
    // One line per request: `PEER "REQUEST LINE" STATUS BYTES`.
    let request_lines = stderr
        .lines()
        .filter(|l| l.contains("127.0.0.1:") && l.contains("\" "))
        .count();
    assert_eq!(request_lines, 9, "{stderr}");
    assert!(stderr.lines().all(|l| l.contains("SIMULATED")), "{stderr}");
}

#[test]
fn ratls_pccs_client_fetches_the_same_collateral_and_it_verifies() {
    use pccs_client::PccsClient;
    use ratls::collateral::CollateralSource;
    let tmp = temp_dir("pccs-client");
    let platform = tmp.path().join("platform");
    let p = platform.to_str().unwrap();
    ok(&["init", p, "--tcb-status", "ConfigurationNeeded"]);
    let id = tmp.path().join("id.json");
    ok(&["identity", "--out", id.to_str().unwrap()]);
    let quote_path = tmp.path().join("quote");
    ok(&[
        "quote",
        p,
        "--identity",
        id.to_str().unwrap(),
        "--report-data",
        "01",
        "--out",
        quote_path.to_str().unwrap(),
    ]);
    let quote = std::fs::read(&quote_path).unwrap();

    let pccs = Pccs::start(&platform);
    // The PCK chain is checked against the anchor before anything is fetched.
    let client = PccsClient::new(&format!("http://{}", pccs.addr)).with_trust_anchor(
        ratls::danger::simulated_root(root_der(&platform), "simulated root".into()),
    );
    let parsed = ratls::quote::Quote::parse(&quote).unwrap();
    let fetched = client.collateral(&parsed, now()).unwrap();
    assert_eq!(*fetched, collateral(&platform));
    let report = QuoteVerifier::new(root_der(&platform))
        .verify(&quote, &fetched, now())
        .unwrap();
    assert_eq!(report.status, "ConfigurationNeeded");
    let (status, stderr) = pccs.stop();
    assert!(status.success(), "{stderr}");
    // The client asked for the Processor CA's CRL: the PCK CA's name says "Processor".
    assert!(
        stderr.contains("pckcrl?ca=processor&encoding=der"),
        "{stderr}"
    );
}
