//! The Gateway API front end: `GatewayClass`es whose controller name is ours, their
//! `Gateway`s, the `HTTPRoute`s attached to them and the `ReferenceGrant`s that let them reach
//! across namespaces become hostnames and mounts of the one model (`translate`), with the
//! status each object earns.

pub mod translate;
pub mod types;

pub use translate::{GatewayBuild, GatewayInput, SecretLookup, StatusUpdate, translate};
