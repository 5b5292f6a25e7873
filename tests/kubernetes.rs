//! Kubernetes mode against an in-process FAKE of the Kubernetes API (no API server can run
//! here). It runs over real loopback HTTP with kube's real client, and keeps the semantics the
//! controller and the ACME store rely on:
//! - namespaced list with a collection `resourceVersion`; `?watch=true` streams from a
//!   resourceVersion (ADDED, MODIFIED, DELETED, periodic BOOKMARKs); `410 Gone` (an ERROR event
//!   with reason Expired) when the requested version is older than what it still keeps, forcing
//!   a re-list; merge patches to the `/status` subresource (which bump the resourceVersion and
//!   emit MODIFIED like the real API).
//! - `fieldSelector` on list and watch, for the fields the code uses: `type` (Secrets only, as
//!   in the real API), `metadata.name` and `metadata.namespace`, with `=`, `==` and `!=`, joined
//!   by commas; any other field is refused with 400 as the real API does. A watch sees an object
//!   that starts matching as ADDED and one that stops matching as DELETED.
//! - Server-side apply of Secrets (`application/apply-patch+yaml`, `fieldManager`, `force`) as a
//!   merge by field manager, with this granularity: each key of `data` (`stringData` is turned
//!   into `data`, base64, as the API server does), of `metadata.labels` and of
//!   `metadata.annotations` is a field of its own; every other top-level field (`type`, ...) is
//!   one atomic field. An apply sets its fields, removes those its manager set before and no
//!   longer sends (unless another manager also set them), keeps the other managers' fields,
//!   shares a field applied with the value it has, and answers 409 Conflict when it would
//!   change another manager's field without `force` (with it, the field changes hands).
//!   `put` (a test's `kubectl replace`) replaces the whole object and owns all of it.
//!
//! What it does not do: `managedFields` in the objects it returns (ownership is kept aside),
//! list items or sets inside a field (a list is replaced whole), apply to LwswsConfigs, label
//! selectors, pagination, or any other resource or namespace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;

const NS: &str = "web";
const GROUP_PATH: &str = "/apis/lwsws.io/v1alpha1/namespaces/web/lwswsconfigs";
const SECRET_PATH: &str = "/api/v1/namespaces/web/secrets";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Config,
    Secret,
}

/// One change, as a watch delivers it, with the object as it was before (for selectors).
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: Kind,
    event: Value,
    before: Option<Value>,
}

/// A field that server-side apply tracks: (`data`, `labels`, `annotations` or "" for a top-level
/// field, key).
type Field = (String, String);

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches asking for a version older than this get 410 Gone.
    oldest_kept: u64,
    objects: BTreeMap<(Kind, String), Value>,
    /// Who set which field of each object: field manager -> fields.
    owners: BTreeMap<(Kind, String), BTreeMap<String, BTreeSet<Field>>>,
    history: Vec<Change>,
    /// How many list requests were answered (a re-list after 410 shows here).
    lists: usize,
    /// How many status patches were written.
    status_patches: usize,
    /// Answer every read of a single Secret with 500 (an API server in trouble).
    fail_secret_reads: bool,
    /// The `fieldSelector`s that Secret lists and watches asked for.
    secret_selectors: BTreeSet<String>,
}

#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Option<Change>>,
}

impl FakeApi {
    fn new() -> FakeApi {
        FakeApi { state: Default::default(), changes: broadcast::channel(1024).0 }
    }

    /// Creates or replaces an object, as `kubectl replace` would: the whole object, owned by the
    /// manager "test". See `store`.
    fn put(&self, kind: Kind, obj: Value) {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let mut st = self.state.lock().unwrap();
        let obj = normalize(obj);
        st.owners.insert((kind, name), BTreeMap::from([("test".to_string(), fields_of(&obj).into_keys().collect())]));
        self.store(&mut st, kind, obj);
    }

    /// Writes an object: bumps resourceVersion and generation (for spec changes), keeps its
    /// status, and emits ADDED or MODIFIED.
    fn store(&self, st: &mut State, kind: Kind, mut obj: Value) -> Value {
        st.rv += 1;
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let key = (kind, name);
        let existed = st.objects.get(&key).cloned();
        let generation = existed.as_ref().and_then(|o| o["metadata"]["generation"].as_i64()).unwrap_or(0) + 1;
        obj["metadata"]["namespace"] = NS.into();
        obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
        obj["metadata"]["uid"] = format!("uid-{}", key.1).into();
        obj["metadata"]["generation"] = generation.into();
        obj["metadata"]["creationTimestamp"] = "2026-11-27T00:00:00Z".into();
        if let Some(old) = &existed
            && !old["status"].is_null()
        {
            obj["status"] = old["status"].clone();
        }
        let kind_word = if existed.is_some() { "MODIFIED" } else { "ADDED" };
        st.objects.insert(key, obj.clone());
        self.emit(st, kind, json!({ "type": kind_word, "object": obj }), existed);
        obj
    }

