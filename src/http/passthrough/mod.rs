//! The HTTP/1 passthrough: plain proxy requests relayed between two sockets without hyper.
//!
//! Most of a reverse proxy's CPU goes on taking each request and response apart and putting it
//! back together (measured: hyper's server and client together cost lwsws three times nginx's
//! user time per proxied request). For the common case, an HTTP/1.1 request with its whole body
//! at hand on a `http://` mount, this module parses the client's head once, writes the
//! upstream's request straight from it, and relays the response's bytes, rewriting only its
//! head (and, for HTML on mounts that rewrite links, the body, through the same rewriter as the
//! hyper path). Everything else (HTTP/1.0, upgrades, `Expect`, streamed uploads, auth, TLS
//! upstreams, tracing) is declined before anything is sent, and the hyper path gets the request
//! exactly as it arrived.
//!
//! Where the two paths differ, on purpose: an idempotent request on a pooled connection that
//! closes without answering is sent once more on a new connection (as nginx does). (On both, an
//! upstream that stalls mid-body for the proxy timeout has the response cut.)
//!
//! The behaviour is the hyper path's: the same route lookup, forwarding headers (D13),
//! response headers, error pages, metrics and access log, on the same connection deadlines.

mod buffers;
pub(crate) mod chunked;
mod exchange;
mod relay;
pub(crate) mod request;
pub(crate) mod response;
mod serve;

pub use serve::{Outcome, applies, serve_one};
