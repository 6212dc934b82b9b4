//! A simulated SGX platform on disk: create it once (`SimPlatform::create`), open it anywhere
//! (`SimPlatform::open`), and sign quotes for any enclave identity exactly as the hardware's
//! quoting enclave would: header and report body signed by the attestation key, the QE report
//! (committing to that key) signed by the PCK key, and the PCK chain as certification data.
//!
//! Nothing here is hardware: the root CA is generated, its subject says SIMULATED, and only a
//! verifier explicitly given that root (`dcap_qvl::verify::QuoteVerifier::new(root)`) accepts
//! these quotes. Intel's root rejects them.

use std::fmt;
use std::path::{Path, PathBuf};

use dcap_qvl::QuoteCollateralV3;
use ratls::quote::{ReportBody, SIGNED_LEN};
use ring::digest;
use ring::rand::SystemRandom;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::collateral::{self, QeIdentityInput, TcbInfoInput, TcbStatus};
use crate::files::{self, MAX_PLATFORM_FILE_LEN};
use crate::identity::Identity;
use crate::keys::{Entropy, PrivateKey};
use crate::pki::{self, PkiOptions, SgxExtension};
use crate::timefmt::{rfc3339, unix_now};
use crate::{SimError, pem};

/// FMSPC of every simulated platform: `00 'S' 'I' 'M' 00 00`, recognisable in hex.
pub const SIM_FMSPC: [u8; 6] = [0x00, 0x53, 0x49, 0x4d, 0x00, 0x00];
/// PCE ID (Intel's PCE is 0).
pub const SIM_PCE_ID: [u8; 2] = [0, 0];
/// The platform's 16 SGX TCB component SVNs (also its CPUSVN).
pub const SIM_TCB_COMPONENTS: [u8; 16] = [11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// The platform's PCE SVN.
pub const SIM_PCE_SVN: u16 = 13;
/// The simulated quoting enclave's ISV SVN (the quote header's `qe_svn`).
pub const SIM_QE_SVN: u16 = 8;
/// The simulated quoting enclave's ISV product ID (Intel's QE uses 1).
pub const SIM_QE_PROD_ID: u16 = 1;
/// QE report attributes: INIT | MODE64BIT | PROVISIONKEY, xfrm as the enclaves'.
const QE_ATTRIBUTES_FLAGS: u64 = 0x15;
/// Intel's QE authentication data is 32 bytes; dcap-qvl requires exactly that length.
const QE_AUTH_DATA_LEN: usize = 32;
/// Quote header constants (Intel "SGX ECDSA Quote Library API", table 3).
const QUOTE_VERSION: u16 = 3;
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
const TEE_TYPE_SGX: u32 = 0;
const CERT_DATA_TYPE_PCK_CHAIN: u16 = 5;
/// The text every artefact of this crate carries so it cannot pass for hardware.
pub const SIMULATED_NOTICE: &str = "SIMULATED SGX platform made by sgx-sim: not hardware, and its root CA is not Intel's. \
     Quotes from it prove nothing about a real enclave; trust its root only in tests.";
/// Default collateral window: valid from a day ago...
pub const DEFAULT_VALID_BEFORE_NOW: u64 = 24 * 3600;
/// ...until thirty days from now.
pub const DEFAULT_VALID_AFTER_NOW: u64 = 30 * 24 * 3600;
/// Largest number of advisory IDs on the platform's TCB level.
pub const MAX_ADVISORIES: usize = 64;

/// How to create a platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformOptions {
    /// The status of the platform's TCB level in the TCB info.
    pub tcb_status: TcbStatus,
    /// Advisory IDs on the platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// List the PCK leaf in the PCK CRL.
    pub revoke_pck: bool,
    /// Start of validity of certificates, CRLs and collateral (Unix seconds).
    pub not_before: u64,
    /// End of validity (TCB info / QE identity `nextUpdate`, CRL `nextUpdate`, cert `notAfter`).
    pub not_after: u64,
    /// Derive every key and random value from this seed (reproducible test vectors).
    pub seed: Option<u64>,
    /// The platform's FMSPC (PCK certificate, TCB info). Two platforms made from one seed
    /// share their root and PCK CA keys, so a different FMSPC gives another platform model
    /// under the same (simulated) root, as Intel's PKI has many.
    pub fmspc: [u8; 6],
}

