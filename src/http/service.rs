//! The request phases: select vhost → normalise path → reject keywords → select mount →
//! redirects → basic auth → origin → response headers → access log.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

use super::access_log::Entry;
use super::activity::Activity;
use super::auth::{self, AuthOutcome};
use super::body::Body;
use super::error::HttpError;
use super::origin::cgi::{self, CgiRequest};
use super::origin::proxy::{self, ClientInfo, UpstreamUpgrade};
use super::origin::{file, file_cache::FileCache, redirect};
use super::path;
use super::upgrade::UpgradeSlot;
use super::websocket;
use crate::metrics::Metrics;
use crate::model::Origin;
use crate::table::{ListenerRoutes, MountRt, RouteTable, VhostRt};

/// State that outlives any one config: it survives reloads.
#[derive(Debug, Default)]
pub struct Shared {
    pub files: FileCache,
    pub metrics: Arc<Metrics>,
}

/// Everything a request on one connection needs; built once per connection.
pub struct ConnCtx {
    pub table: Arc<RouteTable>,
    pub listener: usize,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    /// The vhost whose certificate the TLS handshake used (chosen by SNI).
    pub handshake_vhost: Option<Arc<VhostRt>>,
    pub shared: Arc<Shared>,
    pub activity: Arc<Activity>,
    /// Set by a request answered with 101: what runs on the stream afterwards.
    pub upgrade: UpgradeSlot,
    /// Plain HTTP that arrived on a TLS port with `redirect-http`: every request is sent to
    /// the same URL over https (spec 5).
    pub redirect_to_https: bool,
}

impl ConnCtx {
    /// A plain-HTTP connection's context; TLS connections set `tls` and `handshake_vhost`.
    pub fn new(
        table: Arc<RouteTable>,
        listener: usize,
        peer: Option<SocketAddr>,
        shared: Arc<Shared>,
        keepalive: std::time::Duration,
    ) -> Self {
        ConnCtx {
            table,
            listener,
            peer,
            tls: false,
            handshake_vhost: None,
            shared,
            activity: Arc::new(Activity::new(keepalive)),
            upgrade: UpgradeSlot::default(),
            redirect_to_https: false,
        }
    }

    pub(crate) fn routes(&self) -> &ListenerRoutes {
        &self.table.listeners[self.listener]
    }

    pub fn routes_key(&self) -> crate::model::ListenKey {
        self.routes().key.clone()
    }
}

/// When the request's head was complete, for the duration histogram.
#[derive(Clone, Copy)]
struct Started(std::time::Instant);

/// A response still being produced (an upstream's, or one that waits on blocking work).
pub type LaterResponse = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The service's future: most answers are ready at once; the rest are boxed.
pub enum Reply {
    Ready(Option<Response<Body>>),
    Later(LaterResponse),
}

