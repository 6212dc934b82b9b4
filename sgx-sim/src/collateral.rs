//! Signed collateral: TCB info v3 and QE identity v2 JSON, signed over their exact bytes by
//! the TCB signing key (ECDSA P-256, `r || s` hex, as Intel's PCS signs them), assembled
//! with the CRLs and issuer chains into dcap-qvl's `QuoteCollateralV3`.
//!
//! TCB levels are laid out so the platform lands on exactly the configured status: dcap-qvl
//! sorts levels by SGX components (then PCESVN), highest first, and takes the first level the
//! platform's CPUSVN and PCESVN meet. The platform's own level carries the configured status;
//! statuses that mean "a newer TCB exists" (OutOfDate*, Revoked) get an UpToDate level just
//! above it that the platform does not meet; an older OutOfDate level sits below it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::SimError;
use crate::timefmt::rfc3339;

/// TCB info `id` for SGX, and its format version.
pub const TCB_INFO_ID: &str = "SGX";
pub const TCB_INFO_VERSION: u8 = 3;
/// QE identity `id` for SGX's quoting enclave, and its format version.
pub const QE_IDENTITY_ID: &str = "QE";
pub const QE_IDENTITY_VERSION: u8 = 2;
/// The simulated collateral's TCB evaluation data number.
pub const TCB_EVALUATION_DATA_NUMBER: u32 = 1;
/// Seconds in a year, to date the older TCB levels.
const YEAR: u64 = 365 * 24 * 3600;

/// The TCB statuses an SGX TCB info level can carry (Intel's TCB info v3 spec; dcap-qvl
/// rejects any other in SGX collateral).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
}

impl TcbStatus {
    /// Every status, in the order above.
    pub const ALL: [TcbStatus; 7] = [
        Self::UpToDate,
        Self::SWHardeningNeeded,
        Self::ConfigurationNeeded,
        Self::ConfigurationAndSWHardeningNeeded,
        Self::OutOfDate,
        Self::OutOfDateConfigurationNeeded,
        Self::Revoked,
    ];

    /// The name Intel's JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }

    /// True when a newer TCB than the platform's exists (so TCB info lists one above it).
    fn newer_tcb_exists(self) -> bool {
        matches!(
            self,
            Self::OutOfDate | Self::OutOfDateConfigurationNeeded | Self::Revoked
        )
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TcbStatus {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| SimError::InvalidOption {
                what: "TCB status",
                detail: format!(
                    "{s:?} is not one of {}",
                    Self::ALL.map(TcbStatus::as_str).join(", ")
                ),
            })
    }
}

/// What the TCB info says about the platform.
pub(crate) struct TcbInfoInput<'a> {
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    pub tcb_components: [u8; 16],
    pub pce_svn: u16,
    pub status: TcbStatus,
    pub advisory_ids: &'a [String],
    pub issue_date: u64,
    pub next_update: u64,
}

/// TCB info v3 JSON (compact; these exact bytes are what gets signed).
pub(crate) fn tcb_info_json(input: &TcbInfoInput<'_>) -> Result<String, SimError> {
    let issue = rfc3339(input.issue_date, "--not-before")?;
    let older = rfc3339(input.issue_date.saturating_sub(YEAR), "--not-before")?;
    let level = |components: [u8; 16],
                 pcesvn: u16,
                 status: TcbStatus,
                 date: &str,
                 advisories: &[String]| {
        TcbLevelJson {
            tcb: TcbJson {
                sgxtcbcomponents: components.map(|svn| SvnJson { svn }),
                pcesvn,
            },
            tcb_date: date.to_string(),
            tcb_status: status.as_str(),
            advisory_ids: advisories.to_vec(),
        }
    };
    let mut levels = Vec::with_capacity(3);
    if input.status.newer_tcb_exists() {
        let mut newer = input.tcb_components;
        if let Some(first) = newer.first_mut() {
            *first = first.saturating_add(1);
        }
        levels.push(level(
            newer,
            input.pce_svn,
            TcbStatus::UpToDate,
            &issue,
            &[],
        ));
    }
    levels.push(level(
        input.tcb_components,
        input.pce_svn,
        input.status,
        &issue,
        input.advisory_ids,
    ));
    levels.push(level(
        input.tcb_components,
        input.pce_svn.saturating_sub(1),
        TcbStatus::OutOfDate,
        &older,
        &[],
    ));
    let info = TcbInfoJson {
        id: TCB_INFO_ID,
        version: TCB_INFO_VERSION,
        issue_date: issue.clone(),
        next_update: rfc3339(input.next_update, "--not-after")?,
        fmspc: hex::encode_upper(input.fmspc),
        pce_id: hex::encode_upper(input.pce_id),
        tcb_type: 0,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        tcb_levels: levels,
    };
    Ok(serde_json::to_string(&info).unwrap_or_default())
}

/// What the QE identity says about the quoting enclave.
pub(crate) struct QeIdentityInput {
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub issue_date: u64,
    pub next_update: u64,
}

