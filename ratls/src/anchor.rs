//! The trust anchor: the one root CA that quotes' PCK chains must lead to.
//!
//! Intel's SGX Root CA unless the `simulation` feature is on and [`crate::danger`] says
//! otherwise; nothing else in the workspace can construct a non-Intel anchor. The verifier
//! ([`crate::verify::Verifier`]) and any collateral fetcher take the same anchor.

use std::fmt;

use dcap_qvl::verify::QuoteVerifier;

/// The root CA that quotes must chain to.
#[derive(Clone)]
pub struct TrustAnchor {
    kind: AnchorKind,
}

#[derive(Clone)]
enum AnchorKind {
    Intel,
    #[cfg(feature = "simulation")]
    Custom {
        der: Vec<u8>,
        label: String,
    },
}

/// Intel's SGX Root CA (`CN=Intel SGX Root CA`, valid to 2049-12-31), byte for byte the root
/// dcap-qvl's `QuoteVerifier::new_prod` trusts; SHA-256 fingerprint
/// 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3 (pinned by a test).
const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel-sgx-root-ca.der");

impl TrustAnchor {
    /// Intel's SGX Root CA, the production trust anchor.
    pub fn intel() -> Self {
        Self {
            kind: AnchorKind::Intel,
        }
    }

    /// A root other than Intel's; only `crate::danger::simulated_root` makes one.
    #[cfg(feature = "simulation")]
    pub(crate) fn custom(der: Vec<u8>, label: String) -> Self {
        Self {
            kind: AnchorKind::Custom { der, label },
        }
    }

    /// True for Intel's SGX Root CA.
    pub fn is_intel(&self) -> bool {
        matches!(self.kind, AnchorKind::Intel)
    }

    /// A description for logs: `Intel SGX Root CA` or `NON-INTEL root <label>`.
    pub fn describe(&self) -> String {
        match &self.kind {
            AnchorKind::Intel => "Intel SGX Root CA".to_owned(),
            #[cfg(feature = "simulation")]
            AnchorKind::Custom { label, .. } => format!("NON-INTEL root {label}"),
        }
    }

    /// The root certificate (DER) the PCK chain must lead to (public data: a CA certificate).
    pub fn root_der(&self) -> &[u8] {
        match &self.kind {
            AnchorKind::Intel => INTEL_SGX_ROOT_CA_DER,
            #[cfg(feature = "simulation")]
            AnchorKind::Custom { der, .. } => der,
        }
    }

    /// dcap-qvl's verifier rooted at this anchor.
    pub(crate) fn quote_verifier(&self) -> QuoteVerifier {
        let verifier = match &self.kind {
            AnchorKind::Intel => QuoteVerifier::new_prod(),
            #[cfg(feature = "simulation")]
            AnchorKind::Custom { der, .. } => QuoteVerifier::new(der.clone()),
        };
        // Debug enclaves are decided by the measurement policy (step 5), which names the knob.
        verifier.allow_debug(true)
    }
}

impl Default for TrustAnchor {
    fn default() -> Self {
        Self::intel()
    }
}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    #[test]
    fn the_intel_root_is_the_pinned_certificate() {
        assert_eq!(
            hex::encode(Sha256::digest(INTEL_SGX_ROOT_CA_DER)),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
        assert_eq!(TrustAnchor::intel().root_der(), INTEL_SGX_ROOT_CA_DER);
    }
}
