//! ACME state in Secrets of the server's namespace, for Kubernetes mode: a pod's file system
//! goes away with the pod, a Secret does not, so a restarted pod serves the certificate it had
//! and asks the CA nothing. The certificate is a `kubernetes.io/tls` Secret
//! (`lwsws-acme-<vhost>`, usable by other workloads too); the account is an Opaque Secret
//! (`lwsws-acme-account-<vhost>`). Both are written with server-side apply.
//!
//! Replicas coordinate here too: the Lease `lwsws-acme-<vhost>` names the one that orders
//! (`lease`), and challenge answers are short-lived Opaque Secrets labelled
//! `lwsws.io/acme-challenge`, which every replica watches (`ChallengeSecrets`) and serves from,
//! so the CA may validate through any replica. The orderer removes them when the order ends.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::lease::LeaseClaim;
use super::watched::Watched;
use crate::acme::{Answer, CertStore, OrderLock, SharedAnswers, StoreFactory, StoreFuture, lock_ttl, replica_id};

const MANAGER: &str = "lwsws";
/// The label every challenge answer Secret carries (its value: the certificate's id).
const CHALLENGE_LABEL: &str = "lwsws.io/acme-challenge";
/// How long an orderer waits to see its answer come back through the watch.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);

pub struct SecretStore {
    client: kube::Client,
    namespace: String,
    api: Api<Secret>,
    cert: String,
    account: String,
    /// This certificate's id in labels (63 characters at most).
    id: String,
    answers: Arc<ChallengeSecrets>,
}

impl SecretStore {
    pub fn new(client: kube::Client, namespace: &str, vhost: &str, answers: Arc<ChallengeSecrets>) -> SecretStore {
        let id = secret_suffix(vhost);
        SecretStore {
            api: Api::namespaced(client.clone(), namespace),
            client,
            namespace: namespace.to_string(),
            cert: format!("lwsws-acme-{id}"),
            account: format!("lwsws-acme-account-{id}"),
            id: format!("{:016x}", super::stable_hash(&[vhost.as_bytes()])),
            answers,
        }
    }

    /// The Secret's data; `Ok(None)` only when it does not exist (any other error is not
    /// taken as "absent", or a passing API error would make the server order a certificate).
    async fn read(&self, name: &str) -> io::Result<Option<BTreeMap<String, ByteString>>> {
        match self.api.get_opt(name).await {
            Ok(s) => Ok(s.and_then(|s| s.data)),
            Err(e) => Err(io::Error::other(format!("reading Secret {name}: {e}"))),
        }
    }

    async fn write(&self, name: &str, type_: &str, data: BTreeMap<String, ByteString>) -> io::Result<()> {
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string());
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.to_string()), labels: Some(labels), ..Default::default() },
            type_: Some(type_.to_string()),
            data: Some(data),
            ..Default::default()
        };
        let params = PatchParams::apply(MANAGER).force();
        self.api.patch(name, &params, &Patch::Apply(&secret)).await.map(|_| ()).map_err(io::Error::other)
    }
}

/// A Secret name part from a vhost name: the name in lower case with anything else than letters,
/// digits and `-` made `-`, then a short hash of the exact name, so that `*.example.com` and
/// `example.com` (or `a_b` and `a-b`) never share a Secret and the result is a valid DNS label
/// sequence.
fn secret_suffix(vhost: &str) -> String {
    let readable: String =
        vhost.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let readable: String = readable.trim_matches('-').chars().take(180).collect();
    let hash = super::stable_hash(&[vhost.as_bytes()]);
    let short = format!("{:08x}", hash as u32);
    if readable.is_empty() { short } else { format!("{readable}-{short}") }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    String::from_utf8(data.get(key)?.0.clone()).ok()
}