impl PlatformOptions {
    /// UpToDate, not revoked, valid from `now` minus a day to `now` plus thirty days.
    pub fn new(now: u64) -> Self {
        Self {
            tcb_status: TcbStatus::UpToDate,
            advisory_ids: Vec::new(),
            revoke_pck: false,
            not_before: now.saturating_sub(DEFAULT_VALID_BEFORE_NOW),
            not_after: now.saturating_add(DEFAULT_VALID_AFTER_NOW),
            seed: None,
            fmspc: SIM_FMSPC,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        if self.not_before >= self.not_after {
            return Err(SimError::InvalidOption {
                what: "validity window",
                detail: format!(
                    "not-before {} is not before not-after {}",
                    self.not_before, self.not_after
                ),
            });
        }
        rfc3339(self.not_before, "--not-before")?;
        rfc3339(self.not_after, "--not-after")?;
        if self.advisory_ids.len() > MAX_ADVISORIES {
            return Err(SimError::InvalidOption {
                what: "advisory IDs",
                detail: format!(
                    "{} given, at most {MAX_ADVISORIES}",
                    self.advisory_ids.len()
                ),
            });
        }
        if let Some(bad) = self
            .advisory_ids
            .iter()
            .find(|id| id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(SimError::InvalidOption {
                what: "advisory ID",
                detail: format!("{bad:?} must be 1 to 64 printable ASCII characters"),
            });
        }
        Ok(())
    }
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self::new(unix_now())
    }
}

/// An opened simulated platform: everything needed to sign quotes and hand out collateral.
pub struct SimPlatform {
    dir: PathBuf,
    params: PlatformFile,
    fmspc: [u8; 6],
    attestation_key: PrivateKey,
    attestation_public: [u8; 64],
    qe_report: [u8; 384],
    qe_report_signature: [u8; 64],
    qe_auth_data: [u8; QE_AUTH_DATA_LEN],
    qe_id: [u8; 16],
    pck_chain_pem: Vec<u8>,
    root_ca_der: Vec<u8>,
    collateral: QuoteCollateralV3,
    rng: SystemRandom,
}

impl fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPlatform")
            .field("simulated", &true)
            .field("dir", &self.dir)
            .field("fmspc", &hex::encode(self.fmspc))
            .field("tcb_status", &self.params.tcb_status)
            .finish_non_exhaustive()
    }
}

