//! The one routing decision. Both request paths (the hyper service and the HTTP/1 passthrough)
//! describe the request's head as a `RequestHead` and call `decide`; the phases run here, once,
//! in this order:
//!
//! 0. a request whose Host is missing (HTTP/1.1), repeated or not an authority is a 400;
//! 1. an ACME http-01 validation is answered, whatever the vhost;
//! 2. plain HTTP on a TLS port with `redirect-http` goes to https;
//! 3. vhost by Host, else the TLS handshake's, else the first on the port (D3);
//! 4. the 421 guard: a vhost whose client-certificate check this connection did not pass;
//! 5. path normalisation (400, or 405 for `*`);
//! 6. `reject-service-keywords` (the configured answer, then close);
//! 7. mount by longest prefix (`no-ws-upgrades` mounts skipped for upgrades);
//! 8. a websocket that no proxy or redirect mount takes goes to the vhost's protocols, with its
//!    subprotocol chosen here (spec 1.4);
//! 9. no mount: 404; a redirect mount: its target; `/dir` naming a mount: 301 to `/dir/`;
//! 10. basic auth: the credentials file to check before the action runs;
//! 11. the action: file, proxy, CGI or callback.
//!
//! Carriers only decide whether they can *carry* the action (the passthrough takes plain proxy
//! actions without auth), never the route. The credentials check is left to the carrier because
//! bcrypt costs milliseconds of CPU and the hyper path runs it off the event loop.

use std::sync::Arc;

use http::request::Parts;
use http::{StatusCode, header};

use super::auth::AuthOutcome;
use super::conn::ConnCtx;
use super::origin::redirect;
use super::path;
use crate::model::Origin;
use crate::protocols::Protocol;
use crate::table::{Credentials, MountRt, VhostRt};
use crate::wire::error::HttpError;

/// What routing reads of a request: its head, as either request path parsed it.
#[derive(Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The target's path as sent (percent-encoded, not normalised), without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The path and query as sent (`/` for a target that has neither), for `redirect-http`.
    pub path_and_query: &'a str,
    /// Host (HTTP/1) or :authority (HTTP/2), when the request has a valid one.
    pub host: Option<&'a str>,
    /// Why the request's Host is unacceptable (missing in HTTP/1.1, repeated, not an
    /// authority, or an HTTP/2 `host` that disagrees with `:authority`): a 400 (RFC 9112 3.2).
    pub bad_host: Option<&'static str>,
    pub user_agent: Option<&'a [u8]>,
    /// The request carries an `Upgrade` header.
    pub upgrade: bool,
    /// A websocket handshake (`Connection: upgrade` + `Upgrade: websocket`), as offered.
    pub websocket: Option<WsOffer>,
    /// The headers, for the conditions of Gateway API rules.
    pub headers: HeadHeaders<'a>,
}

/// A request's headers as either request path holds them.
#[derive(Default, Clone, Copy)]
pub enum HeadHeaders<'a> {
    #[default]
    None,
    Map(&'a http::HeaderMap),
    Raw(&'a [httparse::Header<'a>]),
}

impl crate::table::RouteFacts for RequestHead<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        match self.headers {
            HeadHeaders::None => None,
            HeadHeaders::Map(h) => h.get(name).map(|v| v.as_bytes()),
            HeadHeaders::Raw(h) => h.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value),
        }
    }
}

/// What a websocket handshake offers.
#[derive(Debug, Default)]
pub struct WsOffer {
    pub version_13: bool,
    pub has_key: bool,
    /// The subprotocols offered, in the client's order.
    pub offered: Vec<String>,
}

impl<'a> RequestHead<'a> {
    /// The head as hyper parsed it.
    pub fn from_parts(parts: &'a Parts) -> Self {
        let (host, bad_host) = match host_of(parts) {
            Ok(host) => (host, None),
            Err(why) => (None, Some(why)),
        };
        RequestHead {
            bad_host,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            path_and_query: parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            host,
            user_agent: parts.headers.get(header::USER_AGENT).map(|v| v.as_bytes()),
            upgrade: parts.headers.contains_key(header::UPGRADE),
            websocket: is_websocket(parts).then(|| WsOffer::from_parts(parts)),
            headers: HeadHeaders::Map(&parts.headers),
        }
    }
}

