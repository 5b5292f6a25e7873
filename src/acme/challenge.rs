//! Answers to the CA's challenges, published while an order is being validated.
//! http-01: `GET /.well-known/acme-challenge/<token>` on any plain listener returns the key
//! authorization. tls-alpn-01: a handshake offering `acme-tls/1` for the domain gets a
//! self-signed certificate carrying the key authorization's digest (RFC 8737).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig;

const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge answers this server gives now. Owned by the server and shared with the
/// listeners (tls-alpn-01), the request path (http-01) and the managers (which publish).
///
/// With several replicas the CA may ask any of them, so an answer is found in three places:
/// what this process published, what other replicas published through the Kubernetes API
/// (`watched`), and answer files in the ACME vhosts' directories (`files`), which replicas
/// sharing a directory all see.
#[derive(Default)]
pub struct Challenges {
    http01: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<ServerConfig>>>,
    watched: RwLock<Option<Arc<dyn SharedAnswers>>>,
    files: RwLock<Vec<PathBuf>>,
    /// TLS configs made for other replicas' tls-alpn-01 answers, by domain and digest.
    made: RwLock<HashMap<AlpnKey, Arc<ServerConfig>>>,
}

/// A domain and the key authorization digest its tls-alpn-01 certificate carries.
type AlpnKey = (String, Vec<u8>);

/// One challenge answer, as replicas hand it to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Http01 { token: String, key_authorization: String },
    TlsAlpn01 { domain: String, digest: Vec<u8> },
}

/// Answers other replicas published, as this one sees them.
pub trait SharedAnswers: Send + Sync {
    fn http01(&self, token: &str) -> Option<String>;
    /// The key authorization digest for `domain` (lower case).
    fn alpn_digest(&self, domain: &str) -> Option<Vec<u8>>;
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
        if let Some(a) = self.http01.read().get(token) {
            return Some(a.clone());
        }
        if !valid_token(token) {
            return None;
        }
        if let Some(a) = self.watched.read().as_ref().and_then(|w| w.http01(token)) {
            return Some(a);
        }
        let dirs = self.files.read().clone();
        dirs.iter().find_map(|d| file_answers(d).http01(token))
    }

    /// The TLS config that answers a tls-alpn-01 validation of `domain`, while it is published.
    pub fn alpn_config(&self, domain: &str) -> Option<Arc<ServerConfig>> {
        let domain = domain.to_ascii_lowercase();
        if let Some(c) = self.alpn.read().get(&domain) {
            return Some(c.clone());
        }
        if !valid_domain(&domain) {
            return None;
        }
        let digest = self.watched.read().as_ref().and_then(|w| w.alpn_digest(&domain)).or_else(|| {
            let dirs = self.files.read().clone();
            dirs.iter().find_map(|d| file_answers(d).alpn_digest(&domain))
        })?;
        let key = (domain, digest);
        if let Some(c) = self.made.read().get(&key) {
            return Some(c.clone());
        }
        let config = Arc::new(alpn_config(&key.0, &key.1).ok()?);
        let mut made = self.made.write();
        // Answers live minutes; a handful at a time. The bound keeps a flood of digests from
        // growing the cache.
        if made.len() >= 64 {
            made.clear();
        }
        made.insert(key, config.clone());
        Some(config)
    }

    /// Answers published by other replicas through the Kubernetes API.
    pub fn set_watched(&self, answers: Arc<dyn SharedAnswers>) {
        *self.watched.write() = Some(answers);
    }

    /// The directories where replicas sharing them leave answer files (see `FileAnswers`).
    pub fn set_answer_dirs(&self, dirs: Vec<PathBuf>) {
        *self.files.write() = dirs;
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

/// An http-01 token as RFC 8555 makes them (base64url), so that it can name a file.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A DNS name in lower case, so that it can name a file.
fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Answer files in a directory that replicas share: `http-01/<token>` holds the key
/// authorization, `tls-alpn-01/<domain>` the digest in hex. Each is written whole (rename) by
/// the replica that orders, read by any replica the CA asks, and removed when the order ends.
pub struct FileAnswers<'a>(&'a Path);

pub fn file_answers(dir: &Path) -> FileAnswers<'_> {
    FileAnswers(dir)
}

