//! What a request on one connection knows about that connection, and the state that outlives
//! any one config (files cache, metrics, published ACME challenge answers).

use std::net::SocketAddr;
use std::sync::Arc;

use super::activity::Activity;
use super::origin::file_cache::FileCache;
use crate::acme::Challenges;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::table::{ListenerRoutes, RouteTable, VhostRt};
use crate::wire::upgrade::UpgradeSlot;

/// State that outlives any one config: it survives reloads. Owned by the server.
#[derive(Debug, Default)]
pub struct Shared {
    pub files: FileCache,
    pub metrics: Arc<Metrics>,
    /// The http-01 answers (and tls-alpn-01 certificates) the ACME managers publish.
    pub challenges: Arc<Challenges>,
    /// Serving, or how far along the stop is: connections end early once it has begun.
    pub lifecycle: Lifecycle,
}

/// Everything a request on one connection needs; built once per connection.
pub struct ConnCtx {
    pub table: Arc<RouteTable>,
    pub listener: usize,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    /// The vhost whose certificate the TLS handshake used (chosen by SNI).
    pub handshake_vhost: Option<Arc<VhostRt>>,
    pub shared: Arc<Shared>,
    pub activity: Arc<Activity>,
    /// Set by a request answered with 101: what runs on the stream afterwards.
    pub upgrade: UpgradeSlot,
    /// Plain HTTP that arrived on a TLS port with `redirect-http`: every request is sent to
    /// the same URL over https (spec 5).
    pub redirect_to_https: bool,
}

impl ConnCtx {
    /// A plain-HTTP connection's context; TLS connections set `tls` and `handshake_vhost`.
    pub fn new(
        table: Arc<RouteTable>,
        listener: usize,
        peer: Option<SocketAddr>,
        shared: Arc<Shared>,
        keepalive: std::time::Duration,
    ) -> Self {
        ConnCtx {
            table,
            listener,
            peer,
            tls: false,
            handshake_vhost: None,
            shared,
            activity: Arc::new(Activity::new(keepalive)),
            upgrade: UpgradeSlot::default(),
            redirect_to_https: false,
        }
    }

    pub fn routes(&self) -> &ListenerRoutes {
        &self.table.listeners[self.listener]
    }

    pub fn routes_key(&self) -> crate::model::ListenKey {
        self.routes().key.clone()
    }

    /// The client's address as the forwarding headers and logs show it.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.peer.map(|p| p.ip().to_canonical())
    }
}
