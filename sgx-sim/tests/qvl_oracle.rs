//! Intel's reference Quote Verification Library (QVL) as an independent oracle.
//!
//! `tests/qvl/qvl_oracle.py` runs Intel's C++ QVL (PyPI `sgx-dcap-quote-verify-python`, the
//! module `sgx_dcap_quote_verify`) over the same evidence that ratls's pipeline verifies, and
//! every test asserts that the two agree: on each sgx-sim knob (UpToDate, every non-terminal
//! TCB status, TCB Revoked, a revoked PCK, expired and not-yet-valid collateral, a foreign
//! root), on single-byte tampering of every part of a quote, and on Intel's real sample at
//! times inside and outside its collateral window.
//!
//! Platforms, identities and quotes come from the real `sgx-sim` binary; QVL is given exactly
//! the files the platform directory publishes (root CA, CRLs, the PCS bodies of TCB info and QE
//! identity) and the PCK chain carried in the quote's certification data.
//!
//! When the module is missing the tests fail under `CI=true` (`.ci/run` installs it) and
//! otherwise print why they did not run. `SGX_SIM_QVL_PYTHON` names the interpreter (default
//! `python3`; the wheel is built for CPython 3.11).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use dcap_qvl::QuoteCollateralV3;
use ratls::collateral::StaticCollateral;
use ratls::policy::RaPolicy;
use ratls::verify::{TrustAnchor, Verifier};
use serde_json::{Value, json};
use sgx_sim::files;
use test_kit::{TempDir, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_sgx-sim");
const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qvl/qvl_oracle.py");
/// The oracle's exit code when Intel's QVL is not installed.
const QVL_MISSING: i32 = 3;

/// A fixed clock: every simulated collateral window is built around it.
const NOW: u64 = 1_760_000_000;
const DAY: u64 = 86_400;
/// Every TCB status a policy can accept (Revoked is terminal).
const NON_TERMINAL: [&str; 6] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
];

const SAMPLE_QUOTE: &[u8] = include_bytes!("../../ratls/testdata/dcap-sample/sgx_quote");
const SAMPLE_COLLATERAL: &str =
    include_str!("../../ratls/testdata/dcap-sample/sgx_quote_collateral.json");
/// The sample collateral's window: TCB info issueDate .. QE identity nextUpdate.
const SAMPLE_FROM: u64 = 1_750_330_571;
const SAMPLE_UNTIL: u64 = 1_752_919_278;

