//! A compiled `http://` or `https://` mount (spec 2.5, D13): the upstream group it sends to and
//! what each request needs already parsed (the Host it sends, the path it joins, the timeout,
//! the D11 link map). The request paths use it; neither owns it.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::connect::{Connector, SetupError};
use super::group::{Endpoint, Group};
use crate::model::{Mount, Upstream, Vhost};

pub struct ProxyRt {
    group: Group,
    tls: bool,
    /// `Host:` for the upstream: the origin's `host[:port]` (D13).
    host: HeaderValue,
    /// `scheme://authority` of the origin, for logs and the link map.
    base: String,
    path: String,
    timeout: Duration,
    /// D11 link rewriting of `text/html`, unless the mount turned it off.
    links: Option<LinkMap>,
}

impl std::fmt::Debug for ProxyRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRt").field("base", &self.base).field("path", &self.path).finish()
    }
}

impl ProxyRt {
    pub fn new(
        tls: bool,
        upstream: &Upstream,
        path: &str,
        mount: &Mount,
        vhost: &Vhost,
        timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Self, SetupError> {
        let (host, base) = match upstream {
            Upstream::Tcp { host, port } => {
                let default = if tls { 443 } else { 80 };
                let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                let authority = if *port == default { shown } else { format!("{shown}:{port}") };
                let scheme = if tls { "https" } else { "http" };
                (authority.clone(), format!("{scheme}://{authority}"))
            }
            Upstream::Unix(_) => ("localhost".to_string(), "http://localhost".to_string()),
        };
        let connector = Connector::new(upstream, tls.then_some(vhost), timeout)?;
        // The passthrough speaks plain HTTP/1 to its upstreams: not to TLS ones.
        let endpoint = Arc::new(Endpoint::new(base.clone(), connector, !tls, max_in_flight));
        let group = Group::new(vec![endpoint]).expect("one endpoint");
        let links = mount.rewrite_links.then(|| LinkMap {
            origin_url: format!("{base}{path}"),
            origin_path: path.to_string(),
            mountpoint: mount.mountpoint.clone(),
        });
        Ok(ProxyRt {
            group,
            tls,
            host: HeaderValue::from_str(&host).map_err(|_| SetupError::Host)?,
            base,
            path: path.to_string(),
            timeout,
            links,
        })
    }

    /// The upstream's endpoints.
    pub fn group(&self) -> &Group {
        &self.group
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the HTTP/1 passthrough can carry requests to this mount.
    pub fn passthrough(&self) -> bool {
        self.group.all_plain()
    }

    /// What D11 link rewriting maps, unless the mount turned it off.
    pub fn links(&self) -> Option<&LinkMap> {
        self.links.as_ref()
    }

    /// The `Host:` sent upstream.
    pub fn upstream_host(&self) -> &HeaderValue {
        &self.host
    }

    /// The origin's path, which the request's remainder is joined to.
    pub fn upstream_base_path(&self) -> &str {
        &self.path
    }

    /// `scheme://authority` of the upstream, for logs.
    pub fn upstream_name(&self) -> &str {
        &self.base
    }

    /// How long the upstream has to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// D11: what to rewrite in a proxied page: URLs starting with `origin_url`
/// (scheme://authority/path) or `origin_path`, to the same place under `mountpoint`.
#[derive(Debug, Clone)]
pub struct LinkMap {
    pub origin_url: String,
    pub origin_path: String,
    pub mountpoint: String,
}

impl LinkMap {
    pub fn map(&self, url: &str) -> Option<String> {
        let mp = self.mountpoint.trim_end_matches('/');
        let base = self.origin_path.trim_end_matches('/');
        let origin = self.origin_url.trim_end_matches('/');
        if let Some(rest) = url.strip_prefix(origin).filter(|r| r.is_empty() || r.starts_with(['/', '?', '#'])) {
            return Some(format!("{mp}{}", if rest.is_empty() { "/" } else { rest }));
        }
        if !url.starts_with('/') || url.starts_with("//") || mp.is_empty() {
            return None;
        }
        if !base.is_empty()
            && let Some(rest) = url.strip_prefix(base).filter(|r| r.is_empty() || r.starts_with(['/', '?', '#']))
        {
            return Some(format!("{mp}{}", if rest.is_empty() { "/" } else { rest }));
        }
        if url == mp || url.starts_with(&format!("{mp}/")) {
            return None;
        }
        Some(format!("{mp}{url}"))
    }
}
