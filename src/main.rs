//! The `lwsws` binary: lwsws's own flags (`-c DIR`, `-d N`, `-n`, `-h`), plus `--check`.

// The allocator is chosen at build time: jemalloc by default (it gave back more of a burst's
// memory and served faster than glibc's malloc and mimalloc: docs/performance.md);
// `--no-default-features` for glibc's, `--no-default-features --features mimalloc` to compare.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lwsws::check::{self, EXIT_CONFIG};

const DEFAULT_CONFIG_DIR: &str = "/etc/lwsws";

#[derive(Parser, Debug)]
#[command(name = "lwsws", version, about = "An ingress web server that speaks the lwsws configuration language")]
struct Cli {
    /// Config directory holding `conf` and `conf.d/` (default /etc/lwsws; without it, the demo)
    #[arg(short = 'c', long = "config", value_name = "DIR", global = true)]
    config: Option<PathBuf>,
    /// lwsws log mask: 1 err, 2 warn, 4 notice, 8 info, 16 debug (RUST_LOG overrides)
    #[arg(short = 'd', long = "debug", value_name = "N", default_value_t = 1031)]
    log_mask: u32,
    /// No default plugin dir (accepted for compatibility: protocols are built in)
    #[arg(short = 'n')]
    no_plugin_dir: bool,
    /// What `_lws_ddir_` stands for in vhost values
    #[arg(long, env = "LWSWS_DATA_DIR", default_value = "/usr/share", value_name = "DIR", global = true)]
    data_dir: String,
    /// Parse and validate the config, print a summary and every warning, exit 0 or 64
    #[arg(long)]
    check: bool,
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Seconds in-flight requests get to finish once the listeners have closed (after the
    /// shutdown delay); upgraded connections get them too, then everything still open is cut
    #[arg(long, env = "LWSWS_GRACE_SECS", default_value_t = 10, value_name = "SECS")]
    grace_secs: u64,
    /// Seconds between SIGTERM/SIGINT and closing the listeners: /readyz answers 503 and
    /// requests are still served (HTTP/1 with `connection: close`) while load balancers take
    /// this replica out; a second signal ends the delay. 0 (the default): stop at once, as
    /// `docker stop` and Ctrl-C expect; the Helm chart sets it
    #[arg(long, env = "LWSWS_SHUTDOWN_DELAY_SECS", default_value_t = 0, value_name = "SECS")]
    shutdown_delay_secs: u64,
    /// Seconds HTTP connections of a listener that a reload removed may go on
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    drain_secs: u64,
    /// Serve /metrics, /healthz and /readyz on this address (off unless given)
    #[arg(long, env = "LWSWS_ADMIN_ADDR", value_name = "ADDR")]
    admin_addr: Option<std::net::SocketAddr>,
    /// Also read LwswsConfig resources and their TLS Secrets from the Kubernetes API
    #[arg(long, env = "LWSWS_KUBERNETES")]
    kubernetes: bool,
    /// The namespace watched in Kubernetes mode
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", value_name = "NS")]
    namespace: String,
    /// Serve Gateway API Gateways of GatewayClasses with our controller name (with --kubernetes)
    #[arg(long, env = "LWSWS_GATEWAY_API")]
    gateway_api: bool,
    /// The GatewayClass controllerName that is ours
    #[arg(
        long,
        env = "LWSWS_GATEWAY_CONTROLLER_NAME",
        default_value = "lwsws.io/gateway-controller",
        value_name = "NAME"
    )]
    gateway_controller_name: String,
    /// Serve Ingresses of our IngressClass (with --kubernetes)
    #[arg(long, env = "LWSWS_INGRESS")]
    ingress: bool,
    /// The IngressClass name served
    #[arg(long, env = "LWSWS_INGRESS_CLASS", default_value = "lwsws", value_name = "NAME")]
    ingress_class: String,
    /// The IngressClass spec.controller that is ours
    #[arg(
        long,
        env = "LWSWS_INGRESS_CONTROLLER_NAME",
        default_value = "lwsws.io/ingress-controller",
        value_name = "NAME"
    )]
    ingress_controller_name: String,
    /// Namespaces where routes, Ingresses, Services and Secrets are watched (comma-separated;
    /// empty: all)
    #[arg(long, env = "LWSWS_WATCH_NAMESPACES", default_value = "", value_name = "NS,NS")]
    watch_namespaces: String,
    /// The Service whose addresses Gateway and Ingress statuses report
    #[arg(long, env = "LWSWS_PUBLISH_SERVICE", value_name = "NS/NAME")]
    publish_service: Option<String>,
    /// Addresses Gateway and Ingress statuses report (comma-separated), instead of a Service's
    #[arg(long, env = "LWSWS_PUBLISH_ADDRESS", default_value = "", value_name = "ADDR,ADDR")]
    publish_address: String,
    /// The Lease (in --namespace) whose holder writes statuses, so that one replica of many
    /// writes them
    #[arg(long, env = "LWSWS_STATUS_LEASE", default_value = "lwsws-status", value_name = "NAME")]
    status_lease: String,
    /// Where a Gateway listener or Ingress port is bound in the pod: 80=8080,443=8443
    #[arg(long, env = "LWSWS_LISTENER_PORT_MAP", default_value = "", value_name = "PORT=PORT,...")]
    listener_port_map: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Same as --check
    Check,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _telemetry = init_logging(&cli);
    let checking = cli.check || matches!(cli.command, Some(Command::Check));
    let (dir, ddir, demo) = match config_dir(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lwsws: cannot prepare the demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    if demo && checking {
        tracing::info!("no config dir given and none at {DEFAULT_CONFIG_DIR}: checking the built-in demo config");
    } else if demo {
        tracing::info!(
            "no config dir given and none at {DEFAULT_CONFIG_DIR}: serving the built-in demo config and site on port 7681"
        );
    }
    let code = run(&cli, &dir, &ddir, checking);
    if demo {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

fn run(cli: &Cli, dir: &std::path::Path, ddir: &str, checking: bool) -> ExitCode {
    if checking {
        let result = check::check(dir, ddir);
        print!("{}", result.text);
        return ExitCode::from(result.code as u8);
    }
    let routes = match route_options(cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lwsws: error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let kube = cli.kubernetes.then(|| (cli.namespace.clone(), routes, cli.status_lease.clone()));
    let times = Times {
        delay: Duration::from_secs(cli.shutdown_delay_secs),
        grace: Duration::from_secs(cli.grace_secs),
        drain: Duration::from_secs(cli.drain_secs),
    };
    serve(dir, ddir, times, cli.admin_addr, kube)
}

/// How long the stop and a reload's listener drain take.
struct Times {
    delay: Duration,
    grace: Duration,
    drain: Duration,
}

/// The route front ends' flags, checked.
fn route_options(cli: &Cli) -> Result<lwsws::k8s::frontends::RouteOptions, String> {
    use lwsws::k8s::frontends::{IngressOptions, RouteOptions};
    let list =
        |s: &str| -> Vec<String> { s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect() };
    if (cli.gateway_api || cli.ingress) && !cli.kubernetes {
        return Err("--gateway-api and --ingress need --kubernetes".into());
    }
    let publish_service = match &cli.publish_service {
        Some(s) => {
            let (ns, name) = s.split_once('/').unwrap_or((cli.namespace.as_str(), s.as_str()));
            Some((ns.to_string(), name.to_string()))
        }
        None => None,
    };
    let namespaces = list(&cli.watch_namespaces);
    Ok(RouteOptions {
        gateway_controller: cli.gateway_api.then(|| cli.gateway_controller_name.clone()),
        ingress: cli.ingress.then(|| IngressOptions {
            class_name: cli.ingress_class.clone(),
            controller_name: cli.ingress_controller_name.clone(),
        }),
        namespaces: (!namespaces.is_empty()).then_some(namespaces),
        ports: lwsws::k8s::routes::PortMap::parse(&cli.listener_port_map)
            .map_err(|e| format!("--listener-port-map: {e}"))?,
        addresses: list(&cli.publish_address),
        publish_service,
    })
}

/// `-c DIR`, else /etc/lwsws when it holds a config, else the built-in demo unpacked. `--check`
/// resolves the same way: it checks what a plain start would serve.
fn config_dir(cli: &Cli) -> std::io::Result<(PathBuf, String, bool)> {
    if let Some(dir) = &cli.config {
        return Ok((dir.clone(), cli.data_dir.clone(), false));
    }
    let default = std::env::var_os("LWSWS_DEFAULT_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR));
    if default.join("conf").is_file() {
        return Ok((default, cli.data_dir.clone(), false));
    }
    let (dir, ddir) = lwsws::demo::unpack()?;
    Ok((dir, ddir, true))
}

fn serve(
    dir: &std::path::Path,
    ddir: &str,
    times: Times,
    admin: Option<std::net::SocketAddr>,
    kube: Option<(String, lwsws::k8s::frontends::RouteOptions, String)>,
) -> ExitCode {
    let (kube_namespace, routes, status_lease) = match kube {
        Some((ns, routes, lease)) => (Some(ns), routes, lease),
        None => (None, Default::default(), String::new()),
    };
    // In Kubernetes mode the files may hold no vhost: the resources can bring them all.
    let files = match &kube_namespace {
        Some(_) => lwsws::k8s::controller::file_sources(dir).and_then(|s| lwsws::lwsws::load_sources(&s, ddir)),
        None => lwsws::lwsws::load(dir, ddir),
    };
    let loaded = match files {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lwsws: error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let mut warnings = loaded.warnings;
    let threads = lwsws::process::worker_threads(&loaded.config.global);
    let chosen_by =
        if loaded.config.global.count_threads.is_some() { "count-threads" } else { "the CPUs this process may use" };
    tracing::info!(threads, chosen_by, "worker threads");
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lwsws: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut config = loaded.config;
        let mut kube = None;
        let mut verdicts = Vec::new();
        let mut route_statuses = Default::default();
        let mut acme = lwsws::acme::AcmeBackend::files();
        if let Some(ns) = &kube_namespace {
            let (ctl, changes) = match lwsws::k8s::Controller::connect(ns, routes, Some(&status_lease)).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("lwsws: error: cannot reach the Kubernetes API: {e}");
                    return ExitCode::from(1);
                }
            };
            // ACME state outlives the pod only in Secrets; replicas see each other's challenge
            // answers there too.
            let answers = lwsws::k8s::acme_store::ChallengeSecrets::start(&ctl.client(), ns);
            acme = lwsws::acme::AcmeBackend {
                stores: lwsws::k8s::acme_store::secret_stores(ctl.client(), ns, answers.clone()),
                watched: Some(answers),
            };
            if !ctl.synced(Duration::from_secs(30)).await {
                tracing::warn!(
                    "the Kubernetes resources are not listed yet; starting with the files, adding them as they come"
                );
            }
            let built = ctl.build(dir, ddir);
            match built.loaded {
                Ok(l) => {
                    config = l.config;
                    warnings = l.warnings;
                }
                Err(e) => {
                    eprintln!("lwsws: error: {e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            }
            verdicts = built.verdicts;
            route_statuses = built.routes;
            kube = Some((ctl, changes));
        }
        let services = kube.as_ref().map(|(c, _): &(lwsws::k8s::Controller, _)| c.services()).unwrap_or_default();
        let started = lwsws::app::Server::start_with(&config, &mut warnings, acme, services).await;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let mut server = match started {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lwsws: error: {e}");
                let code = if matches!(e, lwsws::app::StartError::Config(_)) { EXIT_CONFIG as u8 } else { 1 };
                return ExitCode::from(code);
            }
        };
        // From here a SIGTERM waits for the stop sequence rather than killing the process.
        let mut signals = Signals::new();
        server.drain_limit = times.drain;
        // The command line wins over the config's `admin-addr` (read once, at startup).
        if let Some(addr) = admin.or(config.global.admin_addr) {
            match server.start_admin(addr).await {
                Ok(bound) => tracing::info!(%bound, "admin listener: /metrics /healthz /readyz"),
                Err(e) => {
                    eprintln!("lwsws: error: cannot listen on the admin address {addr}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        if let Some((ctl, _)) = &kube {
            ctl.report(&verdicts, Ok(())).await;
            ctl.report_routes(&route_statuses, Ok(())).await;
        }
        run_until_stopped(&mut server, dir, ddir, kube, &mut signals).await;
        // Further signals move the stop on (see `Server::stop`).
        let (nudge, mut nudges) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                signals.stop().await;
                if nudge.send(()).is_err() {
                    return;
                }
            }
        });
        server.stop(times.delay, times.grace, &mut nudges).await;
        ExitCode::SUCCESS
    })
}

/// The signals the server answers, installed once so that none is missed between phases.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP and on changes in the config dir (D15).
async fn run_until_stopped(
    server: &mut lwsws::app::Server,
    dir: &std::path::Path,
    ddir: &str,
    kube: Option<(lwsws::k8s::Controller, tokio::sync::mpsc::UnboundedReceiver<()>)>,
    signals: &mut Signals,
) {
    let (ctl, mut kube_changes) = match kube {
        Some((c, rx)) => (Some(c), rx),
        None => (None, tokio::sync::mpsc::unbounded_channel().1),
    };
    let Signals { term, int, hup } = signals;
    let (_watcher, mut changes) = match lwsws::reload::watch(dir) {
        Ok((w, rx)) => (Some(w), rx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config directory; reload with SIGHUP");
            (None, tokio::sync::mpsc::unbounded_channel().1)
        }
    };
    // Certificates usually live outside the config directory: look at them now and then.
    let mut cert_check = tokio::time::interval(Duration::from_secs(30));
    cert_check.tick().await;
    loop {
        let why = tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => "SIGHUP",
            _ = cert_check.tick() => {
                if !server.certificates_changed() {
                    continue;
                }
                "a certificate changed on disk"
            }
            Some(()) = changes.recv() => {
                lwsws::reload::settle(&mut changes).await;
                "a change in the config directory"
            }
            Some(()) = kube_changes.recv() => {
                lwsws::reload::settle(&mut kube_changes).await;
                "a Kubernetes resource changed"
            }
        };
        let rebuild = async {
            match &ctl {
                Some(ctl) => server.apply_kubernetes(ctl, dir, ddir, why).await,
                None => {
                    let _ = server.apply(lwsws::lwsws::load(dir, ddir), why).await;
                }
            }
        };
        // A stop is not held up by a rebuild that waits on the Kubernetes API.
        tokio::select! {
            _ = rebuild => {}
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}

/// lwsws's `-d` mask onto tracing levels and modules (`logmask`); RUST_LOG, when set, wins.
/// Also starts the OpenTelemetry exporter when the `OTEL_*` environment asks for one; the
/// returned guard flushes it on exit.
fn init_logging(cli: &Cli) -> Option<lwsws::telemetry::Telemetry> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(lwsws::logmask::directives(cli.log_mask)));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour_wanted());
    let fmt = match cli.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let (telemetry, otel) = match lwsws::telemetry::init() {
        Some((t, layer)) => (Some(t), Some(layer)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).init();
    telemetry
}

/// Colour codes only for a person at a terminal: a log file, a pipe or `docker logs` gets plain
/// text, and `NO_COLOR` (any non-empty value, no-color.org) turns colour off everywhere.
fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
