//! Ingress (`networking.k8s.io/v1`) objects → hostnames and the mounts that serve them
//! (`routes::HostRoutes`), with a verdict per Ingress. A translation with no cluster behind it:
//! what it reads of Services and Secrets comes through the lookups it is handed, and the one
//! thing it does besides computing is write TLS Secrets' files (`crate::k8s::secrets::write_pair`).
//!
//! What it decides, where Ingress leaves the choice to the controller:
//!
//! - **Ours**: `spec.ingressClassName` is `--ingress-class` and that IngressClass's
//!   `spec.controller` is `--ingress-controller-name`; or no `ingressClassName` and the
//!   deprecated annotation `kubernetes.io/ingress.class` is `--ingress-class`; or no class at all
//!   and our IngressClass is the default (`ingressclass.kubernetes.io/is-default-class: "true"`).
//!   Any other Ingress is skipped without a verdict: it is not ours to report on.
//! - **Order**: oldest first (`creationTimestamp`, one without it counting as oldest), then
//!   namespace/name. Where two Ingresses (or two paths of one) ask for the same thing, the
//!   earlier wins and the later is told, naming the winner.
//! - **Ports**: every rule is served on port 80. A host listed in some `spec.tls[].hosts` of one
//!   of our Ingresses (exactly, or under a `*.parent` entry one label up) is also served on
//!   443 with that entry's Secret, whichever Ingress the rule comes from; so is every listed host
//!   (a vhost for its certificate even without rules). A `tls` entry without hosts is the
//!   catch-all's certificate: hostless rules and the catch-all's default backend are then
//!   served on 443 too, and it is the certificate for SNI names no vhost takes. A host whose
//!   Secret is missing or does not hold a usable pair is served on 80 only, and the verdict
//!   says so. One host named with two different Secrets: the first keeps its certificate.
//! - **Paths**: `Exact` is an exact-match mount; `Prefix` and `ImplementationSpecific` are
//!   lwsws prefix mounts (whole segments; a trailing `/` is dropped from the mountpoint, so
//!   `/foo` and `/foo/` are the same path). Paths are percent-decoded as request paths are and
//!   must then be normalised (no `//`, `.` or `..` segments, no `\`, `?`, `#` or control
//!   characters); an `ImplementationSpecific` path left out is `/`. The table's own rule gives
//!   Ingress precedence: longest mountpoint, then an exact mount over a prefix one.
//!   `Prefix` and `ImplementationSpecific` with the same path are the same mount and conflict.
//! - **Backends**: a Service port by number, or by name through the Service (a missing Service
//!   or port name, a `resource` backend: a backend answered 500, and a problem).
//! - **`defaultBackend`**: a `/` prefix mount, after every rule's mount, for the catch-all and
//!   for each host the Ingress's own rules name (requests no rule takes: Ingress's "unmatched
//!   requests"), skipped where a `/` prefix rule already takes everything. The catch-all (and a
//!   host) takes the oldest Ingress's; the others are told theirs is not used there.
//! - **Annotations** (`lwsws.io/`, only what Ingress cannot say): `ssl-redirect: "true"` makes
//!   the Ingress's mounts on port 80 for a name also served on 443 a 308 to https (same host
//!   and path); `rewrite-target: /new` replaces the matched prefix of the Ingress's rules' paths
//!   (not its default backend's). Any other `lwsws.io/` annotation, a bad value, or a config
//!   snippet refuses the whole Ingress: serving it without what it asked for could be worse
//!   than not serving it.
//! - Everything here reaches Services or redirects: no files, CGI, callbacks or raw protocols.
//!   Mounts keep `route: None` (lwsws's longest-prefix rule ranks them) and do not rewrite links.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::routes::{HostRoutes, TlsFiles, valid_hostname};
use super::secrets::{TlsPair, write_pair};
use crate::model::{
    HostMatch, Loc, Mount, Origin, PathRewrite, RouteRedirect, ServiceRef, ServiceRoute, WeightedBackend,
};

/// The port every Ingress rule is served on.
pub const HTTP_PORT: u16 = 80;
/// The port hosts with a certificate (`spec.tls`) are also served on.
pub const HTTPS_PORT: u16 = 443;
/// The deprecated class annotation, still honoured when `spec.ingressClassName` is unset.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// An IngressClass annotation: Ingresses without a class belong to this one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// `"true"`: port 80 answers a 308 to https for the Ingress's names that have TLS.
pub const SSL_REDIRECT: &str = "lwsws.io/ssl-redirect";
/// A path: the prefix a rule matched is replaced by it upstream.
pub const REWRITE_TARGET: &str = "lwsws.io/rewrite-target";
const OWN_ANNOTATIONS: &str = "lwsws.io/";

/// What a translation reads.
pub struct IngressInput<'a> {
    pub ingresses: &'a [Arc<Ingress>],
    pub classes: &'a [Arc<IngressClass>],
    /// `--ingress-class`: the IngressClass name this controller serves.
    pub class_name: &'a str,
    /// `--ingress-controller-name`: the IngressClass `spec.controller` that is ours.
    pub controller_name: &'a str,
    /// A Service by namespace and name (to turn a backend's `port.name` into the Service port).
    pub service: &'a dyn Fn(&str, &str) -> Option<Arc<Service>>,
    /// A `kubernetes.io/tls` Secret's pair by namespace and name.
    pub secret: &'a dyn Fn(&str, &str) -> Option<TlsPair>,
    /// Where Secrets' files are written (`crate::k8s::secrets::write_pair`).
    pub secret_dir: &'a Path,
}

/// What became of one of our Ingresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressVerdict {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// `field: problem` for each part of it that does not serve as written (a path refused or
    /// taken by an older Ingress, a backend answered 500, a host without its certificate…).
    /// Empty: all of it serves.
    pub problems: Vec<String>,
    /// At least one of its mounts serves (in part, when `problems` is not empty).
    pub served: bool,
}

/// The translation's output.
#[derive(Debug, Clone)]
pub struct IngressBuild {
    /// For `routes::assemble`: on port 80 and 443, the catch-all (`hostname: None`) and each
    /// host, their mounts in precedence order for ties (default backends last).
    pub routes: Vec<HostRoutes>,
    /// One per Ingress of ours, oldest first.
    pub verdicts: Vec<IngressVerdict>,
    /// Every Service port a mount sends to, sorted, each once (whose endpoints to watch).
    pub services: Vec<ServiceRef>,
}