fn sgx_sim(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().expect("run sgx-sim");
    assert!(
        out.status.success(),
        "sgx-sim {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The PEM certificates in `bytes`, in order (a tampered chain may yield fewer).
fn pem_certs(bytes: &[u8]) -> Vec<String> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, BEGIN) {
        let Some(len) = find(&rest[start..], END) else {
            break;
        };
        let end = start + len + END.len();
        certs.push(String::from_utf8_lossy(&rest[start..end]).into_owned() + "\n");
        rest = &rest[end..];
    }
    certs
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Everything a verifier gets for one quote: the trust anchor, the collateral, and the quote.
struct Evidence {
    root_pem: String,
    root_der: Vec<u8>,
    intel_root: bool,
    collateral: QuoteCollateralV3,
    quote: Vec<u8>,
    mr_enclave: [u8; 32],
    mr_signer: [u8; 32],
    report_data: [u8; 64],
}

impl Evidence {
    /// The case Intel's QVL verifies: the PCK leaf and its signing chain come from the quote's
    /// certification data, exactly as a relying party receives them.
    fn qvl_case(&self, name: &str, when: u64) -> Value {
        let certs = pem_certs(&self.quote);
        let cert = |i: usize| certs.get(i).cloned().unwrap_or_default();
        let c = &self.collateral;
        json!({
            "name": name,
            "root_pem": self.root_pem,
            "pck_pem": cert(0),
            "pck_signing_chain_pem": cert(1) + &cert(2),
            "root_crl_pem": pem("X509 CRL", &c.root_ca_crl),
            "pck_crl_pem": pem("X509 CRL", &c.pck_crl),
            "tcb_info": sgx_sim::collateral::tcb_info_response(&c.tcb_info, &c.tcb_info_signature),
            "tcb_signing_chain_pem": c.tcb_info_issuer_chain,
            "qe_identity": sgx_sim::collateral::qe_identity_response(&c.qe_identity, &c.qe_identity_signature),
            "quote_hex": hex::encode(&self.quote),
            "when": when,
        })
    }

    fn anchor(&self) -> TrustAnchor {
        if self.intel_root {
            TrustAnchor::intel()
        } else {
            ratls::danger::simulated_root(self.root_der.clone(), "qvl oracle test root".into())
        }
    }

    /// ratls's verdict with a policy that matches the enclave and accepts `statuses`.
    fn ratls(&self, statuses: &[&str], when: u64) -> Verdict {
        let accepted: Vec<String> = statuses.iter().map(|s| format!("\"{s}\"")).collect();
        let policy = format!(
            r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "off",
                "verify_isv_svn": "off", "verify_config_svn": "off", "verify_enclave_debuggable": "on",
                "sgx_mrs": [{{"mr_enclave": "{}", "mr_signer": "{}", "debuggable": false}}],
                "tcb_statuses": [{}]}}"#,
            hex::encode(self.mr_enclave),
            hex::encode(self.mr_signer),
            accepted.join(", ")
        );
        let policy = RaPolicy::from_json(policy.as_bytes(), "oracle test policy").unwrap();
        // A fresh verifier per verdict: no cached platform half decides anything here.
        let verifier = Verifier::new(
            self.anchor(),
            Arc::new(StaticCollateral::new(
                self.collateral.clone(),
                "oracle test",
            )),
            policy,
        );
        match verifier.verify_quote(&self.quote, when) {
            Ok(peer) => {
                assert_eq!(peer.report_body().mr_enclave, self.mr_enclave);
                assert_eq!(peer.report_body().report_data, self.report_data);
                Verdict::Accepted(peer.tcb_status().to_owned())
            }
            Err(e) => Verdict::Rejected(e.check(), e.to_string()),
        }
    }

    fn with_quote(&self, quote: Vec<u8>) -> Self {
        Self {
            root_pem: self.root_pem.clone(),
            root_der: self.root_der.clone(),
            intel_root: self.intel_root,
            collateral: self.collateral.clone(),
            quote,
            mr_enclave: self.mr_enclave,
            mr_signer: self.mr_signer,
            report_data: self.report_data,
        }
    }
}

/// A verdict, in ratls's vocabulary: accepted with a TCB status, or the failing check.
#[derive(Debug, Clone)]
enum Verdict {
    Accepted(String),
    Rejected(&'static str, String),
}

impl Verdict {
    fn summary(&self) -> String {
        match self {
            Self::Accepted(status) => format!("accepted ({status})"),
            Self::Rejected(check, _) => format!("rejected by `{check}`"),
        }
    }

    /// The same verdict under the default policy, which accepts only UpToDate.
    fn under_strict_policy(&self) -> String {
        match self {
            Self::Accepted(status) if status != "UpToDate" => "rejected by `tcb-status`".into(),
            other => other.summary(),
        }
    }
}

/// What Intel's QVL said about one case: its four statuses, in Intel's names.
#[derive(Debug, Clone)]
struct QvlResult {
    name: String,
    statuses: [String; 4],
    mr_enclave: Option<String>,
    report_data: Option<String>,
}

/// Intel's TCB status names for the statuses QVL's quote verification reports.
fn qvl_tcb_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "STATUS_OK" => "UpToDate",
        "STATUS_TCB_SW_HARDENING_NEEDED" => "SWHardeningNeeded",
        "STATUS_TCB_CONFIGURATION_NEEDED" => "ConfigurationNeeded",
        "STATUS_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED" => "ConfigurationAndSWHardeningNeeded",
        "STATUS_TCB_OUT_OF_DATE" => "OutOfDate",
        "STATUS_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED" => "OutOfDateConfigurationNeeded",
        _ => return None,
    })
}

