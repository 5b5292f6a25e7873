//! Wiring: compile the config, bind every listener, drop privileges, serve; reload in place;
//! stop and drain. Owns shutdown.
//!
//! A reload (D15) builds the new route table aside and swaps it in: connections keep the table
//! they started with, new connections get the new one. Only listeners that were added or
//! removed are bound or closed; a port that stays keeps its socket and its accept queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::{AcmeBackend, Challenges};
use crate::http::conn::Shared;
use crate::lifecycle::Phase;
use crate::listen::{self, AppState, Bound};
use crate::model::{Config, ConfigError, ListenKey, Warning};
use crate::table::{self, CompileMode, RouteTable};
use crate::tls::CertSlots;
use crate::upstream::Services;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{loc}: vhost \"{vhost}\": cannot listen on {what}: {source}")]
    Bind { loc: crate::model::Loc, vhost: String, what: String, source: std::io::Error },
    #[error("{0}")]
    Process(#[from] crate::process::ProcessError),
}

/// Why a reload was refused; the running config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The new config equals the running one: nothing was rebuilt.
    Unchanged,
    Applied {
        added: usize,
        removed: usize,
    },
}

struct Listening {
    addrs: Vec<String>,
    tcp: Vec<SocketAddr>,
    stop: CancellationToken,
}

/// A running server: its bound addresses, and the handle to reload or stop it.
pub struct Server {
    /// How long HTTP connections of a listener removed by a reload may go on (then they are
    /// asked to finish and close). Upgraded connections are never cut by a reload.
    pub drain_limit: Duration,
    config: Config,
    /// The certificate and key files the running table was built from, and when each changed.
    certs: Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>,
    listening: HashMap<ListenKey, Listening>,
    order: Vec<ListenKey>,
    acme: crate::acme::Managers,
    /// Where managed certificates are served from; outlives every table.
    slots: Arc<CertSlots>,
    /// Services' endpoints; outlive every table.
    services: Arc<Services>,
    state: Arc<AppState>,
    /// The admin listener outlives the request listeners: `/readyz` says why we are going
    /// and `/metrics` shows the stop to its end.
    admin_stop: CancellationToken,
}

impl Server {
    /// Compiles `config`, binds its listeners and starts serving on the current runtime, with
    /// ACME state in files.
    pub async fn start(config: &Config, warnings: &mut Vec<Warning>) -> Result<Server, StartError> {
        Server::start_with(config, warnings, AcmeBackend::files(), Default::default()).await
    }

    /// `start`, with ACME state kept by `acme` (Secrets, in Kubernetes mode) and Services'
    /// endpoints in `services` (which the Kubernetes front end keeps current).
    pub async fn start_with(
        config: &Config,
        warnings: &mut Vec<Warning>,
        acme: AcmeBackend,
        services: Arc<Services>,
    ) -> Result<Server, StartError> {
        let slots = Arc::new(CertSlots::default());
        let challenges = Arc::new(Challenges::default());
        if let Some(watched) = acme.watched {
            challenges.set_watched(watched);
        }
        let stores = acme.stores;
        let table = table::compile(config, CompileMode::Serve, &slots, &services, warnings)?;
        crate::process::set_nofile(&config.global)?;
        let bound = bind_all(config, &table, |_| true)?;
        crate::process::drop_after_bind(&config.global)?;
        let state = Arc::new(AppState {
            table: ArcSwap::from_pointee(table),
            shared: Arc::new(Shared { challenges: challenges.clone(), ..Shared::default() }),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            drains: Default::default(),
        });
        let mut server = Server {
            drain_limit: Duration::from_secs(60),
            config: config.clone(),
            certs: cert_stamps(config),
            listening: HashMap::new(),
            order: Vec::new(),
            acme: crate::acme::Managers::new(slots.clone(), challenges, stores),
            slots,
            services,
            state,
            admin_stop: CancellationToken::new(),
        };
        server.serve(bound);
        server.metrics().set_cert_expiries(&cert_expiries(config, &server.slots));
        server.acme.apply(config, &server.state.shared.metrics, &server.state.shutdown);
        Ok(server)
    }

    fn serve(&mut self, bound: Vec<Bound>) {
        for b in bound {
            let stop = self.state.shutdown.child_token();
            let tcp = b.tcp_addrs();
            for socket in b.sockets {
                tokio::spawn(listen::accept_loop(socket, b.key.clone(), self.state.clone(), stop.clone()));
            }
            self.order.push(b.key.clone());
            self.listening.insert(b.key, Listening { addrs: b.addrs, tcp, stop });
        }
    }

