//! The PCCS v4 responses for one platform, turned into dcap-qvl's `QuoteCollateralV3`.
//!
//! Guarantees: nothing here trusts the PCCS (the host runs it): every body and header is
//! untrusted bytes, and any of them only yields an error naming the URL and what was wrong,
//! never a panic. Nothing is verified here either: the TCB info and QE identity are kept as
//! the exact bytes their signatures cover, and the verifier checks every signature and
//! `nextUpdate` under the trust anchor. Public so that `fuzz/fuzz_targets/pccs_response.rs`
//! runs the same code as [`crate::PccsClient`], with the network replaced by its input.

use std::collections::HashMap;

use dcap_qvl::QuoteCollateralV3;
use serde_json::value::RawValue;

use ratls::collateral::CollateralError;

/// Names of the PCK CRL's issuer-chain header.
const PCK_CRL_CHAIN: &[&str] = &["SGX-PCK-CRL-Issuer-Chain"];
/// Names of the TCB info's issuer-chain header (v4, then the name older PCCSs send).
const TCB_INFO_CHAIN: &[&str] = &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
/// Names of the QE identity's issuer-chain header.
const QE_IDENTITY_CHAIN: &[&str] = &["SGX-Enclave-Identity-Issuer-Chain"];

/// Response headers, as an HTTP client hands them over.
pub trait Headers {
    /// The raw value of the header called `name` (case-insensitive), if present.
    fn value(&self, name: &str) -> Option<&[u8]>;
}

impl Headers for ureq::http::HeaderMap {
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// Fetches one platform's collateral from the PCCS v4 API at `base_url` (without
/// `/sgx/certification/v4`), one `get` per resource in this order, stopping at the first
/// failure: `pckcrl` (DER body), `tcb` and `qe/identity` (signed JSON bodies), `rootcacrl`
/// (DER or hex DER body). `get` performs one GET and returns the body and headers of a 200.
pub fn fetch_platform<H: Headers>(
    base_url: &str,
    fmspc: &str,
    ca: &str,
    mut get: impl FnMut(&str) -> Result<(Vec<u8>, H), CollateralError>,
) -> Result<QuoteCollateralV3, CollateralError> {
    let base = format!("{base_url}/sgx/certification/v4");
    let url = format!("{base}/pckcrl?ca={ca}&encoding=der");
    let (pck_crl, headers) = get(&url)?;
    let pck_crl_issuer_chain = issuer_chain(&url, &headers, PCK_CRL_CHAIN)?;

    let url = format!("{base}/tcb?fmspc={fmspc}");
    let (body, headers) = get(&url)?;
    let tcb_info_issuer_chain = issuer_chain(&url, &headers, TCB_INFO_CHAIN)?;
    let (tcb_info, tcb_info_signature) = signed_json(&url, &body, "tcbInfo")?;

    let url = format!("{base}/qe/identity");
    let (body, headers) = get(&url)?;
    let qe_identity_issuer_chain = issuer_chain(&url, &headers, QE_IDENTITY_CHAIN)?;
    let (qe_identity, qe_identity_signature) = signed_json(&url, &body, "enclaveIdentity")?;

    let url = format!("{base}/rootcacrl");
    let (body, _) = get(&url)?;
    let root_ca_crl = decode_root_crl(&body).ok_or_else(|| CollateralError::Response {
        url,
        detail: "root CA CRL is neither DER nor hex DER".into(),
    })?;

    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain,
        root_ca_crl,
        pck_crl,
        tcb_info_issuer_chain,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    })
}

/// The percent-decoded PEM chain in the first of the header `names` present.
fn issuer_chain(
    url: &str,
    headers: &impl Headers,
    names: &[&str],
) -> Result<String, CollateralError> {
    let bad = |detail: String| CollateralError::Response {
        url: url.to_owned(),
        detail,
    };
    let value = names
        .iter()
        .find_map(|n| headers.value(n))
        .ok_or_else(|| bad(format!("missing header {}", names.join(" or "))))?;
    // What an HTTP header value may hold as text (the http crate's `to_str`): visible ASCII
    // and tab.
    let value = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
        .ok_or_else(|| bad(format!("header {} is not ASCII", names.join("/"))))?;
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("issuer chain header is not UTF-8".into()))
}

