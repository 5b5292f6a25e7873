//! The forwarding rules of a proxied request (spec 2.5, D13), shared by both request paths:
//! which headers are hop-by-hop, the `X-Forwarded-*` and RFC 7239 `Forwarded` headers this hop
//! adds, and the path the upstream is asked for. The hyper path applies them to a `HeaderMap`,
//! the passthrough while it writes the upstream's head; the rules themselves live only here.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::path::encode_path_owned;

/// Headers that belong to one connection and never cross the proxy.
pub const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// The same, as header names the hyper path can remove without parsing a name per request.
const HOP_BY_HOP_NAMES: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the request path knows about the client, for the forwarding headers.
pub struct ClientInfo<'a> {
    pub addr: Option<IpAddr>,
    pub tls: bool,
    pub host: Option<&'a str>,
}

/// The path and query a proxied request asks of `rt`'s upstream, for the normalised path's
/// `remainder` after the mountpoint.
pub fn upstream_target(rt: &crate::upstream::ProxyRt, remainder: &str, query: Option<&str>) -> String {
    let remainder = if rt.ignores_remainder() { "" } else { remainder };
    upstream_path(rt.upstream_base_path(), remainder, query)
}

/// origin path + remainder, `//` collapsed, a trailing `/` only where the request had one.
/// Built in one string sized up front, and percent-encoded only when something needs it: every
/// proxied request asks for one.
pub fn upstream_path(base: &str, remainder: &str, query: Option<&str>) -> String {
    let trimmed_base = base.trim_end_matches('/');
    let rest = remainder.trim_start_matches('/');
    let mut out = String::with_capacity(trimmed_base.len() + rest.len() + 2 + query.map_or(0, |q| q.len() + 1));
    for c in trimmed_base.chars().chain(std::iter::once('/')).chain(rest.chars()) {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if remainder.is_empty() && !base.ends_with('/') && out.len() > 1 {
        out.pop();
    }
    let mut out = encode_path_owned(out);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Removes the hop-by-hop headers and those the message's own `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP_NAMES {
        h.remove(n);
    }
}

