//! A FAKE of the Kubernetes API, generic over kinds and namespaces, for tests that cannot have
//! a real API server. It is served over real loopback HTTP (127.0.0.1, port 0) and reached with
//! kube's real client, so what a test checks goes through the same requests, URLs, query
//! parameters and JSON that a cluster would see.
//!
//! What it keeps of the real API:
//! - The kinds in [`RESOURCES`] (one line each), at `/api/v1/...` for the core group and
//!   `/apis/{group}/{version}/...` otherwise; namespaced kinds at `namespaces/{ns}/{plural}` and,
//!   for lists and watches across namespaces, at `{plural}`; cluster-scoped kinds at `{plural}`.
//!   A kind served at several versions (ReferenceGrant at v1 and v1beta1) is one set of objects,
//!   answered with the `apiVersion` of the URL. Anything else is 404 with a Status document.
//! - GET (404 NotFound), LIST (`{Kind}List` with the collection `resourceVersion`, each item with
//!   its `apiVersion` and `kind`), POST (409 AlreadyExists; `generateName`), PUT (409 Conflict
//!   when `metadata.resourceVersion` differs from the stored one; without it the update is
//!   unconditional for built-in kinds and 422 Invalid for custom resources, as the API server's
//!   custom-resource strategy does), PATCH, DELETE (404 if absent; `preconditions` in the
//!   DeleteOptions; the answer is a Success Status for built-in kinds and the deleted object for
//!   custom resources).
//! - One global `resourceVersion` counter, as etcd's revision. A write that changes nothing is a
//!   no-op, as in the real API: no new resourceVersion and no watch event.
//! - Server-set metadata: `uid`, `resourceVersion`, `creationTimestamp` (a given one is KEPT, so
//!   a test can order objects by age: the real API would overwrite it), `generation` for the kinds
//!   that have one (1 on create, +1 when something other than metadata and status changes, and
//!   for EndpointSlices when labels change too, as in the real strategies; Secrets, ConfigMaps,
//!   Services, Namespaces and Leases have no generation). The namespace comes from the URL (a
//!   different one in the body is 400). A Secret's `stringData` is folded into `data` and its
//!   `type` defaults to Opaque. A Namespace is created with `status.phase: Active`.
//! - The `/status` subresource for kinds flagged STATUS: GET, PUT and PATCH change only
//!   `.status` and never the generation; writes to the main resource keep the stored `.status`
//!   (and a create drops a given one). Status writes are counted per kind ([`FakeKube::status_writes`]).
//! - PATCH: `application/merge-patch+json` (RFC 7386; a `metadata.resourceVersion` in the patch
//!   is a precondition); `application/strategic-merge-patch+json` is taken as a merge patch
//!   (lists are replaced whole, `$patch` directives are not understood) and refused with 415 for
//!   custom resources as the real API does; `application/json-patch+json` is refused with 415.
//! - Server-side apply (`application/apply-patch+yaml`, JSON or YAML body, `fieldManager`
//!   required, `force`), creating the object if absent. Simplified: ownership is tracked per
//!   manager as the set of leaf paths it applied (map keys under `spec`, `data`, ..., the keys of
//!   `metadata.labels` and `metadata.annotations`, `metadata.finalizers` and
//!   `metadata.ownerReferences`; a list is one leaf, replaced whole). An apply sets its leaves,
//!   removes the ones it applied before and no longer sends unless another manager applied them
//!   too, and is 409 Conflict when it changes another applier's leaf without `force` (with it,
//!   the leaf changes hands). Writes other than apply (PUT, PATCH, [`FakeKube::put`]) take the
//!   leaves they change away from the appliers but are not owners themselves, so they never
//!   cause a conflict. `managedFields` is never returned.
//! - `labelSelector` (equality-based: `k=v`, `k==v`, `k!=v`, `k`, `!k`, joined by commas;
//!   set-based `in`/`notin` is refused with 400) and `fieldSelector` (`metadata.name`,
//!   `metadata.namespace`, and `type` for Secrets, with `=`, `==`, `!=`; any other field is 400
//!   "field label not supported") on lists and watches.
//! - WATCH (`watch=true`): newline-delimited JSON events for the URL's namespace and selectors.
//!   From a `resourceVersion` N, the changes after N (from the kept history, then live); with
//!   none or "0", a synthetic ADDED for each object that exists, then live changes (as the real
//!   API does); `sendInitialEvents=true` (kube's streaming list) ends the initial ADDEDs with a
//!   BOOKMARK annotated `k8s.io/initial-events-end`. An object that starts matching a selector is
//!   ADDED, one that stops matching is DELETED. BOOKMARKs every 500 ms with
//!   `allowWatchBookmarks=true`, never ahead of an event not yet sent. `timeoutSeconds` ends the
//!   stream. A version older than the kept history gets an ERROR event with a 410 Expired Status
//!   (what kube's watcher answers with a re-list); [`FakeKube::compact`] drops the history and
//!   ends every open watch that way.
//!
//! What it does not do: authentication, admission, validation of object contents or names,
//! defaulting (a Service gets no clusterIP, a Pod-like `spec` no defaults), finalizers and
//! graceful deletion (a DELETE removes the object at once), owner references garbage collection,
//! namespace existence checks (objects may live in a namespace that does not exist) or
//! namespace deletion cascades, pagination (`limit` and `continue` are ignored: a list is one
//! page), `resourceVersion`/`resourceVersionMatch` on lists (always the latest), the state at
//! an older version for `sendInitialEvents` (always the current one), PUT creating an object
//! (404 for every kind), JSON patches, field selectors on other fields, protobuf, table or
//! PartialObjectMetadata answers, discovery documents, and per-object watch URLs.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

