//! `lws-mirror-protocol` (spec 6): every message a member sends goes to every member of its
//! instance (`?mirror=NAME`, default ""), the sender included. At most three instances per
//! vhost; a fourth name is closed. Messages queue in a 32-slot ring per instance; a member that
//! falls a whole ring behind is closed, as lws closes its slowest reader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Ws, WsInfo, close};

const RING: usize = 32;
const MAX_INSTANCES: usize = 3;
/// lws mirrors chunks of at most this size.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Default)]
pub struct Mirror {
    instances: Mutex<HashMap<String, broadcast::Sender<Message>>>,
}

impl Mirror {
    fn join(&self, name: &str) -> Option<(broadcast::Sender<Message>, broadcast::Receiver<Message>)> {
        let mut map = self.instances.lock().expect("mirror instances");
        map.retain(|_, tx| tx.receiver_count() > 0);
        if !map.contains_key(name) && map.len() >= MAX_INSTANCES {
            return None;
        }
        let tx = map.entry(name.to_string()).or_insert_with(|| broadcast::channel(RING).0).clone();
        let rx = tx.subscribe();
        Some((tx, rx))
    }
}

/// `mirror=NAME` from the query string.
fn instance_name(query: Option<&str>) -> String {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("mirror="))
        .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        .unwrap_or_default()
}

impl Protocol for Mirror {
    fn name(&self) -> &str {
        "lws-mirror-protocol"
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let name = instance_name(info.query.as_deref());
            let Some((tx, mut rx)) = self.join(&name) else {
                close(&mut ws, 1008, "too many mirror instances").await;
                return;
            };
            let mut idle = Idle::new(info.idle);
            loop {
                tokio::select! {
                    msg = ws.next() => {
                        idle.on_rx();
                        match msg {
                            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                                if m.len() > MAX_MESSAGE {
                                    close(&mut ws, 1009, "message too big").await;
                                    return;
                                }
                                let _ = tx.send(m);
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                            Some(Ok(_)) => {}
                        }
                    }
                    out = rx.recv() => match out {
                        Ok(m) => {
                            if ws.send(m).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            close(&mut ws, 1008, "too slow").await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_by_name_and_limit() {
        assert_eq!(instance_name(Some("a=1&mirror=room%201")), "room 1");
        assert_eq!(instance_name(None), "");
        let m = Mirror::default();
        let a = m.join("a").unwrap();
        let _b = m.join("b").unwrap();
        let _c = m.join("c").unwrap();
        assert!(m.join("d").is_none(), "a fourth instance is refused");
        assert!(m.join("a").is_some(), "joining an existing one is fine");
        drop(a);
    }
}
