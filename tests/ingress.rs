//! Ingress (`networking.k8s.io/v1`) served end to end: the server runs in-process in
//! Kubernetes mode against the in-process FAKE Kubernetes API (`common::fake_kube`; no API
//! server can run here), with real backend pods on 127.0.0.x and real requests over loopback.
//! Ingress ports 80 and 443 are bound on free ports through the port map, as the chart maps
//! them to container ports.

mod common;

use common::free_port;
use common::routes_env::*;
use serde_json::{Value, json};

fn ingress_class(default: bool) -> Value {
    let mut c = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": { "name": "lwsws" }, "spec": { "controller": INGRESS_CONTROLLER } });
    if default {
        c["metadata"]["annotations"] = json!({ "ingressclass.kubernetes.io/is-default-class": "true" });
    }
    c
}

fn ingress(ns: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": name, "namespace": ns, "creationTimestamp": "2026-11-27T00:00:00Z" }, "spec": spec })
}

fn path(p: &str, kind: &str, svc: &str) -> Value {
    json!({ "path": p, "pathType": kind, "backend": { "service": { "name": svc, "port": { "number": 80 } } } })
}

/// Options with ports 80 and 443 mapped to free ports.
fn options(http: u16, https: u16) -> lwsws::k8s::frontends::RouteOptions {
    let mut o = ingress_options();
    o.ports = lwsws::k8s::routes::PortMap::parse(&format!("80={http},443={https}")).unwrap();
    o
}

async fn pod_for(port: u16, host: &str, path: &str) -> String {
    let r = request(port, "GET", host, path, "").await;
    match echoed(&r)["pod"].as_str() {
        Some(p) => p.to_string(),
        None => format!("{} {}", r.status, r.text()),
    }
}

