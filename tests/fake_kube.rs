//! The generic fake of the Kubernetes API (`common::fake_kube`) checked with kube's real client
//! and watcher: every test here runs against the in-process FAKE over loopback HTTP, not a
//! real API server (none can run here). What the fake keeps of the real API, and what it does
//! not, is listed in its module documentation.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fake_kube::FakeKube;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    Preconditions, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

type Events<K> = std::pin::Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>>;

fn watch<K>(api: Api<K>, config: watcher::Config) -> Events<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    Box::pin(watcher::watcher(api, config))
}

/// The next thing the watcher yields, within a guard against a hang.
async fn next<K>(events: &mut Events<K>) -> Result<Event<K>, watcher::Error> {
    tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("a watcher event within 30 s")
        .expect("the watcher goes on")
}

fn id<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// An event, in a word and the object's namespace/name.
fn describe<K: Resource>(event: &Result<Event<K>, watcher::Error>) -> String {
    match event {
        Ok(Event::Init) => "init".into(),
        Ok(Event::InitApply(o)) => format!("init-apply {}", id(o)),
        Ok(Event::InitDone) => "init-done".into(),
        Ok(Event::Apply(o)) => format!("apply {}", id(o)),
        Ok(Event::Delete(o)) => format!("delete {}", id(o)),
        Err(e) => format!("error {e}"),
    }
}

/// The next `n` events, described.
async fn take<K: Resource>(events: &mut Events<K>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(describe(&next(events).await));
    }
    out
}

/// The objects of the initial list, up to `InitDone`.
async fn initial<K: Resource>(events: &mut Events<K>) -> Vec<String> {
    assert_eq!(describe(&next(events).await), "init");
    let mut listed = Vec::new();
    loop {
        match next(events).await {
            Ok(Event::InitApply(o)) => listed.push(id(&o)),
            Ok(Event::InitDone) => return listed,
            other => panic!("during the initial list: {}", describe(&other)),
        }
    }
}

fn api_status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

fn service(ns: &str, name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name, "namespace": ns },
            "spec": { "ports": [{ "port": 80, "targetPort": 8080 }], "selector": { "app": name } } })
}

fn typed<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// Against the in-process fake, not a real API server: Services in several namespaces are
/// listed and watched across all of them, a namespaced list or watch sees its own namespace
/// only, and a list is the API's `ServiceList` document.
#[tokio::test]
async fn services_are_listed_and_watched_across_namespaces() {
    let fake = FakeKube::start().await;
    fake.put(service("a", "one"));
    fake.put(service("b", "two"));
    let client = fake.client();
    let all: Api<Service> = Api::all(client.clone());
    let in_a: Api<Service> = Api::namespaced(client.clone(), "a");
    let ids = |items: Vec<Service>| items.iter().map(id).collect::<Vec<_>>();
    assert_eq!(ids(all.list(&ListParams::default()).await.unwrap().items), ["a/one", "b/two"]);
    assert_eq!(ids(in_a.list(&ListParams::default()).await.unwrap().items), ["a/one"]);
    let raw: Value = client.request(http::Request::get("/api/v1/services").body(vec![]).unwrap()).await.unwrap();
    assert_eq!((raw["apiVersion"].as_str(), raw["kind"].as_str()), (Some("v1"), Some("ServiceList")));
    assert_eq!(raw["metadata"]["resourceVersion"], fake.resource_version().to_string());
    assert_eq!(
        (raw["items"][1]["apiVersion"].as_str(), raw["items"][1]["kind"].as_str()),
        (Some("v1"), Some("Service"))
    );
    assert!(
        raw["items"][1]["metadata"]["uid"].is_string() && raw["items"][1]["metadata"]["creationTimestamp"].is_string()
    );

    let mut every = watch(all.clone(), watcher::Config::default());
    let mut only_a = watch(in_a.clone(), watcher::Config::default());
    assert_eq!(initial(&mut every).await, ["a/one", "b/two"]);
    assert_eq!(initial(&mut only_a).await, ["a/one"]);
    // Created through the API in b, by the test in c, deleted from a.
    let in_b: Api<Service> = Api::namespaced(client.clone(), "b");
    in_b.create(&PostParams::default(), &typed(service("b", "three"))).await.unwrap();
    fake.put(service("c", "four"));
    assert!(fake.delete("v1", "Service", "a", "one"));
    assert_eq!(take(&mut every, 3).await, ["apply b/three", "apply c/four", "delete a/one"]);
    assert_eq!(take(&mut only_a, 1).await, ["delete a/one"], "b and c are not seen from a");
    // A change made while the watches are open.
    fake.put(service("a", "five"));
    assert_eq!(take(&mut every, 1).await, ["apply a/five"]);
    assert_eq!(take(&mut only_a, 1).await, ["apply a/five"]);
    assert_eq!(fake.list("v1", "Service").len(), 4);
}

