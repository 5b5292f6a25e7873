//! One `mounts[]` entry and its origin.

use std::path::PathBuf;

use serde::Serialize;

use super::Loc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Upstream {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// What a mount hands the request to (spec 2.1), with the scheme prefix parsed away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Origin {
    File(PathBuf),
    /// `http://` or `https://`: reverse proxy to `upstream`, prefixing `path`.
    Proxy {
        tls: bool,
        upstream: Upstream,
        path: String,
    },
    Cgi(PathBuf),
    /// `>http(s)://…` or the README's `^http(s)://…`: the full target URL.
    Redirect(String),
    Callback(String),
    /// `gzip://`: lwsws ends any request that meets it with "no mount".
    Gzip,
    /// Services' endpoints (the Kubernetes route front ends only).
    Service(super::ServiceRoute),
    /// A redirect built from the request (the Kubernetes route front ends only).
    RouteRedirect(super::RouteRedirect),
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::File(p) => format!("file://{}", p.display()),
            Origin::Proxy { tls, upstream, path } => {
                let scheme = if *tls { "https" } else { "http" };
                match upstream {
                    Upstream::Tcp { host, port } => format!("{scheme}://{host}:{port}{path}"),
                    Upstream::Unix(p) => format!("{scheme}://+{}:{path}", p.display()),
                }
            }
            Origin::Cgi(p) => format!("cgi://{}", p.display()),
            Origin::Redirect(u) => format!("redirect 301 -> {u}"),
            Origin::Callback(n) => format!("callback://{n}"),
            Origin::Gzip => "gzip://".to_string(),
            Origin::Service(s) => {
                let names: Vec<String> = s
                    .backends
                    .iter()
                    .map(|b| match &b.service {
                        Some(r) => format!("{r} (weight {})", b.weight),
                        None => format!("(invalid backend, weight {})", b.weight),
                    })
                    .collect();
                format!("service {}", names.join(", "))
            }
            Origin::RouteRedirect(r) => format!("redirect {}", r.status),
        }
    }
}

/// The cache keys of a mount (spec 2.4).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CacheRule {
    pub max_age: u32,
    pub reuse: bool,
    pub revalidate: bool,
    pub intermediaries: bool,
    pub no_cache: bool,
}

impl CacheRule {
    /// The `cache-control` value lws sends for files from this mount.
    pub fn header_value(&self) -> String {
        if self.no_cache {
            return "no-cache".to_string();
        }
        if self.max_age > 0 && self.reuse {
            let scope = if self.intermediaries { "public" } else { "private" };
            return if self.revalidate {
                format!("must-revalidate, {scope}, max-age={}", self.max_age)
            } else {
                format!("{scope}, max-age={}", self.max_age)
            };
        }
        "no-store".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    pub loc: Loc,
    pub mountpoint: String,
    pub origin: Origin,
    /// Where the `origin` value stands (warnings about it point there).
    pub origin_loc: Loc,
    pub default: Option<String>,
    pub cache: CacheRule,
    /// `.ext` (lowercase) → type; `*` is the fallback.
    pub extra_mimetypes: Vec<(String, String)>,
    pub interpret: Vec<(String, String)>,
    pub basic_auth: Option<PathBuf>,
    pub auth_mask: u32,
    /// `cgi-env` and `pmo` share one list, as in lwsws.
    pub cgi_env: Vec<(String, String)>,
    pub cgi_timeout: u32,
    pub cgi_chroot: Option<PathBuf>,
    pub cgi_chdir: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub keepalive_timeout: Option<u32>,
    pub exact_match: bool,
    pub append_path: bool,
    pub no_ws_upgrades: bool,
    pub interceptor_path: Option<String>,
    /// D11: rewrite links in proxied HTML (an extension key, `rewrite-links`; on by default).
    pub rewrite_links: bool,
    /// `file://`: serve files whose links resolve outside the mount's directory (an extension
    /// key, `follow-symlinks-outside`; off by default: such files are 404).
    pub follow_symlinks_outside: bool,
    /// `file://`: serve paths with a segment starting with `.` (an extension key,
    /// `serve-dotfiles`; off by default: 404, except `/.well-known/`).
    pub serve_dotfiles: bool,
    /// Conditions and header edits of a Gateway API rule (the Kubernetes front ends only).
    pub route: Option<Box<super::RouteRule>>,
}

impl Mount {
    /// A mount with lwsws's defaults for every key but these, as a front end starts from.
    pub fn with_defaults(loc: Loc, mountpoint: &str, origin: Origin) -> Mount {
        Mount {
            origin_loc: loc.clone(),
            loc,
            mountpoint: mountpoint.to_string(),
            origin,
            default: None,
            cache: CacheRule::default(),
            extra_mimetypes: Vec::new(),
            interpret: Vec::new(),
            basic_auth: None,
            auth_mask: 0,
            cgi_env: Vec::new(),
            cgi_timeout: 5,
            cgi_chroot: None,
            cgi_chdir: None,
            headers: Vec::new(),
            keepalive_timeout: None,
            exact_match: false,
            append_path: false,
            no_ws_upgrades: false,
            interceptor_path: None,
            rewrite_links: true,
            follow_symlinks_outside: false,
            serve_dotfiles: false,
            route: None,
        }
    }
}
