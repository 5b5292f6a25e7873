//! Wiring: compile the config, bind every listener, drop privileges, serve until told to stop,
//! then drain. Owns shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::service::Shared;
use crate::listen::{self, AppState, Bound};
use crate::model::{Config, ConfigError, Warning};
use crate::table::{self, CompileMode};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{loc}: vhost \"{vhost}\": cannot listen on {what}: {source}")]
    Bind { loc: crate::model::Loc, vhost: String, what: String, source: std::io::Error },
    #[error("{0}")]
    Process(String),
}

/// A running server: its bound addresses, and the handle to stop it.
pub struct Server {
    pub listeners: Vec<(crate::model::ListenKey, Vec<String>)>,
    tcp: Vec<SocketAddr>,
    state: Arc<AppState>,
}

impl Server {
    /// Compiles `config`, binds its listeners and starts serving on the current runtime.
    pub async fn start(config: &Config, warnings: &mut Vec<Warning>) -> Result<Server, StartError> {
        let table = table::compile(config, CompileMode::Serve, warnings)?;
        crate::process::set_nofile(&config.global).map_err(StartError::Process)?;
        let mut bound: Vec<Bound> = Vec::new();
        for routes in &table.listeners {
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
        crate::process::drop_after_bind(&config.global).map_err(StartError::Process)?;
        let state = Arc::new(AppState {
            table: ArcSwap::from_pointee(table),
            shared: Arc::new(Shared::default()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let mut listeners = Vec::new();
        let mut tcp = Vec::new();
        for b in bound {
            tcp.extend(b.tcp_addrs());
            listeners.push((b.key.clone(), b.addrs.clone()));
            for socket in b.sockets {
                tokio::spawn(listen::accept_loop(socket, b.key.clone(), state.clone()));
            }
        }
        Ok(Server { listeners, tcp, state })
    }

    /// Every TCP address bound, in config order (useful with port 0).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then returns.
    pub async fn shutdown(self, grace: Duration) {
        self.state.shutdown.cancel();
        self.state.tracker.close();
        if tokio::time::timeout(grace, self.state.tracker.wait()).await.is_err() {
            tracing::warn!(open = self.state.tracker.len(), "grace period over; closing the remaining connections");
        }
    }
}

fn describe_key(key: &crate::model::ListenKey) -> String {
    match key {
        crate::model::ListenKey::Tcp { port, interface, .. } => {
            format!("port {port} on {}", interface.as_deref().unwrap_or("all interfaces"))
        }
        crate::model::ListenKey::Unix { path } => format!("unix socket {}", path.display()),
    }
}
