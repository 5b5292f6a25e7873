//! lwsws: an ingress web server that speaks the libwebsockets lwsws configuration language.
//!
//! ```text
//! lwsws files ─► lwsws::load ─┐
//! LwswsConfig (k8s) ──────────┴► model::Config (+ warnings with file:line:col)
//!                                   │
//!                                   ▼
//!    table::compile ─► RouteTable (immutable) ─► ArcSwap ─► listen ─► http (routing → carriers)
//! ```
//! - `lwsws`, `k8s`: front ends (the config language; Kubernetes resources). They produce a
//!   `model::Config`; only `app` applies it.
//! - `model`: the typed, validated, source-agnostic config.
//! - `table`: the compiled runtime state; `tls`: rustls configs and certificate slots;
//!   `upstream`: proxy mounts' endpoint groups, connectors and pools.
//! - `listen`: binding, accepting, TLS handshakes by SNI; `http`: the one routing decision and
//!   its two carriers (hyper, the HTTP/1 passthrough); `wire`: bodies, the error mapping.
//! - `app`: wiring, reloads and shutdown; it owns the ACME state (`acme`).
//!
//! The allowed arrows between them are in `docs/architecture.md`, and
//! `scripts/check-imports.py` checks them.

pub mod acme;
pub mod admin;
pub mod app;
pub mod check;
pub mod demo;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod k8s;
pub mod lifecycle;
pub mod listen;
pub mod logmask;
pub mod lograte;
pub mod lwsws;
pub mod metrics;
pub mod model;
pub mod process;
pub mod protocols;
pub mod reload;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wire;
