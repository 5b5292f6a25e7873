//! Answers to the CA's challenges, published while an order is being validated.
//! http-01: `GET /.well-known/acme-challenge/<token>` on any plain listener returns the key
//! authorization. tls-alpn-01: a handshake offering `acme-tls/1` for the domain gets a
//! self-signed certificate carrying the key authorization's digest (RFC 8737).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use rustls::ServerConfig;

const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

static HTTP01: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);
static ALPN: LazyLock<RwLock<HashMap<String, Arc<ServerConfig>>>> = LazyLock::new(Default::default);

/// The key authorization for an http-01 request path, while its challenge is published.
pub fn http01_answer(path: &str) -> Option<String> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    HTTP01.read().expect("http-01 tokens").get(token).cloned()
}

/// The TLS config that answers a tls-alpn-01 validation of `domain`, while it is published.
pub fn alpn_challenge_config(domain: &str) -> Option<Arc<ServerConfig>> {
    ALPN.read().expect("tls-alpn-01 certificates").get(&domain.to_ascii_lowercase()).cloned()
}

/// Removes what it published when dropped, so no answer outlives its order.
pub struct Published {
    http01: Option<String>,
    alpn: Option<String>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(t) = &self.http01 {
            HTTP01.write().expect("http-01 tokens").remove(t);
        }
        if let Some(d) = &self.alpn {
            ALPN.write().expect("tls-alpn-01 certificates").remove(d);
        }
    }
}

pub fn publish_http01(token: &str, key_authorization: &str) -> Published {
    HTTP01.write().expect("http-01 tokens").insert(token.to_string(), key_authorization.to_string());
    Published { http01: Some(token.to_string()), alpn: None }
}

pub fn publish_alpn(domain: &str, digest: &[u8]) -> Result<Published, String> {
    let config = alpn_config(domain, digest)?;
    let domain = domain.to_ascii_lowercase();
    ALPN.write().expect("tls-alpn-01 certificates").insert(domain.clone(), Arc::new(config));
    Ok(Published { http01: None, alpn: Some(domain) })
}

/// A certificate for `domain` with the critical acmeIdentifier extension, offered only to
/// clients that ask for `acme-tls/1`.
fn alpn_config(domain: &str, digest: &[u8]) -> Result<ServerConfig, String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(key_der).map_err(|e| e.to_string())?;
    // Not `with_single_cert`: its key check parses the certificate with webpki, which refuses
    // the critical acmeIdentifier extension that this certificate exists to carry.
    let ck = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer);
    let slot = arc_swap::ArcSwapOption::from(Some(Arc::new(ck)));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(super::slot::ManagedCert(Arc::new(slot))));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_exist_only_while_published() {
        assert_eq!(http01_answer("/.well-known/acme-challenge/tok-1"), None);
        let p = publish_http01("tok-1", "tok-1.thumb");
        assert_eq!(http01_answer("/.well-known/acme-challenge/tok-1").as_deref(), Some("tok-1.thumb"));
        assert_eq!(http01_answer("/other/tok-1"), None);
        drop(p);
        assert_eq!(http01_answer("/.well-known/acme-challenge/tok-1"), None);

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let p = publish_alpn("Alpn.Example", &[7u8; 32]).unwrap();
        let config = alpn_challenge_config("alpn.example").expect("published");
        assert_eq!(config.alpn_protocols, vec![ACME_TLS_ALPN.to_vec()]);
        drop(p);
        assert!(alpn_challenge_config("alpn.example").is_none());
    }
}
