//! Services' endpoints from the API server. Reflectors keep Services and EndpointSlices; after
//! each burst of watch events every Service port the tables name (`Services::keys`) is resolved
//! again (`resolve`) and its addresses written to the registry (`Services::set`), which the
//! proxy mounts read on every request. Endpoints changing is not a config change: nothing here
//! reloads, and a request never waits for any of it.
//!
//! ```text
//! Services ──────┐
//! EndpointSlices ┴─► (debounce) ─► resolve each key ─► Services::set ─► proxy mounts
//! ```
//!
//! How a key (namespace, Service, *Service* port) becomes addresses follows Kubernetes itself
//! (kube-proxy, KEP-1669): the Service port gives a port name; the Service's slices (same
//! namespace, labelled `kubernetes.io/service-name`) give, under that name, the target port and
//! the endpoints. This knows nothing of Gateway API or Ingress; both front ends use it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::ServiceRef;
use crate::upstream::Services;

/// The label that ties an EndpointSlice to its Service (by name, in the same namespace).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long the watch stays quiet before the keys are resolved again.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// The longest a steady stream of events defers resolving.
const MAX_DELAY: Duration = Duration::from_millis(250);

/// What one Service port resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No such Service (not in the cluster, not in a watched namespace, or not listed yet).
    NoService,
    /// A Service of type ExternalName: it has no endpoints and is not supported (Gateway API:
    /// SHOULD NOT be). It is refused like a missing Service: no addresses. Its own variant lets
    /// a front end that reports on backends say why.
    ExternalName,
    /// The Service has no TCP port with the key's number.
    NoPort,
    /// The endpoints to use, sorted and without duplicates; empty when there is none usable.
    Addrs(Vec<SocketAddr>),
}

impl Resolved {
    /// The addresses to route to: none unless `Addrs`.
    pub fn into_addrs(self) -> Vec<SocketAddr> {
        match self {
            Resolved::Addrs(a) => a,
            _ => Vec::new(),
        }
    }
}

/// Resolves `key` from its Service (`None`: not found) and EndpointSlices. `slices` may hold
/// any slices: only those of `key.namespace` labelled `kubernetes.io/service-name=<key.name>`
/// count, so a selector-less Service with slices made by hand works like any other, as do
/// headless ones (their slices are the same).
///
/// - The Service's TCP `spec.ports[]` entry whose `port` is `key.port` gives the port name
///   (`""` when unnamed); without one, `NoPort`. (A UDP or SCTP port of the same number is not
///   one an HTTP proxy can use.)
/// - In each slice (`IPv4` or `IPv6`; `FQDN` ones are ignored) the TCP `ports[]` entry of that
///   name (a missing name is `""`) gives the target port; a slice without it (or with a nil
///   port, "all ports") gives nothing.
/// - The endpoints are the `ready` ones (nil = true), as kube-proxy routes: this includes
///   `ready` endpoints that are not `serving`, which only a Service with
///   `publishNotReadyAddresses` (or a hand-made slice) has, since its owner asked for them.
///   Only when no slice has a ready endpoint, the ones both `serving` (nil = true) and
///   `terminating` (nil = false) are used; never one that is not serving and not ready.
/// - Each endpoint's first address, with the slice's port.
pub fn resolve(key: &ServiceRef, service: Option<&Service>, slices: &[Arc<EndpointSlice>]) -> Resolved {
    let Some(service) = service else {
        return Resolved::NoService;
    };
    if is_external_name(service) {
        return Resolved::ExternalName;
    }
    let Some(port_name) = service_port_name(service, key.port) else {
        return Resolved::NoPort;
    };
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.iter().filter(|s| belongs_to(s, &key.namespace, &key.name)) {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(port) = slice_port(slice, port_name) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            match usable(endpoint) {
                Use::Ready => ready.push(SocketAddr::new(ip, port)),
                Use::IfNoneReady => terminating.push(SocketAddr::new(ip, port)),
                Use::Never => {}
            }
        }
    }
    let mut addrs = if ready.is_empty() { terminating } else { ready };
    addrs.sort_unstable();
    addrs.dedup();
    Resolved::Addrs(addrs)
}

