//! Gateway API conformance-style cases, named after the upstream conformance tests they mirror
//! (gateway-api v1.5.1 `conformance/tests`). Each runs the server in-process in Kubernetes mode
//! against the in-process FAKE Kubernetes API (`common::fake_kube`: no API server can run
//! here), with backends that are real HTTP servers, one pod per loopback address, and real
//! requests over loopback TCP (and TLS for HTTPS listeners).

mod common;

use std::time::Duration;

use common::free_port;
use common::routes_env::*;
use serde_json::{Value, json};

const V1: &str = "gateway.networking.k8s.io/v1";

/// The usual start: our class, a Gateway `gw` in `infra` with one HTTP listener, namespaces.
fn base(port: u16, from: &str) -> Vec<Value> {
    vec![
        gateway_class(),
        namespace("infra", json!({})),
        namespace("web", json!({ "env": "prod" })),
        namespace("other", json!({})),
        gateway("infra", "gw", json!([http_listener("http", port, None, from)])),
    ]
}

fn parent() -> Value {
    json!([{ "name": "gw", "namespace": "infra" }])
}

/// HTTPRouteSimpleSameNamespace: a route in the Gateway's namespace reaches its Service's pod,
/// and every status says so.
#[tokio::test]
async fn http_route_simple_same_namespace() {
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "Same");
    objects.extend(service("infra", "echo", 8080, &[&pods[0]]));
    objects.push(http_route(
        "infra",
        "simple",
        json!({ "parentRefs": [{ "name": "gw" }],
        "rules": [{ "backendRefs": [{ "name": "echo", "port": 8080 }] }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    let r = until_served(port, "any.example", "/hello?x=1", 200).await;
    let e = echoed(&r);
    assert_eq!(e["pod"], "127.0.0.2");
    assert_eq!(e["path"], "/hello?x=1");
    assert_eq!(e["host"], "any.example", "the client's Host goes on");
    env.route_is("infra", "simple", "Accepted", "True", "Accepted").await;
    env.route_is("infra", "simple", "ResolvedRefs", "True", "ResolvedRefs").await;
    let gw = env.status(V1, "Gateway", "infra", "gw");
    assert_eq!(condition(&gw["conditions"], "Accepted"), Some(("True".into(), "Accepted".into())), "{gw}");
    assert_eq!(condition(&gw["conditions"], "Programmed"), Some(("True".into(), "Programmed".into())), "{gw}");
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 1, "{gw}");
    assert_eq!(gw["addresses"][0]["value"], "192.0.2.10", "{gw}");
    let class = env.status(V1, "GatewayClass", "", "lwsws");
    assert_eq!(condition(&class["conditions"], "Accepted"), Some(("True".into(), "Accepted".into())), "{class}");
    // The route's parent entry names our controller and echoes the parentRef.
    let route = env.status(V1, "HTTPRoute", "infra", "simple");
    assert_eq!(route["parents"][0]["controllerName"], CONTROLLER);
    assert_eq!(route["parents"][0]["parentRef"]["name"], "gw");
    env.stop().await;
}

/// Two Services, v1 on 127.0.0.2 and v2 on 127.0.0.3, and the given routes.
async fn two_versions(port: u16, routes: Vec<Value>) -> (Env, Vec<Pod>) {
    let pods = Pod::start_many(2, 2).await;
    let mut objects = base(port, "All");
    objects.extend(service("web", "v1", 80, &[&pods[0]]));
    objects.extend(service("web", "v2", 80, &[&pods[1]]));
    objects.extend(routes);
    (Env::start(objects, gateway_options()).await, pods)
}

async fn pod_for(port: u16, method: &str, host: &str, path: &str, extra: &str) -> String {
    let r = request(port, method, host, path, extra).await;
    match echoed(&r)["pod"].as_str() {
        Some(p) => p.to_string(),
        None => format!("{} {}", r.status, r.text()),
    }
}

fn backend(name: &str) -> Value {
    json!([{ "name": name, "port": 80 }])
}

/// HTTPRouteMatching: path prefixes and a header match, in one route.
#[tokio::test]
async fn http_route_matching() {
    let port = free_port();
    let route = http_route(
        "web",
        "matching",
        json!({ "parentRefs": parent(), "rules": [
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }], "backendRefs": backend("v1") },
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/v2" } },
                          { "headers": [{ "name": "version", "value": "two" }] }], "backendRefs": backend("v2") },
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    until_served(port, "m.test", "/", 200).await;
    assert_eq!(pod_for(port, "GET", "m.test", "/", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "m.test", "/example", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "m.test", "/v2", "").await, "127.0.0.3");
    assert_eq!(pod_for(port, "GET", "m.test", "/v2/example", "").await, "127.0.0.3");
    assert_eq!(pod_for(port, "GET", "m.test", "/v2example", "").await, "127.0.0.2", "whole segments");
    assert_eq!(pod_for(port, "GET", "m.test", "/", "Version: two\r\n").await, "127.0.0.3");
    env.stop().await;
}

/// HTTPRouteExactPathMatching and HTTPRoutePathMatchOrder: Exact is case-sensitive and whole;
/// an exact path outranks any prefix, a longer prefix a shorter one.
#[tokio::test]
async fn http_route_exact_path_matching_and_path_match_order() {
    let port = free_port();
    let route = http_route(
        "web",
        "order",
        json!({ "parentRefs": parent(), "rules": [
            { "matches": [{ "path": { "type": "Exact", "value": "/one" } }], "backendRefs": backend("v1") },
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/one/two" } }], "backendRefs": backend("v2") },
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }], "backendRefs": backend("v2") },
            { "matches": [{ "path": { "type": "RegularExpression", "value": "/re/[0-9]+" } }], "backendRefs": backend("v1") },
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    until_served(port, "o.test", "/one", 200).await;
    assert_eq!(pod_for(port, "GET", "o.test", "/one", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "o.test", "/one/", "").await, "127.0.0.3", "/one/ is not /one");
    assert_eq!(pod_for(port, "GET", "o.test", "/One", "").await, "127.0.0.3", "case-sensitive");
    assert_eq!(pod_for(port, "GET", "o.test", "/one/two/x", "").await, "127.0.0.3");
    assert_eq!(pod_for(port, "GET", "o.test", "/re/42", "").await, "127.0.0.2", "a regular expression");
    assert_eq!(pod_for(port, "GET", "o.test", "/re/x", "").await, "127.0.0.3");
    env.stop().await;
}

/// HTTPRouteMatchingAcrossRoutes: rules of two routes on the same hostname compete by the
/// spec's precedence; the older route wins a tie.
#[tokio::test]
async fn http_route_matching_across_routes() {
    let port = free_port();
    let a = http_route_at(
        "web",
        "a",
        json!({ "parentRefs": parent(), "hostnames": ["example.com"], "rules": [
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }], "backendRefs": backend("v1") },
            { "matches": [{ "path": { "type": "Exact", "value": "/same" } }], "backendRefs": backend("v1") },
        ]}),
        "2026-01-01T00:00:00Z",
    );
    let b = http_route_at(
        "web",
        "b",
        json!({ "parentRefs": parent(), "hostnames": ["example.com"], "rules": [
            { "matches": [{ "path": { "type": "PathPrefix", "value": "/v2" } }], "backendRefs": backend("v2") },
            { "matches": [{ "path": { "type": "Exact", "value": "/same" } }], "backendRefs": backend("v2") },
            { "matches": [{ "headers": [{ "name": "version", "value": "two" }] }], "backendRefs": backend("v2") },
        ]}),
        "2026-02-01T00:00:00Z",
    );
    let (env, _pods) = two_versions(port, vec![a, b]).await;
    until_served(port, "example.com", "/", 200).await;
    assert_eq!(pod_for(port, "GET", "example.com", "/", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "example.com", "/v2/x", "").await, "127.0.0.3");
    assert_eq!(pod_for(port, "GET", "example.com", "/", "version: two\r\n").await, "127.0.0.3", "more headers");
    assert_eq!(pod_for(port, "GET", "example.com", "/same", "").await, "127.0.0.2", "the older route");
    let r = request(port, "GET", "other.com", "/", "").await;
    assert_eq!(r.status, 404, "no route for this hostname");
    env.stop().await;
}

