//! PEM text of the simulated PKI's certificates and CRLs, the way Intel's PCS formats chains:
//! ratls's encoder ([`ratls::cert::pem_encode`]), the workspace's one.

/// Encodes `der` under `label` (`CERTIFICATE`, `X509 CRL`). Not for keys: those stay in
/// [`ratls::cert::pem_encode`]'s zeroizing string.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    ratls::cert::pem_encode(label, der).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn encoded_pem_parses_back_to_the_same_der() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = super::encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
