//! Intel's QCNL configuration (`/etc/sgx_default_qcnl.conf`), the file operators already write
//! to point DCAP at their PCCS: which URL serves collateral, and whether its TLS certificate is
//! checked.
//!
//! Two forms exist: JSON (DCAP 1.13 and later; `//` and `#` comment lines allowed) with
//! `pccs_url`, `use_secure_cert` and `collateral_service`, and the older `KEY=value` lines
//! `PCCS_URL=`, `USE_SECURE_CERT=`, `COLLATERAL_SERVICE=`. Both are read tolerantly: unknown
//! keys are ignored, as Intel's own library ignores them.
//!
//! `use_secure_cert: false` (a local PCCS with a self-signed certificate, the common case)
//! means the PCCS's TLS certificate is not checked. That costs no integrity: every collateral
//! item is signed by Intel and verified under the trust anchor, and staleness is caught by
//! `nextUpdate`; what TLS would add is confidentiality of which FMSPC is asked about.

use serde::Deserialize;

/// The QCNL fields that decide where collateral comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QcnlConfig {
    /// `pccs_url`, as written.
    pub pccs_url: Option<String>,
    /// `collateral_service`: where TCB info, QE identity and CRLs come from when not the PCCS.
    pub collateral_service: Option<String>,
    /// `use_secure_cert` (default true): check the PCCS's TLS certificate.
    pub use_secure_cert: bool,
}

impl QcnlConfig {
    /// Parses either form; `None` when the text names no URL at all.
    pub fn parse(text: &str) -> Option<Self> {
        let config = parse_json(text).unwrap_or_else(|| parse_lines(text));
        (config.pccs_url.is_some() || config.collateral_service.is_some()).then_some(config)
    }

    /// The URL collateral is fetched from: `collateral_service` if set, else `pccs_url`.
    pub fn collateral_url(&self) -> Option<&str> {
        self.collateral_service
            .as_deref()
            .or(self.pccs_url.as_deref())
    }
}

/// A log line when `url` names the PCCS v3 API, which this verifier does not use: v3 TCB info
/// lacks the fields (TCB evaluation number, `tcbComponents` of v3 format) dcap-qvl needs, so
/// collateral is always fetched from the v4 paths of the same service.
pub fn api_version_note(url: &str) -> Option<String> {
    let trimmed = url.trim().trim_end_matches('/');
    trimmed.ends_with("/sgx/certification/v3").then(|| {
        format!(
            "PCCS URL {url} names API v3; collateral is fetched from {}/v4 instead (v3 TCB info cannot be verified here)",
            trimmed.trim_end_matches("/v3")
        )
    })
}

/// The line that says a PCCS's TLS certificate is not checked, and why that is acceptable.
pub fn insecure_tls_note(url: &str, origin: &str) -> String {
    format!(
        "{origin}: use_secure_cert is false: the TLS certificate of {url} is NOT verified \
         (collateral integrity comes from Intel's signatures, freshness from nextUpdate)"
    )
}

fn parse_json(text: &str) -> Option<QcnlConfig> {
    #[derive(Deserialize)]
    struct Json {
        #[serde(default)]
        pccs_url: Option<String>,
        #[serde(default)]
        collateral_service: Option<String>,
        #[serde(default)]
        use_secure_cert: Option<serde_json::Value>,
    }
    let json: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//") && !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: Json = serde_json::from_str(&json).ok()?;
    Some(QcnlConfig {
        pccs_url: non_empty(parsed.pccs_url),
        collateral_service: non_empty(parsed.collateral_service),
        use_secure_cert: match parsed.use_secure_cert {
            Some(serde_json::Value::Bool(b)) => b,
            Some(serde_json::Value::String(s)) => !s.eq_ignore_ascii_case("false"),
            _ => true,
        },
    })
}