/// Whether `service` is of type ExternalName (a DNS alias, with no endpoints).
pub fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// The number of `service`'s TCP port named `name` (an Ingress backend's `port.name`).
pub fn service_port_number(service: &Service, name: &str) -> Option<u16> {
    tcp_ports(service).find(|p| p.name.as_deref().unwrap_or("") == name).and_then(|p| u16::try_from(p.port).ok())
}

/// The name (`""`: unnamed) of `service`'s TCP port numbered `port`.
fn service_port_name(service: &Service, port: u16) -> Option<&str> {
    tcp_ports(service).find(|p| p.port == i32::from(port)).map(|p| p.name.as_deref().unwrap_or(""))
}

fn tcp_ports(service: &Service) -> impl Iterator<Item = &k8s_openapi::api::core::v1::ServicePort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    ports.iter().filter(|p| is_tcp(p.protocol.as_deref()))
}

/// A protocol field: nil is TCP.
fn is_tcp(protocol: Option<&str>) -> bool {
    matches!(protocol, None | Some("TCP"))
}

/// Whether `slice` is one of Service `namespace/name`'s.
fn belongs_to(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    slice.metadata.namespace.as_deref() == Some(namespace) && service_label(slice) == Some(name)
}

fn service_label(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL).map(String::as_str)
}

/// The target port of the slice's TCP port named `name`.
fn slice_port(slice: &EndpointSlice, name: &str) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = ports.iter().find(|p| p.name.as_deref().unwrap_or("") == name && is_tcp(p.protocol.as_deref()))?;
    u16::try_from(port.port?).ok().filter(|p| *p != 0)
}

enum Use {
    Ready,
    IfNoneReady,
    Never,
}

fn usable(endpoint: &Endpoint) -> Use {
    let c = endpoint.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(true);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    if ready {
        Use::Ready
    } else if serving && terminating {
        Use::IfNoneReady
    } else {
        Use::Never
    }
}

/// Resolves every key of `registry` from the stores' contents and writes the addresses (none
/// when the Service or its port is gone, or nothing is usable). Returns how many keys changed.
fn refresh_all(registry: &Services, services: &[Store<Service>], slices: &[Store<EndpointSlice>]) -> usize {
    let keys = registry.keys();
    if keys.is_empty() {
        return 0;
    }
    let wanted: HashSet<(&str, &str)> = keys.iter().map(|k| (k.namespace.as_str(), k.name.as_str())).collect();
    let mut by_service: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
    for store in slices {
        let mine = store.state_filter(|s| {
            matches!((s.metadata.namespace.as_deref(), service_label(s)), (Some(ns), Some(name)) if wanted.contains(&(ns, name)))
        });
        for slice in mine {
            let key = (slice.namespace().unwrap_or_default(), service_label(&slice).unwrap_or_default().to_string());
            by_service.entry(key).or_default().push(slice);
        }
    }
    let mut changed = 0;
    for key in &keys {
        let service = lookup(services, &key.namespace, &key.name);
        let slices = by_service.get(&(key.namespace.clone(), key.name.clone())).map(Vec::as_slice).unwrap_or_default();
        let addrs = resolve(key, service.as_deref(), slices).into_addrs();
        if registry.set(key, &addrs) {
            changed += 1;
        }
    }
    changed
}

fn lookup(stores: &[Store<Service>], namespace: &str, name: &str) -> Option<Arc<Service>> {
    let at = ObjectRef::new(name).within(namespace);
    stores.iter().find_map(|s| s.get(&at))
}

/// The running watch: reflectors over Services and EndpointSlices and the task that resolves
/// the keys after their events. Cheap to clone; the tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct EndpointsWatch {
    inner: Arc<Inner>,
}

