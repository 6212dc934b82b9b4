//! `SimQuoteSource`: the simulated platform behind `quote_source::QuoteSource`, so the KMS and
//! init run the same code with or without SGX. It always reports itself as simulated.

use std::sync::Arc;

use quote_source::{QuoteError, QuoteSource};

use crate::identity::Identity;
use crate::platform::SimPlatform;

/// Quotes for one enclave identity from one simulated platform.
#[derive(Debug, Clone)]
pub struct SimQuoteSource {
    /// The platform that signs.
    pub platform: Arc<SimPlatform>,
    /// The enclave the quotes claim to come from.
    pub identity: Identity,
}

impl SimQuoteSource {
    /// Quotes `identity` on `platform`.
    pub fn new(platform: SimPlatform, identity: Identity) -> Self {
        Self {
            platform: Arc::new(platform),
            identity,
        }
    }
}

impl QuoteSource for SimQuoteSource {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, QuoteError> {
        self.platform
            .quote(&self.identity, report_data)
            .map_err(|e| QuoteError::Platform {
                detail: format!("SIMULATED sgx platform: {e}"),
            })
    }

    fn describe(&self) -> String {
        match &self.identity.name {
            Some(name) => format!(
                "SIMULATED sgx platform at {} (enclave identity {name:?})",
                self.platform.dir().display()
            ),
            None => format!(
                "SIMULATED sgx platform at {}",
                self.platform.dir().display()
            ),
        }
    }

    fn is_simulated(&self) -> bool {
        true
    }
}
