//! A server in Kubernetes mode with the Gateway API and Ingress front ends on, against the
//! in-process FAKE Kubernetes API (`fake_kube`; no API server can run here), and backends
//! that are real HTTP servers, one "pod" per loopback address (127.0.0.2, 127.0.0.3, …) so
//! that a test can tell which endpoint answered.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Resp;
use super::fake_kube::FakeKube;

pub const CONTROLLER: &str = "lwsws.io/gateway-controller";
pub const INGRESS_CONTROLLER: &str = "lwsws.io/ingress-controller";

/// A pod: an HTTP server on its own loopback address that answers with what it received:
/// `{"pod", "method", "path", "host", "headers"}` and an `x-pod` header. A websocket
/// handshake is accepted and echoes one text message.
pub struct Pod {
    pub ip: IpAddr,
    pub port: u16,
    stop: CancellationToken,
}

impl Pod {
    pub async fn start(ip: &str, port: u16) -> Pod {
        let ip: IpAddr = ip.parse().unwrap();
        let listener = TcpListener::bind((ip, port)).await.unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(ip, req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Pod { ip, port, stop }
    }

    /// Several pods on consecutive loopback addresses from `first` (127.0.0.`first`), all on one
    /// port, as the pods behind one Service port are.
    pub async fn start_many(first: u8, count: u8) -> Vec<Pod> {
        loop {
            let one = Pod::start(&format!("127.0.0.{first}"), 0).await;
            let port = one.port;
            let mut pods = vec![one];
            for i in 1..count {
                match TcpListener::bind((format!("127.0.0.{}", first + i).as_str(), port)).await {
                    Ok(l) => {
                        drop(l);
                        pods.push(Pod::start(&format!("127.0.0.{}", first + i), port).await);
                    }
                    Err(_) => break,
                }
            }
            if pods.len() == count as usize {
                return pods;
            }
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(
    ip: IpAddr,
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    if req.headers().get("upgrade").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        let key =
            req.headers().get("sec-websocket-key").cloned().unwrap_or(hyper::header::HeaderValue::from_static(""));
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                use futures_util::{SinkExt, StreamExt};
                let io = hyper_util::rt::TokioIo::new(up);
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                if let Some(Ok(m)) = ws.next().await {
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::text(format!(
                            "{ip}: {}",
                            m.to_text().unwrap_or("")
                        )))
                        .await;
                }
            }
        });
        return Ok(hyper::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let doc = json!({
        "pod": ip.to_string(),
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "host": req.headers().get("host").map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
        "headers": headers,
    });
    let _ = req.into_body().collect().await;
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .header("x-pod", ip.to_string())
        .header("x-from-backend", "1")
        .body(Full::new(Bytes::from(doc.to_string())))
        .unwrap())
}

/// The server under test, fed by the fake API.
pub struct Env {
    pub fake: Arc<FakeKube>,
    pub ctl: Arc<lwsws::k8s::Controller>,
    stop: CancellationToken,
    runner: Option<tokio::task::JoinHandle<lwsws::app::Server>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Env {
    /// Puts `objects`, then starts the controller and the server, applying every change.
    pub async fn start(objects: Vec<Value>, options: lwsws::k8s::frontends::RouteOptions) -> Env {
        super::init();
        let fake = Arc::new(FakeKube::start().await);
        for o in objects {
            fake.put(o);
        }
        let state = tempfile::tempdir().unwrap();
        let conf = tempfile::tempdir().unwrap();
        let (ctl, mut changes) =
            lwsws::k8s::Controller::start(fake.client(), "lwsws", state.path().join("secrets"), options);
        assert!(ctl.synced(Duration::from_secs(30)).await, "the reflectors listed");
        let built = ctl.build(conf.path(), "/usr/share");
        let loaded = built.loaded.unwrap();
        let mut warnings = loaded.warnings;
        let services = ctl.services();
        let acme = lwsws::acme::AcmeBackend::files();
        let mut server = lwsws::app::Server::start_with(&loaded.config, &mut warnings, acme, services).await.unwrap();
        let ctl = Arc::new(ctl);
        server.apply_kubernetes(&ctl, conf.path(), "/usr/share", "start").await;
        let stop = CancellationToken::new();
        let (loop_stop, loop_ctl, dir) = (stop.clone(), ctl.clone(), conf.path().to_path_buf());
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
        Env { fake, ctl, stop, runner: Some(runner), _dirs: (state, conf) }
    }

    /// The status of an object, as the fake holds it now.
    pub fn status(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
        self.fake.get(api_version, kind, ns, name).map(|o| o["status"].clone()).unwrap_or(Value::Null)
    }

    /// A route's condition `type_` for its first parent: (status, reason).
    pub fn route_condition(&self, ns: &str, name: &str, type_: &str) -> Option<(String, String)> {
        let s = self.status("gateway.networking.k8s.io/v1", "HTTPRoute", ns, name);
        condition(&s["parents"][0]["conditions"], type_)
    }

    /// Waits until the route's condition reads (status, reason).
    pub async fn route_is(&self, ns: &str, name: &str, type_: &str, status: &str, reason: &str) {
        let what = format!("httproute {ns}/{name} {type_}={status} ({reason})");
        let ok =
            super::try_eventually(|| self.route_condition(ns, name, type_) == Some((status.into(), reason.into())))
                .await;
        assert!(ok, "{what}: status is {}", self.status("gateway.networking.k8s.io/v1", "HTTPRoute", ns, name));
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(r) = self.runner.take() {
            let server = r.await.unwrap();
            server.shutdown(Duration::from_secs(1)).await;
        }
    }
}

pub fn condition(conditions: &Value, type_: &str) -> Option<(String, String)> {
    conditions
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| (c["status"].as_str().unwrap_or("").to_string(), c["reason"].as_str().unwrap_or("").to_string()))
}

