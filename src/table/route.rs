//! The route table types and the two lookups of the request path: vhost by name (D3) and
//! mount by longest prefix (spec 2.2).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::access_log::AccessLog;
use super::conditions::RouteFacts;
use super::credentials::Credentials;
use super::mime::MimeRules;
use crate::model::protocols::Onward;
use crate::model::{HostMatch, ListenKey, Mount, ProxyProtocol, RejectRule};
use crate::protocols::{IdlePolicy, Protocol};
use crate::upstream::ProxyRt;

#[derive(Debug)]
pub struct RouteTable {
    pub global: GlobalRt,
    pub listeners: Vec<ListenerRoutes>,
}

#[derive(Debug)]
pub struct GlobalRt {
    pub server: Option<HeaderValue>,
    pub reject: Vec<RejectRule>,
    pub timeout: Duration,
    pub threads: usize,
    /// `proxy-passthrough`: the HTTP/1 passthrough may serve proxy mounts.
    pub passthrough: bool,
    /// `proxy-body-buffer`: bytes of a request body read before it goes upstream.
    pub body_buffer: usize,
    /// `max-request-head`: the largest HTTP/1 request head; a larger one is answered 431.
    pub max_head: usize,
}

/// The vhosts that share one socket, in config order (the first is the default).
#[derive(Debug)]
pub struct ListenerRoutes {
    pub key: ListenKey,
    pub tls: bool,
    pub vhosts: Vec<Arc<VhostRt>>,
    /// What else the socket carries, from its first vhost (spec 5).
    pub mode: ListenerMode,
    /// The PROXY protocol header every connection must start with (validated to be the same
    /// on every vhost of the socket).
    pub proxy_protocol: ProxyProtocol,
}

/// The raw roles of a listener (spec 5), from its first vhost.
#[derive(Debug, Default, Clone)]
pub struct ListenerMode {
    /// `apply-listen-accept`: every connection goes to the raw protocol.
    pub raw: Option<Onward>,
    /// `fallback-listen-accept`: connections that are not HTTP (or not TLS) go raw.
    pub fallback: Option<Onward>,
    pub allow_non_tls: bool,
    pub redirect_http: bool,
    pub allow_http_on_https: bool,
}

#[derive(Debug)]
pub struct VhostRt {
    pub name: String,
    pub host_match: HostMatch,
    pub port: u16,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub client_cert_required: bool,
    /// Vhost `headers`, then `server:`, then STS: sent on every response (spec 2.4, 5).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub mounts: Vec<MountRt>,
    pub access_log: Option<Arc<AccessLog>>,
    pub keepalive: Duration,
    pub error_404: Option<String>,
    pub ws: VhostProtocols,
    /// `strict-host-check`: a websocket upgrade's Host must be `name[:port]`.
    pub strict_host_check: bool,
}

/// The vhost's enabled built-in protocols, in `ws-protocols` order, with what the websocket
/// handshake needs to choose among them.
#[derive(Debug, Default)]
pub struct VhostProtocols {
    pub protocols: Vec<Arc<dyn Protocol>>,
    /// Each protocol's `basic-auth` pvo, read when the table was compiled.
    pub auth: Vec<Option<Arc<Credentials>>>,
    /// Each protocol's message limit in bytes: its `max-message-size` pvo, else the vhost's
    /// `ws-max-message-size`, else the protocol's own default.
    pub max_message: Vec<usize>,
    /// The protocol with the `default` pvo: used when the client offers none.
    pub default: Option<usize>,
    pub disable_no_protocol: bool,
    pub idle: IdlePolicy,
}

impl VhostProtocols {
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Protocol>> {
        self.protocols.iter().find(|p| p.name() == name)
    }
}

#[derive(Debug)]
pub struct MountRt {
    pub model: Mount,
    pub cache_control: HeaderValue,
    pub mime: MimeRules,
    /// The vhost's response headers with this mount's overrides applied in place, then its extras.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The pooled client of an `http(s)://` mount.
    pub proxy: Option<Arc<ProxyRt>>,
    /// The mount's `basic-auth` file, read when the table was compiled.
    pub credentials: Option<Arc<Credentials>>,
    /// A `file://` mount's directory with every link resolved, when it existed at compile
    /// time: the files it serves must resolve inside it (unless `follow-symlinks-outside`).
    pub canonical_dir: Option<PathBuf>,
    /// This mount's request metrics.
    pub series: crate::metrics::RequestSeries,
    /// A Gateway API rule's conditions and header edits.
    pub route: Option<Box<super::conditions::RouteRt>>,
}

impl RouteTable {
    pub fn listener(&self, key: &ListenKey) -> Option<&ListenerRoutes> {
        self.listeners.iter().find(|l| &l.key == key)
    }
}

