//! The whole config, the global section, and source locations for messages.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::Vhost;

/// Where a value came from: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A whole-file problem (cannot open, not UTF-8): there is no position to name.
            return write!(f, "{}", self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A config that cannot be served. Any one of these rejects the whole config (D2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{loc}: {}{msg}", key.as_deref().map(|k| format!("\"{k}\": ")).unwrap_or_default())]
pub struct ConfigError {
    pub loc: Loc,
    pub key: Option<String>,
    pub msg: String,
}

impl ConfigError {
    pub fn new(loc: Loc, key: Option<&str>, msg: impl Into<String>) -> Self {
        ConfigError { loc, key: key.map(str::to_string), msg: msg.into() }
    }
}

/// Something the config says that is ignored or suspicious but does not stop it serving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    pub global: Global,
    pub vhosts: Vec<Vhost>,
}

/// `reject-service-keywords`: a User-Agent substring and the status to answer with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectRule {
    pub keyword: String,
    pub status: u16,
    pub text: String,
}

/// The `global` section, merged over `conf` and every `conf.d` file (scalars: last wins).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Global {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub username: Option<String>,
    pub groupname: Option<String>,
    pub count_threads: u32,
    pub count_async_threads: u32,
    pub init_ssl: bool,
    pub server_string: Option<String>,
    pub plugin_dirs: Vec<String>,
    pub ws_pingpong_secs: Option<u32>,
    pub timeout_secs: u32,
    pub reject_service_keywords: Vec<RejectRule>,
    pub default_alpn: Option<String>,
    pub ip_limit_ah: u32,
    pub ip_limit_wsi: u32,
    pub rlimit_nofile: Option<u64>,
    pub cpd_bypass: bool,
    pub allow_early_data: bool,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`); `--admin-addr` wins.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Plain HTTP/1 requests to `http://` mounts skip hyper (`http::passthrough`).
    pub proxy_passthrough: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            uid: None,
            gid: None,
            username: None,
            groupname: None,
            count_threads: 1,
            count_async_threads: 1,
            init_ssl: false,
            server_string: None,
            plugin_dirs: Vec::new(),
            ws_pingpong_secs: None,
            // The C code's default; the README's "5" is out of date (spec 1.1).
            timeout_secs: 15,
            reject_service_keywords: Vec::new(),
            default_alpn: None,
            ip_limit_ah: 0,
            ip_limit_wsi: 0,
            rlimit_nofile: None,
            admin_addr: None,
            proxy_passthrough: true,
            cpd_bypass: false,
            allow_early_data: false,
        }
    }
}
