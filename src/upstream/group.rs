//! An upstream is a group of endpoints: the proxy origin picks one per request. Each endpoint
//! has its own connector and its own pools, so a pooled connection always goes back to the
//! endpoint it came from. A group from the files holds the one address the mount names; the
//! Kubernetes front ends will fill it with a Service's ready endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::connect::Connector;
use super::limit::Limit;
use super::pool::Pool;
use super::raw_pool::RawPool;

/// One address to send requests to, with its connections.
pub struct Endpoint {
    /// `scheme://authority` (or the socket path), for logs.
    pub name: String,
    /// The hyper path's pool.
    pub pool: Arc<Pool>,
    /// The passthrough's plain sockets; `None` when the passthrough cannot speak to this
    /// endpoint (TLS).
    pub raw: Option<Arc<RawPool>>,
    /// Requests in flight, for both request paths.
    pub limit: Limit,
}

impl Endpoint {
    /// `plain`: the passthrough may use it (an HTTP/1 endpoint without TLS); `max_in_flight`:
    /// requests at once (0: no limit).
    pub fn new(name: String, connector: Connector, plain: bool, max_in_flight: usize) -> Self {
        let raw = plain.then(|| Arc::new(RawPool::new(connector.clone())));
        Endpoint { name, pool: Arc::new(Pool::new(connector)), raw, limit: Limit::new(max_in_flight) }
    }
}

/// The endpoints of one upstream, taken in turn.
pub struct Group {
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

impl Group {
    /// A group of at least one endpoint.
    pub fn new(endpoints: Vec<Arc<Endpoint>>) -> Option<Self> {
        (!endpoints.is_empty()).then(|| Group { endpoints, next: AtomicUsize::new(0) })
    }

    /// The endpoint for the next request: round robin.
    pub fn pick(&self) -> &Arc<Endpoint> {
        if self.endpoints.len() == 1 {
            return &self.endpoints[0];
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    /// Whether every endpoint can be reached by the passthrough.
    pub fn all_plain(&self) -> bool {
        self.endpoints.iter().all(|e| e.raw.is_some())
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Upstream;

    fn endpoint(port: u16) -> Arc<Endpoint> {
        let up = Upstream::Tcp { host: "127.0.0.1".into(), port };
        let c = Connector::new(&up, None, std::time::Duration::from_secs(1)).unwrap();
        Arc::new(Endpoint::new(format!("http://127.0.0.1:{port}"), c, true, 0))
    }

    #[test]
    fn endpoints_are_taken_in_turn() {
        assert!(Group::new(vec![]).is_none());
        let one = Group::new(vec![endpoint(1)]).unwrap();
        assert_eq!(one.pick().name, one.pick().name);
        let g = Group::new(vec![endpoint(1), endpoint(2), endpoint(3)]).unwrap();
        let picked: Vec<String> = (0..6).map(|_| g.pick().name.clone()).collect();
        assert_eq!(picked[0..3], picked[3..6]);
        assert_ne!(picked[0], picked[1]);
        assert_ne!(picked[1], picked[2]);
        assert!(g.all_plain() && g.len() == 3);
    }
}
