//! Fuzz target: a stapled-collateral extension value (peer bytes in the KMS's certificate)
//! must never panic the decoder, and whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::collateral::staple;

fuzz_target!(|data: &[u8]| {
    let Ok(collateral) = staple::decode(data) else {
        return;
    };
    assert_eq!(staple::encode(&collateral).ok().as_deref(), Some(data));
});
