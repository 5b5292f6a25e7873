//! What a connection's idle timer needs to know: requests in flight and when the last finished.
//!
//! The service marks a request started and its body's completion hook marks it finished; the
//! connection task reads this to decide when an idle keep-alive connection is closed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    last_done_ms: AtomicU64,
    keepalive_ms: AtomicU64,
    /// Woken when a request finishes, so the connection re-arms its idle timer.
    pub changed: Notify,
}

impl Activity {
    pub fn new(keepalive: Duration) -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
            keepalive_ms: AtomicU64::new(keepalive.as_millis() as u64),
            changed: Notify::new(),
        }
    }

    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub fn finish(&self) {
        self.last_done_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Release);
        self.served.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// The keep-alive of the vhost (or mount) that served the latest request.
    pub fn set_keepalive(&self, d: Duration) {
        self.keepalive_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// When an idle HTTP/1 connection should drop hyper's buffers and wait cheaply for the next
    /// request: `park_after` past the last response, or at the close deadline if that is sooner.
    pub fn park_at(&self, header_timeout: Duration, park_after: Duration) -> Option<Instant> {
        let close = self.deadline(header_timeout)?;
        if self.served.load(Ordering::Acquire) == 0 {
            return Some(close);
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(close.min(self.start + last + park_after))
    }

    /// When this connection should be closed if nothing else happens: `None` while a request
    /// is in flight. Before the first request the header timeout applies, after it keep-alive.
    pub fn deadline(&self, header_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.served.load(Ordering::Acquire) == 0 {
            return Some(self.start + header_timeout);
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(self.start + last + Duration::from_millis(self.keepalive_ms.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        let a = Activity::new(Duration::from_secs(5));
        let first = a.deadline(Duration::from_secs(15)).unwrap();
        assert!(first > Instant::now() + Duration::from_secs(14));
        a.begin();
        assert!(a.deadline(Duration::from_secs(15)).is_none());
        a.finish();
        let next = a.deadline(Duration::from_secs(15)).unwrap();
        assert!(next < Instant::now() + Duration::from_secs(6));
    }
}
