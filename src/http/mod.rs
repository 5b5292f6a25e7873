//! The HTTP request path. One routing decision (`routing`) for both carriers: the hyper service
//! (`service`, with the response phase in `respond`) and the HTTP/1 passthrough for plain proxy
//! mounts (`passthrough`). One file per origin under `origin/`, the forwarding rules of a
//! proxied request in `forward`, and the error-to-response mapping in `wire::error`.

pub mod activity;
pub mod auth;
pub mod conn;
pub mod forward;
pub mod io;
pub mod origin;
pub mod passthrough;
pub mod path;
pub mod respond;
pub mod routing;
pub mod service;
pub mod websocket;
