//! `lws-status` (spec 6): on every connect and close, each client gets the list of connected
//! clients as JSON. What clients send is ignored.
//!
//! Bounded under abuse: a User-Agent is shown up to `MAX_UA` bytes, the list up to `MAX_SHOWN`
//! clients (then `"more"` counts the rest), and a client that reads slowly is never queued
//! stale documents: its only pending state is a "changed" flag (a `watch`), and the document it
//! gets when its socket takes one is built then, from the list as it is.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Rx, Ws, WsInfo, receive, send};

/// The bytes of a User-Agent shown; a longer one is cut there and marked with `...`.
const MAX_UA: usize = 128;
/// The clients listed, oldest first; the rest are only counted.
const MAX_SHOWN: usize = 128;

#[derive(Debug)]
struct Conn {
    id: u64,
    peer: String,
    time: u64,
    ua: String,
}

#[derive(Debug, Default)]
struct Members {
    last_id: u64,
    conns: Vec<Conn>,
    /// The `conns` array (and `more`) as JSON, built once per change for every client.
    listed: Option<Arc<str>>,
}

#[derive(Debug)]
pub struct Status {
    hostname: String,
    members: Mutex<Members>,
    changed: watch::Sender<u64>,
}

/// A User-Agent as shown: at most `MAX_UA` bytes (cut on a character boundary), then `...`.
fn shown_ua(ua: &str) -> String {
    if ua.len() <= MAX_UA {
        return ua.to_string();
    }
    let mut end = MAX_UA;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &ua[..end])
}

impl Status {
    pub fn new(hostname: &str) -> Self {
        Status { hostname: hostname.to_string(), members: Mutex::default(), changed: watch::channel(0).0 }
    }

    /// The document for the client `wsi`, from the list as it is now.
    fn document(&self, wsi: u64) -> String {
        let listed = {
            let mut m = self.members.lock();
            let Members { conns, listed, .. } = &mut *m;
            listed.get_or_insert_with(|| list(conns)).clone()
        };
        let head = json!({
            "version": concat!("lwsws-", env!("CARGO_PKG_VERSION")),
            "wss_over_h2": "0",
            "hostname": self.hostname,
            "wsi": wsi.to_string(),
        })
        .to_string();
        // `head` is a JSON object: its closing brace gives way to the list's members.
        format!("{},{listed}}}", &head[..head.len() - 1])
    }

    fn add(&self, peer: Option<SocketAddr>, user_agent: &str) -> u64 {
        let mut m = self.members.lock();
        m.last_id += 1;
        let id = m.last_id;
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let peer = peer.map(|p| p.ip().to_canonical().to_string()).unwrap_or_default();
        m.conns.push(Conn { id, peer, time, ua: shown_ua(user_agent) });
        m.listed = None;
        drop(m);
        self.changed.send_modify(|v| *v += 1);
        id
    }

    fn remove(&self, id: u64) {
        let mut m = self.members.lock();
        m.conns.retain(|c| c.id != id);
        m.listed = None;
        drop(m);
        self.changed.send_modify(|v| *v += 1);
    }
}

/// `"conns":[…]`, plus `"more":"N"` when clients beyond `MAX_SHOWN` are left out.
fn list(conns: &[Conn]) -> Arc<str> {
    let shown: Vec<_> = conns
        .iter()
        .take(MAX_SHOWN)
        .map(|c| json!({ "peer": c.peer, "time": c.time.to_string(), "ua": c.ua }))
        .collect();
    let mut out = format!("\"conns\":{}", serde_json::Value::Array(shown));
    if conns.len() > MAX_SHOWN {
        out.push_str(&format!(",\"more\":\"{}\"", conns.len() - MAX_SHOWN));
    }
    out.into()
}

impl Protocol for Status {
    fn name(&self) -> &str {
        "lws-status"
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let mut rx = self.changed.subscribe();
            let id = self.add(info.peer, &info.user_agent);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &Status, wsi: u64) -> serde_json::Value {
        serde_json::from_str(&s.document(wsi)).expect("the document is JSON")
    }

    #[test]
    fn a_client_that_never_reads_has_one_latest_document_pending() {
        let s = Status::new("host");
        let mut reader = s.changed.subscribe();
        let ids: Vec<u64> = (0..1000).map(|_| s.add(None, "agent")).collect();
        for id in &ids[..999] {
            s.remove(*id);
        }
        // 1999 changes, and all that waits for this reader is one flag...
        assert!(reader.has_changed().unwrap());
        reader.borrow_and_update();
        assert!(!reader.has_changed().unwrap(), "only the latest is pending, not a queue of stale ones");
        // ...and the document it then gets is the list as it is now.
        let d = doc(&s, 7);
        assert_eq!(d["conns"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["wsi"], "7");
        assert_eq!(d["hostname"], "host");
    }

    #[test]
    fn user_agents_are_cut_and_marked() {
        assert_eq!(shown_ua("short"), "short");
        let long = shown_ua(&"x".repeat(8000));
        assert_eq!(long, format!("{}...", "x".repeat(128)));
        // Cut on a character boundary.
        let cut = shown_ua(&format!("{}é{}", "a".repeat(127), "b".repeat(10)));
        assert_eq!(cut, format!("{}...", "a".repeat(127)));
    }

    #[test]
    fn the_list_shows_128_clients_and_counts_the_rest() {
        let s = Status::new("host");
        for i in 0..200 {
            s.add(None, &format!("agent-{i}"));
        }
        let d = doc(&s, 1);
        let conns = d["conns"].as_array().unwrap();
        assert_eq!(conns.len(), 128);
        assert_eq!(conns[0]["ua"], "agent-0", "the oldest first");
        assert_eq!(d["more"], "72");
        let s = Status::new("host");
        s.add(None, "a");
        assert!(doc(&s, 1).get("more").is_none(), "no count when all are shown");
    }
}
