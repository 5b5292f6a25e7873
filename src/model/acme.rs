//! A vhost whose certificate this server obtains itself over ACME (spec 7, D14). Two ways to
//! ask for it, one model: the lws-acme-client pvos, or the short `"acme"` object on the vhost.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Challenge {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Challenge {
    pub fn parse(s: &str) -> Option<Challenge> {
        match s.trim() {
            "http-01" => Some(Challenge::Http01),
            "tls-alpn-01" => Some(Challenge::TlsAlpn01),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acme {
    /// The certificate's names: the common name first, then the subject alternative names.
    pub domains: Vec<String>,
    pub email: String,
    pub directory: String,
    pub challenge: Challenge,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The ACME account's credentials (lws's `auth-path`).
    pub account_path: PathBuf,
    /// Extra trust for reaching the CA, besides the system roots and `SSL_CERT_FILE`.
    pub ca_file: Option<PathBuf>,
}

/// Where certificates go when the config names no paths: `$LWSWS_STATE_DIR/acme/<vhost>/`
/// (default `/var/lib/lwsws`).
pub fn default_dir(vhost: &str) -> PathBuf {
    state_dir().join("acme").join(vhost)
}

/// Where the server keeps what it makes at run time: `$LWSWS_STATE_DIR`, default `/var/lib/lwsws`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("LWSWS_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/lib/lwsws".into())
}

/// Names from lws's `subject-alt-name` (commas or spaces between them).
pub fn split_names(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split([',', ' ']).map(str::trim).filter(|n| !n.is_empty()).map(str::to_string)
}
