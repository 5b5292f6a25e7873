//! An upstream is a group of endpoints: the proxy origin picks one per request. Each endpoint
//! has its own connector and its own pools, so a pooled connection always goes back to the
//! endpoint it came from. A group from the files holds the one address the mount names; a
//! Service's endpoints are kept in `services`, which picks among them by load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// Until when (milliseconds on `clock()`) this endpoint is set aside after refusing a
    /// connection: others are picked first.
    aside_until: AtomicU64,
}

/// How long an endpoint that refused a connection is passed over while others are there.
pub const SET_ASIDE: Duration = Duration::from_secs(5);

/// How many other endpoints a request that could not be sent is tried on, at most.
pub const RESENDS: usize = 2;

/// Milliseconds since the first call: the clock `aside_until` counts on.
fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Endpoint {
    /// `plain`: the passthrough may use it (an HTTP/1 endpoint without TLS); `max_in_flight`:
    /// requests at once (0: no limit).
    pub fn new(name: String, connector: Connector, plain: bool, max_in_flight: usize) -> Self {
        let raw = plain.then(|| Arc::new(RawPool::new(connector.clone())));
        Endpoint {
            name,
            pool: Arc::new(Pool::new(connector)),
            raw,
            limit: Limit::new(max_in_flight),
            aside_until: AtomicU64::new(0),
        }
    }

    /// Sets the endpoint aside for `how_long`: it refused or failed to take a connection.
    pub fn set_aside(&self, how_long: Duration) {
        self.aside_until.store(clock() + how_long.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether the endpoint was set aside and its time is not over.
    pub fn is_aside(&self) -> bool {
        let until = self.aside_until.load(Ordering::Relaxed);
        until != 0 && clock() < until
    }
}

/// Power of two choices: of two endpoints taken at random, the one with fewer requests in
/// flight, preferring one that is not set aside. `None` for an empty list.
pub fn least_loaded_of_two(list: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
    match list.len() {
        0 => None,
        1 => Some(&list[0]),
        n => {
            let i = random_below(n);
            let j = (i + 1 + random_below(n - 1)) % n;
            let (a, b) = (&list[i], &list[j]);
            let chosen = match (a.is_aside(), b.is_aside()) {
                (false, true) => a,
                (true, false) => b,
                (true, true) => list.iter().find(|e| !e.is_aside()).unwrap_or(a),
                (false, false) if b.limit.in_flight() < a.limit.in_flight() => b,
                (false, false) => a,
            };
            Some(chosen)
        }
    }
}

/// A number in `0..n` (`n` > 0), from a per-thread xorshift: fast, and good enough to spread
/// load (nothing depends on it being unpredictable).
pub fn random_below(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = std::collections::hash_map::RandomState::new();
            std::hash::BuildHasher::hash_one(&seed, std::thread::current().id()) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 11) % n as u64) as usize
    })
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

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
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
        Arc::new(Endpoint::new(format!("http://127.0.0.1:{port}"), c, true, 8))
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

    #[tokio::test]
    async fn two_choices_prefer_the_less_loaded_and_skip_endpoints_set_aside() {
        let list = vec![endpoint(1), endpoint(2)];
        assert!(least_loaded_of_two(&[]).is_none());
        // With two endpoints both are always the candidates: the idle one wins.
        let _busy = list[0].limit.enter(std::time::Duration::from_secs(1)).await.unwrap();
        for _ in 0..20 {
            assert_eq!(least_loaded_of_two(&list).unwrap().name, list[1].name);
        }
        list[1].set_aside(Duration::from_secs(60));
        assert!(list[1].is_aside());
        for _ in 0..20 {
            assert_eq!(least_loaded_of_two(&list).unwrap().name, list[0].name, "set aside beats busy");
        }
        list[0].set_aside(Duration::from_secs(60));
        assert!(least_loaded_of_two(&list).is_some(), "all set aside: one is still tried");
        list[1].set_aside(Duration::ZERO);
        assert!(!list[1].is_aside());
        // Three endpoints, none busy: each gets a share.
        let three = vec![endpoint(1), endpoint(2), endpoint(3)];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(least_loaded_of_two(&three).unwrap().name.clone());
        }
        assert_eq!(seen.len(), 3);
        for n in 1..10 {
            assert!((0..100).all(|_| random_below(n) < n));
        }
    }
}
