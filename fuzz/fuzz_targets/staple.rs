//! Fuzz target: a stapled-collateral extension value (peer bytes in the KMS's certificate)
//! must never panic the decoder (nor inflate past its bound), and whatever decodes must
//! re-encode to a staple that decodes to the same collateral (the DEFLATE stream itself may
//! differ: many streams inflate to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::collateral::staple;

fuzz_target!(|data: &[u8]| {
    let Ok(collateral) = staple::decode(data) else {
        return;
    };
    assert!(collateral.tcb_info.len() <= staple::MAX_JSON_LEN);
    assert!(collateral.qe_identity.len() <= staple::MAX_JSON_LEN);
    // A signer field that is not one PEM-able certificate, or JSON that deflates past the
    // staple's bound, is refused by the encoder; that is not a decoder bug.
    let Ok(again) = staple::encode(&collateral) else {
        return;
    };
    let back = staple::decode(&again).expect("a minted staple decodes");
    assert_eq!(back.root_ca_crl, collateral.root_ca_crl);
    assert_eq!(back.pck_crl, collateral.pck_crl);
    assert_eq!(back.tcb_info_issuer_chain, collateral.tcb_info_issuer_chain);
    assert_eq!(back.tcb_info, collateral.tcb_info);
    assert_eq!(back.tcb_info_signature, collateral.tcb_info_signature);
    assert_eq!(back.qe_identity_issuer_chain, collateral.qe_identity_issuer_chain);
    assert_eq!(back.qe_identity, collateral.qe_identity);
    assert_eq!(back.qe_identity_signature, collateral.qe_identity_signature);
});
