//! When a certificate stops being valid: for the expiry metric and for ACME renewal.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The `notAfter` of a DER certificate, in Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    validity(der).map(|(_, not_after)| not_after)
}

/// The `notBefore` and `notAfter` of a DER certificate, in Unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

/// The DNS names a certificate is valid for (its subjectAltName entries).
pub fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The `notAfter` of the first (leaf) certificate of a PEM file.
pub fn leaf_not_after(path: &Path) -> Option<i64> {
    let pem = crate::files::read_config_file(path, crate::files::MAX_CONFIG_FILE).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    not_after(&leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["example.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2027, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (nb, na) = validity(cert.der()).unwrap();
        assert_eq!(nb, 1_767_312_000);
        assert_eq!(na, 1_804_118_400);
        assert_eq!(dns_names(cert.der()), vec!["example.test".to_string()]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        assert_eq!(leaf_not_after(&path), Some(1_804_118_400));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(leaf_not_after(&dir.path().join("missing")), None);
    }
}
