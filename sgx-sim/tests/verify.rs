//! The judge is dcap-qvl: simulated quotes must verify under the simulated root with exactly
//! the configured status, identity and report data, and be rejected under Intel's root, with
//! a revoked PCK, and outside the collateral window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use dcap_qvl::verify::QuoteVerifier;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, TcbStatus};
use test_kit::{TempDir, temp_dir};

/// A fixed clock for the whole file: collateral windows are built around it.
const NOW: u64 = 1_760_000_000;

fn platform(tag: &str, opts: &PlatformOptions) -> (TempDir, SimPlatform) {
    let dir = temp_dir(tag);
    let p = SimPlatform::create(&platform_dir(&dir), opts).expect("create platform");
    (dir, p)
}

fn identity() -> Identity {
    let mut id = Identity::random(Some(42)).unwrap();
    id.isv_prod_id = 7;
    id.isv_svn = 3;
    id.config_svn = 2;
    id
}

fn report_data() -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..13].copy_from_slice(b"Hello, world!");
    rd[63] = 0xee;
    rd
}

#[test]
fn every_status_verifies_as_configured_and_revoked_fails() {
    for status in TcbStatus::ALL {
        let mut opts = PlatformOptions::new(NOW);
        opts.tcb_status = status;
        opts.seed = Some(9);
        let (_dir, p) = platform(status.as_str(), &opts);
        let quote = p.quote(&identity(), &report_data()).unwrap();
        let result =
            QuoteVerifier::new(p.root_ca_der().to_vec()).verify(&quote, &p.collateral(), NOW);
        if status == TcbStatus::Revoked {
            let err = result.expect_err("a Revoked TCB must not verify");
            assert!(format!("{err:#}").contains("Revoked"), "{err:#}");
        } else {
            let report = result.unwrap_or_else(|e| panic!("{status}: {e:#}"));
            assert_eq!(report.status, status.as_str());
            assert!(
                report.advisory_ids.is_empty(),
                "{status}: {:?}",
                report.advisory_ids
            );
        }
    }
}

#[test]
fn advisories_reach_the_verdict() {
    let mut opts = PlatformOptions::new(NOW);
    opts.tcb_status = TcbStatus::SWHardeningNeeded;
    opts.advisory_ids = vec!["INTEL-SA-00615".into(), "SIM-SA-00001".into()];
    let (_dir, p) = platform("advisory", &opts);
    let quote = p.quote(&identity(), &report_data()).unwrap();
    let report = QuoteVerifier::new(p.root_ca_der().to_vec())
        .verify(&quote, &p.collateral(), NOW)
        .unwrap();
    assert_eq!(report.status, "SWHardeningNeeded");
    assert_eq!(report.advisory_ids, opts.advisory_ids);
}

#[test]
fn the_verified_report_carries_the_identity_and_report_data() {
    let (_dir, p) = platform("fields", &PlatformOptions::new(NOW));
    let id = identity();
    let quote = p.quote(&id, &report_data()).unwrap();
    let report = QuoteVerifier::new(p.root_ca_der().to_vec())
        .verify(&quote, &p.collateral(), NOW)
        .unwrap();
    let dcap_qvl::quote::Report::SgxEnclave(body) = report.report else {
        panic!("not an SGX report")
    };
    assert_eq!(body.mr_enclave, id.mr_enclave);
    assert_eq!(body.mr_signer, id.mr_signer);
    assert_eq!((body.isv_prod_id, body.isv_svn), (7, 3));
    assert_eq!(body.report_data, report_data());
    assert_eq!(body.attributes[0], 0x5);

    // Our own parser agrees, including the fields dcap-qvl folds into reserved bytes.
    let parsed = ratls::quote::Quote::parse(&quote).unwrap();
    assert_eq!(parsed.body.config_svn, 2);
    assert_eq!(parsed.body, id.report_body(p.cpu_svn(), report_data()));
    assert_eq!(parsed.header.qe_vendor_id, dcap_qvl::INTEL_QE_VENDOR_ID);
    assert_eq!(parsed.signature.cert_data_type, 5);
}