/// HTTPRouteHeaderMatching: exact values, names without regard to case, regular expressions.
#[tokio::test]
async fn http_route_header_matching() {
    let port = free_port();
    let route = http_route(
        "web",
        "headers",
        json!({ "parentRefs": parent(), "rules": [
            { "matches": [{ "headers": [{ "name": "Version", "value": "one" }] }], "backendRefs": backend("v1") },
            { "matches": [{ "headers": [{ "name": "version", "value": "two" }, { "name": "color", "value": "orange" }] }],
              "backendRefs": backend("v2") },
            { "matches": [{ "headers": [{ "type": "RegularExpression", "name": "color", "value": "bl(ue|ack)" }] }],
              "backendRefs": backend("v2") },
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    until_served(port, "h.test", "/", 404).await;
    let ok = common::try_eventually_async(|| async {
        pod_for(port, "GET", "h.test", "/", "version: one\r\n").await == "127.0.0.2"
    })
    .await;
    assert!(ok);
    assert_eq!(pod_for(port, "GET", "h.test", "/", "VERSION: one\r\n").await, "127.0.0.2");
    assert!(pod_for(port, "GET", "h.test", "/", "version: One\r\n").await.starts_with("404"), "values are exact");
    assert_eq!(pod_for(port, "GET", "h.test", "/", "version: two\r\ncolor: orange\r\n").await, "127.0.0.3");
    assert!(pod_for(port, "GET", "h.test", "/", "version: two\r\n").await.starts_with("404"), "both must hold");
    assert_eq!(pod_for(port, "GET", "h.test", "/", "color: black\r\n").await, "127.0.0.3");
    env.stop().await;
}

/// HTTPRouteQueryParamMatching.
#[tokio::test]
async fn http_route_query_param_matching() {
    let port = free_port();
    let route = http_route(
        "web",
        "query",
        json!({ "parentRefs": parent(), "rules": [
            { "matches": [{ "queryParams": [{ "name": "animal", "value": "whale" }] }], "backendRefs": backend("v1") },
            { "matches": [{ "queryParams": [{ "name": "animal", "value": "dolphin" }, { "name": "color", "value": "blue" }] }],
              "backendRefs": backend("v2") },
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    until_served(port, "q.test", "/?animal=whale", 200).await;
    assert_eq!(pod_for(port, "GET", "q.test", "/?animal=whale", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "q.test", "/?color=blue&animal=dolphin", "").await, "127.0.0.3");
    assert!(pod_for(port, "GET", "q.test", "/?animal=dolphin", "").await.starts_with("404"));
    assert!(pod_for(port, "GET", "q.test", "/?ANIMAL=whale", "").await.starts_with("404"), "names are case-sensitive");
    env.stop().await;
}

/// HTTPRouteMethodMatching.
#[tokio::test]
async fn http_route_method_matching() {
    let port = free_port();
    let route = http_route(
        "web",
        "method",
        json!({ "parentRefs": parent(), "rules": [
            { "matches": [{ "method": "POST" }], "backendRefs": backend("v1") },
            { "matches": [{ "method": "GET", "path": { "type": "PathPrefix", "value": "/" } }], "backendRefs": backend("v2") },
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    until_served(port, "x.test", "/", 200).await;
    assert_eq!(pod_for(port, "POST", "x.test", "/", "content-length: 0\r\n").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "x.test", "/", "").await, "127.0.0.3");
    assert!(pod_for(port, "HEAD", "x.test", "/", "").await.starts_with("404"));
    env.stop().await;
}

/// HTTPRouteHostnameIntersection: a route's hostnames meet the listener's; only names both
/// allow are served, narrowed to the more specific.
#[tokio::test]
async fn http_route_hostname_intersection() {
    let port = free_port();
    let pods = Pod::start_many(2, 2).await;
    let mut objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        gateway(
            "infra",
            "gw",
            json!([
                http_listener("specific", port, Some("very.specific.com"), "Same"),
                http_listener("wild", port, Some("*.wildcard.io"), "Same"),
            ]),
        ),
    ];
    objects.extend(service("infra", "v1", 80, &[&pods[0]]));
    objects.extend(service("infra", "v2", 80, &[&pods[1]]));
    objects.push(http_route(
        "infra",
        "r1",
        json!({ "parentRefs": [{ "name": "gw" }],
        "hostnames": ["*.specific.com", "foo.wildcard.io"], "rules": [{ "backendRefs": backend("v1") }] }),
    ));
    objects.push(http_route(
        "infra",
        "r2",
        json!({ "parentRefs": [{ "name": "gw" }],
        "hostnames": ["*.anotherwildcard.io"], "rules": [{ "backendRefs": backend("v2") }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "very.specific.com", "/", 200).await;
    assert_eq!(pod_for(port, "GET", "very.specific.com", "/", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "foo.wildcard.io", "/", "").await, "127.0.0.2");
    assert!(pod_for(port, "GET", "foo.specific.com", "/", "").await.starts_with("404"), "outside the listener");
    assert!(pod_for(port, "GET", "bar.wildcard.io", "/", "").await.starts_with("404"), "outside the route");
    env.route_is("infra", "r2", "Accepted", "False", "NoMatchingListenerHostname").await;
    env.stop().await;
}

/// HTTPRouteListenerHostnameMatching: listeners with exact and wildcard hostnames on one port,
/// each with its route (sectionName), served by the most specific listener.
#[tokio::test]
async fn http_route_listener_hostname_matching() {
    let port = free_port();
    let pods = Pod::start_many(2, 3).await;
    let mut objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        gateway(
            "infra",
            "gw",
            json!([
                http_listener("listener-1", port, Some("bar.com"), "Same"),
                http_listener("listener-2", port, Some("foo.bar.com"), "Same"),
                http_listener("listener-3", port, Some("*.bar.com"), "Same"),
            ]),
        ),
    ];
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        objects.extend(service("infra", name, 80, &[&pods[i]]));
        objects.push(http_route(
            "infra",
            name,
            json!({ "parentRefs": [{ "name": "gw", "sectionName": format!("listener-{}", i + 1) }],
            "rules": [{ "backendRefs": backend(name) }] }),
        ));
    }
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "bar.com", "/", 200).await;
    assert_eq!(pod_for(port, "GET", "bar.com", "/", "").await, "127.0.0.2");
    assert_eq!(pod_for(port, "GET", "foo.bar.com", "/", "").await, "127.0.0.3");
    assert_eq!(pod_for(port, "GET", "baz.bar.com", "/", "").await, "127.0.0.4");
    assert_eq!(pod_for(port, "GET", "boo.baz.bar.com", "/", "").await, "127.0.0.4", "a wildcard covers deeper names");
    assert!(pod_for(port, "GET", "multiple.prefixes.foo.com", "/", "").await.starts_with("404"));
    let gw = env.status(V1, "Gateway", "infra", "gw");
    for l in gw["listeners"].as_array().unwrap() {
        assert_eq!(l["attachedRoutes"], 1, "{gw}");
    }
    env.stop().await;
}

/// HTTPRouteCrossNamespace (Selector) and HTTPRouteInvalidCrossNamespaceParentRef: a route
/// from a namespace the listener's selector takes attaches; one from another does not.
#[tokio::test]
async fn http_route_cross_namespace() {
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        namespace("web", json!({ "shared-gateway-access": "true" })),
        namespace("other", json!({})),
        gateway(
            "infra",
            "gw",
            json!([{ "name": "http", "port": port, "protocol": "HTTP",
            "allowedRoutes": { "namespaces": { "from": "Selector",
                "selector": { "matchLabels": { "shared-gateway-access": "true" } } } } }]),
        ),
    ];
    objects.extend(service("web", "echo", 80, &[&pods[0]]));
    objects.extend(service("other", "echo", 80, &[&pods[0]]));
    objects.push(http_route(
        "web",
        "allowed",
        json!({ "parentRefs": parent(), "hostnames": ["a.test"],
        "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    objects.push(http_route(
        "other",
        "refused",
        json!({ "parentRefs": parent(), "hostnames": ["b.test"],
        "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "a.test", "/", 200).await;
    env.route_is("web", "allowed", "Accepted", "True", "Accepted").await;
    env.route_is("other", "refused", "Accepted", "False", "NotAllowedByListeners").await;
    assert_eq!(request(port, "GET", "b.test", "/", "").await.status, 404);
    // A sectionName no listener has.
    env.fake.put(http_route(
        "web",
        "allowed",
        json!({ "parentRefs": [{ "name": "gw", "namespace": "infra", "sectionName": "nope" }],
        "hostnames": ["a.test"], "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    env.route_is("web", "allowed", "Accepted", "False", "NoMatchingParent").await;
    until_served(port, "a.test", "/", 404).await;
    env.stop().await;
}

/// A route in `web` to Service `echo` in `other`, and the pod behind it.
async fn cross_namespace_backend(port: u16, grant: Option<Value>) -> (Env, Vec<Pod>) {
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "All");
    objects.extend(service("other", "echo", 80, &[&pods[0]]));
    objects.extend(grant);
    objects.push(http_route(
        "web",
        "granted",
        json!({ "parentRefs": parent(), "hostnames": ["g.test"],
        "rules": [{ "backendRefs": [{ "name": "echo", "namespace": "other", "port": 80 }] }] }),
    ));
    (Env::start(objects, gateway_options()).await, pods)
}

/// HTTPRouteReferenceGrant: a backend in another namespace is used once a ReferenceGrant there
/// names it; a grant for another Service name grants nothing.
#[tokio::test]
async fn http_route_reference_grant() {
    let port = free_port();
    let grant = reference_grant("other", "allow-web", "HTTPRoute", "web", "Service", Some("echo"));
    let (env, _pods) = cross_namespace_backend(port, Some(grant)).await;
    let r = until_served(port, "g.test", "/", 200).await;
    assert_eq!(echoed(&r)["pod"], "127.0.0.2");
    env.route_is("web", "granted", "ResolvedRefs", "True", "ResolvedRefs").await;
    env.fake.put(reference_grant("other", "allow-web", "HTTPRoute", "web", "Service", Some("else")));
    until_served(port, "g.test", "/", 500).await;
    env.route_is("web", "granted", "ResolvedRefs", "False", "RefNotPermitted").await;
    env.stop().await;
}

/// HTTPRouteInvalidCrossNamespaceBackendRef: without a ReferenceGrant the backend's share is a
/// 500 and ResolvedRefs says RefNotPermitted, while Accepted stays True; a grant that arrives
/// later lets it through.
#[tokio::test]
async fn http_route_invalid_cross_namespace_backend_ref() {
    let port = free_port();
    let (env, _pods) = cross_namespace_backend(port, None).await;
    env.route_is("web", "granted", "ResolvedRefs", "False", "RefNotPermitted").await;
    env.route_is("web", "granted", "Accepted", "True", "Accepted").await;
    until_served(port, "g.test", "/", 500).await;
    env.fake.put(reference_grant("other", "allow-web", "HTTPRoute", "web", "Service", None));
    until_served(port, "g.test", "/", 200).await;
    env.stop().await;
}

/// HTTPRouteInvalidBackendRefUnknownKind and HTTPRouteInvalidNonExistentBackendRef: 500s with
/// the reasons; a route can never reach anything but a Service (no files, no CGI).
#[tokio::test]
async fn http_route_invalid_backend_ref_unknown_kind() {
    let port = free_port();
    let mut objects = base(port, "All");
    objects.push(http_route(
        "web",
        "kind",
        json!({ "parentRefs": parent(), "hostnames": ["k.test"],
        "rules": [{ "backendRefs": [{ "group": "lwsws.io", "kind": "File", "name": "etc-passwd", "port": 80 }] }] }),
    ));
    objects.push(http_route(
        "web",
        "missing",
        json!({ "parentRefs": parent(), "hostnames": ["m.test"],
        "rules": [{ "backendRefs": [{ "name": "nowhere", "port": 80 }] }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    env.route_is("web", "kind", "ResolvedRefs", "False", "InvalidKind").await;
    env.route_is("web", "missing", "ResolvedRefs", "False", "BackendNotFound").await;
    until_served(port, "k.test", "/etc/passwd", 500).await;
    until_served(port, "m.test", "/", 500).await;
    env.stop().await;
}

/// HTTPRouteDisallowedKind: a listener that allows only another route kind takes no
/// HTTPRoute; the unknown kind is reported on the listener.
#[tokio::test]
async fn http_route_disallowed_kind() {
    let port = free_port();
    let objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        gateway(
            "infra",
            "gw",
            json!([{ "name": "tcp-only", "port": port, "protocol": "HTTP",
            "allowedRoutes": { "kinds": [{ "kind": "TCPRoute" }] } }]),
        ),
        http_route(
            "infra",
            "r",
            json!({ "parentRefs": [{ "name": "gw" }], "rules": [{ "backendRefs": backend("x") }] }),
        ),
    ];
    let env = Env::start(objects, gateway_options()).await;
    env.route_is("infra", "r", "Accepted", "False", "NotAllowedByListeners").await;
    let gw = env.status(V1, "Gateway", "infra", "gw");
    assert_eq!(
        condition(&gw["listeners"][0]["conditions"], "ResolvedRefs"),
        Some(("False".into(), "InvalidRouteKinds".into())),
        "{gw}"
    );
    assert_eq!(gw["listeners"][0]["supportedKinds"], json!([]), "{gw}");
    env.stop().await;
}

/// One route on `v1` whose rule carries `filters`.
async fn filtered(port: u16, filters: Value) -> (Env, Vec<Pod>) {
    let route = http_route(
        "web",
        "f",
        json!({ "parentRefs": parent(), "rules": [{ "filters": filters, "backendRefs": backend("v1") }] }),
    );
    two_versions(port, vec![route]).await
}

/// HTTPRouteRequestHeaderModifier: set overwrites, add appends (`first,add-appends-values`),
/// remove drops, names without regard to case.
#[tokio::test]
async fn http_route_request_header_modifier() {
    let port = free_port();
    let (env, _pods) = filtered(
        port,
        json!([{ "type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{ "name": "X-Header-Set", "value": "set-overwrites-values" }],
        "add": [{ "name": "X-Header-Add", "value": "add-appends-values" }],
        "remove": ["X-Header-Remove"] } }]),
    )
    .await;
    until_served(port, "h.test", "/", 200).await;
    let extra = "x-header-set: old\r\nx-header-add: first\r\nX-Header-Remove: gone\r\n";
    let e = echoed(&request(port, "GET", "h.test", "/", extra).await);
    assert_eq!(e["headers"]["x-header-set"], "set-overwrites-values");
    assert_eq!(e["headers"]["x-header-add"], "first,add-appends-values");
    assert!(e["headers"].get("x-header-remove").is_none(), "{e}");
    let e = echoed(&request(port, "GET", "h.test", "/", "").await);
    assert_eq!(e["headers"]["x-header-add"], "add-appends-values", "added where there was none");
    env.stop().await;
}

/// HTTPRouteResponseHeaderModifier: the same on the backend's answer.
#[tokio::test]
async fn http_route_response_header_modifier() {
    let port = free_port();
    let (env, _pods) = filtered(
        port,
        json!([{ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "set": [{ "name": "X-Pod", "value": "hidden" }],
        "add": [{ "name": "X-Added", "value": "yes" }, { "name": "Content-Type", "value": "charset=utf-8" }],
        "remove": ["X-From-Backend"] } }]),
    )
    .await;
    until_served(port, "h.test", "/", 200).await;
    let r = request(port, "GET", "h.test", "/", "").await;
    assert_eq!(r.header("x-pod"), Some("hidden"));
    assert_eq!(r.header("x-added"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/json,charset=utf-8"));
    assert_eq!(r.header("x-from-backend"), None);
    env.stop().await;
}

fn redirect(r: Value) -> Value {
    json!([{ "type": "RequestRedirect", "requestRedirect": r }])
}

/// A route whose only rule redirects as `r` says.
async fn redirecting(port: u16, r: Value) -> (Env, Vec<Pod>) {
    let route = http_route("web", "redirect", json!({ "parentRefs": parent(), "rules": [{ "filters": redirect(r) }] }));
    two_versions(port, vec![route]).await
}

/// HTTPRouteRedirectHostAndStatus: the hostname replaced, 302 by default or the status asked.
#[tokio::test]
async fn http_route_redirect_host_and_status() {
    let port = free_port();
    let (env, _pods) = redirecting(port, json!({ "hostname": "example.org" })).await;
    let r = until_served(port, "r.test", "/hostname/x?q=1", 302).await;
    assert_eq!(r.header("location"), Some(format!("http://example.org:{port}/hostname/x?q=1").as_str()));
    env.fake.put(http_route(
        "web",
        "redirect",
        json!({ "parentRefs": parent(), "rules": [{ "filters":
        redirect(json!({ "hostname": "example.org", "statusCode": 301 })) }] }),
    ));
    let r = until_served(port, "r.test", "/status", 301).await;
    assert_eq!(r.header("location"), Some(format!("http://example.org:{port}/status").as_str()));
    env.stop().await;
}

/// HTTPRouteRedirectPath: ReplaceFullPath and ReplacePrefixMatch.
#[tokio::test]
async fn http_route_redirect_path() {
    let port = free_port();
    let rule = |prefix: &str, path: Value| {
        json!({ "matches": [{ "path": { "type": "PathPrefix", "value": prefix } }],
        "filters": redirect(json!({ "path": path })) })
    };
    let route = http_route(
        "web",
        "redirect",
        json!({ "parentRefs": parent(), "rules": [
            rule("/full", json!({ "type": "ReplaceFullPath", "replaceFullPath": "/one" })),
            rule("/prefix", json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": "/two" })),
            rule("/strip", json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": "/" })),
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    let r = until_served(port, "r.test", "/full/x?q", 302).await;
    assert_eq!(r.header("location"), Some(format!("http://r.test:{port}/one?q").as_str()));
    let r = request(port, "GET", "r.test", "/prefix/x/y", "").await;
    assert_eq!(r.header("location"), Some(format!("http://r.test:{port}/two/x/y").as_str()));
    let r = request(port, "GET", "r.test", "/prefix", "").await;
    assert_eq!(r.header("location"), Some(format!("http://r.test:{port}/two").as_str()));
    let r = request(port, "GET", "r.test", "/strip/x", "").await;
    assert_eq!(r.header("location"), Some(format!("http://r.test:{port}/x").as_str()));
    env.stop().await;
}

/// HTTPRouteRedirectScheme (and HTTPRouteRedirectPort): a scheme set gives its own port, left
/// out of the Location; a port set is kept unless it is the scheme's.
#[tokio::test]
async fn http_route_redirect_scheme() {
    let port = free_port();
    let rule = |prefix: &str, r: Value| {
        json!({ "matches": [{ "path": { "type": "PathPrefix", "value": prefix } }],
        "filters": redirect(r) })
    };
    let route = http_route(
        "web",
        "redirect",
        json!({ "parentRefs": parent(), "rules": [
            rule("/scheme", json!({ "scheme": "https" })),
            rule("/port", json!({ "port": 8083 })),
            rule("/both", json!({ "scheme": "https", "port": 8443 })),
            rule("/default", json!({ "scheme": "http", "port": 80 })),
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    let r = until_served(port, "r.test", "/scheme?a=b", 302).await;
    assert_eq!(r.header("location"), Some("https://r.test/scheme?a=b"));
    let r = request(port, "GET", "r.test", "/port", "").await;
    assert_eq!(r.header("location"), Some("http://r.test:8083/port"));
    let r = request(port, "GET", "r.test", "/both", "").await;
    assert_eq!(r.header("location"), Some("https://r.test:8443/both"));
    let r = request(port, "GET", "r.test", "/default", "").await;
    assert_eq!(r.header("location"), Some("http://r.test/default"));
    env.stop().await;
}

/// HTTPRouteRewriteHost: the Host sent to the backend is replaced; the path is not.
#[tokio::test]
async fn http_route_rewrite_host() {
    let port = free_port();
    let (env, _pods) =
        filtered(port, json!([{ "type": "URLRewrite", "urlRewrite": { "hostname": "one.example.org" } }])).await;
    let r = until_served(port, "w.test", "/host/x", 200).await;
    let e = echoed(&r);
    assert_eq!((e["host"].as_str(), e["path"].as_str()), (Some("one.example.org"), Some("/host/x")));
    env.stop().await;
}

/// HTTPRouteRewritePath: ReplacePrefixMatch (to a path, to nothing) and ReplaceFullPath, the
/// query kept.
#[tokio::test]
async fn http_route_rewrite_path() {
    let port = free_port();
    let rule = |prefix: &str, path: Value| {
        json!({ "matches": [{ "path": { "type": "PathPrefix", "value": prefix } }],
        "filters": [{ "type": "URLRewrite", "urlRewrite": { "path": path } }], "backendRefs": backend("v1") })
    };
    let route = http_route(
        "web",
        "rewrite",
        json!({ "parentRefs": parent(), "rules": [
            rule("/prefix/one", json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": "/one" })),
            rule("/strip", json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": "" })),
            rule("/full", json!({ "type": "ReplaceFullPath", "replaceFullPath": "/one" })),
        ]}),
    );
    let (env, _pods) = two_versions(port, vec![route]).await;
    let r = until_served(port, "w.test", "/prefix/one/two?x=1", 200).await;
    assert_eq!(echoed(&r)["path"], "/one/two?x=1");
    assert_eq!(echoed(&request(port, "GET", "w.test", "/prefix/one", "").await)["path"], "/one");
    assert_eq!(echoed(&request(port, "GET", "w.test", "/prefix/one/", "").await)["path"], "/one/");
    assert_eq!(echoed(&request(port, "GET", "w.test", "/strip/a", "").await)["path"], "/a");
    assert_eq!(echoed(&request(port, "GET", "w.test", "/strip", "").await)["path"], "/");
    assert_eq!(echoed(&request(port, "GET", "w.test", "/full/any/thing?q", "").await)["path"], "/one?q");
    env.stop().await;
}

/// HTTPRouteWeight: 70/30/0 over many requests, the 0 getting nothing (±5 % as conformance;
/// 2,000 requests make a miss five standard deviations out).
#[tokio::test]
async fn http_route_weight() {
    let port = free_port();
    let pods = Pod::start_many(2, 3).await;
    let mut objects = base(port, "All");
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        objects.extend(service("web", name, 80, &[&pods[i]]));
    }
    objects.push(http_route("web", "weights", json!({ "parentRefs": parent(), "rules": [{ "backendRefs": [
        { "name": "a", "port": 80, "weight": 70 }, { "name": "b", "port": 80, "weight": 30 }, { "name": "c", "port": 80, "weight": 0 }] }] })));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "w.test", "/", 200).await;
    let mut c = common::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        c.send("GET / HTTP/1.1\r\nHost: w.test\r\n\r\n").await;
        let r = c.read_response(false).await.unwrap();
        *counts.entry(echoed(&r)["pod"].as_str().unwrap_or("none").to_string()).or_insert(0) += 1;
    }
    let a = counts.get("127.0.0.2").copied().unwrap_or(0);
    let b = counts.get("127.0.0.3").copied().unwrap_or(0);
    assert!((1300..=1500).contains(&a), "{counts:?}");
    assert!((500..=700).contains(&b), "{counts:?}");
    assert_eq!(a + b, 2000, "weight 0 gets nothing: {counts:?}");
    env.stop().await;
}

/// GatewaySecretReferenceGrantSpecific (and GatewaySecretMissingReferenceGrant first): an HTTPS
/// listener's certificate in another namespace is used once a ReferenceGrant names it.
#[tokio::test]
async fn gateway_secret_reference_grant_specific() {
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let pki = common::Pki::new("gateway test CA");
    let dir = tempfile::tempdir().unwrap();
    let cert = pki.leaf(dir.path(), "site", &["secure.test"], false);
    let key = std::fs::read_to_string(dir.path().join("site.key")).unwrap();
    let mut objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        namespace("certs", json!({})),
        tls_secret("certs", "site-cert", &cert, &key),
        gateway(
            "infra",
            "gw",
            json!([{ "name": "https", "port": port, "protocol": "HTTPS", "hostname": "secure.test",
            "tls": { "certificateRefs": [{ "kind": "Secret", "name": "site-cert", "namespace": "certs" }] } }]),
        ),
        http_route(
            "infra",
            "r",
            json!({ "parentRefs": [{ "name": "gw" }], "rules": [{ "backendRefs": backend("echo") }] }),
        ),
    ];
    objects.extend(service("infra", "echo", 80, &[&pods[0]]));
    let env = Env::start(objects, gateway_options()).await;
    let listener = |env: &Env| env.status(V1, "Gateway", "infra", "gw")["listeners"][0]["conditions"].clone();
    assert!(
        common::try_eventually(
            || condition(&listener(&env), "ResolvedRefs") == Some(("False".into(), "RefNotPermitted".into()))
        )
        .await,
        "{}",
        listener(&env)
    );
    env.fake.put(reference_grant("certs", "allow-gw", "Gateway", "infra", "Secret", Some("site-cert")));
    assert!(
        common::try_eventually(
            || condition(&listener(&env), "Programmed") == Some(("True".into(), "Programmed".into()))
        )
        .await,
        "{}",
        listener(&env)
    );
    let ok = https_reaches(port, "secure.test", "/tls", pki.roots(), "127.0.0.2").await;
    assert!(ok, "HTTPS through the granted certificate");
    env.stop().await;
}

/// GatewayInvalidTLSConfiguration: a missing Secret, a reference of another kind and a Secret
/// that holds no certificate each make ResolvedRefs false (InvalidCertificateRef).
#[tokio::test]
async fn gateway_invalid_tls_configuration() {
    let port = free_port();
    let https = |name: &str, host: &str, r: Value| {
        json!({ "name": name, "port": port, "protocol": "HTTPS", "hostname": host,
        "tls": { "certificateRefs": [r] } })
    };
    let objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        tls_secret("infra", "junk", "not a certificate", "not a key"),
        gateway(
            "infra",
            "gw",
            json!([
                https("missing", "a.test", json!({ "name": "nope" })),
                https("kind", "b.test", json!({ "group": "example.com", "kind": "Vault", "name": "x" })),
                https("malformed", "c.test", json!({ "name": "junk" })),
            ]),
        ),
    ];
    let env = Env::start(objects, gateway_options()).await;
    let ok = common::try_eventually(|| {
        let gw = env.status(V1, "Gateway", "infra", "gw");
        gw["listeners"].as_array().is_some_and(|ls| {
            ls.len() == 3
                && ls.iter().all(|l| {
                    condition(&l["conditions"], "ResolvedRefs")
                        == Some(("False".into(), "InvalidCertificateRef".into()))
                })
        })
    })
    .await;
    assert!(ok, "{}", env.status(V1, "Gateway", "infra", "gw"));
    let gw = env.status(V1, "Gateway", "infra", "gw");
    assert_eq!(condition(&gw["conditions"], "Programmed").unwrap().0, "False", "{gw}");
    env.stop().await;
}

/// GatewayObservedGenerationBump and GatewayModifyListeners: a new listener is served and
/// every condition's observedGeneration follows the Gateway's generation.
#[tokio::test]
async fn gateway_observed_generation_bump() {
    let (port, port2) = (free_port(), free_port());
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "All");
    objects.extend(service("web", "echo", 80, &[&pods[0]]));
    objects.push(http_route(
        "web",
        "r",
        json!({ "parentRefs": parent(), "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "g.test", "/", 200).await;
    let generation =
        |env: &Env| env.fake.get(V1, "Gateway", "infra", "gw").unwrap()["metadata"]["generation"].as_i64().unwrap();
    let observed = |env: &Env| {
        let s = env.status(V1, "Gateway", "infra", "gw");
        s["conditions"][0]["observedGeneration"].as_i64()
    };
    let first = generation(&env);
    assert!(common::try_eventually(|| observed(&env) == Some(first)).await);
    env.fake.put(gateway(
        "infra",
        "gw",
        json!([http_listener("http", port, None, "All"), http_listener("more", port2, None, "All")]),
    ));
    let second = generation(&env);
    assert!(second > first);
    assert!(
        common::try_eventually(|| observed(&env) == Some(second)).await,
        "{}",
        env.status(V1, "Gateway", "infra", "gw")
    );
    let gw = env.status(V1, "Gateway", "infra", "gw");
    for l in gw["listeners"].as_array().unwrap() {
        assert!(l["conditions"].as_array().unwrap().iter().all(|c| c["observedGeneration"] == second), "{gw}");
    }
    until_served(port2, "g.test", "/", 200).await;
    env.stop().await;
}

/// A websocket through a route reaches the pod and back.
#[tokio::test]
async fn websocket_upgrades_through_a_route() {
    use futures_util::{SinkExt, StreamExt};
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "All");
    objects.extend(service("web", "echo", 80, &[&pods[0]]));
    objects.push(http_route(
        "web",
        "ws",
        json!({ "parentRefs": parent(), "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "ws.test", "/", 200).await;
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://ws.test:{port}/chat"),
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
    )
    .await
    .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.to_text().unwrap(), "127.0.0.2: hello");
    env.stop().await;
}

/// Service `echo` with `endpoints` on `target`, and a route to it on `/plain` (carried by the
/// passthrough) and on `/edited` (a header edit: carried by the hyper path).
fn plain_and_edited(port: u16, target: u16, endpoints: Vec<Value>) -> Vec<Value> {
    let mut objects = base(port, "All");
    objects.push(service_only("web", "echo", 80));
    objects.push(slice("web", "echo-a", "echo", target, endpoints));
    objects.push(http_route("web", "r", json!({ "parentRefs": parent(), "rules": [
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/plain" } }], "backendRefs": backend("echo") },
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/edited" } }], "backendRefs": backend("echo"),
          "filters": [{ "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [{ "name": "x-edited", "value": "1" }] } }] },
    ]})));
    objects
}

/// Endpoints come and go (ready → terminating → gone) while clients send requests without a
/// pause, on both request paths (plain GETs go through the passthrough; a rule with a header
/// edit goes through the hyper path): no request fails, the terminating endpoint gets no new
/// requests, and the new one takes its share. No reload happens for endpoint changes.
#[tokio::test]
async fn endpoints_added_and_removed_under_load_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let port = free_port();
    let pods = Pod::start_many(2, 3).await;
    let target = pods[0].port;
    let (a, b, c) = ("127.0.0.2", "127.0.0.3", "127.0.0.4");
    let endpoints = vec![endpoint(a, true, true, false), endpoint(b, true, true, false)];
    let env = Env::start(plain_and_edited(port, target, endpoints), gateway_options()).await;
    until_served(port, "e.test", "/plain", 200).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen: Arc<parking_lot::Mutex<Vec<String>>> = Default::default();
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, failures, seen) = (stop.clone(), failures.clone(), seen.clone());
        let path = if i % 2 == 0 { "/plain" } else { "/edited" };
        clients.push(tokio::spawn(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut conn = common::connect(addr).await;
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                conn.send(&format!("GET {path} HTTP/1.1\r\nHost: e.test\r\n\r\n")).await;
                match conn.read_response(false).await {
                    Some(r) if r.status == 200 => {
                        let e = echoed(&r);
                        if path == "/edited" {
                            assert_eq!(e["headers"]["x-edited"], "1", "the hyper path carried it");
                        }
                        seen.lock().push(e["pod"].as_str().unwrap_or("").to_string());
                    }
                    other => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {other:?}");
                        conn = common::connect(addr).await;
                    }
                }
                sent += 1;
            }
            sent
        }));
    }
    // Waits until `n` answers in a row (counted from now) come from `pods` only.
    let only_from = |pods: Vec<&'static str>, n: usize| {
        let seen = seen.clone();
        async move {
            let start = seen.lock().len();
            common::try_eventually(|| {
                let s = seen.lock();
                let tail: Vec<&String> = s[start..].iter().collect();
                tail.len() >= n && tail[tail.len() - n..].iter().all(|p| pods.contains(&p.as_str()))
            })
            .await
        }
    };
    // A third pod joins.
    env.fake.put(slice(
        "web",
        "echo-a",
        "echo",
        target,
        vec![endpoint(a, true, true, false), endpoint(b, true, true, false), endpoint(c, true, true, false)],
    ));
    let joined = common::try_eventually(|| seen.lock().iter().any(|p| p == c)).await;
    assert!(joined, "the new endpoint gets requests");
    // The first terminates: no new requests reach it.
    env.fake.put(slice(
        "web",
        "echo-a",
        "echo",
        target,
        vec![endpoint(a, false, true, true), endpoint(b, true, true, false), endpoint(c, true, true, false)],
    ));
    assert!(only_from(vec!["127.0.0.3", "127.0.0.4"], 200).await, "the terminating endpoint still got requests");
    // Then it is gone, and its pod stops.
    env.fake.put(slice(
        "web",
        "echo-a",
        "echo",
        target,
        vec![endpoint(b, true, true, false), endpoint(c, true, true, false)],
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pods[0].stop();
    // The second goes the same way.
    env.fake.put(slice(
        "web",
        "echo-a",
        "echo",
        target,
        vec![endpoint(b, false, true, true), endpoint(c, true, true, false)],
    ));
    assert!(only_from(vec!["127.0.0.4"], 200).await, "the second terminating endpoint still got requests");
    env.fake.put(slice("web", "echo-a", "echo", target, vec![endpoint(c, true, true, false)]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pods[1].stop();
    assert!(only_from(vec!["127.0.0.4"], 200).await);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {total} requests");
    assert!(total >= 600, "{total} requests (the three waits above saw 600 in a row)");
    env.stop().await;
}

/// An endpoint that refuses connections (its pod died before the EndpointSlice said so) is
/// set aside and an idempotent request goes to another endpoint: no request fails.
#[tokio::test]
async fn a_refusing_endpoint_is_set_aside_and_requests_retried() {
    let port = free_port();
    let pods = Pod::start_many(2, 2).await;
    let target = pods[0].port;
    let endpoints = vec![endpoint("127.0.0.2", true, true, false), endpoint("127.0.0.3", true, true, false)];
    let env = Env::start(plain_and_edited(port, target, endpoints), gateway_options()).await;
    until_served(port, "e.test", "/plain", 200).await;
    pods[0].stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/plain", "/edited"] {
        for _ in 0..50 {
            // A fresh connection each time, so no pooled connection hides the refusal.
            let r = request(port, "GET", "e.test", path, "connection: close\r\n").await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(echoed(&r)["pod"], "127.0.0.3");
        }
    }
    // A non-idempotent request is not resent: it may fail with 503 while the endpoint is
    // still listed, but never reaches the upstream twice.
    env.stop().await;
}

/// All weights 0 answers 500 (never a backend); a Service without endpoints answers 503;
/// every endpoint refusing ends in 503 after a bounded number of tries, not a loop.
#[tokio::test]
async fn no_backend_to_send_to_answers_500_or_503() {
    let port = free_port();
    let pods = Pod::start_many(2, 2).await;
    let target = pods[0].port;
    let mut objects = base(port, "All");
    objects.extend(service("web", "a", 80, &[&pods[0]]));
    objects.push(service_only("web", "empty", 80));
    objects.push(slice("web", "empty-a", "empty", target, vec![]));
    objects.push(service_only("web", "dead", 80));
    objects.push(slice(
        "web",
        "dead-a",
        "dead",
        target,
        vec![endpoint("127.0.0.2", true, true, false), endpoint("127.0.0.3", true, true, false)],
    ));
    objects.push(http_route("web", "r", json!({ "parentRefs": parent(), "rules": [
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/zero" } }],
          "backendRefs": [{ "name": "a", "port": 80, "weight": 0 }] },
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/empty" } }], "backendRefs": backend("empty") },
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/dead" } }], "backendRefs": backend("dead") },
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/dead" }, "queryParams": [{ "name": "edited", "value": "" }] }],
          "backendRefs": backend("dead"),
          "filters": [{ "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [{ "name": "x-e", "value": "1" }] } }] },
        { "matches": [{ "path": { "type": "PathPrefix", "value": "/none" } }] },
    ]})));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "z.test", "/dead", 200).await;
    until_served(port, "z.test", "/zero", 500).await;
    until_served(port, "z.test", "/none", 500).await;
    until_served(port, "z.test", "/empty", 503).await;
    pods[0].stop();
    pods[1].stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/dead", "/dead?edited"] {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            request(port, "GET", "z.test", path, "connection: close\r\n"),
        )
        .await
        .expect("an answer, not endless resending");
        assert_eq!(r.status, 503, "{}", r.text());
    }
    env.stop().await;
}

/// A rule this server cannot serve (an unsupported filter) is dropped alone: the route is
/// Accepted with PartiallyInvalid; a route with only such rules is not Accepted.
#[tokio::test]
async fn a_bad_rule_is_dropped_alone() {
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "All");
    objects.extend(service("web", "a", 80, &[&pods[0]]));
    let mirror = json!({ "matches": [{ "path": { "type": "PathPrefix", "value": "/mirror" } }],
        "filters": [{ "type": "RequestMirror", "requestMirror": { "backendRef": { "name": "a", "port": 80 } } }],
        "backendRefs": backend("a") });
    objects.push(http_route("web", "partly", json!({ "parentRefs": parent(), "hostnames": ["p.test"], "rules": [
        mirror.clone(), { "matches": [{ "path": { "type": "PathPrefix", "value": "/ok" } }], "backendRefs": backend("a") } ]})));
    objects.push(http_route(
        "web",
        "wholly",
        json!({ "parentRefs": parent(), "hostnames": ["w.test"], "rules": [mirror] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    until_served(port, "p.test", "/ok", 200).await;
    assert_eq!(request(port, "GET", "p.test", "/mirror", "").await.status, 404, "the dropped rule serves nothing");
    env.route_is("web", "partly", "Accepted", "True", "Accepted").await;
    env.route_is("web", "partly", "PartiallyInvalid", "True", "UnsupportedValue").await;
    env.route_is("web", "wholly", "Accepted", "False", "UnsupportedValue").await;
    env.stop().await;
}

/// Listeners that conflict (the same port and hostname) are both Conflicted and not served;
/// a port the server cannot bind leaves the Gateway not Programmed, saying why; a protocol this
/// server does not speak is not Accepted. The other listeners serve.
#[tokio::test]
async fn conflicted_unbindable_and_unsupported_listeners() {
    let (port, taken_port, other) = (free_port(), free_port(), free_port());
    let _taken = std::net::TcpListener::bind(("0.0.0.0", taken_port)).unwrap();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = vec![
        gateway_class(),
        namespace("infra", json!({})),
        gateway(
            "infra",
            "gw",
            json!([
                http_listener("one", port, Some("same.test"), "All"),
                http_listener("two", port, Some("same.test"), "All"),
                http_listener("ok", other, None, "All"),
                { "name": "tcp", "port": other + 1, "protocol": "TCP" },
            ]),
        ),
        http_route(
            "infra",
            "r",
            json!({ "parentRefs": [{ "name": "gw" }], "rules": [{ "backendRefs": backend("a") }] }),
        ),
    ];
    objects.extend(service("infra", "a", 80, &[&pods[0]]));
    let env = Env::start(objects, gateway_options()).await;
    until_served(other, "x.test", "/", 200).await;
    let gw = env.status(V1, "Gateway", "infra", "gw");
    let listener = |i: usize, t: &str| condition(&gw["listeners"][i]["conditions"], t);
    assert_eq!(listener(0, "Conflicted"), Some(("True".into(), "HostnameConflict".into())), "{gw}");
    assert_eq!(listener(1, "Conflicted"), Some(("True".into(), "HostnameConflict".into())), "{gw}");
    assert_eq!(listener(0, "Programmed").unwrap().0, "False", "{gw}");
    assert_eq!(listener(2, "Programmed").unwrap().0, "True", "{gw}");
    assert_eq!(listener(3, "Accepted"), Some(("False".into(), "UnsupportedProtocol".into())), "{gw}");
    assert_eq!(condition(&gw["conditions"], "Accepted"), Some(("True".into(), "ListenersNotValid".into())), "{gw}");
    // A listener on a port another process holds: the server cannot take the config.
    env.fake.put(gateway(
        "infra",
        "gw",
        json!([http_listener("ok", other, None, "All"), http_listener("taken", taken_port, None, "All")]),
    ));
    let ok = common::try_eventually(|| {
        let gw = env.status(V1, "Gateway", "infra", "gw");
        condition(&gw["conditions"], "Programmed").is_some_and(|(s, _)| s == "False")
            && gw["conditions"].to_string().contains("not applied")
    })
    .await;
    assert!(ok, "{}", env.status(V1, "Gateway", "infra", "gw"));
    // The last good config keeps serving.
    assert_eq!(request(other, "GET", "x.test", "/", "").await.status, 200);
    env.stop().await;
}

/// A Service that appears after the route naming it: the route goes from BackendNotFound (500)
/// to served, without anything else changing.
#[tokio::test]
async fn a_service_created_after_its_route_is_picked_up() {
    let port = free_port();
    let pods = Pod::start_many(2, 1).await;
    let mut objects = base(port, "All");
    objects.push(http_route(
        "web",
        "early",
        json!({ "parentRefs": parent(), "rules": [{ "backendRefs": backend("late") }] }),
    ));
    let env = Env::start(objects, gateway_options()).await;
    env.route_is("web", "early", "ResolvedRefs", "False", "BackendNotFound").await;
    until_served(port, "l.test", "/", 500).await;
    for o in service("web", "late", 80, &[&pods[0]]) {
        env.fake.put(o);
    }
    let r = until_served(port, "l.test", "/", 200).await;
    assert_eq!(echoed(&r)["pod"], "127.0.0.2");
    env.route_is("web", "early", "ResolvedRefs", "True", "ResolvedRefs").await;
    env.stop().await;
}

/// The binary with the route front ends' flags (`--kubernetes --gateway-api --ingress
/// --listener-port-map …`) against the fake API, through a kubeconfig: a Gateway route and an
/// Ingress both served, statuses written by the binary; bad flags exit 64 with the reason.
#[tokio::test]
async fn the_binary_serves_gateway_routes_and_ingresses() {
    let (gw_port, http_port, https_port) = (free_port(), free_port(), free_port());
    let pods = Pod::start_many(2, 1).await;
    let fake = common::fake_kube::FakeKube::start().await;
    let mut objects = base(gw_port, "All");
    objects.extend(service("web", "echo", 80, &[&pods[0]]));
    objects.push(http_route(
        "web",
        "r",
        json!({ "parentRefs": parent(), "rules": [{ "backendRefs": backend("echo") }] }),
    ));
    objects.push(json!({ "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": { "name": "lwsws" }, "spec": { "controller": INGRESS_CONTROLLER } }));
    objects.push(json!({ "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": { "name": "i", "namespace": "web" },
        "spec": { "ingressClassName": "lwsws", "rules": [{ "host": "ing.test", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "echo", "port": { "number": 80 } } } }] } }] } }));
    for o in objects {
        fake.put(o);
    }
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    fake.kubeconfig(&kubeconfig);
    let conf = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lwsws"));
        cmd.args(["-c", conf.path().to_str().unwrap()])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("LWSWS_STATE_DIR", home.path())
            .env_remove("KUBERNETES_SERVICE_HOST");
        cmd
    };
    let bad = run(&["--gateway-api"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("need --kubernetes"));
    let bad = run(&["--kubernetes", "--ingress", "--listener-port-map", "80"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--listener-port-map"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let map = format!("80={http_port},443={https_port}");
    let child = common::Running(
        run(&[
            "--kubernetes",
            "--namespace",
            "lwsws",
            "--gateway-api",
            "--ingress",
            "--listener-port-map",
            &map,
            "--publish-address",
            "192.0.2.7",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let r = until_served(gw_port, "g.test", "/via-gateway", 200).await;
    assert_eq!(echoed(&r)["path"], "/via-gateway");
    let r = until_served(http_port, "ing.test", "/via-ingress", 200).await;
    assert_eq!(echoed(&r)["pod"], "127.0.0.2");
    let route_ok = common::try_eventually(|| {
        fake.get(V1, "HTTPRoute", "web", "r").is_some_and(|r| {
            condition(&r["status"]["parents"][0]["conditions"], "Accepted") == Some(("True".into(), "Accepted".into()))
        })
    })
    .await;
    assert!(route_ok, "{:?}", fake.get(V1, "HTTPRoute", "web", "r"));
    let ingress_ok = common::try_eventually(|| {
        fake.get("networking.k8s.io/v1", "Ingress", "web", "i")
            .is_some_and(|i| i["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.7")
    })
    .await;
    assert!(ingress_ok);
    let stopped = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(stopped.success());
}
