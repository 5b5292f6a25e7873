//! `lws-echo`: every message comes back to its sender as it was sent (text as text, binary as
//! binary). Not one of lwsws's plugins; it is what conformance suites (Autobahn) talk to, and
//! a handy health check for websocket paths through proxies.

use std::sync::Arc;

use futures::StreamExt;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, receive, send};

#[derive(Debug, Default)]
pub struct Echo;

impl Protocol for Echo {
    fn name(&self) -> &str {
        "lws-echo"
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