impl Future for Reply {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Ready(r) => Poll::Ready(Ok(r.take().expect("a Reply is polled to completion once"))),
            Reply::Later(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

/// What the synchronous phases decided.
enum Step {
    Now(Response<Body>),
    Later(LaterResponse),
}

/// What routing found for the request.
enum Action {
    Done(Response<Body>),
    Proxy { mount: usize, remainder: String },
    Cgi { mount: usize, remainder: String },
    Callback { protocol: Arc<dyn crate::protocols::Protocol>, remainder: String },
}

pub fn handle(ctx: &Arc<ConnCtx>, req: Request<Incoming>) -> Reply {
    ctx.activity.begin();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(Started(std::time::Instant::now()));
    if crate::telemetry::enabled() {
        let scheme = if ctx.tls { "https" } else { "http" };
        let span = crate::telemetry::request_span(&parts.method, parts.uri.path(), scheme, &parts.headers);
        parts.extensions.insert(span);
    }
    if let Some(answer) = crate::acme::http01_answer(parts.uri.path()) {
        // An ACME http-01 validation, on whichever plain listener the CA reached.
        let mut r = acme_answer(answer);
        let activity = ctx.activity.clone();
        r.body_mut().on_done(Box::new(move |_| activity.finish()));
        return Reply::Ready(Some(r));
    }
    if ctx.redirect_to_https {
        return Reply::Ready(Some(to_https(ctx, &parts)));
    }
    let host = request_host(&parts);
    let vhost = select_vhost(ctx, host.as_deref());
    let ws_auth = websocket::is_websocket(&parts) && vhost.ws.auth.iter().any(Option::is_some);
    let needs_auth = ws_auth
        || path::normalize(parts.uri.path())
            .ok()
            .and_then(|p| {
                vhost
                    .select_mount(&p, parts.headers.contains_key(header::UPGRADE))
                    .map(|m| m.model.basic_auth.is_some())
            })
            .unwrap_or(false);
    if needs_auth {
        // A bcrypt check costs milliseconds of CPU: keep it off the event loop.
        let ctx = ctx.clone();
        return Reply::Later(Box::pin(async move {
            let inner = ctx.clone();
            match tokio::task::spawn_blocking(move || respond(&inner, parts, body)).await {
                Ok(Step::Now(r)) => r,
                Ok(Step::Later(f)) => f.await,
                Err(e) => {
                    let mut r = HttpError::Internal(format!("request task failed: {e}")).into_response();
                    let activity = ctx.activity.clone();
                    r.body_mut().on_done(Box::new(move |_| activity.finish()));
                    r
                }
            }
        }));
    }
    match respond(ctx, parts, body) {
        Step::Now(r) => Reply::Ready(Some(r)),
        Step::Later(f) => Reply::Later(f),
    }
}

fn acme_answer(key_authorization: String) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        .header(header::CONTENT_LENGTH, key_authorization.len())
        .body(Body::full(bytes::Bytes::from(key_authorization)))
        .expect("valid response")
}

fn respond(ctx: &Arc<ConnCtx>, parts: Parts, body: Incoming) -> Step {
    let host = request_host(&parts);
    let vhost = select_vhost(ctx, host.as_deref());
    let mut mount_used = None;
    let mut close = false;
    let result = route(ctx, &vhost, &parts, host.as_deref(), &mut mount_used, &mut close);
    match result {
        Ok(Action::Done(r)) => Step::Now(complete(ctx, &vhost, mount_used, &parts, Ok(r), close)),
        Err(e) => Step::Now(complete(ctx, &vhost, mount_used, &parts, Err(e), close)),
        Ok(Action::Callback { protocol, remainder }) => {
            let ctx = ctx.clone();
            let vhost = vhost.clone();
            let mount = mount_used.map(|m| vhost.mount_index(m));
            Step::Later(Box::pin(async move {
                let r = protocol.http(parts.clone(), body, remainder).await;
                complete(&ctx, &vhost, mount.map(|i| &vhost.mounts[i]), &parts, r, false)
            }))
        }
        Ok(Action::Cgi { mount, remainder }) => {
            let ctx = ctx.clone();
            let vhost = vhost.clone();
            Step::Later(Box::pin(async move {
                let m = &vhost.mounts[mount];
                let Origin::Cgi(script) = &m.model.origin else { unreachable!("a cgi action comes from a cgi mount") };
                let req = CgiRequest {
                    parts: &parts,
                    remainder: &remainder,
                    peer: ctx.peer,
                    tls: ctx.tls,
                    server_name: &vhost.name,
                    server_port: vhost.port,
                };
                let r = cgi::run(script, &m.model, req, body).await;
                let result = match &r {
                    Ok(_) => "answered",
                    Err(HttpError::GatewayTimeout) => "timeout",
                    Err(_) => "failed",
                };
                ctx.shared.metrics.cgi_run(&vhost.name, &m.model.mountpoint, result);
                complete(&ctx, &vhost, Some(m), &parts, r, false)
            }))
        }
        Ok(Action::Proxy { mount, remainder }) => {
            let ctx = ctx.clone();
            let vhost = vhost.clone();
            Step::Later(Box::pin(async move {
                let m = &vhost.mounts[mount];
                let proxy = m.proxy.as_ref().expect("a proxy mount has a client");
                let mut parts = parts;
                if m.model.basic_auth.is_some() {
                    // The credentials were lwsws's to check (spec 3), not the upstream's.
                    parts.headers.remove(header::AUTHORIZATION);
                }
                let client =
                    ClientInfo { addr: ctx.peer.map(|p| p.ip().to_canonical()), tls: ctx.tls, host: host.as_deref() };
                let mut r = proxy.forward(&parts, body, &remainder, client).await;
                let failure = match &r {
                    Err(HttpError::ServiceUnavailable) => Some("connect"),
                    Err(HttpError::GatewayTimeout) => Some("timeout"),
                    Err(HttpError::BadGateway) => Some("failed"),
                    _ => None,
                };
                if let Some(kind) = failure {
                    ctx.shared.metrics.upstream_error(&vhost.name, &m.model.mountpoint, kind);
                }
                if let Ok(resp) = &mut r
                    && let Some(up) = resp.extensions_mut().remove::<UpstreamUpgrade>()
                {
                    // A websocket (or other upgrade) the upstream accepted: tunnel the bytes.
                    ctx.upgrade.set(Box::new(move |client_io| Box::pin(proxy::tunnel(client_io, up))));
                }
                complete(&ctx, &vhost, Some(m), &parts, r, false)
            }))
        }
    }
}

/// The error mapping, `error-document-404`, then the common response phase.
fn complete(
    ctx: &ConnCtx,
    vhost: &Arc<VhostRt>,
    mount: Option<&MountRt>,
    parts: &Parts,
    result: Result<Response<Body>, HttpError>,
    close: bool,
) -> Response<Body> {
    let mut response = match result {
        Ok(r) => r,
        Err(HttpError::NotFound) if vhost.error_404.is_some() => error_document(vhost, parts),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, uri = %parts.uri, "request failed");
            }
            e.into_response()
        }
    };
    if response.status() == StatusCode::OK && vhost.error_404.as_deref() == Some(parts.uri.path()) {
        // The error document itself is served with the status it stands for.
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    finish(ctx, vhost, mount, parts, response, close)
}