/// The client's headers minus hop-by-hop ones, the origin's Host (D13; `None`: none, as for an
/// HTTP/1.0 client that sent none to a route that keeps the client's), and the forwarding
/// headers (`X-Forwarded-*` and RFC 7239 `Forwarded`), appended to any the client sent.
pub fn forward_headers(client_headers: &HeaderMap, host: Option<&HeaderValue>, client: &ClientInfo) -> HeaderMap {
    let mut h = client_headers.clone();
    strip_hop_by_hop(&mut h);
    match host {
        Some(host) => h.insert(header::HOST, host.clone()),
        None => h.remove(header::HOST),
    };
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let f = Forwarding::new(client, text(&X_FORWARDED_FOR), text(&header::FORWARDED));
    let value = |s: &str| HeaderValue::from_str(s).expect("forwarding values are header text");
    if let Some(xff) = &f.xff {
        h.insert(X_FORWARDED_FOR, value(xff));
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
    if let Some(host) = f.host {
        h.insert(X_FORWARDED_HOST, value(host));
    }
    h.insert(header::FORWARDED, value(&f.forwarded));
    h
}

/// Whether `v` can be a header value as it stands: visible ASCII, spaces and tabs.
pub fn is_header_text(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The forwarding headers of one request (D13). Each replaces the client's header of the same
/// name; `X-Forwarded-For` and `Forwarded` carry the client's earlier hops on. `xff` and `host`
/// are `None` where the client's own header is left as it was.
pub struct Forwarding<'a> {
    pub xff: Option<String>,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub forwarded: String,
}

impl<'a> Forwarding<'a> {
    /// `prev_xff` and `prev_forwarded`: the client's first such header, when it is header text.
    /// Every proxied request builds this, so the client's address is formatted once and each
    /// string is sized before it is written (measured: a fifth of the passthrough's own
    /// instructions went here when each header formatted the address anew).
    pub fn new(client: &ClientInfo<'a>, prev_xff: Option<&str>, prev_forwarded: Option<&str>) -> Self {
        use std::fmt::Write as _;
        let proto = if client.tls { "https" } else { "http" };
        let ip = client.addr.map(|ip| {
            let mut text = String::with_capacity(48);
            let _ = write!(text, "{ip}");
            text
        });
        let host = client.host.filter(|h| is_header_text(h.as_bytes()));
        let quoted_host = client.host.filter(|c| c.bytes().all(|b| b.is_ascii_graphic() && b != b'"'));
        let ip_len = ip.as_ref().map_or(0, String::len);
        let mut forwarded = String::with_capacity(
            prev_forwarded.map_or(0, |p| p.len() + 2) + ip_len + 32 + quoted_host.map_or(0, |h| h.len() + 8),
        );
        if let Some(prev) = prev_forwarded {
            forwarded.push_str(prev);
            forwarded.push_str(", ");
        }
        if let (Some(ip), Some(addr)) = (&ip, client.addr) {
            if addr.is_ipv6() {
                forwarded.push_str("for=\"[");
                forwarded.push_str(ip);
                forwarded.push_str("]\";");
            } else {
                forwarded.push_str("for=");
                forwarded.push_str(ip);
                forwarded.push(';');
            }
        }
        forwarded.push_str("proto=");
        forwarded.push_str(proto);
        if let Some(c) = quoted_host {
            forwarded.push_str(";host=\"");
            forwarded.push_str(c);
            forwarded.push('"');
        }
        let xff = ip.map(|ip| match prev_xff {
            Some(prev) => {
                let mut list = String::with_capacity(prev.len() + 2 + ip.len());
                list.push_str(prev);
                list.push_str(", ");
                list.push_str(&ip);
                list
            }
            None => ip,
        });
        Forwarding { xff, proto, host, forwarded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_as_lws_does() {
        assert_eq!(upstream_path("/", "", None), "/");
        assert_eq!(upstream_path("/app", "", None), "/app");
        assert_eq!(upstream_path("/app", "/x/y", Some("a=1")), "/app/x/y?a=1");
        assert_eq!(upstream_path("/app/", "/x/", None), "/app/x/");
        assert_eq!(upstream_path("/", "/a b", None), "/a%20b");
    }

    #[test]
    fn forwarding_headers() {
        let mut client = HeaderMap::new();
        client.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        client.insert("x-secret", HeaderValue::from_static("1"));
        client.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        client.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let info = ClientInfo { addr: Some("127.0.0.1".parse().unwrap()), tls: true, host: Some("site.test") };
        let h = forward_headers(&client, Some(&HeaderValue::from_static("backend:8080")), &info);
        assert_eq!(h[header::HOST], "backend:8080");
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "site.test");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=https;host=\"site.test\"");
        assert_eq!(h[header::COOKIE], "a=b");
    }

    #[test]
    fn both_request_paths_drop_the_same_hop_by_hop_headers() {
        let all = HOP_BY_HOP_NAMES;
        let names: Vec<&str> = all.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, HOP_BY_HOP, "the passthrough's list and the hyper path's list agree");
    }

    #[test]
    fn forwarding_for_ipv6_after_earlier_hops_and_without_an_address() {
        let info = ClientInfo { addr: Some("::1".parse().unwrap()), tls: false, host: Some("a\"b") };
        let f = Forwarding::new(&info, Some("10.0.0.1"), Some("for=10.0.0.1"));
        assert_eq!(f.xff.as_deref(), Some("10.0.0.1, ::1"));
        assert_eq!(f.forwarded, "for=10.0.0.1, for=\"[::1]\";proto=http", "a host with a quote is left out");
        assert_eq!(f.host, Some("a\"b"));
        let unix = ClientInfo { addr: None, tls: true, host: Some("site.test") };
        let f = Forwarding::new(&unix, None, None);
        assert_eq!(f.xff, None);
        assert_eq!(f.forwarded, "proto=https;host=\"site.test\"");
    }
}
