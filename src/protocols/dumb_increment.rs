//! `dumb-increment-protocol` (spec 6): a counter from 0, sent as text every 50 ms and then
//! incremented. `reset\n` sets it to 0, `closeme\n` closes with 1001 "seeya"; anything under
//! 6 bytes is ignored. pvo `options` bit 0 stops the timer.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, close, receive, send};
use crate::model;

const TICK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct DumbIncrement {
    timer: bool,
}

impl DumbIncrement {
    pub fn new(p: &model::Protocol) -> Self {
        // lws reads the first byte of the value: "1" (0x31) has bit 0 set.
        let options = p.pvo("options").and_then(|v| v.bytes().next()).unwrap_or(0);
        DumbIncrement { timer: options & 1 == 0 }
    }
}

impl Protocol for DumbIncrement {
    fn name(&self) -> &str {
        "dumb-increment-protocol"
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(run(ws, info, self.timer)))
    }
}

async fn run(mut ws: Ws, info: WsInfo, timer: bool) {
    let mut counter: u64 = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut idle = Idle::new(info.idle);
    loop {
        tokio::select! {
            _ = tick.tick(), if timer => {
                if send(&mut ws, Message::text(counter.to_string()), &info.messages).await.is_err() {
                    return;
                }
                counter += 1;
            }
            msg = ws.next() => {
                idle.on_rx();
                let data = match receive(&mut ws, msg, &info.messages).await {
                    Rx::Data(m) => m.into_data(),
                    Rx::Other => continue,
                    Rx::End => return,
                };
                if data.len() < 6 {
                    continue;
                }
                if data.starts_with(b"reset\n") {
                    counter = 0;
                } else if data.starts_with(b"closeme\n") {
                    close(&mut ws, 1001, "seeya").await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(idle.deadline()) => {
                if !idle.check(&mut ws).await {
                    return;
                }
            }
        }
    }
}