/// Host header (HTTP/1) or :authority (HTTP/2).
fn request_host(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))
}

/// D3 on every request: the Host's vhost if one matches, else the handshake's, else the first.
pub(crate) fn select_vhost(ctx: &ConnCtx, host: Option<&str>) -> Arc<VhostRt> {
    let routes = ctx.routes();
    host.and_then(|h| routes.find_vhost(h)).or(ctx.handshake_vhost.as_ref()).unwrap_or_else(|| routes.first()).clone()
}

/// A request for a vhost whose client-certificate check this connection did not pass.
pub(crate) fn misdirected(ctx: &ConnCtx, vhost: &Arc<VhostRt>) -> bool {
    // The client certificate was checked against the handshake vhost's CA, not this one's:
    // SNI for one vhost plus Host for an mTLS vhost must not skip its check.
    let other_handshake = ctx.handshake_vhost.as_ref().is_some_and(|hs| !Arc::ptr_eq(hs, vhost));
    // Plain HTTP let in on a TLS port (allow-http-on-https) has no certificate to show.
    vhost.client_cert_required && (other_handshake || !ctx.tls)
}

fn route<'v>(
    ctx: &ConnCtx,
    vhost: &'v Arc<VhostRt>,
    parts: &Parts,
    host: Option<&str>,
    mount_used: &mut Option<&'v MountRt>,
    close: &mut bool,
) -> Result<Action, HttpError> {
    if misdirected(ctx, vhost) {
        return Err(HttpError::Misdirected);
    }
    let path = path::normalize(parts.uri.path()).map_err(|e| match e {
        path::PathError::NotAbsolute if parts.uri.path() == "*" => HttpError::MethodNotAllowed,
        _ => HttpError::BadRequest("bad path"),
    })?;
    if let Some(rejection) = rejected(ctx, parts) {
        *close = true;
        return Err(rejection);
    }
    let upgrade = parts.headers.contains_key(header::UPGRADE);
    let mount = vhost.select_mount(&path, upgrade);
    if websocket::is_websocket(parts)
        && !matches!(mount.map(|m| &m.model.origin), Some(Origin::Proxy { .. } | Origin::Redirect(_)))
    {
        // Websockets go to the vhost's protocols whatever the mount, except where a proxy
        // mount passes them on or a redirect mount sends them away (spec 2.3, 2.5).
        return websocket::accept(ctx, vhost, parts).map(Action::Done);
    }
    let mount = mount.ok_or(HttpError::NotFound)?;
    *mount_used = Some(mount);
    ctx.activity.set_keepalive(vhost.keepalive_for(mount));
    let remainder = mount.remainder(&path);
    if let Origin::Redirect(url) = &mount.model.origin {
        return redirect::moved(&redirect::mount_target(url, mount.model.append_path, remainder)).map(Action::Done);
    }
    if mount.wants_trailing_slash(&path, parts.uri.path()) {
        return trailing_slash(ctx, parts, &path, host).map(Action::Done);
    }
    if let Some(file) = &mount.model.basic_auth {
        match auth::check(file, parts.headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes)) {
            AuthOutcome::Allowed(_) => {}
            AuthOutcome::Denied => return Err(HttpError::Unauthorized),
            AuthOutcome::Malformed => return Err(HttpError::Forbidden),
        }
    }
    match &mount.model.origin {
        Origin::File(dir) => file::serve(dir, mount, remainder, parts, &ctx.shared.files).map(Action::Done),
        Origin::Gzip => Err(HttpError::NotFound),
        Origin::Redirect(_) => unreachable!("handled above"),
        Origin::Proxy { .. } => {
            let index = vhost.mount_index(mount);
            Ok(Action::Proxy { mount: index, remainder: remainder.to_string() })
        }
        Origin::Cgi(_) => {
            let index = vhost.mount_index(mount);
            Ok(Action::Cgi { mount: index, remainder: remainder.to_string() })
        }
        Origin::Callback(name) => {
            let protocol = vhost.ws.by_name(name).ok_or_else(|| {
                tracing::warn!(protocol = %name, "callback:// names a protocol that is not enabled on this vhost");
                HttpError::NotFound
            })?;
            Ok(Action::Callback { protocol: protocol.clone(), remainder: remainder.to_string() })
        }
    }
}

