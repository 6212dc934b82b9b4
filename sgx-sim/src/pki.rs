//! The simulated PKI: a root CA whose name says SIMULATED, a PCK Processor CA, a PCK leaf
//! carrying Intel's SGX extension, a TCB signing certificate, and both CRLs.
//!
//! The shapes follow Intel's "SGX PCK Certificate and Certificate Revocation List Profile",
//! closely enough that Intel's reference Quote Verification Library accepts them (the
//! `qvl_oracle` test): root (CA, pathlen 1) -> PCK Processor CA (CA, pathlen 0) -> PCK leaf;
//! root -> TCB signing. CAs have keyCertSign|cRLSign, leaves digitalSignature|nonRepudiation,
//! all critical. Every certificate carries the five extensions Intel's parser requires:
//! authority and subject key identifiers, key usage, basic constraints and CRL distribution
//! points. The distribution points name hosts under `.invalid` (RFC 2606: never resolvable),
//! so nothing can fetch a simulated CRL from the network; the CRLs have no issuing distribution
//! point, so each is authoritative for its issuer's certificates (Intel's CRLs are the same).
//! Each CRL carries a CRL number and an authority key identifier, as Intel's profile requires.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};

use crate::SimError;
use crate::keys::{Entropy, PrivateKey};
use crate::timefmt::datetime;

/// Subject CN of the simulated root CA. It must never be mistaken for Intel's.
pub const ROOT_CA_CN: &str = "SIMULATED SGX Root CA (sgx-sim, NOT Intel, NOT hardware)";
/// Subject CN of the PCK CA. dcap-qvl (and Intel's QVL) classify a PCK leaf as issued by the
/// Processor CA when its issuer name contains "Processor".
pub const PCK_CA_CN: &str = "SIMULATED SGX PCK Processor CA";
/// Subject CN of the PCK leaf.
pub const PCK_CN: &str = "SIMULATED SGX PCK Certificate";
/// Subject CN of the TCB info / QE identity signer.
pub const TCB_SIGNING_CN: &str = "SIMULATED SGX TCB Signing";
/// Subject O of every simulated certificate.
pub const ORGANIZATION: &str = "SIMULATED by sgx-sim - not Intel Corporation";
/// CRL distribution point of the root CA's CRL (named in the root, the PCK CA and the TCB
/// signing certificate, as Intel's certificates name `IntelSGXRootCA.der`).
pub const ROOT_CRL_URI: &str = "https://sgx-sim.invalid/SIMULATED/root-ca.crl";
/// CRL distribution point of the PCK Processor CA's CRL (named in the PCK leaf; the path is
/// the PCS v4 `pckcrl` endpoint, which sgx-sim's loopback PCCS serves).
pub const PCK_CRL_URI: &str =
    "https://sgx-sim.invalid/SIMULATED/sgx/certification/v4/pckcrl?ca=processor&encoding=der";

/// OID arcs of Intel's SGX extension (1.2.840.113741.1.13.1) in PCK certificates.
pub const SGX_EXTENSION_OID: &[u64] = &[1, 2, 840, 113741, 1, 13, 1];

/// The platform facts a PCK certificate attests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SgxExtension {
    pub ppid: [u8; 16],
    /// The 16 SGX TCB component SVNs; CPUSVN carries the same bytes.
    pub tcb_components: [u8; 16],
    pub pce_svn: u16,
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
}

/// Validity and revocation settings for the whole PKI.
pub(crate) struct PkiOptions {
    pub not_before: u64,
    pub not_after: u64,
    pub revoke_pck: bool,
}

/// A certificate with its key.
pub(crate) struct Issued {
    pub cert_der: Vec<u8>,
    pub key: PrivateKey,
}

/// Everything [`build`] makes.
pub(crate) struct Pki {
    pub root: Issued,
    pub pck_ca: Issued,
    pub pck: Issued,
    pub tcb_signing: Issued,
    pub root_crl_der: Vec<u8>,
    pub pck_crl_der: Vec<u8>,
}

