//! One file per origin kind (spec 2.1). Each takes the matched mount and the request and
//! returns a response or an `HttpError`; none builds error pages itself.

pub mod cgi;
pub mod file;
pub mod file_cache;
pub mod proxy;
pub mod proxy_body;
pub mod redirect;
pub mod rewrite;