impl CertStore for SecretStore {
    fn load_cert(&self) -> StoreFuture<'_, io::Result<Option<(String, String)>>> {
        Box::pin(async move {
            let Some(data) = self.read(&self.cert).await? else { return Ok(None) };
            Ok(text(&data, "tls.crt").zip(text(&data, "tls.key")))
        })
    }

    fn save_cert<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let mut data = BTreeMap::new();
            data.insert("tls.crt".to_string(), ByteString(chain_pem.as_bytes().to_vec()));
            data.insert("tls.key".to_string(), ByteString(key_pem.as_bytes().to_vec()));
            self.write(&self.cert, "kubernetes.io/tls", data).await
        })
    }

    fn load_account(&self) -> StoreFuture<'_, io::Result<Option<String>>> {
        Box::pin(async move { Ok(self.read(&self.account).await?.and_then(|d| text(&d, "account.json"))) })
    }

    fn save_account<'a>(&'a self, json: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let mut data = BTreeMap::new();
            data.insert("account.json".to_string(), ByteString(json.as_bytes().to_vec()));
            self.write(&self.account, "Opaque", data).await
        })
    }

    fn forget_account(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(async move {
            match self.api.delete(&self.account, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }

    fn try_lock(&self) -> StoreFuture<'_, io::Result<Option<OrderLock>>> {
        Box::pin(async move {
            let claim = LeaseClaim::new(self.client.clone(), &self.namespace, &self.cert, replica_id(), lock_ttl());
            let lock = match OrderLock::try_take(Arc::new(claim), lock_ttl()).await {
                Err(e) if super::lease::unusable(&e) => {
                    tracing::warn!(error = %e,
                        "ACME: Leases cannot be used (grant get, create and update on leases); ordering as if this were the only replica");
                    OrderLock::try_take(Arc::new(crate::acme::Unshared), lock_ttl()).await?
                }
                other => other?,
            };
            if lock.is_some() {
                // Answers of an order that a replica which died left behind: nobody else
                // orders this certificate now.
                let params = kube::api::ListParams::default().labels(&format!("{CHALLENGE_LABEL}={}", self.id));
                let old = self.api.list(&params).await.map(|l| l.items).unwrap_or_default();
                // Checked here too: a Secret of anyone else's is never deleted, whatever the
                // list returned.
                let ours =
                    |s: &Secret| s.metadata.labels.as_ref().and_then(|l| l.get(CHALLENGE_LABEL)) == Some(&self.id);
                for name in old.into_iter().filter(ours).filter_map(|s| s.metadata.name) {
                    if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
                        tracing::debug!(secret = %name, error = %e, "cannot remove an old challenge answer");
                    }
                }
            }
            Ok(lock)
        })
    }

    fn publish<'a>(&'a self, answer: &'a Answer) -> StoreFuture<'a, io::Result<Box<dyn Send + Sync>>> {
        Box::pin(async move {
            let name = challenge_name(answer);
            let mut labels = BTreeMap::new();
            labels.insert("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string());
            labels.insert(CHALLENGE_LABEL.to_string(), self.id.clone());
            let secret = Secret {
                metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels), ..Default::default() },
                type_: Some("Opaque".into()),
                data: Some(answer_data(answer)),
                ..Default::default()
            };
            let params = PatchParams::apply(MANAGER).force();
            self.api.patch(&name, &params, &Patch::Apply(&secret)).await.map_err(io::Error::other)?;
            let withdraw = Withdraw { api: self.api.clone(), name };
            if !self.answers.wait_for(answer, PUBLISH_PATIENCE).await {
                return Err(io::Error::other("the challenge answer Secret did not come back through the watch"));
            }
            Ok(Box::new(withdraw) as Box<dyn Send + Sync>)
        })
    }
}

/// Deletes a challenge answer Secret when its order is over.
struct Withdraw {
    api: Api<Secret>,
    name: String,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::debug!(secret = %name, error = %e, "cannot remove a challenge answer");
                }
            });
        }
    }
}

/// A challenge answer Secret's name: one per token or domain.
fn challenge_name(answer: &Answer) -> String {
    let hash = match answer {
        Answer::Http01 { token, .. } => super::stable_hash(&[b"http-01/", token.as_bytes()]),
        Answer::TlsAlpn01 { domain, .. } => super::stable_hash(&[b"tls-alpn-01/", domain.as_bytes()]),
    };
    format!("lwsws-acme-challenge-{hash:016x}")
}