fn slice(ns: &str, name: &str, service: Option<&str>, address: &str) -> Value {
    let labels = match service {
        Some(s) => json!({ "kubernetes.io/service-name": s }),
        None => json!({}),
    };
    json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            "addressType": "IPv4", "endpoints": [{ "addresses": [address] }], "ports": [{ "port": 8080 }] })
}

/// Against the in-process fake, not a real API server: a watch with
/// `labelSelector=kubernetes.io/service-name=web` sees the EndpointSlices of that Service only;
/// one relabelled away is seen as deleted, one relabelled to it as added. Equality-based
/// selectors work on lists too, and a set-based one is refused.
#[tokio::test]
async fn a_label_selector_watch_sees_a_relabelled_endpoint_slice_as_deleted() {
    let fake = FakeKube::start().await;
    fake.put(slice("a", "web-1", Some("web"), "10.0.0.1"));
    fake.put(slice("a", "api-1", Some("api"), "10.0.0.2"));
    fake.put(slice("b", "bare", None, "10.0.0.3"));
    let slices: Api<EndpointSlice> = Api::all(fake.client());
    let mut web = watch(slices.clone(), watcher::Config::default().labels("kubernetes.io/service-name=web"));
    assert_eq!(initial(&mut web).await, ["a/web-1"]);

    fake.put(slice("b", "web-2", Some("web"), "10.0.0.4"));
    let in_a: Api<EndpointSlice> = Api::namespaced(fake.client(), "a");
    let relabel = json!({ "metadata": { "labels": { "kubernetes.io/service-name": "api" } } });
    let moved = in_a.patch("web-1", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    assert_eq!(moved.metadata.generation, Some(2), "a label change moves an EndpointSlice's generation");
    fake.put(slice("a", "api-1", Some("web"), "10.0.0.2"));
    fake.put(slice("a", "api-1", Some("web"), "10.0.0.5"));
    fake.put(slice("b", "bare", None, "10.0.0.6"));
    fake.delete("discovery.k8s.io/v1", "EndpointSlice", "b", "web-2");
    assert_eq!(
        take(&mut web, 5).await,
        ["apply b/web-2", "delete a/web-1", "apply a/api-1", "apply a/api-1", "delete b/web-2"],
        "web-1 relabelled away is deleted, api-1 relabelled to web is added, bare is never seen"
    );

    let names = |lp: ListParams| {
        let slices = slices.clone();
        async move { slices.list(&lp).await.map(|l| l.items.iter().map(id).collect::<Vec<_>>()) }
    };
    let key = "kubernetes.io/service-name";
    assert_eq!(names(ListParams::default().labels(&format!("!{key}"))).await.unwrap(), ["b/bare"]);
    assert_eq!(names(ListParams::default().labels(key)).await.unwrap(), ["a/api-1", "a/web-1"]);
    assert_eq!(names(ListParams::default().labels(&format!("{key}!=web"))).await.unwrap(), ["a/web-1", "b/bare"]);
    assert_eq!(names(ListParams::default().labels(&format!("{key}==web,{key}"))).await.unwrap(), ["a/api-1"]);
    assert_eq!(names(ListParams::default().fields("metadata.namespace=b")).await.unwrap(), ["b/bare"]);
    assert_eq!(names(ListParams::default().fields("metadata.name!=bare")).await.unwrap(), ["a/api-1", "a/web-1"]);
    let refused = names(ListParams::default().labels(&format!("{key} in (web)"))).await.unwrap_err();
    assert_eq!(api_status(refused), (400, "BadRequest".to_string()));
    let refused = names(ListParams::default().fields("addressType=IPv4")).await.unwrap_err();
    assert_eq!(api_status(refused), (400, "BadRequest".to_string()));
}

fn ingress(name: &str) -> Value {
    json!({ "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": { "name": name, "namespace": "web" },
            "spec": { "rules": [{ "host": format!("{name}.test") }] } })
}

/// Against the in-process fake, not a real API server: once the history is compacted, the
/// watch ends with a 410 Expired ERROR event, kube's watcher re-lists, and what it holds
/// converges to what the fake holds, changes made meanwhile included. A watch from a version
/// before the compaction gets 410 at once.
#[tokio::test]
async fn after_a_compaction_the_watcher_gets_410_relists_and_converges() {
    let fake = FakeKube::start().await;
    fake.put(ingress("keep"));
    fake.put(ingress("gone"));
    let ingresses: Api<Ingress> = Api::namespaced(fake.client(), "web");
    let mut events = watch(ingresses.clone(), watcher::Config::default());
    let mut held: BTreeSet<String> = initial(&mut events).await.into_iter().collect();
    assert_eq!(held, BTreeSet::from(["web/gone".to_string(), "web/keep".to_string()]));

    // Changes, then the compaction: whether the watch was open by then (it ends with 410) or
    // not (it asks for a version that is gone), the watcher sees 410.
    fake.put(ingress("new"));
    fake.delete("networking.k8s.io/v1", "Ingress", "web", "gone");
    fake.compact();
    let want: BTreeSet<String> = fake
        .list("networking.k8s.io/v1", "Ingress")
        .iter()
        .map(|o| format!("web/{}", o["metadata"]["name"].as_str().unwrap()))
        .collect();
    let (mut expired, mut relisted) = (false, false);
    let mut listing = BTreeSet::new();
    while !(expired && relisted && held == want) {
        match next(&mut events).await {
            Err(watcher::Error::WatchError(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
                expired = true;
            }
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(o)) => {
                listing.insert(id(&o));
            }
            Ok(Event::InitDone) => {
                assert!(expired, "a re-list comes after the 410");
                held = std::mem::take(&mut listing);
                relisted = true;
            }
            Ok(Event::Apply(o)) => {
                held.insert(id(&o));
            }
            Ok(Event::Delete(o)) => {
                held.remove(&id(&o));
            }
            Err(other) => panic!("watcher error: {other}"),
        }
    }
    let lists = fake.requests().iter().filter(|r| r.is_list_of("ingresses")).count();
    assert_eq!(lists, 2, "one list, then one re-list after 410:\n{}", fake.request_log());

    let mut stale = ingresses.watch(&WatchParams::default().disable_bookmarks(), "1").await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(30), stale.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("want 410 Expired: {other:?}"),
    }
    // From the latest version, the watch goes on.
    let mut fresh = ingresses
        .watch(&WatchParams::default().disable_bookmarks(), &fake.resource_version().to_string())
        .await
        .unwrap()
        .boxed();
    fake.put(ingress("later"));
    match tokio::time::timeout(Duration::from_secs(30), fresh.next()).await.unwrap() {
        Some(Ok(WatchEvent::Added(i))) => assert_eq!(i.name_any(), "later"),
        other => panic!("want later added: {other:?}"),
    }
}

