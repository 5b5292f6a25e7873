//! The response phase of the hyper service: the error mapping and `error-document-404`,
//! response headers in lws's order, lws's reason phrase for redirects, and what runs when the
//! body is done (metrics, span, access log, the connection's timers).

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version, header};

use super::conn::ConnCtx;
use crate::table::{Entry, MountRt, VhostRt};
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// When the request's head was complete, for the duration histogram.
#[derive(Clone, Copy)]
pub struct Started(pub std::time::Instant);

/// The error mapping, `error-document-404`, then the common response phase.
pub fn complete(
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

/// An answer given before any vhost was chosen (an ACME validation, `redirect-http`): only
/// the connection's timers hear of it.
pub fn bare(ctx: &ConnCtx, mut response: Response<Body>) -> Response<Body> {
    let activity = ctx.activity.clone();
    response.body_mut().on_done(Box::new(move |_| activity.finish()));
    response
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
    // While the process drains, each HTTP/1 keep-alive client is told to take its next
    // request elsewhere (as Envoy's drain does; nginx waits for the stop instead), so that it
    // reconnects through the load balancer, which no longer picks us. A 101 keeps its upgrade.
    let ending = ctx.shared.lifecycle.ending()
        && parts.version < Version::HTTP_2
        && head.status != StatusCode::SWITCHING_PROTOCOLS;
    if close || ending {
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
        peer: ctx.client_ip(),
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