impl SimPlatform {
    /// Creates a platform in `dir` (created if missing) and opens it. Refuses a directory
    /// that already holds one, so keys are never silently replaced.
    pub fn create(dir: &Path, opts: &PlatformOptions) -> Result<Self, SimError> {
        opts.validate()?;
        let marker = dir.join(files::PLATFORM_JSON);
        if marker.exists() {
            return Err(SimError::AlreadyInitialized {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            what: "creating simulated platform directory".into(),
            path: dir.to_path_buf(),
            source,
        })?;
        let made = Made::generate(opts)?;
        made.write(dir)?;
        Self::open(dir)
    }

    /// Opens a platform that [`SimPlatform::create`] made, checking its files agree.
    pub fn open(dir: &Path) -> Result<Self, SimError> {
        let path = |name: &str| dir.join(name);
        let platform_path = path(files::PLATFORM_JSON);
        let raw = files::read_bounded(
            &platform_path,
            MAX_PLATFORM_FILE_LEN,
            "reading simulated platform",
        )?;
        let params: PlatformFile =
            serde_json::from_slice(&raw).map_err(|source| SimError::Json {
                what: "parsing simulated platform".into(),
                path: platform_path.clone(),
                source,
            })?;
        let qe_report = hex_array(&platform_path, "qe_report", &params.qe_report)?;
        let qe_report_signature = hex_array(
            &platform_path,
            "qe_report_signature",
            &params.qe_report_signature,
        )?;
        let qe_auth_data = hex_array(&platform_path, "qe_auth_data", &params.qe_auth_data)?;
        let qe_id = hex_array(&platform_path, "qe_id", &params.qe_id)?;
        let fmspc = hex_array(&platform_path, "fmspc", &params.fmspc)?;
        let attestation_public: [u8; 64] = hex_array(
            &platform_path,
            "attestation_public_key",
            &params.attestation_public_key,
        )?;

        let key_path = path(files::ATTESTATION_KEY);
        let key_pem =
            files::read_bounded(&key_path, MAX_PLATFORM_FILE_LEN, "reading attestation key")?;
        let attestation_key = PrivateKey::from_pem(&key_pem, "attestation key")?;
        if attestation_key.public_raw()? != attestation_public {
            return Err(SimError::Corrupt {
                path: key_path,
                detail: "attestation key does not match platform.json's attestation_public_key"
                    .into(),
            });
        }

        let chain_path = path(files::PCK_CHAIN_PEM);
        let pck_chain_pem =
            files::read_bounded(&chain_path, MAX_PLATFORM_FILE_LEN, "reading PCK chain")?;
        let chain_len = CertificateDer::pem_slice_iter(&pck_chain_pem)
            .filter(Result::is_ok)
            .count();
        if chain_len != 3 {
            return Err(SimError::Corrupt {
                path: chain_path,
                detail: format!("expected 3 certificates (PCK, PCK CA, root), found {chain_len}"),
            });
        }

        let root_path = path(files::ROOT_CA_PEM);
        let root_pem = files::read_bounded(&root_path, MAX_PLATFORM_FILE_LEN, "reading root CA")?;
        let root_ca_der = CertificateDer::from_pem_slice(&root_pem)
            .map_err(|e| SimError::Corrupt {
                path: root_path,
                detail: format!("no PEM certificate: {e}"),
            })?
            .to_vec();

        let coll_path = path(files::COLLATERAL_JSON);
        let raw = files::read_bounded(&coll_path, MAX_PLATFORM_FILE_LEN, "reading collateral")?;
        let collateral = serde_json::from_slice(&raw).map_err(|source| SimError::Json {
            what: "parsing collateral".into(),
            path: coll_path,
            source,
        })?;

        Ok(Self {
            dir: dir.to_path_buf(),
            params,
            fmspc,
            attestation_key,
            attestation_public,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            qe_id,
            pck_chain_pem,
            root_ca_der,
            collateral,
            rng: SystemRandom::new(),
        })
    }

    /// A quote v3 for `identity` carrying `report_data`, signed as the hardware QE would.
    ///
    /// Layout (Intel "SGX ECDSA Quote Library API"): header (48) || report body (384) ||
    /// signature_data_len (u32) || ECDSA sig over [0, 432) || attestation key (x||y) ||
    /// QE report (384) || QE report sig || QE auth data len (u16) || QE auth data ||
    /// cert data type (u16, 5) || cert data len (u32) || PEM chain PCK, PCK CA, root.
    pub fn quote(&self, identity: &Identity, report_data: &[u8; 64]) -> Result<Vec<u8>, SimError> {
        let body = identity.report_body(self.cpu_svn(), *report_data);
        self.quote_for_body(&body)
    }

    /// A quote for an arbitrary report body (tests use it to forge odd bodies).
    pub fn quote_for_body(&self, body: &ReportBody) -> Result<Vec<u8>, SimError> {
        let cert_len =
            u32::try_from(self.pck_chain_pem.len()).map_err(|_| SimError::InvalidOption {
                what: "PCK chain",
                detail: "over 4 GiB".into(),
            })?;
        let mut quote =
            Vec::with_capacity(SIGNED_LEN + 4 + 64 * 4 + 384 + 40 + self.pck_chain_pem.len());
        quote.extend_from_slice(&QUOTE_VERSION.to_le_bytes());
        quote.extend_from_slice(&ATT_KEY_TYPE_ECDSA_P256.to_le_bytes());
        quote.extend_from_slice(&TEE_TYPE_SGX.to_le_bytes());
        quote.extend_from_slice(&SIM_QE_SVN.to_le_bytes());
        quote.extend_from_slice(&self.params.pce_svn.to_le_bytes());
        // dcap-qvl accepts only Intel's QE vendor ID; the root CA is what marks a simulation.
        quote.extend_from_slice(&dcap_qvl::INTEL_QE_VENDOR_ID);
        quote.extend_from_slice(&self.qe_id);
        quote.extend_from_slice(&[0u8; 4]);
        quote.extend_from_slice(&body.to_bytes());
        let signature = self.attestation_key.sign(&quote, &self.rng)?;

        let mut sig_data = Vec::with_capacity(64 * 4 + 384 + 40 + self.pck_chain_pem.len());
        sig_data.extend_from_slice(&signature);
        sig_data.extend_from_slice(&self.attestation_public);
        sig_data.extend_from_slice(&self.qe_report);
        sig_data.extend_from_slice(&self.qe_report_signature);
        sig_data.extend_from_slice(&(QE_AUTH_DATA_LEN as u16).to_le_bytes());
        sig_data.extend_from_slice(&self.qe_auth_data);
        sig_data.extend_from_slice(&CERT_DATA_TYPE_PCK_CHAIN.to_le_bytes());
        sig_data.extend_from_slice(&cert_len.to_le_bytes());
        sig_data.extend_from_slice(&self.pck_chain_pem);
        let sig_len = u32::try_from(sig_data.len()).map_err(|_| SimError::InvalidOption {
            what: "quote",
            detail: "over 4 GiB".into(),
        })?;
        quote.extend_from_slice(&sig_len.to_le_bytes());
        quote.extend_from_slice(&sig_data);
        Ok(quote)
    }

    /// The simulated root CA certificate, DER. Trust it only where a test says so.
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root_ca_der
    }