fn gateways(client: kube::Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", version, "Gateway");
    Api::namespaced_with(client, "web", &ApiResource::from_gvk_with_plural(&gvk, "gateways"))
}

/// Against the in-process fake, not a real API server: on a Gateway (a custom resource with a
/// status subresource), a status write changes `.status` only and keeps the generation, a
/// spec change through the main resource bumps it and cannot touch `.status`, a metadata-only
/// change keeps it, and a write that changes nothing is a no-op.
#[tokio::test]
async fn a_status_write_keeps_the_generation_and_a_spec_change_bumps_it() {
    let fake = FakeKube::start().await;
    let api = gateways(fake.client(), "v1");
    let gateway: DynamicObject = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": { "name": "gw" },
        "spec": { "gatewayClassName": "lwsws", "listeners": [{ "name": "http", "port": 80, "protocol": "HTTP" }] },
        "status": { "conditions": [{ "type": "Accepted", "status": "True" }] } }));
    let created = api.create(&PostParams::default(), &gateway).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none(), "a create drops the status: {:?}", created.data);
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("web"));
    let rv = |o: &DynamicObject| o.metadata.resource_version.clone().unwrap().parse::<u64>().unwrap();

    let accepted = json!({ "status": { "conditions": [{ "type": "Accepted", "status": "True" }] } });
    let after_status = api.patch_status("gw", &PatchParams::default(), &Patch::Merge(&accepted)).await.unwrap();
    assert_eq!(after_status.metadata.generation, Some(1), "a status write keeps the generation");
    assert!(rv(&after_status) > rv(&created));
    assert_eq!(after_status.data["status"], accepted["status"]);
    assert_eq!(fake.status_writes("Gateway"), 1);

    let respec = json!({ "spec": { "gatewayClassName": "other" }, "status": { "conditions": [] } });
    let after_spec = api.patch("gw", &PatchParams::default(), &Patch::Merge(&respec)).await.unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2), "a spec change bumps the generation");
    assert_eq!(after_spec.data["status"], accepted["status"], "the main resource cannot write the status");
    assert_eq!(after_spec.data["spec"]["listeners"][0]["port"], 80, "a merge patch keeps what it does not name");

    let label = json!({ "metadata": { "labels": { "team": "edge" } } });
    let labelled = api.patch("gw", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(2), "metadata changes keep the generation");
    let again = api.patch("gw", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    assert_eq!(rv(&again), rv(&labelled), "a write that changes nothing is a no-op");

    // PUT of /status: a spec change in the body is ignored.
    let mut whole = api.get("gw").await.unwrap();
    whole.data["spec"]["gatewayClassName"] = json!("ignored");
    whole.data["status"] = json!({ "conditions": [{ "type": "Programmed", "status": "True" }] });
    let replaced = api.replace_status("gw", &PostParams::default(), &whole).await.unwrap();
    assert_eq!(replaced.data["spec"]["gatewayClassName"], "other");
    assert_eq!(replaced.data["status"]["conditions"][0]["type"], "Programmed");
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(fake.status_writes("Gateway"), 2);
    assert_eq!(api.get_status("gw").await.unwrap().data["status"]["conditions"][0]["type"], "Programmed");

    // The test's own writes keep a given creationTimestamp and status (as the cluster's state).
    let seeded = fake.put(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": "old", "namespace": "web", "creationTimestamp": "2020-01-01T00:00:00Z" },
        "spec": { "gatewayClassName": "lwsws" }, "status": { "conditions": [] } }));
    assert_eq!(seeded["metadata"]["creationTimestamp"], "2020-01-01T00:00:00Z");
    let read = api.get("old").await.unwrap();
    assert_eq!(serde_json::to_value(read.metadata.creation_timestamp).unwrap(), "2020-01-01T00:00:00Z");
    assert_eq!(read.data["status"], json!({ "conditions": [] }));
}

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some("leader".into()), ..Default::default() },
        spec: Some(LeaseSpec { holder_identity: Some(holder.into()), ..Default::default() }),
    }
}

