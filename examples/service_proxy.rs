//! lwsws serving one mount whose origin is a Kubernetes Service's endpoints, without an API
//! server: for `bench/endpoints.sh`, not a tool.
//!
//! ```sh
//! service_proxy ADDR:PORT THREADS ENDPOINT...   # e.g. 127.0.0.1:18081 2 127.0.0.2:18090 127.0.0.3:18090
//! ```
//!
//! `SERVICE_PROXY_PASSTHROUGH=0` in the environment turns the HTTP/1 passthrough off (the
//! files' `"proxy-passthrough": "0"`), so that every request goes through hyper.
//!
//! The files cannot name a Service, and Kubernetes mode needs an API to watch. This builds the
//! `model::Config` the Gateway API front end makes for a hostless HTTPRoute with one
//! backendRef (a vhost whose `/` mount has an `Origin::Service` and an empty route rule), writes
//! the endpoints into the Services registry as the EndpointSlice watch does
//! (`Services::set`), and starts the server as `lwsws` does (`Server::start_with`, a tokio
//! runtime with THREADS workers, jemalloc, logs at `RUST_LOG` or `warn`). Requests then pick an
//! endpoint by power of two choices, on the HTTP/1 passthrough or hyper, as they do in a
//! cluster. It serves until killed.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use lwsws::model::{
    Config, Loc, Mount, Origin, PathRewrite, RouteRule, ServiceRef, ServiceRoute, Vhost, WeightedBackend,
};
use lwsws::upstream::Services;

fn usage() -> ExitCode {
    eprintln!("usage: service_proxy ADDR:PORT THREADS ENDPOINT...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(threads)) = (
        args.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(1).and_then(|t| t.parse::<u32>().ok()).filter(|t| *t > 0),
    ) else {
        return usage();
    };
    let endpoints: Vec<SocketAddr> = match args[2..].iter().map(|a| a.parse()).collect() {
        Ok(e) => e,
        Err(_) => return usage(),
    };
    if endpoints.is_empty() {
        return usage();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_ansi(false).init();

    let key = ServiceRef { namespace: "bench".into(), name: "backend".into(), port: 80 };
    let loc = Loc { file: "service_proxy".into(), line: 0, col: 0 };
    let route = ServiceRoute {
        backends: vec![WeightedBackend { weight: 1, service: Some(key.clone()) }],
        host_rewrite: None,
        path: PathRewrite::Keep,
    };
    // As `k8s::gateway::translate` makes a rule's mount.
    let mut mount = Mount::with_defaults(loc.clone(), "/", Origin::Service(route));
    mount.rewrite_links = false;
    mount.route =
        Some(Box::new(RouteRule { source: "httproute bench/backend rules[0]".into(), ..RouteRule::default() }));
    let mut vhost = Vhost::with_defaults(loc, "localhost");
    vhost.port = listen.port();
    vhost.interface = Some(listen.ip().to_string());
    vhost.mounts.push(mount);
    let mut config = Config::default();
    config.global.count_threads = Some(threads);
    // `SERVICE_PROXY_PASSTHROUGH=0`: every request through hyper (`"proxy-passthrough": "0"`).
    config.global.proxy_passthrough = std::env::var("SERVICE_PROXY_PASSTHROUGH").map_or(true, |v| v != "0");
    config.vhosts.push(vhost);

    let services = Arc::new(Services::default());
    services.set(&key, &endpoints);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads as usize).enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("service_proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut warnings = Vec::new();
        if let Err(e) = lwsws::model::validate(&config, &mut warnings) {
            eprintln!("service_proxy: {e}");
            return ExitCode::FAILURE;
        }
        let server =
            lwsws::app::Server::start_with(&config, &mut warnings, lwsws::acme::AcmeBackend::files(), services).await;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let _server = match server {
            Ok(s) => s,
            Err(e) => {
                eprintln!("service_proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("service_proxy: listening on {listen}, Service {key} -> {} endpoint(s)", endpoints.len());
        let _ = std::io::stdout().flush();
        std::future::pending::<ExitCode>().await
    })
}
