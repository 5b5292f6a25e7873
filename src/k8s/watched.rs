//! One kind of object watched in every namespace or in a list of them: one reflector per
//! namespace (or one for all), read as one set. Every event sends `()` on the channel given.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    stores: Vec<Store<K>>,
}

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// Watches a cluster-scoped `K` (or a namespaced one in every namespace), filtered by
    /// `config`.
    pub fn start(
        what: &'static str,
        client: &kube::Client,
        config: watcher::Config,
        tx: &mpsc::UnboundedSender<()>,
    ) -> Self {
        Self::start_apis(what, vec![Api::all(client.clone())], config, tx)
    }

    /// Watches a namespaced `K` in `namespaces` (`None`: all).
    pub fn start_in(
        what: &'static str,
        client: &kube::Client,
        namespaces: Option<&[String]>,
        config: watcher::Config,
        tx: &mpsc::UnboundedSender<()>,
    ) -> Self
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let apis: Vec<Api<K>> = match namespaces {
            None => vec![Api::all(client.clone())],
            Some(list) => list.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect(),
        };
        Self::start_apis(what, apis, config, tx)
    }

    fn start_apis(
        what: &'static str,
        apis: Vec<Api<K>>,
        config: watcher::Config,
        tx: &mpsc::UnboundedSender<()>,
    ) -> Self {
        let stores = apis
            .into_iter()
            .map(|api| {
                let (store, writer) = reflector::store();
                let stream = reflector::reflector(writer, watcher(api, config.clone()));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut stream = std::pin::pin!(stream.default_backoff());
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(_) => {
                                if tx.send(()).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(what, error = %e, "watching Kubernetes failed; retrying"),
                        }
                    }
                });
                store
            })
            .collect();
        Watched { stores }
    }

    /// Every object seen now.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }

    /// `namespace/name` (or `name` of a cluster-scoped kind: `namespace` empty).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let mut at = ObjectRef::new(name);
        if !namespace.is_empty() {
            at = at.within(namespace);
        }
        self.stores.iter().find_map(|s| s.get(&at))
    }

    /// Waits for the first full list of every store (or gives up after `limit`).
    pub async fn synced(&self, limit: Duration) -> bool {
        let all = async {
            for s in &self.stores {
                let _ = s.wait_until_ready().await;
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }
}
