//! Building a vhost's rustls `ServerConfig` (D8: a cert and key are enough to serve TLS).

use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ciphers::{self, SSL_OP_NO_TLSV1_2, SSL_OP_NO_TLSV1_3};
use super::slots::{CertSlots, ManagedCert};
use crate::files::{MAX_CONFIG_FILE, ReadError, read_config_file};
use crate::model::{ConfigError, Global, Vhost, Warning};

/// `slots`: where managed (ACME) certificates are served from; a vhost with `acme` reads and
/// seeds its slot there.
pub fn server_config(
    v: &Vhost,
    g: &Global,
    slots: &CertSlots,
    warnings: &mut Vec<Warning>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let err =
        |key: &str, msg: String| ConfigError::new(v.loc.clone(), Some(key), format!("vhost \"{}\": {msg}", v.name));
    let mut notes = Vec::new();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(list) = &v.ciphers {
        let tls12 = ciphers::tls12_suites(list, &mut notes);
        provider.cipher_suites.retain(|s| s.version() != &rustls::version::TLS12);
        provider.cipher_suites.extend(tls12);
    }
    if let Some(list) = &v.tls13_ciphers {
        let tls13 = ciphers::tls13_suites(list, &mut notes);
        if !tls13.is_empty() {
            provider.cipher_suites.retain(|s| s.version() != &rustls::version::TLS13);
            provider.cipher_suites.extend(tls13);
        }
    }
    if let Some(list) = &v.ecdh_curve {
        let groups = ciphers::kx_groups(list, &mut notes);
        if !groups.is_empty() {
            provider.kx_groups = groups;
        }
    }
    let options = v.ssl_option_set & !v.ssl_option_clear;
    let unsupported = ciphers::unsupported_options(options);
    if unsupported != 0 {
        notes.push(format!("ssl-option-set bits {unsupported:#x} have no rustls meaning and are ignored"));
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    let has_suite = |p: &rustls::crypto::CryptoProvider, ver| p.cipher_suites.iter().any(|s| s.version() == ver);
    if options & SSL_OP_NO_TLSV1_3 == 0 && has_suite(&provider, &rustls::version::TLS13) {
        versions.push(&rustls::version::TLS13);
    }
    if options & SSL_OP_NO_TLSV1_2 == 0 && has_suite(&provider, &rustls::version::TLS12) {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err(err("ciphers", "the TLS settings leave no protocol version or cipher to offer".into()));
    }
    for msg in notes {
        warnings.push(Warning { loc: v.loc.clone(), msg: format!("vhost \"{}\": {msg}", v.name) });
    }
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err("ciphers", e.to_string()))?;
    let builder = if v.client_cert_required {
        let ca = v.host_ssl_ca.as_deref().expect("validated: client-cert-required has a CA");
        let roots = load_roots(ca).map_err(|m| err("host-ssl-ca", m))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| err("host-ssl-ca", e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let cert_path = v.host_ssl_cert.as_deref().expect("a TLS vhost has a cert");
    let key_path = v.host_ssl_key.as_deref().expect("a TLS vhost has a key");
    let mut config = if let Some(acme) = &v.acme {
        // Managed: the slot (the one the ACME manager fills) keeps the certificate across
        // reloads and takes renewals live. What is on disk seeds it when it is empty, or
        // replaces it when it lasts longer (edited by hand): never an older certificate.
        let slot = slots.slot(&acme.cert_path);
        match load_key_pair(&acme.cert_path, &acme.key_path, &provider) {
            Ok(ck) => {
                let lasts = |k: &CertifiedKey| k.cert.first().and_then(|c| super::expiry::not_after(c));
                let current = slot.load().as_deref().and_then(lasts);
                if current.is_none() || lasts(&ck) > current {
                    slot.store(Some(Arc::new(ck)));
                }
            }
            Err((_, msg)) if slot.load().is_none() => warnings.push(Warning {
                loc: v.loc.clone(),
                msg: format!("vhost \"{}\": {msg}; serving TLS once ACME has issued a certificate", v.name),
            }),
            Err(_) => {}
        }
        builder.with_cert_resolver(Arc::new(ManagedCert(slot)))
    } else {
        match load_key_pair(cert_path, key_path, &provider) {
            Ok(ck) => builder.with_cert_resolver(Arc::new(Fixed(Some(Arc::new(ck))))),
            Err((_, msg)) if v.ignore_missing_cert && (!cert_path.exists() || !key_path.exists()) => {
                warnings.push(Warning {
                    loc: v.loc.clone(),
                    msg: format!(
                        "vhost \"{}\": {msg}; handshakes fail until a certificate exists (ignore-missing-cert)",
                        v.name
                    ),
                });
                builder.with_cert_resolver(Arc::new(Fixed(None)))
            }
            Err((key, msg)) => return Err(err(key, msg)),
        }
    };
    let alpn = v.alpn.as_deref().or(g.default_alpn.as_deref()).unwrap_or("h2,http/1.1");
    config.alpn_protocols = alpn
        .split(',')
        .map(str::trim)
        .filter(|p| matches!(*p, "h2" | "http/1.1"))
        .map(|p| p.as_bytes().to_vec())
        .collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Every certificate of a PEM file (regular, at most `MAX_CONFIG_FILE`), at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_config_file(path, MAX_CONFIG_FILE).map_err(|e| match e {
        ReadError::Io { source, .. } => format!("cannot read certificates from {}: {source}", path.display()),
        e => e.to_string(),
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The certificate chain and its key; an error names the key of the file that failed.
fn load_key_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, (&'static str, String)> {
    let chain = read_certs(cert).map_err(|m| ("host-ssl-cert", m))?;
    let pem = read_config_file(key, MAX_CONFIG_FILE).map_err(|e| match e {
        ReadError::Io { source, .. } => {
            ("host-ssl-key", format!("cannot read the private key {}: {source}", key.display()))
        }
        e => ("host-ssl-key", e.to_string()),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| ("host-ssl-key", format!("cannot read the private key {}: {e}", key.display())))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| ("host-ssl-cert", format!("certificate and key do not fit: {e}")))
}

/// Whether a PEM certificate chain and private key (a `kubernetes.io/tls` Secret's `tls.crt` and
/// `tls.key`) load together as `server_config` loads them from files: a front end checks a
/// Secret with this before it names the Secret's files in a config.
pub fn check_pem_pair(cert: &[u8], key: &[u8]) -> Result<(), String> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read the certificates: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("cannot read the private key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| format!("certificate and key do not fit: {e}"))?;
    Ok(())
}

/// The vhost's one certificate (or none yet, with `ignore-missing-cert`). A resolver rather
/// than `with_single_cert` so that certificates can be swapped in later without a rebuild.
#[derive(Debug)]
struct Fixed(Option<Arc<CertifiedKey>>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
}