/// Builds the PKI. Keys come from `entropy` (seeded: reproducible keys).
pub(crate) fn build(
    entropy: &Entropy,
    sgx: &SgxExtension,
    opts: &PkiOptions,
) -> Result<Pki, SimError> {
    let root_key = entropy.p256_key("root ca key")?;
    let pck_ca_key = entropy.p256_key("pck ca key")?;
    let pck_key = entropy.p256_key("pck key")?;
    let tcb_key = entropy.p256_key("tcb signing key")?;

    let root_rc = root_key.rcgen()?;
    let root_params = ca_params(
        ROOT_CA_CN,
        1,
        serial(entropy, "root ca serial")?,
        ROOT_CRL_URI,
        opts,
    )?;
    let root_cert = root_params
        .self_signed(&root_rc)
        .map_err(|source| SimError::Certificate {
            what: "root CA certificate",
            source,
        })?;
    let root_issuer = Issuer::from_params(&root_params, &root_rc);

    let pck_ca_rc = pck_ca_key.rcgen()?;
    let pck_ca_params = ca_params(
        PCK_CA_CN,
        0,
        serial(entropy, "pck ca serial")?,
        ROOT_CRL_URI,
        opts,
    )?;
    let pck_ca_cert = pck_ca_params
        .signed_by(&pck_ca_rc, &root_issuer)
        .map_err(|source| SimError::Certificate {
            what: "PCK CA certificate",
            source,
        })?;
    let pck_ca_issuer = Issuer::from_params(&pck_ca_params, &pck_ca_rc);

    let pck_serial = serial(entropy, "pck serial")?;
    let mut pck_params = leaf_params(PCK_CN, pck_serial.clone(), PCK_CRL_URI, opts)?;
    pck_params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            SGX_EXTENSION_OID,
            sgx_extension_der(sgx),
        ));
    let pck_cert = pck_params
        .signed_by(&pck_key.rcgen()?, &pck_ca_issuer)
        .map_err(|source| SimError::Certificate {
            what: "PCK certificate",
            source,
        })?;

    let tcb_params = leaf_params(
        TCB_SIGNING_CN,
        serial(entropy, "tcb signing serial")?,
        ROOT_CRL_URI,
        opts,
    )?;
    let tcb_cert = tcb_params
        .signed_by(&tcb_key.rcgen()?, &root_issuer)
        .map_err(|source| SimError::Certificate {
            what: "TCB signing certificate",
            source,
        })?;

    let root_crl = crl_params(opts, Vec::new())?
        .signed_by(&root_issuer)
        .map_err(|source| SimError::Certificate {
            what: "root CA CRL",
            source,
        })?;
    let revoked = if opts.revoke_pck {
        vec![RevokedCertParams {
            serial_number: pck_serial,
            revocation_time: datetime(opts.not_before, "--not-before")?,
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }]
    } else {
        Vec::new()
    };
    let pck_crl = crl_params(opts, revoked)?
        .signed_by(&pck_ca_issuer)
        .map_err(|source| SimError::Certificate {
            what: "PCK CA CRL",
            source,
        })?;

    Ok(Pki {
        root: Issued {
            cert_der: root_cert.der().to_vec(),
            key: root_key,
        },
        pck_ca: Issued {
            cert_der: pck_ca_cert.der().to_vec(),
            key: pck_ca_key,
        },
        pck: Issued {
            cert_der: pck_cert.der().to_vec(),
            key: pck_key,
        },
        tcb_signing: Issued {
            cert_der: tcb_cert.der().to_vec(),
            key: tcb_key,
        },
        root_crl_der: root_crl.der().to_vec(),
        pck_crl_der: pck_crl.der().to_vec(),
    })
}

/// The SGX extension's value (the DER inside the extension's OCTET STRING), laid out as
/// Intel's PCK certificate profile, section "SGX Extensions", and the dcap-qvl sample do:
/// `SEQUENCE { {PPID, OCTET STRING(16)}, {TCB, SEQUENCE { {TCB.1..16, INTEGER},
/// {TCB.17 PCESVN, INTEGER}, {TCB.18 CPUSVN, OCTET STRING(16)} }}, {PCE-ID, OCTET STRING(2)},
/// {FMSPC, OCTET STRING(6)}, {SGX Type, ENUMERATED 0 (Standard)} }`.
pub(crate) fn sgx_extension_der(sgx: &SgxExtension) -> Vec<u8> {
    fn oid(sub: &[u64]) -> yasna::models::ObjectIdentifier {
        let mut arcs = SGX_EXTENSION_OID.to_vec();
        arcs.extend_from_slice(sub);
        yasna::models::ObjectIdentifier::from_slice(&arcs)
    }
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[1]));
                w.next().write_bytes(&sgx.ppid);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[2]));
                w.next().write_sequence(|w| {
                    for (n, svn) in (1u64..).zip(sgx.tcb_components) {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[2, n]));
                            w.next().write_u8(svn);
                        });
                    }
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 17]));
                        w.next().write_u16(sgx.pce_svn);
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 18]));
                        w.next().write_bytes(&sgx.tcb_components);
                    });
                });
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[3]));
                w.next().write_bytes(&sgx.pce_id);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[4]));
                w.next().write_bytes(&sgx.fmspc);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[5]));
                w.next().write_enum(0);
            });
        });
    })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