/// A namespaced kind (else cluster-scoped).
const NAMESPACED: u8 = 1;
/// Has a `/status` subresource: main writes keep `.status`, status writes change only it.
const STATUS: u8 = 2;
/// Keeps `metadata.generation`, bumped when anything but metadata (and, with STATUS, status)
/// changes.
const GENERATION: u8 = 4;
/// With GENERATION: a label change bumps the generation too (EndpointSlice).
const LABELS_BUMP: u8 = 8;
/// A custom resource (from a CRD): has a generation, refuses unconditional PUT and strategic
/// merge patches, and a DELETE answers with the object.
const CUSTOM: u8 = 16 | GENERATION;

const GATEWAY: &str = "gateway.networking.k8s.io";

/// A kind the fake serves. The first version is the one objects are stored at.
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub kind: &'static str,
    flags: u8,
}

const fn kind(
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    kind: &'static str,
    flags: u8,
) -> Resource {
    Resource { group, versions, plural, kind, flags }
}

/// Every kind the fake serves: adding one is one line here.
pub const RESOURCES: &[Resource] = &[
    kind("", &["v1"], "secrets", "Secret", NAMESPACED),
    kind("", &["v1"], "configmaps", "ConfigMap", NAMESPACED),
    kind("", &["v1"], "services", "Service", NAMESPACED | STATUS),
    kind("", &["v1"], "namespaces", "Namespace", STATUS),
    kind("discovery.k8s.io", &["v1"], "endpointslices", "EndpointSlice", NAMESPACED | GENERATION | LABELS_BUMP),
    kind("networking.k8s.io", &["v1"], "ingresses", "Ingress", NAMESPACED | STATUS | GENERATION),
    kind("networking.k8s.io", &["v1"], "ingressclasses", "IngressClass", GENERATION),
    kind(GATEWAY, &["v1", "v1beta1"], "gatewayclasses", "GatewayClass", STATUS | CUSTOM),
    kind(GATEWAY, &["v1", "v1beta1"], "gateways", "Gateway", NAMESPACED | STATUS | CUSTOM),
    kind(GATEWAY, &["v1", "v1beta1"], "httproutes", "HTTPRoute", NAMESPACED | STATUS | CUSTOM),
    kind(GATEWAY, &["v1", "v1beta1"], "referencegrants", "ReferenceGrant", NAMESPACED | CUSTOM),
    kind("coordination.k8s.io", &["v1"], "leases", "Lease", NAMESPACED),
    kind("lwsws.io", &["v1alpha1"], "lwswsconfigs", "LwswsConfig", NAMESPACED | STATUS | CUSTOM),
];

impl Resource {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }

    pub fn namespaced(&self) -> bool {
        self.has(NAMESPACED)
    }

    pub fn has_status(&self) -> bool {
        self.has(STATUS)
    }

    fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{version}", self.group) }
    }

    /// `plural.group`, as the API names the resource in its messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// The object as served at `version`.
    fn at_version(&self, obj: &Value, version: &str) -> Value {
        let mut obj = obj.clone();
        obj["apiVersion"] = self.api_version(version).into();
        obj["kind"] = self.kind.into();
        obj
    }
}

/// The resource and version for an `apiVersion` and `kind`, as in an object.
fn by_kind(api_version: &str, kind: &str) -> (usize, &'static str) {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .enumerate()
        .find(|(_, r)| r.group == group && r.kind == kind)
        .and_then(|(i, r)| r.versions.iter().find(|v| **v == version).map(|v| (i, *v)))
        .unwrap_or_else(|| panic!("the fake Kubernetes API does not serve {kind} at {api_version}"))
}

/// An object's place: resource, namespace ("" for cluster-scoped kinds), name.
type Key = (usize, String, String);

/// One request, as the log keeps it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

impl LoggedRequest {
    /// A list (a GET of a collection that is not a watch) of `plural`.
    pub fn is_list_of(&self, plural: &str) -> bool {
        self.method == "GET" && self.path.ends_with(&format!("/{plural}")) && !self.is_watch()
    }

    pub fn is_watch(&self) -> bool {
        form_urlencoded::parse(self.query.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    }
}

impl fmt::Display for LoggedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.query.is_empty() { "" } else { "?" };
        write!(f, "{} {}{sep}{} -> {}", self.method, self.path, self.query, self.status)
    }
}

/// One change, as watches deliver it: the object after it (its last state for DELETED) and
/// before it (for selectors: an object may start or stop matching).
struct Change {
    rv: u64,
    res: usize,
    kind: &'static str,
    object: Value,
    before: Option<Value>,
}

#[derive(Clone)]
enum Signal {
    Change(Arc<Change>),
    /// The history was compacted: open watches end with 410 Gone.
    Expire,
}

#[derive(Default)]
struct State {
    rv: u64,
    uids: u64,
    /// A watch from a version before `oldest_kept - 1` gets 410: the changes after it are gone.
    oldest_kept: u64,
    objects: BTreeMap<Key, Value>,
    /// Server-side apply: per object, per field manager, the leaf paths it applied.
    applied: BTreeMap<Key, BTreeMap<String, BTreeSet<String>>>,
    history: Vec<Arc<Change>>,
    status_writes: BTreeMap<&'static str, usize>,
    requests: Vec<LoggedRequest>,
}

struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<Signal>,
}

/// A running fake API server; see the module documentation for what it keeps of the real one.
/// Its methods are synchronous (a std `Mutex` guards the state), so a test calls them between
/// awaits. When it is dropped during a panic it prints the requests it answered.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

impl FakeKube {
    /// Serves on 127.0.0.1, a port the system chooses.
    pub async fn start() -> FakeKube {
        super::init();
        let shared = Arc::new(Shared { state: Mutex::default(), events: broadcast::channel(4096).0 });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.serve(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeKube { shared, addr, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// kube's real client for the fake (default namespace "default").
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url().parse().unwrap())).unwrap()
    }

    /// Writes a kubeconfig naming the fake, for the lwsws binary (`KUBECONFIG=path`).
    pub fn kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: test\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// Creates or replaces an object from a whole one (`apiVersion`, `kind`, `metadata.name` and,
    /// for a namespaced kind, `metadata.namespace`), as the cluster's state: unconditionally, with
    /// its `.status` as given (as if its controller had written it too), and with the rest of the
    /// API's rules (server metadata, generation, no-op writes, watch events). Returns what is
    /// stored.
    pub fn put(&self, obj: Value) -> Value {
        let api_version = obj["apiVersion"].as_str().expect("the object has an apiVersion").to_string();
        let (res, version) = by_kind(&api_version, obj["kind"].as_str().expect("the object has a kind"));
        let r = &RESOURCES[res];
        let name = obj["metadata"]["name"].as_str().expect("the object has metadata.name").to_string();
        let namespace = if r.namespaced() {
            obj["metadata"]["namespace"].as_str().expect("a namespaced object has metadata.namespace").to_string()
        } else {
            String::new()
        };
        let key = (res, namespace, name);
        let mut st = self.shared.lock();
        let stored = if st.objects.contains_key(&key) {
            self.shared.update(&mut st, &key, obj, Write::Seed, None)
        } else {
            self.shared.create(&mut st, res, &key.1, obj, true).unwrap_or_else(|f| panic!("put: {}", f.message))
        };
        r.at_version(&stored, version)
    }

    /// Deletes an object (`namespace` "" for a cluster-scoped kind); whether it was there.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let key = self.key(api_version, kind, namespace, name).0;
        let mut st = self.shared.lock();
        self.shared.remove(&mut st, &key).is_some()
    }

    /// An object as stored, at `api_version` (`namespace` "" for a cluster-scoped kind).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (key, version) = self.key(api_version, kind, namespace, name);
        let st = self.shared.lock();
        st.objects.get(&key).map(|o| RESOURCES[key.0].at_version(o, version))
    }

    /// Every object of a kind, in every namespace, ordered by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let (res, version) = by_kind(api_version, kind);
        let st = self.shared.lock();
        st.objects
            .iter()
            .filter(|((r, _, _), _)| *r == res)
            .map(|(_, o)| RESOURCES[res].at_version(o, version))
            .collect()
    }

    /// How many writes (PUT, PATCH, apply) the `/status` subresource of `kind` answered, changes
    /// or not.
    pub fn status_writes(&self, kind: &str) -> usize {
        self.shared.lock().status_writes.get(kind).copied().unwrap_or(0)
    }

    /// The latest resourceVersion (the global counter).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Forgets the change history, as an etcd compaction does, and ends every open watch with an
    /// ERROR event of 410 Expired: a watch from any version before now gets 410 too, and kube's
    /// watcher re-lists.
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.history.clear();
        st.oldest_kept = st.rv + 1;
        let _ = self.shared.events.send(Signal::Expire);
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests answered so far, one a line (to print when a test fails).
    pub fn request_log(&self) -> String {
        self.shared.lock().requests.iter().map(|r| format!("{r}\n")).collect()
    }

    fn key(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> (Key, &'static str) {
        let (res, version) = by_kind(api_version, kind);
        let namespace = if RESOURCES[res].namespaced() {
            assert!(!namespace.is_empty(), "{kind} is namespaced: name its namespace");
            namespace
        } else {
            ""
        };
        ((res, namespace.to_string(), name.to_string()), version)
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        if std::thread::panicking() {
            eprintln!("requests to the fake Kubernetes API ({}):\n{}", self.addr, self.request_log());
        }
    }
}

/// What a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// A write to the main resource: `.status` stays as stored (for kinds with STATUS).
    Main,
    /// A write to `/status`: only `.status` changes.
    Status,
    /// [`FakeKube::put`]: everything as given, `creationTimestamp` included.
    Seed,
}