/// Splits `{"<field>": {...}, "signature": "<hex>"}` into the exact bytes of the object and
/// the decoded signature. The object is not re-serialized: its signature covers these bytes.
fn signed_json(url: &str, body: &[u8], field: &str) -> Result<(String, Vec<u8>), CollateralError> {
    let bad = |detail: String| CollateralError::Response {
        url: url.to_owned(),
        detail,
    };
    let map: HashMap<&str, &RawValue> =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    let object = map
        .get(field)
        .ok_or_else(|| bad(format!("missing field {field:?}")))?;
    let signature = map
        .get("signature")
        .ok_or_else(|| bad("missing field \"signature\"".into()))?;
    let signature: String = serde_json::from_str(signature.get())
        .map_err(|_| bad("\"signature\" is not a string".into()))?;
    let signature = hex::decode(signature).map_err(|_| bad("\"signature\" is not hex".into()))?;
    Ok((object.get().to_owned(), signature))
}

/// Intel's PCS serves DER; a PCCS serves the same DER as hex text.
fn decode_root_crl(body: &[u8]) -> Option<Vec<u8>> {
    if body.first() == Some(&0x30) {
        return Some(body.to_vec());
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(Option<&'static [u8]>);

    impl Headers for One {
        fn value(&self, _: &str) -> Option<&[u8]> {
            self.0
        }
    }

    #[test]
    fn signed_json_keeps_the_exact_bytes_of_the_signed_object() {
        let body = br#"{"tcbInfo":{"b":1,  "a":[2, 3]},"signature":"0aff"}"#;
        let (json, sig) = signed_json("u", body, "tcbInfo").unwrap();
        assert_eq!(json, r#"{"b":1,  "a":[2, 3]}"#);
        assert_eq!(sig, vec![0x0a, 0xff]);
        assert!(signed_json("u", br#"{"signature":"00"}"#, "tcbInfo").is_err());
        assert!(signed_json("u", br#"{"tcbInfo":{},"signature":"zz"}"#, "tcbInfo").is_err());
    }

    #[test]
    fn a_root_crl_is_accepted_as_der_or_hex() {
        assert_eq!(decode_root_crl(&[0x30, 1, 0]), Some(vec![0x30, 1, 0]));
        assert_eq!(decode_root_crl(b"300100\n"), Some(vec![0x30, 1, 0]));
        assert_eq!(decode_root_crl(b"nope"), None);
    }

    #[test]
    fn issuer_chain_headers_are_percent_decoded_and_must_be_header_text() {
        let chain = issuer_chain("u", &One(Some(b"-----BEGIN%20X-----")), &["H"]);
        assert_eq!(chain.unwrap(), "-----BEGIN X-----");
        let missing = issuer_chain("u", &One(None), &["A", "B"]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "collateral: response from u: missing header A or B"
        );
        for bad in [&b"a\nb"[..], b"\xc3\xa9", b"%ff"] {
            let err = issuer_chain("u", &One(Some(bad)), &["H"]).unwrap_err();
            assert!(matches!(err, CollateralError::Response { .. }), "{err}");
        }
    }

    #[test]
    fn resources_are_fetched_in_order_and_the_first_failure_stops_the_rest() {
        let mut asked = Vec::new();
        let err = fetch_platform("http://p", "00906ED50000", "processor", |url| {
            asked.push(url.to_owned());
            Ok((b"crl".to_vec(), One(None)))
        })
        .unwrap_err();
        assert_eq!(
            asked,
            ["http://p/sgx/certification/v4/pckcrl?ca=processor&encoding=der"]
        );
        assert!(
            err.to_string()
                .contains("missing header SGX-PCK-CRL-Issuer-Chain"),
            "{err}"
        );
    }
}