/// Against the in-process fake, not a real API server: optimistic concurrency. A PUT with a
/// resourceVersion that is no longer the stored one is 409 Conflict; without one it is
/// unconditional for a Lease but refused (422) for a custom resource, as the API server does.
/// Creating what exists, reading or deleting what does not, and a failed delete precondition
/// answer as the real API does.
#[tokio::test]
async fn a_put_with_a_stale_resource_version_is_a_conflict() {
    let fake = FakeKube::start().await;
    let leases: Api<Lease> = Api::namespaced(fake.client(), "web");
    let pp = PostParams::default();
    let first = leases.create(&pp, &lease("a")).await.unwrap();
    assert_eq!(first.metadata.generation, None, "a Lease has no generation");
    let mut mine = first.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let taken = leases.replace("leader", &pp, &mine).await.unwrap();
    assert_ne!(taken.metadata.resource_version, first.metadata.resource_version);
    let mut stale = first.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    assert_eq!(api_status(leases.replace("leader", &pp, &stale).await.unwrap_err()), (409, "Conflict".into()));
    assert_eq!(leases.get("leader").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("b"));
    let unconditional = leases.replace("leader", &pp, &lease("d")).await.unwrap();
    assert_eq!(unconditional.spec.unwrap().holder_identity.as_deref(), Some("d"));
    let stale_patch = json!({ "metadata": { "resourceVersion": first.metadata.resource_version }, "spec": { "holderIdentity": "e" } });
    let refused = leases.patch("leader", &PatchParams::default(), &Patch::Merge(&stale_patch)).await.unwrap_err();
    assert_eq!(api_status(refused), (409, "Conflict".into()));

    assert_eq!(api_status(leases.create(&pp, &lease("x")).await.unwrap_err()), (409, "AlreadyExists".into()));
    assert_eq!(api_status(leases.get("nobody").await.unwrap_err()), (404, "NotFound".into()));
    assert_eq!(api_status(leases.delete("nobody", &DeleteParams::default()).await.unwrap_err()).0, 404);
    let precondition = DeleteParams {
        preconditions: Some(Preconditions { resource_version: first.metadata.resource_version.clone(), uid: None }),
        ..Default::default()
    };
    assert_eq!(api_status(leases.delete("leader", &precondition).await.unwrap_err()).0, 409);
    assert!(
        leases.delete("leader", &DeleteParams::default()).await.unwrap().is_right(),
        "a Status for a built-in kind"
    );
    assert!(fake.get("coordination.k8s.io/v1", "Lease", "web", "leader").is_none());

    // A custom resource needs the resourceVersion on PUT.
    let routes = Api::<DynamicObject>::namespaced_with(
        fake.client(),
        "web",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let route: DynamicObject = typed(json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "r" }, "spec": { "hostnames": ["a.test"] } }));
    let created = routes.create(&pp, &route).await.unwrap();
    assert_eq!(api_status(routes.replace("r", &pp, &route).await.unwrap_err()), (422, "Invalid".into()));
    let mut edited = created.clone();
    edited.data["spec"]["hostnames"] = json!(["b.test"]);
    let replaced = routes.replace("r", &pp, &edited).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(api_status(routes.replace("r", &pp, &edited).await.unwrap_err()), (409, "Conflict".into()));
    assert!(routes.delete("r", &DeleteParams::default()).await.unwrap().is_left(), "the object for a custom resource");
}

