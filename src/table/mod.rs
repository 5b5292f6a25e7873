//! The compiled, immutable runtime state built from a `model::Config`.
//!
//! A `RouteTable` is built whole, aside, and then swapped in; a connection keeps the `Arc` of
//! the table it started with. It owns everything the request path needs, already parsed:
//! header values, cache-control strings, TLS server configs, open access logs, mime rules,
//! basic-auth credentials, and each proxy mount's upstream group (`upstream::ProxyRt`).

mod access_log;
mod compile;
mod conditions;
mod credentials;
mod mime;
mod route;

pub use access_log::{AccessLog, Entry};
pub use compile::{CompileMode, compile};
pub use conditions::{EditsRt, RouteFacts, RouteRt};
pub use credentials::Credentials;
pub use mime::MimeRules;
pub use route::{GlobalRt, ListenerMode, ListenerRoutes, MountRt, RouteTable, VhostProtocols, VhostRt, strip_port};
