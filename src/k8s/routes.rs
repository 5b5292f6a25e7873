//! What the route front ends (Gateway API, Ingress) share: their output, hostnames with the
//! mounts that serve them on a port, is assembled here into vhosts of the one model. Per port:
//! a catch-all vhost first (the hostless routes' mounts, or none: a 404 for any name no other
//! vhost takes), then one vhost per exact name, then the wildcards, longest suffix first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::{HostMatch, Loc, Mount, Vhost};

/// A certificate and key as files (written from a Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Mounts that serve one hostname (or every name) on one port.
#[derive(Debug, Clone)]
pub struct HostRoutes {
    /// The port as the Gateway or Ingress names it (before `--listener-port-map`).
    pub port: u16,
    /// `None`: every name; `*.suffix` is a wildcard.
    pub hostname: Option<String>,
    /// How a `*.` hostname's wildcard matches (Gateway API: one label or more; Ingress: one).
    pub wildcard: HostMatch,
    pub tls: Option<TlsFiles>,
    /// In precedence order for ties (the earlier mount wins).
    pub mounts: Vec<Mount>,
    /// These mounts also serve the more specific names on the port that they cover (Gateway
    /// API: a request's candidate rules are those of every route whose hostname matches it,
    /// ranked by hostname first). Ingress rules do not: the host decides, then the path.
    pub shared: bool,
}

/// `--listener-port-map`: the port a Gateway or Ingress port is bound on inside the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap(pub BTreeMap<u16, u16>);

impl PortMap {
    /// `80=8080,443=8443`.
    pub fn parse(s: &str) -> Result<PortMap, String> {
        let mut map = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (from, to) = pair.split_once('=').ok_or_else(|| format!("\"{pair}\": expected PORT=PORT"))?;
            let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("\"{p}\" is not a port"));
            map.insert(port(from)?, port(to)?);
        }
        Ok(PortMap(map))
    }

    pub fn bound(&self, port: u16) -> u16 {
        self.0.get(&port).copied().unwrap_or(port)
    }

    /// The ports that `bound` takes into `bound_ports`: the keys mapped there, and each port
    /// that no key moves away.
    pub fn named_for(&self, bound_ports: &std::collections::BTreeSet<u16>) -> std::collections::BTreeSet<u16> {
        let mut named: std::collections::BTreeSet<u16> =
            bound_ports.iter().copied().filter(|p| !self.0.contains_key(p)).collect();
        named.extend(self.0.iter().filter(|(_, to)| bound_ports.contains(to)).map(|(from, _)| *from));
        named
    }
}

/// The vhosts for `entries`, port by port in port order; entries for one name on one port
/// are merged, their mounts in the order given.
pub fn assemble(entries: Vec<HostRoutes>, ports: &PortMap, source: &str) -> Vec<Vhost> {
    let mut by_port: BTreeMap<u16, Vec<HostRoutes>> = BTreeMap::new();
    for e in entries {
        by_port.entry(e.port).or_default().push(e);
    }
    let mut vhosts = Vec::new();
    for (port, entries) in by_port {
        let loc = Loc { file: format!("{source} port {port}").into(), line: 0, col: 0 };
        let bound = ports.bound(port);
        let tls = entries.iter().find_map(|e| e.tls.clone());
        let mut catch_all = vhost(&loc, &format!("{source}/port-{port}/any-host"), bound, HostMatch::Never, &tls);
        let mut named: BTreeMap<(String, HostMatch), Vhost> = BTreeMap::new();
        // Only a hostless or wildcard entry can cover other names (an exact name covers none).
        let covering = |e: &&HostRoutes| {
            e.shared && !e.mounts.is_empty() && e.hostname.as_ref().is_none_or(|h| h.starts_with("*."))
        };
        let shared: Vec<(Option<String>, Vec<Mount>)> =
            entries.iter().filter(covering).map(|e| (e.hostname.clone(), e.mounts.clone())).collect();
        for e in entries {
            match &e.hostname {
                None => catch_all.mounts.extend(e.mounts),
                Some(h) => {
                    let (name, how) = match h.strip_prefix("*.") {
                        Some(suffix) => (suffix.to_ascii_lowercase(), e.wildcard),
                        None => (h.to_ascii_lowercase(), HostMatch::Exact),
                    };
                    let tls = e.tls.clone().or_else(|| tls.clone());
                    named
                        .entry((name.clone(), how))
                        .or_insert_with(|| vhost(&loc, &name, bound, how, &tls))
                        .mounts
                        .extend(e.mounts);
                }
            }
        }
        for v in named.values_mut() {
            for (host, mounts) in &shared {
                if covers_more(host.as_deref(), &v.name, v.host_match) {
                    v.mounts.extend(mounts.iter().cloned());
                }
            }
        }
        vhosts.push(catch_all);
        let mut named: Vec<Vhost> = named.into_values().collect();
        // Exact names first; then wildcards, the longest (most specific) suffix first.
        named.sort_by_key(|v| (v.host_match != HostMatch::Exact, std::cmp::Reverse(v.name.len())));
        vhosts.extend(named);
    }
    vhosts
}