/// Whether the controller serves `ing` (see the module's doc).
pub fn is_ours(ing: &Ingress, classes: &[Arc<IngressClass>], class_name: &str, controller_name: &str) -> bool {
    let our_class = classes.iter().find(|c| {
        c.metadata.name.as_deref() == Some(class_name)
            && c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller_name)
    });
    let spec_class = ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).filter(|c| !c.is_empty());
    let annotated = annotation(&ing.metadata, CLASS_ANNOTATION).filter(|c| !c.is_empty());
    match (spec_class, annotated) {
        (Some(c), _) => c == class_name && our_class.is_some(),
        (None, Some(a)) => a == class_name,
        (None, None) => our_class.is_some_and(|c| annotation(&c.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true")),
    }
}

fn annotation<'m>(meta: &'m k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Our Ingresses → hostnames and mounts, with a verdict for each.
pub fn translate(input: &IngressInput) -> IngressBuild {
    let mut ours: Vec<Ours> = input
        .ingresses
        .iter()
        .filter(|i| is_ours(i, input.classes, input.class_name, input.controller_name))
        .map(|i| Ours::new(i))
        .collect();
    ours.sort_by(|a, b| {
        (&a.ing.metadata.creation_timestamp, &a.namespace, &a.name).cmp(&(
            &b.ing.metadata.creation_timestamp,
            &b.namespace,
            &b.name,
        ))
    });
    let certs = certificates(input, &mut ours);
    let mut out = Output::default();
    // On 443 the catch-all's certificate comes first: `assemble` gives it the port's first.
    for (host, cert) in &certs.0 {
        out.entry(HTTPS_PORT, host.as_deref(), Some(&cert.files));
    }
    let mut claimed: HashMap<(Option<String>, String, bool), String> = HashMap::new();
    for o in ours.iter_mut().filter(|o| o.options.is_some()) {
        rules(input, o, &certs, &mut claimed, &mut out);
    }
    let mut fallbacks: HashMap<Option<String>, String> = HashMap::new();
    for o in ours.iter_mut().filter(|o| o.options.is_some()) {
        default_backend(input, o, &certs, &claimed, &mut fallbacks, &mut out);
    }
    let verdicts = ours
        .into_iter()
        .map(|mut o| {
            if !o.served && o.problems.is_empty() {
                o.problems.push("spec: nothing to serve (no rule with a path and no defaultBackend)".into());
            }
            IngressVerdict {
                namespace: o.namespace,
                name: o.name,
                generation: o.ing.metadata.generation,
                problems: o.problems,
                served: o.served,
            }
        })
        .collect();
    IngressBuild { routes: out.entries, verdicts, services: out.services.into_iter().collect() }
}

/// One of our Ingresses while it is translated.
struct Ours<'a> {
    ing: &'a Ingress,
    namespace: String,
    name: String,
    /// `ingress ns/name`.
    source: String,
    /// `None`: refused for its annotations (the problems say why).
    options: Option<Options>,
    problems: Vec<String>,
    served: bool,
}

impl<'a> Ours<'a> {
    fn new(ing: &'a Ingress) -> Self {
        let namespace = ing.metadata.namespace.clone().unwrap_or_default();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let source = format!("ingress {namespace}/{name}");
        let (options, problems) = match options(ing) {
            Ok(o) => (Some(o), Vec::new()),
            Err(p) => (None, p),
        };
        Ours { ing, namespace, name, source, options, problems, served: false }
    }

