//! The request side: the client's head as read, routed by the one routing decision, whether the
//! passthrough can carry what was decided, and the bytes that go upstream. Anything it does not
//! carry exactly as the hyper path would is declined, and hyper gets the request as it arrived.

use std::sync::Arc;

use crate::http::conn::ConnCtx;
use crate::http::forward::{self, ClientInfo, Forwarding, is_header_text};
use crate::http::routing::{self, Action, Decision, RequestHead};
use crate::table::{Entry, VhostRt};
use crate::upstream::{Endpoint, ProxyRt, RawPool};

/// More headers than this and hyper (which allows 100) takes the request.
const MAX_HEADERS: usize = 64;

/// A request the passthrough serves.
pub struct Plan {
    /// The client's head and body: this many bytes of what was read belong to this request.
    pub consumed: usize,
    /// The request as it goes upstream: head, then the whole body.
    pub upstream: Vec<u8>,
    pub vhost: Arc<VhostRt>,
    pub mount: usize,
    pub proxy: Arc<ProxyRt>,
    /// The endpoint of the upstream group this request goes to, and its plain sockets.
    pub endpoint: Arc<Endpoint>,
    pub pool: Arc<RawPool>,
    /// Where `endpoint` came from: another of its Service's may take the request if it
    /// refuses the connection.
    pub picked: crate::upstream::Picked,
    pub head_request: bool,
    /// The client asked for the connection to close after this response.
    pub close: bool,
    /// Safe to send again when a reused upstream connection turns out to be closed.
    pub idempotent: bool,
    /// The access-log line, when the vhost keeps one; status and sizes are filled in later.
    pub log: Option<Entry>,
}

pub enum Planned {
    Plan(Box<Plan>),
    /// The head is not complete yet.
    Partial,
    /// Not one for the passthrough: hyper serves it.
    Decline,
    /// A head no server may serve, whatever its route: 400, and the connection closes.
    Refuse(&'static str),
}

pub fn plan(buf: &[u8], ctx: &ConnCtx) -> Planned {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Planned::Partial,
        Err(_) => return Planned::Decline,
    };
    let has = |name: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    if has("content-length") && has("transfer-encoding") {
        // Two framings (RFC 9112 6.1): how requests are smuggled past one reader and not
        // another. Refused here, where the head is still as sent (hyper drops the length and
        // follows the chunks).
        return Planned::Refuse("both Content-Length and Transfer-Encoding");
    }
    match carry(&req, head_len, buf, ctx) {
        Some(plan) => Planned::Plan(Box::new(plan)),
        None => Planned::Decline,
    }
}

/// What the head says about framing and the connection.
#[derive(Default)]
pub(crate) struct HeadFacts<'h> {
    host: Option<&'h str>,
    /// How many Host headers the head has (HTTP/1.1 needs exactly one).
    hosts: usize,
    content_length: Option<usize>,
    close: bool,
    /// Header names the client's `Connection` lists: hop-by-hop for this request.
    named: Vec<&'h str>,
    user_agent: Option<&'h [u8]>,
    referer: Option<&'h [u8]>,
    xff: Option<&'h str>,
    forwarded: Option<&'h str>,
}