/// Whether `broader` (`None`: every name; `*.suffix`) covers the vhost `name` (matched as
/// `how`) and is not that same name.
fn covers_more(broader: Option<&str>, name: &str, how: HostMatch) -> bool {
    let Some(b) = broader else { return true };
    let Some(suffix) = b.strip_prefix("*.") else { return false };
    let cut = name.len().saturating_sub(suffix.len() + 1);
    let deeper =
        cut > 0 && name.as_bytes()[cut] == b'.' && name.as_bytes()[cut + 1..].eq_ignore_ascii_case(suffix.as_bytes());
    match how {
        HostMatch::Exact => deeper,
        // `*.a.example.com` is narrower than `*.example.com`.
        HostMatch::Wildcard | HostMatch::OneLabel => deeper,
        _ => false,
    }
}

fn vhost(loc: &Loc, name: &str, port: u16, how: HostMatch, tls: &Option<TlsFiles>) -> Vhost {
    let mut v = Vhost::with_defaults(loc.clone(), name);
    v.host_match = how;
    v.port = port;
    if let Some(t) = tls {
        v.host_ssl_cert = Some(t.cert.clone());
        v.host_ssl_key = Some(t.key.clone());
    }
    // HTTP/1.1 and HTTP/2 over TLS; plain listeners speak HTTP/1.1.
    v.keepalive_timeout = 60;
    v
}

/// Whether `host` is a valid Gateway API or Ingress hostname: DNS labels, optionally after `*.`.
pub fn valid_hostname(host: &str) -> bool {
    let rest = host.strip_prefix("*.").unwrap_or(host);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && rest.parse::<std::net::IpAddr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, ServiceRoute};

    fn routes(port: u16, host: Option<&str>, mountpoint: &str) -> HostRoutes {
        let m = Mount::with_defaults(Loc::default(), mountpoint, Origin::Service(ServiceRoute::default()));
        HostRoutes {
            port,
            hostname: host.map(str::to_string),
            wildcard: HostMatch::Wildcard,
            tls: None,
            mounts: vec![m],
            shared: false,
        }
    }

    #[test]
    fn ports_get_a_catch_all_then_names_then_wildcards() {
        let entries = vec![
            routes(80, Some("*.example.com"), "/w"),
            routes(80, Some("*.a.example.com"), "/wa"),
            routes(80, Some("Foo.example.com"), "/f"),
            routes(80, None, "/any"),
            routes(80, Some("foo.example.com"), "/f2"),
            routes(443, Some("x.test"), "/"),
        ];
        let ports = PortMap::parse("80=8080").unwrap();
        let v = assemble(entries, &ports, "gateway ns/gw");
        let names: Vec<(&str, HostMatch, u16)> = v.iter().map(|v| (v.name.as_str(), v.host_match, v.port)).collect();
        assert_eq!(
            names,
            vec![
                ("gateway ns/gw/port-80/any-host", HostMatch::Never, 8080),
                ("foo.example.com", HostMatch::Exact, 8080),
                ("a.example.com", HostMatch::Wildcard, 8080),
                ("example.com", HostMatch::Wildcard, 8080),
                ("gateway ns/gw/port-443/any-host", HostMatch::Never, 443),
                ("x.test", HostMatch::Exact, 443),
            ]
        );
        let mounts: Vec<&str> = v[1].mounts.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(mounts, vec!["/f", "/f2"], "one name, merged in order");
        assert_eq!(v[0].mounts[0].mountpoint, "/any");
    }

    #[test]
    fn shared_routes_also_serve_the_names_they_cover() {
        let mut wild = routes(80, Some("*.example.com"), "/w");
        wild.shared = true;
        let mut any = routes(80, None, "/any");
        any.shared = true;
        let entries = vec![routes(80, Some("foo.example.com"), "/f"), wild, any, routes(80, Some("a.test"), "/a")];
        let v = assemble(entries, &PortMap::default(), "gw");
        let mounts = |name: &str| -> Vec<String> {
            v.iter().find(|v| v.name == name).unwrap().mounts.iter().map(|m| m.mountpoint.clone()).collect()
        };
        assert_eq!(mounts("foo.example.com"), vec!["/f", "/w", "/any"]);
        assert_eq!(mounts("example.com"), vec!["/w", "/any"]);
        assert_eq!(mounts("a.test"), vec!["/a", "/any"]);
    }

    #[test]
    fn port_maps_and_hostnames() {
        assert_eq!(PortMap::parse("80=8080, 443=8443").unwrap().bound(443), 8443);
        assert_eq!(PortMap::parse("").unwrap().bound(80), 80);
        assert!(PortMap::parse("80").is_err() && PortMap::parse("80=x").is_err());
        let map = PortMap::parse("80=8080,443=8443").unwrap();
        let named = map.named_for(&[8080, 443, 9000].into_iter().collect());
        assert_eq!(named.into_iter().collect::<Vec<_>>(), vec![80, 8080, 9000], "443 is bound on 8443, which is free");
        for good in ["a.test", "*.a.test", "x-1.b"] {
            assert!(valid_hostname(good), "{good}");
        }
        for bad in ["", "*", "*.", "a..b", "-a.test", "1.2.3.4", "a_b.test", "a.test:80", "*.*.a"] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }
}
