//! The one place where failures become HTTP responses, with lws's error page bodies.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::Body;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    /// A request body that arrived too slowly (`timeout-secs` between reads, or below the
    /// minimum rate).
    #[error("request body too slow")]
    RequestTimeout,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 416, with the length of the file for `content-range: bytes */LEN`.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("the request's Host belongs to a vhost with other TLS client requirements")]
    Misdirected,
    #[error("basic auth required")]
    Unauthorized,
    /// `reject-service-keywords`: the configured status and text, then the connection closes.
    #[error("rejected by reject-service-keywords")]
    Rejected { status: StatusCode, text: String },
    /// The upstream refused or could not be reached.
    #[error("upstream unavailable")]
    ServiceUnavailable,
    #[error("upstream failed")]
    BadGateway,
    #[error("upstream timed out")]
    GatewayTimeout,
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

/// lws_return_http_status's body, byte-exact.
pub fn lws_error_page(code: u16, msg: &str) -> String {
    format!(
        "<html><head><meta charset=utf-8 http-equiv=\"Content-Language\" content=\"en\"/>\
         <link rel=\"stylesheet\" type=\"text/css\" href=\"/error.css\"/></head>\
         <body><h1>{code}</h1>{msg}</body></html>"
    )
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            HttpError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Rejected { status, .. } => *status,
            HttpError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::BadGateway => StatusCode::BAD_GATEWAY,
            HttpError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            HttpError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut builder = Response::builder().status(status);
        if let HttpError::Unauthorized = self {
            // lws answers 401 with no page, keeping the connection alive (spec 3).
            return builder
                .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"lwsws\""))
                .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"))
                .body(Body::empty())
                .expect("static response");
        }
        let page = self.page();
        if let HttpError::RangeNotSatisfiable(len) = self {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes */{len}"));
        }
        if let HttpError::MethodNotAllowed = self {
            builder = builder.header(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        builder
            .header(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))
            .header(header::CONTENT_LENGTH, page.len())
            .body(Body::full(page))
            .expect("static response")
    }

    /// The error's page: lws's body with the message this error carries, if any.
    pub fn page(&self) -> String {
        let msg = match self {
            HttpError::Rejected { text, .. } => text.as_str(),
            // lws's proxy answers a refused upstream with this text (spec 2.5).
            HttpError::ServiceUnavailable => "Service Temporarily Unavailable",
            _ => "",
        };
        lws_error_page(self.status().as_u16(), &html_escape(msg))
    }
}

/// Configured text is data, never markup.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_byte_exact() {
        assert_eq!(
            lws_error_page(404, ""),
            "<html><head><meta charset=utf-8 http-equiv=\"Content-Language\" content=\"en\"/><link rel=\"stylesheet\" type=\"text/css\" href=\"/error.css\"/></head><body><h1>404</h1></body></html>"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(HttpError::RangeNotSatisfiable(9).into_response().headers()["content-range"], "bytes */9");
        let r = HttpError::Unauthorized.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"lwsws\"");
        assert_eq!(html_escape("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}