/// An API error, answered as a Status document.
#[derive(Debug)]
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure { code, reason, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, "BadRequest", message)
    }

    fn not_found(r: &Resource, name: &str) -> Failure {
        Failure::new(404, "NotFound", format!("{} \"{name}\" not found", r.qualified()))
    }

    fn conflict(r: &Resource, name: &str) -> Failure {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
             changes to the latest version and try again",
            r.qualified()
        );
        Failure::new(409, "Conflict", message)
    }

    fn unsupported_media_type(content_type: &str) -> Failure {
        let message = format!(
            "the body of the request was in an unknown format ({content_type}) - accepted media types include: \
             application/merge-patch+json, application/apply-patch+yaml (the fake does no JSON patches)"
        );
        Failure::new(415, "UnsupportedMediaType", message)
    }

    fn document(&self) -> Value {
        json!({ "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code })
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn json_response(status: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(BodyExt::boxed(Full::new(Bytes::from(serde_json::to_vec(v).unwrap()))))
        .unwrap()
}

/// Where a request goes.
struct Route {
    res: usize,
    version: String,
    /// From the URL; `None` for cluster-scoped kinds and lists across namespaces.
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let find = |plural: &str| {
            RESOURCES.iter().position(|r| r.group == group && r.plural == plural && r.versions.contains(&version))
        };
        let route = |res: usize, namespace: Option<&str>, tail: &[&str]| {
            let (name, status) = match tail {
                [] => (None, false),
                [name] => (Some(name.to_string()), false),
                [name, "status"] if RESOURCES[res].has_status() => (Some(name.to_string()), true),
                _ => return None,
            };
            Some(Route { res, version: version.to_string(), namespace: namespace.map(str::to_string), name, status })
        };
        if let ["namespaces", namespace, plural, tail @ ..] = rest
            && let Some(res) = find(plural)
            && RESOURCES[res].namespaced()
        {
            return route(res, Some(namespace), tail);
        }
        let [plural, tail @ ..] = rest else { return None };
        let res = find(plural)?;
        if RESOURCES[res].namespaced() && !tail.is_empty() {
            return None;
        }
        route(res, None, tail)
    }

    fn resource(&self) -> &'static Resource {
        &RESOURCES[self.res]
    }

    fn key(&self, name: &str) -> Key {
        (self.res, self.namespace.clone().unwrap_or_default(), name.to_string())
    }
}

type Query = BTreeMap<String, String>;

fn flag(query: &Query, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

/// Parses a request body as a JSON object.
fn object_body(body: &[u8]) -> Result<Value, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(Failure::bad_request("the request body is not an object")),
        Err(e) => Err(Failure::bad_request(format!("the request body is not JSON: {e}"))),
    }
}

