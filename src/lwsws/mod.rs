//! The lwsws configuration LANGUAGE: files → `model::Config`.
//!
//! ```text
//! DIR/conf, DIR/conf.d/* ─► lexer (JSON + # comments, positions) ─► pass 1: global
//!                                                                  └► pass 2: vhosts, mounts, pvos
//!                                                                       └► model::validate
//! ```
//! The passes walk the positioned tree directly instead of going through serde structs: every
//! message must name the `file:line:col` of the key it is about, which serde cannot report.
//! Nothing here binds, opens certificates, or touches the request path.

mod acme;
mod global;
pub mod lexer;
pub mod load;
mod mount;
mod value;
mod vhost;

pub use load::{Loaded, Source, load, load_sources, path_at};
pub use mount::origin_from_str;