/// Exact, Prefix (whole path elements) and ImplementationSpecific paths, host precedence and
/// the one-label wildcard, and `status.loadBalancer`.
#[tokio::test]
async fn ingress_path_types_hosts_and_status() {
    let (http, https) = (free_port(), free_port());
    let pods = Pod::start_many(2, 3).await;
    let mut objects = vec![ingress_class(false)];
    for (i, name) in ["exact", "prefix", "impl"].iter().enumerate() {
        objects.extend(service("web", name, 80, &[&pods[i]]));
    }
    objects.push(ingress("web", "site", json!({ "ingressClassName": "lwsws", "rules": [
        { "host": "site.test", "http": { "paths": [
            path("/foo", "Exact", "exact"), path("/foo", "Prefix", "prefix"), path("/app", "ImplementationSpecific", "impl") ] } },
        { "host": "*.wild.test", "http": { "paths": [ path("/", "Prefix", "impl") ] } },
    ]})));
    let env = Env::start(objects, options(http, https)).await;
    until_served(http, "site.test", "/foo", 200).await;
    assert_eq!(pod_for(http, "site.test", "/foo").await, "127.0.0.2", "Exact beats Prefix at equal length");
    assert_eq!(pod_for(http, "site.test", "/foo/").await, "127.0.0.3");
    assert_eq!(pod_for(http, "site.test", "/foo/bar").await, "127.0.0.3");
    assert!(pod_for(http, "site.test", "/foobar").await.starts_with("404"), "Prefix compares whole elements");
    assert_eq!(pod_for(http, "site.test", "/app/x").await, "127.0.0.4");
    assert_eq!(pod_for(http, "a.wild.test", "/").await, "127.0.0.4");
    assert!(pod_for(http, "b.a.wild.test", "/").await.starts_with("404"), "the wildcard covers one label");
    assert!(pod_for(http, "other.test", "/foo").await.starts_with("404"));
    let ok = common::try_eventually(|| {
        env.status("networking.k8s.io/v1", "Ingress", "web", "site")["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.10"
    })
    .await;
    assert!(ok, "{}", env.status("networking.k8s.io/v1", "Ingress", "web", "site"));
    env.stop().await;
}

/// `tls` with a Secret: the host is served on 443 with its certificate (and on 80); the
/// default backend takes what no rule does.
#[tokio::test]
async fn ingress_tls_and_default_backend() {
    let (http, https) = (free_port(), free_port());
    let pods = Pod::start_many(2, 2).await;
    let pki = common::Pki::new("ingress test CA");
    let dir = tempfile::tempdir().unwrap();
    let cert = pki.leaf(dir.path(), "site", &["secure.test"], false);
    let key = std::fs::read_to_string(dir.path().join("site.key")).unwrap();
    let mut objects = vec![ingress_class(false), tls_secret("web", "site-tls", &cert, &key)];
    objects.extend(service("web", "app", 80, &[&pods[0]]));
    objects.extend(service("web", "fallback", 80, &[&pods[1]]));
    objects.push(ingress(
        "web",
        "secure",
        json!({ "ingressClassName": "lwsws",
        "defaultBackend": { "service": { "name": "fallback", "port": { "number": 80 } } },
        "tls": [{ "hosts": ["secure.test"], "secretName": "site-tls" }],
        "rules": [{ "host": "secure.test", "http": { "paths": [ path("/app", "Prefix", "app") ] } }] }),
    ));
    let env = Env::start(objects, options(http, https)).await;
    until_served(http, "secure.test", "/app", 200).await;
    assert_eq!(pod_for(http, "secure.test", "/app").await, "127.0.0.2");
    assert_eq!(pod_for(http, "secure.test", "/other").await, "127.0.0.3", "the default backend");
    assert_eq!(pod_for(http, "unknown.test", "/").await, "127.0.0.3", "the default backend takes any host");
    let ok = https_reaches(https, "secure.test", "/app/x", pki.roots(), "127.0.0.2").await;
    assert!(ok, "HTTPS with the Secret's certificate");
    env.stop().await;
}

/// Only Ingresses of our class are served: by `ingressClassName`, by the deprecated annotation,
/// or class-less when our IngressClass is the default; another controller's class is not.
#[tokio::test]
async fn ingress_class_selection() {
    let (http, https) = (free_port(), free_port());
    let pods = Pod::start_many(2, 1).await;
    let mut objects = vec![
        ingress_class(true),
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": { "name": "nginx" }, "spec": { "controller": "k8s.io/ingress-nginx" } }),
    ];
    objects.extend(service("web", "app", 80, &[&pods[0]]));
    let rule = |host: &str| json!([{ "host": host, "http": { "paths": [ path("/", "Prefix", "app") ] } }]);
    objects.push(ingress("web", "by-name", json!({ "ingressClassName": "lwsws", "rules": rule("name.test") })));
    objects.push(ingress("web", "default", json!({ "rules": rule("default.test") })));
    objects.push(ingress("web", "theirs", json!({ "ingressClassName": "nginx", "rules": rule("theirs.test") })));
    let mut annotated = ingress("web", "annotated", json!({ "rules": rule("annotated.test") }));
    annotated["metadata"]["annotations"] = json!({ "kubernetes.io/ingress.class": "lwsws" });
    objects.push(annotated);
    let env = Env::start(objects, options(http, https)).await;
    until_served(http, "name.test", "/", 200).await;
    assert_eq!(pod_for(http, "default.test", "/").await, "127.0.0.2");
    assert_eq!(pod_for(http, "annotated.test", "/").await, "127.0.0.2");
    assert!(pod_for(http, "theirs.test", "/").await.starts_with("404"), "another controller's Ingress");
    assert!(
        env.status("networking.k8s.io/v1", "Ingress", "web", "theirs")["loadBalancer"]["ingress"].is_null(),
        "another controller's Ingress gets no status from us"
    );
    env.stop().await;
}

/// An Ingress can only reach Services: a `resource` backend (say, a ConfigMap of files) is a
/// 500, never served from anything else.
#[tokio::test]
async fn ingress_resource_backend_is_refused() {
    let (http, https) = (free_port(), free_port());
    let objects = vec![
        ingress_class(false),
        ingress(
            "web",
            "res",
            json!({ "ingressClassName": "lwsws", "rules": [{ "host": "r.test", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "resource": { "apiGroup": "", "kind": "ConfigMap", "name": "files" } } } ] } }] }),
        ),
    ];
    let env = Env::start(objects, options(http, https)).await;
    until_served(http, "r.test", "/etc/passwd", 500).await;
    env.stop().await;
}