/// `redirect-http`: 301 to `https://` + Host + path + `?args`; no Host, or one longer than lws's
/// 128 bytes, is a bad request and the connection closes.
fn to_https(ctx: &ConnCtx, parts: &Parts) -> Response<Body> {
    let host = request_host(parts).filter(|h| h.len() <= 128 && !h.contains('/'));
    let mut r = match host {
        Some(h) => {
            let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            redirect::moved(&format!("https://{h}{pq}")).unwrap_or_else(|e| e.into_response())
        }
        None => HttpError::BadRequest("no usable Host to redirect to").into_response(),
    };
    if r.status() != StatusCode::MOVED_PERMANENTLY {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else {
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Redirect"));
    }
    let activity = ctx.activity.clone();
    r.body_mut().on_done(Box::new(move |_| activity.finish()));
    r
}

/// `reject-service-keywords`: the first keyword found in the User-Agent decides the answer.
fn rejected(ctx: &ConnCtx, parts: &Parts) -> Option<HttpError> {
    let rule = reject_rule(ctx, parts.headers.get(header::USER_AGENT)?.as_bytes())?;
    tracing::info!(keyword = %rule.keyword, "request rejected by reject-service-keywords");
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::FORBIDDEN);
    Some(HttpError::Rejected { status, text: rule.text.clone() })
}

/// The `reject-service-keywords` rule a User-Agent matches, if any.
pub(crate) fn reject_rule<'t>(ctx: &'t ConnCtx, user_agent: &[u8]) -> Option<&'t crate::model::RejectRule> {
    if ctx.table.global.reject.is_empty() {
        return None;
    }
    let ua = String::from_utf8_lossy(user_agent);
    ctx.table.global.reject.iter().find(|r| ua.contains(&r.keyword))
}

