//! `http://` and `https://` mounts on the hyper path: a reverse proxy (spec 2.5, D13).
//!
//! The mount's `ProxyRt` picks an endpoint of its upstream group; the request goes out on that
//! endpoint's pool with the forwarding rules of `http::forward`, and bodies stream both ways.
//! A websocket upgrade that the upstream accepts becomes a tunnel.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::rewrite::{Rewritten, is_plain_html};
use crate::http::forward::{ClientInfo, forward_headers, strip_hop_by_hop, upstream_path};
use crate::upstream::{Driven, Progress, ProxyRt, SendError, Upload, finish_upgrade};
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// Forwards the request with `remainder` (the normalised path after the mountpoint).
pub async fn forward(
    rt: &ProxyRt,
    parts: &Parts,
    body: Incoming,
    remainder: &str,
    client: ClientInfo<'_>,
) -> Result<Response<Body>, HttpError> {
    let path = upstream_path(rt.upstream_base_path(), remainder, parts.uri.query());
    let uri: Uri = path.parse().map_err(|_| HttpError::BadRequest("unusable path"))?;
    let progress = Progress::new();
    let body = Upload::new(body, progress.clone());
    let mut req = Request::builder().method(parts.method.clone()).uri(uri).body(body).expect("valid request");
    *req.headers_mut() = forward_headers(&parts.headers, rt.upstream_host(), &client);
    crate::telemetry::inject(parts.extensions.get::<tracing::Span>(), req.headers_mut());
    let upgrade = upgrade_token(&parts.headers);
    if let Some(token) = &upgrade {
        // A websocket handshake: the upgrade is what is being forwarded (spec 2.5).
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, token.clone());
    }
    let endpoint = rt.group().pick();
    let timeout = rt.timeout();
    // The timeout is for the upstream to answer, counted from when the request body last
    // moved, so a long upload is not cut while it flows.
    let send = endpoint.pool.send(req, upgrade.is_some());
    tokio::pin!(send);
    let sent = loop {
        tokio::select! {
            r = &mut send => break Some(r),
            _ = tokio::time::sleep_until(progress.deadline(timeout).into()) => {
                if tokio::time::Instant::now() >= progress.deadline(timeout).into() {
                    break None;
                }
            }
        }
    };
    let (resp, conn) = match sent {
        None => return Err(HttpError::GatewayTimeout),
        Some(Err(SendError::Connect(e))) => {
            tracing::warn!(upstream = %endpoint.name, error = %e, "upstream connect failed");
            return Err(HttpError::ServiceUnavailable);
        }
        Some(Err(SendError::Upstream(e))) => {
            tracing::warn!(upstream = %endpoint.name, error = %e, "upstream request failed");
            return Err(HttpError::BadGateway);
        }
        Some(Ok(r)) => r,
    };
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
        let mut resp = resp;
        let on = hyper::upgrade::on(&mut resp);
        finish_upgrade(conn);
        let (head, _) = resp.into_parts();
        let mut out = Response::from_parts(head, Body::empty());
        out.extensions_mut().insert(UpstreamUpgrade(Arc::new(parking_lot::Mutex::new(Some(on)))));
        return Ok(out);
    }
    let (mut head, body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    if http_body::Body::is_end_stream(&body) {
        // hyper would drop such a body unpolled, and the connection with it.
        endpoint.pool.release(conn);
        return Ok(Response::from_parts(head, Body::empty()));
    }
    let mut body = Driven::new(body, conn, endpoint.pool.clone()).boxed_unsync();
    if let Some(map) = rt.links()
        && head.status == http::StatusCode::OK
        && is_plain_html(&head.headers)
    {
        // The bytes change: their length and validators no longer hold.
        head.headers.remove(header::CONTENT_LENGTH);
        head.headers.remove(header::ETAG);
        body = Rewritten::new(body, map.clone()).boxed_unsync();
    }
    Ok(Response::from_parts(head, Body::stream(body)))
}

/// The upstream side of an accepted upgrade, handed from `forward` to the connection through
/// the response's extensions (which must be `Clone`, hence the shared slot).
#[derive(Clone)]
pub struct UpstreamUpgrade(Arc<parking_lot::Mutex<Option<hyper::upgrade::OnUpgrade>>>);

/// Pipes bytes both ways between the client and the upgraded upstream until either side ends.
pub async fn tunnel(mut client: crate::wire::upgrade::UpgradedIo, upstream: UpstreamUpgrade) {
    let Some(on) = upstream.0.lock().take() else { return };
    match on.await {
        Ok(up) => {
            let mut up = TokioIo::new(up);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut up).await {
                tracing::debug!(error = %e, "upgraded tunnel ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upstream upgrade failed"),
    }
}

/// The client's `Upgrade` token when the request asks to switch protocols.
fn upgrade_token(h: &HeaderMap) -> Option<HeaderValue> {
    let wants = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    if wants { h.get(header::UPGRADE).cloned() } else { None }
}
