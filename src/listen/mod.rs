//! Sockets: binding the listeners a config asks for, accepting, the TLS handshake (vhost by
//! SNI), and handing each connection to HTTP with its idle and shutdown handling.

mod bind;
mod conn;
pub(crate) mod proxy_protocol;
mod serve;
mod sniff;

pub use bind::{Bound, Socket, bind};
pub use conn::{AppState, accept_loop};
