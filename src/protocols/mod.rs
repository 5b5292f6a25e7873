//! The built-in protocols (D18): each one a module implementing `Protocol`, instantiated per
//! vhost from its `ws-protocols` entry and options (pvos), so its shared state (a mirror's
//! members, the status list) is the vhost's own.

mod dumb_increment;
mod echo;
mod frames;
mod idle;
mod mirror;
mod post_demo;
mod protocol;
pub mod raw_proxy;
mod registry;
mod server_status;
mod status;

pub use frames::{BoxFuture, Rx, Ws, close, receive, send};
pub use idle::{Idle, IdlePolicy};
pub use protocol::{Protocol, VhostSummary, WsInfo};
pub use registry::instantiate;