fn answer_data(answer: &Answer) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    match answer {
        Answer::Http01 { token, key_authorization } => {
            put("type", "http-01");
            put("token", token);
            put("key-authorization", key_authorization);
        }
        Answer::TlsAlpn01 { domain, digest } => {
            put("type", "tls-alpn-01");
            put("domain", domain);
            put("digest", &crate::acme::hex(digest));
        }
    }
    data
}

/// The challenge answers every replica published, from a watch of the labelled Secrets in the
/// server's namespace.
pub struct ChallengeSecrets {
    namespace: String,
    secrets: Watched<Secret>,
    seen: tokio::sync::Notify,
}

impl ChallengeSecrets {
    pub fn start(client: &kube::Client, namespace: &str) -> Arc<ChallengeSecrets> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let labelled = kube::runtime::watcher::Config::default().labels(CHALLENGE_LABEL);
        let ns = [namespace.to_string()];
        let secrets = Watched::start_in("acme challenge answers", client, Some(&ns), labelled, &tx);
        let this = Arc::new(ChallengeSecrets { namespace: namespace.to_string(), secrets, seen: Default::default() });
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                match weak.upgrade() {
                    Some(t) => t.seen.notify_waiters(),
                    None => return,
                }
            }
        });
        this
    }

    fn data(&self, answer: &Answer) -> Option<BTreeMap<String, ByteString>> {
        self.secrets.get(&self.namespace, &challenge_name(answer))?.data.clone()
    }

    /// Whether `answer` is seen as published, exactly.
    fn sees(&self, answer: &Answer) -> bool {
        self.data(answer).is_some_and(|d| d == answer_data(answer))
    }

    /// Waits until the watch shows `answer` (or gives up after `limit`).
    async fn wait_for(&self, answer: &Answer, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.seen.notified();
            if self.sees(answer) {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.sees(answer);
            }
        }
    }
}

impl SharedAnswers for ChallengeSecrets {
    fn http01(&self, token: &str) -> Option<String> {
        let probe = Answer::Http01 { token: token.to_string(), key_authorization: String::new() };
        let data = self.data(&probe)?;
        (text(&data, "type")? == "http-01" && text(&data, "token")? == token)
            .then(|| text(&data, "key-authorization"))?
    }

    fn alpn_digest(&self, domain: &str) -> Option<Vec<u8>> {
        let probe = Answer::TlsAlpn01 { domain: domain.to_string(), digest: Vec::new() };
        let data = self.data(&probe)?;
        if text(&data, "type")? != "tls-alpn-01" || text(&data, "domain")? != domain {
            return None;
        }
        crate::acme::unhex(&text(&data, "digest")?)
    }
}

/// Stores that keep each ACME vhost's state in Secrets of `namespace` (and coordinate replicas
/// there), for the server to use.
pub fn secret_stores(client: kube::Client, namespace: &str, answers: Arc<ChallengeSecrets>) -> Arc<StoreFactory> {
    let namespace = namespace.to_string();
    Arc::new(move |vhost: &str, _: &crate::model::acme::Acme| {
        Box::new(SecretStore::new(client.clone(), &namespace, vhost, answers.clone())) as Box<dyn CertStore>
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_are_valid() {
        let s = super::secret_suffix;
        assert!(s("Example.COM").starts_with("example-com-"));
        assert_ne!(s("*.example.com"), s("example.com"));
        assert_ne!(s("a_b"), s("a-b"));
        assert_eq!(s("example.com"), s("example.com"), "stable");
        for name in ["*", "_", "a..b", "x".repeat(300).as_str()] {
            let n = format!("lwsws-acme-account-{}", s(name));
            assert!(n.len() <= 253 && !n.ends_with('-'), "{n}");
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{n}");
        }
    }
}
