//! Reaching upstreams, below both request paths (the hyper service and the passthrough) and
//! below the route table that holds them: a compiled proxy mount (`ProxyRt`), its group of
//! endpoints, how an endpoint is dialed, and the pools of idle connections. Nothing here knows
//! how a request is routed or answered; the forwarding rules are `http::forward`.

/// The largest response head either request path accepts from an upstream (a larger one is a
/// 502, on both).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

mod connect;
mod group;
mod idle;
mod limit;
mod pool;
mod proxy_rt;
mod raw_pool;
mod services;
mod stream;
mod upload;

pub use connect::{Connector, SetupError};
pub use group::{Endpoint, Group, RESENDS, SET_ASIDE};
pub use idle::IdleConns;
pub use limit::{Busy, Limit, Turn};
pub use pool::{Conn, Driven, Pool, SendError, finish_upgrade};
pub use proxy_rt::{LinkMap, NoEndpoint, Picked, ProxyRt};
pub use raw_pool::RawPool;
pub use services::{ServiceEndpoints, Services};
pub use stream::{Stream, UpstreamIo};
pub use upload::{MIN_RATE, Progress, Upload};
