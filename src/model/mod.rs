//! The typed, validated, source-agnostic configuration.
//!
//! Both front ends (the lwsws files today, Kubernetes objects later) adapt into these types;
//! nothing downstream knows where a config came from. Every type derives `PartialEq` so a
//! reload can skip a config that did not change.

pub mod acme;
mod config;
mod loc;
mod mount;
pub mod protocols;
mod route;
mod validate;
mod vhost;

pub use config::{Config, Global, RejectRule};
pub use loc::{ConfigError, Loc, Warning};
pub use mount::{CacheRule, Mount, Origin, Upstream};
pub use route::{
    HeaderEdits, HostMatch, PathRewrite, RouteMatch, RouteRedirect, RouteRule, ServiceRef, ServiceRoute, ValueMatch,
    WeightedBackend,
};
pub use validate::{BUILTIN_PROTOCOLS, validate};
pub use vhost::{ListenKey, Protocol, ProxyProtocol, SocketOptions, Vhost};