impl ListenerRoutes {
    /// D3: case-insensitive exact name, then a `.name` suffix, else `None` (the caller decides
    /// the fallback: the TLS handshake's vhost, or the first on the port). Vhosts of the
    /// Kubernetes front ends match as their `host_match` says; among wildcards, the longest
    /// suffix wins.
    pub fn find_vhost(&self, host: &str) -> Option<&Arc<VhostRt>> {
        let host = strip_port(host).trim_end_matches('.');
        if host.is_empty() {
            return None;
        }
        let exact = |v: &&Arc<VhostRt>| {
            matches!(v.host_match, HostMatch::Lwsws | HostMatch::Exact) && v.name.eq_ignore_ascii_case(host)
        };
        if let Some(v) = self.vhosts.iter().find(exact) {
            return Some(v);
        }
        let mut best: Option<&Arc<VhostRt>> = None;
        for v in &self.vhosts {
            let Some(label) = label_before(host, &v.name) else { continue };
            match v.host_match {
                // lwsws: the first vhost whose name ends the Host.
                HostMatch::Lwsws => return Some(v),
                HostMatch::Wildcard => {}
                HostMatch::OneLabel if !label.contains('.') => {}
                _ => continue,
            }
            if best.is_none_or(|b| b.name.len() < v.name.len()) {
                best = Some(v);
            }
        }
        best
    }

    pub fn first(&self) -> &Arc<VhostRt> {
        &self.vhosts[0]
    }

    /// Whether requests whose Host matches no vhost may go to the TLS handshake's vhost or the
    /// first one (lwsws, D3); a listener of the Kubernetes front ends answers them 404 from its
    /// catch-all instead.
    pub fn falls_back_by_name(&self) -> bool {
        self.vhosts[0].host_match != HostMatch::Never
    }
}

/// What comes before `.suffix` in `host` (compared without regard to case), when it ends so.
fn label_before<'h>(host: &'h str, suffix: &str) -> Option<&'h str> {
    let cut = host.len().checked_sub(suffix.len() + 1)?;
    (cut > 0 && host.as_bytes()[cut] == b'.' && host[cut + 1..].eq_ignore_ascii_case(suffix)).then(|| &host[..cut])
}

/// `host:port` or `[v6]:port` → host.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl MountRt {
    /// The part of a normalised request path after this mount's mountpoint.
    pub fn remainder<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.model.mountpoint.trim_end_matches('/').len()..).unwrap_or("")
    }

    /// `/dir` naming a mountpoint `/dir` exactly, where the file and proxy origins answer with a
    /// 301 to `/dir/` (spec 2.3). `raw_path` is the request's path before normalising.
    pub fn wants_trailing_slash(&self, path: &str, raw_path: &str) -> bool {
        let mp = self.model.mountpoint.as_str();
        mp.len() > 1
            && !mp.ends_with('/')
            && path == mp
            && !raw_path.ends_with('/')
            && matches!(self.model.origin, crate::model::Origin::File(_) | crate::model::Origin::Proxy { .. })
    }
}

impl VhostRt {
    /// The keep-alive after a request to `mount`: its own, else the vhost's.
    pub fn keepalive_for(&self, mount: &MountRt) -> Duration {
        mount.model.keepalive_timeout.map(|s| Duration::from_secs(s.into())).unwrap_or(self.keepalive)
    }

    /// Where `mount` (one of this vhost's, as `select_mount` returned it) stands in `mounts`,
    /// for work that outlives the borrow and must find it again.
    pub fn mount_index(&self, mount: &MountRt) -> usize {
        self.mounts.iter().position(|m| std::ptr::eq(m, mount)).expect("the mount is the vhost's")
    }

    /// Longest matching mountpoint wins; ties go to the earlier mount, except that an
    /// exact-match mount beats a prefix mount of the same length. Mounts marked
    /// `no-ws-upgrades` are skipped for upgrade requests. Mounts of Gateway API rules must also
    /// meet their conditions (read from `facts`) and rank by the Gateway API's precedence.
    pub fn select_mount(&self, path: &str, upgrade: bool, facts: &dyn RouteFacts) -> Option<&MountRt> {
        let mut best: Option<&MountRt> = None;
        for m in &self.mounts {
            let mp = m.model.mountpoint.as_str();
            if upgrade && m.model.no_ws_upgrades {
                continue;
            }
            match &m.route {
                Some(r) if r.has_path_regex() => {}
                _ if !mount_matches(mp, path, m.model.exact_match) => continue,
                _ => {}
            }
            if let Some(r) = &m.route
                && !r.admits(path, facts)
            {
                continue;
            }
            best = match best {
                None => Some(m),
                Some(b) => match (&b.route, &m.route) {
                    (Some(br), Some(mr)) => Some(if mr.rank(&m.model) > br.rank(&b.model) { m } else { b }),
                    _ => {
                        let (bl, ml) = (b.model.mountpoint.len(), mp.len());
                        let longer = ml > bl || (ml == bl && m.model.exact_match && !b.model.exact_match);
                        Some(if longer { m } else { b })
                    }
                },
            };
        }
        best
    }
}

fn mount_matches(mp: &str, path: &str, exact: bool) -> bool {
    if exact {
        return path == mp;
    }
    if mp == "/" {
        return true;
    }
    let mp = mp.strip_suffix('/').unwrap_or(mp);
    path.starts_with(mp) && matches!(path.as_bytes().get(mp.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rule() {
        assert!(mount_matches("/", "/x", false));
        assert!(mount_matches("/a", "/a", false));
        assert!(mount_matches("/a", "/a/b", false));
        assert!(!mount_matches("/a", "/ab", false));
        assert!(mount_matches("/a/", "/a/b", false));
        assert!(!mount_matches("/a", "/a/", true));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:443"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
