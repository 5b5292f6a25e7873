//! `lws-mirror-protocol` (spec 6): every message a member sends goes to every member of its
//! instance (`?mirror=NAME`, default ""), the sender included, in chunks of at most 4096 bytes.
//! At most three instances per vhost; a fourth name is closed.
//!
//! Flow control as lws does it: an instance queues at most 32 chunks. When fewer than 4 slots
//! are free (the slowest member is that far behind), members stop reading from their sockets,
//! and start again once 21 are free; a member that stays that far behind for 3 s is closed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, close, receive, send};

const RING: usize = 32;
const PAUSE_BELOW_FREE: usize = 4;
const RESUME_AT_FREE: usize = 21;
const SLOWEST_GRACE: Duration = Duration::from_secs(3);
const MAX_INSTANCES: usize = 3;
/// lws mirrors chunks of at most this size.
const CHUNK: usize = 4096;
/// A message that would fill most of the ring at once is refused (1009) rather than let it
/// overwrite itself: lws never drops mirror data, so neither may this.
const MAX_MESSAGE: usize = CHUNK * (RING - RESUME_AT_FREE);
/// How often a paused member looks whether the ring has drained.
const PAUSED_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
pub struct Mirror {
    instances: Mutex<HashMap<String, broadcast::Sender<Message>>>,
}

impl Mirror {
    fn join(&self, name: &str) -> Option<(broadcast::Sender<Message>, broadcast::Receiver<Message>)> {
        let mut map = self.instances.lock();
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

/// A message as lws passes it on: pieces of at most `CHUNK` bytes (text split on characters).
fn chunks(m: Message) -> Vec<Message> {
    match m {
        Message::Text(t) if t.len() > CHUNK => {
            let mut out = Vec::new();
            let mut piece = String::new();
            for c in t.as_str().chars() {
                if piece.len() + c.len_utf8() > CHUNK {
                    out.push(Message::text(std::mem::take(&mut piece)));
                }
                piece.push(c);
            }
            out.push(Message::text(piece));
            out
        }
        Message::Binary(b) if b.len() > CHUNK => b.chunks(CHUNK).map(|c| Message::binary(c.to_vec())).collect(),
        m => vec![m],
    }
}

impl Protocol for Mirror {
    fn name(&self) -> &str {
        "lws-mirror-protocol"
    }

    /// What the ring can take at once; a larger configured limit still meets the check below.
    fn max_message_size(&self) -> usize {
        MAX_MESSAGE
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let name = instance_name(info.query.as_deref());
            let Some((tx, rx)) = self.join(&name) else {
                close(&mut ws, 1008, "too many mirror instances").await;
                return;
            };
            member(ws, tx, rx, info).await;
        }))
    }
}

async fn member(mut ws: Ws, tx: broadcast::Sender<Message>, mut rx: broadcast::Receiver<Message>, info: WsInfo) {
    let mut idle = Idle::new(info.idle);
    let mut paused = false;
    let mut behind_since: Option<Instant> = None;
    loop {
        // The slowest member's backlog decides whether anyone may add to the ring.
        let free = RING.saturating_sub(tx.len());
        paused = if paused { free < RESUME_AT_FREE } else { free < PAUSE_BELOW_FREE };
        if rx.len() >= RING - PAUSE_BELOW_FREE {
            let since = *behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() > SLOWEST_GRACE {
                // Leave the instance first, so nobody waits on this member while it closes.
                drop(rx);
                close(&mut ws, 1008, "too slow").await;
                return;
            }
        } else {
            behind_since = None;
        }
        tokio::select! {
            msg = ws.next(), if !paused => {
                idle.on_rx();
                match receive(&mut ws, msg, &info.messages).await {
                    Rx::Data(m) if m.len() > MAX_MESSAGE => {
                        drop(rx);
                        close(&mut ws, 1009, "message too big").await;
                        return;
                    }
                    Rx::Data(m) => {
                        for piece in chunks(m) {
                            let _ = tx.send(piece);
                        }
                    }
                    Rx::Other => {}
                    Rx::End => return,
                }
            }
            out = rx.recv() => match out {
                Ok(m) => {
                    // A member whose socket takes no more for the grace period is the slowest
                    // reader lws would close: it must not hold the whole instance paused.
                    match tokio::time::timeout(SLOWEST_GRACE, send(&mut ws, m, &info.messages)).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                // Overtaken despite the pause (several senders at once): the lost chunks are
                // gone, as in lws's ring; carry on from the oldest one left.
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(lost = n, "mirror member overtaken"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(PAUSED_POLL), if paused => {}
            _ = tokio::time::sleep_until(idle.deadline()) => {
                if !idle.check(&mut ws).await {
                    return;
                }
            }
        }
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

    #[test]
    fn big_messages_go_in_chunks() {
        let text = "é".repeat(3000);
        let pieces = chunks(Message::text(text.clone()));
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= CHUNK));
        let joined: String = pieces.into_iter().map(|p| p.into_text().unwrap().to_string()).collect();
        assert_eq!(joined, text);
        assert_eq!(chunks(Message::binary(vec![0u8; 10_000])).len(), 3);
    }
}
