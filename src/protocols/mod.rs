//! The built-in protocols (D18): each one a module implementing `Protocol`, instantiated per
//! vhost from its `ws-protocols` entry and options (pvos), so its shared state (a mirror's
//! members, the status list) is the vhost's own.

mod dumb_increment;
mod echo;
mod idle;
mod mirror;
mod post_demo;
pub mod raw_proxy;
mod server_status;
mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use tokio_tungstenite::WebSocketStream;

use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::upgrade::UpgradedIo;
use crate::model;

pub use idle::{Idle, IdlePolicy};

pub type Ws = WebSocketStream<UpgradedIo>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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

pub trait Protocol: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;

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

/// The built-in protocol named in a vhost's `ws-protocols`, set up with its pvos; `None` for a
/// name that is not built in (warned about when the config was read).
pub fn instantiate(p: &model::Protocol, summary: &VhostSummary) -> Option<Arc<dyn Protocol>> {
    Some(match p.name.as_str() {
        "dumb-increment-protocol" => Arc::new(dumb_increment::DumbIncrement::new(p)),
        "lws-mirror-protocol" => Arc::new(mirror::Mirror::default()),
        "lws-status" => Arc::new(status::Status::new(&summary.name)),
        "protocol-post-demo" => Arc::new(post_demo::PostDemo::default()),
        "lws-server-status" => Arc::new(server_status::ServerStatus::new(p, summary.clone())),
        "lws-echo" => Arc::new(echo::Echo),
        _ => return None,
    })
}

/// Sends a close frame and ends the connection; errors mean the peer is gone anyway.
pub async fn close(ws: &mut Ws, code: u16, reason: &str) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
    // A peer that reads nothing must not hold the caller: the close gets a second.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(Some(frame))).await;
}

/// Sends one message, counted as sent (`lwsws_websocket_messages_total`), as `receive` counts
/// what arrives.
pub async fn send(
    ws: &mut Ws,
    m: tokio_tungstenite::tungstenite::Message,
    counters: &crate::metrics::WsCounters,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    use futures::SinkExt;
    counters.sent.inc();
    ws.send(m).await
}

/// What a protocol loop got from its peer.
pub enum Rx {
    Data(tokio_tungstenite::tungstenite::Message),
    /// A ping or pong (already answered by the library) or an empty read.
    Other,
    /// The connection is over; any close handshake has been completed.
    End,
}

/// Sorts what `next()` returned. A peer's Close is answered (RFC 6455 5.5.1) before the
/// connection ends; a bad frame is closed with its code: 1007 for invalid UTF-8, 1009 for a
/// message too big, 1002 for other protocol errors.
pub async fn receive(
    ws: &mut Ws,
    got: Option<Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>,
    counters: &crate::metrics::WsCounters,
) -> Rx {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    match got {
        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
            counters.received.inc();
            Rx::Data(m)
        }
        Some(Ok(Message::Close(_))) => {
            // The library queued the Close reply; reading on writes it and sees the end.
            let drain = async { while let Some(Ok(_)) = ws.next().await {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
            Rx::End
        }
        Some(Ok(_)) => Rx::Other,
        None => Rx::End,
        Some(Err(e)) => {
            let code = match e {
                Error::Utf8(_) => 1007,
                Error::Capacity(_) => 1009,
                Error::Protocol(_) => 1002,
                _ => return Rx::End,
            };
            close(ws, code, "").await;
            Rx::End
        }
    }
}
