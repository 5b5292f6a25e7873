//! Gateway API objects → hostnames and mounts of the one model, with the status each object
//! earns. Pure: everything it reads is handed in, so that it can be tested without an API.
//!
//! Order of work: our GatewayClasses; their Gateways' listeners (protocol, hostname, TLS
//! certificates, allowed route kinds, conflicts); then every HTTPRoute, oldest first, attached
//! to the listeners its parentRefs name and allow it, its rules turned into mounts on each
//! hostname the route and the listener share. A route that cannot attach, or a rule that is
//! invalid, is refused alone and its status says why; the rest keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

use super::types::*;
use crate::k8s::routes::{HostRoutes, TlsFiles, valid_hostname};
use crate::k8s::secrets::TlsPair;
use crate::model::{
    HeaderEdits, HostMatch, Loc, Mount, Origin, PathRewrite, RouteMatch, RouteRedirect, RouteRule, ServiceRef,
    ServiceRoute, ValueMatch, WeightedBackend,
};

/// A Secret as a listener's certificate reference finds it.
pub enum SecretLookup {
    Missing,
    /// Not `kubernetes.io/tls`, or without a usable `tls.crt`/`tls.key`.
    Malformed,
    Pair(TlsPair),
}

pub struct GatewayInput<'a> {
    pub classes: &'a [Arc<GatewayClass>],
    pub gateways: &'a [Arc<Gateway>],
    pub routes: &'a [Arc<HTTPRoute>],
    pub grants: &'a [Arc<ReferenceGrant>],
    pub namespaces: &'a NamespaceLabels,
    /// `--gateway-controller-name`.
    pub controller_name: &'a str,
    pub secret: &'a dyn Fn(&str, &str) -> SecretLookup,
    pub service_exists: &'a dyn Fn(&str, &str) -> bool,
    pub secret_dir: &'a Path,
    /// Ports the files and `LwswsConfig`s already serve: a listener there cannot be bound.
    pub ports_in_use: &'a BTreeSet<u16>,
    /// What `status.addresses` reports (`--publish-address`, or the published Service's).
    pub addresses: &'a [String],
}

/// A status to write, whole, for one object.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusUpdate {
    Class {
        name: String,
        status: GatewayClassStatus,
    },
    Gateway {
        namespace: String,
        name: String,
        status: GatewayStatus,
    },
    /// Only this controller's entries of `status.parents`; the writer keeps the others'.
    Route {
        namespace: String,
        name: String,
        parents: Vec<RouteParentStatus>,
    },
}

#[derive(Default)]
pub struct GatewayBuild {
    pub routes: Vec<HostRoutes>,
    pub statuses: Vec<StatusUpdate>,
    pub services: BTreeSet<ServiceRef>,
}

/// The features `status.supportedFeatures` claims (sorted, as the spec asks).
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "HTTPRoute",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
];

/// One listener as this build sees it.
struct ListenerState<'g> {
    spec: &'g Listener,
    /// Accepted (protocol, hostname, port usable, no conflict).
    accepted: bool,
    /// Certificates and kinds resolved: routes attached here are served.
    programmed: bool,
    tls: Option<TlsFiles>,
    kinds: Vec<RouteGroupKind>,
    conditions: Vec<Condition>,
    attached: i32,
}

struct GatewayState<'g> {
    gw: &'g Gateway,
    namespace: String,
    listeners: Vec<ListenerState<'g>>,
}

pub fn translate(input: &GatewayInput) -> GatewayBuild {
    let mut out = GatewayBuild::default();
    let mut classes = BTreeSet::new();
    for c in input.classes.iter().filter(|c| c.spec.controller_name == input.controller_name) {
        let name = c.metadata.name.clone().unwrap_or_default();
        let generation = c.metadata.generation;
        let accepted = cond("Accepted", true, "Accepted", "handled by lwsws", generation);
        let supported_features = SUPPORTED_FEATURES.iter().map(|f| Feature { name: f.to_string() }).collect();
        out.statuses.push(StatusUpdate::Class {
            name: name.clone(),
            status: GatewayClassStatus { conditions: vec![accepted], supported_features },
        });
        classes.insert(name);
    }
    let mut gateways: Vec<&Arc<Gateway>> =
        input.gateways.iter().filter(|g| classes.contains(&g.spec.gateway_class_name)).collect();
    gateways.sort_by_key(|g| age_key(&g.metadata));
    let mut claimed: BTreeMap<u16, String> = BTreeMap::new();
    let mut states: Vec<GatewayState> = gateways.iter().map(|g| gateway_state(input, g, &mut claimed)).collect();
    let mut routes: Vec<&Arc<HTTPRoute>> = input.routes.iter().collect();
    routes.sort_by_key(|r| age_key(&r.metadata));
    for r in routes {
        route(input, r, &mut states, &mut out);
    }
    for s in states {
        // A programmed listener stays bound with no route attached (answering 404).
        for l in s.listeners.iter().filter(|l| l.programmed) {
            out.routes.push(HostRoutes {
                port: l.spec.port as u16,
                hostname: None,
                wildcard: HostMatch::Wildcard,
                tls: l.tls.clone(),
                mounts: Vec::new(),
                shared: true,
            });
        }
        out.statuses.push(gateway_status(input, &s));
    }
    out
}