    /// Server-side apply by `manager` (see the header for what is merged and how).
    /// `Err`: the 409 Conflict message.
    fn apply(&self, kind: Kind, applied: Value, manager: &str, force: bool) -> Result<Value, String> {
        let applied = normalize(applied);
        let name = applied["metadata"]["name"].as_str().unwrap().to_string();
        let key = (kind, name.clone());
        let mut st = self.state.lock().unwrap();
        let mut owners = st.owners.get(&key).cloned().unwrap_or_default();
        let mut obj = st.objects.get(&key).cloned().unwrap_or_else(
            || json!({ "apiVersion": applied["apiVersion"], "kind": applied["kind"], "metadata": { "name": name } }),
        );
        let current = fields_of(&obj);
        let fields = fields_of(&applied);
        let conflicts: Vec<String> = fields
            .iter()
            .filter(|(f, v)| current.get(*f).is_some_and(|now| now != *v))
            .flat_map(|(f, _)| {
                owners
                    .iter()
                    .filter(|(m, fs)| *m != manager && fs.contains(f))
                    .map(move |(m, _)| format!("{f:?} ({m})"))
            })
            .collect();
        if !conflicts.is_empty() && !force {
            return Err(format!("Apply failed with {} conflicts: {}", conflicts.len(), conflicts.join(", ")));
        }
        let before = owners.remove(manager).unwrap_or_default();
        for f in before.iter().filter(|f| !fields.contains_key(*f)) {
            if !owners.values().any(|fs| fs.contains(f)) {
                remove_field(&mut obj, f);
            }
        }
        for (f, v) in &fields {
            // The same value as now is shared ownership; a changed one (forced) is taken over.
            if current.get(f) != Some(v) {
                for fs in owners.values_mut() {
                    fs.remove(f);
                }
            }
            set_field(&mut obj, f, v.clone());
        }
        owners.retain(|_, fs| !fs.is_empty());
        owners.insert(manager.to_string(), fields.into_keys().collect());
        st.owners.insert(key, owners);
        Ok(self.store(&mut st, kind, obj))
    }

    fn delete(&self, kind: Kind, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        st.owners.remove(&(kind, name.to_string()));
        if let Some(mut obj) = st.objects.remove(&(kind, name.to_string())) {
            let before = obj.clone();
            obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
            self.emit(&mut st, kind, json!({ "type": "DELETED", "object": obj }), Some(before));
        }
    }

    fn emit(&self, st: &mut State, kind: Kind, event: Value, before: Option<Value>) {
        let change = Change { rv: st.rv, kind, event, before };
        st.history.push(change.clone());
        let _ = self.changes.send(Some(change));
    }

    /// Forgets the history (as etcd compaction does) and ends every open watch with 410 Gone.
    fn expire_watches(&self) {
        let mut st = self.state.lock().unwrap();
        st.oldest_kept = st.rv + 1;
        st.history.clear();
        let _ = self.changes.send(None);
    }

    fn status_of(&self, name: &str) -> Value {
        let st = self.state.lock().unwrap();
        st.objects.get(&(Kind::Config, name.to_string())).map(|o| o["status"].clone()).unwrap_or(Value::Null)
    }