fn base_params(
    cn: &str,
    serial: SerialNumber,
    crl_uri: &str,
    opts: &PkiOptions,
) -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::default();
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_uri.to_owned()],
    }];
    p.distinguished_name = name(cn);
    p.serial_number = Some(serial);
    p.not_before = datetime(opts.not_before, "--not-before")?;
    p.not_after = datetime(opts.not_after, "--not-after")?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn ca_params(
    cn: &str,
    path_len: u8,
    serial: SerialNumber,
    crl_uri: &str,
    opts: &PkiOptions,
) -> Result<CertificateParams, SimError> {
    let mut p = base_params(cn, serial, crl_uri, opts)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn leaf_params(
    cn: &str,
    serial: SerialNumber,
    crl_uri: &str,
    opts: &PkiOptions,
) -> Result<CertificateParams, SimError> {
    let mut p = base_params(cn, serial, crl_uri, opts)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    Ok(p)
}

fn crl_params(
    opts: &PkiOptions,
    revoked_certs: Vec<RevokedCertParams>,
) -> Result<CertificateRevocationListParams, SimError> {
    Ok(CertificateRevocationListParams {
        this_update: datetime(opts.not_before, "--not-before")?,
        next_update: datetime(opts.not_after, "--not-after")?,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    })
}

/// A positive 16-byte serial with a non-zero first byte (so its DER form is exactly 16 bytes).
fn serial(entropy: &Entropy, label: &str) -> Result<SerialNumber, SimError> {
    let mut bytes: [u8; 16] = entropy.bytes(label)?;
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x3f) | 0x40;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ext() -> SgxExtension {
        SgxExtension {
            ppid: [0xd0; 16],
            tcb_components: [11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            pce_svn: 13,
            pce_id: [0, 0],
            fmspc: [0x00, 0xa0, 0x67, 0x11, 0x00, 0x00],
        }
    }

    /// Intel's QVL parser refuses any certificate without these five extensions
    /// (`STATUS_SGX_ROOT_CA_INVALID_EXTENSIONS` and friends), and any CRL without a CRL number
    /// and an authority key identifier.
    #[test]
    fn every_certificate_and_crl_carries_the_extensions_intels_profile_requires() {
        use x509_parser::prelude::*;
        let pki = build(
            &Entropy::new(Some(3)),
            &sample_ext(),
            &PkiOptions {
                not_before: 1_750_000_000,
                not_after: 1_760_000_000,
                revoke_pck: false,
            },
        )
        .unwrap();
        let certs = [
            (&pki.root.cert_der, ROOT_CRL_URI, true),
            (&pki.pck_ca.cert_der, ROOT_CRL_URI, true),
            (&pki.pck.cert_der, PCK_CRL_URI, false),
            (&pki.tcb_signing.cert_der, ROOT_CRL_URI, false),
        ];
        for (der, uri, ca) in certs {
            let (_, cert) = parse_x509_certificate(der).unwrap();
            let subject = cert.subject().to_string();
            assert!(subject.contains("SIMULATED"), "{subject}");
            let mut seen = Vec::new();
            for ext in cert.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("aki"),
                    ParsedExtension::SubjectKeyIdentifier(_) => seen.push("ski"),
                    ParsedExtension::KeyUsage(ku) => {
                        assert!(ext.critical, "{subject}: key usage not critical");
                        assert_eq!(ku.key_cert_sign(), ca, "{subject}");
                        assert_eq!(ku.crl_sign(), ca, "{subject}");
                        assert_eq!(ku.digital_signature(), !ca, "{subject}");
                        seen.push("ku");
                    }
                    ParsedExtension::BasicConstraints(bc) => {
                        assert!(ext.critical, "{subject}: basic constraints not critical");
                        assert_eq!(bc.ca, ca, "{subject}");
                        seen.push("bc");
                    }
                    ParsedExtension::CRLDistributionPoints(points) => {
                        let text = format!("{points:?}");
                        assert!(text.contains(uri), "{subject}: {text}");
                        seen.push("cdp");
                    }
                    _ => {}
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, ["aki", "bc", "cdp", "ku", "ski"], "{subject}");
        }
        for der in [&pki.root_crl_der, &pki.pck_crl_der] {
            let (_, crl) = parse_x509_crl(der).unwrap();
            assert!(crl.crl_number().is_some());
            assert!(crl.extensions().iter().any(|e| matches!(
                e.parsed_extension(),
                ParsedExtension::AuthorityKeyIdentifier(_)
            )));
        }
    }

    #[test]
    fn the_sgx_extension_matches_intels_encoding_byte_for_byte() {
        // The SGX extension of the dcap-qvl sample's PCK certificate, with its PPID replaced.
        let intel = hex::decode(concat!(
            "308201c1301e060a2a864886f84d010d01010410d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d03082",
            "0164060a2a864886f84d010d0102308201543010060b2a864886f84d010d01020102010b3010",
            "060b2a864886f84d010d01020202010b3010060b2a864886f84d010d0102030201023010060b",
            "2a864886f84d010d0102040201023011060b2a864886f84d010d010205020200ff3010060b2a",
            "864886f84d010d0102060201013010060b2a864886f84d010d0102070201003010060b2a8648",
            "86f84d010d0102080201003010060b2a864886f84d010d0102090201003010060b2a864886f8",
            "4d010d01020a0201003010060b2a864886f84d010d01020b0201003010060b2a864886f84d01",
            "0d01020c0201003010060b2a864886f84d010d01020d0201003010060b2a864886f84d010d01",
            "020e0201003010060b2a864886f84d010d01020f0201003010060b2a864886f84d010d010210",
            "0201003010060b2a864886f84d010d01021102010d301f060b2a864886f84d010d0102120410",
            "0b0b0202ff01000000000000000000003010060a2a864886f84d010d0103040200003014060a",
            "2a864886f84d010d0104040600a067110000300f060a2a864886f84d010d01050a0100",
        ))
        .unwrap();
        assert_eq!(
            hex::encode(sgx_extension_der(&sample_ext())),
            hex::encode(intel)
        );
    }
}
