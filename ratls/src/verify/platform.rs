//! The platform verdict cache: dcap-qvl's work on the platform half of a quote, done once.
//!
//! An SGX v3 quote has two halves ([Intel DCAP Quote Library API, "Quote Format"]):
//! - the enclave half, the 384-byte ISV report body, signed together with the 48-byte header by
//!   the quoting enclave's attestation key (the ISV signature);
//! - the platform half, everything else: the header, the attestation key, the QE report and its
//!   PCK signature, the QE authentication data and the PCK certificate chain.
//!
//! For an SGX quote, every dcap-qvl step except the ISV signature (step 7) depends only on the
//! platform half, the collateral and the time: the CRLs, the TCB info and QE identity
//! signatures, the PCK chain, the QE report signature and data, the QE identity policy, and the
//! TCB level (matched on the PCK certificate's CPU SVN, PCE SVN and FMSPC). So once dcap-qvl has
//! accepted a quote, another quote whose platform half is byte-identical, checked against the
//! same collateral inside the same window, gets the same verdict provided its ISV signature
//! verifies under the already-verified attestation key. That one ECDSA verification is what a
//! cache hit costs, instead of a dozen.
//!
//! A hit needs all of: the same platform half (SHA-256 over the exact bytes), the very same
//! collateral object (the entry holds an `Arc` to it, so the pointer cannot be reused), `now`
//! between the original verification and the entry's expiry (the collateral's `nextUpdate`, at
//! most [`MAX_PLATFORM_CACHE_SECS`] later; never inside the grace period), and a valid ISV
//! signature. Anything else falls back to the full dcap-qvl verification. Only successful
//! verifications are cached; the TCB policy and the measurement policy run on every quote.

use std::collections::HashMap;
use std::sync::Arc;

use dcap_qvl::QuoteCollateralV3;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use sha2::{Digest as _, Sha256};

use super::DcapVerdict;
use crate::quote::{HEADER_LEN, Quote, SIGNED_LEN};

/// A platform verdict is reused at most this long after dcap-qvl produced it.
pub const MAX_PLATFORM_CACHE_SECS: u64 = 600;
/// At most this many platforms (attestation keys) are cached per verifier.
pub const MAX_CACHED_PLATFORMS: usize = 1024;

/// Length of the ISV report signature, the first field of the quote's signature data.
const ISV_SIGNATURE_LEN: usize = 64;
/// Length of the `signature_data_len` field between the report body and the signature data.
const SIGNATURE_DATA_LEN_FIELD: usize = 4;
/// Where the platform half resumes after the ISV signature.
const AFTER_ISV_SIGNATURE: usize = SIGNED_LEN + SIGNATURE_DATA_LEN_FIELD + ISV_SIGNATURE_LEN;

/// SHA-256 of a quote's platform half, the cache key.
pub(super) type PlatformKey = [u8; 32];

struct Entry {
    collateral: Arc<QuoteCollateralV3>,
    verdict: DcapVerdict,
    verified_at: u64,
    expires: u64,
}

/// Verified platform halves, per verifier (so per trust anchor and policy load).
#[derive(Default)]
pub(super) struct PlatformCache {
    entries: HashMap<PlatformKey, Entry>,
}

impl PlatformCache {
    /// The verdict recorded for this platform half if it was made against `collateral` and is
    /// live at `now`. It holds for a quote only once [`isv_signature_valid`] says so; the caller
    /// checks that outside the cache's lock.
    pub(super) fn candidate(
        &self,
        key: &PlatformKey,
        collateral: &Arc<QuoteCollateralV3>,
        now: u64,
    ) -> Option<DcapVerdict> {
        let entry = self.entries.get(key)?;
        if !Arc::ptr_eq(&entry.collateral, collateral)
            || now < entry.verified_at
            || now > entry.expires
        {
            return None;
        }
        let mut verdict = entry.verdict.clone();
        verdict.verified_at = now;
        Some(verdict)
    }

