//! A benchmark, run by `bench/routes.sh`, not a test of behaviour: how long the Gateway API
//! front end takes to rebuild the config and route table for many HTTPRoutes, and how much
//! memory that takes. It is `#[ignore]`d and asserts nothing about time; run it with
//!
//! ```sh
//! cargo test --release --test route_scale -- --ignored --nocapture
//! ```
//!
//! Everything is built in memory, as the controller's reflectors would hand it over: one
//! GatewayClass, one Gateway with one HTTP listener, `SERVICES` Services with an EndpointSlice
//! of `ENDPOINTS` ready endpoints each (resolved with `k8s::endpoints::resolve` and written to
//! the registry with `Services::set`), and `ROUTES` HTTPRoutes, each with its own path, two
//! matches and one backendRef (route `i` names hostname `h{i % HOSTS}.bench.test` and Service
//! `svc-{i % SERVICES}`). Each round then times what `Frontends::build`, `frontends::join` and
//! a reload do with them: `translate`, resolving and writing the endpoints of the Services the
//! routes name, `routes::assemble`, `model::validate` and `table::compile` (`Serve` mode, as a
//! reload compiles: nothing here has an access log or a certificate, so it opens nothing).
//!
//! Memory is the process's resident set (`/proc/self/statm`), read around the work: the
//! allocator (jemalloc, as in the `lwsws` binary) keeps freed pages for a while and reuses
//! them, so a delta is what the process grew by, not what is live. The compiled table's and
//! the assembled config's sizes are measured as slopes: `HOLD` more copies of each are kept
//! alive and the growth per copy over the second half of them is taken, once the pages freed
//! by earlier rounds are used up.
//!
//! Knobs (environment): `ROUTE_SCALE_ROUTES` (1000), `ROUTE_SCALE_SERVICES` (100),
//! `ROUTE_SCALE_ENDPOINTS` (10), `ROUTE_SCALE_HOSTS` (as many as routes: every route its own
//! hostname), `ROUTE_SCALE_ROUNDS` (20), `ROUTE_SCALE_HOLD` (8). Output: a table per round and
//! one `RESULT routes ...` line.

// The integration test links the library, not `src/main.rs`: use the binary's allocator so
// that the memory figures are the server's.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use lwsws::k8s::endpoints;
use lwsws::k8s::gateway::types::{Gateway, GatewayClass, HTTPRoute, NamespaceLabels, ReferenceGrant};
use lwsws::k8s::gateway::{GatewayInput, SecretLookup, translate};
use lwsws::k8s::routes::{self, PortMap};
use lwsws::model::{self, Config};
use lwsws::table::{self, CompileMode, RouteTable};
use lwsws::tls::CertSlots;
use lwsws::upstream::Services;
use serde_json::json;

const CONTROLLER: &str = "lwsws.io/gateway-controller";
const NS: &str = "bench";

fn knob(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Resident set size in KiB, from `/proc/self/statm` (its second field, in pages).
fn rss_kib(page_kib: u64) -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm resident field");
    pages * page_kib
}

/// The highest resident set size so far (`VmHWM`, KiB).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn page_kib() -> u64 {
    let out = std::process::Command::new("getconf").arg("PAGESIZE").output();
    let bytes = out.ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse::<u64>().ok());
    bytes.unwrap_or(4096) / 1024
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The objects, as the reflectors would hold them.
struct Objects {
    classes: Vec<Arc<GatewayClass>>,
    gateways: Vec<Arc<Gateway>>,
    routes: Vec<Arc<HTTPRoute>>,
    services: HashMap<String, Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
}

