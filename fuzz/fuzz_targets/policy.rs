//! Fuzz target: `RaPolicy::from_json` must never panic on arbitrary bytes, and any policy it
//! accepts must evaluate fixed report bodies (production and debug) without panicking, never
//! admitting a debug enclave unless the switch is on and the matched entry allows debug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ratls::policy::RaPolicy;
use ratls::quote::{ATTRIBUTE_FLAG_DEBUG, Quote, ReportBody};

const SAMPLE_QUOTE: &[u8] = include_bytes!("../../ratls/testdata/dcap-sample/sgx_quote");

/// The sample quote's enclave identity, as built and as a debug build.
fn bodies() -> &'static [ReportBody; 2] {
    static BODIES: OnceLock<[ReportBody; 2]> = OnceLock::new();
    BODIES.get_or_init(|| {
        let Ok(quote) = Quote::parse(SAMPLE_QUOTE) else {
            panic!("the sample quote in ratls/testdata must parse");
        };
        let mut debug = quote.body.clone();
        debug.attributes_flags |= ATTRIBUTE_FLAG_DEBUG;
        [quote.body, debug]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = RaPolicy::from_json(data, "fuzz.json") else {
        return;
    };
    let _ = policy.to_string();
    for body in bodies() {
        match policy.evaluate(body) {
            Ok(matched) => {
                let entry = policy.entries().get(matched.index);
                assert!(entry.is_some(), "match index out of range");
                if body.debuggable() {
                    assert!(
                        policy.checks().enclave_debuggable,
                        "debug enclave admitted with the switch off"
                    );
                    assert_eq!(
                        entry.and_then(|e| e.debuggable()),
                        Some(true),
                        "debug enclave admitted by a non-debug entry"
                    );
                }
            }
            Err(rejection) => {
                let _ = rejection.to_string();
                assert!(rejection.mismatches().len() <= policy.entries().len());
            }
        }
    }
});
