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
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::proxy_body::read_front;
use super::rewrite::{Rewritten, is_plain_html};
use crate::http::forward::{ClientInfo, forward_headers, strip_hop_by_hop, upstream_target};
use crate::http::routing::is_websocket;
use crate::upstream::{Driven, NoEndpoint, Progress, ProxyRt, RESENDS, SET_ASIDE, SendError, Upload, finish_upgrade};
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// Why a proxied request got no upstream answer: the error page, and the upstream failure it
/// counts as (`None`: the client's doing, not the upstream's).
pub struct Failed {
    pub error: HttpError,
    pub kind: Option<&'static str>,
}

impl From<HttpError> for Failed {
    fn from(error: HttpError) -> Self {
        Failed { error, kind: None }
    }
}

fn upstream(error: HttpError, kind: &'static str) -> Failed {
    Failed { error, kind: Some(kind) }
}

/// Forwards the request with `remainder` (the normalised path after the mountpoint), its body
/// read up to `body_buffer` bytes before an upstream connection is taken.
pub async fn forward(
    rt: &ProxyRt,
    parts: &Parts,
    body: Incoming,
    remainder: &str,
    client: ClientInfo<'_>,
    body_buffer: usize,
) -> Result<Response<Body>, Failed> {
    let path = upstream_target(rt, remainder, parts.uri.query());
    let uri: Uri = path.parse().map_err(|_| HttpError::BadRequest("unusable path"))?;
    let timeout = rt.timeout();
    let mut picked = rt.pick().map_err(|e| {
        tracing::warn!(upstream = %rt.upstream_name(), reason = %e, "no endpoint to send to");
        match e {
            NoEndpoint::Invalid => upstream(HttpError::Internal(e.to_string()), "invalid"),
            NoEndpoint::Empty => upstream(HttpError::ServiceUnavailable, "no_endpoint"),
        }
    })?;
    let front = read_front(body, body_buffer, timeout).await?;
    // A request whose body is all in hand, of a method that may be repeated, can go to
    // another endpoint when this one refuses the connection.
    let resendable = front.rest.is_none() && is_idempotent(&parts.method) && rt.has_other_endpoints();
    let progress = Progress::new(front.rest.is_none());
    // Only a websocket handshake is forwarded as an upgrade (spec 2.5). Any other `Upgrade`
    // (`h2c`, made-up tokens) is hop-by-hop and goes no further: the request goes upstream as a
    // plain request, so a client never gets a raw pipe that bypasses the mount's mapping, logs
    // and metrics.
    let upgrade = websocket_key(parts);
    let mut req = upstream_request(
        rt,
        parts,
        uri,
        &client,
        upgrade.is_some(),
        front.bytes,
        front.trailers,
        front.rest,
        &progress,
    );
    let mut resends = 0;
    let (sent, endpoint, turn) = loop {
        // Kept only where it may be sent again: the copy costs a header map.
        let spare = (resendable && resends < RESENDS).then(|| copy_request(&req, &progress));
        let endpoint = picked.endpoint.clone();
        let turn = endpoint.limit.enter(timeout).await.map_err(|busy| {
            tracing::warn!(upstream = %endpoint.name, reason = %busy, "upstream busy");
            upstream(HttpError::ServiceUnavailable, "busy")
        })?;
        // The timeout is for the upstream to answer, counted from when the request body last
        // moved, so a long upload is not cut while it flows.
        let sent = {
            let send = endpoint.pool.send(req, upgrade.is_some());
            tokio::pin!(send);
            loop {
                tokio::select! {
                    r = &mut send => break Some(r),
                    _ = tokio::time::sleep_until(progress.deadline(timeout).into()) => {
                        if tokio::time::Instant::now() >= progress.deadline(timeout).into() {
                            break None;
                        }
                    }
                }
            }
        };
        if let Some(Err(SendError::Connect(e))) = &sent {
            endpoint.set_aside(SET_ASIDE);
            if let Some(again) = spare
                && let Some(next) = picked.another()
            {
                tracing::info!(upstream = %endpoint.name, error = %e, next = %next.endpoint.name,
                    "endpoint refused the connection; trying another");
                picked = next;
                req = again;
                resends += 1;
                continue;
            }
        }
        break (sent, endpoint, turn);
    };
    let (resp, conn) = match sent {
        None if progress.body_arriving() => {
            // The client's body stalled or trickled: its doing, answered 408.
            tracing::debug!(upstream = %endpoint.name, "the client's request body is too slow");
            return Err(HttpError::RequestTimeout.into());
        }
        None => {
            tracing::warn!(upstream = %endpoint.name, "upstream timed out");
            return Err(upstream(HttpError::GatewayTimeout, "timeout"));
        }
        Some(Err(SendError::Connect(e))) => {
            tracing::warn!(upstream = %endpoint.name, error = %e, "upstream connect failed");
            return Err(upstream(HttpError::ServiceUnavailable, "connect"));
        }
        Some(Err(SendError::Upstream(e))) if progress.client_body_failed() => {
            // The client's body was malformed, or the client left mid-upload: its doing, not
            // the upstream's (counted as a 400, logged at debug).
            tracing::debug!(upstream = %endpoint.name, error = %e, "the client's request body failed");
            return Err(HttpError::BadRequest("malformed request body").into());
        }
        Some(Err(SendError::Upstream(e))) => {
            tracing::warn!(upstream = %endpoint.name, error = %e, "upstream request failed");
            return Err(upstream(HttpError::BadGateway, "failed"));
        }
        Some(Ok(r)) => r,
    };
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        // A switch the client did not ask for, or one that does not answer its websocket
        // handshake, is refused: relaying it would hand the client a tunnel nobody checked.
        let Some(key) = &upgrade else {
            tracing::warn!(upstream = %endpoint.name, "upstream switched protocols unasked");
            return Err(upstream(HttpError::BadGateway, "failed"));
        };
        if !accepts_websocket(resp.headers(), key) {
            tracing::warn!(upstream = %endpoint.name, "upstream's 101 does not accept the websocket handshake");
            return Err(upstream(HttpError::BadGateway, "failed"));
        }
        let mut resp = resp;
        let on = hyper::upgrade::on(&mut resp);
        finish_upgrade(conn);
        let (head, _) = resp.into_parts();
        let mut out = Response::from_parts(head, Body::empty());
        out.extensions_mut().insert(UpstreamUpgrade(Arc::new(parking_lot::Mutex::new(Some(on)))));
        return Ok(out);
    }
    let (mut head, body) = resp.into_parts();
    if head.headers.contains_key(header::TRANSFER_ENCODING) && head.headers.contains_key(header::CONTENT_LENGTH) {
        // Two framings (RFC 9112 6.3: "ought to be handled as an error"): which one the
        // upstream meant cannot be known, so nothing of it is relayed, on either request path.
        tracing::warn!(upstream = %endpoint.name, "upstream response has both Content-Length and Transfer-Encoding");
        return Err(upstream(HttpError::BadGateway, "failed"));
    }
    // The client's protocol, whatever the upstream spoke: an HTTP/1.0 answer must not turn
    // the client's connection into HTTP/1.0 (which closes it, dropping pipelined requests).
    head.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut head.headers);
    if http_body::Body::is_end_stream(&body) {
        // hyper would drop such a body unpolled, and the connection with it.
        endpoint.pool.release(conn);
        return Ok(Response::from_parts(head, Body::empty()));
    }
    // The endpoint's turn is held until the response has been read to its end.
    let mut body = Driven::new(body, conn, endpoint.pool.clone()).holding(turn).cut_after(timeout).boxed_unsync();
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

