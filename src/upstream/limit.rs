//! At most so many requests in flight to one endpoint (`"proxy-max-conns"`; each holds one
//! upstream connection while it runs), with a short queue: a request that finds the endpoint
//! full waits for a turn, up to half the proxy timeout (so that it still has time to be
//! answered), unless the queue is full too. Either way it
//! is answered 503 rather than opening connection after connection to an upstream that cannot
//! keep up (a thousand slow uploads must not become a thousand upstream connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many requests may wait for a turn at one endpoint, beyond those in flight. A waiting
/// request costs a small future, not a connection, so the queue is deep enough for HTTP/2
/// clients that multiplex (64 connections with 10 streams each put 640 requests in flight at
/// once, measured with h2load): 64 turned that load into 503s that nginx and haproxy do not give.
const MAX_WAITING: usize = 1024;

#[derive(Debug)]
pub struct Limit {
    permits: Option<Arc<Semaphore>>,
    max: usize,
    waiting: AtomicUsize,
}

/// A turn at the endpoint; the next request may go when it is dropped.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("the upstream has its most requests in flight and its queue is full")]
    QueueFull,
    #[error("no turn at the upstream came within the timeout")]
    Timeout,
}

impl Limit {
    /// `max` requests in flight; 0: no limit.
    pub fn new(max: usize) -> Self {
        Limit { permits: (max > 0).then(|| Arc::new(Semaphore::new(max))), max, waiting: AtomicUsize::new(0) }
    }

    /// Requests in flight now (holding a turn), read from the permits taken: what load
    /// balancing compares. Without a limit nothing is counted (0): the request path pays for no
    /// counter it does not need, and the choice among endpoints is then random.
    pub fn in_flight(&self) -> usize {
        self.permits.as_ref().map_or(0, |p| self.max - p.available_permits())
    }

    /// A turn now, or after waiting at most half of `timeout`.
    pub async fn enter(&self, timeout: Duration) -> Result<Turn, Busy> {
        let wait = timeout / 2;
        let Some(permits) = &self.permits else { return Ok(Turn(None)) };
        if let Ok(p) = permits.clone().try_acquire_owned() {
            return Ok(Turn(Some(p)));
        }
        let _queued = Queued::join(&self.waiting).ok_or(Busy::QueueFull)?;
        // The place in the queue is given back however the wait ends, a request dropped
        // while it waits (its client left) included.
        let got = tokio::time::timeout(wait, permits.clone().acquire_owned()).await;
        match got {
            Ok(Ok(p)) => Ok(Turn(Some(p))),
            _ => Err(Busy::Timeout),
        }
    }
}

/// A place in the queue, given back when dropped.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(waiting: &'a AtomicUsize) -> Option<Self> {
        if waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Queued(waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_queue_then_overflow() {
        let limit = Arc::new(Limit::new(1));
        let first = limit.enter(Duration::from_secs(1)).await.unwrap();
        assert_eq!(limit.in_flight(), 1);
        assert_eq!(limit.enter(Duration::from_millis(20)).await.unwrap_err(), Busy::Timeout);
        // A waiter gets the turn as soon as it is given back.
        let l = limit.clone();
        let waiter = tokio::spawn(async move { l.enter(Duration::from_secs(30)).await.is_ok() });
        while limit.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(waiter.await.unwrap());
        assert_eq!(limit.in_flight(), 0, "the waiter's turn ended with its task");
        // The queue has room for MAX_WAITING; one more is refused at once.
        let held = limit.enter(Duration::from_secs(1)).await.unwrap();
        let mut queued = Vec::new();
        for _ in 0..MAX_WAITING {
            let l = limit.clone();
            queued.push(tokio::spawn(async move { l.enter(Duration::from_secs(30)).await.is_ok() }));
        }
        while limit.waiting.load(Ordering::Acquire) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        assert_eq!(limit.enter(Duration::from_secs(30)).await.unwrap_err(), Busy::QueueFull);
        drop(held);
        for q in queued {
            assert!(q.await.unwrap(), "each queued request gets its turn");
        }
        assert!(Limit::new(0).enter(Duration::ZERO).await.is_ok(), "0: no limit");
        // A request dropped while it waits (its client left) gives its place back.
        let held = limit.enter(Duration::from_secs(1)).await.unwrap();
        for _ in 0..MAX_WAITING * 2 {
            let l = limit.clone();
            let waiter = tokio::spawn(async move { l.enter(Duration::from_secs(60)).await.is_ok() });
            while limit.waiting.load(Ordering::Acquire) == 0 {
                tokio::task::yield_now().await;
            }
            waiter.abort();
            let _ = waiter.await;
        }
        assert_eq!(limit.waiting.load(Ordering::Acquire), 0, "no place leaked");
        drop(held);
    }
}
