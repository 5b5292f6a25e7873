//! `>http(s)://` redirect mounts and the trailing-slash redirect (spec 2.3).

use http::{HeaderValue, Response, StatusCode, header};

use crate::http::path::encode_path;
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// 301 to `target`, with lws's empty text/html body.
pub fn moved(target: &str) -> Result<Response<Body>, HttpError> {
    let location =
        HeaderValue::from_str(target).map_err(|_| HttpError::BadRequest("redirect target is not a valid header"))?;
    Ok(Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))
        .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"))
        .body(Body::empty())
        .expect("valid redirect"))
}

/// A redirect mount's Location: the origin, plus the rest of the path with `append-path`.
pub fn mount_target(origin_url: &str, append_path: bool, remainder: &str) -> String {
    if !append_path || remainder.is_empty() {
        return origin_url.to_string();
    }
    let base = origin_url.trim_end_matches('/');
    format!("{base}/{}", encode_path(remainder.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(mount_target("https://x/", false, "/a"), "https://x/");
        assert_eq!(mount_target("https://x/", true, "/a/b"), "https://x/a/b");
        assert_eq!(mount_target("https://x/", true, "/caf\u{e9} a?b"), "https://x/caf%C3%A9%20a%3Fb");
        let r = moved("https://x/").unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["content-length"], "0");
        assert!(moved("bad\nvalue").is_err());
    }
}