/// Against the in-process fake, not a real API server: cluster-scoped kinds (Namespace,
/// IngressClass, GatewayClass) are served without a namespace in the path, with the status
/// subresource where they have one, and watched; a namespaced path for them is 404.
#[tokio::test]
async fn cluster_scoped_kinds_are_served_without_a_namespace() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns =
        namespaces.create(&PostParams::default(), &typed(json!({ "metadata": { "name": "team-a" } }))).await.unwrap();
    assert_eq!(ns.metadata.namespace, None);
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(fake.get("v1", "Namespace", "", "team-a").is_some());
    fake.put(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team-b" } }));
    let names: Vec<String> = namespaces.list(&ListParams::default()).await.unwrap().items.iter().map(id).collect();
    assert_eq!(names, ["team-a", "team-b"]);

    let classes: Api<IngressClass> = Api::all(client.clone());
    let class = json!({ "metadata": { "name": "lwsws" }, "spec": { "controller": "lwsws.io/ingress" } });
    classes.create(&PostParams::default(), &typed(class)).await.unwrap();
    assert_eq!(classes.get("lwsws").await.unwrap().metadata.generation, Some(1));
    let wrong = http::Request::get("/apis/networking.k8s.io/v1/namespaces/team-a/ingressclasses").body(vec![]).unwrap();
    assert_eq!(api_status(client.request_text(wrong).await.unwrap_err()), (404, "NotFound".into()));

    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass");
    let gateway_classes: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "gatewayclasses"));
    let mut events = watch(gateway_classes.clone(), watcher::Config::default());
    assert_eq!(initial(&mut events).await, Vec::<String>::new());
    fake.put(
        json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": { "name": "lwsws" },
                     "spec": { "controllerName": "lwsws.io/gateway" } }),
    );
    let accepted = json!({ "status": { "conditions": [{ "type": "Accepted", "status": "True" }] } });
    let patched =
        gateway_classes.patch_status("lwsws", &PatchParams::default(), &Patch::Merge(&accepted)).await.unwrap();
    assert_eq!(patched.data["status"], accepted["status"]);
    assert_eq!(fake.status_writes("GatewayClass"), 1);
    assert_eq!(take(&mut events, 2).await, ["apply lwsws", "apply lwsws"], "the create, then the status write");
    let stored = fake.get("gateway.networking.k8s.io/v1", "GatewayClass", "", "lwsws").unwrap();
    assert_eq!(stored["status"], accepted["status"]);
    assert!(gateway_classes.delete("lwsws", &DeleteParams::default()).await.unwrap().is_left());
    assert_eq!(take(&mut events, 1).await, ["delete lwsws"]);
}