/// `None` for anything the hyper path should answer: HTTP/1.0, upgrades, `Expect`, chunked or
/// incomplete bodies, odd targets, and every routing decision but a plain proxy action.
fn carry(req: &httparse::Request, head_len: usize, buf: &[u8], ctx: &ConnCtx) -> Option<Plan> {
    // (`redirect-http`, tracing and the off switch were checked per connection: `applies`.)
    if req.version != Some(1) {
        return None;
    }
    let method = req.method?;
    let target = req.path?;
    if !target.starts_with('/') || target.contains('#') || http::Uri::try_from(target).is_err() {
        // Targets hyper would refuse (400) or read differently are left to it.
        return None;
    }
    let facts = head_facts(req.headers)?;
    let body_len = facts.content_length.unwrap_or(0);
    if buf.len() - head_len < body_len {
        // A body still arriving is streamed by hyper.
        return None;
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Upgrades were declined with the head's facts: this head has no `Upgrade`.
    let head = RequestHead {
        method,
        path: raw_path,
        query,
        path_and_query: target,
        host: facts.host.filter(|h| !h.is_empty()),
        bad_host: match (facts.hosts, facts.host) {
            (0, _) => Some("an HTTP/1.1 request without a Host header"),
            (1, Some(h)) if routing::valid_authority(h) => None,
            (1, _) => Some("the Host header is not an authority"),
            _ => Some("more than one Host header"),
        },
        user_agent: facts.user_agent,
        headers: routing::HeadHeaders::Raw(req.headers),
        ..Default::default()
    };
    let Decision::Routed(routed) = routing::decide(ctx, &head) else { return None };
    // What the passthrough carries: a proxy action with nothing left to check or to change in
    // the answer (credentials, `reject-service-keywords`' close, the error document's 404).
    if !matches!(routed.action, Action::Proxy) || routed.auth.is_some() || routed.close || routed.error_document {
        return None;
    }
    let vhost = routed.vhost.clone();
    let mount = routed.mount()?;
    if mount.route.as_ref().is_some_and(|r| !r.request_headers.is_empty() || !r.response_headers.is_empty()) {
        // Header edits are the hyper path's to make.
        return None;
    }
    let proxy = mount.proxy.clone().filter(|p| p.passthrough())?;
    // No endpoint to pick (a 500 or 503) is answered by the hyper path, which says why.
    let picked = proxy.pick().ok()?;
    let endpoint = picked.endpoint.clone();
    let pool = endpoint.raw.clone()?;
    ctx.activity.set_keepalive(vhost.keepalive_for(mount));
    let upstream_target = forward::upstream_target(&proxy, routed.remainder(), query);
    let client = ClientInfo { addr: ctx.client_ip(), tls: ctx.tls, host: facts.host };
    let forwarding = Forwarding::new(&client, facts.xff, facts.forwarded);
    let mut upstream = Vec::with_capacity(head_len + 256 + body_len);
    head_line(&mut upstream, method, &upstream_target);
    match (proxy.upstream_host(), facts.host) {
        (Some(h), _) => header(&mut upstream, "host", h.as_bytes()),
        (None, Some(h)) => header(&mut upstream, "host", h.as_bytes()),
        (None, None) => {}
    }
    for h in req.headers.iter() {
        if !replaced(h.name, &facts, &forwarding) {
            header(&mut upstream, h.name, h.value);
        }
    }
    if let Some(xff) = &forwarding.xff {
        header(&mut upstream, "x-forwarded-for", xff.as_bytes());
    }
    header(&mut upstream, "x-forwarded-proto", forwarding.proto.as_bytes());
    if let Some(h) = forwarding.host {
        header(&mut upstream, "x-forwarded-host", h.as_bytes());
    }
    header(&mut upstream, "forwarded", forwarding.forwarded.as_bytes());
    if let Some(len) = facts.content_length {
        header(&mut upstream, "content-length", len.to_string().as_bytes());
    }
    upstream.extend_from_slice(b"\r\n");
    upstream.extend_from_slice(&buf[head_len..head_len + body_len]);
    let lossy = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    let log = vhost.access_log.as_ref().map(|_| Entry {
        peer: client.addr,
        method: method.to_string(),
        path: raw_path.to_string(),
        version: "HTTP/1.1",
        status: 0,
        header_bytes: 0,
        referer: lossy(facts.referer),
        user_agent: lossy(facts.user_agent),
    });
    Some(Plan {
        consumed: head_len + body_len,
        upstream,
        mount: routed.mount?,
        vhost,
        proxy,
        endpoint,
        pool,
        picked,
        head_request: method == "HEAD",
        close: facts.close,
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        log,
    })
}

/// Reads what the passthrough needs from the headers; `None` for heads it leaves to hyper.
/// As in the hyper path, only the first of a repeated header counts, and one that is not
/// header text counts as absent.
pub(crate) fn head_facts<'h>(headers: &[httparse::Header<'h>]) -> Option<HeadFacts<'h>> {
    let mut f = HeadFacts::default();
    let (mut host, mut xff, mut forwarded) = (None, None, None);
    for h in headers {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") {
            if f.content_length.is_some() {
                return None;
            }
            f.content_length = Some(content_length(h.value)?);
        } else if is("transfer-encoding") || is("upgrade") || is("expect") {
            return None;
        } else if is("connection") {
            for token in std::str::from_utf8(h.value).ok()?.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("upgrade") {
                    return None;
                }
                if token.eq_ignore_ascii_case("close") {
                    f.close = true;
                }
                f.named.push(token);
            }
        } else if is("host") {
            f.hosts += 1;
            first_text(&mut host, h.value);
        } else if is("user-agent") {
            f.user_agent.get_or_insert(h.value);
        } else if is("referer") {
            f.referer.get_or_insert(h.value);
        } else if is("x-forwarded-for") {
            first_text(&mut xff, h.value);
        } else if is("forwarded") {
            first_text(&mut forwarded, h.value);
        }
    }
    let named = |n: &str| f.named.iter().any(|t| t.eq_ignore_ascii_case(n));
    // Headers the client's `Connection` names are gone before the chain is extended.
    f.host = host.flatten();
    f.xff = xff.flatten().filter(|_| !named("x-forwarded-for"));
    f.forwarded = forwarded.flatten().filter(|_| !named("forwarded"));
    Some(f)
}

/// Records the first occurrence of a header: its text, or `Some(None)` when it is not text.
fn first_text<'h>(slot: &mut Option<Option<&'h str>>, value: &'h [u8]) {
    if slot.is_none() {
        *slot = Some(std::str::from_utf8(value).ok().filter(|v| is_header_text(v.as_bytes())));
    }
}

/// A Content-Length value: ASCII digits, with spaces or tabs around them and nothing else.
pub(crate) fn content_length(value: &[u8]) -> Option<usize> {
    let v = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// A client header that does not go upstream as sent: hop-by-hop, or one this hop writes itself
/// (the framing and Host always: a `Connection` token never takes them away).
fn replaced(name: &str, facts: &HeadFacts, forwarding: &Forwarding) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    forward::HOP_BY_HOP.iter().any(|h| is(h))
        || facts.named.iter().any(|n| is(n))
        || is("host")
        || is("content-length")
        || is("x-forwarded-proto")
        || is("forwarded")
        || (forwarding.xff.is_some() && is("x-forwarded-for"))
        || (forwarding.host.is_some() && is("x-forwarded-host"))
}

fn head_line(out: &mut Vec<u8>, method: &str, target: &str) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

pub(super) fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
