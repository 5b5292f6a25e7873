//! `>http(s)://` redirect mounts and the trailing-slash redirect (spec 2.3).

use http::{HeaderValue, Response, StatusCode, header};

use crate::http::path::encode_path;
use crate::model::{PathRewrite, RouteRedirect};
use crate::wire::body::Body;
use crate::wire::error::HttpError;

/// 301 to `target`, with lws's empty text/html body.
pub fn moved(target: &str) -> Result<Response<Body>, HttpError> {
    to(target, StatusCode::MOVED_PERMANENTLY)
}

/// `status` to `target`, with lws's empty text/html body.
pub fn to(target: &str, status: StatusCode) -> Result<Response<Body>, HttpError> {
    let location =
        HeaderValue::from_str(target).map_err(|_| HttpError::BadRequest("redirect target is not a valid header"))?;
    Ok(Response::builder()
        .status(status)
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

/// What a Gateway API redirect reads of the request.
pub struct RequestUrl<'a> {
    pub tls: bool,
    /// The Host, port included if it had one.
    pub host: &'a str,
    /// The normalised path, and the part of it after the mountpoint.
    pub path: &'a str,
    pub remainder: &'a str,
    pub query: Option<&'a str>,
}

/// A Gateway API RequestRedirect's Location: each part the filter leaves unset is the
/// request's; the port is left out where it is the scheme's own.
pub fn route_target(r: &RouteRedirect, req: &RequestUrl) -> String {
    let scheme = r.scheme.clone().unwrap_or_else(|| if req.tls { "https" } else { "http" }.to_string());
    let host = match &r.hostname {
        Some(h) => h.as_str(),
        None => crate::table::strip_port(req.host),
    };
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) if s == "https" => 443,
        (None, Some(_)) => 80,
        (None, None) => r.listener_port,
    };
    let default_port = matches!((scheme.as_str(), port), ("http", 80) | ("https", 443));
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let authority = if default_port { host } else { format!("{host}:{port}") };
    let path = match &r.path {
        PathRewrite::Keep => encode_path(req.path),
        PathRewrite::Full(p) => encode_path(p),
        // The matched prefix replaced, joined as a proxy mount joins its origin path.
        PathRewrite::Prefix(p) => crate::http::forward::upstream_path(p, req.remainder, None),
    };
    let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_redirects_fill_in_from_the_request() {
        let r = |scheme: Option<&str>, hostname: Option<&str>, port: Option<u16>, path: PathRewrite| RouteRedirect {
            scheme: scheme.map(str::to_string),
            hostname: hostname.map(str::to_string),
            port,
            path,
            status: 302,
            listener_port: 8080,
        };
        let req =
            RequestUrl { tls: false, host: "a.test:8080", path: "/foo/bar", remainder: "/bar", query: Some("x=1") };
        assert_eq!(route_target(&r(None, None, None, PathRewrite::Keep), &req), "http://a.test:8080/foo/bar?x=1");
        assert_eq!(
            route_target(&r(None, Some("b.test"), None, PathRewrite::Keep), &req),
            "http://b.test:8080/foo/bar?x=1"
        );
        assert_eq!(route_target(&r(Some("https"), None, None, PathRewrite::Keep), &req), "https://a.test/foo/bar?x=1");
        assert_eq!(route_target(&r(Some("http"), None, None, PathRewrite::Keep), &req), "http://a.test/foo/bar?x=1");
        assert_eq!(
            route_target(&r(Some("https"), None, Some(8443), PathRewrite::Keep), &req),
            "https://a.test:8443/foo/bar?x=1"
        );
        assert_eq!(
            route_target(&r(None, None, Some(80), PathRewrite::Full("/one".into())), &req),
            "http://a.test/one?x=1"
        );
        assert_eq!(
            route_target(&r(None, None, None, PathRewrite::Prefix("/xyz".into())), &req),
            "http://a.test:8080/xyz/bar?x=1"
        );
        let bare = RequestUrl { tls: true, host: "a.test", path: "/foo", remainder: "", query: None };
        let mut https = r(None, None, Some(443), PathRewrite::Prefix("/xyz".into()));
        assert_eq!(route_target(&https, &bare), "https://a.test/xyz");
        https.path = PathRewrite::Prefix(String::new());
        assert_eq!(route_target(&https, &bare), "https://a.test/");
    }

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