    /// Applies a new config in place. On any error the running config keeps serving untouched.
    pub async fn reload(&mut self, config: &Config, warnings: &mut Vec<Warning>) -> Result<Reloaded, StartError> {
        let certs = cert_stamps(config);
        if *config == self.config && certs == self.certs {
            return Ok(Reloaded::Unchanged);
        }
        let table = table::compile(config, CompileMode::Serve, &self.slots, &self.services, warnings)?;
        let wanted: Vec<ListenKey> = table.listeners.iter().map(|l| l.key.clone()).collect();
        let bound = bind_all(config, &table, |k| !self.listening.contains_key(k))?;
        let added = bound.len();
        // New connections see the new table from here on; open ones keep theirs.
        self.state.table.store(Arc::new(table));
        self.serve(bound);
        let gone: Vec<ListenKey> = self.order.iter().filter(|k| !wanted.contains(k)).cloned().collect();
        for key in &gone {
            if let Some(l) = self.listening.remove(key) {
                tracing::info!(addrs = ?l.addrs, drain = ?self.drain_limit, "listener removed by reload; closing it");
                l.stop.cancel();
                let drain = self.state.drains.lock().remove(key);
                if let Some(drain) = drain {
                    let limit = self.drain_limit;
                    tokio::spawn(async move {
                        tokio::time::sleep(limit).await;
                        drain.cancel();
                    });
                }
            }
        }
        self.order.retain(|k| wanted.contains(k));
        self.config = config.clone();
        self.certs = certs;
        self.metrics().set_cert_expiries(&cert_expiries(config, &self.slots));
        self.acme.apply(config, &self.state.shared.metrics, &self.state.shutdown);
        Ok(Reloaded::Applied { added, removed: gone.len() })
    }

    /// A reload, whatever set it off (`why`), of a config just read: applied in place, or
    /// refused with its error logged and counted while the running config keeps serving (D2).
    /// Returns the refusal's message.
    pub async fn apply(
        &mut self,
        loaded: Result<crate::lwsws::Loaded, ConfigError>,
        why: &str,
    ) -> Result<(), ReloadError> {
        let outcome = match loaded {
            Err(e) => Err(ReloadError::Config(e)),
            Ok(loaded) => {
                let mut warnings = loaded.warnings;
                match self.reload(&loaded.config, &mut warnings).await {
                    Ok(Reloaded::Unchanged) => {
                        tracing::info!("reload ({why}): the config did not change");
                        Ok(())
                    }
                    Ok(Reloaded::Applied { added, removed }) => {
                        self.metrics().reload(true);
                        for w in &warnings {
                            tracing::warn!("{w}");
                        }
                        tracing::info!(
                            listeners_added = added,
                            listeners_removed = removed,
                            "reload ({why}): new config applied"
                        );
                        Ok(())
                    }
                    Err(e) => Err(ReloadError::Start(e)),
                }
            }
        };
        if let Err(e) = &outcome {
            self.metrics().reload_refused(&e.to_string());
            tracing::error!("reload ({why}) refused: {e}; the running config keeps serving");
        }
        outcome
    }

    /// One rebuild in Kubernetes mode, whatever set it off: the front end builds the config its
    /// resources describe, this server applies it (the last good config keeps serving on any
    /// error), and the front end writes the outcome into the resources' status.
    pub async fn apply_kubernetes(
        &mut self,
        ctl: &crate::k8s::Controller,
        dir: &std::path::Path,
        ddir: &str,
        why: &str,
    ) {
        let crate::k8s::source::Build { loaded, verdicts, routes } = ctl.build(dir, ddir);
        for v in verdicts.iter().filter(|v| v.problem.is_some()) {
            tracing::warn!(resource = %format!("{}/{}", v.namespace, v.name), problem = v.problem.as_deref().unwrap_or(""),
                "LwswsConfig refused; the others are applied");
        }
        let programmed = self.apply(loaded, why).await.map_err(|e| e.to_string());
        ctl.report(&verdicts, programmed.as_ref().map(|_| ()).map_err(String::as_str)).await;
        ctl.report_routes(&routes, programmed.as_ref().map(|_| ()).map_err(String::as_str)).await;
    }