/// `/dir` naming a mount exactly → 301 to `/dir/` on the same host and scheme.
/// Built from the normalised path, which starts with exactly one `/`, so no request can turn
/// it into a protocol-relative redirect to another host.
fn trailing_slash(ctx: &ConnCtx, parts: &Parts, path: &str, host: Option<&str>) -> Result<Response<Body>, HttpError> {
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let path = redirect::encode_path(path);
    let target = match host {
        Some(h) if !h.starts_with('+') && !h.contains('/') => {
            let scheme = if ctx.tls { "https" } else { "http" };
            format!("{scheme}://{h}{path}/{query}")
        }
        _ => format!("{path}/{query}"),
    };
    redirect::moved(&target)
}

/// `error-document-404`: any 404 becomes a 302 to the configured page.
fn error_document(vhost: &VhostRt, parts: &Parts) -> Response<Body> {
    let doc = vhost.error_404.as_deref().unwrap_or("/");
    if parts.uri.path() == doc {
        return HttpError::NotFound.into_response();
    }
    match HeaderValue::from_str(doc) {
        Ok(loc) => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, loc)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))
            .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"))
            .body(Body::empty())
            .expect("valid 302"),
        Err(_) => HttpError::NotFound.into_response(),
    }
}

/// Response headers in lws's order (configured headers, `server:`, STS, then the origin's),
/// lws's reason phrase for redirects, and the hooks that run when the body is done.
fn finish(
    ctx: &ConnCtx,
    vhost: &Arc<VhostRt>,
    mount: Option<&MountRt>,
    parts: &Parts,
    response: Response<Body>,
    close: bool,
) -> Response<Body> {
    let (mut head, mut body) = response.into_parts();
    let prefix = mount.map(|m| &m.headers).unwrap_or(&vhost.headers);
    if !prefix.is_empty() {
        let mut headers = HeaderMap::with_capacity(prefix.len() + head.headers.len());
        for (n, v) in prefix {
            headers.append(n.clone(), v.clone());
        }
        for (n, v) in head.headers.iter() {
            headers.append(n.clone(), v.clone());
        }
        head.headers = headers;
    }
    if close {
        head.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if head.status.is_redirection() && head.status != StatusCode::NOT_MODIFIED {
        head.extensions.insert(hyper::ext::ReasonPhrase::from_static(b"Redirect"));
    }
    let activity = ctx.activity.clone();
    body.on_done(Box::new(move |_| activity.finish()));
    let started = parts.extensions.get::<Started>().map(|s| s.0).unwrap_or_else(std::time::Instant::now);
    let (shared, owner, mount_index, status) =
        (ctx.shared.clone(), vhost.clone(), mount.map(|m| vhost.mount_index(m)), head.status.as_u16());
    if let Some(span) = parts.extensions.get::<tracing::Span>() {
        let mount = mount.map(|m| m.model.mountpoint.as_str());
        crate::telemetry::record_response(span, &parts.method, &vhost.name, mount, status, ctx.peer.map(|p| p.ip()));
        // The span ends when the last of the body has gone out.
        let span = span.clone();
        body.on_done(Box::new(move |_| drop(span)));
    }
    body.on_done(Box::new(move |n| {
        let took = started.elapsed();
        match mount_index.map(|i| &owner.mounts[i]) {
            Some(m) => shared.metrics.record_request_in(&m.series, &owner.name, &m.model.mountpoint, status, n, took),
            None => shared.metrics.record_request(&owner.name, "", status, n, took),
        }
    }));
    if let Some(log) = &vhost.access_log {
        let entry = log_entry(ctx, parts, &head);
        let log = log.clone();
        body.on_done(Box::new(move |n| log.write(&entry, n)));
    }
    Response::from_parts(head, body)
}

fn log_entry(ctx: &ConnCtx, parts: &Parts, head: &http::response::Parts) -> Entry {
    let header_text =
        |name| parts.headers.get(name).map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // "HTTP/1.1 200 OK\r\n" + each "name: value\r\n" + hyper's date header + "\r\n".
    let header_bytes = 17 + head.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>() + 37 + 2;
    Entry {
        peer: ctx.peer.map(|p| p.ip().to_canonical()),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        version: match parts.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        },
        status: head.status.as_u16(),
        header_bytes: header_bytes as u64,
        referer: header_text(header::REFERER).unwrap_or_default(),
        user_agent: header_text(header::USER_AGENT).unwrap_or_default(),
    }
}