struct Inner {
    /// One store per watched namespace (or one for all namespaces), per kind.
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
    registry: Arc<Services>,
    /// One resolve at a time, so an older snapshot never overwrites a newer one.
    refreshing: parking_lot::Mutex<()>,
    tasks: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().iter() {
            t.abort();
        }
    }
}

/// Starts watching Services and EndpointSlices in `namespaces` (`None`: all namespaces, one
/// watch per kind; `Some`: one watch per namespace per kind, an empty list watching nothing)
/// and keeping `services`' keys current. Must be called within a Tokio runtime.
/// `on_service`: told of every change to a Service (the route front ends read Services: a
/// backend that appears, a port name), where EndpointSlice changes only reach the registry.
pub fn spawn(
    client: kube::Client,
    namespaces: Option<Vec<String>>,
    services: Arc<Services>,
    on_service: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> EndpointsWatch {
    let notify = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    let mut service_stores = Vec::new();
    let mut slice_stores = Vec::new();
    let apis: Vec<(Api<Service>, Api<EndpointSlice>)> = match namespaces {
        None => vec![(Api::all(client.clone()), Api::all(client))],
        Some(mut list) => {
            list.sort();
            list.dedup();
            list.iter().map(|ns| (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns))).collect()
        }
    };
    for (service_api, slice_api) in apis {
        let (store, task) =
            watch("services", service_api, watcher::Config::default(), strip_service, &notify, on_service.clone());
        service_stores.push(store);
        tasks.push(task);
        // Only labelled slices can belong to a Service.
        let labelled = watcher::Config::default().labels(SERVICE_NAME_LABEL);
        let (store, task) = watch("endpointslices", slice_api, labelled, strip_slice, &notify, None);
        slice_stores.push(store);
        tasks.push(task);
    }
    let inner = Arc::new(Inner {
        services: service_stores,
        slices: slice_stores,
        registry: services,
        refreshing: Default::default(),
        tasks: parking_lot::Mutex::new(tasks),
    });
    let weak = Arc::downgrade(&inner);
    let refresher = tokio::spawn(async move {
        loop {
            settle(&notify).await;
            let Some(inner) = weak.upgrade() else { return };
            let changed = inner.refresh();
            tracing::debug!(changed, "service endpoints resolved after watch events");
        }
    });
    inner.tasks.lock().push(refresher.abort_handle());
    EndpointsWatch { inner }
}

impl Inner {
    fn refresh(&self) -> usize {
        let _one = self.refreshing.lock();
        refresh_all(&self.registry, &self.services, &self.slices)
    }
}

impl EndpointsWatch {
    /// Resolves every key now (after a new config named new Service ports). Returns how many
    /// keys' addresses changed.
    pub fn refresh_now(&self) -> usize {
        self.inner.refresh()
    }