    /// Every TCP address bound, in config order (useful with port 0).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.order.iter().flat_map(|k| self.listening[k].tcp.clone()).collect()
    }

    /// The listeners and the addresses they are bound to, in config order.
    pub fn listeners(&self) -> Vec<(ListenKey, Vec<String>)> {
        self.order.iter().map(|k| (k.clone(), self.listening[k].addrs.clone())).collect()
    }

    /// Counters that live as long as the process, across reloads.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.state.shared.metrics
    }

    /// Starts the admin listener (`/metrics`, `/healthz`, `/readyz`) on `addr`.
    pub async fn start_admin(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        crate::admin::start(addr, self.state.shared.clone(), self.admin_stop.clone()).await
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.state.table.load_full()
    }

    /// Stops accepting, closes idle connections, lets in-flight requests finish for up to
    /// `grace`, then returns. Connections still open then are the caller's to end (the binary
    /// exits): an upgraded one (a websocket, a tunnel) gets the grace period like a request.
    pub async fn shutdown(self, grace: Duration) {
        self.finish(grace, std::future::pending()).await
    }

    /// The whole stop a SIGTERM asks for, as ingress-nginx's shutdown-grace-period and Envoy's
    /// drain do it: `/readyz` fails at once while the listeners go on accepting and serving for
    /// `delay`, so load balancers and Kubernetes withdraw this replica before it refuses anyone
    /// (meanwhile each keep-alive connection ends after its next response); then `shutdown`.
    /// Each message on `nudges` (a further signal) moves on one step: out of the delay, then
    /// out of the grace period.
    pub async fn stop(self, delay: Duration, grace: Duration, nudges: &mut mpsc::UnboundedReceiver<()>) {
        let mut nudged = async || {
            if nudges.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        };
        self.enter(Phase::Draining);
        if !delay.is_zero() {
            tracing::info!(?delay, "told to stop: /readyz answers 503; serving on while load balancers withdraw us");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = nudged() => tracing::info!("signalled again: skipping the rest of the shutdown delay"),
            }
        }
        self.finish(grace, nudged()).await
    }

    async fn finish(self, grace: Duration, nudged: impl std::future::Future<Output = ()>) {
        self.enter(Phase::Stopping);
        tracing::info!(?grace, "stopping: no new connections; idle ones closed; finishing in-flight requests");
        self.state.shutdown.cancel();
        self.state.tracker.close();
        tokio::select! {
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(open = self.state.tracker.len(), "grace period over; closing the remaining connections");
            }
            _ = nudged => {
                tracing::warn!(open = self.state.tracker.len(), "signalled again: closing the remaining connections");
            }
            _ = self.state.tracker.wait() => {}
        }
        self.admin_stop.cancel();
    }

    fn enter(&self, phase: Phase) {
        if self.state.shared.lifecycle.enter(phase) {
            self.metrics().shutdown_phase.set(phase as i64);
        }
    }
}

impl Server {
    /// Whether a certificate, key, CA or credentials file changed on disk since the running
    /// table was built (a renewed certificate needs no config change to be picked up).
    pub fn certificates_changed(&self) -> bool {
        cert_stamps(&self.config) != self.certs
    }
}

/// Each TLS vhost's certificate expiry: an ACME vhost's from what it serves (its certificate
/// may live in a Secret, not on disk), the others' from their certificate file.
fn cert_expiries(config: &Config, slots: &CertSlots) -> Vec<(String, i64)> {
    let expiry = |v: &crate::model::Vhost| match &v.acme {
        Some(a) => slots.current(&a.cert_path).and_then(|ck| crate::tls::expiry::not_after(ck.cert.first()?)),
        None => crate::tls::expiry::leaf_not_after(v.host_ssl_cert.as_ref()?),
    };
    config.vhosts.iter().filter_map(|v| Some((v.name.clone(), expiry(v)?))).collect()
}

/// Every TLS and credentials file the config names, with its modification time.
fn cert_stamps(config: &Config) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>)> {
    let mut files: Vec<std::path::PathBuf> = config
        .vhosts
        .iter()
        .flat_map(|v| {
            [&v.host_ssl_cert, &v.host_ssl_key, &v.host_ssl_ca, &v.client_ssl_ca, &v.client_ssl_cert, &v.client_ssl_key]
        })
        .filter_map(|p| p.clone())
        .collect();
    // Credentials are read once per table too: an edit is picked up like a renewed certificate.
    for v in &config.vhosts {
        files.extend(v.mounts.iter().filter_map(|m| m.basic_auth.clone()));
        files.extend(v.ws_protocols.iter().filter_map(|p| p.pvo("basic-auth").map(std::path::PathBuf::from)));
    }
    files.sort();
    files.dedup();
    files.into_iter().map(|p| (p.clone(), std::fs::metadata(&p).and_then(|m| m.modified()).ok())).collect()
}

/// Binds the table's listeners that `want` selects, or none: a failure closes what it bound.
fn bind_all(config: &Config, table: &RouteTable, want: impl Fn(&ListenKey) -> bool) -> Result<Vec<Bound>, StartError> {
    let mut bound = Vec::new();
    for routes in table.listeners.iter().filter(|l| want(&l.key)) {
        let first = config.vhosts.iter().find(|v| v.listen_key() == routes.key).expect("listener from a vhost");
        let b = listen::bind(&routes.key, &first.socket_options()).map_err(|source| StartError::Bind {
            loc: first.loc.clone(),
            vhost: first.name.clone(),
            what: describe_key(&routes.key),
            source,
        })?;
        tracing::info!(addrs = ?b.addrs, tls = routes.tls, vhosts = ?routes.vhosts.iter().map(|v| &v.name).collect::<Vec<_>>(), "listening");
        bound.push(b);
    }
    Ok(bound)
}

fn describe_key(key: &ListenKey) -> String {
    match key {
        ListenKey::Tcp { port, interface } => {
            format!("port {port} on {}", interface.as_deref().unwrap_or("all interfaces"))
        }
        ListenKey::Unix { path } => format!("unix socket {}", path.display()),
    }
}
