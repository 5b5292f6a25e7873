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
pub mod endpoints;
pub mod frontends;
pub mod gateway;
pub mod ingress;
pub mod lease;
pub mod routes;
pub mod secrets;
pub mod source;
pub mod watched;

pub use controller::Controller;

/// FNV-1a over `parts`: a short name that is stable across runs and builds (unlike the std
/// hasher), for Secret names and the directories of Secrets' files.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}
pub use crd::{LwswsConfig, LwswsConfigSpec, LwswsConfigStatus};
