//! TLS with rustls: one `ServerConfig` per vhost (its own certificate, client verification,
//! ciphers and ALPN), chosen per connection from the ClientHello's SNI in `listen`; and the
//! slots that managed certificates are served from.

mod ciphers;
pub mod expiry;
mod server;
mod slots;

pub use server::{check_pem_pair, server_config};
pub use slots::{CertSlots, ManagedCert, Slot};
