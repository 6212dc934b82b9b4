//! Fuzz target: the PCCS's answers (host-controlled network input) as `PccsClient` parses
//! them: the PCK CRL, TCB info and QE identity bodies with their percent-encoded issuer-chain
//! headers, and the root CA CRL (DER or hex), through `pccs_client::response::fetch_platform`
//! with the network replaced by the input; then the collateral window (`next_update`: the
//! JSON dates and both CRLs), as the cache computes it. Nothing may panic, and the TCB info
//! and QE identity kept must be the exact bytes of the bodies they came from.
//!
//! Input: for each of the four GETs in order, a u16 LE body length and the body, then a u16
//! LE header length (0xffff: no issuer-chain header) and that many bytes of header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pccs_client::response;
use ratls::collateral;

/// The one issuer-chain header a response carries, under whichever name is asked for.
struct Chain(Option<Vec<u8>>);

impl response::Headers for Chain {
    fn value(&self, _name: &str) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fn u16_le(data: &mut &[u8]) -> Option<u16> {
    match take(data, 2) {
        [a, b] => Some(u16::from_le_bytes([*a, *b])),
        _ => None,
    }
}

fn next_response(data: &mut &[u8]) -> (Vec<u8>, Chain) {
    let len = u16_le(data).map_or(data.len(), usize::from);
    let body = take(data, len).to_vec();
    let header = match u16_le(data) {
        None | Some(0xffff) => None,
        Some(n) => Some(take(data, usize::from(n)).to_vec()),
    };
    (body, Chain(header))
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mut bodies = Vec::new();
    let result = response::fetch_platform("http://pccs", "00906ED50000", "processor", |_url| {
        let (body, chain) = next_response(&mut data);
        bodies.push(body.clone());
        Ok((body, chain))
    });
    let Ok(c) = result else {
        return;
    };
    let contains = |body: Option<&Vec<u8>>, part: &str| {
        part.is_empty() || body.is_some_and(|b| b.windows(part.len()).any(|w| w == part.as_bytes()))
    };
    assert!(
        contains(bodies.get(1), &c.tcb_info),
        "tcb info re-serialized"
    );
    assert!(
        contains(bodies.get(2), &c.qe_identity),
        "qe identity re-serialized"
    );
    let _ = collateral::next_update(&c);
});