    /// Its rules' hosts (`None`: hostless), valid ones only, each once, in order.
    fn hosts(&self) -> Vec<Option<String>> {
        let mut hosts = Vec::new();
        for r in self.ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = match r.host.as_deref().filter(|h| !h.is_empty()) {
                None => None,
                Some(h) if valid_hostname(h) => Some(h.to_ascii_lowercase()),
                Some(_) => continue,
            };
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

/// What the `lwsws.io/` annotations ask.
#[derive(Debug, Default, Clone)]
struct Options {
    ssl_redirect: bool,
    rewrite_target: Option<String>,
}

fn options(ing: &Ingress) -> Result<Options, Vec<String>> {
    let mut o = Options::default();
    let mut problems = Vec::new();
    for (key, value) in ing.metadata.annotations.iter().flatten() {
        if !key.starts_with(OWN_ANNOTATIONS) {
            continue;
        }
        let field = format!("metadata.annotations[{key}]");
        match key.as_str() {
            SSL_REDIRECT => match value.as_str() {
                "true" => o.ssl_redirect = true,
                "false" => {}
                _ => problems.push(format!("{field}: {value:?} must be \"true\" or \"false\"")),
            },
            REWRITE_TARGET => match normal_path(value) {
                Ok(p) if p.contains('$') => problems.push(format!(
                    "{field}: {value:?}: no capture groups; the matched prefix is replaced by the path as written"
                )),
                Ok(p) => o.rewrite_target = Some(p),
                Err(e) => problems.push(format!("{field}: {e}")),
            },
            _ if key.contains("snippet") => {
                problems.push(format!("{field}: configuration snippets are not accepted"));
            }
            _ => problems
                .push(format!("{field}: not an lwsws annotation (there are {SSL_REDIRECT} and {REWRITE_TARGET})")),
        }
    }
    if problems.is_empty() {
        Ok(o)
    } else {
        problems.push("the Ingress is not served until its lwsws.io annotations are fixed".into());
        Err(problems)
    }
}

/// A certificate for a name, and where it came from.
struct Cert {
    files: TlsFiles,
    /// The Secret, `ns/name`.
    secret: String,
    /// `ingress ns/name spec.tls[k]`.
    from: String,
}

/// Names (`None`: the catch-all) with their certificates, in the order they were first named.
struct Certs(Vec<(Option<String>, Cert)>);

impl Certs {
    fn get(&self, name: Option<&str>) -> Option<&Cert> {
        self.0.iter().find(|(n, _)| n.as_deref() == name).map(|(_, c)| c)
    }

    /// The certificate a rule's host is served with on 443: its own name's, else that of the
    /// one-label wildcard above it.
    fn for_host(&self, host: Option<&str>) -> Option<&TlsFiles> {
        let exact = self.get(host);
        let wildcard = || {
            let h = host?;
            let parent = h.split_once('.').filter(|_| !h.starts_with("*.")).map(|(_, p)| p)?;
            self.get(Some(&format!("*.{parent}")))
        };
        exact.or_else(wildcard).map(|c| &c.files)
    }
}

/// Every `spec.tls` entry of our Ingresses: Secrets checked and written, names given their
/// certificate (the first entry naming a name keeps it).
fn certificates(input: &IngressInput, ours: &mut [Ours]) -> Certs {
    let mut certs = Certs(Vec::new());
    let mut secrets: HashMap<(String, String), Result<TlsFiles, String>> = HashMap::new();
    for o in ours.iter_mut().filter(|o| o.options.is_some()) {
        let entries = o.ing.spec.iter().flat_map(|s| s.tls.iter().flatten());
        for (k, t) in entries.enumerate() {
            let field = format!("spec.tls[{k}]");
            let mut names: Vec<Option<String>> = Vec::new();
            let hosts = t.hosts.as_deref().unwrap_or_default();
            if hosts.is_empty() {
                names.push(None);
            }
            for (m, h) in hosts.iter().enumerate() {
                if valid_hostname(h) {
                    names.push(Some(h.to_ascii_lowercase()));
                } else {
                    o.problems.push(format!("{field}.hosts[{m}]: {}", bad_host(h)));
                }
            }
            if names.is_empty() {
                continue;
            }
            let Some(secret) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                o.problems.push(format!(
                    "{field}.secretName: not set, and lwsws terminates TLS only with a Secret's certificate; \
                     {} not served on port {HTTPS_PORT}",
                    names_text(&names)
                ));
                continue;
            };
            let loaded = secrets
                .entry((o.namespace.clone(), secret.to_string()))
                .or_insert_with(|| load_secret(input, &o.namespace, secret));
            let files = match loaded {
                Ok(f) => f.clone(),
                Err(e) => {
                    o.problems.push(format!(
                        "{field}.secretName: {e}; {} not served on port {HTTPS_PORT}",
                        names_text(&names)
                    ));
                    continue;
                }
            };
            let secret = format!("{}/{secret}", o.namespace);
            for n in names {
                match certs.get(n.as_deref()) {
                    Some(c) if c.secret == secret => {}
                    Some(c) => o.problems.push(format!(
                        "{field}: {} has its certificate from {} (Secret {}), which comes first; Secret {secret} \
                         is not used for it",
                        name_text(n.as_deref()),
                        c.from,
                        c.secret
                    )),
                    None => certs.0.push((
                        n,
                        Cert { files: files.clone(), secret: secret.clone(), from: format!("{} {field}", o.source) },
                    )),
                }
            }
        }
    }
    // The catch-all's first.
    certs.0.sort_by_key(|(n, _)| n.is_some());
    certs
}

fn load_secret(input: &IngressInput, namespace: &str, name: &str) -> Result<TlsFiles, String> {
    let pair = (input.secret)(namespace, name)
        .ok_or_else(|| format!("no Secret {namespace}/{name} of type kubernetes.io/tls with tls.crt and tls.key"))?;
    crate::tls::check_pem_pair(&pair.cert, &pair.key).map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
    let (cert, key) = write_pair(input.secret_dir, namespace, name, &pair)
        .map_err(|e| format!("Secret {namespace}/{name}: cannot write its files: {e}"))?;
    Ok(TlsFiles { cert, key })
}

fn bad_host(h: &str) -> String {
    format!("{h:?} is not a hostname (DNS labels, optionally after \"*.\"; no IP address, port or bare \"*\")")
}

fn name_text(name: Option<&str>) -> String {
    match name {
        Some(h) => format!("host {h:?}"),
        None => "the catch-all (hosts no rule names)".to_string(),
    }
}

fn names_text(names: &[Option<String>]) -> String {
    names.iter().map(|n| name_text(n.as_deref())).collect::<Vec<_>>().join(", ")
}

/// The routes as they are built: one entry per port and name, in the order first named.
#[derive(Default)]
struct Output {
    entries: Vec<HostRoutes>,
    index: HashMap<(u16, Option<String>), usize>,
    services: BTreeSet<ServiceRef>,
}

impl Output {
    fn entry(&mut self, port: u16, host: Option<&str>, tls: Option<&TlsFiles>) -> &mut HostRoutes {
        let key = (port, host.map(str::to_string));
        let at = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.entries.push(HostRoutes {
                    port,
                    hostname: key.1.clone(),
                    wildcard: HostMatch::OneLabel,
                    tls: tls.cloned(),
                    mounts: Vec::new(),
                    // The host decides, then the path: hostless rules are not candidates for
                    // a named host.
                    shared: false,
                });
                self.index.insert(key, self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        &mut self.entries[at]
    }

    /// Serves `route` at `mountpoint` for `host`: on 80 (a 308 to https instead with
    /// `ssl_redirect` when there is a certificate), and on 443 when there is one.
    fn serve(&mut self, at: Place, route: ServiceRoute, ssl_redirect: bool) {
        let mount = |origin: Origin| {
            let loc = Loc { file: at.loc.clone().into(), line: 0, col: 0 };
            let mut m = Mount::with_defaults(loc, &at.mountpoint, origin);
            m.origin_loc = Loc { file: at.origin_loc.clone().into(), line: 0, col: 0 };
            m.exact_match = at.exact;
            m.rewrite_links = false;
            m
        };
        let host = at.host.as_deref();
        let plain = match at.tls {
            Some(_) if ssl_redirect => Origin::RouteRedirect(RouteRedirect {
                scheme: Some("https".into()),
                hostname: None,
                port: None,
                path: PathRewrite::Keep,
                status: 308,
                listener_port: HTTP_PORT,
            }),
            _ => Origin::Service(route.clone()),
        };
        self.entry(HTTP_PORT, host, None).mounts.push(mount(plain));
        if let Some(tls) = at.tls {
            self.entry(HTTPS_PORT, host, Some(tls)).mounts.push(mount(Origin::Service(route.clone())));
        }
        self.services.extend(route.backends.into_iter().filter_map(|b| b.service));
    }
}

/// Where a mount goes and what it is named by.
struct Place<'c> {
    host: Option<String>,
    tls: Option<&'c TlsFiles>,
    mountpoint: String,
    exact: bool,
    /// `ingress ns/name spec.rules[i].http.paths[j]`.
    loc: String,
    /// The backend's field.
    origin_loc: String,
}

fn rules(
    input: &IngressInput,
    o: &mut Ours,
    certs: &Certs,
    claimed: &mut HashMap<(Option<String>, String, bool), String>,
    out: &mut Output,
) {
    let options = o.options.clone().unwrap_or_default();
    let rewrite = options.rewrite_target.clone().map(PathRewrite::Prefix).unwrap_or_default();
    for (i, rule) in o.ing.spec.iter().flat_map(|s| s.rules.iter().flatten()).enumerate() {
        let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
            None => None,
            Some(h) if valid_hostname(h) => Some(h.to_ascii_lowercase()),
            Some(h) => {
                o.problems.push(format!("spec.rules[{i}].host: {}; the rule is not served", bad_host(h)));
                continue;
            }
        };
        for (j, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let (mountpoint, exact) = match mountpoint(p.path.as_deref(), &p.path_type, &field) {
                Ok(m) => m,
                Err(e) => {
                    o.problems.push(e);
                    continue;
                }
            };
            let key = (host.clone(), mountpoint.clone(), exact);
            if let Some(owner) = claimed.get(&key) {
                o.problems.push(format!(
                    "{field}: {} path {mountpoint:?} ({}) is already routed by {owner}, which comes first; \
                     this one is not used",
                    name_text(host.as_deref()),
                    if exact { "Exact" } else { "prefix" },
                ));
                continue;
            }
            claimed.insert(key, format!("{} {field}", o.source));
            let backend = backend(input, &o.namespace, &p.backend, &format!("{field}.backend"), &mut o.problems);
            let route = ServiceRoute { backends: vec![backend], host_rewrite: None, path: rewrite.clone() };
            let place = Place {
                tls: certs.for_host(host.as_deref()),
                host: host.clone(),
                mountpoint,
                exact,
                loc: format!("{} {field}", o.source),
                origin_loc: format!("{} {field}.backend", o.source),
            };
            out.serve(place, route, options.ssl_redirect);
            o.served = true;
        }
    }
}

