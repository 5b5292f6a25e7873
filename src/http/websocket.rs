//! The websocket handshake (RFC 6455) for requests that are not proxied. Routing has chosen the
//! subprotocol (spec 1.4) and the carrier has checked its `basic-auth` pvo; this answers 101
//! and leaves the protocol to run on the stream.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::conn::ConnCtx;
use crate::protocols::WsInfo;
use crate::table::VhostRt;
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// Small buffers: a websocket mostly waits, and tungstenite's 128 KiB default read buffer made an
/// idle connection cost 140 KiB (bench/ws-fanout.sh). Messages grow to what they need, up to
/// `max_message`: tungstenite checks a frame's length from its header, before reading its
/// payload, and a fragmented message at each fragment, so an oversized message is refused
/// (1009) having cost at most the limit, not when it ends.
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The 101 for a handshake that routing gave to `vhost.ws.protocols[index]` (its method,
/// version, key, subprotocol and credentials already checked), leaving the protocol to run on
/// the stream.
/// `named`: the client offered subprotocols, so the 101 names the one chosen.
pub fn accept(
    ctx: &ConnCtx,
    vhost: &Arc<VhostRt>,
    parts: &Parts,
    index: usize,
    named: bool,
) -> Result<Response<Body>, HttpError> {
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HttpError::BadRequest("no Sec-WebSocket-Key"))?;
    let protocol = vhost.ws.protocols[index].clone();
    let max_message = vhost.ws.max_message[index];
    let info = WsInfo {
        peer: ctx.peer,
        query: parts.uri.query().map(str::to_string),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        idle: vhost.ws.idle,
        metrics: ctx.shared.metrics.clone(),
        messages: ctx.shared.metrics.ws_counters(&vhost.name, protocol.name()),
    };
    ctx.upgrade.set(Box::new(move |io| {
        Box::pin(async move {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(max_message))).await;
            if let Some(run) = protocol.websocket(ws, info) {
                run.await;
            }
        })
    }));
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()));
    if named {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, vhost.ws.protocols[index].name());
    }
    builder.body(Body::empty()).map_err(|e| HttpError::Internal(e.to_string()))
}