#[test]
fn intels_root_rejects_simulated_quotes() {
    let (_dir, p) = platform("prod", &PlatformOptions::new(NOW));
    let quote = p.quote(&identity(), &report_data()).unwrap();
    let err = QuoteVerifier::new_prod()
        .verify(&quote, &p.collateral(), NOW)
        .unwrap_err();
    // The root CA CRL is signed by the simulated root, so the chain fails right there.
    assert!(format!("{err:#}").to_lowercase().contains("crl"), "{err:#}");
    let root = x509_subject(p.root_ca_der());
    assert!(root.contains("SIMULATED"), "{root}");
}

#[test]
fn a_revoked_pck_is_rejected() {
    let mut opts = PlatformOptions::new(NOW);
    opts.revoke_pck = true;
    let (_dir, p) = platform("revoked-pck", &opts);
    let quote = p.quote(&identity(), &report_data()).unwrap();
    let err = QuoteVerifier::new(p.root_ca_der().to_vec())
        .verify(&quote, &p.collateral(), NOW)
        .unwrap_err();
    assert!(format!("{err:#}").contains("CertRevoked"), "{err:#}");
}

#[test]
fn collateral_outside_its_window_is_rejected() {
    let mut opts = PlatformOptions::new(NOW);
    opts.not_before = NOW - 100;
    opts.not_after = NOW + 100;
    let (_dir, p) = platform("window", &opts);
    let quote = p.quote(&identity(), &report_data()).unwrap();
    let verifier = QuoteVerifier::new(p.root_ca_der().to_vec());
    assert!(verifier.verify(&quote, &p.collateral(), NOW - 100).is_ok());
    assert!(verifier.verify(&quote, &p.collateral(), NOW + 99).is_ok());
    for at in [NOW - 101, NOW + 101, NOW + 365 * 86400] {
        let err = verifier.verify(&quote, &p.collateral(), at).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("expired")
                || text.contains("future")
                || text.contains("Expired")
                || text.contains("NotValidYet"),
            "at {at}: {text}"
        );
    }
}

#[test]
fn a_debug_enclave_is_rejected_unless_debug_is_allowed() {
    let (_dir, p) = platform("debug", &PlatformOptions::new(NOW));
    let mut id = identity();
    id.debuggable = true;
    let quote = p.quote(&id, &report_data()).unwrap();
    let verifier = QuoteVerifier::new(p.root_ca_der().to_vec());
    let err = verifier.verify(&quote, &p.collateral(), NOW).unwrap_err();
    assert!(format!("{err:#}").contains("Debug"), "{err:#}");
    verifier
        .allow_debug(true)
        .verify(&quote, &p.collateral(), NOW)
        .unwrap();
}

#[test]
fn a_tampered_quote_or_foreign_collateral_is_rejected() {
    let (_dir, p) = platform("tamper", &PlatformOptions::new(NOW));
    let (_dir2, other) = platform("tamper-other", &PlatformOptions::new(NOW));
    let quote = p.quote(&identity(), &report_data()).unwrap();
    let verifier = QuoteVerifier::new(p.root_ca_der().to_vec());

    let mut flipped = quote.clone();
    flipped[48 + 64] ^= 1; // mr_enclave
    let err = verifier.verify(&flipped, &p.collateral(), NOW).unwrap_err();
    assert!(
        format!("{err:#}").contains("signature is invalid"),
        "{err:#}"
    );

    // Another simulated platform's collateral (a different root) does not vouch for this one.
    assert!(verifier.verify(&quote, &other.collateral(), NOW).is_err());
    // Nor does its root.
    assert!(
        QuoteVerifier::new(other.root_ca_der().to_vec())
            .verify(&quote, &p.collateral(), NOW)
            .is_err()
    );

    let mut coll = p.collateral();
    coll.tcb_info = coll.tcb_info.replace(
        "\"tcbEvaluationDataNumber\":1",
        "\"tcbEvaluationDataNumber\":2",
    );
    let err = verifier.verify(&quote, &coll, NOW).unwrap_err();
    assert!(format!("{err:#}").contains("tcb_info"), "{err:#}");
}

