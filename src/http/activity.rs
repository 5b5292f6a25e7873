//! What a connection's timers need to know, shared by the request path and the byte stream:
//! requests in flight and when the last finished, whether a request head is being read, and
//! whether the peer is keeping up with what we write.
//!
//! Times are milliseconds since the connection started, in atomics, because the service, the
//! body's completion hook and the stream wrapper update them from inside hyper.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    last_done_ms: AtomicU64,
    keepalive_ms: AtomicU64,
    /// 0 when no request head is being read; else 1 + the time its first byte arrived.
    head_started_ms: AtomicU64,
    write_blocked: AtomicBool,
    last_write_ms: AtomicU64,
    /// Woken when a request finishes, so the connection re-arms its timers.
    pub changed: Notify,
}

/// What the connection should do next, judged from the activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Work in progress; look again at this time.
    Busy(Instant),
    /// A request head is arriving; it must be complete by this time.
    ReadingHead(Instant),
    /// Nothing to do since this time.
    Idle(Instant),
    /// A response has not moved for longer than the timeout: the peer stopped reading.
    Stalled,
}

impl Activity {
    pub fn new(keepalive: Duration) -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
            keepalive_ms: AtomicU64::new(keepalive.as_millis() as u64),
            head_started_ms: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            last_write_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// A request head is complete and the service has it.
    pub fn begin(&self) {
        self.head_started_ms.store(0, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// The response body is finished with (sent to hyper, aborted, or never needed).
    pub fn finish(&self) {
        self.last_done_ms.store(self.now_ms(), Ordering::Release);
        self.served.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Bytes arrived from the peer.
    pub fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_started_ms.load(Ordering::Acquire) == 0 {
            self.head_started_ms.store(self.now_ms() + 1, Ordering::Release);
        }
    }

    /// A write went through (`true`) or had to wait for the peer (`false`).
    pub fn on_write(&self, progressed: bool) {
        if progressed {
            self.last_write_ms.store(self.now_ms(), Ordering::Release);
        }
        self.write_blocked.store(!progressed, Ordering::Release);
    }

    /// The keep-alive of the vhost (or mount) that served the latest request.
    pub fn set_keepalive(&self, d: Duration) {
        self.keepalive_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms.load(Ordering::Relaxed))
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    /// The state of the connection. `timeout` is `timeout-secs`: the most a request head may
    /// take to arrive, and the most a response may go without the peer reading any of it.
    pub fn next(&self, timeout: Duration) -> Next {
        let now = self.now_ms();
        let t = timeout.as_millis() as u64;
        let last_write = self.last_write_ms.load(Ordering::Acquire);
        if self.write_blocked.load(Ordering::Acquire) {
            if now >= last_write + t {
                return Next::Stalled;
            }
            return Next::Busy(self.at(last_write + t));
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Next::Busy(self.at(now + t));
        }
        let head = self.head_started_ms.load(Ordering::Acquire);
        if head > 0 {
            return Next::ReadingHead(self.at(head - 1 + t));
        }
        Next::Idle(self.at(self.last_done_ms.load(Ordering::Acquire).max(last_write)))
    }

    /// When an idle connection is closed: the header timeout before the first request,
    /// keep-alive after a response.
    pub fn close_at(&self, timeout: Duration) -> Instant {
        if self.served() == 0 {
            return self.start + timeout;
        }
        let idle_since = self.last_done_ms.load(Ordering::Acquire).max(self.last_write_ms.load(Ordering::Acquire));
        self.at(idle_since) + self.keepalive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(15);

    #[test]
    fn states() {
        let a = Activity::new(Duration::from_secs(5));
        assert!(matches!(a.next(T), Next::Idle(_)));
        assert!(a.close_at(T) > Instant::now() + Duration::from_secs(14));
        a.on_read();
        let Next::ReadingHead(by) = a.next(T) else { panic!() };
        assert!(by > Instant::now() + Duration::from_secs(14));
        a.begin();
        assert!(matches!(a.next(T), Next::Busy(_)));
        a.on_write(false);
        assert!(matches!(a.next(T), Next::Busy(_)));
        assert_eq!(a.next(Duration::ZERO), Next::Stalled);
        a.on_write(true);
        a.finish();
        assert!(matches!(a.next(T), Next::Idle(_)));
        assert!(a.close_at(T) < Instant::now() + Duration::from_secs(6));
    }
}
