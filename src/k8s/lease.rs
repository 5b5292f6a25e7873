//! `coordination.k8s.io/v1` Leases: how replicas agree, through the API, on who orders a
//! certificate (one Lease per certificate, `acme_store`) and who writes statuses (one Lease
//! for the deployment, `Leadership`). Every change is a replace carrying the resourceVersion
//! that was read, so two replicas that both see a free or stale Lease cannot both take it: the
//! API answers the second 409 Conflict.
//!
//! A Lease is stale when its `renewTime` plus `leaseDurationSeconds` has passed. That compares
//! the writer's clock with the reader's, as Kubernetes' own node and leader Leases do; clocks
//! of a cluster's nodes are kept close by NTP, far closer than the seconds a Lease lasts.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

use crate::acme::{ClaimBackend, StoreFuture};

/// One Lease, held or sought by this replica as `holder`.
pub struct LeaseClaim {
    api: Api<Lease>,
    name: String,
    holder: String,
    ttl: Duration,
}

impl LeaseClaim {
    pub fn new(client: kube::Client, namespace: &str, name: &str, holder: &str, ttl: Duration) -> LeaseClaim {
        LeaseClaim { api: Api::namespaced(client, namespace), name: name.to_string(), holder: holder.to_string(), ttl }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(self.ttl.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the Lease when it is free, stale or ours; false when another replica holds it
    /// or won the race for it.
    pub async fn acquire(&self) -> io::Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(api_error)? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(api_error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.holder.as_str());
        if holder.is_some() && !ours && !stale(&spec) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(transitions, if ours { spec.acquire_time } else { None }));
        self.replace(&lease).await
    }

    /// Renews the Lease; false when it is no longer ours.
    pub async fn refresh(&self) -> io::Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(api_error)? else { return Ok(false) };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(spec.lease_transitions.unwrap_or(0), spec.acquire_time));
        self.replace(&lease).await
    }

    /// Lets the Lease go (holder cleared), if it is still ours, so that another replica need
    /// not wait for it to go stale.
    pub async fn release(&self) -> io::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(api_error)? else { return Ok(()) };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        lease.spec = Some(spec);
        self.replace(&lease).await.map(|_| ())
    }

    /// Replaces the Lease as read (its resourceVersion is the precondition); false on 409.
    async fn replace(&self, lease: &Lease) -> io::Result<bool> {
        match self.api.replace(&self.name, &PostParams::default(), lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(api_error(e)),
        }
    }
}

/// Whether the holder has not renewed within the Lease's duration.
fn stale(spec: &LeaseSpec) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return true };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    let now = k8s_openapi::jiff::Timestamp::now();
    renewed.0.as_millisecond().saturating_add(duration * 1000) < now.as_millisecond()
}

fn api_error(e: kube::Error) -> io::Error {
    io::Error::other(e)
}

/// Whether `e` says Leases cannot be used here at all: no permission (403; a Role from before
/// Leases were used) or no such resource (404). Then a lone replica goes on without one,
/// saying so, rather than never ordering or never writing a status.
pub fn unusable(e: &io::Error) -> bool {
    let api = e.get_ref().and_then(|r| r.downcast_ref::<kube::Error>());
    matches!(api, Some(kube::Error::Api(s)) if s.code == 403 || s.code == 404)
}

impl ClaimBackend for LeaseClaim {
    fn acquire(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(LeaseClaim::acquire(self))
    }
    fn refresh(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(LeaseClaim::refresh(self))
    }
    fn release(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(LeaseClaim::release(self))
    }
}

/// Which replica writes statuses: the holder of one Lease. Every replica computes the same
/// statuses from the same objects; only the leader writes them, so replicas never fight over a
/// condition's transition time. A replica that becomes leader sends `()` on `changed`, so the
/// server rebuilds and writes what it computes.
pub struct Leadership {
    leader: Arc<AtomicBool>,
    /// Cancelled when this is dropped: the loop lets the Lease go at once, so another replica
    /// takes over at its next try instead of waiting for the Lease to go stale.
    _stop: Option<tokio_util::sync::DropGuard>,
}

impl Leadership {
    /// Seeks and keeps the Lease `name` in `namespace` for as long as the process runs.
    pub fn start(claim: LeaseClaim, changed: mpsc::UnboundedSender<()>) -> Leadership {
        let leader = Arc::new(AtomicBool::new(false));
        let flag = leader.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let every = claim.ttl / 3;
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                if stopped.is_cancelled() {
                    if flag.load(Ordering::Relaxed)
                        && let Err(e) = claim.release().await
                    {
                        tracing::debug!(lease = %claim.name, error = %e, "cannot release the status Lease");
                    }
                    return;
                }
                let was = flag.load(Ordering::Relaxed);
                let now = if was { claim.refresh().await } else { claim.acquire().await };
                let now = match now {
                    Ok(b) => {
                        renewed = tokio::time::Instant::now();
                        b
                    }
                    Err(e) if unusable(&e) => {
                        tracing::warn!(lease = %claim.name, error = %e,
                            "Leases cannot be used (grant get, create and update on leases): this replica writes statuses as if it were the only one");
                        flag.store(true, Ordering::Relaxed);
                        let _ = changed.send(());
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %claim.name, error = %e, "cannot renew or take the status Lease");
                        // Keep leading while the Lease cannot have gone stale yet (a passing
                        // API error should not leave the statuses unwritten), and no longer.
                        was && renewed.elapsed() + every < claim.ttl
                    }
                };
                if now != was {
                    flag.store(now, Ordering::Relaxed);
                    if now {
                        tracing::info!(lease = %claim.name, "this replica writes the statuses now");
                        let _ = changed.send(());
                    } else {
                        tracing::info!(lease = %claim.name, "another replica writes the statuses now");
                    }
                }
                tokio::select! {
                    _ = stopped.cancelled() => {}
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        Leadership { leader, _stop: Some(stop.drop_guard()) }
    }

    /// A replica that writes every status itself (no Lease: one replica, or tests).
    pub fn always() -> Leadership {
        Leadership { leader: Arc::new(AtomicBool::new(true)), _stop: None }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
        let at = k8s_openapi::jiff::Timestamp::from_millisecond(now - renewed_secs_ago * 1000).unwrap();
        LeaseSpec {
            holder_identity: Some("x".into()),
            renew_time: Some(MicroTime(at)),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_stale_after_its_duration_without_renewal() {
        assert!(!stale(&spec(5, 30)));
        assert!(stale(&spec(31, 30)));
        assert!(stale(&LeaseSpec::default()), "never renewed");
    }
}
