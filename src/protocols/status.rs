//! `lws-status` (spec 6): on every connect and close, each client gets the list of connected
//! clients as JSON. What clients send is ignored.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, receive, send};

#[derive(Debug)]
struct Conn {
    id: u64,
    peer: String,
    time: u64,
    ua: String,
}

#[derive(Debug)]
pub struct Status {
    hostname: String,
    conns: Mutex<(u64, Vec<Conn>)>,
    changed: watch::Sender<u64>,
}

impl Status {
    pub fn new(hostname: &str) -> Self {
        Status { hostname: hostname.to_string(), conns: Mutex::new((0, Vec::new())), changed: watch::channel(0).0 }
    }

    fn document(&self, wsi: u64) -> String {
        let conns = self.conns.lock();
        let list: Vec<_> =
            conns.1.iter().map(|c| json!({ "peer": c.peer, "time": c.time.to_string(), "ua": c.ua })).collect();
        json!({
            "version": concat!("lwsws-", env!("CARGO_PKG_VERSION")),
            "wss_over_h2": "0",
            "hostname": self.hostname,
            "wsi": wsi.to_string(),
            "conns": list,
        })
        .to_string()
    }

    fn add(&self, info: &WsInfo) -> u64 {
        let mut g = self.conns.lock();
        g.0 += 1;
        let id = g.0;
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let peer = info.peer.map(|p| p.ip().to_canonical().to_string()).unwrap_or_default();
        g.1.push(Conn { id, peer, time, ua: info.user_agent.clone() });
        drop(g);
        self.changed.send_modify(|v| *v += 1);
        id
    }

    fn remove(&self, id: u64) {
        self.conns.lock().1.retain(|c| c.id != id);
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Protocol for Status {
    fn name(&self) -> &str {
        "lws-status"
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let mut rx = self.changed.subscribe();
            let id = self.add(&info);
            let mut idle = Idle::new(info.idle);
            rx.mark_changed();
            loop {
                tokio::select! {
                    r = rx.changed() => {
                        if r.is_err() || send(&mut ws, Message::text(self.document(id)), &info.messages).await.is_err() {
                            break;
                        }
                    }
                    msg = ws.next() => {
                        idle.on_rx();
                        if let Rx::End = receive(&mut ws, msg, &info.messages).await {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(idle.deadline()) => {
                        if !idle.check(&mut ws).await {
                            break;
                        }
                    }
                }
            }
            self.remove(id);
        }))
    }
}
