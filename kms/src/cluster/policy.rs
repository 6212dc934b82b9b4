//! The replica policy: which peers may obtain the cluster key, as an [`RaPolicy`] built from
//! this replica's own quote identity and cluster.json's `replica_policy`, so the same ratls
//! pipeline (trust anchor, collateral, TCB rules) verifies peers as clients.
//!
//! - `same-enclave`: same mr_enclave, mr_signer and isv_prod_id, isv_svn at least ours, same
//!   debug flag;
//! - `same-signer`: same mr_signer and isv_prod_id, isv_svn at least ours, same debug flag.
//!
//! The TCB rules (`tcb_statuses`, `reject_advisories`, `collateral_grace_secs`) are the image
//! policy's (`dynamic_config.json`), so a platform refused for clients is refused as a peer.

use ratls::policy::RaPolicy;
use ratls::quote::ReportBody;

use super::config::ReplicaPolicy;

/// The policy a peer replica must satisfy. `own_cert_pem` is this replica's RA-TLS
/// certificate; `image_policy` the image's policy JSON (for its TCB rules), if readable.
pub fn replica_policy(
    own_cert_pem: &str,
    kind: ReplicaPolicy,
    image_policy: Option<&[u8]>,
) -> Result<RaPolicy, String> {
    let der = ratls::cert::der_from_pem(own_cert_pem)
        .map_err(|e| format!("this replica's own certificate: {e}"))?;
    let evidence =
        ratls::cert::extract(&der).map_err(|e| format!("this replica's own certificate: {e}"))?;
    from_body(&evidence.quote.body, kind, image_policy)
}

/// [`replica_policy`] from a report body.
pub fn from_body(
    own: &ReportBody,
    kind: ReplicaPolicy,
    image_policy: Option<&[u8]>,
) -> Result<RaPolicy, String> {
    let same_enclave = kind == ReplicaPolicy::SameEnclave;
    let mut policy = serde_json::json!({
        "verify_mr_enclave": if same_enclave { "on" } else { "off" },
        "verify_mr_signer": "on",
        "verify_isv_prod_id": "on",
        "verify_isv_svn": "on",
        "verify_config_svn": "off",
        "verify_enclave_debuggable": "on",
        "sgx_mrs": [{
            "name": format!("replica ({})", kind.name()),
            "mr_enclave": if same_enclave { hex::encode(own.mr_enclave) } else { String::new() },
            "mr_signer": hex::encode(own.mr_signer),
            "isv_prod_id": own.isv_prod_id,
            "isv_svn_min": own.isv_svn,
            "debuggable": own.debuggable(),
        }],
    });
    if let Some(image) =
        image_policy.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    {
        for field in ["tcb_statuses", "reject_advisories", "collateral_grace_secs"] {
            if let (Some(value), Some(obj)) = (image.get(field), policy.as_object_mut()) {
                obj.insert(field.to_owned(), value.clone());
            }
        }
    }
    RaPolicy::from_value(
        &policy,
        &format!(
            "replica policy ({} of this replica's own quote, cluster.json replica_policy)",
            kind.name()
        ),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mr_enclave: u8, mr_signer: u8, prod: u16, svn: u16) -> ReportBody {
        ReportBody {
            cpu_svn: [0; 16],
            misc_select: 0,
            isv_ext_prod_id: [0; 16],
            attributes_flags: 0,
            attributes_xfrm: 0,
            mr_enclave: [mr_enclave; 32],
            mr_signer: [mr_signer; 32],
            config_id: [0; 64],
            isv_prod_id: prod,
            isv_svn: svn,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data: [0; 64],
        }
    }

    #[test]
    fn same_enclave_admits_only_our_measurement_and_a_newer_svn() {
        let own = body(1, 2, 3, 4);
        let policy = from_body(&own, ReplicaPolicy::SameEnclave, None).unwrap();
        assert!(policy.evaluate(&own).is_ok());
        assert!(policy.evaluate(&body(1, 2, 3, 5)).is_ok());
        assert!(policy.evaluate(&body(1, 2, 3, 3)).is_err(), "older svn");
        assert!(policy.evaluate(&body(9, 2, 3, 4)).is_err(), "other enclave");
        assert!(policy.evaluate(&body(1, 9, 3, 4)).is_err(), "other signer");
        assert!(policy.evaluate(&body(1, 2, 7, 4)).is_err(), "other product");
        let mut debug = own.clone();
        debug.attributes_flags |= 2;
        assert!(policy.evaluate(&debug).is_err(), "debug enclave");
    }

    #[test]
    fn same_signer_admits_another_enclave_of_the_signer() {
        let own = body(1, 2, 3, 4);
        let policy = from_body(&own, ReplicaPolicy::SameSigner, None).unwrap();
        assert!(policy.evaluate(&body(9, 2, 3, 4)).is_ok());
        assert!(policy.evaluate(&body(9, 8, 3, 4)).is_err());
        assert!(policy.evaluate(&body(9, 2, 3, 3)).is_err());
    }

    #[test]
    fn the_image_policys_tcb_rules_are_kept() {
        let image = br#"{"tcb_statuses": ["UpToDate", "SWHardeningNeeded"], "sgx_mrs": []}"#;
        let policy = from_body(&body(1, 2, 3, 4), ReplicaPolicy::SameEnclave, Some(image)).unwrap();
        assert_eq!(policy.tcb().accepted_statuses().len(), 2);
    }
}