/// QE identity v2 JSON (compact; these exact bytes are what gets signed). The QE's
/// MISCSELECT must be 0 and its attributes match `11..` under mask `FBFF..FF 00..` (INIT and
/// PROVISIONKEY set, DEBUG clear), as in Intel's own QE identity.
pub(crate) fn qe_identity_json(input: &QeIdentityInput) -> Result<String, SimError> {
    let issue = rfc3339(input.issue_date, "--not-before")?;
    let older = rfc3339(input.issue_date.saturating_sub(YEAR), "--not-before")?;
    let mut levels = vec![QeTcbLevelJson {
        tcb: QeTcbJson {
            isvsvn: input.isv_svn,
        },
        tcb_date: issue.clone(),
        tcb_status: TcbStatus::UpToDate.as_str(),
    }];
    if input.isv_svn > 0 {
        levels.push(QeTcbLevelJson {
            tcb: QeTcbJson {
                isvsvn: input.isv_svn - 1,
            },
            tcb_date: older,
            tcb_status: TcbStatus::OutOfDate.as_str(),
        });
    }
    let identity = QeIdentityJson {
        id: QE_IDENTITY_ID,
        version: QE_IDENTITY_VERSION,
        issue_date: issue,
        next_update: rfc3339(input.next_update, "--not-after")?,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        miscselect: "00000000",
        miscselect_mask: "FFFFFFFF",
        attributes: "11000000000000000000000000000000",
        attributes_mask: "FBFFFFFFFFFFFFFF0000000000000000",
        mrsigner: hex::encode_upper(input.mr_signer),
        isvprodid: input.isv_prod_id,
        tcb_levels: levels,
    };
    Ok(serde_json::to_string(&identity).unwrap_or_default())
}

/// The body Intel's PCS serves for `tcb?fmspc=`: the signed bytes spliced in verbatim.
pub fn tcb_info_response(tcb_info: &str, signature: &[u8]) -> String {
    format!(
        "{{\"tcbInfo\":{tcb_info},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
}

/// The body Intel's PCS serves for `qe/identity`: the signed bytes spliced in verbatim.
pub fn qe_identity_response(qe_identity: &str, signature: &[u8]) -> String {
    format!(
        "{{\"enclaveIdentity\":{qe_identity},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u8,
    tcb_evaluation_data_number: u32,
    tcb_levels: Vec<TcbLevelJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson {
    tcb: TcbJson,
    tcb_date: String,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<String>,
}

#[derive(Serialize)]
struct TcbJson {
    sgxtcbcomponents: [SvnJson; 16],
    pcesvn: u16,
}

#[derive(Serialize)]
struct SvnJson {
    svn: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: &'static str,
    miscselect_mask: &'static str,
    attributes: &'static str,
    attributes_mask: &'static str,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<QeTcbLevelJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeTcbLevelJson {
    tcb: QeTcbJson,
    tcb_date: String,
    tcb_status: &'static str,
}

#[derive(Serialize)]
struct QeTcbJson {
    isvsvn: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: TcbStatus, advisories: &[String]) -> TcbInfoInput<'_> {
        TcbInfoInput {
            fmspc: [0, 0x53, 0x49, 0x4d, 0, 0],
            pce_id: [0, 0],
            tcb_components: [11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            pce_svn: 13,
            status,
            advisory_ids: advisories,
            issue_date: 1_750_330_571,
            next_update: 1_752_919_278,
        }
    }

    #[test]
    fn tcb_info_parses_as_dcap_qvl_reads_it() {
        let adv = vec!["SIM-SA-00001".to_string()];
        let json = tcb_info_json(&input(TcbStatus::OutOfDate, &adv)).unwrap();
        assert!(json.starts_with(r#"{"id":"SGX","version":3,"issueDate":"2025-06-19T10:56:11Z","#));
        let info: dcap_qvl::TcbInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(info.fmspc, "0053494D0000");
        assert_eq!(info.tcb_levels.len(), 3);
        assert_eq!(info.tcb_levels[0].tcb_status, dcap_qvl::TcbStatus::UpToDate);
        assert_eq!(
            info.tcb_levels[1].tcb_status,
            dcap_qvl::TcbStatus::OutOfDate
        );
        assert_eq!(info.tcb_levels[1].advisory_ids, adv);
        assert_eq!(info.tcb_levels[0].tcb.sgx_components[0].svn, 12);
    }

    #[test]
    fn the_platform_level_is_the_first_one_the_platform_meets() {
        for status in TcbStatus::ALL {
            let json = tcb_info_json(&input(status, &[])).unwrap();
            let info: dcap_qvl::TcbInfo = serde_json::from_str(&json).unwrap();
            let cpusvn = input(status, &[]).tcb_components;
            let first = info
                .tcb_levels
                .iter()
                .find(|l| l.shortfalls(&cpusvn, 13, None).unwrap().is_empty())
                .unwrap();
            assert_eq!(first.tcb_status.to_string(), status.as_str());
        }
    }

    #[test]
    fn qe_identity_parses_as_dcap_qvl_reads_it() {
        let json = qe_identity_json(&QeIdentityInput {
            mr_signer: [0xab; 32],
            isv_prod_id: 1,
            isv_svn: 8,
            issue_date: 1_750_330_571,
            next_update: 1_752_919_278,
        })
        .unwrap();
        let id: dcap_qvl::QeIdentity = serde_json::from_str(&json).unwrap();
        assert_eq!(id.mrsigner, [0xab; 32]);
        assert_eq!(id.attributes[0], 0x11);
        assert_eq!(id.tcb_levels[0].tcb.isvsvn, 8);
        assert_eq!(id.tcb_levels[0].tcb_status, dcap_qvl::TcbStatus::UpToDate);
    }

    #[test]
    fn statuses_parse_from_their_intel_names_only() {
        for s in TcbStatus::ALL {
            assert_eq!(s.as_str().parse::<TcbStatus>().unwrap(), s);
        }
        assert!("uptodate".parse::<TcbStatus>().is_err());
        assert!("TDRelaunchAdvised".parse::<TcbStatus>().is_err());
    }

    #[test]
    fn responses_splice_the_signed_bytes_verbatim() {
        let body = tcb_info_response(r#"{"a":1}"#, &[0xab, 0x01]);
        assert_eq!(body, r#"{"tcbInfo":{"a":1},"signature":"ab01"}"#);
    }
}
