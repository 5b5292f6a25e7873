//! TLS with rustls: one `ServerConfig` per vhost (its own certificate, client verification,
//! ciphers and ALPN), chosen per connection from the ClientHello's SNI in `listen`.

mod ciphers;
pub mod expiry;
mod server;

pub use server::server_config;
