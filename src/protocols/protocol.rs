//! What every built-in protocol is: the `Protocol` trait and what a websocket brings with it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;

use super::frames::{BoxFuture, Ws};
use super::idle::IdlePolicy;
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// What a websocket connection brings with it from its HTTP upgrade.
#[derive(Debug, Clone)]
pub struct WsInfo {
    pub peer: Option<SocketAddr>,
    pub query: Option<String>,
    pub user_agent: String,
    /// D10: when an idle connection is pinged and closed.
    pub idle: IdlePolicy,
    /// The server's counters (lws-server-status shows them).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// This connection's message counters (`lwsws_websocket_messages_total`).
    pub messages: crate::metrics::WsCounters,
}

/// What the vhost knows that a protocol may report (lws-server-status).
#[derive(Debug, Clone)]
pub struct VhostSummary {
    pub name: String,
    pub port: u16,
    pub tls: bool,
    pub sts: bool,
    pub mounts: Vec<(String, String)>,
    pub protocols: Vec<String>,
}

/// What a protocol that reads little takes at most in one message: lws's default rx buffer.
pub const SMALL_MESSAGE: usize = 4096;

pub trait Protocol: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;

    /// The largest message (and frame) a client may send, in bytes, unless the protocol's
    /// `max-message-size` pvo or the vhost's `ws-max-message-size` says otherwise: what the
    /// protocol does with a message decides (lws sizes each protocol's rx buffer the same way).
    /// The websocket layer enforces it while the message arrives, closing with 1009.
    fn max_message_size(&self) -> usize {
        SMALL_MESSAGE
    }

    /// Runs one websocket connection that chose this protocol; `None` if it has no ws side.
    fn websocket(self: Arc<Self>, _ws: Ws, _info: WsInfo) -> Option<BoxFuture<()>> {
        None
    }

    fn speaks_websocket(&self) -> bool {
        true
    }

    /// Answers HTTP on a `callback://` mount.
    fn http(
        self: Arc<Self>,
        _parts: Parts,
        _body: Incoming,
        _remainder: String,
    ) -> BoxFuture<Result<Response<Body>, HttpError>> {
        Box::pin(async { Err(HttpError::NotFound) })
    }
}