fn timestamp(seconds: usize) -> String {
    format!("2026-12-01T{:02}:{:02}:{:02}Z", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
}

fn objects(routes: usize, services: usize, endpoints: usize, hosts: usize) -> Objects {
    let class: GatewayClass = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": { "name": "lwsws", "generation": 1 },
        "spec": { "controllerName": CONTROLLER },
    }))
    .unwrap();
    let gateway: Gateway = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": "gw", "namespace": NS, "generation": 1,
                      "creationTimestamp": timestamp(0) },
        "spec": { "gatewayClassName": "lwsws",
                  "listeners": [{ "name": "http", "protocol": "HTTP", "port": 80 }] },
    }))
    .unwrap();
    let mut service_map = HashMap::new();
    let mut slices = Vec::new();
    for s in 0..services {
        let name = format!("svc-{s}");
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": NS },
            "spec": { "type": "ClusterIP", "clusterIP": format!("10.96.{}.{}", s / 250, s % 250 + 1),
                      "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }] },
        }))
        .unwrap();
        let eps: Vec<_> = (0..endpoints)
            .map(|e| {
                json!({
                    "addresses": [format!("10.{}.{}.{}", 1 + s / 250, s % 250, e % 250 + 1)],
                    "conditions": { "ready": true, "serving": true, "terminating": false },
                    "nodeName": format!("node-{}", e % 3),
                    "targetRef": { "kind": "Pod", "namespace": NS, "name": format!("{name}-pod-{e}") },
                })
            })
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": format!("{name}-abcde"), "namespace": NS,
                          "labels": { endpoints::SERVICE_NAME_LABEL: name } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
            "endpoints": eps,
        }))
        .unwrap();
        service_map.insert(name, Arc::new(service));
        slices.push(Arc::new(slice));
    }
    let routes = (0..routes)
        .map(|i| {
            let route: HTTPRoute = serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": { "name": format!("route-{i}"), "namespace": NS, "generation": 1,
                              "creationTimestamp": timestamp(i + 1) },
                "spec": {
                    "parentRefs": [{ "name": "gw" }],
                    "hostnames": [format!("h{}.bench.test", i % hosts)],
                    "rules": [{
                        "matches": [
                            { "path": { "type": "PathPrefix", "value": format!("/r{i}/api") },
                              "headers": [{ "name": "x-tenant", "value": format!("t{i}") }] },
                            { "path": { "type": "Exact", "value": format!("/r{i}") }, "method": "GET" },
                        ],
                        "backendRefs": [{ "name": format!("svc-{}", i % services), "port": 80 }],
                    }],
                },
            }))
            .unwrap();
            Arc::new(route)
        })
        .collect();
    Objects { classes: vec![Arc::new(class)], gateways: vec![Arc::new(gateway)], routes, services: service_map, slices }
}

/// One rebuild's outputs, kept so that their memory can be read.
struct Rebuilt {
    statuses: usize,
    config: Config,
    table: RouteTable,
    warnings: usize,
}

/// Per-stage times of one rebuild.
#[derive(Default, Clone, Copy)]
struct Times {
    translate: Duration,
    endpoints: Duration,
    assemble: Duration,
    validate: Duration,
    compile: Duration,
    total: Duration,
}

