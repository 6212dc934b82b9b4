//! Operator key material: the app's TLS certificate and key (replacing the demo's
//! `gen-cert.sh` openssl calls) and Occlum image keys in `occlum gen-image-key`'s exact format.
//!
//! Keys are written with mode 0600 and never overwrite an existing file.

use std::fmt;
use std::path::Path;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
#[cfg(feature = "host-tools")]
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{fsutil, timefmt};

/// Bytes in an Occlum image key (AES-128-GCM for the SEFS/unionfs image).
#[cfg(feature = "host-tools")]
pub const IMAGE_KEY_LEN: usize = 16;

/// Days an app certificate is valid, as in the demo's `openssl x509 -days 365`.
pub const CERT_VALIDITY_DAYS: u64 = 365;

/// Why key material could not be made or written.
#[derive(Debug)]
pub enum KeygenError {
    #[cfg(feature = "host-tools")]
    Random,
    Cert {
        detail: String,
    },
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl fmt::Display for KeygenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "host-tools")]
            Self::Random => write!(f, "system random generator failed"),
            Self::Cert { detail } => write!(f, "certificate generation failed: {detail}"),
            Self::Write { path, source } => write!(f, "{path}: {source}"),
        }
    }
}

impl std::error::Error for KeygenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A new image key as `occlum gen-image-key` writes it: 16 random bytes as lowercase hex,
/// a dash between bytes, a trailing newline (`tr -dc 'a-f0-9' | fold -w 32 | sed 's/.{2}/&-/g'`).
#[cfg(feature = "host-tools")]
pub fn image_key_text() -> Result<Zeroizing<String>, KeygenError> {
    let mut key = Zeroizing::new([0u8; IMAGE_KEY_LEN]);
    SystemRandom::new()
        .fill(key.as_mut_slice())
        .map_err(|_| KeygenError::Random)?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Exactly sized, and no temporary strings: every copy of the key is wiped.
    let mut text = Zeroizing::new(String::with_capacity(IMAGE_KEY_LEN * 3));
    for (i, byte) in key.iter().enumerate() {
        if i > 0 {
            text.push('-');
        }
        for nibble in [byte >> 4, byte & 0x0f] {
            // A nibble is < 16, the table's length; `get` keeps the lint honest.
            text.extend(HEX.get(usize::from(nibble)).map(|&h| char::from(h)));
        }
    }
    text.push('\n');
    Ok(text)
}

/// Writes a new image key to `out` (mode 0600, never overwriting).
#[cfg(feature = "host-tools")]
pub fn write_image_key(out: &Path) -> Result<(), KeygenError> {
    let text = image_key_text()?;
    write_new(out, text.as_bytes())
}

/// Makes a self-signed ECDSA P-256 server certificate for `cn` with SANs `localhost`,
/// `127.0.0.1` and `cn`, valid for [`CERT_VALIDITY_DAYS`]; writes the PEM certificate and the
/// PKCS#8 PEM key (0600).
pub fn write_tls_cert(cn: &str, out_cert: &Path, out_key: &Path) -> Result<(), KeygenError> {
    let (cert_pem, key_pem) = tls_cert(cn, timefmt::now_unix())?;
    write_new(out_key, key_pem.as_bytes())?;
    std::fs::write(out_cert, cert_pem.as_bytes()).map_err(|source| KeygenError::Write {
        path: out_cert.display().to_string(),
        source,
    })
}

/// The certificate and key PEMs for [`write_tls_cert`], valid from `now_unix`.
pub fn tls_cert(cn: &str, now_unix: u64) -> Result<(String, Zeroizing<String>), KeygenError> {
    let cert_err = |e: rcgen::Error| KeygenError::Cert {
        detail: e.to_string(),
    };
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !sans.iter().any(|s| s == cn) {
        sans.push(cn.to_owned());
    }
    let mut params = CertificateParams::new(sans).map_err(cert_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // A day of slack for clocks behind ours.
    let (y, m, d) = timefmt::civil_from_unix(now_unix.saturating_sub(86_400));
    params.not_before = rcgen::date_time_ymd(clamp_year(y), m, d);
    let (y, m, d) = timefmt::civil_from_unix(now_unix + CERT_VALIDITY_DAYS * 86_400);
    params.not_after = rcgen::date_time_ymd(clamp_year(y), m, d);
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = params.self_signed(&key).map_err(cert_err)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

fn clamp_year(y: i64) -> i32 {
    i32::try_from(y).unwrap_or(9999).clamp(1970, 9999)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeygenError> {
    fsutil::create_private(path, bytes, false).map_err(|source| KeygenError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject as _;

    use super::*;

    #[cfg(feature = "host-tools")]
    #[test]
    fn image_keys_have_occlums_format() {
        let a = image_key_text().unwrap();
        let b = image_key_text().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 48);
        let body = a.strip_suffix('\n').unwrap();
        let parts: Vec<&str> = body.split('-').collect();
        assert_eq!(parts.len(), 16);
        for p in parts {
            assert_eq!(p.len(), 2);
            assert!(p.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{p}");
        }
    }

    #[test]
    fn tls_certs_name_localhost_and_the_loopback_address() {
        let (cert, key) = tls_cert("demo.example", 1_700_000_000).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = x509
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "demo.example");
        let san = x509.subject_alternative_name().unwrap().unwrap().value;
        let shown = format!("{:?}", san.general_names);
        assert!(
            shown.contains("localhost") && shown.contains("demo.example"),
            "{shown}"
        );
        assert!(
            shown.contains("127.0.0.1") || shown.contains("[127, 0, 0, 1]"),
            "{shown}"
        );
        let validity = x509.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert_eq!(days, CERT_VALIDITY_DAYS as i64 + 1);
    }
}
