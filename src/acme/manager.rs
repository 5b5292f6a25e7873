//! One task per ACME vhost: load what is stored, order a certificate when there is none (or
//! it does not cover the configured names), renew when a third of its lifetime is left, and
//! back off with jitter when the CA fails. A certificate that is still valid is never removed
//! or replaced by a failed attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::challenge::{Answer, Challenges, Published};
use super::client::http_client;
use super::lock::OrderLock;
use super::store::{CertStore, StoreFactory};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::model::acme::{Acme, Challenge};
use crate::tls::CertSlots;

/// First retry after a failure; doubles per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// A CA that says "rate limited" is not asked again sooner than this.
const RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(900);
/// How often a replica that does not hold a certificate's claim looks for the certificate the
/// holder is ordering (and for a claim gone stale).
const WAIT_FOR_OTHER: Duration = Duration::from_secs(3);
/// How often a replica whose certificate is not due looks for a newer one in the store, so
/// that a certificate another replica renewed is served everywhere within this.
const STORE_RECHECK: Duration = Duration::from_secs(30);

/// The running managers, by vhost name; `apply` brings them in line with a config. They fill
/// the server's certificate slots, publish in its challenge answers and keep what they obtain
/// in its store.
pub struct Managers {
    running: HashMap<String, (Acme, CancellationToken)>,
    slots: Arc<CertSlots>,
    challenges: Arc<Challenges>,
    stores: Arc<StoreFactory>,
}

impl Managers {
    pub fn new(slots: Arc<CertSlots>, challenges: Arc<Challenges>, stores: Arc<StoreFactory>) -> Self {
        Managers { running: HashMap::new(), slots, challenges, stores }
    }

    /// Starts a manager for each ACME vhost that is new or whose ACME settings changed, and
    /// stops those of vhosts that went away. The certificates they obtained stay in their slots.
    pub fn apply(&mut self, config: &Config, metrics: &Arc<Metrics>, parent: &CancellationToken) {
        let wanted: HashMap<&str, &Acme> =
            config.vhosts.iter().filter_map(|v| Some((v.name.as_str(), v.acme.as_ref()?))).collect();
        // Replicas sharing a certificate's directory find each other's answers there.
        let mut dirs: Vec<_> = wanted.values().map(|a| super::store::answer_dir(&a.cert_path)).collect();
        dirs.sort();
        dirs.dedup();
        self.challenges.set_answer_dirs(dirs);
        self.running.retain(|name, (acme, stop)| {
            let keep = wanted.get(name.as_str()).is_some_and(|a| *a == acme);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (name, acme) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            let stop = parent.child_token();
            let task = Manager {
                vhost: name.to_string(),
                acme: acme.clone(),
                store: (self.stores)(name, acme),
                metrics: metrics.clone(),
                slots: self.slots.clone(),
                challenges: self.challenges.clone(),
            };
            tokio::spawn(task.run(stop.clone()));
            self.running.insert(name.to_string(), (acme.clone(), stop));
        }
    }
}

struct Manager {
    vhost: String,
    acme: Acme,
    store: Box<dyn CertStore>,
    metrics: Arc<Metrics>,
    slots: Arc<CertSlots>,
    challenges: Arc<Challenges>,
}

/// When a certificate valid from `not_before` to `not_after` is renewed: when a third of its
/// lifetime is left.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before) / 3
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `FIRST_BACKOFF` doubled per earlier failure, capped, with ±25 % jitter so that many
/// servers that failed together do not come back together.
fn backoff(failures: u32, rate_limited: bool) -> Duration {
    use std::hash::BuildHasher;
    let noise = std::collections::hash_map::RandomState::new().hash_one((failures, now())) % 1000;
    jittered_backoff(failures, rate_limited, noise)
}

/// `backoff` with its noise (0..1000) given. The rate-limit floor applies after the jitter:
/// the README promises at least `RATE_LIMITED_BACKOFF`, so the jitter may only add to it.
fn jittered_backoff(failures: u32, rate_limited: bool, noise: u64) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    let jittered = base.mul_f64(0.75 + noise.min(999) as f64 / 2000.0);
    if rate_limited { jittered.max(RATE_LIMITED_BACKOFF) } else { jittered }
}

