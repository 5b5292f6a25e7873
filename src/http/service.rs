//! The hyper service: each request is routed once (`routing::decide`), its credentials checked
//! off the event loop when the route asks for them, and the decided action carried out by its
//! origin; every answer then goes through the response phase (`respond`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::auth;
use super::conn::ConnCtx;
use super::forward::ClientInfo;
use super::origin::cgi::{self, CgiRequest};
use super::origin::proxy::{self, UpstreamUpgrade};
use super::origin::{file, redirect};
use super::respond::{self, Started, complete};
use super::routing::{self, Action, Decision, RequestHead, Routed};
use super::websocket;
use crate::model::Origin;
use crate::wire::body::Body;
use crate::wire::error::HttpError;

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

impl Reply {
    fn now(r: Response<Body>) -> Self {
        Reply::Ready(Some(r))
    }
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
    let routed = match routing::decide(ctx, &RequestHead::from_parts(&parts)) {
        Decision::AcmeAnswer(answer) => return Reply::now(respond::bare(ctx, acme_answer(answer))),
        Decision::ToHttps(target) => return Reply::now(respond::bare(ctx, to_https(target))),
        Decision::BadRequest(why) => return Reply::now(respond::bare(ctx, closing(HttpError::BadRequest(why)))),
        Decision::Routed(routed) => routed,
    };
    let Some(credentials) = routed.auth.clone() else {
        return carry(ctx, routed, parts, body);
    };
    // A bcrypt check costs milliseconds of CPU: keep it off the event loop.
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move {
        let authorization = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
        let checked = tokio::task::spawn_blocking(move || auth::check(&credentials, authorization.as_deref())).await;
        let routed = match checked {
            Ok(outcome) => routed.authorized(outcome),
            Err(e) => routed.failed(HttpError::Internal(format!("request task failed: {e}"))),
        };
        match carry(&ctx, routed, parts, body) {
            Reply::Ready(r) => r.expect("a fresh reply"),
            Reply::Later(f) => f.await,
        }
    }))
}

/// Runs the decided action.
fn carry(ctx: &Arc<ConnCtx>, routed: Routed, parts: Parts, body: Incoming) -> Reply {
    routed.log_note();
    let vhost = routed.vhost.clone();
    let mount = routed.mount.map(|i| &vhost.mounts[i]);
    if let Some(m) = mount {
        ctx.activity.set_keepalive(vhost.keepalive_for(m));
    }
    let answer = |r| Reply::now(complete(ctx, &vhost, mount, &parts, r, routed.close));
    match routed.action {
        Action::Error(e) => answer(Err(e)),
        Action::Redirect(ref url, status) => answer(redirect::to(url, status)),
        Action::Websocket { protocol, named } => {
            let r = websocket::accept(ctx, &vhost, &parts, protocol, named);
            Reply::now(complete(ctx, &vhost, None, &parts, r, false))
        }
        Action::File => {
            let m = mount.expect("a file action has a mount");
            let Origin::File(dir) = &m.model.origin else { unreachable!("a file action comes from a file mount") };
            answer(file::serve(dir, m, routed.remainder(), &parts, &ctx.shared.files))
        }
        Action::Callback(ref protocol) => {
            let (ctx, protocol, remainder) = (ctx.clone(), protocol.clone(), routed.remainder().to_string());
            Reply::Later(Box::pin(async move {
                let r = protocol.http(parts.clone(), body, remainder).await;
                complete(&ctx, &routed.vhost, routed.mount(), &parts, r, false)
            }))
        }
        Action::Cgi => Reply::Later(Box::pin(run_cgi(ctx.clone(), routed, parts, body))),
        Action::Proxy => Reply::Later(Box::pin(run_proxy(ctx.clone(), routed, parts, body))),
    }
}

async fn run_cgi(ctx: Arc<ConnCtx>, routed: Routed, parts: Parts, body: Incoming) -> Response<Body> {
    let vhost = &routed.vhost;
    let m = routed.mount().expect("a cgi action has a mount");
    let Origin::Cgi(script) = &m.model.origin else { unreachable!("a cgi action comes from a cgi mount") };
    let req = CgiRequest {
        parts: &parts,
        remainder: routed.remainder(),
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
    complete(&ctx, vhost, Some(m), &parts, r, false)
}

async fn run_proxy(ctx: Arc<ConnCtx>, routed: Routed, mut parts: Parts, body: Incoming) -> Response<Body> {
    let vhost = &routed.vhost;
    let m = routed.mount().expect("a proxy action has a mount");
    let rt = m.proxy.as_ref().expect("a proxy mount has a client");
    if m.model.basic_auth.is_some() {
        // The credentials were lwsws's to check (spec 3), not the upstream's.
        parts.headers.remove(header::AUTHORIZATION);
    }
    let host = RequestHead::from_parts(&parts).host.map(str::to_string);
    if let Some(route) = &m.route {
        route.request_headers.apply(&mut parts.headers);
    }
    let client = ClientInfo { addr: ctx.client_ip(), tls: ctx.tls, host: host.as_deref() };
    let buffer = ctx.table.global.body_buffer;
    let mut r = proxy::forward(rt, &parts, body, routed.remainder(), client, buffer).await.map_err(|failed| {
        if let Some(kind) = failed.kind {
            ctx.shared.metrics.upstream_error(&vhost.name, &m.model.mountpoint, kind);
        }
        failed.error
    });
    if let (Ok(resp), Some(route)) = (&mut r, &m.route) {
        route.response_headers.apply(resp.headers_mut());
    }
    if let Ok(resp) = &mut r
        && let Some(up) = resp.extensions_mut().remove::<UpstreamUpgrade>()
    {
        // A websocket (or other upgrade) the upstream accepted: tunnel the bytes.
        ctx.upgrade.set(Box::new(move |client_io| Box::pin(proxy::tunnel(client_io, up))));
    }
    complete(&ctx, vhost, Some(m), &parts, r, false)
}

/// An error answer after which the connection closes.
fn closing(e: HttpError) -> Response<Body> {
    let mut r = e.into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn acme_answer(key_authorization: String) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        .header(header::CONTENT_LENGTH, key_authorization.len())
        .body(Body::full(bytes::Bytes::from(key_authorization)))
        .expect("valid response")
}

/// `redirect-http`: 301 to the https URL; with no usable Host, a bad request and the
/// connection closes.
fn to_https(target: Option<String>) -> Response<Body> {
    let mut r = match target {
        Some(url) => redirect::moved(&url).unwrap_or_else(|e| e.into_response()),
        None => HttpError::BadRequest("no usable Host to redirect to").into_response(),
    };
    if r.status() != StatusCode::MOVED_PERMANENTLY {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else {
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Redirect"));
    }
    r
}
