//! Services' endpoints, kept current without a reload: the Kubernetes front end writes the
//! addresses it reads from EndpointSlices (`set`), and the route table's proxy mounts read them
//! on every request (`ServiceEndpoints::pick`). An address that stays across updates keeps its
//! `Endpoint`, so its pools (and keep-alive connections) survive; one that goes is dropped
//! once the requests that hold it have ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::connect::Connector;
use super::group::{Endpoint, least_loaded_of_two};
use crate::model::{ServiceRef, Upstream};

/// The registry, shared by every table compiled for this server and by the front end.
pub struct Services {
    entries: Mutex<HashMap<ServiceRef, Arc<ServiceEndpoints>>>,
    settings: Mutex<Settings>,
}

/// How endpoints made from now on dial and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    timeout: Duration,
    max_in_flight: usize,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            entries: Default::default(),
            settings: Mutex::new(Settings { timeout: Duration::from_secs(15), max_in_flight: 256 }),
        }
    }
}

/// One Service port's endpoints now.
pub struct ServiceEndpoints {
    key: ServiceRef,
    current: ArcSwap<Vec<Arc<Endpoint>>>,
}

impl Services {
    /// The connect timeout and in-flight limit of endpoints (the global `timeout-secs` and
    /// `proxy-max-conns`); a change remakes every endpoint with the new settings.
    pub fn configure(&self, timeout: Duration, max_in_flight: usize) {
        let new = Settings { timeout, max_in_flight };
        let changed = {
            let mut s = self.settings.lock();
            std::mem::replace(&mut *s, new) != new
        };
        if changed {
            for e in self.entries.lock().values() {
                let addrs: Vec<SocketAddr> = e.current.load().iter().filter_map(|e| addr_of(&e.name)).collect();
                e.current.store(Arc::new(addrs.iter().map(|a| make(*a, new)).collect()));
            }
        }
    }

    /// The entry for `key`, made (empty) when the first table names it.
    pub fn entry(&self, key: &ServiceRef) -> Arc<ServiceEndpoints> {
        self.entries
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ServiceEndpoints { key: key.clone(), current: Default::default() }))
            .clone()
    }

    /// The addresses `key` has now. Returns whether anything changed.
    pub fn set(&self, key: &ServiceRef, addrs: &[SocketAddr]) -> bool {
        let settings = *self.settings.lock();
        let entry = self.entry(key);
        let old = entry.current.load();
        let same = old.len() == addrs.len() && old.iter().zip(addrs).all(|(e, a)| addr_of(&e.name) == Some(*a));
        if same {
            return false;
        }
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|a| old.iter().find(|e| addr_of(&e.name) == Some(*a)).cloned().unwrap_or_else(|| make(*a, settings)))
            .collect();
        tracing::info!(service = %key, endpoints = next.len(), "service endpoints changed");
        entry.current.store(Arc::new(next));
        true
    }

    /// Every Service port some table has named.
    pub fn keys(&self) -> Vec<ServiceRef> {
        self.entries.lock().keys().cloned().collect()
    }

    /// Forgets the entries `keep` refuses (Services no route names any more). Tables still
    /// holding one keep it working with the endpoints it last had.
    pub fn retain(&self, keep: impl Fn(&ServiceRef) -> bool) {
        self.entries.lock().retain(|k, _| keep(k));
    }
}

impl ServiceEndpoints {
    /// The endpoint for the next request (`None`: the Service has no usable endpoint).
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        least_loaded_of_two(&self.current.load()).cloned()
    }

    /// Another endpoint than `not`, for a request that could not be sent to it.
    pub fn pick_other(&self, not: &Endpoint) -> Option<Arc<Endpoint>> {
        let list = self.current.load();
        let others: Vec<Arc<Endpoint>> = list.iter().filter(|e| !std::ptr::eq(e.as_ref(), not)).cloned().collect();
        least_loaded_of_two(&others).cloned()
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn key(&self) -> &ServiceRef {
        &self.key
    }
}

/// An endpoint's name is `http://ip:port`; its address, read back.
fn addr_of(name: &str) -> Option<SocketAddr> {
    name.strip_prefix("http://")?.parse().ok()
}

fn make(addr: SocketAddr, s: Settings) -> Arc<Endpoint> {
    let upstream = Upstream::Tcp { host: addr.ip().to_string(), port: addr.port() };
    let connector =
        Connector::new(&upstream, None, s.timeout).expect("a plain TCP connector needs nothing that can fail");
    Arc::new(Endpoint::new(format!("http://{addr}"), connector, true, s.max_in_flight))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceRef {
        ServiceRef { namespace: "ns".into(), name: name.into(), port: 80 }
    }

    #[test]
    fn endpoints_are_kept_across_updates_and_replaced_when_they_go() {
        let services = Services::default();
        let e = services.entry(&key("web"));
        assert!(e.pick().is_none() && e.is_empty());
        let a: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:8080".parse().unwrap();
        assert!(services.set(&key("web"), &[a]));
        assert!(!services.set(&key("web"), &[a]), "unchanged");
        let first = e.pick().unwrap();
        assert_eq!(first.name, "http://127.0.0.2:8080");
        assert!(services.set(&key("web"), &[a, b]));
        assert_eq!(e.len(), 2);
        let kept = e.current.load().iter().find(|x| x.name == first.name).cloned().unwrap();
        assert!(Arc::ptr_eq(&kept, &first), "the endpoint (and its pools) survive the update");
        assert_eq!(e.pick_other(&first).unwrap().name, "http://127.0.0.3:8080");
        assert!(services.set(&key("web"), &[b]));
        assert_eq!(e.pick().unwrap().name, "http://127.0.0.3:8080");
        assert!(e.pick_other(&e.pick().unwrap()).is_none());
        services.configure(Duration::from_secs(3), 5);
        assert_eq!(e.len(), 1, "remade with the new settings");
        assert_eq!(services.keys(), vec![key("web")]);
        services.retain(|_| false);
        assert!(services.keys().is_empty());
    }
}