/// A certificate in use: what it is and when it should be replaced.
struct Current {
    not_after: i64,
    renew_at: i64,
    /// notAfter − notBefore, in seconds.
    lifetime: i64,
}

impl Manager {
    async fn run(self, stop: CancellationToken) {
        let slot = self.slots.slot(&self.acme.cert_path);
        let mut failures = 0u32;
        // Until the store answers, nothing is ordered: a certificate may well be in it.
        let mut current = loop {
            match self.load_stored(&slot, None).await {
                Ok(c) => break c,
                Err(e) => {
                    failures += 1;
                    if !self
                        .back_off(&stop, failures, false, &e.to_string(), "ACME: cannot read the certificate store")
                        .await
                    {
                        return;
                    }
                }
            }
        };
        failures = 0;
        // Replicas sharing a certificate would all fall due at the same second: each renews up
        // to 1/30 of the lifetime early, at its own point, and the later ones find the renewed
        // certificate in the store.
        let spread = {
            use std::hash::BuildHasher;
            (std::collections::hash_map::RandomState::new().hash_one(&self.vhost) % 1000) as i64
        };
        // This replica's claim on ordering, held from the first attempt until a certificate is
        // stored, backoffs included: the replicas back off together instead of each asking
        // the CA in turn.
        let mut claim: Option<OrderLock> = None;
        let mut scheduled = None;
        let mut waiting_logged = false;
        loop {
            let due = current.as_ref().map(|c| c.renew_at - c.lifetime / 30 * spread / 1000).unwrap_or(0);
            let wait = due.saturating_sub(now());
            if wait > 0 {
                if scheduled != Some(due) {
                    tracing::info!(vhost = %self.vhost, in_secs = wait, "ACME: next renewal scheduled");
                    scheduled = Some(due);
                }
                let nap = Duration::from_secs(wait as u64).min(STORE_RECHECK);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(nap) => {}
                }
                // Another replica (or an operator) may have stored a newer certificate.
                let served_until = current.as_ref().map(|c| c.not_after).unwrap_or(i64::MIN);
                if let Ok(Some(fresh)) = self.newer_stored(&slot, served_until).await {
                    current = Some(fresh);
                }
                continue;
            }
            // Someone may have renewed meanwhile (another replica sharing the store, a restart,
            // an operator): what is stored now and not yet due is taken instead of ordering.
            let served_until = current.as_ref().map(|c| c.not_after).unwrap_or(i64::MIN);
            match self.newer_stored(&slot, served_until).await {
                Ok(Some(fresh)) => {
                    current = Some(fresh);
                    claim = None;
                    waiting_logged = false;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    let why = "ACME: cannot read the certificate store; not ordering until it answers";
                    if !self.back_off(&stop, failures, false, &e.to_string(), why).await {
                        return;
                    }
                    continue;
                }
            }
            if claim.as_ref().is_some_and(|c| c.lost.is_cancelled()) {
                claim = None;
            }
            if claim.is_none() {
                match self.store.try_lock().await {
                    Ok(Some(c)) => claim = Some(c),
                    Ok(None) => {
                        if !waiting_logged {
                            tracing::info!(vhost = %self.vhost, "ACME: another replica is ordering this certificate; waiting for it");
                            waiting_logged = true;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(WAIT_FOR_OTHER) => {}
                        }
                        continue;
                    }
                    Err(e) => {
                        failures += 1;
                        let why = "ACME: cannot take this certificate's claim; not ordering until it can";
                        if !self.back_off(&stop, failures, false, &e.to_string(), why).await {
                            return;
                        }
                        continue;
                    }
                }
                // The replica that held the claim may have stored a certificate just before
                // letting go: never order what another replica already holds.
                if let Ok(Some(fresh)) = self.newer_stored(&slot, served_until).await {
                    current = Some(fresh);
                    if let Some(c) = claim.take() {
                        c.release().await;
                    }
                    continue;
                }
            }
            waiting_logged = false;
            let lost = claim.as_ref().map(|c| c.lost.clone()).unwrap_or_default();
            let kind = if current.is_some() { "renew" } else { "issue" };
            tracing::info!(vhost = %self.vhost, domains = ?self.acme.domains, kind, "ACME: ordering a certificate");
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                _ = lost.cancelled() => Err(OrderFailure::from("another replica took over this certificate's claim")),
                r = self.order() => r,
            };
            let result = match result {
                Ok((chain, key)) => self.install(&slot, &chain, &key, kind).await,
                Err(e) => Err(e),
            };
            if result.as_ref().err().is_some_and(|e| e.account_unknown) {
                // The CA forgot the account (a test CA restarted, say): make a new one next time.
                let _ = self.store.forget_account().await;
            }
            match result {
                Ok(c) => {
                    tracing::info!(vhost = %self.vhost, not_after = c.not_after, "ACME: certificate installed");
                    current = Some(c);
                    failures = 0;
                    // Stored before the claim goes: whoever takes it next finds the certificate.
                    if let Some(c) = claim.take() {
                        c.release().await;
                    }
                }
                Err(e) => {
                    self.metrics.acme_order(&self.vhost, kind, "failure");
                    failures += 1;
                    let why = "ACME: order failed; the current certificate (if any) keeps serving";
                    if !self.back_off(&stop, failures, e.rate_limited, &e.message, why).await {
                        return;
                    }
                    // Renewal stays due; an expired certificate is still served rather than none.
                    if let Some(c) = &mut current {
                        c.renew_at = c.renew_at.min(now());
                    }
                }
            }
        }
    }

    /// Logs a failure and waits out its backoff; false when the manager was stopped meanwhile.
    async fn back_off(
        &self,
        stop: &CancellationToken,
        failures: u32,
        rate_limited: bool,
        error: &str,
        what: &str,
    ) -> bool {
        let delay = backoff(failures, rate_limited);
        tracing::warn!(vhost = %self.vhost, error, retry_in_secs = delay.as_secs(), "{what}");
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// The stored certificate, if it is usable; it goes in the slot when the slot is empty, or
    /// when it outlives what is served (`served_until`) and is not due for renewal itself.
    async fn load_stored(
        &self,
        slot: &arc_swap::ArcSwapOption<CertifiedKey>,
        served_until: Option<i64>,
    ) -> std::io::Result<Option<Current>> {
        let Some((chain, key)) = self.store.load_cert().await? else { return Ok(None) };
        Ok(match self.certified(&chain, &key) {
            Ok((ck, c)) => {
                let newer = served_until.is_some_and(|t| c.not_after > t && c.renew_at > now());
                if slot.load().is_none() || newer {
                    self.metrics.set_cert_expiry(&self.vhost, c.not_after);
                    slot.store(Some(Arc::new(ck)));
                    tracing::info!(vhost = %self.vhost, not_after = c.not_after, "ACME: using the stored certificate");
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(vhost = %self.vhost, error = %e, "ACME: the stored certificate is not usable; ordering one");
                None
            }
        })
    }

    /// The stored certificate when it outlives what is served (`served_until`) and is not due
    /// itself; it is then served already.
    async fn newer_stored(
        &self,
        slot: &arc_swap::ArcSwapOption<CertifiedKey>,
        served_until: i64,
    ) -> std::io::Result<Option<Current>> {
        let stored = self.load_stored(slot, Some(served_until)).await?;
        Ok(stored.filter(|c| c.not_after > served_until && c.renew_at > now()))
    }

    async fn install(
        &self,
        slot: &arc_swap::ArcSwapOption<CertifiedKey>,
        chain: &str,
        key: &str,
        kind: &'static str,
    ) -> Result<Current, OrderFailure> {
        let (ck, c) = self.certified(chain, key).map_err(OrderFailure::from)?;
        // Stored, counted, then served (so whoever sees it served finds it stored and counted);
        // a certificate the CA issued is served even when it cannot be stored: ordering it
        // again would spend the CA's rate limit.
        if let Err(e) = self.store.save_cert(chain, key).await {
            tracing::error!(vhost = %self.vhost, error = %e,
                "ACME: cannot store the new certificate; it is served from memory and a restart will order again");
        }
        self.metrics.acme_order(&self.vhost, kind, "success");
        self.metrics.set_cert_expiry(&self.vhost, c.not_after);
        slot.store(Some(Arc::new(ck)));
        Ok(c)
    }

    /// Parses a PEM chain and key into what rustls serves, and when to renew it. A chain that
    /// does not name every configured domain counts as due now.
    fn certified(&self, chain: &str, key: &str) -> Result<(CertifiedKey, Current), String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate PEM: {e}"))?;
        let leaf = certs.first().ok_or("no certificate in the chain")?;
        let (not_before, not_after) = crate::tls::expiry::validity(leaf).ok_or("unreadable certificate")?;
        let names = crate::tls::expiry::dns_names(leaf);
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("bad key PEM: {e}"))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let ck = CertifiedKey::from_der(certs, key, &provider).map_err(|e| format!("certificate and key: {e}"))?;
        let covers = self.acme.domains.iter().all(|d| names.iter().any(|n| n.eq_ignore_ascii_case(d)));
        let renew = if covers { renew_at(not_before, not_after) } else { 0 };
        Ok((ck, Current { not_after, renew_at: renew, lifetime: not_after - not_before }))
    }

    /// One ACME order, start to finish: account, order, challenges, CSR, certificate.
    async fn order(&self) -> Result<(String, String), OrderFailure> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self.acme.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        let mut published: Vec<Published> = Vec::new();
        let mut shared: Vec<Box<dyn Send + Sync>> = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(format!("authorization is {other:?}").into()),
                }
                let kind = match self.acme.challenge {
                    Challenge::Http01 => ChallengeType::Http01,
                    Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
                };
                let mut ch =
                    authz.challenge(kind.clone()).ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
                let key_auth = ch.key_authorization();
                let domain = match ch.identifier().identifier {
                    Identifier::Dns(d) => d.clone(),
                    other => return Err(format!("unexpected identifier {other:?}").into()),
                };
                let answer = match self.acme.challenge {
                    Challenge::Http01 => {
                        Answer::Http01 { token: ch.token.clone(), key_authorization: key_auth.as_str().to_string() }
                    }
                    Challenge::TlsAlpn01 => Answer::TlsAlpn01 {
                        domain: domain.to_ascii_lowercase(),
                        digest: key_auth.digest().as_ref().to_vec(),
                    },
                };
                published.push(match &answer {
                    Answer::Http01 { token, key_authorization } => {
                        self.challenges.publish_http01(token, key_authorization)
                    }
                    Answer::TlsAlpn01 { domain, digest } => self
                        .challenges
                        .publish_alpn(domain, digest)
                        .map_err(|e| OrderFailure::from(format!("tls-alpn-01 certificate: {e}")))?,
                });
                // Where the other replicas see it: the CA may ask any of them. The CA is told
                // only once the answer came back the way they read it; if it cannot be shared,
                // a lone replica still answers from memory.
                match self.store.publish(&answer).await {
                    Ok(guard) => shared.push(guard),
                    Err(e) => tracing::warn!(vhost = %self.vhost, error = %e,
                        "ACME: cannot share the challenge answer with other replicas; only this one answers"),
                }
                ch.set_ready().await?;
            }
        }
        let patience = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order.poll_ready(&patience).await?;
        if status != OrderStatus::Ready {
            return Err(format!("the order is {status:?}, not ready: a challenge failed").into());
        }
        drop(published);
        drop(shared);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = rcgen::CertificateParams::new(self.acme.domains.clone()).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, self.acme.domains[0].clone());
        let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&patience).await?;
        Ok((chain, key.serialize_pem()))
    }

    /// The stored account, or a new one (stored) when there is none or the CA forgot it.
    async fn account(&self) -> Result<Account, OrderFailure> {
        let http = || http_client(self.acme.ca_file.as_deref()).map_err(OrderFailure::from);
        let stored = self.store.load_account().await.map_err(|e| OrderFailure::from(e.to_string()))?;
        if let Some(json) = stored
            && let Ok(stored) = serde_json::from_str::<StoredAccount>(&json)
        {
            // An account belongs to one CA: after a change of directory-url a new one is made.
            if stored.directory == self.acme.directory {
                return Account::builder_with_http(http()?)
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(OrderFailure::from);
            }
            tracing::info!(vhost = %self.vhost, "ACME: the directory changed; making an account with the new CA");
        }
        let contact = format!("mailto:{}", self.acme.email);
        let new = NewAccount { contact: &[&contact], terms_of_service_agreed: true, only_return_existing: false };
        let (account, creds) =
            Account::builder_with_http(http()?).create(&new, self.acme.directory.clone(), None).await?;
        let stored = StoredAccount { directory: self.acme.directory.clone(), credentials: creds };
        let json = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
        self.store.save_account(&json).await.map_err(|e| format!("cannot store the ACME account: {e}"))?;
        Ok(account)
    }
}