/// Methods RFC 9110 9.2.2 calls idempotent: sending one twice does no more than once.
fn is_idempotent(m: &http::Method) -> bool {
    use http::Method;
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE, Method::PUT, Method::DELETE].contains(m)
}

/// The upstream request: the forwarding rules, the Host the mount sends or the client's, the
/// trace context, the websocket handshake's headers, and the body as read so far.
#[allow(clippy::too_many_arguments)]
fn upstream_request(
    rt: &ProxyRt,
    parts: &Parts,
    uri: Uri,
    client: &ClientInfo,
    websocket: bool,
    bytes: bytes::Bytes,
    trailers: Option<HeaderMap>,
    rest: Option<Incoming>,
    progress: &Arc<Progress>,
) -> Request<Upload> {
    let client_host = client.host.and_then(|h| HeaderValue::from_str(h).ok());
    let host = rt.upstream_host().cloned().or(client_host);
    let mut req = Request::new(Upload::new(bytes, trailers, rest, progress.clone()));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = forward_headers(&parts.headers, host.as_ref(), client);
    crate::telemetry::inject(parts.extensions.get::<tracing::Span>(), req.headers_mut());
    if websocket {
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    req
}

/// A copy of a request whose body is all in hand, to send again elsewhere.
fn copy_request(req: &Request<Upload>, progress: &Arc<Progress>) -> Request<Upload> {
    let (bytes, trailers) = req.body().buffered();
    let mut copy = Request::new(Upload::new(bytes, trailers, None, progress.clone()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    copy
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

/// The client's `Sec-WebSocket-Key` when the request is a websocket handshake (GET,
/// `Connection: upgrade`, `Upgrade: websocket`, a key): the only upgrade that is forwarded.
fn websocket_key(parts: &Parts) -> Option<HeaderValue> {
    if parts.method != http::Method::GET || !is_websocket(parts) {
        return None;
    }
    parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned()
}

/// An upstream 101 that completes the websocket handshake `key` began (RFC 6455 4.1): it
/// switches to `websocket` and proves it read the key.
fn accepts_websocket(h: &HeaderMap, key: &HeaderValue) -> bool {
    let upgrade = h.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let accept = h.get(header::SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes);
    upgrade && accept == Some(derive_accept_key(key.as_bytes()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_101_that_answers_the_key_accepts_a_websocket() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(!accepts_websocket(&h, &key), "no Sec-WebSocket-Accept");
        h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(accepts_websocket(&h, &key));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!accepts_websocket(&h, &key), "switched to something else");
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(!accepts_websocket(&h, &key), "answers another key");
    }
}
