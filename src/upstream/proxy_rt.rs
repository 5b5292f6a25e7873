//! A compiled proxy mount: an `http://` or `https://` origin (spec 2.5, D13), or a route to
//! Services' endpoints (the Kubernetes front ends). It holds where requests go (a fixed group,
//! or Services by weight) and what each request needs already parsed (the Host it sends, the
//! path it joins, the timeout, the D11 link map). The request paths use it; neither owns it.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::connect::{Connector, SetupError};
use super::group::{Endpoint, Group, random_below};
use super::services::{ServiceEndpoints, Services};
use crate::model::{Mount, PathRewrite, ServiceRoute, Upstream, Vhost};

pub struct ProxyRt {
    targets: Targets,
    tls: bool,
    /// `Host:` for the upstream: the origin's `host[:port]` (D13), a route's rewritten
    /// hostname, or `None` where the client's Host goes on.
    host: Option<HeaderValue>,
    /// `scheme://authority` of the origin, for logs and the link map.
    base: String,
    path: String,
    /// The upstream path is `path` whatever the request's (a full-path rewrite).
    full_path: bool,
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
            targets: Targets::Group(group),
            tls,
            host: Some(HeaderValue::from_str(&host).map_err(|_| SetupError::Host)?),
            base,
            path: path.to_string(),
            full_path: false,
            timeout,
            links,
        })
    }

    /// A route to Services: each request goes to one of `route`'s backends by weight, then to
    /// the least loaded of two of its endpoints.
    pub fn to_services(
        route: &ServiceRoute,
        mount: &Mount,
        services: &Services,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        let backends: Vec<(u32, Option<Arc<ServiceEndpoints>>)> =
            route.backends.iter().map(|b| (b.weight, b.service.as_ref().map(|s| services.entry(s)))).collect();
        let total = backends.iter().map(|(w, _)| u64::from(*w)).sum();
        let host = match &route.host_rewrite {
            Some(h) => Some(HeaderValue::from_str(h).map_err(|_| SetupError::Host)?),
            None => None,
        };
        let (path, full_path) = match &route.path {
            PathRewrite::Keep => (mount.mountpoint.trim_end_matches('/').to_string(), false),
            PathRewrite::Prefix(p) => (p.clone(), false),
            PathRewrite::Full(p) => (p.clone(), true),
        };
        let names: Vec<String> =
            route.backends.iter().filter_map(|b| b.service.as_ref().map(|s| s.to_string())).collect();
        Ok(ProxyRt {
            targets: Targets::Services { backends, total },
            tls: false,
            host,
            base: format!("service {}", names.join(",")),
            path,
            full_path,
            timeout,
            links: None,
        })
    }

    /// The endpoint for the next request.
    pub fn pick(&self) -> Result<Picked, NoEndpoint> {
        match &self.targets {
            Targets::Group(g) => Ok(Picked { endpoint: g.pick().clone(), from: None }),
            Targets::Services { backends, total } => {
                if *total == 0 {
                    // No backend, or every weight 0: nothing may be sent anywhere.
                    return Err(NoEndpoint::Invalid);
                }
                let (_, chosen) = if backends.len() == 1 {
                    // One backend (the usual route): no draw.
                    &backends[0]
                } else {
                    let mut at = random_below(*total as usize) as u64;
                    backends
                        .iter()
                        .find(|(w, _)| {
                            let here = at < u64::from(*w);
                            at = at.saturating_sub(u64::from(*w));
                            here
                        })
                        .expect("the draw is below the total weight")
                };
                let service = chosen.as_ref().ok_or(NoEndpoint::Invalid)?;
                let endpoint = service.pick().ok_or(NoEndpoint::Empty)?;
                Ok(Picked { endpoint, from: Some(service.clone()) })
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether a request could go to another endpoint than the one picked (Services: their
    /// endpoints change while a table serves).
    pub fn has_other_endpoints(&self) -> bool {
        match &self.targets {
            Targets::Group(g) => g.len() > 1,
            Targets::Services { .. } => true,
        }
    }

    /// Whether the HTTP/1 passthrough can carry requests to this mount.
    pub fn passthrough(&self) -> bool {
        match &self.targets {
            Targets::Group(g) => g.all_plain(),
            Targets::Services { .. } => true,
        }
    }

    /// The path the request's remainder is joined to upstream.
    pub fn upstream_base_path(&self) -> &str {
        &self.path
    }

    /// The upstream path is the base path alone, whatever the request's (a full-path rewrite).
    pub fn ignores_remainder(&self) -> bool {
        self.full_path
    }

    /// What D11 link rewriting maps, unless the mount turned it off.
    pub fn links(&self) -> Option<&LinkMap> {
        self.links.as_ref()
    }

    /// The `Host:` sent upstream; `None`: the client's.
    pub fn upstream_host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
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

enum Targets {
    /// The files' origin: a fixed group.
    Group(Group),
    /// Services by weight (`None`: a backend that cannot be used); `total`: the weights' sum.
    Services { backends: Vec<(u32, Option<Arc<ServiceEndpoints>>)>, total: u64 },
}

/// Why a request has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoEndpoint {
    /// Its share of the weights belongs to a backend that cannot be used: a 500.
    #[error("the route's backend cannot be used")]
    Invalid,
    /// The Service has no ready endpoint: a 503.
    #[error("the service has no ready endpoint")]
    Empty,
}

/// The endpoint a request goes to, and the Service it came from (to try another).
pub struct Picked {
    pub endpoint: Arc<Endpoint>,
    from: Option<Arc<ServiceEndpoints>>,
}

impl Picked {
    /// Another endpoint of the same Service, for a request that could not be sent to this one.
    pub fn another(&self) -> Option<Picked> {
        let from = self.from.as_ref()?;
        Some(Picked { endpoint: from.pick_other(&self.endpoint)?, from: Some(from.clone()) })
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