    /// All collateral for this platform's quotes, as dcap-qvl takes it.
    pub fn collateral(&self) -> QuoteCollateralV3 {
        self.collateral.clone()
    }

    /// The platform directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The platform's FMSPC.
    pub fn fmspc(&self) -> [u8; 6] {
        self.fmspc
    }

    /// The platform's CPUSVN (what report bodies carry).
    pub fn cpu_svn(&self) -> [u8; 16] {
        SIM_TCB_COMPONENTS
    }

    /// The status the platform's TCB level carries.
    pub fn tcb_status(&self) -> TcbStatus {
        self.params.tcb_status
    }

    /// The advisory IDs on the platform's TCB level.
    pub fn advisory_ids(&self) -> &[String] {
        &self.params.advisory_ids
    }

    /// Whether the PCK leaf is listed in the PCK CRL.
    pub fn pck_revoked(&self) -> bool {
        self.params.pck_revoked
    }

    /// The collateral's validity window, Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        (self.params.not_before, self.params.not_after)
    }
}

/// platform.json: public parameters and the pre-signed QE report.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    notice: String,
    format_version: u32,
    fmspc: String,
    pce_id: String,
    cpu_svn: String,
    pce_svn: u16,
    qe_svn: u16,
    qe_id: String,
    #[serde(with = "status_name")]
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    pck_revoked: bool,
    not_before: u64,
    not_after: u64,
    seed: Option<u64>,
    attestation_public_key: String,
    qe_report: String,
    qe_report_signature: String,
    qe_auth_data: String,
}