impl WsOffer {
    fn from_parts(parts: &Parts) -> Self {
        let offered = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        WsOffer {
            version_13: parts.headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) == Some(b"13"),
            has_key: parts.headers.contains_key(header::SEC_WEBSOCKET_KEY),
            offered,
        }
    }
}

/// The request's host, checked: HTTP/1.1 needs exactly one Host, and it must be an
/// authority (`host[:port]`, RFC 3986 3.2); HTTP/2's `:authority` wins, and a `host` header that
/// disagrees with it is refused. An empty Host is a target without an authority: `None`.
fn host_of(parts: &Parts) -> Result<Option<&str>, &'static str> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let header = match first {
        Some(v) => Some(v.to_str().ok().filter(|h| valid_authority(h)).ok_or("the Host header is not an authority")?),
        None => None,
    };
    let authority = parts.uri.authority().map(|a| a.as_str());
    if authority.is_some_and(|a| !valid_authority(a)) {
        // `http://u:p@a.test/` as a target, or such an `:authority`: userinfo is no host.
        return Err("the request target's authority is not a host");
    }
    match parts.version {
        http::Version::HTTP_2 | http::Version::HTTP_3 => {
            if let (Some(h), Some(a)) = (header, authority)
                && !h.eq_ignore_ascii_case(a)
            {
                return Err("the host header disagrees with :authority");
            }
            Ok(authority.or(header).filter(|h| !h.is_empty()))
        }
        http::Version::HTTP_11 if header.is_none() => Err("an HTTP/1.1 request without a Host header"),
        _ => Ok(header.or(authority).filter(|h| !h.is_empty())),
    }
}

