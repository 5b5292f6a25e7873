//! The websocket handshake (RFC 6455) for requests that are not proxied: the subprotocol is
//! chosen among the vhost's enabled protocols (spec 1.4: the client's first offer the vhost
//! has, else the protocol with the `default` pvo), the protocol's `basic-auth` pvo is checked,
//! and the 101 leaves the protocol to run on the stream.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::auth::{self, AuthOutcome};
use super::body::Body;
use super::error::HttpError;
use super::service::ConnCtx;
use crate::protocols::WsInfo;
use crate::table::VhostRt;

/// Small buffers: a websocket mostly waits, and tungstenite's 128 KiB default read buffer made an
/// idle connection cost 140 KiB (bench/ws-fanout.sh). Messages still grow to what they need.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
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

pub fn accept(ctx: &ConnCtx, vhost: &Arc<VhostRt>, parts: &Parts) -> Result<Response<Body>, HttpError> {
    if parts.method != Method::GET {
        return Err(HttpError::BadRequest("a websocket handshake is a GET"));
    }
    if parts.headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(HttpError::BadRequest("unsupported websocket version"));
    }
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HttpError::BadRequest("no Sec-WebSocket-Key"))?;
    let offered: Vec<String> = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let index = if offered.is_empty() {
        if vhost.ws.disable_no_protocol {
            return Err(HttpError::Forbidden);
        }
        vhost.ws.default.ok_or(HttpError::BadRequest("no websocket subprotocol offered and none is the default"))?
    } else {
        offered
            .iter()
            .find_map(|o| vhost.ws.protocols.iter().position(|p| p.name() == o && p.speaks_websocket()))
            .ok_or(HttpError::BadRequest("none of the offered websocket subprotocols is enabled here"))?
    };
    let protocol = vhost.ws.protocols[index].clone();
    if let Some(file) = &vhost.ws.auth[index] {
        match auth::check(file, parts.headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes)) {
            AuthOutcome::Allowed(_) => {}
            AuthOutcome::Denied => return Err(HttpError::Unauthorized),
            AuthOutcome::Malformed => return Err(HttpError::Forbidden),
        }
    }
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
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
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
    if !offered.is_empty() {
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, vhost.ws.protocols[index].name());
    }
    builder.body(Body::empty()).map_err(|e| HttpError::Internal(e.to_string()))
}
