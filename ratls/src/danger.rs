//! Switches that weaken the production trust model. Each is named for its risk.
//!
//! Production verification trusts only Intel's SGX Root CA. Machines without SGX (CI, laptops)
//! run the whole flow on `sgx-sim`'s simulated platform, whose quotes chain to a simulated root;
//! verifying them needs that root as the trust anchor. Nothing else in this crate can make a
//! non-Intel anchor, and every result verified under one says so
//! ([`crate::verify::VerifiedPeer::anchored_at_intel`] is false).
//!
//! [`simulated_root`] exists only with the `simulation` feature, which `sgx-sim` enables: a
//! binary built without the simulated platform (kms and init for Occlum) cannot make a
//! non-Intel anchor at all.

use crate::anchor::TrustAnchor;

/// Trust quotes that chain to `root_der` INSTEAD of Intel's SGX Root CA.
///
/// Anyone holding that root's key can forge quotes for any enclave, so use it only for a
/// simulated platform or a test PKI, and say so loudly where it is configured. `label`
/// (a file name, a subject) appears in every log line and error that mentions the anchor.
#[cfg(feature = "simulation")]
pub fn simulated_root(root_der: Vec<u8>, label: String) -> TrustAnchor {
    TrustAnchor::custom(root_der, label)
}

/// Whether this ratls was built with `simulation`, i.e. whether [`simulated_root_if_built`]
/// can make a non-Intel anchor at all.
pub const SIMULATED_ROOTS: bool = cfg!(feature = "simulation");

/// [`simulated_root`] for a host tool in another crate (`ratls inspect` in `pccs-client`),
/// which cannot see this crate's features: `None` when this ratls was built without
/// `simulation`, so such a build still cannot make a non-Intel anchor.
pub fn simulated_root_if_built(root_der: Vec<u8>, label: String) -> Option<TrustAnchor> {
    #[cfg(feature = "simulation")]
    return Some(simulated_root(root_der, label));
    #[cfg(not(feature = "simulation"))]
    {
        let _ = (root_der, label);
        None
    }
}