/// The account's credentials with the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Why an order failed, and whether the CA asked to be left alone for a while.
struct OrderFailure {
    message: String,
    rate_limited: bool,
    account_unknown: bool,
}

impl From<String> for OrderFailure {
    fn from(message: String) -> Self {
        OrderFailure { message, rate_limited: false, account_unknown: false }
    }
}

impl From<&str> for OrderFailure {
    fn from(message: &str) -> Self {
        OrderFailure::from(message.to_string())
    }
}

impl From<instant_acme::Error> for OrderFailure {
    fn from(e: instant_acme::Error) -> Self {
        let kind = match &e {
            instant_acme::Error::Api(p) => p.r#type.clone().unwrap_or_default(),
            _ => String::new(),
        };
        OrderFailure {
            message: e.to_string(),
            rate_limited: kind.ends_with(":rateLimited"),
            account_unknown: kind.ends_with(":accountDoesNotExist"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left() {
        assert_eq!(renew_at(0, 90 * 86_400), 60 * 86_400);
        assert_eq!(renew_at(1_000, 1_030), 1_020);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        for (n, base) in [(1u32, 2.0f64), (2, 4.0), (3, 8.0), (40, 3600.0)] {
            for noise in [0, 500, 999] {
                let d = jittered_backoff(n, false, noise).as_secs_f64();
                assert!(d >= base * 0.75 && d <= base * 1.25, "{n} failures, noise {noise}: {d}");
            }
            let d = backoff(n, false).as_secs_f64();
            assert!(d >= base * 0.75 && d <= base * 1.25, "{n}: {d}");
        }
        // The jitter spreads the waits: the lowest and highest noise differ.
        assert!(jittered_backoff(3, false, 0) < jittered_backoff(3, false, 999));
    }

    /// README: "15 min at least after a rate-limit error", whatever the jitter draws.
    #[test]
    fn a_rate_limit_waits_at_least_15_minutes_whatever_the_jitter() {
        let promise = Duration::from_secs(15 * 60);
        for failures in [0u32, 1, 2, 5, 10, 11, 12, 40] {
            for noise in [0, 1, 250, 499, 500, 998, 999] {
                let d = jittered_backoff(failures, true, noise);
                assert!(d >= promise, "{failures} failures, noise {noise}: {d:?}");
            }
            assert!(backoff(failures, true) >= promise, "{failures} failures");
        }
        // Past the floor the wait still grows and is still jittered (cap 1 h ±25 %).
        assert!(jittered_backoff(40, true, 999) > Duration::from_secs(3600));
    }
}