fn parse_lines(text: &str) -> QcnlConfig {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().to_owned())
            })
            .find(|v| !v.is_empty())
    };
    QcnlConfig {
        pccs_url: value("PCCS_URL"),
        collateral_service: value("COLLATERAL_SERVICE"),
        use_secure_cert: !value("USE_SECURE_CERT").is_some_and(|v| v.eq_ignore_ascii_case("false")),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_form_gives_url_secure_cert_and_collateral_service() {
        let text = r#"
// Intel's template comments
{
  "pccs_url": "https://localhost:8081/sgx/certification/v4/",
  # another comment
  "use_secure_cert": false,
  "collateral_service": "https://api.trustedservices.intel.com/sgx/certification/v4/",
  "retry_times": 6
}"#;
        let c = QcnlConfig::parse(text).unwrap();
        assert_eq!(
            c.pccs_url.as_deref(),
            Some("https://localhost:8081/sgx/certification/v4/")
        );
        assert!(!c.use_secure_cert);
        assert_eq!(
            c.collateral_url(),
            Some("https://api.trustedservices.intel.com/sgx/certification/v4/")
        );
    }

    #[test]
    fn the_line_form_gives_the_same_fields() {
        let text = "# PCCS server address\nPCCS_URL=https://pccs.example:8081/sgx/certification/v3/\nUSE_SECURE_CERT=FALSE\n";
        let c = QcnlConfig::parse(text).unwrap();
        assert_eq!(
            c.collateral_url(),
            Some("https://pccs.example:8081/sgx/certification/v3/")
        );
        assert!(!c.use_secure_cert);
        assert_eq!(c.collateral_service, None);
    }

    #[test]
    fn certificates_are_checked_unless_the_file_says_false() {
        let c = QcnlConfig::parse(r#"{"pccs_url": "https://p"}"#).unwrap();
        assert!(c.use_secure_cert);
        let c = QcnlConfig::parse("PCCS_URL=https://p\nUSE_SECURE_CERT=TRUE").unwrap();
        assert!(c.use_secure_cert);
        assert_eq!(QcnlConfig::parse(r#"{"use_secure_cert": false}"#), None);
        assert_eq!(QcnlConfig::parse(""), None);
    }

    /// What init and the KMS do with a QCNL file: its collateral URL, normalised to the base.
    /// (Inputs from the tests of the removed second parser, `qcnl_pccs_url`.)
    #[test]
    fn intels_template_and_the_line_form_give_the_base_url() {
        let base = |text: &str| {
            QcnlConfig::parse(text).and_then(|c| c.collateral_url().map(crate::normalize_base))
        };
        let template = r#"{
  // *** ATTENTION : This file is in JSON format so the keys are case sensitive. Don't change them.
  //PCCS server address
  "pccs_url": "https://pccs.example:8081/sgx/certification/v4/",
  "use_secure_cert": true
}"#;
        assert_eq!(base(template).as_deref(), Some("https://pccs.example:8081"));
        let json = "// comment\n{\n  // another\n  \"pccs_url\": \"https://localhost:8081/sgx/certification/v4/\",\n  \"use_secure_cert\": false\n}\n";
        assert_eq!(base(json).as_deref(), Some("https://localhost:8081"));
        let legacy = "# legacy\nPCCS_URL=https://pccs.example/sgx/certification/v3/\nUSE_SECURE_CERT=FALSE\n";
        assert_eq!(base(legacy).as_deref(), Some("https://pccs.example"));
        assert_eq!(base("{}"), None);
        assert_eq!(base(r#"{"use_secure_cert": true}"#), None);
    }

    #[test]
    fn a_v3_url_is_noted_and_a_v4_one_is_not() {
        let note = api_version_note(
            "https://sgx-dcap-server.cn-shanghai.aliyuncs.com/sgx/certification/v3/",
        )
        .unwrap();
        assert!(
            note.contains("https://sgx-dcap-server.cn-shanghai.aliyuncs.com/sgx/certification/v4"),
            "{note}"
        );
        assert_eq!(
            api_version_note("https://p:8081/sgx/certification/v4/"),
            None
        );
        assert_eq!(api_version_note("https://p:8081"), None);
    }
}
