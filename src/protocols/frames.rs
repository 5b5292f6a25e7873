//! Sending and receiving on a protocol's websocket: counted, and closed with the right code
//! when the peer sends something wrong.

use std::future::Future;
use std::pin::Pin;

use tokio_tungstenite::WebSocketStream;

use crate::wire::upgrade::UpgradedIo;

/// A protocol's websocket, over whatever stream the connection was upgraded from.
pub type Ws = WebSocketStream<UpgradedIo>;
/// What a protocol hands back to run.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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
