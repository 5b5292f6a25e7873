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
mod lock;
mod manager;
mod private_files;
mod store;

pub use challenge::{ACME_TLS_ALPN, Answer, Challenges, Published, SharedAnswers, hex, unhex};
pub use lock::{ClaimBackend, OrderLock, StoreFuture, Unshared, lock_ttl, replica_id};
pub use manager::{Managers, renew_at};
pub use store::{CertStore, FileClaim, FileStore, StoreFactory, answer_dir, file_stores};

/// Where ACME state is kept (`stores`) and where answers other replicas published are seen
/// (`watched`: the Kubernetes API; replicas sharing a directory need nothing more than the
/// stores, which read each other's files).
#[derive(Clone)]
pub struct AcmeBackend {
    pub stores: std::sync::Arc<StoreFactory>,
    pub watched: Option<std::sync::Arc<dyn SharedAnswers>>,
}

impl AcmeBackend {
    /// Files, as the config names them.
    pub fn files() -> AcmeBackend {
        AcmeBackend { stores: file_stores(), watched: None }
    }
}