/// Against the in-process fake, not a real API server: ReferenceGrants are served at v1 and
/// v1beta1 as one set of objects, each answered with the version that was asked for.
#[tokio::test]
async fn reference_grants_are_one_set_of_objects_at_v1_and_v1beta1() {
    let fake = FakeKube::start().await;
    let grants = |version: &str| {
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", version, "ReferenceGrant");
        Api::<DynamicObject>::namespaced_with(
            fake.client(),
            "certs",
            &ApiResource::from_gvk_with_plural(&gvk, "referencegrants"),
        )
    };
    let grant: DynamicObject = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": { "name": "to-secrets" },
        "spec": { "from": [{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "web" }],
                  "to": [{ "group": "", "kind": "Secret" }] } }));
    grants("v1beta1").create(&PostParams::default(), &grant).await.unwrap();
    let at_v1 = grants("v1").get("to-secrets").await.unwrap();
    assert_eq!(at_v1.types.unwrap().api_version, "gateway.networking.k8s.io/v1");
    assert_eq!(at_v1.data["spec"]["to"][0]["kind"], "Secret");
    let listed = grants("v1beta1").list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        fake.list("gateway.networking.k8s.io/v1beta1", "ReferenceGrant")[0]["apiVersion"],
        "gateway.networking.k8s.io/v1beta1"
    );
    // A Gateway-API kind's other versions are served too; an unknown version is not.
    assert_eq!(gateways(fake.client(), "v1beta1").list(&ListParams::default()).await.unwrap().items.len(), 0);
    let unknown = gateways(fake.client(), "v1alpha9").list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_status(unknown).0, 404);
}

/// Against the in-process fake, not a real API server: server-side apply, simplified as the
/// fake documents it. It creates, merges what another manager set, drops what the same manager
/// no longer applies, and is 409 Conflict on another manager's field without `force`.
#[tokio::test]
async fn server_side_apply_merges_by_field_manager() {
    let fake = FakeKube::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(fake.client(), "web");
    let applied = |data: Value| {
        typed::<ConfigMap>(
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "conf" }, "data": data }),
        )
    };
    let lwsws = PatchParams::apply("lwsws");
    let made = maps.patch("conf", &lwsws, &Patch::Apply(applied(json!({ "a": "1", "b": "2" })))).await.unwrap();
    assert_eq!(made.data.unwrap().len(), 2);
    maps.patch("conf", &PatchParams::apply("other"), &Patch::Apply(applied(json!({ "c": "3" })))).await.unwrap();
    let merged = maps.patch("conf", &lwsws, &Patch::Apply(applied(json!({ "a": "1" })))).await.unwrap();
    let keys: Vec<String> = merged.data.unwrap().into_keys().collect();
    assert_eq!(keys, ["a", "c"], "b is dropped by its manager, c is the other manager's");
    let refused = maps.patch("conf", &lwsws, &Patch::Apply(applied(json!({ "a": "1", "c": "x" })))).await.unwrap_err();
    assert_eq!(api_status(refused), (409, "Conflict".into()));
    let forced = maps
        .patch("conf", &lwsws.clone().force(), &Patch::Apply(applied(json!({ "a": "1", "c": "x" }))))
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["c"], "x");
    let raw = http::Request::patch("/api/v1/namespaces/web/configmaps/conf")
        .header("content-type", "application/apply-patch+yaml")
        .body(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n".to_vec())
        .unwrap();
    assert_eq!(api_status(fake.client().request_text(raw).await.unwrap_err()), (422, "Invalid".into()));
}