mod status_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::collateral::TcbStatus;

    pub fn serialize<S: Serializer>(s: &TcbStatus, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<TcbStatus, D::Error> {
        let name = String::deserialize(de)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything `create` generates, before it is written out.
struct Made {
    params: PlatformFile,
    pki: pki::Pki,
    attestation_key: PrivateKey,
    collateral: QuoteCollateralV3,
}

impl Made {
    fn generate(opts: &PlatformOptions) -> Result<Self, SimError> {
        let entropy = Entropy::new(opts.seed);
        let rng = SystemRandom::new();
        let sgx = SgxExtension {
            ppid: entropy.bytes("ppid")?,
            tcb_components: SIM_TCB_COMPONENTS,
            pce_svn: SIM_PCE_SVN,
            pce_id: SIM_PCE_ID,
            fmspc: opts.fmspc,
        };
        let pki = pki::build(
            &entropy,
            &sgx,
            &PkiOptions {
                not_before: opts.not_before,
                not_after: opts.not_after,
                revoke_pck: opts.revoke_pck,
            },
        )?;

        // The quoting enclave: its report commits to the attestation key and is signed by PCK.
        let attestation_key = entropy.p256_key("attestation key")?;
        let attestation_public = attestation_key.public_raw()?;
        let qe_auth_data: [u8; QE_AUTH_DATA_LEN] = core::array::from_fn(|i| i as u8);
        let mut qe_report_data = [0u8; 64];
        let mut hash_input = attestation_public.to_vec();
        hash_input.extend_from_slice(&qe_auth_data);
        let hash = digest::digest(&digest::SHA256, &hash_input);
        for (dst, src) in qe_report_data.iter_mut().zip(hash.as_ref()) {
            *dst = *src;
        }
        let qe_mr_signer = sha256(b"sgx-sim SIMULATED quoting enclave signer");
        let qe_body = ReportBody {
            cpu_svn: SIM_TCB_COMPONENTS,
            misc_select: 0,
            isv_ext_prod_id: [0; 16],
            attributes_flags: QE_ATTRIBUTES_FLAGS,
            attributes_xfrm: crate::identity::ATTRIBUTE_XFRM,
            mr_enclave: sha256(b"sgx-sim SIMULATED quoting enclave"),
            mr_signer: qe_mr_signer,
            config_id: [0; 64],
            isv_prod_id: SIM_QE_PROD_ID,
            isv_svn: SIM_QE_SVN,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data: qe_report_data,
        };
        let qe_report = qe_body.to_bytes();
        let qe_report_signature = pki.pck.key.sign(&qe_report, &rng)?;

        let tcb_info = collateral::tcb_info_json(&TcbInfoInput {
            fmspc: opts.fmspc,
            pce_id: SIM_PCE_ID,
            tcb_components: SIM_TCB_COMPONENTS,
            pce_svn: SIM_PCE_SVN,
            status: opts.tcb_status,
            advisory_ids: &opts.advisory_ids,
            issue_date: opts.not_before,
            next_update: opts.not_after,
        })?;
        let qe_identity = collateral::qe_identity_json(&QeIdentityInput {
            mr_signer: qe_mr_signer,
            isv_prod_id: SIM_QE_PROD_ID,
            isv_svn: SIM_QE_SVN,
            issue_date: opts.not_before,
            next_update: opts.not_after,
        })?;
        let tcb_info_signature = pki.tcb_signing.key.sign(tcb_info.as_bytes(), &rng)?;
        let qe_identity_signature = pki.tcb_signing.key.sign(qe_identity.as_bytes(), &rng)?;
        let root_pem = pem::encode("CERTIFICATE", &pki.root.cert_der);
        let tcb_chain = pem::encode("CERTIFICATE", &pki.tcb_signing.cert_der) + &root_pem;
        let collateral = QuoteCollateralV3 {
            pck_crl_issuer_chain: pem::encode("CERTIFICATE", &pki.pck_ca.cert_der) + &root_pem,
            root_ca_crl: pki.root_crl_der.clone(),
            pck_crl: pki.pck_crl_der.clone(),
            tcb_info_issuer_chain: tcb_chain.clone(),
            tcb_info,
            tcb_info_signature: tcb_info_signature.to_vec(),
            qe_identity_issuer_chain: tcb_chain,
            qe_identity,
            qe_identity_signature: qe_identity_signature.to_vec(),
            pck_certificate_chain: None,
        };

        let params = PlatformFile {
            notice: SIMULATED_NOTICE.into(),
            format_version: 1,
            fmspc: hex::encode(opts.fmspc),
            pce_id: hex::encode(SIM_PCE_ID),
            cpu_svn: hex::encode(SIM_TCB_COMPONENTS),
            pce_svn: SIM_PCE_SVN,
            qe_svn: SIM_QE_SVN,
            qe_id: hex::encode(entropy.bytes::<16>("qe id")?),
            tcb_status: opts.tcb_status,
            advisory_ids: opts.advisory_ids.clone(),
            pck_revoked: opts.revoke_pck,
            not_before: opts.not_before,
            not_after: opts.not_after,
            seed: opts.seed,
            attestation_public_key: hex::encode(attestation_public),
            qe_report: hex::encode(qe_report),
            qe_report_signature: hex::encode(qe_report_signature),
            qe_auth_data: hex::encode(qe_auth_data),
        };
        Ok(Self {
            params,
            pki,
            attestation_key,
            collateral,
        })
    }

    /// Writes every file; platform.json last, so a half-written directory does not open.
    fn write(&self, dir: &Path) -> Result<(), SimError> {
        let pki = &self.pki;
        let c = &self.collateral;
        let cert = |der: &[u8]| pem::encode("CERTIFICATE", der);
        files::write_public(&dir.join(files::README_TXT), readme().as_bytes())?;
        files::write_public(
            &dir.join(files::ROOT_CA_PEM),
            cert(&pki.root.cert_der).as_bytes(),
        )?;
        files::write_public(
            &dir.join(files::PCK_CA_PEM),
            cert(&pki.pck_ca.cert_der).as_bytes(),
        )?;
        files::write_public(
            &dir.join(files::PCK_PEM),
            cert(&pki.pck.cert_der).as_bytes(),
        )?;
        files::write_public(
            &dir.join(files::TCB_SIGNING_PEM),
            cert(&pki.tcb_signing.cert_der).as_bytes(),
        )?;
        let chain =
            cert(&pki.pck.cert_der) + &cert(&pki.pck_ca.cert_der) + &cert(&pki.root.cert_der);
        files::write_public(&dir.join(files::PCK_CHAIN_PEM), chain.as_bytes())?;
        files::write_public(&dir.join(files::ROOT_CRL_DER), &pki.root_crl_der)?;
        files::write_public(&dir.join(files::PCK_CRL_DER), &pki.pck_crl_der)?;
        let tcb = collateral::tcb_info_response(&c.tcb_info, &c.tcb_info_signature);
        files::write_public(&dir.join(files::TCB_INFO_JSON), tcb.as_bytes())?;
        let qe = collateral::qe_identity_response(&c.qe_identity, &c.qe_identity_signature);
        files::write_public(&dir.join(files::QE_IDENTITY_JSON), qe.as_bytes())?;
        files::write_public(&dir.join(files::COLLATERAL_JSON), pretty_json(c).as_bytes())?;
        files::write_private(
            &dir.join(files::ROOT_CA_KEY),
            pki.root.key.to_pem().as_bytes(),
        )?;
        files::write_private(
            &dir.join(files::PCK_CA_KEY),
            pki.pck_ca.key.to_pem().as_bytes(),
        )?;
        files::write_private(&dir.join(files::PCK_KEY), pki.pck.key.to_pem().as_bytes())?;
        files::write_private(
            &dir.join(files::TCB_SIGNING_KEY),
            pki.tcb_signing.key.to_pem().as_bytes(),
        )?;
        files::write_private(
            &dir.join(files::ATTESTATION_KEY),
            self.attestation_key.to_pem().as_bytes(),
        )?;
        files::write_public(
            &dir.join(files::PLATFORM_JSON),
            pretty_json(&self.params).as_bytes(),
        )
    }
}

/// Pretty JSON with a trailing newline (serializing these plain structs cannot fail).
fn pretty_json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn readme() -> String {
    format!(
        "{SIMULATED_NOTICE}\n\n\
         Files: root-ca.pem (simulated root CA), pck-ca.pem, pck.pem (SGX extension), pck-chain.pem,\n\
         tcb-signing.pem, root-ca.crl and pck-ca.crl (DER), tcb-info.json and qe-identity.json (as\n\
         Intel's PCS serves them), collateral.json (dcap-qvl QuoteCollateralV3), platform.json, and\n\
         private keys *.key (PKCS#8 PEM, mode 0600).\n"
    )
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (dst, src) in out
        .iter_mut()
        .zip(digest::digest(&digest::SHA256, data).as_ref())
    {
        *dst = *src;
    }
    out
}

/// Exactly `N` bytes of hex from field `name` of platform.json at `path`.
fn hex_array<const N: usize>(
    path: &Path,
    name: &'static str,
    text: &str,
) -> Result<[u8; N], SimError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| SimError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("{name}: expected {} hex digits: {e}", 2 * N),
    })?;
    Ok(out)
}