/// Oldest first, then by namespace/name (Gateway API precedence steps 6 and 7).
fn age_key(m: &kube::api::ObjectMeta) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        m.creation_timestamp.as_ref().map(|t| t.0),
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn cond(type_: &str, ok: bool, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

fn gateway_state<'g>(input: &GatewayInput, gw: &'g Gateway, claimed: &mut BTreeMap<u16, String>) -> GatewayState<'g> {
    let namespace = gw.metadata.namespace.clone().unwrap_or_default();
    let generation = gw.metadata.generation;
    let mut listeners = Vec::new();
    // (port, hostname) pairs, and each port's protocol, within this Gateway.
    let mut seen: BTreeMap<(i32, String), usize> = BTreeMap::new();
    let mut protocols: BTreeMap<i32, &str> = BTreeMap::new();
    for l in &gw.spec.listeners {
        let mut accepted = (true, "Accepted", String::from("the listener is valid"));
        let mut resolved = (true, "ResolvedRefs", String::from("all references are resolved"));
        let mut conflicted: Option<(&str, String)> = None;
        let http = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
        if !http {
            accepted =
                (false, "UnsupportedProtocol", format!("protocol {} is not supported; HTTP and HTTPS are", l.protocol));
        } else if !(1..=65535).contains(&l.port) {
            accepted = (false, "UnsupportedValue", format!("port {} is not a port", l.port));
        } else if l.hostname.as_deref().is_some_and(|h| !valid_hostname(h)) {
            accepted = (false, "UnsupportedValue", "the hostname is not a DNS name or a *. wildcard".to_string());
        } else if input.ports_in_use.contains(&(l.port as u16)) {
            accepted = (false, "PortUnavailable", format!("port {} is served by the files or an LwswsConfig", l.port));
        }
        match protocols.get(&l.port) {
            Some(p) if *p != l.protocol => {
                conflicted = Some(("ProtocolConflict", format!("port {} is also used with protocol {p}", l.port)))
            }
            _ => {
                protocols.insert(l.port, &l.protocol);
            }
        }
        let key = (l.port, l.hostname.clone().unwrap_or_default().to_ascii_lowercase());
        if let Some(&other) = seen.get(&key) {
            conflicted = Some(("HostnameConflict", "another listener has the same port and hostname".to_string()));
            let earlier: &mut ListenerState = &mut listeners[other];
            if !earlier.conditions.iter().any(|c| c.type_ == "Conflicted") {
                earlier.accepted = false;
                earlier.programmed = false;
                earlier.conditions.push(cond(
                    "Conflicted",
                    true,
                    "HostnameConflict",
                    "another listener has the same port and hostname",
                    generation,
                ));
            }
        } else {
            seen.insert(key, listeners.len());
        }
        if conflicted.is_none() && accepted.0 && http {
            // Across Gateways: one protocol per port, first come.
            let gw_name = format!("{namespace}/{}", gw.metadata.name.as_deref().unwrap_or_default());
            match claimed.get(&(l.port as u16)) {
                Some(p) if !p.starts_with(&format!("{}:", l.protocol)) => {
                    conflicted = Some((
                        "ProtocolConflict",
                        format!(
                            "port {} is used by {} with another protocol",
                            l.port,
                            &p[p.find(':').unwrap_or(0) + 1..]
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    claimed.insert(l.port as u16, format!("{}:{gw_name}", l.protocol));
                }
            }
        }
        let kinds = route_kinds(l, &mut resolved);
        let tls = if l.protocol == "HTTPS" && accepted.0 {
            listener_tls(input, &namespace, l, &mut accepted, &mut resolved)
        } else {
            None
        };
        let mut conditions = Vec::new();
        let ok = accepted.0 && conflicted.is_none();
        conditions.push(cond("Accepted", accepted.0, accepted.1, &accepted.2, generation));
        conditions.push(cond("ResolvedRefs", resolved.0, resolved.1, &resolved.2, generation));
        if let Some((reason, msg)) = &conflicted {
            conditions.push(cond("Conflicted", true, reason, msg, generation));
        }
        let programmed = ok && resolved.0;
        let (reason, msg) =
            if programmed { ("Programmed", "serving") } else { ("Invalid", "not served: see the other conditions") };
        conditions.push(cond("Programmed", programmed, reason, msg, generation));
        listeners.push(ListenerState { spec: l, accepted: ok, programmed, tls, kinds, conditions, attached: 0 });
    }
    // A listener marked conflicted after its conditions were written says so in Programmed too.
    for l in &mut listeners {
        if !l.programmed
            && let Some(p) = l.conditions.iter_mut().find(|c| c.type_ == "Programmed" && c.status == "True")
        {
            *p = cond("Programmed", false, "Invalid", "not served: see the other conditions", generation);
        }
    }
    GatewayState { gw, namespace, listeners }
}

/// The route kinds a listener allows; an unknown one is left out and makes ResolvedRefs false.
fn route_kinds(l: &Listener, resolved: &mut (bool, &str, String)) -> Vec<RouteGroupKind> {
    let asked = l.allowed_routes.as_ref().map(|a| a.kinds.clone()).unwrap_or_default();
    let http_route = RouteGroupKind { group: Some(GROUP.to_string()), kind: "HTTPRoute".to_string() };
    if asked.is_empty() {
        return vec![http_route];
    }
    let mut kinds = Vec::new();
    for k in asked {
        if k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GROUP) == GROUP {
            kinds.push(http_route.clone());
        } else {
            *resolved = (false, "InvalidRouteKinds", format!("route kind {} is not supported", k.kind));
        }
    }
    kinds
}

/// The certificate of an HTTPS listener, written to files; `None` (with the conditions set)
/// when it cannot be used.
fn listener_tls(
    input: &GatewayInput,
    namespace: &str,
    l: &Listener,
    accepted: &mut (bool, &str, String),
    resolved: &mut (bool, &str, String),
) -> Option<TlsFiles> {
    let Some(tls) = &l.tls else {
        *accepted = (false, "UnsupportedValue", "an HTTPS listener needs tls.certificateRefs".to_string());
        return None;
    };
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        *accepted = (false, "UnsupportedValue", "only tls.mode Terminate is supported on HTTPS".to_string());
        return None;
    }
    let Some(r) = tls.certificate_refs.first() else {
        *resolved = (false, "InvalidCertificateRef", "no certificateRefs".to_string());
        return None;
    };
    if !r.group.as_deref().unwrap_or("").is_empty() || r.kind.as_deref().unwrap_or("Secret") != "Secret" {
        *resolved = (false, "InvalidCertificateRef", format!("{} is not a Secret", r.name));
        return None;
    }
    let secret_ns = r.namespace.clone().unwrap_or_else(|| namespace.to_string());
    if secret_ns != namespace && !granted(input.grants, "Gateway", namespace, &secret_ns, "", "Secret", &r.name) {
        *resolved = (
            false,
            "RefNotPermitted",
            format!("no ReferenceGrant in {secret_ns} lets Gateways of {namespace} use Secret {}", r.name),
        );
        return None;
    }
    let pair = match (input.secret)(&secret_ns, &r.name) {
        SecretLookup::Pair(p) => p,
        SecretLookup::Missing => {
            *resolved = (false, "InvalidCertificateRef", format!("Secret {secret_ns}/{} does not exist", r.name));
            return None;
        }
        SecretLookup::Malformed => {
            *resolved = (
                false,
                "InvalidCertificateRef",
                format!("Secret {secret_ns}/{} is not a usable kubernetes.io/tls Secret", r.name),
            );
            return None;
        }
    };
    if let Err(e) = crate::tls::check_pem_pair(&pair.cert, &pair.key) {
        *resolved = (false, "InvalidCertificateRef", format!("Secret {secret_ns}/{}: {e}", r.name));
        return None;
    }
    match crate::k8s::secrets::write_pair(input.secret_dir, &secret_ns, &r.name, &pair) {
        Ok((cert, key)) => Some(TlsFiles { cert, key }),
        Err(e) => {
            *resolved = (false, "InvalidCertificateRef", format!("cannot write the certificate's files: {e}"));
            None
        }
    }
}