    fn condition(&self, name: &str, type_: &str) -> Option<(String, String)> {
        let status = self.status_of(name);
        let c = status["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
        Some((c["status"].as_str()?.to_string(), c["message"].as_str()?.to_string()))
    }

    async fn serve(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let api = self.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<BoxBody> {
        let path = req.uri().path().to_string();
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        let kind = if path.starts_with(GROUP_PATH) {
            Kind::Config
        } else if path.starts_with(SECRET_PATH) {
            Kind::Secret
        } else {
            return json_response(StatusCode::NOT_FOUND, status_doc(404, "NotFound", &path));
        };
        let base = if kind == Kind::Config { GROUP_PATH } else { SECRET_PATH };
        let rest = path[base.len()..].trim_start_matches('/').to_string();
        let asked = query.get("fieldSelector").map(String::as_str).unwrap_or("");
        if kind == Kind::Secret && rest.is_empty() {
            self.state.lock().unwrap().secret_selectors.insert(asked.to_string());
        }
        let selector = match Selector::parse(kind, asked) {
            Ok(s) => s,
            Err(e) => return json_response(StatusCode::BAD_REQUEST, status_doc(400, "BadRequest", &e)),
        };
        match (req.method().as_str(), rest.as_str()) {
            ("GET", "") if query.get("watch").map(String::as_str) == Some("true") => self.watch(kind, &query, selector),
            ("GET", "") => self.list(kind, &selector),
            ("PATCH", r) if kind == Kind::Config && r.ends_with("/status") => {
                let name = r.trim_end_matches("/status").to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let patch: Value = serde_json::from_slice(&body).unwrap();
                let mut st = self.state.lock().unwrap();
                let Some(mut obj) = st.objects.get(&(Kind::Config, name.clone())).cloned() else {
                    return json_response(StatusCode::NOT_FOUND, status_doc(404, "NotFound", &name));
                };
                st.rv += 1;
                st.status_patches += 1;
                let before = obj.clone();
                obj["status"] = patch["status"].clone();
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                st.objects.insert((Kind::Config, name), obj.clone());
                self.emit(&mut st, Kind::Config, json!({ "type": "MODIFIED", "object": obj }), Some(before));
                json_response(StatusCode::OK, obj)
            }
            ("GET", name) if kind == Kind::Secret => {
                let st = self.state.lock().unwrap();
                if st.fail_secret_reads {
                    return json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status_doc(500, "InternalError", "etcd is down"),
                    );
                }
                match st.objects.get(&(Kind::Secret, name.to_string())) {
                    Some(o) => json_response(StatusCode::OK, o.clone()),
                    None => json_response(StatusCode::NOT_FOUND, status_doc(404, "NotFound", name)),
                }
            }
            // Server-side apply of a Secret, creating it if new (JSON is YAML, and kube sends JSON).
            ("PATCH", name) if kind == Kind::Secret => {
                let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                if content_type != "application/apply-patch+yaml" {
                    let message = format!("the fake does server-side apply only, not {content_type}");
                    return json_response(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        status_doc(415, "UnsupportedMediaType", &message),
                    );
                }
                let Some(manager) = query.get("fieldManager").cloned() else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        status_doc(400, "BadRequest", "fieldManager is required for apply requests"),
                    );
                };
                let force = query.get("force").map(String::as_str) == Some("true");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let applied: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(applied["metadata"]["name"], name, "the applied object names itself");
                match self.apply(Kind::Secret, applied, &manager, force) {
                    Ok(obj) => json_response(StatusCode::OK, obj),
                    Err(conflict) => json_response(StatusCode::CONFLICT, status_doc(409, "Conflict", &conflict)),
                }
            }
            ("DELETE", name) if kind == Kind::Secret => {
                self.delete(Kind::Secret, name);
                json_response(StatusCode::OK, json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }))
            }
            _ => json_response(StatusCode::METHOD_NOT_ALLOWED, status_doc(405, "MethodNotAllowed", &path)),
        }
    }

    fn list(&self, kind: Kind, selector: &Selector) -> Response<BoxBody> {
        let mut st = self.state.lock().unwrap();
        st.lists += 1;
        let items: Vec<Value> =
            st.objects.iter().filter(|((k, _), o)| *k == kind && selector.matches(o)).map(|(_, o)| o.clone()).collect();
        let (api_version, list_kind) = match kind {
            Kind::Config => ("lwsws.io/v1alpha1", "LwswsConfigList"),
            Kind::Secret => ("v1", "SecretList"),
        };
        json_response(
            StatusCode::OK,
            json!({ "apiVersion": api_version, "kind": list_kind,
                    "metadata": { "resourceVersion": st.rv.to_string() }, "items": items }),
        )
    }

    /// Streams events after `resourceVersion`: first what history holds, then live ones, with
    /// a BOOKMARK every 300 ms; 410 Gone when the version is older than the history.
    fn watch(&self, kind: Kind, query: &BTreeMap<String, String>, selector: Selector) -> Response<BoxBody> {
        let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let mut live = self.changes.subscribe();
        let (backlog, gone) = {
            let st = self.state.lock().unwrap();
            let gone = from != 0 && from + 1 < st.oldest_kept;
            let backlog: Vec<Value> =
                st.history.iter().filter(|c| c.kind == kind && c.rv > from).filter_map(|c| selector.event(c)).collect();
            (backlog, gone)
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            let send = |v: Value| {
                let tx = tx.clone();
                async move {
                    let mut line = serde_json::to_vec(&v).unwrap();
                    line.push(b'\n');
                    tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_ok()
                }
            };
            if gone {
                let _ =
                    send(json!({ "type": "ERROR", "object": status_doc(410, "Expired", "too old resource version") }))
                        .await;
                return;
            }
            for event in backlog {
                if !send(event).await {
                    return;
                }
            }
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            loop {
                tokio::select! {
                    got = live.recv() => match got {
                        Ok(Some(c)) if c.kind == kind && c.rv > from => {
                            if let Some(event) = selector.event(&c)
                                && !send(event).await
                            {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        // Expired (or lagged): the watch ends with 410 and the client re-lists.
                        Ok(None) | Err(_) => {
                            let _ = send(json!({ "type": "ERROR", "object": status_doc(410, "Expired", "too old resource version") })).await;
                            return;
                        }
                    },
                    _ = tick.tick(), if bookmarks => {
                        let rv = state.lock().unwrap().rv.to_string();
                        let (api_version, k) = match kind {
                            Kind::Config => ("lwsws.io/v1alpha1", "LwswsConfig"),
                            Kind::Secret => ("v1", "Secret"),
                        };
                        let b = json!({ "type": "BOOKMARK", "object": { "apiVersion": api_version, "kind": k,
                                        "metadata": { "resourceVersion": rv } } });
                        if !send(b).await { return; }
                    }
                }
            }
        });
        let body = StreamBody::new(tokio_stream_from(rx));
        Response::builder().header("content-type", "application/json").body(BodyExt::boxed(body)).unwrap()
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A `fieldSelector`: (field, wanted equal, value) terms, all of which must hold.
#[derive(Clone, Default)]
struct Selector(Vec<(String, bool, String)>);

impl Selector {
    /// The real API's syntax (`a=b,c!=d`, `==` as `=`), and its answer to a field it does not
    /// index for the kind.
    fn parse(kind: Kind, text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{term}'"));
            };
            let supported =
                matches!(field, "metadata.name" | "metadata.namespace") || (field == "type" && kind == Kind::Secret);
            if !supported {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.to_string()));
        }
        Ok(Selector(terms))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let got = match field.as_str() {
                "type" => obj["type"].as_str(),
                "metadata.name" => obj["metadata"]["name"].as_str(),
                _ => obj["metadata"]["namespace"].as_str(),
            };
            (got.unwrap_or("") == value) == *equal
        })
    }

    /// The event a watch with this selector delivers for a change, if any: an object that starts
    /// matching is ADDED, one that stops matching is DELETED.
    fn event(&self, c: &Change) -> Option<Value> {
        let obj = &c.event["object"];
        if c.event["type"] == "DELETED" {
            return self.matches(obj).then(|| c.event.clone());
        }
        let before = c.before.as_ref().is_some_and(|b| self.matches(b));
        match (before, self.matches(obj)) {
            (true, true) => Some(c.event.clone()),
            (false, true) => Some(json!({ "type": "ADDED", "object": obj })),
            (true, false) => Some(json!({ "type": "DELETED", "object": obj })),
            (false, false) => None,
        }
    }
}