    /// The Service `namespace/name` as last seen (`None`: not found or not watched).
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        lookup(&self.inner.services, namespace, name)
    }

    /// Whether the Service `namespace/name` exists (of any type, ExternalName included).
    pub fn has_service(&self, namespace: &str, name: &str) -> bool {
        self.service(namespace, name).is_some()
    }

    /// Resolves one key from what the watch holds now, without writing it anywhere.
    pub fn resolve(&self, key: &ServiceRef) -> Resolved {
        let service = self.service(&key.namespace, &key.name);
        let slices: Vec<Arc<EndpointSlice>> = self
            .inner
            .slices
            .iter()
            .flat_map(|s| s.state_filter(|s| belongs_to(s, &key.namespace, &key.name)))
            .collect();
        resolve(key, service.as_deref(), &slices)
    }

    /// Waits until every watch has listed once (or gives up after `limit`).
    pub async fn synced(&self, limit: Duration) -> bool {
        let all = async {
            for s in &self.inner.services {
                let _ = s.wait_until_ready().await;
            }
            for s in &self.inner.slices {
                let _ = s.wait_until_ready().await;
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

/// Waits for an event, then until the events stop for `DEBOUNCE` (at most `MAX_DELAY`).
async fn settle(notify: &Notify) {
    notify.notified().await;
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(DEBOUNCE.min(left), notify.notified()).await.is_err() {
            return;
        }
    }
}

/// What is not needed is not kept: managed fields, and the copy of the whole object
/// `kubectl apply` leaves in an annotation.
fn strip_service(s: &mut Service) {
    s.managed_fields_mut().clear();
    s.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

fn strip_slice(s: &mut EndpointSlice) {
    s.managed_fields_mut().clear();
}

/// A reflector over `api` in a task of its own, notifying after each change to its store.
fn watch<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    strip: fn(&mut K),
    notify: &Arc<Notify>,
    also: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> (Store<K>, tokio::task::AbortHandle)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config).modify(strip).default_backoff().reflect(writer);
    let notify = notify.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // The store changes on these (a relist's objects land all at once on InitDone).
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                    notify.notify_one();
                    if let Some(tx) = &also {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) => tracing::warn!(what, error = %e, "watching Kubernetes failed; retrying"),
            }
        }
    });
    (store, task.abort_handle())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn key(name: &str, port: u16) -> ServiceRef {
        ServiceRef { namespace: "ns".into(), name: name.into(), port }
    }

    fn service(name: &str, ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": { "namespace": "ns", "name": name },
            "spec": { "ports": ports },
        }))
        .unwrap()
    }

    /// A slice of Service `svc` in `ns`; `endpoints` are (address, ready, serving, terminating),
    /// a `None` condition being left out.
    fn slice(ns: &str, name: &str, svc: &str, family: &str, ports: Value, endpoints: Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "namespace": ns, "name": name, "labels": { SERVICE_NAME_LABEL: svc } },
                "addressType": family,
                "ports": ports,
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    fn ep(addr: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Value {
        let mut conditions = serde_json::Map::new();
        for (k, v) in [("ready", ready), ("serving", serving), ("terminating", terminating)] {
            if let Some(v) = v {
                conditions.insert(k.into(), v.into());
            }
        }
        json!({ "addresses": [addr], "conditions": conditions })
    }

    fn ready(addr: &str) -> Value {
        ep(addr, Some(true), Some(true), Some(false))
    }

    fn addrs(list: &[&str]) -> Resolved {
        Resolved::Addrs(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    fn web() -> Service {
        service("web", json!([{ "name": "http", "port": 80, "targetPort": 8080 }, { "port": 9000 }]))
    }

    #[test]
    fn named_and_unnamed_ports_pick_the_slice_port_by_name() {
        let s = slice(
            "ns",
            "web-1",
            "web",
            "IPv4",
            json!([{ "name": "http", "port": 8080 }, { "port": 9090, "protocol": "TCP" }]),
            json!([ready("10.0.0.1"), ready("10.0.0.2")]),
        );
        let s = [s];
        assert_eq!(resolve(&key("web", 80), Some(&web()), &s), addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        assert_eq!(resolve(&key("web", 9000), Some(&web()), &s), addrs(&["10.0.0.1:9090", "10.0.0.2:9090"]));
        assert_eq!(resolve(&key("web", 81), Some(&web()), &s), Resolved::NoPort);
        assert_eq!(resolve(&key("web", 80), None, &s), Resolved::NoService);
        assert_eq!(service_port_number(&web(), "http"), Some(80));
        assert_eq!(service_port_number(&web(), ""), Some(9000));
        assert_eq!(service_port_number(&web(), "grpc"), None);
    }

    #[test]
    fn a_udp_port_of_the_same_number_is_not_the_tcp_one() {
        let dns = service(
            "dns",
            json!([{ "name": "dns", "port": 53, "protocol": "UDP" }, { "name": "dns-tcp", "port": 53 }]),
        );
        let s = slice(
            "ns",
            "dns-1",
            "dns",
            "IPv4",
            json!([{ "name": "dns", "port": 5353, "protocol": "UDP" }, { "name": "dns-tcp", "port": 5354 }]),
            json!([ready("10.0.0.1")]),
        );
        assert_eq!(resolve(&key("dns", 53), Some(&dns), &[s]), addrs(&["10.0.0.1:5354"]));
        let udp_only = service("u", json!([{ "port": 53, "protocol": "UDP" }]));
        assert_eq!(resolve(&key("u", 53), Some(&udp_only), &[]), Resolved::NoPort);
    }

    #[test]
    fn a_slice_without_the_port_name_gives_nothing() {
        let other = slice(
            "ns",
            "web-1",
            "web",
            "IPv4",
            json!([{ "name": "metrics", "port": 9100 }]),
            json!([ready("10.0.0.1")]),
        );
        let good =
            slice("ns", "web-2", "web", "IPv4", json!([{ "name": "http", "port": 8080 }]), json!([ready("10.0.0.2")]));
        let no_ports = slice("ns", "web-3", "web", "IPv4", json!(null), json!([ready("10.0.0.3")]));
        let all_ports = slice("ns", "web-4", "web", "IPv4", json!([{ "name": "http" }]), json!([ready("10.0.0.4")]));
        assert_eq!(
            resolve(&key("web", 80), Some(&web()), &[other, good, no_ports, all_ports]),
            addrs(&["10.0.0.2:8080"])
        );
        assert_eq!(resolve(&key("web", 80), Some(&web()), &[]), Resolved::Addrs(vec![]));
    }

    #[test]
    fn ready_then_terminating_then_gone() {
        let ports = json!([{ "name": "http", "port": 8080 }]);
        let at =
            |eps: Value| resolve(&key("web", 80), Some(&web()), &[slice("ns", "w", "web", "IPv4", ports.clone(), eps)]);
        assert_eq!(at(json!([ready("10.0.0.1"), ready("10.0.0.2")])), addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        // a terminates (still serving) while b is ready: only b.
        let a_terminating = ep("10.0.0.1", Some(false), Some(true), Some(true));
        assert_eq!(at(json!([a_terminating, ready("10.0.0.2")])), addrs(&["10.0.0.2:8080"]));
        // a stops serving, b terminates but serves: b, since none is ready.
        let a_done = ep("10.0.0.1", Some(false), Some(false), Some(true));
        let b_terminating = ep("10.0.0.2", Some(false), Some(true), Some(true));
        assert_eq!(at(json!([a_done.clone(), b_terminating])), addrs(&["10.0.0.2:8080"]));
        // b stops serving too, then both go: nothing.
        let b_done = ep("10.0.0.2", Some(false), Some(false), Some(true));
        assert_eq!(at(json!([a_done, b_done])), Resolved::Addrs(vec![]));
        assert_eq!(at(json!([])), Resolved::Addrs(vec![]));
    }

    #[test]
    fn conditions_and_their_defaults() {
        let ports = json!([{ "name": "http", "port": 8080 }]);
        let at =
            |eps: Value| resolve(&key("web", 80), Some(&web()), &[slice("ns", "w", "web", "IPv4", ports.clone(), eps)]);
        // No conditions at all: ready.
        assert_eq!(at(json!([{ "addresses": ["10.0.0.1"] }])), addrs(&["10.0.0.1:8080"]));
        // Not ready, not terminating (starting up): never, even with nothing else.
        assert_eq!(at(json!([ep("10.0.0.1", Some(false), None, None)])), Resolved::Addrs(vec![]));
        // Not ready, terminating, serving unset (= true): the fallback.
        assert_eq!(at(json!([ep("10.0.0.1", Some(false), None, Some(true))])), addrs(&["10.0.0.1:8080"]));
        // Terminating and serving are not used while another endpoint is ready, in another slice too.
        let terminating =
            slice("ns", "w1", "web", "IPv4", ports.clone(), json!([ep("10.0.0.1", Some(false), None, Some(true))]));
        let fine = slice("ns", "w2", "web", "IPv4", ports.clone(), json!([ep("10.0.0.2", None, None, None)]));
        assert_eq!(resolve(&key("web", 80), Some(&web()), &[terminating, fine]), addrs(&["10.0.0.2:8080"]));
        // publishNotReadyAddresses: ready though not serving, used as kube-proxy does.
        assert_eq!(at(json!([ep("10.0.0.1", Some(true), Some(false), None)])), addrs(&["10.0.0.1:8080"]));
        // The first address only; one that does not parse is skipped.
        let two = json!([{ "addresses": ["10.0.0.1", "10.0.0.9"] }, { "addresses": ["nope"] }, { "addresses": [] }]);
        assert_eq!(at(two), addrs(&["10.0.0.1:8080"]));
    }

    #[test]
    fn slices_are_unioned_sorted_and_deduplicated_across_families() {
        let ports = json!([{ "name": "http", "port": 8080 }]);
        let v4a = slice("ns", "w1", "web", "IPv4", ports.clone(), json!([ready("10.0.0.9"), ready("10.0.0.1")]));
        // The same endpoint in two slices (while the controller moves it): once.
        let v4b = slice("ns", "w2", "web", "IPv4", ports.clone(), json!([ready("10.0.0.3"), ready("10.0.0.9")]));
        let v6 = slice("ns", "w3", "web", "IPv6", ports.clone(), json!([ready("fd00::2"), ready("fd00::1")]));
        let fqdn = slice("ns", "w4", "web", "FQDN", ports.clone(), json!([ready("example.com")]));
        let got = resolve(&key("web", 80), Some(&web()), &[v6.clone(), v4b.clone(), fqdn.clone(), v4a.clone()]);
        let want = addrs(&["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.9:8080", "[fd00::1]:8080", "[fd00::2]:8080"]);
        assert_eq!(got, want);
        assert_eq!(resolve(&key("web", 80), Some(&web()), &[v4a, fqdn, v6, v4b]), want, "order does not matter");
    }

    #[test]
    fn slices_of_other_services_and_namespaces_are_ignored() {
        let ports = json!([{ "name": "http", "port": 8080 }]);
        let mine = slice("ns", "web-1", "web", "IPv4", ports.clone(), json!([ready("10.0.0.1")]));
        let other_service = slice("ns", "api-1", "api", "IPv4", ports.clone(), json!([ready("10.0.0.2")]));
        let other_namespace = slice("prod", "web-1", "web", "IPv4", ports.clone(), json!([ready("10.0.0.3")]));
        let mut unlabelled = (*mine).clone();
        unlabelled.metadata.labels = None;
        unlabelled.endpoints[0].addresses = vec!["10.0.0.4".into()];
        let all = [mine, other_service, other_namespace, Arc::new(unlabelled)];
        assert_eq!(resolve(&key("web", 80), Some(&web()), &all), addrs(&["10.0.0.1:8080"]));
    }

    #[test]
    fn headless_selectorless_and_external_name_services() {
        let ports = json!([{ "port": 8080 }]);
        let headless = serde_json::from_value::<Service>(json!({
            "metadata": { "namespace": "ns", "name": "h" },
            "spec": { "clusterIP": "None", "selector": { "app": "h" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
        }))
        .unwrap();
        let s = slice("ns", "h-1", "h", "IPv4", ports.clone(), json!([ready("10.0.0.1")]));
        assert_eq!(resolve(&key("h", 80), Some(&headless), &[s]), addrs(&["10.0.0.1:8080"]));
        // Selector-less, with a slice made by hand (IPv6, no conditions).
        let manual = service("m", json!([{ "port": 80 }]));
        let s = slice("ns", "m-manual", "m", "IPv6", ports.clone(), json!([{ "addresses": ["2001:db8::1"] }]));
        assert_eq!(resolve(&key("m", 80), Some(&manual), &[s]), addrs(&["[2001:db8::1]:8080"]));
        let external = serde_json::from_value::<Service>(json!({
            "metadata": { "namespace": "ns", "name": "x" },
            "spec": { "type": "ExternalName", "externalName": "example.com", "ports": [{ "port": 80 }] },
        }))
        .unwrap();
        assert!(is_external_name(&external));
        let s = slice("ns", "x-1", "x", "IPv4", ports, json!([ready("10.0.0.1")]));
        assert_eq!(resolve(&key("x", 80), Some(&external), &[s]), Resolved::ExternalName);
        assert!(Resolved::ExternalName.into_addrs().is_empty());
    }

    type Reflected<K> = (Store<K>, reflector::store::Writer<K>);

    fn stores() -> (Reflected<Service>, Reflected<EndpointSlice>) {
        (reflector::store(), reflector::store())
    }

    #[test]
    fn refresh_all_writes_every_key_from_the_stores() {
        let ((services, mut service_writer), (slices, mut slice_writer)) = stores();
        let ports = json!([{ "name": "http", "port": 8080 }]);
        service_writer.apply_watcher_event(&watcher::Event::Apply(web()));
        let first = slice("ns", "web-1", "web", "IPv4", ports.clone(), json!([ready("10.0.0.2"), ready("10.0.0.1")]));
        slice_writer.apply_watcher_event(&watcher::Event::Apply((*first).clone()));
        let noise = slice("ns", "api-1", "api", "IPv4", ports.clone(), json!([ready("10.0.0.7")]));
        slice_writer.apply_watcher_event(&watcher::Event::Apply((*noise).clone()));

        let registry = Services::default();
        let (services, slices) = ([services], [slices]);
        assert_eq!(refresh_all(&registry, &services, &slices), 0, "no key yet");
        let web80 = registry.entry(&key("web", 80));
        let web81 = registry.entry(&key("web", 81));
        let gone = registry.entry(&key("gone", 80));
        assert_eq!(refresh_all(&registry, &services, &slices), 1);
        assert_eq!(web80.len(), 2);
        assert!(web81.is_empty() && gone.is_empty(), "no such port, no such Service");
        assert_eq!(refresh_all(&registry, &services, &slices), 0, "unchanged");

        // a terminates while b is ready: b alone.
        let next = slice(
            "ns",
            "web-1",
            "web",
            "IPv4",
            ports.clone(),
            json!([ep("10.0.0.1", Some(false), Some(true), Some(true)), ready("10.0.0.2")]),
        );
        slice_writer.apply_watcher_event(&watcher::Event::Apply((*next).clone()));
        assert_eq!(refresh_all(&registry, &services, &slices), 1);
        assert_eq!(web80.pick().unwrap().name, "http://10.0.0.2:8080");

        // The Service goes: its key is emptied.
        service_writer.apply_watcher_event(&watcher::Event::Delete(web()));
        assert_eq!(refresh_all(&registry, &services, &slices), 1);
        assert!(web80.is_empty());
    }

    #[test]
    fn refresh_all_reads_every_namespace_store() {
        let ((ns_services, mut ns_service_writer), (ns_slices, mut ns_slice_writer)) = stores();
        let ((prod_services, mut prod_service_writer), (prod_slices, mut prod_slice_writer)) = stores();
        let ports = json!([{ "name": "http", "port": 8080 }]);
        ns_service_writer.apply_watcher_event(&watcher::Event::Apply(web()));
        let mut prod_web = web();
        prod_web.metadata.namespace = Some("prod".into());
        prod_service_writer.apply_watcher_event(&watcher::Event::Apply(prod_web));
        let s = slice("ns", "web-1", "web", "IPv4", ports.clone(), json!([ready("10.0.0.1")]));
        ns_slice_writer.apply_watcher_event(&watcher::Event::Apply((*s).clone()));
        let s = slice("prod", "web-1", "web", "IPv6", ports.clone(), json!([ready("fd00::1")]));
        prod_slice_writer.apply_watcher_event(&watcher::Event::Apply((*s).clone()));

        let registry = Services::default();
        let here = registry.entry(&key("web", 80));
        let prod_key = ServiceRef { namespace: "prod".into(), name: "web".into(), port: 80 };
        let there = registry.entry(&prod_key);
        let changed = refresh_all(&registry, &[ns_services, prod_services], &[ns_slices, prod_slices]);
        assert_eq!(changed, 2);
        assert_eq!(here.pick().unwrap().name, "http://10.0.0.1:8080");
        assert_eq!(there.pick().unwrap().name, "http://[fd00::1]:8080");
    }

    #[test]
    fn the_watch_answers_lookups_and_refreshes_on_demand() {
        let ((services, mut service_writer), (slices, mut slice_writer)) = stores();
        service_writer.apply_watcher_event(&watcher::Event::Apply(web()));
        let s =
            slice("ns", "web-1", "web", "IPv4", json!([{ "name": "http", "port": 8080 }]), json!([ready("10.0.0.1")]));
        slice_writer.apply_watcher_event(&watcher::Event::Apply((*s).clone()));
        let registry = Arc::new(Services::default());
        let watch = EndpointsWatch {
            inner: Arc::new(Inner {
                services: vec![services],
                slices: vec![slices],
                registry: registry.clone(),
                refreshing: Default::default(),
                tasks: Default::default(),
            }),
        };
        assert!(watch.has_service("ns", "web") && !watch.has_service("ns", "api") && !watch.has_service("prod", "web"));
        let found = watch.service("ns", "web").unwrap();
        assert_eq!(service_port_number(&found, "http"), Some(80));
        assert_eq!(watch.resolve(&key("web", 80)), addrs(&["10.0.0.1:8080"]));
        assert_eq!(watch.resolve(&key("api", 80)), Resolved::NoService);
        let entry = registry.entry(&key("web", 80));
        assert!(entry.is_empty(), "a new key waits for a refresh");
        assert_eq!(watch.refresh_now(), 1);
        assert_eq!(entry.pick().unwrap().name, "http://10.0.0.1:8080");
    }

    /// The watch starts, in either form, and stops with its last handle, with no API server to
    /// talk to (a closed local port): nothing is found and nothing blocks.
    #[tokio::test]
    async fn the_watch_starts_and_stops_without_an_api_server() {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let registry = Arc::new(Services::default());
        let web80 = registry.entry(&key("web", 80));
        for namespaces in [None, Some(vec!["ns".to_string(), "prod".into(), "ns".into()]), Some(vec![])] {
            let watch = spawn(client.clone(), namespaces.clone(), registry.clone(), None);
            let expected = match &namespaces {
                None => 1,
                Some(list) if list.is_empty() => 0,
                Some(_) => 2,
            };
            assert_eq!(watch.inner.services.len(), expected);
            assert_eq!(watch.inner.slices.len(), expected);
            assert_eq!(watch.synced(Duration::from_millis(50)).await, expected == 0);
            assert!(!watch.has_service("ns", "web"));
            assert_eq!(watch.refresh_now(), 0);
            assert!(web80.is_empty());
            let tasks = watch.inner.tasks.lock().clone();
            assert_eq!(tasks.len(), expected * 2 + 1);
            drop(watch);
            for _ in 0..200 {
                if tasks.iter().all(|t| t.is_finished()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(tasks.iter().all(|t| t.is_finished()), "the tasks stop with the last handle");
        }
    }

    #[tokio::test]
    async fn a_burst_of_events_settles_into_one_refresh() {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            for _ in 0..5 {
                n.notify_one();
                tokio::task::yield_now().await;
            }
        });
        settle(&notify).await;
        assert!(start.elapsed() >= DEBOUNCE, "{:?}", start.elapsed());
        let again = tokio::time::timeout(DEBOUNCE * 3, notify.notified()).await;
        assert!(again.is_err(), "the whole burst was taken by one settle");

        // A steady stream of events does not defer the refresh for ever.
        let n = notify.clone();
        let feeder = tokio::spawn(async move {
            loop {
                n.notify_one();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let start = Instant::now();
        assert!(tokio::time::timeout(Duration::from_secs(5), settle(&notify)).await.is_ok());
        assert!(start.elapsed() >= DEBOUNCE, "{:?}", start.elapsed());
        feeder.abort();
    }
}
