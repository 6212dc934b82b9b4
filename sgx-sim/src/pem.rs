//! PEM encoding (RFC 7468): base64 in 64-column lines between BEGIN/END labels, `\n` endings,
//! the way Intel's PCS formats certificate chains.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Encodes `der` under `label` (`CERTIFICATE`, `PRIVATE KEY`, `X509 CRL`).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
