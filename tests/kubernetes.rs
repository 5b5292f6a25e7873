//! Kubernetes mode against an in-process FAKE of the Kubernetes API (no API server can run
//! here). The fake keeps the semantics the controller relies on: namespaced list with a
//! collection `resourceVersion`, `?watch=true` streams from a resourceVersion (ADDED, MODIFIED,
//! DELETED, periodic BOOKMARKs), `410 Gone` (an ERROR event with reason Expired) when the
//! requested version is older than what it still keeps, forcing a re-list, Secrets, and merge
//! patches to the `/status` subresource (which bump the resourceVersion and emit MODIFIED like
//! the real API). It runs over real loopback HTTP with kube's real client.

mod common;

use std::collections::BTreeMap;
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

/// One change, as a watch delivers it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: Kind,
    event: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches asking for a version older than this get 410 Gone.
    oldest_kept: u64,
    objects: BTreeMap<(Kind, String), Value>,
    history: Vec<Change>,
    /// How many list requests were answered (a re-list after 410 shows here).
    lists: usize,
    /// How many status patches were written.
    status_patches: usize,
    /// Answer every read of a single Secret with 500 (an API server in trouble).
    fail_secret_reads: bool,
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

    /// Creates or replaces an object, as `kubectl apply` would: bumps resourceVersion and
    /// generation (for spec changes) and emits ADDED or MODIFIED.
    fn put(&self, kind: Kind, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
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
        self.emit(&mut st, kind, json!({ "type": kind_word, "object": obj }));
    }

    fn delete(&self, kind: Kind, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        if let Some(mut obj) = st.objects.remove(&(kind, name.to_string())) {
            obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
            self.emit(&mut st, kind, json!({ "type": "DELETED", "object": obj }));
        }
    }

    fn emit(&self, st: &mut State, kind: Kind, event: Value) {
        let change = Change { rv: st.rv, kind, event };
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
        match (req.method().as_str(), rest.as_str()) {
            ("GET", "") if query.get("watch").map(String::as_str) == Some("true") => self.watch(kind, &query),
            ("GET", "") => self.list(kind),
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
                obj["status"] = patch["status"].clone();
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                st.objects.insert((Kind::Config, name), obj.clone());
                self.emit(&mut st, Kind::Config, json!({ "type": "MODIFIED", "object": obj }));
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
            // Server-side apply of a whole Secret (the fields lwsws sets), creating it if new.
            ("PATCH", name) if kind == Kind::Secret => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let applied: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(applied["metadata"]["name"], name, "the applied object names itself");
                self.put(Kind::Secret, applied);
                let st = self.state.lock().unwrap();
                json_response(StatusCode::OK, st.objects[&(Kind::Secret, name.to_string())].clone())
            }
            ("DELETE", name) if kind == Kind::Secret => {
                self.delete(Kind::Secret, name);
                json_response(StatusCode::OK, json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }))
            }
            _ => json_response(StatusCode::METHOD_NOT_ALLOWED, status_doc(405, "MethodNotAllowed", &path)),
        }
    }

    fn list(&self, kind: Kind) -> Response<BoxBody> {
        let mut st = self.state.lock().unwrap();
        st.lists += 1;
        let items: Vec<Value> = st.objects.iter().filter(|((k, _), _)| *k == kind).map(|(_, o)| o.clone()).collect();
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
    fn watch(&self, kind: Kind, query: &BTreeMap<String, String>) -> Response<BoxBody> {
        let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let mut live = self.changes.subscribe();
        let (backlog, gone) = {
            let st = self.state.lock().unwrap();
            let gone = from != 0 && from + 1 < st.oldest_kept;
            let backlog: Vec<Change> = st.history.iter().filter(|c| c.kind == kind && c.rv > from).cloned().collect();
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
            for c in backlog {
                if !send(c.event).await {
                    return;
                }
            }
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            loop {
                tokio::select! {
                    got = live.recv() => match got {
                        Ok(Some(c)) if c.kind == kind && c.rv > from => {
                            if !send(c.event).await { return; }
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
    let (ctl, mut changes) = lwsws::k8s::Controller::start(client, NS, state.path().join("secrets"));
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
    let store = lwsws::k8s::acme_store::SecretStore::new(client, NS, "Example.test");
    assert!(store.load_cert().await.unwrap().is_none() && store.load_account().await.unwrap().is_none());
    store.save_account(r#"{"id":"acct"}"#).await.unwrap();
    store.save_cert("CHAIN PEM", "KEY PEM").await.unwrap();
    assert_eq!(store.load_cert().await.unwrap(), Some(("CHAIN PEM".to_string(), "KEY PEM".to_string())));
    assert_eq!(store.load_account().await.unwrap().as_deref(), Some(r#"{"id":"acct"}"#));
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
