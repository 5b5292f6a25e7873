//! lwsws: an ingress web server that speaks the libwebsockets lwsws configuration language.
//!
//! ```text
//! lwsws files ─► lwsws::load ─► model::Config (+ warnings with file:line:col)
//!                                   │
//!                                   ▼
//!                 table::compile ─► RouteTable (immutable) ─► ArcSwap ─► listen ─► http::service
//! ```
//! - `lwsws`: the config language only (lexer, two-pass merge of `conf` and `conf.d/*`).
//! - `model`: the typed, validated, source-agnostic config.
//! - `table`: the compiled runtime state; `tls`: rustls configs per vhost.
//! - `listen`: binding, accepting, TLS handshakes by SNI; `http`: the request phases and origins.
//! - `app`: wiring and shutdown. The request path never imports `lwsws`.

pub mod acme;
pub mod admin;
pub mod app;
pub mod check;
pub mod demo;
pub mod http;
pub mod k8s;
pub mod listen;
pub mod logmask;
pub mod lwsws;
pub mod metrics;
pub mod model;
pub mod process;
pub mod protocols;
pub mod reload;
pub mod table;
pub mod telemetry;
pub mod tls;