/// The ratls check a QVL failure status corresponds to.
fn qvl_check(status: &str) -> &'static str {
    match status {
        "STATUS_UNSUPPORTED_QUOTE_FORMAT" => "quote-format",
        "STATUS_SGX_TCB_INFO_EXPIRED"
        | "STATUS_SGX_ENCLAVE_IDENTITY_EXPIRED"
        | "STATUS_SGX_CRL_EXPIRED"
        | "STATUS_SGX_PCK_CERT_CHAIN_EXPIRED"
        | "STATUS_SGX_SIGNING_CERT_CHAIN_EXPIRED" => "collateral-expiry",
        "STATUS_TCB_REVOKED"
        | "STATUS_PCK_REVOKED"
        | "STATUS_SGX_PCK_REVOKED"
        | "STATUS_SGX_INTERMEDIATE_CA_REVOKED"
        | "STATUS_SGX_TCB_SIGNING_CERT_REVOKED" => "revocation",
        // Chains, signatures, formats, TCB info / QE identity mismatches.
        _ => "dcap-signature",
    }
}

impl QvlResult {
    /// QVL's verdict in ratls's vocabulary. Its four verifications run independently; when
    /// several fail, the one ratls's pipeline reaches first names the verdict.
    fn verdict(&self) -> Verdict {
        const ORDER: [&str; 4] = [
            "quote-format",
            "collateral-expiry",
            "revocation",
            "dcap-signature",
        ];
        let [pck, tcb, qe, quote] = &self.statuses;
        let failed: Vec<&'static str> = [pck, tcb, qe]
            .into_iter()
            .filter(|s| *s != "STATUS_OK")
            .chain((qvl_tcb_status(quote).is_none()).then_some(quote))
            .map(|s| qvl_check(s))
            .collect();
        if let Some(check) = ORDER.into_iter().find(|c| failed.contains(c)) {
            return Verdict::Rejected(check, format!("{:?}", self.statuses));
        }
        Verdict::Accepted(qvl_tcb_status(quote).unwrap_or_default().to_owned())
    }
}

/// Runs Intel's QVL over `cases`. `None` when it is not installed and this is not CI.
fn qvl(cases: &[Value]) -> Option<Vec<QvlResult>> {
    // The wheel is built for CPython 3.11: SGX_SIM_QVL_PYTHON names another interpreter.
    let python = std::env::var("SGX_SIM_QVL_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(ORACLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python} {ORACLE} (Intel's QVL oracle): {e}"));
    let request = serde_json::to_vec(&json!({ "cases": cases })).unwrap();
    child.stdin.take().unwrap().write_all(&request).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(QVL_MISSING) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Intel's QVL oracle must run in CI: {stderr}"
        );
        eprintln!("SKIPPED, not verified by Intel's QVL: {stderr}");
        return None;
    }
    assert!(out.status.success(), "QVL oracle failed: {stderr}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("Intel QVL: {}", reply["qvl"]);
    let results: Vec<QvlResult> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| QvlResult {
            name: r["name"].as_str().unwrap().to_owned(),
            statuses: [
                "pck_certificate_status",
                "tcb_info_status",
                "qe_identity_status",
                "quote_status",
            ]
            .map(|k| r[k].as_str().unwrap().to_owned()),
            mr_enclave: r["mr_enclave"].as_str().map(str::to_owned),
            report_data: r["report_data"].as_str().map(str::to_owned),
        })
        .collect();
    assert_eq!(results.len(), cases.len());
    for (r, c) in results.iter().zip(cases) {
        assert_eq!(r.name, c["name"].as_str().unwrap());
    }
    Some(results)
}

/// A simulated platform made by the `sgx-sim` binary, and one quote from it.
struct SimCase {
    _dir: TempDir,
    evidence: Evidence,
}

