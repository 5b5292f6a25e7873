//! What the Kubernetes route front ends (Gateway API `HTTPRoute`s, `Ingress`es) add to a mount:
//! conditions on the request beyond its path, header edits, redirects built from the request,
//! and backends that are Services reached through their endpoints. The lwsws files never set
//! these; a mount from them has `route: None` and an origin of its own kind.

use serde::Serialize;

/// How a vhost's name is compared with a request's Host (and a TLS handshake's SNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub enum HostMatch {
    /// lwsws (D3): the name, or any name ending in `.name`.
    #[default]
    Lwsws,
    /// The name only (case-insensitive): a Gateway or Ingress hostname without a wildcard.
    Exact,
    /// `*.suffix`: one or more labels before the suffix (Gateway API); `name` is the suffix.
    Wildcard,
    /// `*.suffix`: exactly one label before it (Ingress); `name` is the suffix.
    OneLabel,
    /// Never by name: the listener's catch-all, taking what no other vhost on the port takes.
    Never,
}

/// One header or query parameter condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueMatch {
    /// Header names are kept lowercase; query parameter names as written (they are
    /// case-sensitive).
    pub name: String,
    pub value: String,
    /// `value` is a regular expression (RegularExpression match type) rather than exact.
    pub regex: bool,
}

/// The conditions of one Gateway API match (all must hold) beyond the mount's path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RouteMatch {
    /// A RegularExpression path match: the whole normalised path must match it. The mount's
    /// mountpoint is then `/` and ranks the rule like a prefix of the pattern's length.
    pub path_regex: Option<String>,
    pub method: Option<String>,
    pub headers: Vec<ValueMatch>,
    pub query: Vec<ValueMatch>,
}

/// Header edits (Gateway API RequestHeaderModifier / ResponseHeaderModifier), in this order:
/// `set` replaces, `add` appends to what is there, `remove` drops by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HeaderEdits {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// What a route rule adds to its mount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RouteRule {
    pub matches: RouteMatch,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// Where the rule came from (`httproute ns/name rules[0]`), for logs.
    pub source: String,
    /// How the route's own hostname ranks, before everything else: the length of a matching
    /// non-wildcard hostname, then of the hostname (Gateway API precedence across routes).
    pub host_rank: (usize, usize),
}

/// A Service port, as a backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    /// The Service's port (not the pods' target port).
    pub port: u16,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// One of a rule's backends and its share of the requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedBackend {
    pub weight: u32,
    /// `None`: a backend that cannot be used (unknown kind, not found, not permitted): its share
    /// of the requests is answered 500, as Gateway API asks.
    pub service: Option<ServiceRef>,
}

/// How the path sent to a backend is made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub enum PathRewrite {
    /// The request's path as it came.
    #[default]
    Keep,
    /// The matched prefix (the mountpoint) replaced by this.
    Prefix(String),
    /// The whole path replaced by this (the query is kept).
    Full(String),
}

/// A mount whose requests go to Services' endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServiceRoute {
    /// Empty: every request is a 500 (a rule with nothing to send to).
    pub backends: Vec<WeightedBackend>,
    /// URLRewrite `hostname`: the Host sent upstream; unset, the client's Host goes on.
    pub host_rewrite: Option<String>,
    pub path: PathRewrite,
}

/// A redirect built from the request (Gateway API RequestRedirect): each part unset keeps the
/// request's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: PathRewrite,
    pub status: u16,
    /// The listener's port, the default when neither `port` nor `scheme` is set.
    pub listener_port: u16,
}