/// `host[:port]` as RFC 3986 3.2.2 and 3.2.3 write it: a bracketed IP literal or a reg-name
/// (letters, digits, `-._~`, sub-delims, percent-escapes), then an optional port of digits.
/// Empty (no authority) is valid too. Nothing else may be taken for a host: such a value would
/// be forwarded to upstreams and written into logs.
pub fn valid_authority(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, after)) => {
                let literal_ok = !literal.is_empty()
                    && literal.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                    && literal.contains(':');
                if !literal_ok {
                    return false;
                }
                match after {
                    "" => return true,
                    // Only `:port` may follow the literal (`[::1]@evil.test` must not pass).
                    _ => match after.strip_prefix(':') {
                        Some(port) => ("x", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        },
    };
    let port_ok = match port {
        None => true,
        Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
    port_ok && (h.is_empty() || (!host.is_empty() && host.bytes().all(reg_name)))
}

/// `Connection: upgrade` + `Upgrade: websocket`.
pub fn is_websocket(parts: &Parts) -> bool {
    let upgrade = parts.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok());
    let connection = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    connection && upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// Where routing sent the request.
pub enum Decision {
    /// A request no route can take (its Host is missing or invalid): 400, and the connection
    /// closes.
    BadRequest(&'static str),
    /// An ACME http-01 validation: the key authorization is the whole answer.
    AcmeAnswer(String),
    /// `redirect-http`: the https URL, or `None` when the request has no usable Host.
    ToHttps(Option<String>),
    /// Everything else: a vhost was chosen.
    Routed(Routed),
}

/// A request routed to a vhost (and maybe a mount), with the action to run.
pub struct Routed {
    pub vhost: Arc<VhostRt>,
    /// The mount chosen (an index into `vhost.mounts`); `None` when none matched, and for
    /// websockets served by the vhost's protocols.
    pub mount: Option<usize>,
    /// The normalised path (empty when it could not be normalised).
    pub path: String,
    /// Where the part after the mountpoint starts in `path`.
    remainder_at: usize,
    pub action: Action,
    /// Basic-auth credentials to check before the action may run.
    pub auth: Option<Arc<Credentials>>,
    /// The connection closes after the answer (`reject-service-keywords`).
    pub close: bool,
    /// The request is for the vhost's `error-document-404` page itself.
    pub error_document: bool,
    /// Something the carrier that answers logs (a carrier that declines says nothing, so a
    /// request the passthrough hands to hyper is logged once).
    pub note: Option<Note>,
}

/// A routing outcome worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `reject-service-keywords` matched this keyword.
    Rejected(String),
    /// A `callback://` mount names a protocol the vhost does not enable.
    CallbackNotEnabled(String),
}

pub enum Action {
    /// An error page (through the vhost's error document for a 404).
    Error(HttpError),
    /// A redirect to this URL: a 301 from a redirect mount or the trailing-slash rule, or a
    /// Gateway API redirect's status.
    Redirect(String, StatusCode),
    /// The websocket handshake for `vhost.ws.protocols[protocol]`; `named`: the client offered
    /// subprotocols, so the answer names the one chosen.
    Websocket {
        protocol: usize,
        named: bool,
    },
    File,
    Proxy,
    Cgi,
    Callback(Arc<dyn Protocol>),
}

impl Routed {
    /// The normalised path after the mountpoint.
    pub fn remainder(&self) -> &str {
        &self.path[self.remainder_at..]
    }

    pub fn mount(&self) -> Option<&MountRt> {
        self.mount.map(|i| &self.vhost.mounts[i])
    }

    /// Logs what routing noticed; called by the carrier that answers.
    pub fn log_note(&self) {
        match &self.note {
            Some(Note::Rejected(keyword)) => {
                tracing::info!(keyword = %keyword, "request rejected by reject-service-keywords")
            }
            Some(Note::CallbackNotEnabled(protocol)) => {
                tracing::warn!(protocol = %protocol, "callback:// names a protocol that is not enabled on this vhost")
            }
            None => {}
        }
    }

    /// Applies the credentials check's outcome: the action runs only when it allowed.
    pub fn authorized(mut self, outcome: AuthOutcome) -> Self {
        match outcome {
            AuthOutcome::Allowed(_) => {}
            AuthOutcome::Denied => self.action = Action::Error(HttpError::Unauthorized),
            AuthOutcome::Malformed => self.action = Action::Error(HttpError::Forbidden),
        }
        self.auth = None;
        self
    }

    /// The action could not run for a reason of the server's own.
    pub fn failed(mut self, error: HttpError) -> Self {
        self.action = Action::Error(error);
        self.auth = None;
        self
    }
}

pub fn decide(ctx: &ConnCtx, head: &RequestHead) -> Decision {
    if let Some(why) = head.bad_host {
        return Decision::BadRequest(why);
    }
    if let Some(answer) = ctx.shared.challenges.http01_answer(head.path) {
        // An ACME http-01 validation, on whichever plain listener the CA reached.
        return Decision::AcmeAnswer(answer);
    }
    if ctx.redirect_to_https {
        return Decision::ToHttps(https_target(head));
    }
    let vhost = select_vhost(ctx, head.host);
    let mut routed = Routed {
        error_document: vhost.error_404.as_deref() == Some(head.path),
        vhost,
        mount: None,
        path: String::new(),
        remainder_at: 0,
        action: Action::Error(HttpError::NotFound),
        auth: None,
        close: false,
        note: None,
    };
    routed.action = route(ctx, head, &mut routed).unwrap_or_else(Action::Error);
    Decision::Routed(routed)
}

/// Phases 4 to 11; an `Err` is the answer. Fills in `routed`'s mount, path and auth.
fn route(ctx: &ConnCtx, head: &RequestHead, routed: &mut Routed) -> Result<Action, HttpError> {
    let vhost = routed.vhost.clone();
    if misdirected(ctx, &vhost) {
        return Err(HttpError::Misdirected);
    }
    routed.path = path::normalize(head.path).map_err(|e| match e {
        path::PathError::NotAbsolute if head.path == "*" => HttpError::MethodNotAllowed,
        _ => HttpError::BadRequest("bad path"),
    })?;
    if let Some((rejection, keyword)) = rejected(ctx, head.user_agent) {
        routed.close = true;
        routed.note = Some(Note::Rejected(keyword));
        return Err(rejection);
    }
    let mount = vhost.select_mount(&routed.path, head.upgrade, head);
    let redirected = matches!(mount.map(|m| &m.model.origin), Some(Origin::Redirect(_) | Origin::RouteRedirect(_)));
    if head.websocket.is_some() && !redirected && vhost.strict_host_check && !host_is_vhost(&vhost, head.host, ctx.tls)
    {
        // `strict-host-check`: lws hangs up on such an upgrade; a 403 says why, then closes.
        routed.close = true;
        return Err(HttpError::Forbidden);
    }
    if let Some(offer) = &head.websocket
        && !matches!(
            mount.map(|m| &m.model.origin),
            Some(Origin::Proxy { .. } | Origin::Redirect(_) | Origin::Service(_) | Origin::RouteRedirect(_))
        )
    {
        // Websockets go to the vhost's protocols whatever the mount, except where a proxy
        // mount passes them on or a redirect mount sends them away (spec 2.3, 2.5). Routes to
        // Services pass them on too.
        let protocol = choose_protocol(&vhost, head.method, offer)?;
        routed.auth = vhost.ws.auth[protocol].clone();
        return Ok(Action::Websocket { protocol, named: !offer.offered.is_empty() });
    }
    let mount = mount.ok_or(HttpError::NotFound)?;
    routed.mount = Some(vhost.mount_index(mount));
    routed.remainder_at = routed.path.len() - mount.remainder(&routed.path).len();
    if let Origin::Redirect(url) = &mount.model.origin {
        let to = redirect::mount_target(url, mount.model.append_path, routed.remainder());
        return Ok(Action::Redirect(to, StatusCode::MOVED_PERMANENTLY));
    }
    if let Origin::RouteRedirect(r) = &mount.model.origin {
        let url = redirect::RequestUrl {
            tls: ctx.tls,
            host: head.host.unwrap_or(""),
            path: &routed.path,
            remainder: routed.remainder(),
            query: head.query,
        };
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
        return Ok(Action::Redirect(redirect::route_target(r, &url), status));
    }
    if mount.wants_trailing_slash(&routed.path, head.path) {
        return Ok(Action::Redirect(trailing_slash_target(ctx, head, &routed.path), StatusCode::MOVED_PERMANENTLY));
    }
    routed.auth = mount.credentials.clone();
    match &mount.model.origin {
        Origin::File(_) => Ok(Action::File),
        Origin::Gzip => Err(HttpError::NotFound),
        Origin::Redirect(_) | Origin::RouteRedirect(_) => unreachable!("handled above"),
        Origin::Proxy { .. } | Origin::Service(_) => Ok(Action::Proxy),
        Origin::Cgi(_) => Ok(Action::Cgi),
        Origin::Callback(name) => {
            let Some(protocol) = vhost.ws.by_name(name) else {
                routed.note = Some(Note::CallbackNotEnabled(name.clone()));
                return Err(HttpError::NotFound);
            };
            Ok(Action::Callback(protocol.clone()))
        }
    }
}

/// D3 on every request: the Host's vhost if one matches, else the handshake's, else the first.
fn select_vhost(ctx: &ConnCtx, host: Option<&str>) -> Arc<VhostRt> {
    let routes = ctx.routes();
    if let Some(v) = host.and_then(|h| routes.find_vhost(h)) {
        return v.clone();
    }
    match &ctx.handshake_vhost {
        Some(v) if routes.falls_back_by_name() => v.clone(),
        _ => routes.first().clone(),
    }
}

/// A request for a vhost whose client-certificate check this connection did not pass.
fn misdirected(ctx: &ConnCtx, vhost: &Arc<VhostRt>) -> bool {
    // The client certificate was checked against the handshake vhost's CA, not this one's:
    // SNI for one vhost plus Host for an mTLS vhost must not skip its check.
    let other_handshake = ctx.handshake_vhost.as_ref().is_some_and(|hs| !Arc::ptr_eq(hs, vhost));
    // Plain HTTP let in on a TLS port (allow-http-on-https) has no certificate to show.
    vhost.client_cert_required && (other_handshake || !ctx.tls)
}

/// `reject-service-keywords`: the first keyword found in the User-Agent decides the answer
/// (returned with the keyword, for the log).
fn rejected(ctx: &ConnCtx, user_agent: Option<&[u8]>) -> Option<(HttpError, String)> {
    let rules = &ctx.table.global.reject;
    if rules.is_empty() {
        return None;
    }
    let ua = String::from_utf8_lossy(user_agent?);
    let rule = rules.iter().find(|r| ua.contains(&r.keyword))?;
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::FORBIDDEN);
    Some((HttpError::Rejected { status, text: rule.text.clone() }, rule.keyword.clone()))
}

/// The subprotocol a websocket handshake gets (spec 1.4): the client's first offer the vhost
/// has, else the protocol with the `default` pvo.
fn choose_protocol(vhost: &VhostRt, method: &str, offer: &WsOffer) -> Result<usize, HttpError> {
    if method != "GET" {
        return Err(HttpError::BadRequest("a websocket handshake is a GET"));
    }
    if !offer.version_13 {
        return Err(HttpError::BadRequest("unsupported websocket version"));
    }
    if !offer.has_key {
        return Err(HttpError::BadRequest("no Sec-WebSocket-Key"));
    }
    if offer.offered.is_empty() {
        if vhost.ws.disable_no_protocol {
            return Err(HttpError::Forbidden);
        }
        return vhost
            .ws
            .default
            .ok_or(HttpError::BadRequest("no websocket subprotocol offered and none is the default"));
    }
    offer
        .offered
        .iter()
        .find_map(|o| vhost.ws.protocols.iter().position(|p| p.name() == o && p.speaks_websocket()))
        .ok_or(HttpError::BadRequest("none of the offered websocket subprotocols is enabled here"))
}

/// `strict-host-check`, as lws_confirm_host_header compares: the Host is the vhost's name (here
/// without regard to case, as D3 matches names) and its port, which is 443 or 80 by the
/// connection when the Host names none. No Host never matches.
fn host_is_vhost(vhost: &VhostRt, host: Option<&str>, tls: bool) -> bool {
    let Some(host) = host else { return false };
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => match port.parse::<u16>() {
            Ok(port) => (name, port),
            Err(_) => return false,
        },
        None => (host, if tls { 443 } else { 80 }),
    };
    name.eq_ignore_ascii_case(&vhost.name) && port == vhost.port
}

