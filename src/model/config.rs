//! The whole config and its global section.

use serde::Serialize;

use super::Vhost;

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
    /// `count-threads`; `None`: not set, so as many as the CPUs the process may use
    /// (`process::worker_threads`).
    pub count_threads: Option<u32>,
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
    /// How much of a request body is read before a proxied request takes an upstream
    /// connection (the rest streams).
    pub proxy_body_buffer: u32,
    /// At most this many requests in flight to one upstream endpoint (0: no limit).
    pub proxy_max_conns: u32,
    /// The largest HTTP/1 request head (request line and headers) read; a larger one is 431.
    pub max_request_head: u32,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            uid: None,
            gid: None,
            username: None,
            groupname: None,
            count_threads: None,
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
            proxy_body_buffer: 1024 * 1024,
            proxy_max_conns: 256,
            max_request_head: 16 * 1024,
            cpd_bypass: false,
            allow_early_data: false,
        }
    }
}