/// `stringData` folded into `data` (base64), as the API server stores a Secret.
fn normalize(mut obj: Value) -> Value {
    use base64::Engine;
    if let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        for (k, v) in strings {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            obj["data"][k] = encoded.into();
        }
    }
    obj
}

/// The fields of an object that server-side apply tracks, with their values.
fn fields_of(obj: &Value) -> BTreeMap<Field, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for section in ["labels", "annotations"] {
                    for (lk, lv) in v[section].as_object().into_iter().flatten() {
                        out.insert((section.to_string(), lk.clone()), lv.clone());
                    }
                }
            }
            "data" if v.is_object() => {
                for (dk, dv) in v.as_object().into_iter().flatten() {
                    out.insert(("data".to_string(), dk.clone()), dv.clone());
                }
            }
            _ => {
                out.insert((String::new(), k.clone()), v.clone());
            }
        }
    }
    out
}

/// Where a tracked field lives in the object: its parent map (made if missing) and its key.
fn field_parent<'o>(obj: &'o mut Value, (section, key): &Field) -> (&'o mut Value, String) {
    let parent = match section.as_str() {
        "" => obj,
        "data" => &mut obj["data"],
        labels_or_annotations => &mut obj["metadata"][labels_or_annotations],
    };
    if parent.is_null() {
        *parent = json!({});
    }
    (parent, key.clone())
}

fn set_field(obj: &mut Value, field: &Field, value: Value) {
    let (parent, key) = field_parent(obj, field);
    parent[key] = value;
}

fn remove_field(obj: &mut Value, field: &Field) {
    let (parent, key) = field_parent(obj, field);
    if let Some(map) = parent.as_object_mut() {
        map.remove(&key);
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn json_response(status: StatusCode, v: Value) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(Full::new(Bytes::from(serde_json::to_vec(&v).unwrap()))))
        .unwrap()
}

fn status_doc(code: u16, reason: &str, message: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code })
}

/// kube's real client, talking to the fake over loopback HTTP.
fn client_for(addr: SocketAddr) -> kube::Client {
    let mut kconfig = kube::Config::new(format!("http://{addr}").parse().unwrap());
    kconfig.default_namespace = NS.into();
    kube::Client::try_from(kconfig).unwrap()
}

fn config(name: &str, vhosts: Value) -> Value {
    json!({ "apiVersion": "lwsws.io/v1alpha1", "kind": "LwswsConfig", "metadata": { "name": name },
            "spec": { "vhosts": vhosts } })
}

fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name }, "type": "kubernetes.io/tls",
            "data": { "tls.crt": b64(cert_pem), "tls.key": b64(key_pem) } })
}

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let until = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn page(port: u16, host: &str) -> Option<String> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = common::Conn::new(tokio::net::TcpStream::connect(addr).await.ok()?);
    c.send(&format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
    let r = c.read_response(false).await?;
    (r.status == 200).then(|| r.text())
}

/// The controller driven the way `main` drives it: every change → one `Server::apply_kubernetes`.
#[tokio::test]
async fn resources_are_served_refused_with_their_field_edited_and_relisted_after_410() {
    common::init();
    let api = FakeApi::new();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "from a resource").unwrap();
    std::fs::create_dir(www.path().join("v2")).unwrap();
    std::fs::write(www.path().join("v2/index.html"), "edited").unwrap();
    let (port, tls_port) = (common::free_port(), common::free_port());
    let origin = format!("file://{}", www.path().display());
    api.put(
        Kind::Config,
        config(
            "site",
            json!([{ "name": "site.test", "port": port, "interface": "127.0.0.1",
                     "mounts": [{ "mountpoint": "/", "origin": origin, "default": "index.html" }] }]),
        ),
    );
    let addr = api.clone().serve().await;

    let client = client_for(addr);
    let state = tempfile::tempdir().unwrap();
    let conf_dir = tempfile::tempdir().unwrap(); // no `conf`: the resources are the whole config
    let (ctl, mut changes) =
        lwsws::k8s::Controller::start(client, NS, state.path().join("secrets"), Default::default());
    assert!(ctl.synced(Duration::from_secs(10)).await, "the reflectors listed");

    // Start as main does in Kubernetes mode: build once from what is listed, then serve.
    let built = ctl.build(conf_dir.path(), "/usr/share");
    let loaded = built.loaded.unwrap();
    let mut warnings = loaded.warnings;
    let mut server = lwsws::app::Server::start(&loaded.config, &mut warnings).await.unwrap();
    server.apply_kubernetes(&ctl, conf_dir.path(), "/usr/share", "start").await;
    assert_eq!(page(port, "site.test").await.as_deref(), Some("from a resource"));
    eventually("Accepted=True on the good resource", || {
        api.condition("site", "Accepted").is_some_and(|(s, _)| s == "True")
            && api.condition("site", "Programmed").is_some_and(|(s, _)| s == "True")
    })
    .await;

    // Every change from here is picked up through the watch, debounced like file events.
    let ctl = Arc::new(ctl);
    let dir = conf_dir.path().to_path_buf();
    let stop = tokio_util::sync::CancellationToken::new();
    let loop_stop = stop.clone();
    let loop_ctl = ctl.clone();
    let runner = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = loop_stop.cancelled() => break,
                Some(()) = changes.recv() => {
                    lwsws::reload::settle(&mut changes).await;
                    server.apply_kubernetes(&loop_ctl, &dir, "/usr/share", "watch").await;
                }
            }
        }
        server
    });

    // A bad resource is refused, naming its field; the good one keeps serving.
    api.put(
        Kind::Config,
        config(
            "broken",
            json!([{ "name": "b.test", "port": common::free_port(), "mounts": [{ "mountpoint": "/", "origin": "nope://x" }] }]),
        ),
    );
    eventually("Accepted=False with the field path", || {
        api.condition("broken", "Accepted").is_some_and(|(s, m)| {
            s == "False" && m.starts_with("spec.vhosts[0].mounts[0].origin: \"origin\": unknown origin scheme")
        })
    })
    .await;
    assert_eq!(api.condition("broken", "Programmed").unwrap().0, "False");
    assert_eq!(page(port, "site.test").await.as_deref(), Some("from a resource"));

    // An edit applies without a restart.
    api.put(
        Kind::Config,
        config(
            "site",
            json!([{ "name": "site.test", "port": port, "interface": "127.0.0.1",
                     "mounts": [{ "mountpoint": "/", "origin": format!("{origin}/v2"), "default": "index.html" }] }]),
        ),
    );
    let mut served = None;
    for _ in 0..100 {
        served = page(port, "site.test").await;
        if served.as_deref() == Some("edited") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some("edited"));

    // Edited into a bad state: refused, and the version before keeps serving.
    api.put(
        Kind::Config,
        config(
            "site",
            json!([{ "name": "site.test", "port": port, "interface": "127.0.0.1",
                     "mounts": [{ "mountpoint": "/", "origin": "gopher://nowhere" }] }]),
        ),
    );
    eventually("the bad edit is refused", || {
        api.condition("site", "Accepted")
            .is_some_and(|(s, m)| s == "False" && m.contains("spec.vhosts[0].mounts[0].origin"))
    })
    .await;
    assert_eq!(page(port, "site.test").await.as_deref(), Some("edited"), "the last accepted version serves");
    let programmed = api.status_of("site")["conditions"][1].clone();
    assert_eq!(programmed["reason"], "PreviousVersionServes", "{programmed}");

    // Status writes settle: nothing changes, so nothing more is written.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let patches = api.state.lock().unwrap().status_patches;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.state.lock().unwrap().status_patches, patches, "status writes do not feed on themselves");

    // 410 Gone: history is compacted and the watches end; a change made meanwhile is still
    // seen because the controller re-lists.
    let lists_before = api.state.lock().unwrap().lists;
    api.expire_watches();
    api.delete(Kind::Config, "broken");
    let pki = rcgen::generate_simple_self_signed(vec!["tls.test".to_string()]).unwrap();
    api.put(Kind::Secret, tls_secret("tls-site", &pki.cert.pem(), &pki.signing_key.serialize_pem()));
    api.put(
        Kind::Config,
        config(
            "tls",
            json!([{ "name": "tls.test", "port": tls_port, "interface": "127.0.0.1", "tls-secret": "tls-site",
                     "mounts": [{ "mountpoint": "/", "origin": origin, "default": "index.html" }] }]),
        ),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert.der().clone()).unwrap();
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut c) = common::tls_connect(tls_addr, "tls.test", roots.clone(), None, &["http/1.1"]).await {
            c.send("GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n").await;
            assert_eq!(c.read_response(false).await.unwrap().text(), "from a resource");
            break;
        }
        assert!(Instant::now() < until, "the TLS vhost from a Secret was not served after the re-list");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(api.state.lock().unwrap().lists > lists_before, "the controller re-listed after 410 Gone");
    eventually("Programmed=True on the TLS resource", || {
        api.condition("tls", "Programmed").is_some_and(|(s, _)| s == "True")
    })
    .await;

    // The Secret is rotated: the new certificate is served without a restart.
    let rotated = rcgen::generate_simple_self_signed(vec!["tls.test".to_string()]).unwrap();
    api.put(Kind::Secret, tls_secret("tls-site", &rotated.cert.pem(), &rotated.signing_key.serialize_pem()));
    let mut new_roots = rustls::RootCertStore::empty();
    new_roots.add(rotated.cert.der().clone()).unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while common::tls_connect(tls_addr, "tls.test", new_roots.clone(), None, &["http/1.1"]).await.is_err() {
        assert!(Instant::now() < until, "the rotated certificate was not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.cancel();
    let server = runner.await.unwrap();
    server.shutdown(Duration::from_secs(1)).await;
}

/// The binary itself in Kubernetes mode (`--kubernetes`, a kubeconfig naming the fake API).
#[tokio::test]
async fn the_binary_in_kubernetes_mode_serves_resources_and_follows_edits() {
    let api = FakeApi::new();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("a.html"), "first").unwrap();
    std::fs::write(www.path().join("b.html"), "second").unwrap();
    let port = common::free_port();
    let vhost = |doc: &str| {
        config(
            "site",
            json!([{ "name": "site.test", "port": port.to_string(), "interface": "127.0.0.1",
                     "mounts": [{ "mountpoint": "/", "origin": format!("file://{}", www.path().display()), "default": doc }] }]),
        )
    };
    api.put(Kind::Config, vhost("a.html"));
    let addr = api.clone().serve().await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let child = common::Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_lwsws"))
            .args(["--kubernetes", "--namespace", NS, "-c", conf_dir.path().to_str().unwrap()])
            .env("KUBECONFIG", &kubeconfig)
            .env("LWSWS_STATE_DIR", home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut served = None;
    for _ in 0..100 {
        served = page(port, "site.test").await;
        if served.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some("first"));
    eventually("Accepted and Programmed written by the binary", || {
        api.condition("site", "Accepted").is_some_and(|(s, _)| s == "True")
            && api.condition("site", "Programmed").is_some_and(|(s, _)| s == "True")
    })
    .await;
    api.put(Kind::Config, vhost("b.html"));
    for _ in 0..100 {
        served = page(port, "site.test").await;
        if served.as_deref() == Some("second") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some("second"));
    // Waited for off this (single-threaded) runtime, so that the fake API goes on answering
    // whatever the binary asks it while it stops.
    let stopped = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(stopped.success());
}

/// ACME state in Kubernetes mode: the certificate as a `kubernetes.io/tls` Secret and the
/// account as an Opaque one, read back through the same store.
#[tokio::test]
async fn acme_state_round_trips_through_secrets() {
    use lwsws::acme::CertStore;
    common::init();
    let api = FakeApi::new();
    let addr = api.clone().serve().await;
    let client = client_for(addr);
    let answers = lwsws::k8s::acme_store::ChallengeSecrets::start(&client, NS);
    let store = lwsws::k8s::acme_store::SecretStore::new(client, NS, "Example.test", answers);
    assert!(store.load_cert().await.unwrap().is_none() && store.load_account().await.unwrap().is_none());
    store.save_account(r#"{"id":"acct"}"#).await.unwrap();
    store.save_cert("CHAIN PEM", "KEY PEM").await.unwrap();
    assert_eq!(store.load_cert().await.unwrap(), Some(("CHAIN PEM".to_string(), "KEY PEM".to_string())));
    assert_eq!(store.load_account().await.unwrap().as_deref(), Some(r#"{"id":"acct"}"#));
    // This fake has no Leases (404, as an API without the kind; a Role without them gives 403):
    // a lone replica still takes its claim and orders, rather than never.
    let claim = store.try_lock().await.expect("a missing Lease API is not an error that stops ordering");
    assert!(claim.is_some());
    {
        let st = api.state.lock().unwrap();
        let name = |prefix: &str| {
            st.objects.keys().find(|(k, n)| *k == Kind::Secret && n.starts_with(prefix)).unwrap().1.clone()
        };
        let cert = &st.objects[&(Kind::Secret, name("lwsws-acme-example-test-"))];
        assert_eq!(cert["type"], "kubernetes.io/tls");
        assert_eq!(cert["metadata"]["labels"]["app.kubernetes.io/managed-by"], "lwsws");
        let account = &st.objects[&(Kind::Secret, name("lwsws-acme-account-example-test-"))];
        assert_eq!(account["type"], "Opaque");
    }
    store.forget_account().await.unwrap();
    assert!(store.load_account().await.unwrap().is_none());
    store.forget_account().await.unwrap();
    // An API error is an error, not "no certificate": the manager then orders nothing.
    api.state.lock().unwrap().fail_secret_reads = true;
    let err = store.load_cert().await.unwrap_err();
    assert!(err.to_string().contains("reading Secret"), "{err}");
    assert!(store.load_account().await.is_err());
}

fn opaque_secret(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name }, "type": "Opaque",
            "stringData": { "password": "hunter2" } })
}

/// The next watch event that is not a bookmark-like no-op, within a guard against a hang.
async fn next_event<S>(stream: &mut S) -> kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Secret>
where
    S: futures::Stream<
            Item = Result<
                kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Secret>,
                kube::runtime::watcher::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a watch event within 30 s")
        .expect("the watch goes on")
        .expect("no watch error")
}

