//! Fuzz target: RA-TLS certificate extraction, self-signature and binding must never panic on
//! peer bytes (DER, or PEM as grpcio hands it over), and whatever `extract_bound` accepts must
//! pass each of its steps on its own and carry a quote that re-parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::cert;
use ratls::quote::Quote;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(der) = cert::der_from_pem(text) {
            check(&der);
        }
    }
});

fn check(der: &[u8]) {
    let extracted = cert::extract(der);
    let Ok(evidence) = cert::extract_bound(der) else {
        return;
    };
    assert!(evidence.check_binding().is_ok());
    assert!(cert::check_self_signature(der).is_ok());
    assert_eq!(
        Quote::parse(&evidence.quote_bytes).ok().as_ref(),
        Some(&evidence.quote)
    );
    let extracted = extracted.ok();
    assert_eq!(extracted.map(|e| e.quote_bytes), Some(evidence.quote_bytes));
}
