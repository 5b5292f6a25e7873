//! `lws-server-status` (D12; deleted from lws in 4.2, kept here): every `update-ms` (whole
//! seconds, at least one) each client gets the status document of spec 6: server and system
//! figures, the vhosts (unless `hide-vhosts`) and the contents of every `filepath`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{BoxFuture, Idle, Protocol, Rx, VhostSummary, Ws, WsInfo, receive, send};
use crate::model;

/// lws read at most this much of each file.
const MAX_FILE: usize = 255;

#[derive(Debug)]
pub struct ServerStatus {
    period: Duration,
    hide_vhosts: bool,
    files: Vec<String>,
    vhost: VhostSummary,
    started: Instant,
}

impl ServerStatus {
    pub fn new(p: &model::Protocol, vhost: VhostSummary) -> Self {
        let ms: u64 = p.pvo("update-ms").and_then(|v| v.trim().parse().ok()).unwrap_or(5000);
        let secs = ((ms + 500) / 1000).max(1);
        let hide_vhosts = p.pvo("hide-vhosts").is_some_and(|v| matches!(v.trim(), "1" | "on" | "yes" | "true"));
        let files = p.pvos.iter().filter(|(k, _)| k == "filepath").map(|(_, v)| v.clone()).collect();
        ServerStatus { period: Duration::from_secs(secs), hide_vhosts, files, vhost, started: Instant::now() }
    }

    fn document(&self, metrics: &crate::metrics::Metrics) -> String {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut l = load.split_whitespace();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let mut context = json!({
            "version": concat!("lwsws-", env!("CARGO_PKG_VERSION")),
            "uptime": self.started.elapsed().as_secs().to_string(),
            "l1": l.next().unwrap_or("0"),
            "l2": l.next().unwrap_or("0"),
            "l3": l.next().unwrap_or("0"),
            "statm": statm.trim(),
            "contexts": [ { "uptime": self.started.elapsed().as_secs().to_string(), "deprecated": "0" } ],
            "server": metrics.summary(),
        });
        if !self.hide_vhosts {
            let v = &self.vhost;
            let mounts: Vec<Value> =
                v.mounts.iter().map(|(mp, origin)| json!({ "mountpoint": mp, "origin": origin })).collect();
            context["contexts"][0]["vhosts"] = json!([{
                "name": v.name,
                "port": v.port.to_string(),
                "use_ssl": if v.tls { "1" } else { "0" },
                "sts": if v.sts { "1" } else { "0" },
                "mounts": mounts,
                "ws-protocols": v.protocols,
            }]);
        }
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|path| {
                let mut val = std::fs::read(path).unwrap_or_default();
                val.truncate(MAX_FILE);
                json!({ "path": path, "val": String::from_utf8_lossy(&val) })
            })
            .collect();
        json!({ "i": context, "files": files }).to_string()
    }
}

/// One document per period. A client whose socket stalled gets the next one when it takes
/// it, built then; the periods missed meanwhile are skipped, not sent back to back as stale
/// copies (tokio's default is to burst them).
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}

impl Protocol for ServerStatus {
    fn name(&self) -> &str {
        "lws-server-status"
    }

    fn websocket(self: Arc<Self>, ws: Ws, info: WsInfo) -> Option<BoxFuture<()>> {
        Some(Box::pin(async move {
            let mut ws = ws;
            let mut tick = ticker(self.period);
            let mut idle = Idle::new(info.idle);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if send(&mut ws, Message::text(self.document(&info.metrics)), &info.messages).await.is_err() {
                            return;
                        }
                    }
                    msg = ws.next() => {
                        idle.on_rx();
                        if let Rx::End = receive(&mut ws, msg, &info.messages).await {
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
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_client_is_not_sent_the_missed_periods() {
        let t = ticker(Duration::from_secs(1));
        assert_eq!(t.missed_tick_behavior(), tokio::time::MissedTickBehavior::Skip);
        assert_eq!(t.period(), Duration::from_secs(1));
    }
}