/// Against the in-process fake, not a real API server: what it does not serve answers with a
/// Status document (404 for an unknown path or kind, 405 for a method, 415 for a JSON patch),
/// every request is in its log, and the kubeconfig it writes names it.
#[tokio::test]
async fn unserved_requests_answer_with_a_status_and_the_kubeconfig_names_the_fake() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    for path in ["/api/v1/pods", "/apis/example.com/v1/widgets", "/healthz", "/api/v1/secrets/x"] {
        let err = client.request_text(http::Request::get(path).body(vec![]).unwrap()).await.unwrap_err();
        assert_eq!(api_status(err), (404, "NotFound".into()), "{path}");
    }
    let post_everywhere = http::Request::post("/api/v1/secrets").body(b"{}".to_vec()).unwrap();
    assert_eq!(api_status(client.request_text(post_everywhere).await.unwrap_err()).0, 405);
    fake.put(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s", "namespace": "web" },
                     "stringData": { "k": "v" } }));
    let stored = fake.get("v1", "Secret", "web", "s").unwrap();
    assert_eq!((stored["data"]["k"].as_str(), stored["type"].as_str()), (Some("dg=="), Some("Opaque")));
    let json_patch = http::Request::patch("/api/v1/namespaces/web/secrets/s")
        .header("content-type", "application/json-patch+json")
        .body(br#"[{"op":"remove","path":"/data/k"}]"#.to_vec())
        .unwrap();
    assert_eq!(api_status(client.request_text(json_patch).await.unwrap_err()).0, 415);
    let log = fake.request_log();
    assert!(
        log.contains("GET /api/v1/pods -> 404") && log.contains("PATCH /api/v1/namespaces/web/secrets/s -> 415"),
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.kubeconfig(&path);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(kube::Client::try_from(config).unwrap(), "web");
    assert_eq!(secrets.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

/// Against the in-process fake, not a real API server: lwsws's own Kubernetes code runs
/// against it (the controller's reflectors, its Secret watch with a field selector and its
/// status merge patches; the ACME store's server-side apply, reads and deletes), so tests of
/// that code can use the fake.
#[tokio::test]
async fn lwsws_kubernetes_code_runs_against_the_fake() {
    use lwsws::acme::CertStore;
    let fake = FakeKube::start().await;
    let www = tempfile::tempdir().unwrap();
    let config = |name: &str| {
        json!({ "apiVersion": "lwsws.io/v1alpha1", "kind": "LwswsConfig", "metadata": { "name": name, "namespace": "web" },
                "spec": { "vhosts": [{ "name": format!("{name}.test"), "port": 8080, "interface": "127.0.0.1",
                          "mounts": [{ "mountpoint": "/", "origin": format!("file://{}", www.path().display()) }] }] } })
    };
    fake.put(config("site"));
    let state = tempfile::tempdir().unwrap();
    let (ctl, mut changes) =
        lwsws::k8s::Controller::start(fake.client(), "web", state.path().join("secrets"), Default::default());
    assert!(ctl.synced(Duration::from_secs(30)).await, "the reflectors listed");
    let secret_watch = fake.requests().into_iter().find(|r| r.path == "/api/v1/namespaces/web/secrets");
    assert!(secret_watch.unwrap().query.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"));
    let conf = tempfile::tempdir().unwrap();
    let built = ctl.build(conf.path(), "/usr/share");
    assert!(built.loaded.is_ok(), "{:?}", built.loaded.err());
    assert_eq!(
        built.verdicts.iter().map(|v| (v.name.as_str(), v.problem.is_none())).collect::<Vec<_>>(),
        [("site", true)]
    );
    ctl.report(&built.verdicts, Ok(())).await;
    assert_eq!(fake.status_writes("LwswsConfig"), 1);
    let status = fake.get("lwsws.io/v1alpha1", "LwswsConfig", "web", "site").unwrap()["status"].clone();
    assert_eq!(status["conditions"][0]["type"], "Accepted", "{status}");
    assert_eq!(status["conditions"][0]["status"], "True", "{status}");

    // A new resource reaches the controller through its watch.
    fake.put(config("more"));
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while ctl.build(conf.path(), "/usr/share").verdicts.len() < 2 {
        let left = until.saturating_duration_since(std::time::Instant::now());
        assert!(
            matches!(tokio::time::timeout(left, changes.recv()).await, Ok(Some(()))),
            "the new resource was not seen"
        );
    }

    let answers = lwsws::k8s::acme_store::ChallengeSecrets::start(&fake.client(), "web");
    let store = lwsws::k8s::acme_store::SecretStore::new(fake.client(), "web", "Example.test", answers);
    assert!(store.load_cert().await.unwrap().is_none());
    store.save_account(r#"{"id":"acct"}"#).await.unwrap();
    store.save_cert("CHAIN", "KEY").await.unwrap();
    store.save_cert("CHAIN 2", "KEY 2").await.unwrap();
    assert_eq!(store.load_cert().await.unwrap(), Some(("CHAIN 2".to_string(), "KEY 2".to_string())));
    assert_eq!(store.load_account().await.unwrap().as_deref(), Some(r#"{"id":"acct"}"#));
    let secrets = fake.list("v1", "Secret");
    let cert = secrets.iter().find(|s| s["type"] == "kubernetes.io/tls").unwrap();
    assert_eq!(cert["metadata"]["labels"]["app.kubernetes.io/managed-by"], "lwsws");
    store.forget_account().await.unwrap();
    assert!(store.load_account().await.unwrap().is_none());
    store.forget_account().await.unwrap();
}

fn config_map(name: &str, value: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "web" },
            "data": { "k": value } })
}

/// Against the in-process fake, not a real API server: a watch from "0" starts with a
/// synthetic ADDED per object, kube's streaming-list watcher (`sendInitialEvents`) gets its
/// initial-events-end bookmark, bookmarks carry the latest version (changes to other kinds
/// included), and `timeoutSeconds` ends the stream.
#[tokio::test]
async fn watches_from_zero_streaming_lists_bookmarks_and_timeouts() {
    let fake = FakeKube::start().await;
    fake.put(config_map("a", "1"));
    fake.put(config_map("b", "1"));
    let maps: Api<ConfigMap> = Api::namespaced(fake.client(), "web");
    let mut from_zero = maps.watch(&WatchParams::default().disable_bookmarks(), "0").await.unwrap().boxed();
    for want in ["a", "b"] {
        match tokio::time::timeout(Duration::from_secs(30), from_zero.next()).await.unwrap() {
            Some(Ok(WatchEvent::Added(m))) => assert_eq!(m.name_any(), want),
            other => panic!("want {want} added: {other:?}"),
        }
    }

    let mut streaming = watch(maps.clone(), watcher::Config::default().streaming_lists());
    assert_eq!(initial(&mut streaming).await, ["web/a", "web/b"]);
    fake.put(config_map("a", "2"));
    assert_eq!(take(&mut streaming, 1).await, ["apply web/a"]);
    let sent_initial = fake.requests().iter().any(|r| r.is_watch() && r.query.contains("sendInitialEvents=true"));
    assert!(sent_initial, "{}", fake.request_log());

    let params = WatchParams::default().timeout(3);
    let mut marked = maps.watch(&params, &fake.resource_version().to_string()).await.unwrap().boxed();
    fake.put(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "other-kind", "namespace": "web" } }));
    let latest = fake.resource_version().to_string();
    let mut bookmarked = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), marked.next()).await.expect("the watch ends by itself") {
            Some(Ok(WatchEvent::Bookmark(b))) => bookmarked |= b.metadata.resource_version == latest,
            None => break,
            other => panic!("only bookmarks here: {other:?}"),
        }
    }
    assert!(bookmarked, "a bookmark at the Secret's version, before the 3 s timeout ended the watch");
}