#[test]
fn a_seed_makes_the_pki_reproducible() {
    let mut opts = PlatformOptions::new(NOW);
    opts.seed = Some(1234);
    let (_a, a) = platform("seed-a", &opts);
    let (_b, b) = platform("seed-b", &opts);
    opts.seed = Some(1235);
    let (_c, c) = platform("seed-c", &opts);
    let spki = |p: &SimPlatform| x509_spki(p.root_ca_der());
    assert_eq!(spki(&a), spki(&b));
    assert_ne!(spki(&a), spki(&c));
    // Quotes of one seeded platform verify under the other's identical root.
    let quote = a.quote(&identity(), &report_data()).unwrap();
    QuoteVerifier::new(b.root_ca_der().to_vec())
        .verify(&quote, &a.collateral(), NOW)
        .unwrap();
}

#[test]
fn a_reopened_platform_quotes_like_the_original() {
    let (dir, p) = platform("reopen", &PlatformOptions::new(NOW));
    drop(p);
    let p = SimPlatform::open(&platform_dir(&dir)).unwrap();
    let quote = p.quote(&identity(), &report_data()).unwrap();
    QuoteVerifier::new(p.root_ca_der().to_vec())
        .verify(&quote, &p.collateral(), NOW)
        .unwrap();
    // Creating again over it is refused, so its keys are never silently replaced.
    let err = SimPlatform::create(&platform_dir(&dir), &PlatformOptions::new(NOW)).unwrap_err();
    assert!(
        matches!(err, sgx_sim::SimError::AlreadyInitialized { .. }),
        "{err}"
    );
}

#[test]
fn private_keys_are_mode_0600_and_public_files_are_not_secret() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _p) = platform("modes", &PlatformOptions::new(NOW));
    for entry in std::fs::read_dir(platform_dir(&dir)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if name.ends_with(".key") {
            assert_eq!(mode, 0o600, "{name}");
            assert!(
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .starts_with("-----BEGIN PRIVATE KEY-----")
            );
        } else {
            assert_eq!(mode & 0o077, 0o044, "{name}");
        }
    }
}

#[test]
fn a_corrupted_platform_refuses_to_open() {
    let (dir, _p) = platform("corrupt", &PlatformOptions::new(NOW));
    let (other, _q) = platform("corrupt-other", &PlatformOptions::new(NOW));
    std::fs::copy(
        platform_dir(&other).join("attestation.key"),
        platform_dir(&dir).join("attestation.key"),
    )
    .unwrap();
    let err = SimPlatform::open(&platform_dir(&dir)).unwrap_err();
    assert!(matches!(err, sgx_sim::SimError::Corrupt { .. }), "{err}");
}

#[test]
fn invalid_options_are_refused_before_anything_is_written() {
    let dir = temp_dir("invalid");
    let mut opts = PlatformOptions::new(NOW);
    opts.not_after = opts.not_before;
    assert!(matches!(
        SimPlatform::create(&platform_dir(&dir), &opts),
        Err(sgx_sim::SimError::InvalidOption { .. })
    ));
    let mut opts = PlatformOptions::new(NOW);
    opts.advisory_ids = vec!["bad id".into()];
    assert!(matches!(
        SimPlatform::create(&platform_dir(&dir), &opts),
        Err(sgx_sim::SimError::InvalidOption { .. })
    ));
    assert!(!platform_dir(&dir).exists());
}

#[test]
fn the_quote_source_says_it_is_simulated() {
    use quote_source::QuoteSource;
    let (dir, p) = platform("source", &PlatformOptions::new(NOW));
    let root = p.root_ca_der().to_vec();
    let collateral = p.collateral();
    let mut id = identity();
    id.name = Some("kms".into());
    let source = sgx_sim::SimQuoteSource::new(p, id.clone());
    assert!(source.is_simulated());
    assert!(source.describe().starts_with(&format!(
        "SIMULATED sgx platform at {}",
        platform_dir(&dir).display()
    )));
    let quote = source.quote(&report_data()).unwrap();
    QuoteVerifier::new(root)
        .verify(&quote, &collateral, NOW)
        .unwrap();
}

fn x509_subject(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject().to_string()
}

fn x509_spki(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.public_key().raw.to_vec()
}

/// The platform's directory in `dir`: not there until `SimPlatform::create` makes it.
fn platform_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("platform")
}
