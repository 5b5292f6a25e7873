//! One orderer per certificate among replicas. Before ordering, a replica takes the
//! certificate's claim (a Lease in Kubernetes mode, a lock file beside the certificate in a
//! shared directory otherwise); it refreshes the claim while it works and gives it up when the
//! order ends. A claim that is not refreshed for `lock_ttl()` is stale: a replica that died
//! mid-order loses it, and another takes it over and finishes the work.
//!
//! Claims are per certificate, not one for all ACME work: certificates are independent, so a
//! slow or failing order for one name never holds up another, and after a take-over only the
//! dead replica's own certificates move.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What the stores' and claims' async methods return (trait objects cannot have `async fn`).
pub type StoreFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How a claim is kept where the replicas can all see it.
pub trait ClaimBackend: Send + Sync + 'static {
    /// Takes the claim when nobody holds it, its holder let it go stale, or this replica holds
    /// it already; `Ok(false)` when another replica holds it.
    fn acquire(&self) -> StoreFuture<'_, io::Result<bool>>;
    /// Extends the claim; `Ok(false)` when it is no longer this replica's.
    fn refresh(&self) -> StoreFuture<'_, io::Result<bool>>;
    /// Gives the claim up, if it is still this replica's.
    fn release(&self) -> StoreFuture<'_, io::Result<()>>;
}

/// A claim nobody else can see: for a replica that has no way to coordinate and must act
/// alone.
pub struct Unshared;

impl ClaimBackend for Unshared {
    fn acquire(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
    fn refresh(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
    fn release(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A claim held by this replica. It is refreshed in the background every third of the TTL;
/// `lost` fires when a refresh finds it taken, or when refreshes have failed for a whole TTL
/// (then another replica may take it, so this one must stop). Dropping it releases it.
pub struct OrderLock {
    pub lost: CancellationToken,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl OrderLock {
    /// Tries to take the claim through `backend`; `Ok(None)` when another replica holds it.
    pub async fn try_take(backend: Arc<dyn ClaimBackend>, ttl: Duration) -> io::Result<Option<OrderLock>> {
        if !backend.acquire().await? {
            return Ok(None);
        }
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(backend, ttl, lost.clone(), stop.clone()));
        Ok(Some(OrderLock { lost, stop, task: Some(task) }))
    }

    /// Gives the claim up and waits until it is released.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        // The refresher releases on its way out.
        self.stop.cancel();
    }
}

async fn keep(backend: Arc<dyn ClaimBackend>, ttl: Duration, lost: CancellationToken, stop: CancellationToken) {
    let every = ttl / 3;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        match backend.refresh().await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!("ACME: another replica took this certificate's claim; stopping the order");
                lost.cancel();
                return;
            }
            Err(e) if last_ok.elapsed() + every >= ttl => {
                tracing::warn!(error = %e, "ACME: cannot refresh this certificate's claim; stopping the order");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "ACME: cannot refresh this certificate's claim; retrying"),
        }
    }
    if let Err(e) = backend.release().await {
        tracing::warn!(error = %e, "ACME: cannot release this certificate's claim; it goes stale by itself");
    }
}

/// How long an unrefreshed claim lasts: `LWSWS_ACME_CLAIM_SECS`, default 30 s. Shorter means a
/// faster take-over after a replica dies, and more refresh writes.
pub fn lock_ttl() -> Duration {
    let secs = std::env::var("LWSWS_ACME_CLAIM_SECS").ok().and_then(|s| s.parse::<u64>().ok()).filter(|s| *s >= 1);
    Duration::from_secs(secs.unwrap_or(30))
}

/// This process's name in claims: the pod (or host) name, the process id and a random part,
/// so that two processes on one host, or a restarted pod with the same name, never pass for
/// each other.
pub fn replica_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::BuildHasher;
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "lwsws".into());
        let noise = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now()) as u32;
        format!("{host}-{}-{noise:08x}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A claim in memory whose refreshes can be made to fail or find it taken.
    #[derive(Default)]
    struct Scripted {
        held: Mutex<bool>,
        refresh: Mutex<Option<io::Result<bool>>>,
        released: Mutex<u32>,
    }

    impl ClaimBackend for Scripted {
        fn acquire(&self) -> StoreFuture<'_, io::Result<bool>> {
            Box::pin(async move {
                let mut held = self.held.lock();
                Ok(!std::mem::replace(&mut *held, true))
            })
        }
        fn refresh(&self) -> StoreFuture<'_, io::Result<bool>> {
            Box::pin(async move {
                match &*self.refresh.lock() {
                    None => Ok(true),
                    Some(Ok(b)) => Ok(*b),
                    Some(Err(e)) => Err(io::Error::other(e.to_string())),
                }
            })
        }
        fn release(&self) -> StoreFuture<'_, io::Result<()>> {
            Box::pin(async move {
                *self.held.lock() = false;
                *self.released.lock() += 1;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_exclusive_refreshed_and_released() {
        let b = Arc::new(Scripted::default());
        let ttl = Duration::from_secs(30);
        let lock = OrderLock::try_take(b.clone(), ttl).await.unwrap().expect("free");
        assert!(OrderLock::try_take(b.clone(), ttl).await.unwrap().is_none(), "held");
        tokio::time::sleep(ttl * 2).await;
        assert!(!lock.lost.is_cancelled(), "kept by its refreshes");
        lock.release().await;
        assert_eq!(*b.released.lock(), 1);
        let again = OrderLock::try_take(b.clone(), ttl).await.unwrap().expect("released, so free");
        drop(again);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*b.released.lock(), 2, "a dropped claim is released too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_taken_by_another_is_lost_at_once() {
        let b = Arc::new(Scripted::default());
        let lock = OrderLock::try_take(b.clone(), Duration::from_secs(30)).await.unwrap().unwrap();
        *b.refresh.lock() = Some(Ok(false));
        tokio::time::timeout(Duration::from_secs(11), lock.lost.cancelled()).await.expect("lost at the first refresh");
    }

    #[tokio::test(start_paused = true)]
    async fn failing_refreshes_lose_the_claim_only_after_a_whole_ttl() {
        let b = Arc::new(Scripted::default());
        let ttl = Duration::from_secs(30);
        let lock = OrderLock::try_take(b.clone(), ttl).await.unwrap().unwrap();
        *b.refresh.lock() = Some(Err(io::Error::other("API down")));
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(!lock.lost.is_cancelled(), "one failed refresh is not a lost claim");
        tokio::time::timeout(ttl, lock.lost.cancelled()).await.expect("lost before the claim could go stale");
    }

    #[test]
    fn replica_ids_name_the_process() {
        let id = replica_id();
        assert!(id.contains(&format!("-{}-", std::process::id())), "{id}");
        assert_eq!(id, replica_id(), "one per process");
    }
}
