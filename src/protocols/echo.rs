//! `lws-echo`: every message comes back to its sender as it was sent (text as text, binary as
//! binary). Not one of lwsws's plugins; it is what conformance suites (Autobahn) talk to, and
//! a handy health check for websocket paths through proxies.

use std::sync::Arc;

use futures::StreamExt;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, receive, send};

/// Echo holds a whole message before sending it back: 1 MiB by default. Conformance runs
/// that need more (Autobahn's 16 MiB cases) set the `max-message-size` pvo.
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Echo;

impl Protocol for Echo {
    fn name(&self) -> &str {
        "lws-echo"
    }

    fn max_message_size(&self) -> usize {
        MAX_MESSAGE
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let mut idle = Idle::new(info.idle);
            loop {
                tokio::select! {
                    msg = ws.next() => {
                        idle.on_rx();
                        match receive(&mut ws, msg, &info.messages).await {
                            Rx::Data(m) => {
                                if send(&mut ws, m, &info.messages).await.is_err() {
                                    return;
                                }
                            }
                            Rx::Other => {}
                            Rx::End => return,
                        }
                    }
                    _ = tokio::time::sleep_until(idle.deadline()) => {
                        if !idle.check(&mut ws).await {
                            return;
                        }
                    }
                }
            }
        }))
    }
}