fn default_backend(
    input: &IngressInput,
    o: &mut Ours,
    certs: &Certs,
    claimed: &HashMap<(Option<String>, String, bool), String>,
    fallbacks: &mut HashMap<Option<String>, String>,
    out: &mut Output,
) {
    let Some(b) = o.ing.spec.as_ref().and_then(|s| s.default_backend.as_ref()) else { return };
    let field = "spec.defaultBackend";
    let backend = backend(input, &o.namespace, b, field, &mut o.problems);
    let route = ServiceRoute { backends: vec![backend], host_rewrite: None, path: PathRewrite::Keep };
    let mut targets = vec![None];
    targets.extend(o.hosts().into_iter().filter(Option::is_some));
    let ssl_redirect = o.options.as_ref().is_some_and(|op| op.ssl_redirect);
    for host in targets {
        if claimed.contains_key(&(host.clone(), "/".to_string(), false)) {
            // A `/` prefix rule takes every request this would.
            continue;
        }
        if let Some(owner) = fallbacks.get(&host) {
            o.problems.push(format!(
                "{field}: not used for {}: {owner}'s defaultBackend comes first",
                name_text(host.as_deref())
            ));
            continue;
        }
        fallbacks.insert(host.clone(), o.source.clone());
        let place = Place {
            tls: certs.for_host(host.as_deref()),
            host,
            mountpoint: "/".into(),
            exact: false,
            loc: format!("{} {field}", o.source),
            origin_loc: format!("{} {field}", o.source),
        };
        out.serve(place, route.clone(), ssl_redirect);
        o.served = true;
    }
}

/// An Ingress path as a mountpoint, and whether it is an exact match.
fn mountpoint(path: Option<&str>, path_type: &str, field: &str) -> Result<(String, bool), String> {
    let exact = match path_type {
        "Exact" => true,
        "Prefix" | "ImplementationSpecific" => false,
        other => {
            return Err(format!(
                "{field}.pathType: {other:?} is not Exact, Prefix or ImplementationSpecific; the path is not served"
            ));
        }
    };
    let path = match path.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None if path_type == "ImplementationSpecific" => "/",
        None => return Err(format!("{field}.path: required with pathType {path_type}; the path is not served")),
    };
    let mut mp = normal_path(path).map_err(|e| format!("{field}.path: {e}; the path is not served"))?;
    if !exact && mp.len() > 1 && mp.ends_with('/') {
        mp.pop();
    }
    Ok((mp, exact))
}

/// `raw` percent-decoded (as request paths are before they meet mountpoints), if it is a path
/// a normalised request path can equal or start with.
fn normal_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("{raw:?} does not start with \"/\""));
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("{raw:?} is not UTF-8 once percent-decoded"))?;
    if let Some(c) = decoded.chars().find(|c| c.is_control() || matches!(c, '\\' | '?' | '#')) {
        return Err(format!("{raw:?} holds {c:?}, which no request path does"));
    }
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    if segments.iter().enumerate().any(|(i, s)| (s.is_empty() && i < last) || *s == "." || *s == "..") {
        return Err(format!("{raw:?} is not a normalised path (no \"//\", \".\" or \"..\" segment)"));
    }
    Ok(decoded.into_owned())
}