impl Shared {
    /// The state, even after a panic elsewhere (one failure should not hide behind another).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let response = match self.respond(req).await {
            Ok(r) => r,
            Err(f) => json_response(f.code, &f.document()),
        };
        self.lock().requests.push(LoggedRequest { method, path, query, status: response.status().as_u16() });
        response
    }

    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Failure> {
        let Some(route) = Route::parse(req.uri().path()) else {
            return Err(Failure::new(404, "NotFound", "the server could not find the requested resource"));
        };
        let query: Query = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let method = req.method().clone();
        let body = req.into_body().collect().await.map_err(|e| Failure::bad_request(e.to_string()))?.to_bytes();
        let r = route.resource();
        match (method.as_str(), route.name.clone()) {
            ("GET", None) if flag(&query, "watch") => self.watch(&route, &query),
            ("GET", None) => self.list(&route, &query).map(|v| json_response(200, &v)),
            ("POST", None) if r.namespaced() == route.namespace.is_some() => {
                let obj = object_body(&body)?;
                let namespace = route.namespace.clone().unwrap_or_default();
                if let Some(given) = obj["metadata"]["namespace"].as_str()
                    && r.namespaced()
                    && given != namespace
                {
                    return Err(Failure::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                let mut st = self.lock();
                let created = self.create(&mut st, route.res, &namespace, obj, false)?;
                Ok(json_response(201, &r.at_version(&created, &route.version)))
            }
            ("GET", Some(name)) => {
                let st = self.lock();
                let obj = st.objects.get(&route.key(&name)).ok_or_else(|| Failure::not_found(r, &name))?;
                Ok(json_response(200, &r.at_version(obj, &route.version)))
            }
            ("PUT", Some(name)) => self.replace(&route, &name, object_body(&body)?),
            ("PATCH", Some(name)) => self.patch(&route, &name, &content_type, &query, &body),
            ("DELETE", Some(name)) if !route.status => {
                let options = if body.is_empty() { json!({}) } else { object_body(&body)? };
                self.delete(&route, &name, &options)
            }
            _ => Err(Failure::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        }
    }

    fn list(&self, route: &Route, query: &Query) -> Result<Value, Failure> {
        let filter = Filter::parse(route, query)?;
        let r = route.resource();
        let st = self.lock();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|((res, _, _), o)| *res == route.res && filter.matches(o))
            .map(|(_, o)| r.at_version(o, &route.version))
            .collect();
        Ok(json!({ "apiVersion": r.api_version(&route.version), "kind": format!("{}List", r.kind),
                   "metadata": { "resourceVersion": st.rv.to_string() }, "items": items }))
    }

    fn replace(&self, route: &Route, name: &str, obj: Value) -> Result<Response<Body>, Failure> {
        let r = route.resource();
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(Failure::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        let key = route.key(name);
        let mut st = self.lock();
        let stored = st.objects.get(&key).ok_or_else(|| Failure::not_found(r, name))?;
        match obj["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty()) {
            Some(given) if Some(given) != stored["metadata"]["resourceVersion"].as_str() => {
                return Err(Failure::conflict(r, name));
            }
            None if r.has(CUSTOM) => {
                let message = format!(
                    "{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for \
                     an update",
                    r.qualified()
                );
                return Err(Failure::new(422, "Invalid", message));
            }
            _ => {}
        }
        if route.status {
            *st.status_writes.entry(r.kind).or_default() += 1;
        }
        let how = if route.status { Write::Status } else { Write::Main };
        let stored = self.update(&mut st, &key, obj, how, None);
        Ok(json_response(200, &r.at_version(&stored, &route.version)))
    }

    fn patch(
        &self,
        route: &Route,
        name: &str,
        content_type: &str,
        query: &Query,
        body: &[u8],
    ) -> Result<Response<Body>, Failure> {
        let r = route.resource();
        let key = route.key(name);
        let how = if route.status { Write::Status } else { Write::Main };
        match content_type {
            "application/apply-patch+yaml" => {
                let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return Err(Failure::new(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for \
                         apply patch",
                    ));
                };
                let text = std::str::from_utf8(body).map_err(|e| Failure::bad_request(e.to_string()))?;
                let applied: Value = serde_json::from_str(text)
                    .or_else(|_| serde_saphyr::from_str(text))
                    .map_err(|e| Failure::bad_request(format!("the applied configuration is not YAML: {e}")))?;
                if !applied.is_object() {
                    return Err(Failure::bad_request("the applied configuration is not an object"));
                }
                if applied["metadata"]["name"].as_str() != Some(name) {
                    return Err(Failure::bad_request("the applied object must name the object of the URL"));
                }
                let mut st = self.lock();
                if route.status {
                    *st.status_writes.entry(r.kind).or_default() += 1;
                }
                let (stored, created) = self.apply(&mut st, &key, applied, manager, flag(query, "force"), how)?;
                Ok(json_response(if created { 201 } else { 200 }, &r.at_version(&stored, &route.version)))
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                if content_type.starts_with("application/strategic") && r.has(CUSTOM) {
                    return Err(Failure::unsupported_media_type(content_type));
                }
                let patch = object_body(body)?;
                let mut st = self.lock();
                let old = st.objects.get(&key).ok_or_else(|| Failure::not_found(r, name))?.clone();
                if let Some(given) = patch["metadata"]["resourceVersion"].as_str()
                    && Some(given) != old["metadata"]["resourceVersion"].as_str()
                {
                    return Err(Failure::conflict(r, name));
                }
                if route.status {
                    *st.status_writes.entry(r.kind).or_default() += 1;
                }
                let mut new = old;
                merge_patch(&mut new, &patch);
                let stored = self.update(&mut st, &key, new, how, None);
                Ok(json_response(200, &r.at_version(&stored, &route.version)))
            }
            other => Err(Failure::unsupported_media_type(other)),
        }
    }

    fn delete(&self, route: &Route, name: &str, options: &Value) -> Result<Response<Body>, Failure> {
        let r = route.resource();
        let key = route.key(name);
        let mut st = self.lock();
        let stored = st.objects.get(&key).ok_or_else(|| Failure::not_found(r, name))?;
        for field in ["resourceVersion", "uid"] {
            if let Some(wanted) = options["preconditions"][field].as_str()
                && Some(wanted) != stored["metadata"][field].as_str()
            {
                return Err(Failure::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {field}: {wanted}",
                        r.qualified()
                    ),
                ));
            }
        }
        let gone = self.remove(&mut st, &key).expect("present");
        if r.has(CUSTOM) {
            return Ok(json_response(200, &r.at_version(&gone, &route.version)));
        }
        Ok(json_response(
            200,
            &json!({ "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
                     "details": { "name": name, "group": r.group, "kind": r.plural,
                                  "uid": gone["metadata"]["uid"] } }),
        ))
    }

    fn emit(&self, st: &mut State, kind: &'static str, res: usize, object: Value, before: Option<Value>) {
        let change = Arc::new(Change { rv: st.rv, res, kind, object, before });
        st.history.push(change.clone());
        let _ = self.events.send(Signal::Change(change));
    }

    /// Creates an object (`seeded`: from [`FakeKube::put`], keeping a given `.status`).
    fn create(
        &self,
        st: &mut State,
        res: usize,
        namespace: &str,
        mut obj: Value,
        seeded: bool,
    ) -> Result<Value, Failure> {
        let r = &RESOURCES[res];
        normalize(r, &mut obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let name = match (obj["metadata"]["name"].as_str(), obj["metadata"]["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => generated_name(prefix, st.uids + 1),
            _ => {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    format!("{} is invalid: metadata.name: Required value: name or generateName is required", r.kind),
                ));
            }
        };
        let key = (res, namespace.to_string(), name.clone());
        if st.objects.contains_key(&key) {
            return Err(Failure::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", r.qualified())));
        }
        st.rv += 1;
        st.uids += 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("name".into(), name.into());
        if r.namespaced() {
            meta.insert("namespace".into(), namespace.into());
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), format!("fa4e0000-0000-4000-8000-{:012x}", st.uids).into());
        meta.insert("resourceVersion".into(), st.rv.to_string().into());
        let given_time = meta.get("creationTimestamp").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        if !given_time {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            meta.insert("creationTimestamp".into(), now.into());
        }
        if r.has(GENERATION) {
            meta.insert("generation".into(), 1.into());
        } else {
            meta.remove("generation");
        }
        for server_only in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
            meta.remove(server_only);
        }
        let obj_map = obj.as_object_mut().unwrap();
        if r.has_status() && !seeded {
            obj_map.remove("status");
        }
        if r.kind == "Namespace" && !obj_map.contains_key("status") {
            obj_map.insert("status".into(), json!({ "phase": "Active" }));
        }
        let obj = r.at_version(&obj, r.versions[0]);
        st.objects.insert(key, obj.clone());
        self.emit(st, "ADDED", res, obj.clone(), None);
        Ok(obj)
    }

    /// Updates a stored object with `new` (see [`Write`] for what of it counts); a write that
    /// changes nothing is a no-op. `manager` is the server-side apply manager making it, if any.
    fn update(&self, st: &mut State, key: &Key, new: Value, how: Write, manager: Option<&str>) -> Value {
        let r = &RESOURCES[key.0];
        let old = st.objects[key].clone();
        let mut obj = match how {
            Write::Main if r.has_status() => with_status_of(new, &old),
            Write::Status => with_status_of(old.clone(), &new),
            _ => new,
        };
        normalize(r, &mut obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let meta = obj["metadata"].as_object_mut().unwrap();
        for kept in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
            let given_time = kept == "creationTimestamp" && how == Write::Seed && meta.contains_key(kept);
            match old["metadata"].get(kept) {
                _ if given_time => {}
                Some(v) => {
                    meta.insert(kept.into(), v.clone());
                }
                None => {
                    meta.remove(kept);
                }
            }
        }
        for server_only in
            ["generation", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]
        {
            meta.remove(server_only);
        }
        let mut obj = r.at_version(&obj, r.versions[0]);
        if r.has(GENERATION) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bump = i64::from(spec_changed(r, &old, &obj));
            obj["metadata"]["generation"] = (generation + bump).into();
        }
        if obj == old {
            return old;
        }
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
        if let Some(owners) = st.applied.get_mut(key) {
            let (before, after) = (leaves(&old), leaves(&obj));
            let changed: BTreeSet<&String> =
                before.keys().chain(after.keys()).filter(|p| before.get(*p) != after.get(*p)).collect();
            for (m, fields) in owners.iter_mut() {
                if Some(m.as_str()) != manager {
                    fields.retain(|p| !changed.contains(p));
                }
            }
            owners.retain(|_, fields| !fields.is_empty());
        }
        st.objects.insert(key.clone(), obj.clone());
        self.emit(st, "MODIFIED", key.0, obj.clone(), Some(old));
        obj
    }

    /// Deletes an object: DELETED with its last state, at a new resourceVersion.
    fn remove(&self, st: &mut State, key: &Key) -> Option<Value> {
        let before = st.objects.remove(key)?;
        st.applied.remove(key);
        st.rv += 1;
        let mut last = before.clone();
        last["metadata"]["resourceVersion"] = st.rv.to_string().into();
        self.emit(st, "DELETED", key.0, last.clone(), Some(before));
        Some(last)
    }

    /// Server-side apply by `manager` (see the module documentation); whether it created the
    /// object.
    fn apply(
        &self,
        st: &mut State,
        key: &Key,
        mut applied: Value,
        manager: &str,
        force: bool,
        how: Write,
    ) -> Result<(Value, bool), Failure> {
        let r = &RESOURCES[key.0];
        normalize(r, &mut applied);
        let in_scope = |p: &str| {
            let status = p == "/status" || p.starts_with("/status/");
            if how == Write::Status { status } else { !(status && r.has_status()) }
        };
        let fields: BTreeMap<String, Value> = leaves(&applied).into_iter().filter(|(p, _)| in_scope(p)).collect();
        let Some(old) = st.objects.get(key).cloned() else {
            if how == Write::Status {
                return Err(Failure::not_found(r, &key.2));
            }
            let created = self.create(st, key.0, &key.1, applied, false)?;
            st.applied.entry(key.clone()).or_default().insert(manager.to_string(), fields.into_keys().collect());
            return Ok((created, true));
        };
        let mut owners = st.applied.get(key).cloned().unwrap_or_default();
        let current = leaves(&old);
        let conflicts: Vec<(String, String)> = fields
            .iter()
            .filter(|(p, v)| current.get(*p).is_some_and(|now| now != *v))
            .flat_map(|(p, _)| {
                owners
                    .iter()
                    .filter(|(m, owned)| *m != manager && owned.contains(p))
                    .map(|(m, _)| (m.clone(), p.clone()))
            })
            .collect();
        if !conflicts.is_empty() {
            if !force {
                let list: Vec<String> = conflicts.iter().map(|(m, p)| format!("conflict with \"{m}\": {p}")).collect();
                let message = format!("Apply failed with {} conflicts: {}", conflicts.len(), list.join(", "));
                return Err(Failure::new(409, "Conflict", message));
            }
            for (m, p) in &conflicts {
                if let Some(owned) = owners.get_mut(m) {
                    owned.remove(p);
                }
            }
        }
        let mut new = old;
        let before = owners.remove(manager).unwrap_or_default();
        for dropped in before.iter().filter(|p| !fields.contains_key(*p)) {
            if !owners.values().any(|owned| owned.contains(dropped)) {
                remove_pointer(&mut new, dropped);
            }
        }
        for (p, v) in &fields {
            set_pointer(&mut new, p, v.clone());
        }
        owners.insert(manager.to_string(), fields.into_keys().collect());
        owners.retain(|_, owned| !owned.is_empty());
        st.applied.insert(key.clone(), owners);
        Ok((self.update(st, key, new, how, Some(manager)), false))
    }

    /// A watch: events after the asked version (or the current objects, then the changes).
    fn watch(&self, route: &Route, query: &Query) -> Result<Response<Body>, Failure> {
        let filter = Filter::parse(route, query)?;
        let from = match query.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => None,
            Some(v) => {
                Some(v.parse::<u64>().map_err(|_| Failure::bad_request(format!("invalid resourceVersion {v:?}")))?)
            }
        };
        let bookmarks = flag(query, "allowWatchBookmarks");
        let initial_events = flag(query, "sendInitialEvents");
        if initial_events && !bookmarks {
            return Err(Failure::new(422, "Invalid", "sendInitialEvents requires allowWatchBookmarks=true"));
        }
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => Some(Duration::from_secs(
                t.parse().map_err(|_| Failure::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
            )),
            None => None,
        };
        let r = route.resource();
        let version = route.version.clone();
        let res = route.res;
        let event = move |kind: &str, obj: &Value| json!({ "type": kind, "object": r.at_version(obj, &version) });
        let version = route.version.clone();
        let bookmark = move |rv: u64, initial_end: bool| {
            let mut metadata = json!({ "resourceVersion": rv.to_string() });
            if initial_end {
                metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
            }
            json!({ "type": "BOOKMARK",
                    "object": { "apiVersion": r.api_version(&version), "kind": r.kind, "metadata": metadata } })
        };
        // Under the lock: what is sent first, and a subscription that starts right after it.
        let (first, mut live, after) = {
            let st = self.lock();
            let live = self.events.subscribe();
            let mut first = Vec::new();
            match from {
                Some(n) if !initial_events => {
                    if n + 1 < st.oldest_kept {
                        let message = format!("too old resource version: {n} ({})", st.oldest_kept - 1);
                        first.push(
                            json!({ "type": "ERROR", "object": Failure::new(410, "Expired", message).document() }),
                        );
                    } else {
                        for c in st.history.iter().filter(|c| c.rv > n && c.res == res) {
                            if let Some((kind, obj)) = filter.event(c) {
                                first.push(event(kind, obj));
                            }
                        }
                    }
                }
                _ => {
                    for ((_, _, _), obj) in st.objects.iter().filter(|((r, _, _), o)| *r == res && filter.matches(o)) {
                        first.push(event("ADDED", obj));
                    }
                    if initial_events {
                        first.push(bookmark(st.rv, true));
                    }
                }
            }
            (first, live, st.rv.max(from.unwrap_or(0)))
        };
        let gone = first.first().is_some_and(|e| e["type"] == "ERROR");
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
        tokio::spawn(async move {
            let send = |v: Value| {
                let tx = tx.clone();
                async move {
                    let mut line = serde_json::to_vec(&v).unwrap();
                    line.push(b'\n');
                    tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_ok()
                }
            };
            for e in first {
                if !send(e).await {
                    return;
                }
            }
            if gone {
                return;
            }
            let ends = async move {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(ends);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The latest version this watch has handled: a bookmark never goes past a change
            // not yet sent.
            let mut seen = after;
            loop {
                // In this order: changes before a bookmark, a bookmark due before the end.
                tokio::select! {
                    biased;
                    got = live.recv() => match got {
                        Ok(Signal::Change(c)) if c.rv > after => {
                            seen = c.rv;
                            if c.res == res
                                && let Some((kind, obj)) = filter.event(&c)
                                && !send(event(kind, obj)).await
                            {
                                return;
                            }
                        }
                        Ok(Signal::Change(_)) => {}
                        // Compacted, or this watch fell too far behind: 410, and the client re-lists.
                        Ok(Signal::Expire) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            let message = format!("too old resource version: {seen}");
                            let _ = send(json!({ "type": "ERROR", "object": Failure::new(410, "Expired", message).document() })).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        if !send(bookmark(seen, false)).await {
                            return;
                        }
                    }
                    _ = &mut ends => return,
                    _ = tx.closed() => return,
                }
            }
        });
        let mut rx = rx;
        let body = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        Ok(Response::builder().header("content-type", "application/json").body(BodyExt::boxed(body)).unwrap())
    }
}

