//! Answers to the CA's challenges, published while an order is being validated.
//! http-01: `GET /.well-known/acme-challenge/<token>` on any plain listener returns the key
//! authorization. tls-alpn-01: a handshake offering `acme-tls/1` for the domain gets a
//! self-signed certificate carrying the key authorization's digest (RFC 8737).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig;

const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge answers this server publishes now. Owned by the server and shared with the
/// listeners (tls-alpn-01), the request path (http-01) and the managers (which publish).
#[derive(Default)]
pub struct Challenges {
    http01: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").field("http01", &self.http01.read().len()).finish()
    }
}

impl Challenges {
    /// The key authorization for an http-01 request path, while its challenge is published.
    pub fn http01_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http01.read().get(token).cloned()
    }

    /// The TLS config that answers a tls-alpn-01 validation of `domain`, while it is published.
    pub fn alpn_config(&self, domain: &str) -> Option<Arc<ServerConfig>> {
        self.alpn.read().get(&domain.to_ascii_lowercase()).cloned()
    }

    pub fn publish_http01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Published {
        self.http01.write().insert(token.to_string(), key_authorization.to_string());
        Published { from: self.clone(), http01: Some(token.to_string()), alpn: None }
    }

    pub fn publish_alpn(self: &Arc<Self>, domain: &str, digest: &[u8]) -> Result<Published, rcgen::Error> {
        let config = alpn_config(domain, digest)?;
        let domain = domain.to_ascii_lowercase();
        self.alpn.write().insert(domain.clone(), Arc::new(config));
        Ok(Published { from: self.clone(), http01: None, alpn: Some(domain) })
    }
}

/// Removes what it published when dropped, so no answer outlives its order.
pub struct Published {
    from: Arc<Challenges>,
    http01: Option<String>,
    alpn: Option<String>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(t) = &self.http01 {
            self.from.http01.write().remove(t);
        }
        if let Some(d) = &self.alpn {
            self.from.alpn.write().remove(d);
        }
    }
}

/// A certificate for `domain` with the critical acmeIdentifier extension, offered only to
/// clients that ask for `acme-tls/1`.
fn alpn_config(domain: &str, digest: &[u8]) -> Result<ServerConfig, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(key_der).map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    // Not `with_single_cert`: its key check parses the certificate with webpki, which refuses
    // the critical acmeIdentifier extension that this certificate exists to carry.
    let ck = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer);
    let slot = arc_swap::ArcSwapOption::from(Some(Arc::new(ck)));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(crate::tls::ManagedCert(Arc::new(slot))));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_exist_only_while_published() {
        let c = Arc::new(Challenges::default());
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/tok-1"), None);
        let p = c.publish_http01("tok-1", "tok-1.thumb");
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/tok-1").as_deref(), Some("tok-1.thumb"));
        assert_eq!(c.http01_answer("/other/tok-1"), None);
        let other = Challenges::default();
        assert_eq!(other.http01_answer("/.well-known/acme-challenge/tok-1"), None, "nothing is process-wide");
        drop(p);
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/tok-1"), None);

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let p = c.publish_alpn("Alpn.Example", &[7u8; 32]).unwrap();
        let config = c.alpn_config("alpn.example").expect("published");
        assert_eq!(config.alpn_protocols, vec![ACME_TLS_ALPN.to_vec()]);
        drop(p);
        assert!(c.alpn_config("alpn.example").is_none());
    }
}