impl FileAnswers<'_> {
    fn path(&self, answer: &Answer) -> Option<PathBuf> {
        match answer {
            Answer::Http01 { token, .. } if valid_token(token) => Some(self.0.join("http-01").join(token)),
            Answer::TlsAlpn01 { domain, .. } if valid_domain(domain) => Some(self.0.join("tls-alpn-01").join(domain)),
            _ => None,
        }
    }

    /// Writes `answer` and reads it back as the other replicas will; the guard removes it.
    pub fn publish(&self, answer: &Answer) -> std::io::Result<PublishedFile> {
        let path = self.path(answer).ok_or_else(|| std::io::Error::other("not a valid token or domain"))?;
        let text = match answer {
            Answer::Http01 { key_authorization, .. } => key_authorization.clone(),
            Answer::TlsAlpn01 { digest, .. } => hex(digest),
        };
        super::private_files::write_private(&path, text.as_bytes())?;
        let back = match answer {
            Answer::Http01 { token, .. } => self.http01(token) == Some(text),
            Answer::TlsAlpn01 { domain, digest } => self.alpn_digest(domain).as_ref() == Some(digest),
        };
        if !back {
            let _ = std::fs::remove_file(&path);
            return Err(std::io::Error::other(format!("{} does not read back as written", path.display())));
        }
        Ok(PublishedFile(path))
    }

    /// Removes answer files older than `age`: those of a replica that died mid-order.
    pub fn sweep(&self, age: std::time::Duration) {
        for kind in ["http-01", "tls-alpn-01"] {
            let Ok(entries) = std::fs::read_dir(self.0.join(kind)) else { continue };
            for e in entries.flatten() {
                let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if old.is_some_and(|o| o > age) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl SharedAnswers for FileAnswers<'_> {
    fn http01(&self, token: &str) -> Option<String> {
        let path = self.0.join("http-01").join(token);
        valid_token(token).then(|| std::fs::read_to_string(path).ok()).flatten()
    }

    fn alpn_digest(&self, domain: &str) -> Option<Vec<u8>> {
        let text =
            valid_domain(domain).then(|| std::fs::read_to_string(self.0.join("tls-alpn-01").join(domain)).ok())??;
        unhex(text.trim())
    }
}

/// An answer file, removed when this is dropped.
pub struct PublishedFile(PathBuf);

impl Drop for PublishedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
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

    #[test]
    fn answers_other_replicas_left_in_a_shared_directory_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let c = Challenges::default();
        let path = "/.well-known/acme-challenge/tok_2-x";
        assert_eq!(c.http01_answer(path), None);
        let answer = Answer::Http01 { token: "tok_2-x".into(), key_authorization: "tok_2-x.thumb".into() };
        // Another replica (here: another directory user) publishes.
        let published = file_answers(dir.path()).publish(&answer).unwrap();
        assert_eq!(c.http01_answer(path), None, "not a directory this server reads");
        c.set_answer_dirs(vec![dir.path().join("elsewhere"), dir.path().to_path_buf()]);
        assert_eq!(c.http01_answer(path).as_deref(), Some("tok_2-x.thumb"));
        // A token that is not base64url never reaches the file system.
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/../secret"), None);
        drop(published);
        assert_eq!(c.http01_answer(path), None, "removed with its order");

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let alpn = Answer::TlsAlpn01 { domain: "shared.example".into(), digest: vec![9u8; 32] };
        let p = file_answers(dir.path()).publish(&alpn).unwrap();
        let first = c.alpn_config("Shared.Example").expect("served from the shared directory");
        assert!(Arc::ptr_eq(&first, &c.alpn_config("shared.example").unwrap()), "made once");
        drop(p);
        assert!(c.alpn_config("shared.example").is_none());
        assert!(c.alpn_config("../x").is_none());
    }

    #[test]
    fn stale_answer_files_are_swept_and_bad_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = file_answers(dir.path());
        let bad = Answer::Http01 { token: "a/b".into(), key_authorization: "k".into() };
        assert!(files.publish(&bad).is_err());
        let ok = Answer::Http01 { token: "t".into(), key_authorization: "k".into() };
        let p = files.publish(&ok).unwrap();
        files.sweep(std::time::Duration::from_secs(3600));
        assert_eq!(files.http01("t").as_deref(), Some("k"), "a fresh answer stays");
        files.sweep(std::time::Duration::ZERO);
        assert_eq!(files.http01("t"), None, "an old one goes");
        drop(p);
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    /// What replicas publish through the Kubernetes API is served like a local answer.
    #[test]
    fn watched_answers_are_served() {
        struct One;
        impl SharedAnswers for One {
            fn http01(&self, token: &str) -> Option<String> {
                (token == "w").then(|| "w.k".to_string())
            }
            fn alpn_digest(&self, domain: &str) -> Option<Vec<u8>> {
                (domain == "w.example").then(|| vec![1u8; 32])
            }
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let c = Challenges::default();
        c.set_watched(Arc::new(One));
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/w").as_deref(), Some("w.k"));
        assert!(c.alpn_config("W.example").is_some());
        assert!(c.alpn_config("other.example").is_none());
    }
}