/// A ReferenceGrant in `to_ns` lets `from_kind`s of `from_ns` refer to `to_kind` `to_name`.
fn granted(
    grants: &[Arc<ReferenceGrant>],
    from_kind: &str,
    from_ns: &str,
    to_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_name: &str,
) -> bool {
    grants.iter().filter(|g| g.metadata.namespace.as_deref() == Some(to_ns)).any(|g| {
        g.spec.from.iter().any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
            && g.spec
                .to
                .iter()
                .any(|t| t.group == to_group && t.kind == to_kind && t.name.as_deref().is_none_or(|n| n == to_name))
    })
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel.match_labels.as_ref().is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = sel.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
    });
    by_labels && by_expressions
}

/// Whether listener `l` of a Gateway in `gw_ns` lets a route in `route_ns` attach.
fn allows(input: &GatewayInput, l: &ListenerState, gw_ns: &str, route_ns: &str) -> bool {
    let ns = l.spec.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
    let namespace_ok = match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let labels = input.namespaces.get(route_ns).cloned().unwrap_or_default();
            ns.and_then(|n| n.selector.as_ref()).is_some_and(|s| selector_matches(s, &labels))
        }
        _ => gw_ns == route_ns,
    };
    namespace_ok && l.kinds.iter().any(|k| k.kind == "HTTPRoute")
}

/// The names a route serves on a listener: each of the route's hostnames that overlaps the
/// listener's, narrowed to the more specific of the two; with the route's own hostname (for
/// precedence). `None` in the list: every name.
fn hostnames_on(listener: Option<&str>, route: &[String]) -> Vec<(Option<String>, Option<String>)> {
    if route.is_empty() {
        return vec![(listener.map(str::to_string), None)];
    }
    route.iter().filter_map(|r| intersect(listener, r).map(|h| (Some(h), Some(r.clone())))).collect()
}

fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(l) = listener else { return Some(route.to_string()) };
    let (l, r) = (l.to_ascii_lowercase(), route.to_ascii_lowercase());
    let covers = |wild: &str, name: &str| {
        let suffix = &wild[1..]; // ".example.com"
        name.ends_with(suffix) && name.len() > suffix.len()
    };
    match (l.starts_with("*."), r.starts_with("*.")) {
        (false, false) => (l == r).then_some(r),
        (true, false) => covers(&l, &r).then_some(r),
        (false, true) => covers(&r, &l).then_some(l),
        (true, true) if l == r => Some(r),
        (true, true) if covers(&l, &r[2..]) => Some(r),
        (true, true) if covers(&r, &l[2..]) => Some(l),
        _ => None,
    }
}

/// How a route's own hostname ranks (Gateway API: the longer non-wildcard name, then the
/// longer name).
fn host_rank(route_host: Option<&str>) -> (usize, usize) {
    match route_host {
        None => (0, 0),
        Some(h) if h.starts_with("*.") => (0, h.len()),
        Some(h) => (h.len(), h.len()),
    }
}

/// Why one rule cannot be served as written.
struct RuleProblem {
    reason: &'static str,
    message: String,
}

/// What a rule's backends resolved to.
struct Backends {
    list: Vec<WeightedBackend>,
    /// The first unresolved reference's reason and message.
    problem: Option<(&'static str, String)>,
}

fn route(input: &GatewayInput, r: &HTTPRoute, states: &mut [GatewayState], out: &mut GatewayBuild) {
    let ns = r.metadata.namespace.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let generation = r.metadata.generation;
    let source = format!("httproute {ns}/{name}");
    let hostnames_ok = r.spec.hostnames.iter().all(|h| valid_hostname(h));
    // The rules once, as mounts for a listener port; invalid rules are left out.
    let mut problems: Vec<RuleProblem> = Vec::new();
    let mut backends_problem = None;
    let mut compiled = Vec::new();
    for (i, rule) in r.spec.rules.iter().enumerate() {
        let backends = backends(input, &ns, rule);
        if backends_problem.is_none() {
            backends_problem = backends.problem.clone();
        }
        match check_rule(rule) {
            Ok(()) => compiled.push((i, rule, backends)),
            Err(p) => problems.push(p),
        }
    }
    if r.spec.rules.is_empty() {
        // No rules: one PathPrefix `/` rule to no backend.
        compiled.push((0, &DEFAULT_RULE, Backends { list: Vec::new(), problem: None }));
    }
    let mut parents = Vec::new();
    let mut attached_any = false;
    for p in &r.spec.parent_refs {
        if p.group.as_deref().unwrap_or(GROUP) != GROUP || p.kind.as_deref().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let gw_ns = p.namespace.clone().unwrap_or_else(|| ns.clone());
        let Some(state) =
            states.iter_mut().find(|s| s.namespace == gw_ns && s.gw.metadata.name.as_deref() == Some(p.name.as_str()))
        else {
            // Not one of our Gateways: another controller's to report on.
            continue;
        };
        let named: Vec<usize> = (0..state.listeners.len())
            .filter(|&i| {
                let l = state.listeners[i].spec;
                p.section_name.as_ref().is_none_or(|s| *s == l.name) && p.port.is_none_or(|port| port == l.port)
            })
            .collect();
        let (accepted, reason, message): (bool, &str, String) = if named.is_empty() {
            (false, "NoMatchingParent", "no listener matches the sectionName and port".into())
        } else if !hostnames_ok {
            (false, "UnsupportedValue", "a hostname is not a DNS name or a *. wildcard".into())
        } else {
            let allowed: Vec<usize> = named
                .iter()
                .copied()
                .filter(|&i| state.listeners[i].accepted && allows(input, &state.listeners[i], &gw_ns, &ns))
                .collect();
            let with_hosts: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|&i| !hostnames_on(state.listeners[i].spec.hostname.as_deref(), &r.spec.hostnames).is_empty())
                .collect();
            if allowed.is_empty() {
                (false, "NotAllowedByListeners", "no listener it names allows this route's namespace and kind".into())
            } else if with_hosts.is_empty() {
                (false, "NoMatchingListenerHostname", "no hostname of the route matches a listener's".into())
            } else if compiled.is_empty() {
                let p = &problems[0];
                (false, p.reason, p.message.clone())
            } else {
                for &i in &with_hosts {
                    let l = &mut state.listeners[i];
                    l.attached += 1;
                    if !l.programmed {
                        continue;
                    }
                    let port = l.spec.port as u16;
                    for (host, route_host) in hostnames_on(l.spec.hostname.as_deref(), &r.spec.hostnames) {
                        let mounts = mounts_for(&compiled, &source, port, host_rank(route_host.as_deref()));
                        out.routes.push(HostRoutes {
                            port,
                            hostname: host,
                            wildcard: HostMatch::Wildcard,
                            tls: l.tls.clone(),
                            mounts,
                            shared: true,
                        });
                    }
                }
                attached_any = true;
                (true, "Accepted", "attached".into())
            }
        };
        let mut conditions = vec![cond("Accepted", accepted, reason, &message, generation)];
        match &backends_problem {
            Some((reason, msg)) => conditions.push(cond("ResolvedRefs", false, reason, msg, generation)),
            None => {
                conditions.push(cond("ResolvedRefs", true, "ResolvedRefs", "all references are resolved", generation))
            }
        }
        if accepted && !problems.is_empty() {
            let msg =
                format!("Dropped Rule: {}", problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "));
            conditions.push(cond("PartiallyInvalid", true, "UnsupportedValue", &msg, generation));
        }
        parents.push(RouteParentStatus {
            parent_ref: p.clone(),
            controller_name: input.controller_name.to_string(),
            conditions,
        });
    }
    if attached_any {
        for (_, _, b) in &compiled {
            out.services.extend(b.list.iter().filter_map(|w| w.service.clone()));
        }
    }
    if !parents.is_empty()
        || r.status.as_ref().is_some_and(|s| s.parents.iter().any(|p| p.controller_name == input.controller_name))
    {
        out.statuses.push(StatusUpdate::Route { namespace: ns, name, parents });
    }
}

static DEFAULT_RULE: std::sync::LazyLock<HTTPRouteRule> = std::sync::LazyLock::new(HTTPRouteRule::default);

/// The checks the API server's validation would make, and the combinations this server
/// cannot serve.
fn check_rule(rule: &HTTPRouteRule) -> Result<(), RuleProblem> {
    let bad = |reason: &'static str, message: String| Err(RuleProblem { reason, message });
    for m in &rule.matches {
        if let Some(p) = &m.path {
            let value = p.value.as_deref().unwrap_or("/");
            match p.type_.as_deref().unwrap_or("PathPrefix") {
                "Exact" | "PathPrefix" => {
                    let forbidden = ["//", "/./", "/../", "%2f", "%2F", "#"];
                    if !value.starts_with('/')
                        || forbidden.iter().any(|f| value.contains(f))
                        || value.ends_with("/.")
                        || value.ends_with("/..")
                    {
                        return bad("UnsupportedValue", format!("path {value} is not an absolute, normalised path"));
                    }
                }
                "RegularExpression" => {
                    if regex::Regex::new(value).is_err() {
                        return bad("UnsupportedValue", format!("path {value} is not a regular expression"));
                    }
                }
                other => return bad("UnsupportedValue", format!("path match type {other} is not supported")),
            }
        }
        for v in m.headers.iter().chain(&m.query_params) {
            match v.type_.as_deref().unwrap_or("Exact") {
                "Exact" => {}
                "RegularExpression" if regex::Regex::new(&v.value).is_ok() => {}
                "RegularExpression" => {
                    return bad("UnsupportedValue", format!("{} is not a regular expression", v.value));
                }
                other => return bad("UnsupportedValue", format!("match type {other} is not supported")),
            }
        }
        if let Some(method) = &m.method
            && !["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
                .contains(&method.as_str())
        {
            return bad("UnsupportedValue", format!("method {method} is not supported"));
        }
    }
    let count = |t: &str| rule.filters.iter().filter(|f| f.type_ == t).count();
    for f in &rule.filters {
        match f.type_.as_str() {
            "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestRedirect" | "URLRewrite" => {}
            other => return bad("UnsupportedValue", format!("filter {other} is not supported")),
        }
    }
    if count("RequestRedirect") > 1
        || count("URLRewrite") > 1
        || count("RequestHeaderModifier") > 1
        || count("ResponseHeaderModifier") > 1
    {
        return bad("IncompatibleFilters", "a filter type appears more than once".into());
    }
    if count("RequestRedirect") == 1 && (count("URLRewrite") == 1 || !rule.backend_refs.is_empty()) {
        return bad("IncompatibleFilters", "RequestRedirect cannot be combined with URLRewrite or backendRefs".into());
    }
    let prefix_paths = rule
        .matches
        .iter()
        .filter(|m| m.path.as_ref().is_none_or(|p| p.type_.as_deref().unwrap_or("PathPrefix") == "PathPrefix"))
        .count();
    let replaces_prefix = rule.filters.iter().any(|f| {
        let path = f
            .url_rewrite
            .as_ref()
            .and_then(|u| u.path.as_ref())
            .or(f.request_redirect.as_ref().and_then(|r| r.path.as_ref()));
        path.is_some_and(|p| p.type_ == "ReplacePrefixMatch")
    });
    if replaces_prefix && (prefix_paths != 1 || rule.matches.len() > 1) && !(rule.matches.is_empty()) {
        return bad("IncompatibleFilters", "ReplacePrefixMatch needs exactly one PathPrefix match".into());
    }
    for f in &rule.filters {
        let hostname = f.request_redirect.as_ref().and_then(|r| r.hostname.as_deref());
        let hostname = hostname.or(f.url_rewrite.as_ref().and_then(|u| u.hostname.as_deref()));
        if hostname.is_some_and(|h| h.starts_with("*.") || !valid_hostname(h)) {
            return bad("UnsupportedValue", "a filter's hostname is not a DNS name".into());
        }
        let path = f.request_redirect.as_ref().and_then(|r| r.path.as_ref());
        if let Some(p) = path.or(f.url_rewrite.as_ref().and_then(|u| u.path.as_ref())) {
            let value = match p.type_.as_str() {
                "ReplaceFullPath" => p.replace_full_path.as_deref().unwrap_or("/"),
                "ReplacePrefixMatch" => p.replace_prefix_match.as_deref().unwrap_or("/"),
                other => return bad("UnsupportedValue", format!("path modifier {other} is not supported")),
            };
            let path_text = value.is_empty() || value.starts_with('/');
            if !path_text || value.bytes().any(|b| b.is_ascii_control() || b == b'?' || b == b'#') {
                return bad("UnsupportedValue", format!("{value:?} is not a path"));
            }
        }
        if let Some(r) = &f.request_redirect {
            if r.status_code.is_some_and(|c| ![301, 302, 303, 307, 308].contains(&c)) {
                return bad("UnsupportedValue", "redirect statusCode must be 301, 302, 303, 307 or 308".into());
            }
            if r.port.is_some_and(|p| !(1..=65535).contains(&p)) {
                return bad("UnsupportedValue", "redirect port must be a port".into());
            }
            if r.scheme.as_deref().is_some_and(|s| s != "http" && s != "https") {
                return bad("UnsupportedValue", "redirect scheme must be http or https".into());
            }
        }
        for (name, modifier) in [
            ("requestHeaderModifier", &f.request_header_modifier),
            ("responseHeaderModifier", &f.response_header_modifier),
        ] {
            if let Some(m) = modifier {
                let names =
                    m.set.iter().chain(&m.add).map(|p| p.name.as_str()).chain(m.remove.iter().map(String::as_str));
                for n in names {
                    if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                        return bad("UnsupportedValue", format!("{name}: \"{n}\" is not a header name"));
                    }
                }
                for p in m.set.iter().chain(&m.add) {
                    if http::HeaderValue::from_str(&p.value).is_err() {
                        return bad(
                            "UnsupportedValue",
                            format!("{name}: the value of \"{}\" is not header text", p.name),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn backends(input: &GatewayInput, ns: &str, rule: &HTTPRouteRule) -> Backends {
    let mut out = Backends { list: Vec::new(), problem: None };
    for b in &rule.backend_refs {
        let weight = b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32;
        let target_ns = b.namespace.clone().unwrap_or_else(|| ns.to_string());
        let problem: Option<(&'static str, String)> =
            if !b.group.as_deref().unwrap_or("").is_empty() || b.kind.as_deref().unwrap_or("Service") != "Service" {
                Some((
                    "InvalidKind",
                    format!("backend {} is a {}, not a Service", b.name, b.kind.as_deref().unwrap_or("?")),
                ))
            } else if target_ns != ns && !granted(input.grants, "HTTPRoute", ns, &target_ns, "", "Service", &b.name) {
                Some((
                    "RefNotPermitted",
                    format!("no ReferenceGrant in {target_ns} lets HTTPRoutes of {ns} use Service {}", b.name),
                ))
            } else if !(input.service_exists)(&target_ns, &b.name) {
                Some(("BackendNotFound", format!("Service {target_ns}/{} does not exist", b.name)))
            } else if !b.port.is_some_and(|p| (1..=65535).contains(&p)) {
                Some(("UnsupportedValue", format!("backend {} needs the Service's port", b.name)))
            } else if !b.filters.is_empty() {
                Some(("UnsupportedValue", format!("backend {}: per-backend filters are not supported", b.name)))
            } else {
                None
            };
        let service = problem.is_none().then(|| ServiceRef {
            namespace: target_ns,
            name: b.name.clone(),
            port: b.port.unwrap_or(0) as u16,
        });
        if out.problem.is_none() {
            out.problem = problem;
        }
        out.list.push(WeightedBackend { weight, service });
    }
    out
}

/// The mounts of a route's rules for a listener on `port`, each match one mount.
fn mounts_for(
    compiled: &[(usize, &HTTPRouteRule, Backends)],
    source: &str,
    port: u16,
    host_rank: (usize, usize),
) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for (i, rule, backends) in compiled {
        let loc = Loc { file: format!("{source} rules[{i}]").into(), line: 0, col: 0 };
        let filter = |t: &str| rule.filters.iter().find(|f| f.type_ == t);
        let edits = |m: Option<&HeaderModifier>| {
            m.map(|m| HeaderEdits {
                set: m.set.iter().map(|p| (p.name.to_ascii_lowercase(), p.value.clone())).collect(),
                add: m.add.iter().map(|p| (p.name.to_ascii_lowercase(), p.value.clone())).collect(),
                remove: m.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
            })
            .unwrap_or_default()
        };
        let request_headers = edits(filter("RequestHeaderModifier").and_then(|f| f.request_header_modifier.as_ref()));
        let response_headers =
            edits(filter("ResponseHeaderModifier").and_then(|f| f.response_header_modifier.as_ref()));
        let default_match = [HTTPRouteMatch::default()];
        let matches = if rule.matches.is_empty() { &default_match[..] } else { &rule.matches[..] };
        for m in matches {
            let path_type = m.path.as_ref().and_then(|p| p.type_.clone()).unwrap_or_else(|| "PathPrefix".into());
            let value = m.path.as_ref().and_then(|p| p.value.clone()).unwrap_or_else(|| "/".into());
            let (mountpoint, exact, regex) = match path_type.as_str() {
                "Exact" => (value.clone(), true, None),
                "RegularExpression" => ("/".to_string(), false, Some(value.clone())),
                _ => {
                    let trimmed = value.trim_end_matches('/');
                    (if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }, false, None)
                }
            };
            let rewrite_path = |p: Option<&PathModifier>| match p {
                Some(p) if p.type_ == "ReplaceFullPath" => {
                    PathRewrite::Full(p.replace_full_path.clone().unwrap_or_else(|| "/".into()))
                }
                Some(p) if p.type_ == "ReplacePrefixMatch" => {
                    PathRewrite::Prefix(p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()))
                }
                _ => PathRewrite::Keep,
            };
            let origin = match filter("RequestRedirect").and_then(|f| f.request_redirect.as_ref()) {
                Some(r) => Origin::RouteRedirect(RouteRedirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port.map(|p| p as u16),
                    path: rewrite_path(r.path.as_ref()),
                    status: r.status_code.unwrap_or(302) as u16,
                    listener_port: port,
                }),
                None => {
                    let rewrite = filter("URLRewrite").and_then(|f| f.url_rewrite.as_ref());
                    Origin::Service(ServiceRoute {
                        backends: backends.list.clone(),
                        host_rewrite: rewrite.and_then(|u| u.hostname.clone()),
                        path: rewrite_path(rewrite.and_then(|u| u.path.as_ref())),
                    })
                }
            };
            let value_match = |v: &ValueMatchSpec, lower: bool| ValueMatch {
                name: if lower { v.name.to_ascii_lowercase() } else { v.name.clone() },
                value: v.value.clone(),
                regex: v.type_.as_deref() == Some("RegularExpression"),
            };
            // Only the first of a repeated header name counts.
            let mut header_names = BTreeSet::new();
            let headers = m
                .headers
                .iter()
                .filter(|h| header_names.insert(h.name.to_ascii_lowercase()))
                .map(|h| value_match(h, true))
                .collect();
            let mut query_names = BTreeSet::new();
            let query = m
                .query_params
                .iter()
                .filter(|q| query_names.insert(q.name.clone()))
                .map(|q| value_match(q, false))
                .collect();
            let mut mount = Mount::with_defaults(loc.clone(), &mountpoint, origin);
            mount.exact_match = exact;
            mount.rewrite_links = false;
            mount.route = Some(Box::new(RouteRule {
                matches: RouteMatch { path_regex: regex, method: m.method.clone(), headers, query },
                request_headers: request_headers.clone(),
                response_headers: response_headers.clone(),
                source: format!("{source} rules[{i}]"),
                host_rank,
            }));
            mounts.push(mount);
        }
    }
    mounts
}

fn gateway_status(input: &GatewayInput, s: &GatewayState) -> StatusUpdate {
    let generation = s.gw.metadata.generation;
    let any_valid = s.listeners.iter().any(|l| l.accepted);
    let all_valid = s.listeners.iter().all(|l| l.accepted && l.programmed);
    let programmed = s.listeners.iter().any(|l| l.programmed);
    let accepted = match (any_valid, all_valid) {
        (_, true) => cond("Accepted", true, "Accepted", "the Gateway is valid", generation),
        (true, false) => cond("Accepted", true, "ListenersNotValid", "some listeners are not valid", generation),
        (false, _) => cond("Accepted", false, "ListenersNotValid", "no listener is valid", generation),
    };
    let programmed = if programmed {
        cond("Programmed", true, "Programmed", "serving", generation)
    } else {
        cond("Programmed", false, "Invalid", "no listener can be served", generation)
    };
    let addresses = input
        .addresses
        .iter()
        .map(|a| GatewayAddress {
            type_: if a.parse::<std::net::IpAddr>().is_ok() { "IPAddress" } else { "Hostname" }.to_string(),
            value: a.clone(),
        })
        .collect();
    let listeners = s
        .listeners
        .iter()
        .map(|l| ListenerStatus {
            name: l.spec.name.clone(),
            supported_kinds: l.kinds.clone(),
            attached_routes: l.attached,
            conditions: l.conditions.clone(),
        })
        .collect();
    StatusUpdate::Gateway {
        namespace: s.namespace.clone(),
        name: s.gw.metadata.name.clone().unwrap_or_default(),
        status: GatewayStatus { addresses, conditions: vec![accepted, programmed], listeners },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn arc<T: serde::de::DeserializeOwned>(v: Value) -> Option<Arc<T>> {
        serde_json::from_value(v).ok().map(Arc::new)
    }

    fn route_doc() -> Value {
        json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "r", "namespace": "web", "generation": 1 },
            "spec": { "parentRefs": [{ "name": "gw", "namespace": "web", "sectionName": "http", "port": 80 }],
                "hostnames": ["a.test", "*.b.test"],
                "rules": [{ "matches": [{ "path": { "type": "PathPrefix", "value": "/x" },
                        "headers": [{ "name": "h", "value": "v", "type": "RegularExpression" }],
                        "queryParams": [{ "name": "q", "value": "1" }], "method": "GET" }],
                    "filters": [{ "type": "URLRewrite", "urlRewrite": { "hostname": "h.test",
                        "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/y" } } },
                        { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [{ "name": "a", "value": "b" }] } }],
                    "backendRefs": [{ "name": "svc", "port": 80, "weight": 3 }] },
                  { "filters": [{ "type": "RequestRedirect", "requestRedirect": { "scheme": "https", "port": 8443,
                        "statusCode": 301, "path": { "type": "ReplaceFullPath", "replaceFullPath": "/z" } } }] }] } })
    }

    /// Every string, number and list of a route replaced, one at a time, by hostile values: the
    /// translation never panics, and what it makes always compiles or is refused with an error
    /// (an application team's route must never take the controller down).
    #[test]
    fn hostile_routes_never_panic_and_always_compile_or_are_refused() {
        let hostile: Vec<Value> = vec![
            json!(""),
            json!("/"),
            json!("//"),
            json!("*"),
            json!("*."),
            json!("(("),
            json!("a\r\nb: c"),
            json!("\u{0}"),
            json!("é.test"),
            json!("x".repeat(5000)),
            json!(-1),
            json!(0),
            json!(65536),
            json!(i64::MAX),
            json!(null),
            json!([]),
            json!({}),
            json!(true),
            json!("RegularExpression"),
            json!("ReplacePrefixMatch"),
            json!("HTTPS"),
            json!("Selector"),
            json!("Passthrough"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut tried = 0;
        // The route's fields, then the Gateway's, one at a time.
        for (which, base) in [("route", route_doc()), ("gateway", gateway_doc())] {
            let mut paths = Vec::new();
            collect_paths(&base, &mut Vec::new(), &mut paths);
            for path in paths.iter().filter(|p| p.first().map(String::as_str) == Some("spec")) {
                for value in &hostile {
                    let mut doc = base.clone();
                    *pointer(&mut doc, path) = value.clone();
                    let (route, gateway) = if which == "route" { (doc, gateway_doc()) } else { (route_doc(), doc) };
                    let (Some(route), Some(gateway)) = (arc::<HTTPRoute>(route), arc::<Gateway>(gateway)) else {
                        continue;
                    };
                    tried += 1;
                    translate_and_compile(&route, &gateway, dir.path())
                        .unwrap_or_else(|e| panic!("{which} {path:?} = {value}: accepted but does not compile: {e}"));
                }
            }
        }
        assert!(tried > 300, "{tried} tried");
    }

    fn gateway_doc() -> Value {
        json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": "gw", "namespace": "web", "generation": 1 },
            "spec": { "gatewayClassName": "c", "listeners": [
                { "name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.test",
                  "allowedRoutes": { "namespaces": { "from": "All" }, "kinds": [{ "kind": "HTTPRoute" }] } },
                { "name": "https", "port": 443, "protocol": "HTTPS",
                  "tls": { "mode": "Terminate", "certificateRefs": [{ "name": "cert" }] } }] } })
    }

    fn translate_and_compile(route: &Arc<HTTPRoute>, gateway: &Arc<Gateway>, dir: &Path) -> Result<(), String> {
        let class: Arc<GatewayClass> =
            arc(json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": { "name": "c" }, "spec": { "controllerName": "me" } }))
            .unwrap();
        let input = GatewayInput {
            classes: std::slice::from_ref(&class),
            gateways: std::slice::from_ref(gateway),
            routes: std::slice::from_ref(route),
            grants: &[],
            namespaces: &NamespaceLabels::new(),
            controller_name: "me",
            secret: &|_, _| SecretLookup::Missing,
            service_exists: &|_, _| true,
            secret_dir: dir,
            ports_in_use: &BTreeSet::new(),
            addresses: &[],
        };
        let out = translate(&input);
        let vhosts = crate::k8s::routes::assemble(out.routes, &Default::default(), "test");
        let cfg = crate::model::Config { vhosts, ..Default::default() };
        let (slots, services) = (crate::tls::CertSlots::default(), crate::upstream::Services::default());
        let mut warnings = Vec::new();
        crate::model::validate(&cfg, &mut warnings).map_err(|e| e.to_string())?;
        crate::table::compile(&cfg, crate::table::CompileMode::Check, &slots, &services, &mut warnings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn collect_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    at.push(k.clone());
                    collect_paths(v, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    at.push(i.to_string());
                    collect_paths(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }

    fn pointer<'v>(v: &'v mut Value, path: &[String]) -> &'v mut Value {
        path.iter().fold(v, |v, k| match v {
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            v => &mut v[k.as_str()],
        })
    }
}