/// What the controller does with the objects on a change, stage by stage; `rss` is called
/// after each stage with its name (the stage's output still held).
fn rebuild(o: &Objects, registry: &Services, mut rss: impl FnMut(&'static str)) -> (Rebuilt, Times) {
    let mut t = Times::default();
    let start = Instant::now();
    let namespaces = NamespaceLabels::new();
    let grants: Vec<Arc<ReferenceGrant>> = Vec::new();
    let secret = |_: &str, _: &str| SecretLookup::Missing;
    let service_exists = |ns: &str, name: &str| ns == NS && o.services.contains_key(name);
    let secret_dir = std::env::temp_dir().join("lwsws-route-scale-unused");
    let (ports_in_use, addresses) = (BTreeSet::new(), Vec::new());
    let input = GatewayInput {
        classes: &o.classes,
        gateways: &o.gateways,
        routes: &o.routes,
        grants: &grants,
        namespaces: &namespaces,
        controller_name: CONTROLLER,
        secret: &secret,
        service_exists: &service_exists,
        secret_dir: &secret_dir,
        ports_in_use: &ports_in_use,
        addresses: &addresses,
    };
    let s = Instant::now();
    let built = translate(&input);
    t.translate = s.elapsed();
    rss("translate");

    // `Frontends::build`: the endpoints of every Service the new config names, resolved and
    // written before it is applied.
    let s = Instant::now();
    for key in &built.services {
        let service = o.services.get(&key.name).map(Arc::as_ref);
        let addrs: Vec<SocketAddr> = endpoints::resolve(key, service, &o.slices).into_addrs();
        registry.set(key, &addrs);
    }
    t.endpoints = s.elapsed();
    rss("endpoints");

    let s = Instant::now();
    let vhosts = routes::assemble(built.routes, &PortMap::default(), "kubernetes routes");
    t.assemble = s.elapsed();
    rss("assemble");

    // `frontends::join`: the files' config (here: none) with the routes' vhosts added.
    let config = Config { global: Default::default(), vhosts };
    let mut warnings = Vec::new();
    let s = Instant::now();
    model::validate(&config, &mut warnings).expect("the config validates");
    t.validate = s.elapsed();
    rss("validate");

    let s = Instant::now();
    let table = table::compile(&config, CompileMode::Serve, &CertSlots::default(), registry, &mut warnings)
        .expect("the config compiles");
    t.compile = s.elapsed();
    rss("compile");
    t.total = start.elapsed();
    let rebuilt = Rebuilt { statuses: built.statuses.len(), config, table, warnings: warnings.len() };
    (rebuilt, t)
}

/// KiB per copy over the second half of `samples` (RSS after 0, 1, 2, … copies held).
fn slope(samples: &[u64]) -> f64 {
    let n = samples.len() - 1;
    let from = n / 2;
    (samples[n] as f64 - samples[from] as f64) / (n - from) as f64
}

#[test]
#[ignore = "a benchmark: run by bench/routes.sh"]
fn route_scale() {
    let n_routes = knob("ROUTE_SCALE_ROUTES", 1000);
    let n_services = knob("ROUTE_SCALE_SERVICES", 100).max(1);
    let n_endpoints = knob("ROUTE_SCALE_ENDPOINTS", 10);
    let n_hosts = knob("ROUTE_SCALE_HOSTS", n_routes).max(1);
    let rounds = knob("ROUTE_SCALE_ROUNDS", 20).max(1);
    let hold = knob("ROUTE_SCALE_HOLD", 8).max(2);
    let page = page_kib();
    let allocator = if cfg!(feature = "jemalloc") { "jemalloc" } else { "system" };

    let rss_start = rss_kib(page);
    let o = objects(n_routes, n_services, n_endpoints, n_hosts);
    let registry = Services::default();
    for (name, service) in &o.services {
        let key = model::ServiceRef { namespace: NS.into(), name: name.clone(), port: 80 };
        let addrs = endpoints::resolve(&key, Some(service), &o.slices).into_addrs();
        assert_eq!(addrs.len(), n_endpoints.min(250), "{key} resolves to its endpoints");
        registry.set(&key, &addrs);
    }
    let rss_objects = rss_kib(page);

    // The first rebuild, cold, every stage's output held: how much the process grows by.
    let mut stage_rss: Vec<(&str, u64)> = vec![("objects", rss_objects)];
    let (first, first_times) = rebuild(&o, &registry, |stage| stage_rss.push((stage, rss_kib(page))));
    let rss_first = rss_kib(page);
    let vhosts = first.config.vhosts.len();
    let mounts: usize = first.config.vhosts.iter().map(|v| v.mounts.len()).sum();
    let table_vhosts: usize = first.table.listeners.iter().map(|l| l.vhosts.len()).sum();
    let table_mounts: usize = first.table.listeners.iter().flat_map(|l| &l.vhosts).map(|v| v.mounts.len()).sum();
    assert_eq!((table_vhosts, table_mounts), (vhosts, mounts), "the table holds every vhost and mount");
    let attached = first.statuses;
    let warnings = first.warnings;
    drop(first);

    let mut times = vec![first_times];
    for _ in 1..rounds {
        let (r, t) = rebuild(&o, &registry, |_| {});
        drop(r);
        times.push(t);
    }
    let rss_rounds = rss_kib(page);
    let peak = peak_rss_kib();

    // Slopes: more tables compiled from one config, then more copies of the config, all held.
    let (kept, _) = rebuild(&o, &registry, |_| {});
    let mut table_samples = vec![rss_kib(page)];
    let mut tables: Vec<RouteTable> = Vec::new();
    for _ in 0..hold {
        let mut w = Vec::new();
        tables
            .push(table::compile(&kept.config, CompileMode::Serve, &CertSlots::default(), &registry, &mut w).unwrap());
        table_samples.push(rss_kib(page));
    }
    let mut config_samples = vec![rss_kib(page)];
    let mut configs: Vec<Config> = Vec::new();
    for _ in 0..hold {
        configs.push(kept.config.clone());
        config_samples.push(rss_kib(page));
    }
    let table_kib = slope(&table_samples);
    let config_kib = slope(&config_samples);
    drop((tables, configs, kept));

    println!();
    println!(
        "route_scale: {n_routes} HTTPRoutes ({n_hosts} hostnames, 2 matches each) over {n_services} Services x \
         {n_endpoints} endpoints; {vhosts} vhosts, {mounts} mounts; {attached} statuses, {warnings} warnings; \
         allocator {allocator}"
    );
    println!();
    println!(
        "{:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "round", "translate ms", "endpoints ms", "assemble ms", "validate ms", "compile ms", "total ms"
    );
    for (i, t) in times.iter().enumerate() {
        println!(
            "{:>5} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
            i + 1,
            ms(t.translate),
            ms(t.endpoints),
            ms(t.assemble),
            ms(t.validate),
            ms(t.compile),
            ms(t.total)
        );
    }
    let med = |f: fn(&Times) -> Duration| median(times.iter().map(|t| ms(f(t))).collect());
    let (translate_ms, endpoints_ms, assemble_ms) = (med(|t| t.translate), med(|t| t.endpoints), med(|t| t.assemble));
    let (validate_ms, compile_ms, total_ms) = (med(|t| t.validate), med(|t| t.compile), med(|t| t.total));
    let min = |f: fn(&Times) -> Duration| times.iter().map(|t| ms(f(t))).fold(f64::INFINITY, f64::min);
    let total_min_ms = min(|t| t.total);
    println!(
        "{:>5} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
        "med", translate_ms, endpoints_ms, assemble_ms, validate_ms, compile_ms, total_ms
    );
    println!(
        "{:>5} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
        "min",
        min(|t| t.translate),
        min(|t| t.endpoints),
        min(|t| t.assemble),
        min(|t| t.validate),
        min(|t| t.compile),
        total_min_ms
    );
    println!();
    println!("RSS (KiB): start {rss_start}, objects built {rss_objects}");
    let mut before = rss_objects;
    for (stage, kib) in stage_rss.iter().skip(1) {
        println!("  first rebuild, after {stage:<9}: {kib} (+{})", kib.saturating_sub(before));
        before = *kib;
    }
    println!("  after {rounds} rounds (only the objects held): {rss_rounds}; peak so far (VmHWM) {peak}");
    println!("  holding 0..={hold} more tables: {table_samples:?}");
    println!("  then 0..={hold} more configs: {config_samples:?}");
    println!(
        "  per compiled table held: {table_kib:.0} KiB; per assembled config held: {config_kib:.0} KiB \
         (growth per copy over the last {} of each)",
        hold - hold / 2
    );
    println!();
    println!(
        "RESULT routes routes={n_routes} hostnames={n_hosts} services={n_services} endpoints={n_endpoints} \
         vhosts={vhosts} mounts={mounts} rounds={rounds} translate_ms={translate_ms:.2} endpoints_ms={endpoints_ms:.2} \
         assemble_ms={assemble_ms:.2} validate_ms={validate_ms:.2} compile_ms={compile_ms:.2} total_ms={total_ms:.2} \
         total_min_ms={total_min_ms:.2} rss_objects_kib={} rss_first_rebuild_kib={} rss_after_rounds_kib={} \
         table_kib={table_kib:.0} config_kib={config_kib:.0} peak_rss_kib={peak} allocator={allocator}",
        rss_objects.saturating_sub(rss_start),
        rss_first.saturating_sub(rss_objects),
        rss_rounds.saturating_sub(rss_objects),
    );
}
