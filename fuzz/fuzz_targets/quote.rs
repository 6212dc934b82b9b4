//! Fuzz target: the quote v3 parser must never panic, and whatever it accepts must round-trip
//! its report body through the wire form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::quote::{Quote, ReportBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::parse(data) {
        let bytes = quote.body.to_bytes();
        assert_eq!(ReportBody::parse(&bytes).ok().as_ref(), Some(&quote.body));
    }
});
