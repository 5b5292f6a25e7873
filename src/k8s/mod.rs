//! Kubernetes mode: `LwswsConfig` custom resources (and the TLS Secrets they name) are a second
//! front end to the same model as the files. A resource's spec has the lwsws shape, so it is
//! rendered to lwsws JSON and read by the same adapter; errors point at the resource's field.
//!
//! ```text
//! conf + conf.d/* ─┐
//! LwswsConfig (ns/name order), Secrets ─► source::build ─► lwsws::load_sources ─► model ─► reload
//!                                              └► verdicts ─► status conditions (Accepted, Programmed)
//! ```

pub mod acme_store;
pub mod controller;
pub mod crd;
pub mod source;

pub use controller::Controller;
pub use crd::{LwswsConfig, LwswsConfigSpec, LwswsConfigStatus};