/// `redirect-http`: `https://` + Host + path + `?args`; no Host, or one longer than lws's 128
/// bytes, has none.
fn https_target(head: &RequestHead) -> Option<String> {
    let host = head.host.filter(|h| h.len() <= 128 && !h.contains('/'))?;
    Some(format!("https://{host}{}", head.path_and_query))
}

/// `/dir` naming a mount exactly → `/dir/` on the same host and scheme. Built from the
/// normalised path, which starts with exactly one `/`, so no request can turn it into a
/// protocol-relative redirect to another host.
fn trailing_slash_target(ctx: &ConnCtx, head: &RequestHead, path: &str) -> String {
    let query = head.query.map(|q| format!("?{q}")).unwrap_or_default();
    let path = path::encode_path(path);
    match head.host {
        Some(h) if !h.starts_with('+') && !h.contains('/') => {
            let scheme = if ctx.tls { "https" } else { "http" };
            format!("{scheme}://{h}{path}/{query}")
        }
        _ => format!("{path}/{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: http::Version, uri: &str, hosts: &[&str]) -> Parts {
        let mut b = http::Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hosts_are_checked_as_rfc_9112_asks() {
        use http::Version;
        assert_eq!(host_of(&parts(Version::HTTP_11, "/", &["a.test:80"])), Ok(Some("a.test:80")));
        assert!(host_of(&parts(Version::HTTP_11, "/", &[])).is_err(), "HTTP/1.1 needs a Host");
        assert_eq!(host_of(&parts(Version::HTTP_10, "/", &[])), Ok(None), "HTTP/1.0 may go without");
        assert!(host_of(&parts(Version::HTTP_11, "/", &["a.test", "a.test"])).is_err(), "two");
        assert_eq!(host_of(&parts(Version::HTTP_11, "/", &[""])), Ok(None), "empty: no authority");
        let h2 = |uri, hosts: &[&str]| host_of(&parts(Version::HTTP_2, uri, hosts)).map(|h| h.map(str::to_string));
        assert_eq!(h2("https://a.test/x", &[]), Ok(Some("a.test".into())));
        assert_eq!(h2("https://a.test/x", &["A.test"]), Ok(Some("a.test".into())));
        assert!(h2("https://a.test/x", &["b.test"]).is_err(), "host differs from :authority");
        assert!(host_of(&parts(Version::HTTP_10, "http://u:p@a.test/", &[])).is_err(), "userinfo");
    }

    #[test]
    fn authorities() {
        for good in ["a.test", "a.test:8080", "127.0.0.1", "[::1]", "[::1]:443", "xn--bcher-kva.test", "a_b", ""] {
            assert!(valid_authority(good), "{good:?}");
        }
        for bad in [
            "a b",
            "../../etc",
            "x\"y;for=1.2.3.4",
            "a.test:80:80",
            "a.test:http",
            "[::1",
            "[]",
            "u@a.test",
            ":80",
            "a/b",
            "[::1]@evil.test",
            "[::1]\";for=1.2.3.4",
            "[::1]:80x",
        ] {
            assert!(!valid_authority(bad), "{bad:?}");
        }
    }
}