/// The controller watches Secrets with `fieldSelector=type=kubernetes.io/tls`, and a watch with
/// that selector (the fake answers it as the API server does) never sees an Opaque Secret:
/// not in the initial list, not when one is added, and a TLS Secret that becomes Opaque is
/// seen as deleted. A field the API does not index is refused.
#[tokio::test]
async fn a_non_tls_secret_is_not_seen_by_the_secret_watch() {
    use kube::runtime::watcher::{self, Event};
    let name = |s: &k8s_openapi::api::core::v1::Secret| s.metadata.name.clone().unwrap_or_default();
    common::init();
    let api = FakeApi::new();
    let pki = rcgen::generate_simple_self_signed(vec!["tls.test".to_string()]).unwrap();
    let (cert, key) = (pki.cert.pem(), pki.signing_key.serialize_pem());
    api.put(Kind::Secret, tls_secret("tls-a", &cert, &key));
    api.put(Kind::Secret, opaque_secret("opaque-a"));
    let addr = api.clone().serve().await;

    // The controller's own Secret watch asks for the TLS type only.
    let state = tempfile::tempdir().unwrap();
    let (ctl, _changes) =
        lwsws::k8s::Controller::start(client_for(addr), NS, state.path().join("secrets"), Default::default());
    assert!(ctl.synced(Duration::from_secs(30)).await, "the reflectors listed");
    let asked = api.state.lock().unwrap().secret_selectors.clone();
    assert_eq!(asked, BTreeSet::from(["type=kubernetes.io/tls".to_string()]), "the controller's Secret selectors");

    // A watch with that selector, event by event.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client_for(addr), NS);
    let mut stream =
        Box::pin(watcher::watcher(secrets.clone(), watcher::Config::default().fields("type=kubernetes.io/tls")));
    let mut listed = Vec::new();
    loop {
        match next_event(&mut stream).await {
            Event::Init => {}
            Event::InitApply(s) => listed.push(name(&s)),
            Event::InitDone => break,
            other => panic!("before the list is done: {other:?}"),
        }
    }
    assert_eq!(listed, vec!["tls-a".to_string()], "the initial list holds the TLS Secret only");
    api.put(Kind::Secret, opaque_secret("opaque-b"));
    api.put(Kind::Secret, tls_secret("tls-b", &cert, &key));
    match next_event(&mut stream).await {
        Event::Apply(s) => assert_eq!(name(&s), "tls-b", "opaque-b, added first, is not seen"),
        other => panic!("want tls-b applied: {other:?}"),
    }
    api.put(Kind::Secret, opaque_secret("tls-a"));
    match next_event(&mut stream).await {
        Event::Delete(s) => assert_eq!(name(&s), "tls-a", "a TLS Secret that became Opaque leaves the watch"),
        other => panic!("want tls-a deleted: {other:?}"),
    }
    let all = secrets.list(&Default::default()).await.unwrap();
    assert_eq!(all.items.len(), 4, "without a selector every Secret is listed");
    let refused = secrets.list(&kube::api::ListParams::default().fields("data.password=x")).await.unwrap_err();
    assert!(refused.to_string().contains("field label not supported"), "{refused}");
}