/// `prefix` and five characters from `n`, as the API server's name generator makes them.
fn generated_name(prefix: &str, n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut name = prefix.to_string();
    for _ in 0..5 {
        name.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    name
}

/// `obj` with the `.status` of `from` (or none if `from` has none).
fn with_status_of(mut obj: Value, from: &Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        match from.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    obj
}

/// What the API server does to a Secret it stores: `stringData` into `data` (base64), `type`
/// Opaque by default.
fn normalize(r: &Resource, obj: &mut Value) {
    use base64::Engine;
    if r.kind != "Secret" {
        return;
    }
    let Some(map) = obj.as_object_mut() else { return };
    if let Some(Value::Object(strings)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in strings {
            data[k] = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or("")).into();
        }
    }
    map.entry("type").or_insert_with(|| "Opaque".into());
}

/// Whether the generation moves: anything but metadata (and status, for kinds with a status
/// subresource) changed, or for EndpointSlices the labels.
fn spec_changed(r: &Resource, old: &Value, new: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(map) = o.as_object_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                map.remove(k);
            }
            if r.has_status() {
                map.remove("status");
            }
        }
        o
    };
    strip(old) != strip(new) || (r.has(LABELS_BUMP) && old["metadata"]["labels"] != new["metadata"]["labels"])
}

