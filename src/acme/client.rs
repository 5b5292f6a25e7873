//! The HTTPS client that talks to the CA. It trusts the system roots, the PEM file named by
//! `SSL_CERT_FILE` (how tests trust Pebble), and the vhost's own `ca-file`, all together.

use std::path::Path;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub fn http_client(ca_file: Option<&Path>) -> Result<Box<dyn HttpClient>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let env_file = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    for file in env_file.as_deref().into_iter().chain(ca_file) {
        let pem = crate::files::read_config_file(file, crate::files::MAX_CONFIG_FILE).map_err(|e| e.to_string())?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read CA certificates from {}: {e}", file.display()))?;
        roots.add_parsable_certificates(certs);
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates to reach the ACME server with".into());
    }
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, BodyWrapper<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

#[cfg(test)]
mod tests {
    /// A `ca-file` that is a device or a FIFO is refused at once, never read without end.
    #[test]
    fn a_ca_file_that_is_not_a_regular_file_is_refused() {
        let Err(e) = super::http_client(Some(std::path::Path::new("/dev/zero"))) else { panic!("accepted /dev/zero") };
        assert!(e.contains("/dev/zero is not a regular file"), "{e}");
    }
}