/// Server-side apply as a merge by field manager: lwsws's apply keeps what another manager set
/// on the same Secret, drops the fields it no longer sends itself, and without `force` a change
/// to another manager's field is a 409 Conflict.
#[tokio::test]
async fn server_side_apply_merges_by_field_manager() {
    use kube::api::{Patch, PatchParams};
    use lwsws::acme::CertStore;
    common::init();
    let api = FakeApi::new();
    let addr = api.clone().serve().await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client_for(addr), NS);
    let obj = |v: Value| api.state.lock().unwrap().objects[&(Kind::Secret, v.as_str().unwrap().to_string())].clone();
    // Someone else made the Secret first, with a label and a key of their own.
    api.put(
        Kind::Secret,
        json!({ "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": { "name": "shared", "labels": { "team": "web" } },
                "stringData": { "ca.crt": "CA" } }),
    );
    let answers = lwsws::k8s::acme_store::ChallengeSecrets::start(&client_for(addr), NS);
    let store = lwsws::k8s::acme_store::SecretStore::new(client_for(addr), NS, "shared.test", answers);
    store.save_cert("CHAIN", "KEY").await.unwrap();
    let cert_name = api
        .state
        .lock()
        .unwrap()
        .objects
        .keys()
        .find(|(k, n)| *k == Kind::Secret && n.starts_with("lwsws-acme-shared-test-"))
        .unwrap()
        .1
        .clone();
    // The store's own Secret: lwsws owns all of it; a second apply with new data replaces it.
    store.save_cert("CHAIN 2", "KEY 2").await.unwrap();
    assert_eq!(store.load_cert().await.unwrap(), Some(("CHAIN 2".into(), "KEY 2".into())));

    // Applied by lwsws onto the Secret someone else made: both managers' fields are there.
    let apply = |data: Value| {
        json!({ "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": { "name": "shared", "labels": { "app.kubernetes.io/managed-by": "lwsws" } },
                "data": data })
    };
    let params = PatchParams::apply("lwsws").force();
    let both = json!({ "tls.crt": "Q0hBSU4=", "tls.key": "S0VZ" });
    secrets.patch("shared", &params, &Patch::Apply(apply(both))).await.unwrap();
    let merged = obj(json!("shared"));
    assert_eq!(merged["metadata"]["labels"]["team"], "web", "{merged}");
    assert_eq!(merged["metadata"]["labels"]["app.kubernetes.io/managed-by"], "lwsws", "{merged}");
    assert_eq!(merged["data"]["ca.crt"], "Q0E=", "stringData became data and was kept: {merged}");
    assert_eq!(merged["data"]["tls.crt"], "Q0hBSU4=", "{merged}");
    // An apply that no longer sends tls.key drops it; the other manager's ca.crt stays.
    secrets.patch("shared", &params, &Patch::Apply(apply(json!({ "tls.crt": "Q0hBSU4=" })))).await.unwrap();
    let merged = obj(json!("shared"));
    assert!(merged["data"].get("tls.key").is_none(), "{merged}");
    assert_eq!(merged["data"]["ca.crt"], "Q0E=", "{merged}");
    // Changing the other manager's label without force is a conflict; with force it is taken.
    let take_label =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "shared", "labels": { "team": "edge" } } });
    let refused = secrets.patch("shared", &PatchParams::apply("lwsws"), &Patch::Apply(&take_label)).await.unwrap_err();
    assert!(refused.to_string().contains("conflict"), "{refused}");
    assert_eq!(obj(json!("shared"))["metadata"]["labels"]["team"], "web");
    secrets.patch("shared", &params, &Patch::Apply(&take_label)).await.unwrap();
    assert_eq!(obj(json!("shared"))["metadata"]["labels"]["team"], "edge");
    assert!(cert_name.starts_with("lwsws-acme-shared-test-"));
}
