//! The plain upstream connections of one proxy mount, as the passthrough uses them: sockets
//! with nothing in flight, kept for the next request.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::origin::proxy::{Connector, Stream};

/// How long an idle upstream connection is kept.
const IDLE_LIMIT: Duration = Duration::from_secs(90);
/// At most this many idle connections per mount.
const MAX_IDLE: usize = 256;

pub struct RawPool {
    idle: Mutex<Vec<(Stream, Instant)>>,
    connector: Connector,
}

impl RawPool {
    pub fn new(connector: Connector) -> Self {
        RawPool { idle: Mutex::new(Vec::new()), connector }
    }

    /// The most recently used idle connection that is still open.
    pub fn checkout(&self) -> Option<Stream> {
        let mut idle = self.idle.lock().expect("upstream pool");
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT && conn.is_idle_open() {
                return Some(conn);
            }
        }
        None
    }

    /// A new connection, within the mount's timeout.
    pub async fn dial(&self) -> io::Result<Stream> {
        self.connector.open().await
    }

    /// Keeps a connection whose response was read to its end. Expired entries go at the same
    /// time, so a burst's leftovers do not hold sockets open.
    pub fn checkin(&self, conn: Stream) {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("upstream pool");
        // Checked out from the back, so the front holds the oldest: the expired are a prefix.
        let expired = idle.iter().take_while(|(_, since)| now.duration_since(*since) >= IDLE_LIMIT).count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push((conn, now));
        }
    }
}