/// JSON merge patch (RFC 7386): objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The leaf fields server-side apply tracks, by JSON pointer: everything but `apiVersion`,
/// `kind` and the metadata other than labels, annotations, finalizers and owner references. A
/// list, a scalar or an empty map is a leaf.
fn leaves(obj: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, at: &mut String, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(child, at, out);
                    at.truncate(len);
                }
            }
            other => {
                out.insert(at.clone(), other.clone());
            }
        }
    }
    let mut tracked = Map::new();
    for (k, v) in obj.as_object().into_iter().flatten() {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let kept: Map<String, Value> = ["labels", "annotations", "finalizers", "ownerReferences"]
                    .iter()
                    .filter_map(|f| v.get(*f).map(|x| (f.to_string(), x.clone())))
                    .collect();
                if !kept.is_empty() {
                    tracked.insert(k.clone(), Value::Object(kept));
                }
            }
            _ => {
                tracked.insert(k.clone(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if !tracked.is_empty() {
        walk(&Value::Object(tracked), &mut String::new(), &mut out);
    }
    out
}

fn pointer_keys(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(|k| k.replace("~1", "/").replace("~0", "~")).collect()
}

/// Sets a leaf, making the maps on the way; an empty map leaves an existing map as it is.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let keys = pointer_keys(pointer);
    let Some((last, parents)) = keys.split_last() else { return };
    let mut at = obj;
    for k in parents {
        if !at.is_object() {
            *at = json!({});
        }
        at = at.as_object_mut().unwrap().entry(k.clone()).or_insert_with(|| json!({}));
    }
    if !at.is_object() {
        *at = json!({});
    }
    let map = at.as_object_mut().unwrap();
    if value.as_object().is_some_and(Map::is_empty) && map.get(last).is_some_and(Value::is_object) {
        return;
    }
    map.insert(last.clone(), value);
}

fn remove_pointer(obj: &mut Value, pointer: &str) {
    let keys = pointer_keys(pointer);
    let Some((last, parents)) = keys.split_last() else { return };
    let mut at = obj;
    for k in parents {
        match at.get_mut(k.as_str()) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(map) = at.as_object_mut() {
        map.remove(last);
    }
}

/// The objects a list or watch asks for: the URL's namespace, `labelSelector`, `fieldSelector`.
struct Filter {
    namespace: Option<String>,
    labels: Vec<LabelTerm>,
    fields: Vec<(String, bool, String)>,
}

enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn valid_label_value(value: &str) -> bool {
    value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Filter {
    fn parse(route: &Route, query: &Query) -> Result<Filter, Failure> {
        let labels = parse_labels(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
        let text = query.get("fieldSelector").map(String::as_str).unwrap_or("");
        let mut fields = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(Failure::bad_request(format!("invalid selector: '{text}'; can't understand '{term}'")));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (field == "type" && route.resource().kind == "Secret");
            if !supported {
                return Err(Failure::bad_request(format!("field label not supported: {field}")));
            }
            fields.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Filter { namespace: route.namespace.clone(), labels, fields })
    }

    fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let label = |k: &str| meta["labels"][k].as_str();
        let labels_match = self.labels.iter().all(|term| match term {
            LabelTerm::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelTerm::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelTerm::Exists(k) => label(k).is_some(),
            LabelTerm::Absent(k) => label(k).is_none(),
        });
        labels_match
            && self.fields.iter().all(|(field, equal, value)| {
                let got = match field.as_str() {
                    "metadata.name" => meta["name"].as_str(),
                    "metadata.namespace" => meta["namespace"].as_str(),
                    _ => obj["type"].as_str(),
                };
                (got.unwrap_or("") == value) == *equal
            })
    }

    /// What a watch with this filter delivers for a change, if anything: an object that starts
    /// matching is ADDED, one that stops matching is DELETED.
    fn event<'c>(&self, c: &'c Change) -> Option<(&'static str, &'c Value)> {
        let now = self.matches(&c.object);
        if c.kind != "MODIFIED" {
            return now.then_some((c.kind, &c.object));
        }
        let before = c.before.as_ref().is_some_and(|b| self.matches(b));
        match (before, now) {
            (true, true) => Some(("MODIFIED", &c.object)),
            (false, true) => Some(("ADDED", &c.object)),
            (true, false) => Some(("DELETED", &c.object)),
            (false, false) => None,
        }
    }
}

/// An equality-based label selector; set-based terms are refused.
fn parse_labels(text: &str) -> Result<Vec<LabelTerm>, Failure> {
    if text.contains('(') {
        return Err(Failure::bad_request(format!(
            "unable to parse requirement: set-based label selectors (in, notin) are not supported by the fake: {text}"
        )));
    }
    let invalid =
        |term: &str| Failure::bad_request(format!("unable to parse requirement: invalid label selector term {term:?}"));
    let mut terms = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let parsed = if let Some(key) = term.strip_prefix('!') {
            LabelTerm::Absent(key.trim().to_string())
        } else if let Some((k, v)) = term.split_once("!=") {
            LabelTerm::NotEquals(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            LabelTerm::Equals(k.trim().to_string(), v.trim().to_string())
        } else {
            LabelTerm::Exists(term.to_string())
        };
        let ok = match &parsed {
            LabelTerm::Equals(k, v) | LabelTerm::NotEquals(k, v) => valid_label_key(k) && valid_label_value(v),
            LabelTerm::Exists(k) | LabelTerm::Absent(k) => valid_label_key(k),
        };
        if !ok {
            return Err(invalid(term));
        }
        terms.push(parsed);
    }
    Ok(terms)
}