/// One request on a fresh connection to 127.0.0.1:`port`, with this Host.
pub async fn request(port: u16, method: &str, host: &str, path: &str, extra: &str) -> Resp {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = super::connect(addr).await;
    c.send(&format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")).await;
    c.read_response(method == "HEAD").await.expect("a response")
}

/// The JSON a pod answered with (`Null` when the answer is not a pod's).
pub fn echoed(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Waits until a GET answers with `status` (from a pod when 200), then returns that answer.
pub async fn until_served(port: u16, host: &str, path: &str, status: u16) -> Resp {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        // A listener still being bound (a reload, a process starting) refuses for a moment.
        let got = match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                let mut c = super::Conn::new(tcp);
                c.send(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
                c.read_response(false).await
            }
            Err(_) => None,
        };
        if let Some(r) = &got
            && r.status == status
        {
            return got.unwrap();
        }
        let seen = got.map(|r| format!("{} {}", r.status, r.text())).unwrap_or_else(|| "no answer".into());
        assert!(std::time::Instant::now() < until, "GET {host}{path}: wanted {status}, got {seen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a GET over TLS (SNI and Host `name`) reaches pod `pod` within the usual deadline.
pub async fn https_reaches(port: u16, name: &str, path: &str, roots: rustls::RootCertStore, pod: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    super::try_eventually_async(|| async {
        match super::tls_connect(addr, name, roots.clone(), None, &[]).await {
            Ok(mut c) => {
                c.send(&format!("GET {path} HTTP/1.1\r\nHost: {name}\r\n\r\n")).await;
                c.read_response(false).await.is_some_and(|r| echoed(&r)["pod"] == pod)
            }
            Err(_) => false,
        }
    })
    .await
}

// Objects, as `kubectl apply` would send them.

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
}

pub fn gateway_class() -> Value {
    json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": { "name": "lwsws" }, "spec": { "controllerName": CONTROLLER } })
}

pub fn gateway(ns: &str, name: &str, listeners: Value) -> Value {
    json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "gatewayClassName": "lwsws", "listeners": listeners } })
}

pub fn http_listener(name: &str, port: u16, hostname: Option<&str>, from: &str) -> Value {
    let mut l = json!({ "name": name, "port": port, "protocol": "HTTP",
                        "allowedRoutes": { "namespaces": { "from": from } } });
    if let Some(h) = hostname {
        l["hostname"] = h.into();
    }
    l
}

pub fn http_route(ns: &str, name: &str, spec: Value) -> Value {
    http_route_at(ns, name, spec, "2026-11-27T00:00:00Z")
}

/// A route created at `created` (precedence across routes looks at the age).
pub fn http_route_at(ns: &str, name: &str, spec: Value, created: &str) -> Value {
    json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": name, "namespace": ns, "creationTimestamp": created }, "spec": spec })
}

/// A Service with one port (`port`, named `name` when given) and an EndpointSlice with `pods`
/// (all ready) on `target`.
pub fn service(ns: &str, name: &str, port: u16, pods: &[&Pod]) -> Vec<Value> {
    let target = pods.first().map(|p| p.port).unwrap_or(1);
    let endpoints: Vec<Value> = pods.iter().map(|p| endpoint(&p.ip.to_string(), true, true, false)).collect();
    vec![service_only(ns, name, port), slice(ns, &format!("{name}-a"), name, target, endpoints)]
}

pub fn service_only(ns: &str, name: &str, port: u16) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name, "namespace": ns },
            "spec": { "ports": [{ "name": "http", "port": port, "targetPort": "http" }], "clusterIP": "10.96.0.10" } })
}

pub fn slice(ns: &str, name: &str, service: &str, target: u16, endpoints: Vec<Value>) -> Value {
    json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": ns, "labels": { "kubernetes.io/service-name": service } },
            "addressType": "IPv4", "ports": [{ "name": "http", "port": target, "protocol": "TCP" }],
            "endpoints": endpoints })
}

pub fn endpoint(ip: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({ "addresses": [ip], "conditions": { "ready": ready, "serving": serving, "terminating": terminating } })
}

pub fn reference_grant(
    ns: &str,
    name: &str,
    from_kind: &str,
    from_ns: &str,
    to_kind: &str,
    to_name: Option<&str>,
) -> Value {
    let mut to = json!({ "group": "", "kind": to_kind });
    if let Some(n) = to_name {
        to["name"] = n.into();
    }
    json!({ "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "from": [{ "group": "gateway.networking.k8s.io", "kind": from_kind, "namespace": from_ns }],
                      "to": [to] } })
}

pub fn tls_secret(ns: &str, name: &str, cert_pem: &str, key_pem: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({ "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": { "name": name, "namespace": ns },
            "data": { "tls.crt": b64(cert_pem), "tls.key": b64(key_pem) } })
}

/// Options for the Gateway API front end alone.
pub fn gateway_options() -> lwsws::k8s::frontends::RouteOptions {
    lwsws::k8s::frontends::RouteOptions {
        gateway_controller: Some(CONTROLLER.into()),
        addresses: vec!["192.0.2.10".into()],
        ..Default::default()
    }
}

/// Options for the Ingress front end alone.
pub fn ingress_options() -> lwsws::k8s::frontends::RouteOptions {
    lwsws::k8s::frontends::RouteOptions {
        ingress: Some(lwsws::k8s::frontends::IngressOptions {
            class_name: "lwsws".into(),
            controller_name: INGRESS_CONTROLLER.into(),
        }),
        addresses: vec!["192.0.2.10".into()],
        ..Default::default()
    }
}