/// A backend of the Ingress in `namespace`; one that cannot be used is `service: None`
/// (answered 500) with a problem naming `field`.
fn backend(
    input: &IngressInput,
    namespace: &str,
    b: &IngressBackend,
    field: &str,
    problems: &mut Vec<String>,
) -> WeightedBackend {
    let mut invalid = |why: String| {
        problems.push(format!("{why}; answered 500"));
        WeightedBackend { weight: 1, service: None }
    };
    let s = match (&b.service, &b.resource) {
        (Some(_), Some(_)) => return invalid(format!("{field}: service and resource are both set")),
        (None, Some(_)) => {
            return invalid(format!("{field}.resource: resource backends are not supported, only Services"));
        }
        (None, None) => return invalid(format!("{field}: no service")),
        (Some(s), None) => s,
    };
    let service_field = format!("{field}.service");
    if s.name.is_empty() {
        return invalid(format!("{service_field}.name: empty"));
    }
    let port = s.port.as_ref();
    let number = match (port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref()).filter(|n| !n.is_empty())) {
        (Some(n), _) => match u16::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => return invalid(format!("{service_field}.port.number: {n} is not a port")),
        },
        (None, Some(name)) => {
            let Some(svc) = (input.service)(namespace, &s.name) else {
                return invalid(format!(
                    "{service_field}.port.name: no Service {namespace}/{} to find port {name:?} in",
                    s.name
                ));
            };
            let ports = svc.spec.iter().flat_map(|sp| sp.ports.iter().flatten());
            match ports.filter(|p| p.name.as_deref() == Some(name)).find_map(|p| u16::try_from(p.port).ok()) {
                Some(n) => n,
                None => {
                    return invalid(format!(
                        "{service_field}.port.name: Service {namespace}/{} has no port named {name:?}",
                        s.name
                    ));
                }
            }
        }
        (None, None) => return invalid(format!("{service_field}.port: a number or a name is required")),
    };
    WeightedBackend {
        weight: 1,
        service: Some(ServiceRef { namespace: namespace.to_string(), name: s.name.clone(), port: number }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::k8s::routes::{PortMap, assemble};
    use crate::model::{Config, ListenKey};
    use crate::table::{CompileMode, RouteFacts, RouteTable};

    const CLASS: &str = "lwsws";
    const CONTROLLER: &str = "lwsws.io/ingress-controller";

    fn ingress(ns: &str, name: &str, created: &str, annotations: Value, spec: Value) -> Arc<Ingress> {
        let meta = json!({
            "namespace": ns, "name": name, "creationTimestamp": created, "generation": 4,
            "annotations": annotations,
        });
        Arc::new(serde_json::from_value(json!({ "metadata": meta, "spec": spec })).unwrap())
    }

    /// An Ingress of our class.
    fn ours(ns: &str, name: &str, created: &str, spec: Value) -> Arc<Ingress> {
        let mut spec = spec;
        spec["ingressClassName"] = json!(CLASS);
        ingress(ns, name, created, json!({}), spec)
    }

    fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
        let annotations = if default { json!({ DEFAULT_CLASS_ANNOTATION: "true" }) } else { json!({}) };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "annotations": annotations },
                "spec": { "controller": controller },
            }))
            .unwrap(),
        )
    }

    fn svc(name: &str, port: u16) -> Value {
        json!({ "service": { "name": name, "port": { "number": port } } })
    }

    fn path(path: &str, path_type: &str, backend: Value) -> Value {
        json!({ "path": path, "pathType": path_type, "backend": backend })
    }

    fn pair(name: &str) -> TlsPair {
        let pki = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        TlsPair { cert: pki.cert.pem().into_bytes(), key: pki.signing_key.serialize_pem().into_bytes() }
    }

    struct Cluster {
        classes: Vec<Arc<IngressClass>>,
        services: Vec<Arc<Service>>,
        secrets: Vec<(String, String, TlsPair)>,
        dir: tempfile::TempDir,
    }

    impl Cluster {
        fn new() -> Self {
            Cluster {
                classes: vec![class(CLASS, CONTROLLER, false), class("other", "example.com/other", false)],
                services: Vec::new(),
                secrets: Vec::new(),
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn translate(&self, ingresses: &[Arc<Ingress>]) -> IngressBuild {
            let service = |ns: &str, name: &str| {
                self.services
                    .iter()
                    .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
                    .cloned()
            };
            let secret = |ns: &str, name: &str| {
                self.secrets.iter().find(|(n, m, _)| n == ns && m == name).map(|(_, _, p)| p.clone())
            };
            translate(&IngressInput {
                ingresses,
                classes: &self.classes,
                class_name: CLASS,
                controller_name: CONTROLLER,
                service: &service,
                secret: &secret,
                secret_dir: self.dir.path(),
            })
        }
    }

    fn entry<'b>(b: &'b IngressBuild, port: u16, host: Option<&str>) -> Option<&'b HostRoutes> {
        b.routes.iter().find(|r| r.port == port && r.hostname.as_deref() == host)
    }

    /// (mountpoint, exact, what it sends to) of each mount of an entry.
    fn mounts(b: &IngressBuild, port: u16, host: Option<&str>) -> Vec<(String, bool, String)> {
        let e = entry(b, port, host).unwrap_or_else(|| panic!("no entry for {host:?} on {port}: {:#?}", b.routes));
        e.mounts.iter().map(|m| (m.mountpoint.clone(), m.exact_match, target(&m.origin))).collect()
    }

    fn target(o: &Origin) -> String {
        match o {
            Origin::Service(s) => match &s.backends[..] {
                [WeightedBackend { weight: 1, service: Some(r) }] => r.to_string(),
                [WeightedBackend { weight: 1, service: None }] => "500".into(),
                other => panic!("{other:?}"),
            },
            Origin::RouteRedirect(r) => format!("{} {}", r.status, r.scheme.as_deref().unwrap_or("-")),
            other => panic!("an Ingress mount may only reach Services or redirect: {other:?}"),
        }
    }

    fn m(mp: &str, exact: bool, to: &str) -> (String, bool, String) {
        (mp.to_string(), exact, to.to_string())
    }

    fn verdict<'b>(b: &'b IngressBuild, name: &str) -> &'b IngressVerdict {
        b.verdicts.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no verdict for {name}"))
    }

    fn has_problem(v: &IngressVerdict, start: &str) -> bool {
        v.problems.iter().any(|p| p.starts_with(start))
    }

    #[test]
    fn each_path_type_and_refused_paths_and_hosts_name_their_field() {
        let ing = ours(
            "ns",
            "site",
            "2024-01-01T00:00:00Z",
            json!({ "rules": [
                { "host": "A.test", "http": { "paths": [
                    path("/exact", "Exact", svc("web", 80)),
                    path("/pre/", "Prefix", svc("web", 80)),
                    path("/impl", "ImplementationSpecific", svc("web", 80)),
                    { "pathType": "ImplementationSpecific", "backend": svc("web", 80) },
                    path("nope", "Prefix", svc("web", 80)),
                    path("/a//b", "Prefix", svc("web", 80)),
                    path("/x", "Regex", svc("web", 80)),
                    path("/sp%20ace", "Exact", svc("web", 80)),
                ] } },
                { "host": "1.2.3.4", "http": { "paths": [path("/", "Prefix", svc("web", 80))] } },
                { "host": "a.test:80", "http": { "paths": [path("/", "Prefix", svc("web", 80))] } },
                { "host": "*", "http": { "paths": [path("/", "Prefix", svc("web", 80))] } },
            ] }),
        );
        let b = Cluster::new().translate(&[ing]);
        assert_eq!(
            mounts(&b, 80, Some("a.test")),
            vec![
                m("/exact", true, "ns/web:80"),
                m("/pre", false, "ns/web:80"),
                m("/impl", false, "ns/web:80"),
                m("/", false, "ns/web:80"),
                m("/sp ace", true, "ns/web:80"),
            ]
        );
        assert_eq!(b.routes.len(), 1, "no TLS, no other host: {:#?}", b.routes);
        let v = verdict(&b, "site");
        assert!(v.served && v.generation == Some(4));
        for field in [
            "spec.rules[0].http.paths[4].path: \"nope\" does not start with \"/\"",
            "spec.rules[0].http.paths[5].path: \"/a//b\" is not a normalised path",
            "spec.rules[0].http.paths[6].pathType: \"Regex\"",
            "spec.rules[1].host: \"1.2.3.4\"",
            "spec.rules[2].host: \"a.test:80\"",
            "spec.rules[3].host: \"*\"",
        ] {
            assert!(has_problem(v, field), "{field}: {:#?}", v.problems);
        }
        assert_eq!(v.problems.len(), 6, "{:#?}", v.problems);
        let mount = &entry(&b, 80, Some("a.test")).unwrap().mounts[0];
        assert_eq!(&*mount.loc.file, "ingress ns/site spec.rules[0].http.paths[0]");
        assert_eq!(&*mount.origin_loc.file, "ingress ns/site spec.rules[0].http.paths[0].backend");
        assert!(mount.route.is_none() && !mount.rewrite_links);
        assert_eq!(entry(&b, 80, Some("a.test")).unwrap().wildcard, HostMatch::OneLabel);
        assert_eq!(b.services, vec![ServiceRef { namespace: "ns".into(), name: "web".into(), port: 80 }]);
    }

    #[test]
    fn classes_decide_which_ingresses_are_ours() {
        let by_name = ingress(
            "ns",
            "by-name",
            "2024-01-01T00:00:00Z",
            json!({}),
            json!({ "ingressClassName": CLASS, "defaultBackend": svc("a", 80) }),
        );
        let by_annotation = ingress(
            "ns",
            "by-annotation",
            "2024-01-02T00:00:00Z",
            json!({ CLASS_ANNOTATION: CLASS }),
            json!({ "rules": [{ "host": "b.test", "http": { "paths": [path("/", "Prefix", svc("b", 80))] } }] }),
        );
        let classless = ingress(
            "ns",
            "classless",
            "2024-01-03T00:00:00Z",
            json!({}),
            json!({ "rules": [{ "host": "c.test", "http": { "paths": [path("/", "Prefix", svc("c", 80))] } }] }),
        );
        let theirs = ingress(
            "ns",
            "theirs",
            "2024-01-04T00:00:00Z",
            json!({}),
            json!({
                "ingressClassName": "other",
                "rules": [{ "host": "d.test", "http": { "paths": [path("/", "Prefix", svc("d", 80))] } }],
            }),
        );
        let their_annotation = ingress(
            "ns",
            "their-annotation",
            "2024-01-05T00:00:00Z",
            json!({ CLASS_ANNOTATION: "nginx" }),
            json!({ "rules": [{ "host": "e.test", "http": { "paths": [path("/", "Prefix", svc("e", 80))] } }] }),
        );
        let all = [by_name, by_annotation, classless, theirs, their_annotation];
        let names = |b: &IngressBuild| b.verdicts.iter().map(|v| v.name.clone()).collect::<Vec<_>>();

        let mut cluster = Cluster::new();
        assert_eq!(names(&cluster.translate(&all)), vec!["by-name", "by-annotation"]);

        // Our class is the default: class-less Ingresses are ours too.
        cluster.classes[0] = class(CLASS, CONTROLLER, true);
        let b = cluster.translate(&all);
        assert_eq!(names(&b), vec!["by-name", "by-annotation", "classless"]);
        assert!(entry(&b, 80, Some("d.test")).is_none() && entry(&b, 80, Some("e.test")).is_none());

        // A class of our name that another controller runs: `ingressClassName` no longer makes
        // an Ingress ours, and a default class of someone else's is not ours either.
        cluster.classes = vec![class(CLASS, "example.com/other", true)];
        assert_eq!(names(&cluster.translate(&all)), vec!["by-annotation"]);
        cluster.classes.clear();
        assert_eq!(names(&cluster.translate(&all)), vec!["by-annotation"]);
    }

    #[test]
    fn tls_hosts_get_port_443_with_their_secret_and_a_bad_secret_is_named() {
        let mut cluster = Cluster::new();
        let good = pair("a.test");
        cluster.secrets.push(("ns".into(), "good".into(), good.clone()));
        cluster.secrets.push(("ns".into(), "junk".into(), TlsPair { cert: b"junk".to_vec(), key: b"junk".to_vec() }));
        let rule = |host: &str| json!({ "host": host, "http": { "paths": [path("/", "Prefix", svc("web", 80))] } });
        let ing = ours(
            "ns",
            "tls",
            "2024-01-01T00:00:00Z",
            json!({
                "tls": [
                    { "hosts": ["a.test", "*.w.test"], "secretName": "good" },
                    { "hosts": ["b.test"], "secretName": "absent" },
                    { "hosts": ["c.test"], "secretName": "junk" },
                ],
                "rules": [rule("a.test"), rule("b.test"), rule("c.test"), rule("x.w.test"), rule("y.x.w.test")],
            }),
        );
        let b = cluster.translate(&[ing]);
        for host in ["a.test", "b.test", "c.test", "x.w.test", "y.x.w.test"] {
            assert_eq!(mounts(&b, 80, Some(host)), vec![m("/", false, "ns/web:80")], "{host}");
        }
        let a = entry(&b, 443, Some("a.test")).unwrap();
        assert_eq!(mounts(&b, 443, Some("a.test")), vec![m("/", false, "ns/web:80")]);
        let tls = a.tls.clone().unwrap();
        assert!(tls.cert.starts_with(cluster.dir.path().join("ns/good")), "{}", tls.cert.display());
        assert_eq!(std::fs::read(&tls.key).unwrap(), good.key);
        // Under the one-label wildcard's certificate: its host, and a vhost for the wildcard.
        assert_eq!(entry(&b, 443, Some("x.w.test")).unwrap().tls.as_ref(), Some(&tls));
        assert!(entry(&b, 443, Some("*.w.test")).unwrap().mounts.is_empty());
        for host in ["b.test", "c.test", "y.x.w.test"] {
            assert!(entry(&b, 443, Some(host)).is_none(), "{host} has no certificate");
        }
        let v = verdict(&b, "tls");
        assert!(v.served);
        assert!(
            has_problem(v, "spec.tls[1].secretName: no Secret ns/absent of type kubernetes.io/tls"),
            "{:#?}",
            v.problems
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("spec.tls[1]") && p.contains("host \"b.test\" not served on port 443"))
        );
        assert!(has_problem(v, "spec.tls[2].secretName: Secret ns/junk: "), "{:#?}", v.problems);
        assert_eq!(v.problems.len(), 2, "{:#?}", v.problems);
    }

    #[test]
    fn a_tls_entry_without_hosts_is_the_catch_alls_certificate() {
        let mut cluster = Cluster::new();
        cluster.secrets.push(("ns".into(), "named".into(), pair("a.test")));
        cluster.secrets.push(("ns".into(), "any".into(), pair("any.test")));
        let ing = ours(
            "ns",
            "any",
            "2024-01-01T00:00:00Z",
            json!({
                "tls": [{ "hosts": ["a.test"], "secretName": "named" }, { "secretName": "any" }],
                "rules": [
                    { "host": "a.test", "http": { "paths": [path("/a", "Prefix", svc("a", 80))] } },
                    { "http": { "paths": [path("/any", "Prefix", svc("any", 80))] } },
                ],
                "defaultBackend": svc("fallback", 8080),
            }),
        );
        let b = cluster.translate(&[ing]);
        // The catch-all's 443 entry comes first: `assemble` gives the port's first certificate
        // to the catch-all.
        let first = b.routes.iter().find(|r| r.port == 443).unwrap();
        assert_eq!(first.hostname, None);
        assert!(first.tls.as_ref().unwrap().cert.starts_with(cluster.dir.path().join("ns/any")));
        let catch_all = vec![m("/any", false, "ns/any:80"), m("/", false, "ns/fallback:8080")];
        assert_eq!(mounts(&b, 80, None), catch_all);
        assert_eq!(mounts(&b, 443, None), catch_all);
        let a = vec![m("/a", false, "ns/a:80"), m("/", false, "ns/fallback:8080")];
        assert_eq!(mounts(&b, 443, Some("a.test")), a);
        assert_eq!(mounts(&b, 80, Some("a.test")), a);
        assert!(verdict(&b, "any").problems.is_empty());
    }

    #[test]
    fn the_oldest_default_backend_takes_the_catch_all_and_each_ingress_its_own_hosts() {
        let old = ours("ns", "old", "2024-01-01T00:00:00Z", json!({ "defaultBackend": svc("old", 80) }));
        let new = ours(
            "ns",
            "new",
            "2024-02-01T00:00:00Z",
            json!({
                "defaultBackend": svc("new", 80),
                "rules": [{ "host": "a.test", "http": { "paths": [path("/app", "Prefix", svc("app", 80))] } }],
            }),
        );
        // Same time: namespace/name order. A `/` rule leaves nothing to its default backend.
        let rooted = ours(
            "ns",
            "rooted",
            "2024-02-01T00:00:00Z",
            json!({
                "defaultBackend": svc("unused", 80),
                "rules": [{ "host": "r.test", "http": { "paths": [path("/", "Prefix", svc("root", 80))] } }],
            }),
        );
        let b = Cluster::new().translate(&[rooted, new, old]);
        let names: Vec<&str> = b.verdicts.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["old", "new", "rooted"]);
        assert_eq!(mounts(&b, 80, None), vec![m("/", false, "ns/old:80")]);
        assert_eq!(mounts(&b, 80, Some("a.test")), vec![m("/app", false, "ns/app:80"), m("/", false, "ns/new:80")]);
        assert_eq!(mounts(&b, 80, Some("r.test")), vec![m("/", false, "ns/root:80")]);
        assert!(verdict(&b, "old").problems.is_empty() && verdict(&b, "old").served);
        for name in ["new", "rooted"] {
            let v = verdict(&b, name);
            assert_eq!(
                v.problems,
                vec![
                    "spec.defaultBackend: not used for the catch-all (hosts no rule names): ingress ns/old's \
                     defaultBackend comes first"
                ],
                "{name}"
            );
            assert!(v.served);
        }
        let services: Vec<String> = b.services.iter().map(|s| s.to_string()).collect();
        assert_eq!(services, vec!["ns/app:80", "ns/new:80", "ns/old:80", "ns/root:80"]);
        assert_eq!(&*entry(&b, 80, None).unwrap().mounts[0].loc.file, "ingress ns/old spec.defaultBackend");
    }

    #[test]
    fn named_ports_resolve_through_the_service_and_unusable_backends_answer_500() {
        let mut cluster = Cluster::new();
        cluster.services.push(Arc::new(
            serde_json::from_value(json!({
                "metadata": { "namespace": "ns", "name": "web" },
                "spec": { "ports": [{ "name": "metrics", "port": 9090 }, { "name": "http", "port": 8080 }] },
            }))
            .unwrap(),
        ));
        let named = |svc: &str, port: &str| json!({ "service": { "name": svc, "port": { "name": port } } });
        let ing = ours(
            "ns",
            "ports",
            "2024-01-01T00:00:00Z",
            json!({ "rules": [{ "http": { "paths": [
                path("/a", "Prefix", named("web", "http")),
                path("/b", "Prefix", named("web", "grpc")),
                path("/c", "Prefix", named("gone", "http")),
                path("/d", "Prefix", json!({ "resource": { "kind": "Bucket", "name": "b" } })),
                path("/e", "Prefix", svc("web", 0)),
            ] } }] }),
        );
        let b = cluster.translate(&[ing]);
        assert_eq!(
            mounts(&b, 80, None),
            vec![
                m("/a", false, "ns/web:8080"),
                m("/b", false, "500"),
                m("/c", false, "500"),
                m("/d", false, "500"),
                m("/e", false, "500"),
            ]
        );
        assert_eq!(b.services, vec![ServiceRef { namespace: "ns".into(), name: "web".into(), port: 8080 }]);
        let v = verdict(&b, "ports");
        assert_eq!(
            v.problems,
            vec![
                "spec.rules[0].http.paths[1].backend.service.port.name: Service ns/web has no port named \"grpc\"; \
                 answered 500",
                "spec.rules[0].http.paths[2].backend.service.port.name: no Service ns/gone to find port \"http\" \
                 in; answered 500",
                "spec.rules[0].http.paths[3].backend.resource: resource backends are not supported, only \
                 Services; answered 500",
                "spec.rules[0].http.paths[4].backend.service.port.number: 0 is not a port; answered 500",
            ]
        );
        assert!(v.served);
    }

    #[test]
    fn the_same_path_in_two_ingresses_goes_to_the_older() {
        let older = ours(
            "x",
            "a",
            "2024-01-01T00:00:00Z",
            json!({ "rules": [{ "host": "h.test", "http": { "paths": [path("/api", "Prefix", svc("old", 80))] } }] }),
        );
        let newer = ours(
            "x",
            "b",
            "2024-02-01T00:00:00Z",
            json!({ "rules": [{ "host": "H.test", "http": { "paths": [
                path("/api/", "Prefix", svc("new", 80)),
                path("/api", "Exact", svc("new", 80)),
                path("/api", "ImplementationSpecific", svc("new", 80)),
            ] } }] }),
        );
        let b = Cluster::new().translate(&[newer, older]);
        assert_eq!(mounts(&b, 80, Some("h.test")), vec![m("/api", false, "x/old:80"), m("/api", true, "x/new:80")]);
        assert!(verdict(&b, "a").problems.is_empty());
        let v = verdict(&b, "b");
        assert_eq!(v.problems.len(), 2, "{:#?}", v.problems);
        for (i, p) in [0, 2].iter().zip(&v.problems) {
            let want = format!(
                "spec.rules[0].http.paths[{i}]: host \"h.test\" path \"/api\" (prefix) is already routed by \
                 ingress x/a spec.rules[0].http.paths[0], which comes first"
            );
            assert!(p.starts_with(&want), "{p}");
        }
        assert!(v.served);
    }

    #[test]
    fn lwsws_annotations_redirect_and_rewrite_and_unknown_ones_refuse_the_ingress() {
        let mut cluster = Cluster::new();
        cluster.secrets.push(("ns".into(), "a".into(), pair("a.test")));
        let spec = json!({
            "tls": [{ "hosts": ["a.test"], "secretName": "a" }],
            "rules": [
                { "host": "a.test", "http": { "paths": [
                    path("/app", "Prefix", svc("web", 80)),
                    path("/x", "Exact", svc("web", 80)),
                ] } },
                { "host": "b.test", "http": { "paths": [path("/app", "Prefix", svc("web", 80))] } },
            ],
        });
        let with = |annotations: Value| {
            let mut spec = spec.clone();
            spec["ingressClassName"] = json!(CLASS);
            ingress("ns", "site", "2024-01-01T00:00:00Z", annotations, spec)
        };

        let b = cluster.translate(&[with(json!({
            SSL_REDIRECT: "true",
            REWRITE_TARGET: "/new",
            "nginx.ingress.kubernetes.io/rewrite-target": "/$1",
        }))]);
        assert!(verdict(&b, "site").problems.is_empty(), "{:#?}", verdict(&b, "site").problems);
        // Port 80 of the TLS host redirects, path by path; its 443 serves; b.test has no TLS.
        assert_eq!(mounts(&b, 80, Some("a.test")), vec![m("/app", false, "308 https"), m("/x", true, "308 https")]);
        assert_eq!(mounts(&b, 443, Some("a.test")), vec![m("/app", false, "ns/web:80"), m("/x", true, "ns/web:80")]);
        assert_eq!(mounts(&b, 80, Some("b.test")), vec![m("/app", false, "ns/web:80")]);
        let Origin::RouteRedirect(r) = &entry(&b, 80, Some("a.test")).unwrap().mounts[0].origin else { panic!() };
        assert_eq!((r.hostname.as_deref(), r.port, &r.path), (None, None, &PathRewrite::Keep));
        for e in b.routes.iter().flat_map(|e| &e.mounts) {
            if let Origin::Service(s) = &e.origin {
                assert_eq!(s.path, PathRewrite::Prefix("/new".into()));
            }
        }

        for (annotations, problem) in [
            (
                json!({ "lwsws.io/ssl-redirct": "true" }),
                "metadata.annotations[lwsws.io/ssl-redirct]: not an lwsws annotation",
            ),
            (
                json!({ "lwsws.io/server-snippet": "return 200;" }),
                "metadata.annotations[lwsws.io/server-snippet]: configuration snippets are not accepted",
            ),
            (json!({ SSL_REDIRECT: "yes" }), "metadata.annotations[lwsws.io/ssl-redirect]: \"yes\" must be"),
            (
                json!({ REWRITE_TARGET: "/$1" }),
                "metadata.annotations[lwsws.io/rewrite-target]: \"/$1\": no capture groups",
            ),
            (json!({ REWRITE_TARGET: "new" }), "metadata.annotations[lwsws.io/rewrite-target]: \"new\" does not start"),
        ] {
            let b = cluster.translate(&[with(annotations)]);
            let v = verdict(&b, "site");
            assert!(!v.served && has_problem(v, problem), "{problem}: {:#?}", v.problems);
            assert!(b.routes.is_empty() && b.services.is_empty(), "{problem}");
        }
    }

    struct NoFacts;

    impl RouteFacts for NoFacts {
        fn method(&self) -> &str {
            "GET"
        }
        fn query(&self) -> Option<&str> {
            None
        }
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
    }

    /// The Service (or `500`, or the redirect) a request to `host` and `path` on `port` gets
    /// from the compiled table; `None`: 404.
    fn pick(table: &RouteTable, port: u16, host: &str, path: &str) -> Option<String> {
        let l = table.listener(&ListenKey::Tcp { port, interface: None }).expect("a listener");
        let v = l.find_vhost(host).unwrap_or(l.first());
        v.select_mount(path, false, &NoFacts).map(|m| target(&m.model.origin))
    }

    #[test]
    fn the_compiled_table_ranks_ingress_paths_as_ingress_says() {
        let mut cluster = Cluster::new();
        cluster.secrets.push(("ns".into(), "a".into(), pair("a.test")));
        let web = ours(
            "ns",
            "web",
            "2024-01-01T00:00:00Z",
            json!({
                "tls": [{ "hosts": ["a.test"], "secretName": "a" }],
                "rules": [
                    { "host": "a.test", "http": { "paths": [
                        path("/foo", "Prefix", svc("foo", 80)),
                        path("/", "Prefix", svc("root", 80)),
                        path("/foo", "Exact", svc("foo-exact", 80)),
                        path("/foo/bar", "Exact", svc("foo-bar", 80)),
                    ] } },
                    { "host": "*.wild.test", "http": { "paths": [path("/", "Prefix", svc("wild", 80))] } },
                    { "http": { "paths": [path("/any", "ImplementationSpecific", svc("any", 80))] } },
                ],
            }),
        );
        let fallback = ours("ns", "fallback", "2024-01-02T00:00:00Z", json!({ "defaultBackend": svc("dflt", 80) }));
        let later = ours(
            "other",
            "later",
            "2024-01-03T00:00:00Z",
            json!({ "rules": [
                { "host": "a.test", "http": { "paths": [path("/foo/bar", "Prefix", svc("later", 80))] } },
            ] }),
        );
        let b = cluster.translate(&[later, fallback, web]);
        assert!(b.verdicts.iter().all(|v| v.served && v.problems.is_empty()), "{:#?}", b.verdicts);

        let vhosts = assemble(b.routes.clone(), &PortMap::default(), "ingress");
        let config = Config { global: Default::default(), vhosts };
        let mut warnings = Vec::new();
        crate::model::validate(&config, &mut warnings).unwrap();
        let slots = crate::tls::CertSlots::default();
        let services = crate::upstream::Services::default();
        let table = crate::table::compile(&config, CompileMode::Check, &slots, &services, &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");

        for (port, host, path, want) in [
            // Exact beats Prefix at equal length; a longer prefix beats a shorter exact.
            (80, "a.test", "/foo", "ns/foo-exact:80"),
            (80, "a.test", "/foo/", "ns/foo:80"),
            (80, "a.test", "/foo/x", "ns/foo:80"),
            (80, "a.test", "/foo/bar", "ns/foo-bar:80"),
            (80, "a.test", "/foo/bar/baz", "other/later:80"),
            // Whole segments: /foo does not take /foobar.
            (80, "A.test:80", "/foobar", "ns/root:80"),
            (443, "a.test", "/foo/x", "ns/foo:80"),
            (80, "x.wild.test", "/z", "ns/wild:80"),
            // One label only: a deeper name is the catch-all's.
            (80, "y.x.wild.test", "/any/1", "ns/any:80"),
            (80, "y.x.wild.test", "/z", "ns/dflt:80"),
            (80, "unknown.test", "/", "ns/dflt:80"),
            (80, "wild.test", "/any", "ns/any:80"),
        ] {
            assert_eq!(pick(&table, port, host, path).as_deref(), Some(want), "{port} {host} {path}");
        }
        // No hostless rule or certificate on 443: other names there are 404.
        assert_eq!(pick(&table, 443, "unknown.test", "/"), None);
    }
}