    /// Records that dcap-qvl accepted a quote with this platform half at `now`.
    pub(super) fn insert(
        &mut self,
        key: PlatformKey,
        collateral: &Arc<QuoteCollateralV3>,
        verdict: &DcapVerdict,
        now: u64,
    ) {
        // Inside the grace period dcap-qvl verified as of nextUpdate, not now: do not reuse.
        if verdict.verified_at != now {
            return;
        }
        let expires = verdict
            .collateral_next_update
            .min(now.saturating_add(MAX_PLATFORM_CACHE_SECS));
        if self.entries.len() >= MAX_CACHED_PLATFORMS {
            self.entries.retain(|_, e| e.expires >= now);
        }
        if self.entries.len() >= MAX_CACHED_PLATFORMS {
            // Still full of live entries: start over rather than track recency on every hit.
            self.entries.clear();
        }
        self.entries.insert(
            key,
            Entry {
                collateral: Arc::clone(collateral),
                verdict: verdict.clone(),
                verified_at: now,
                expires,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// SHA-256 over the header, the signature-data length and everything after the ISV signature:
/// the whole quote except the report body and the ISV signature. `quote_bytes` has been parsed
/// by [`Quote::parse`], so it is at least that long; a shorter slice hashes what there is and
/// can only miss.
pub(super) fn platform_key(quote_bytes: &[u8]) -> PlatformKey {
    let mut h = Sha256::new();
    h.update(b"ratls platform half v1");
    h.update(quote_bytes.get(..HEADER_LEN).unwrap_or_default());
    h.update(
        quote_bytes
            .get(SIGNED_LEN..SIGNED_LEN + SIGNATURE_DATA_LEN_FIELD)
            .unwrap_or_default(),
    );
    h.update(quote_bytes.get(AFTER_ISV_SIGNATURE..).unwrap_or_default());
    h.finalize().into()
}

/// dcap-qvl's step 7 on its own: the ISV signature over header and report body, under the
/// quote's attestation key (raw P-256 r||s over SHA-256, as the quoting enclave signs).
pub(super) fn isv_signature_valid(quote_bytes: &[u8], quote: &Quote) -> bool {
    let Some(signed) = quote_bytes.get(..SIGNED_LEN) else {
        return false;
    };
    let mut public_key = [0x04_u8; 65];
    let (_, xy) = public_key.split_at_mut(1);
    xy.copy_from_slice(&quote.signature.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key.as_slice())
        .verify(signed, &quote.signature.isv_report_signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLATERAL: &str = include_str!("../../testdata/dcap-sample/sgx_quote_collateral.json");

    fn verdict(now: u64) -> DcapVerdict {
        DcapVerdict {
            tcb_status: "UpToDate".into(),
            advisory_ids: Vec::new(),
            collateral_next_update: now + 10_000,
            verified_at: now,
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let collateral = Arc::new(serde_json::from_str(COLLATERAL).unwrap());
        let mut cache = PlatformCache::default();
        for i in 0..MAX_CACHED_PLATFORMS * 2 + 3 {
            let key: PlatformKey = Sha256::digest(i.to_le_bytes()).into();
            cache.insert(key, &collateral, &verdict(5), 5);
            assert!(cache.len() <= MAX_CACHED_PLATFORMS);
        }
        assert!(cache.len() > 0);
    }

    #[test]
    fn a_verdict_made_as_of_another_time_is_not_cached() {
        let collateral = Arc::new(serde_json::from_str(COLLATERAL).unwrap());
        let mut cache = PlatformCache::default();
        cache.insert([1; 32], &collateral, &verdict(5), 6);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_key_ignores_exactly_the_report_body_and_the_isv_signature() {
        let quote = include_bytes!("../../testdata/dcap-sample/sgx_quote");
        let base = platform_key(quote);
        for at in 0..quote.len() {
            let mut q = quote.to_vec();
            q[at] ^= 0x80;
            let ignored = (HEADER_LEN..SIGNED_LEN).contains(&at)
                || (SIGNED_LEN + SIGNATURE_DATA_LEN_FIELD..AFTER_ISV_SIGNATURE).contains(&at);
            assert_eq!(platform_key(&q) == base, ignored, "byte {at}");
        }
    }
}