fn sim_platform(tag: &str, init_args: &[&str]) -> SimCase {
    let dir = temp_dir(tag);
    let platform = dir.path().join("platform");
    let platform_s = platform.to_str().unwrap();
    let mut args = vec!["init", platform_s];
    args.extend_from_slice(init_args);
    if !init_args.contains(&"--seed") {
        args.extend_from_slice(&["--seed", "16"]);
    }
    if !init_args.contains(&"--not-before") {
        args.extend_from_slice(&["--not-before", "1759913600", "--not-after", "1762592000"]);
    }
    sgx_sim(&args);
    let id_path = dir.path().join("id.json");
    sgx_sim(&[
        "identity",
        "--out",
        id_path.to_str().unwrap(),
        "--seed",
        "16",
        "--isv-prod-id",
        "3",
        "--isv-svn",
        "2",
    ]);
    let quote_path = dir.path().join("quote.bin");
    let mut report_data = [0u8; 64];
    report_data[..14].copy_from_slice(b"issue 16 quote");
    sgx_sim(&[
        "quote",
        platform_s,
        "--identity",
        id_path.to_str().unwrap(),
        "--report-data",
        &hex::encode(report_data),
        "--out",
        quote_path.to_str().unwrap(),
    ]);
    let id = sgx_sim::Identity::load(&id_path).unwrap();
    let evidence = Evidence {
        root_pem: read_text(&platform.join(files::ROOT_CA_PEM)),
        root_der: der_of(&read_text(&platform.join(files::ROOT_CA_PEM))),
        intel_root: false,
        collateral: serde_json::from_str(&read_text(&platform.join(files::COLLATERAL_JSON)))
            .unwrap(),
        quote: std::fs::read(&quote_path).unwrap(),
        mr_enclave: id.mr_enclave,
        mr_signer: id.mr_signer,
        report_data,
    };
    // QVL gets the PCS bodies as the platform directory publishes them.
    let c = &evidence.collateral;
    assert_eq!(
        read_text(&platform.join(files::TCB_INFO_JSON)),
        sgx_sim::collateral::tcb_info_response(&c.tcb_info, &c.tcb_info_signature)
    );
    assert_eq!(
        read_text(&platform.join(files::QE_IDENTITY_JSON)),
        sgx_sim::collateral::qe_identity_response(&c.qe_identity, &c.qe_identity_signature)
    );
    assert_eq!(
        std::fs::read(platform.join(files::PCK_CRL_DER)).unwrap(),
        c.pck_crl
    );
    SimCase {
        _dir: dir,
        evidence,
    }
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn der_of(pem_text: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem_text.as_bytes())
        .unwrap()
        .to_vec()
}

/// One comparison: the evidence, the time, and what both verifiers must conclude.
struct Expect<'a> {
    name: String,
    evidence: &'a Evidence,
    when: u64,
    /// The agreed verdict, in ratls's vocabulary (`accepted (Status)` or "rejected by `check`").
    verdict: String,
}

