//! The idle upstream connections of one endpoint, for both request paths: each kept at most
//! `IDLE_LIMIT`, at most `MAX_IDLE` of them, the most recently used handed out first.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// How long an idle upstream connection is kept.
const IDLE_LIMIT: Duration = Duration::from_secs(90);
/// At most this many idle connections per endpoint.
const MAX_IDLE: usize = 256;

pub struct IdleConns<T> {
    /// Oldest first: connections go in at the back and are taken from the back.
    list: Mutex<Vec<(T, Instant)>>,
}

impl<T> Default for IdleConns<T> {
    fn default() -> Self {
        IdleConns { list: Mutex::new(Vec::new()) }
    }
}

impl<T> IdleConns<T> {
    /// The most recently used connection that has not expired and that `usable` accepts;
    /// the ones passed over on the way are closed.
    pub fn take(&self, mut usable: impl FnMut(&mut T) -> bool) -> Option<T> {
        let mut list = self.list.lock();
        while let Some((mut conn, since)) = list.pop() {
            if since.elapsed() < IDLE_LIMIT && usable(&mut conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for a later request. Expired entries go at the same time, so a burst's
    /// leftovers do not hold sockets open.
    pub fn put(&self, conn: T) {
        let now = Instant::now();
        let mut list = self.list.lock();
        // Oldest first, so the expired are a prefix.
        let expired = list.iter().take_while(|(_, since)| now.duration_since(*since) >= IDLE_LIMIT).count();
        list.drain(..expired);
        if list.len() < MAX_IDLE {
            list.push((conn, now));
        }
    }
}
