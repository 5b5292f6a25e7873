//! What the request path, its origins and the built-in protocols answer with, below all of
//! them: a response body (`body`), the one mapping from errors to HTTP answers (`error`), and
//! the stream a connection becomes after `101 Switching Protocols` (`upgrade`).

pub mod body;
pub mod error;
pub mod upgrade;