/// Runs every comparison through both verifiers and asserts they agree with each other and
/// with the expected verdict. Returns false when QVL is not installed (outside CI).
fn agree(expects: &[Expect<'_>]) -> bool {
    let cases: Vec<Value> = expects
        .iter()
        .map(|e| e.evidence.qvl_case(&e.name, e.when))
        .collect();
    let Some(results) = qvl(&cases) else {
        return false;
    };
    let mut failures = Vec::new();
    for (e, q) in expects.iter().zip(&results) {
        let qvl = q.verdict();
        let lenient = e.evidence.ratls(&NON_TERMINAL, e.when);
        let strict = e.evidence.ratls(&["UpToDate"], e.when);
        eprintln!(
            "{:<48} QVL {:<40} ratls {:<40} {:?}",
            e.name,
            qvl.summary(),
            lenient.summary(),
            q.statuses
        );
        if qvl.summary() != e.verdict || lenient.summary() != e.verdict {
            failures.push(format!(
                "{}: expected {}, QVL {} {:?}, ratls {:?}",
                e.name,
                e.verdict,
                qvl.summary(),
                q.statuses,
                lenient
            ));
        }
        if strict.summary() != qvl.under_strict_policy() {
            failures.push(format!(
                "{}: under the default policy ratls {:?}, QVL {}",
                e.name,
                strict,
                qvl.under_strict_policy()
            ));
        }
        if let Verdict::Accepted(_) = qvl {
            // QVL read the same enclave out of the quote.
            assert_eq!(
                q.mr_enclave.as_deref(),
                Some(hex::encode(e.evidence.mr_enclave).as_str())
            );
            assert_eq!(
                q.report_data.as_deref(),
                Some(hex::encode(e.evidence.report_data).as_str())
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    true
}

fn accepted(status: &str) -> String {
    format!("accepted ({status})")
}

fn rejected(check: &str) -> String {
    format!("rejected by `{check}`")
}

#[test]
fn an_up_to_date_simulated_platform_passes_every_part_of_intels_qvl() {
    let sim = sim_platform("uptodate", &[]);
    let Some(results) = qvl(&[sim.evidence.qvl_case("UpToDate", NOW)]) else {
        return;
    };
    assert_eq!(
        results[0].statuses,
        ["STATUS_OK"; 4].map(str::to_owned),
        "PCK certificate, TCB info, QE identity, quote"
    );
    // ... while every certificate still says it is a simulation.
    let c = &sim.evidence.collateral;
    let mut certs = pem_certs(&sim.evidence.quote);
    certs.extend(pem_certs(c.tcb_info_issuer_chain.as_bytes()));
    assert_eq!(certs.len(), 5);
    for cert in certs {
        let der = der_of(&cert);
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        let subject = x509.subject().to_string();
        assert!(subject.contains("SIMULATED"), "{subject}");
        assert!(!subject.contains("O=Intel Corporation"), "{subject}");
    }
}

#[test]
fn every_sgx_sim_knob_gets_the_same_verdict_from_intels_qvl_and_ratls() {
    let mut sims = Vec::new();
    let mut expected = Vec::new();
    for status in NON_TERMINAL {
        sims.push(sim_platform(status, &["--tcb-status", status]));
        expected.push((format!("TCB {status}"), NOW, accepted(status)));
    }
    sims.push(sim_platform("revoked", &["--tcb-status", "Revoked"]));
    expected.push(("TCB Revoked".into(), NOW, rejected("revocation")));
    sims.push(sim_platform("revoked-pck", &["--revoke-pck"]));
    expected.push(("revoked PCK".into(), NOW, rejected("revocation")));
    // One platform, valid from NOW - 1 day to NOW + 30 days, read at several times.
    let window = sim_platform("window", &[]);
    let (from, until) = (NOW - DAY, NOW + 30 * DAY);
    let times = [
        (
            "collateral at the start of its window",
            from,
            accepted("UpToDate"),
        ),
        // At `until` itself the CRLs expire for dcap-qvl (webpki: nextUpdate is exclusive)
        // but not for QVL: pinned in `where_intels_qvl_and_ratls_differ_on_simulated_evidence`.
        (
            "collateral a second before its end",
            until - 1,
            accepted("UpToDate"),
        ),
        (
            "collateral expired a second ago",
            until + 1,
            rejected("collateral-expiry"),
        ),
        (
            "collateral expired a year ago",
            until + 365 * DAY,
            rejected("collateral-expiry"),
        ),
        (
            "collateral not yet valid (a second)",
            from - 1,
            rejected("collateral-expiry"),
        ),
        (
            "collateral not yet valid (a year)",
            from - 365 * DAY,
            rejected("collateral-expiry"),
        ),
    ];
    // Foreign roots: another simulated platform's, and Intel's.
    let other = sim_platform("other-root", &["--seed", "17"]);
    assert_ne!(other.evidence.root_der, window.evidence.root_der);
    let mut foreign = window.evidence.with_quote(window.evidence.quote.clone());
    foreign.root_pem = other.evidence.root_pem.clone();
    foreign.root_der = other.evidence.root_der.clone();
    let mut intel = window.evidence.with_quote(window.evidence.quote.clone());
    intel.root_pem = intel_root_pem();
    intel.intel_root = true;

    let mut expects: Vec<Expect<'_>> = sims
        .iter()
        .zip(expected)
        .map(|(sim, (name, when, verdict))| Expect {
            name,
            evidence: &sim.evidence,
            when,
            verdict,
        })
        .collect();
    expects.extend(times.into_iter().map(|(name, when, verdict)| Expect {
        name: name.into(),
        evidence: &window.evidence,
        when,
        verdict,
    }));
    expects.push(Expect {
        name: "another simulated platform's root".into(),
        evidence: &foreign,
        when: NOW,
        verdict: rejected("dcap-signature"),
    });
    expects.push(Expect {
        name: "Intel's root".into(),
        evidence: &intel,
        when: NOW,
        verdict: rejected("dcap-signature"),
    });
    agree(&expects);
}

/// Intel's SGX Root CA, as the sample's PCK chain carries it. ratls's `TrustAnchor::intel()`
/// (dcap-qvl's built-in copy) accepts the sample, so this certificate carries Intel's key.
fn intel_root_pem() -> String {
    let certs = pem_certs(SAMPLE_QUOTE);
    assert_eq!(certs.len(), 3);
    let root = certs[2].clone();
    let der = der_of(&root);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        x509.subject().to_string(),
        "CN=Intel SGX Root CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US"
    );
    root
}

fn sample() -> Evidence {
    let mut mr_enclave = [0u8; 32];
    hex::decode_to_slice(
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        &mut mr_enclave,
    )
    .unwrap();
    let mut mr_signer = [0u8; 32];
    hex::decode_to_slice(
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
        &mut mr_signer,
    )
    .unwrap();
    let mut report_data = [0u8; 64];
    report_data[..13].copy_from_slice(b"Hello, world!");
    let root_pem = intel_root_pem();
    Evidence {
        root_der: der_of(&root_pem),
        root_pem,
        intel_root: true,
        collateral: serde_json::from_str(SAMPLE_COLLATERAL).unwrap(),
        quote: SAMPLE_QUOTE.to_vec(),
        mr_enclave,
        mr_signer,
        report_data,
    }
}

#[test]
fn intels_sample_gets_the_same_verdict_from_intels_qvl_and_ratls_in_and_outside_its_window() {
    let sample = sample();
    let status = "ConfigurationAndSWHardeningNeeded";
    let times = [
        (
            "sample at its TCB info issueDate",
            SAMPLE_FROM,
            accepted(status),
        ),
        ("sample inside its window", 1_751_500_000, accepted(status)),
        (
            "sample at its QE identity nextUpdate",
            SAMPLE_UNTIL,
            accepted(status),
        ),
        (
            "sample a second after its window",
            SAMPLE_UNTIL + 1,
            rejected("collateral-expiry"),
        ),
        (
            "sample a year after its window",
            SAMPLE_UNTIL + 365 * DAY,
            rejected("collateral-expiry"),
        ),
        (
            "sample a week before its window",
            SAMPLE_FROM - 7 * DAY,
            rejected("collateral-expiry"),
        ),
    ];
    let expects: Vec<Expect<'_>> = times
        .into_iter()
        .map(|(name, when, verdict)| Expect {
            name: name.into(),
            evidence: &sample,
            when,
            verdict,
        })
        .collect();
    agree(&expects);
}

/// Offsets in a quote v3 (Intel "SGX ECDSA Quote Library API"): header 0..48, report body
/// 48..432, signature data length, then the signature data.
const BODY: usize = 48;
const SIG_DATA: usize = 436;
const ATT_KEY: usize = SIG_DATA + 64;
const QE_REPORT: usize = ATT_KEY + 64;
const QE_REPORT_SIG: usize = QE_REPORT + 384;
const QE_AUTH: usize = QE_REPORT_SIG + 64;
const CERT_DATA: usize = QE_AUTH + 2 + 32;

/// A different byte at `at`: a flipped low bit, or inside PEM text another base64 letter (so
/// the certificate's DER changes rather than its armour).
fn tamper(quote: &[u8], at: usize) -> Vec<u8> {
    let mut q = quote.to_vec();
    q[at] = match q[at] {
        b'A'..=b'Y' | b'a'..=b'y' | b'0'..=b'8' => q[at] + 1,
        b'Z' | b'z' | b'9' => q[at] - 1,
        b => b ^ 1,
    };
    assert_ne!(q[at], quote[at]);
    q
}

/// Where the `n`th PEM certificate of the certification data starts and ends.
fn pem_span(quote: &[u8], n: usize) -> (usize, usize) {
    let begin = b"-----BEGIN CERTIFICATE-----\n";
    let mut from = CERT_DATA;
    for _ in 0..n {
        from += find(&quote[from..], b"-----END CERTIFICATE-----").unwrap() + 1;
    }
    let start = from + find(&quote[from..], begin).unwrap() + begin.len();
    let end = start + find(&quote[start..], b"-----END").unwrap();
    (start, end)
}

#[test]
fn single_byte_tampering_anywhere_in_a_quote_is_rejected_by_intels_qvl_and_ratls() {
    let sim = sim_platform("tamper", &[]);
    let quote = &sim.evidence.quote;
    let (pck_start, pck_end) = pem_span(quote, 0);
    let (ca_start, ca_end) = pem_span(quote, 1);
    // (what, offset, QVL's check, ratls's check). Every check is the same on both sides but
    // one: QVL refuses a QE vendor ID other than Intel's as a format error, where ratls's
    // parser reads any vendor ID and dcap-qvl then refuses it.
    const FMT: &str = "quote-format";
    const SIG: &str = "dcap-signature";
    let positions: Vec<(&str, usize, &str, &str)> = vec![
        ("header: version", 0, FMT, FMT),
        ("header: attestation key type", 2, FMT, FMT),
        ("header: QE SVN", 8, SIG, SIG),
        ("header: QE vendor ID", 12, FMT, SIG),
        ("header: user data", 40, SIG, SIG),
        ("report body: CPUSVN", BODY, SIG, SIG),
        ("report body: attributes", BODY + 48, SIG, SIG),
        ("report body: MRENCLAVE", BODY + 64, SIG, SIG),
        ("report body: MRSIGNER", BODY + 128 + 31, SIG, SIG),
        ("report body: ISVSVN", BODY + 258, SIG, SIG),
        ("report body: report data", BODY + 320 + 63, SIG, SIG),
        ("signature data length", SIG_DATA - 4, FMT, FMT),
        ("ISV signature: r", SIG_DATA, SIG, SIG),
        ("ISV signature: s", SIG_DATA + 63, SIG, SIG),
        ("attestation key: x", ATT_KEY + 1, SIG, SIG),
        ("attestation key: y", ATT_KEY + 40, SIG, SIG),
        ("QE report: CPUSVN", QE_REPORT + 2, SIG, SIG),
        ("QE report: MRSIGNER", QE_REPORT + 128, SIG, SIG),
        ("QE report: ISVSVN", QE_REPORT + 258, SIG, SIG),
        ("QE report: report data", QE_REPORT + 320, SIG, SIG),
        ("QE report signature: r", QE_REPORT_SIG + 5, SIG, SIG),
        ("QE report signature: s", QE_REPORT_SIG + 50, SIG, SIG),
        ("QE authentication data", QE_AUTH + 2 + 7, SIG, SIG),
        (
            "certification data: PCK certificate body",
            pck_start + (pck_end - pck_start) / 2,
            SIG,
            SIG,
        ),
        (
            "certification data: PCK certificate signature",
            pck_end - 20,
            SIG,
            SIG,
        ),
        (
            "certification data: PCK CA certificate",
            ca_start + (ca_end - ca_start) / 2,
            SIG,
            SIG,
        ),
    ];
    let tampered: Vec<(String, Evidence)> = positions
        .iter()
        .map(|(what, at, ..)| {
            (
                format!("{what} (byte {at})"),
                sim.evidence.with_quote(tamper(quote, *at)),
            )
        })
        .collect();
    let cases: Vec<Value> = tampered
        .iter()
        .map(|(name, e)| e.qvl_case(name, NOW))
        .collect();
    let Some(results) = qvl(&cases) else {
        return;
    };
    // The untampered quote is accepted by both, so every rejection below is the tamper's.
    assert!(matches!(
        sim.evidence.ratls(&["UpToDate"], NOW),
        Verdict::Accepted(_)
    ));
    let mut failures = Vec::new();
    for (((name, evidence), q), (.., qvl_expected, ratls_expected)) in
        tampered.iter().zip(&results).zip(&positions)
    {
        let qvl = q.verdict();
        let ratls = evidence.ratls(&NON_TERMINAL, NOW);
        eprintln!(
            "{name:<52} QVL {:<32} ratls {:<32} {:?}",
            qvl.summary(),
            ratls.summary(),
            q.statuses
        );
        if qvl.summary() != rejected(qvl_expected) || ratls.summary() != rejected(ratls_expected) {
            failures.push(format!(
                "{name}: expected QVL {}, ratls {}; QVL {:?}, ratls {ratls:?}",
                rejected(qvl_expected),
                rejected(ratls_expected),
                q.statuses
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "after tampering:\n{}",
        failures.join("\n")
    );
}

/// The one place the two verifiers differ, pinned so that a change on either side shows up:
/// Intel's QVL checks TCB info and QE identity only against their `nextUpdate` (and the CRLs
/// and certificates against their whole validity), never against `issueDate`. Between the PCK
/// CRL's thisUpdate (2025-06-19T10:23:18Z) and the TCB info's issueDate (10:56:11Z) it accepts
/// the sample; ratls fails closed on collateral that is not yet valid.
#[test]
fn before_tcb_info_is_issued_intels_qvl_accepts_the_sample_and_ratls_refuses() {
    let sample = sample();
    let pck_crl_this_update = 1_750_328_598;
    let times = [SAMPLE_FROM - 1, pck_crl_this_update + 1];
    let cases: Vec<Value> = times
        .iter()
        .map(|t| sample.qvl_case(&format!("sample at {t}"), *t))
        .collect();
    let Some(results) = qvl(&cases) else {
        return;
    };
    for (t, q) in times.iter().zip(&results) {
        assert_eq!(
            q.verdict().summary(),
            accepted("ConfigurationAndSWHardeningNeeded"),
            "QVL at {t}: {:?}",
            q.statuses
        );
        let ratls = sample.ratls(&NON_TERMINAL, *t);
        let Verdict::Rejected("collateral-expiry", detail) = &ratls else {
            panic!("ratls at {t}: {ratls:?}");
        };
        assert!(detail.contains("not yet valid"), "{detail}");
    }
    // A second before the PCK CRL's thisUpdate, QVL refuses as well.
    let before = pck_crl_this_update - 1;
    let results = qvl(&[sample.qvl_case("sample before its PCK CRL", before)]).unwrap();
    assert_eq!(
        results[0].verdict().summary(),
        rejected("collateral-expiry"),
        "{:?}",
        results[0].statuses
    );
}

/// The differences on simulated evidence, pinned so that a change on either side shows up:
///
/// - At exactly the collateral's `nextUpdate` QVL still accepts, and so does ratls: its window
///   includes that second and it hands dcap-qvl (whose webpki treats a CRL's nextUpdate as
///   exclusive) the second before. This was a difference until ratls fixed it; it stays
///   pinned here so it cannot come back. A second later both answer `collateral-expiry`.
/// - The certification data type is covered by no signature. QVL's API takes the PCK
///   certificate as a parameter and never reads the type, so with the type changed from 5 to 4
///   (and the chain still there) it accepts; dcap-qvl reads the chain only from type 5 and
///   refuses. Either way a quote is accepted only if a valid PCK chain signs its QE report.
#[test]
fn where_intels_qvl_and_ratls_differ_on_simulated_evidence() {
    let sim = sim_platform("differ", &[]);
    let until = NOW + 30 * DAY;
    let type4 = sim
        .evidence
        .with_quote(tamper(&sim.evidence.quote, CERT_DATA));
    assert_eq!(type4.quote[CERT_DATA], 4);
    let cases = [
        sim.evidence.qvl_case("at nextUpdate", until),
        type4.qvl_case("certification data type 4", NOW),
    ];
    let Some(results) = qvl(&cases) else {
        return;
    };
    for r in &results {
        assert_eq!(
            r.statuses,
            ["STATUS_OK"; 4].map(str::to_owned),
            "{}",
            r.name
        );
    }
    let at_next_update = sim.evidence.ratls(&NON_TERMINAL, until);
    assert!(
        matches!(at_next_update, Verdict::Accepted(..)),
        "ratls at nextUpdate, where QVL accepts: {at_next_update:?}"
    );
    let Verdict::Rejected("dcap-signature", detail) = type4.ratls(&NON_TERMINAL, NOW) else {
        panic!("ratls accepted certification data type 4")
    };
    assert!(detail.contains("cert format: 4"), "{detail}");
}
