//! D10: a websocket that has received nothing for a while gets a PING; if nothing comes back
//! in time, it is closed. lwsws ignores `ws-pingpong-secs`; this server honours it (PING after
//! N idle seconds, close at 2N) and without it keeps lws's own timing (PING at 40 s, close at 50 s).

use std::time::Duration;

use futures::SinkExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::frames::Ws;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    pub ping_after: Duration,
    pub close_after: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::from_pingpong_secs(None)
    }
}

impl IdlePolicy {
    pub fn from_pingpong_secs(secs: Option<u32>) -> Self {
        match secs {
            Some(s) if s > 0 => {
                let n = Duration::from_secs(s.into());
                IdlePolicy { ping_after: n, close_after: n * 2 }
            }
            _ => IdlePolicy { ping_after: Duration::from_secs(40), close_after: Duration::from_secs(50) },
        }
    }
}

#[derive(Debug)]
pub struct Idle {
    policy: IdlePolicy,
    last_rx: Instant,
    pinged: bool,
}

impl Idle {
    pub fn new(policy: IdlePolicy) -> Self {
        Idle { policy, last_rx: Instant::now(), pinged: false }
    }

    /// Anything arrived (a message, a pong, a ping).
    pub fn on_rx(&mut self) {
        self.last_rx = Instant::now();
        self.pinged = false;
    }

    /// When `check` next has something to do.
    pub fn deadline(&self) -> Instant {
        self.last_rx + if self.pinged { self.policy.close_after } else { self.policy.ping_after }
    }

    /// At the deadline: send the PING, or report (false) that the peer is gone.
    pub async fn check(&mut self, ws: &mut Ws) -> bool {
        if Instant::now() < self.deadline() {
            return true;
        }
        if self.pinged {
            return false;
        }
        self.pinged = true;
        ws.send(Message::Ping(Vec::new().into())).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let d = IdlePolicy::from_pingpong_secs(None);
        assert_eq!((d.ping_after.as_secs(), d.close_after.as_secs()), (40, 50));
        let p = IdlePolicy::from_pingpong_secs(Some(200));
        assert_eq!((p.ping_after.as_secs(), p.close_after.as_secs()), (200, 400));
    }
}
