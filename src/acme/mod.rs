//! Certificates that appear by themselves (spec 7, D14): ACME (RFC 8555) through instant-acme.
//! A vhost with an `acme` object (or lws-acme-client pvos) serves TLS from a slot that starts
//! with the certificate on disk, if any, and that a manager task fills and renews. Challenges
//! are answered by the running listeners: http-01 on any plain port, tls-alpn-01 on the TLS
//! port itself.

//!
//! Nothing here is process-wide: the certificate slots (`tls::CertSlots`), the published
//! challenge answers (`Challenges`) and the store (`StoreFactory`) are owned by the server and
//! handed to the managers, the listeners and the request path.

mod challenge;
mod client;
mod manager;
mod store;

pub use challenge::{ACME_TLS_ALPN, Challenges, Published};
pub use manager::{Managers, renew_at};
pub use store::{CertStore, FileStore, StoreFactory, StoreFuture, file_stores};
