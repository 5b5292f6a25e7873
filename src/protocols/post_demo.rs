//! `protocol-post-demo` (spec 6), on a `callback://` mount: a form POST (urlencoded or
//! multipart) with fields `text`, `send`, `file`, `upload` is answered with a table of what
//! arrived. An uploaded file of up to 100000 bytes is read into memory, counted and dropped:
//! nothing is written to disk (lws kept each upload in /tmp, and a demo left open to the
//! internet filled the disk). At most `MAX_FORMS` forms are read at once, so what the demo
//! holds is bounded across requests too: 8 x (256 KiB at most each) = 2 MiB.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http::request::Parts;
use http::{HeaderValue, Method, Response, header};
use http_body_util::{BodyExt, BodyStream, Limited};
use hyper::body::Incoming;

use super::{BoxFuture, Protocol};
use crate::wire::body::Body;
use crate::wire::error::HttpError;

const MAX_UPLOAD: usize = 100_000;
/// A whole form, urlencoded, is small; this bounds what is buffered.
const MAX_URLENCODED: usize = 256 * 1024;
/// Forms read at the same time; one more is answered 503 rather than held in memory.
const MAX_FORMS: usize = 8;
/// How long a form may take to arrive whole (lws's default `timeout-secs`).
const FORM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug)]
pub struct PostDemo {
    forms: tokio::sync::Semaphore,
}

impl Default for PostDemo {
    fn default() -> Self {
        PostDemo { forms: tokio::sync::Semaphore::new(MAX_FORMS) }
    }
}

struct Field {
    name: String,
    value: String,
}

impl Protocol for PostDemo {
    fn name(&self) -> &str {
        "protocol-post-demo"
    }

    fn speaks_websocket(&self) -> bool {
        false
    }

    fn http(
        self: Arc<Self>,
        parts: Parts,
        body: Incoming,
        _remainder: String,
    ) -> BoxFuture<Result<Response<Body>, HttpError>> {
        Box::pin(async move {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                return Ok(page(&[]));
            }
            if parts.method != Method::POST {
                return Err(HttpError::MethodNotAllowed);
            }
            // Held until the answer is built: the form's bytes are dropped by then.
            let Ok(_reading) = self.forms.try_acquire() else {
                return Err(HttpError::ServiceUnavailable);
            };
            let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let read = async {
                if let Ok(boundary) = multer::parse_boundary(ctype) {
                    multipart(body, boundary).await
                } else {
                    urlencoded(body).await
                }
            };
            // A form that stops arriving gives its place back: one of eight must not be held
            // by a client that sends a length and no body.
            let fields = tokio::time::timeout(FORM_TIMEOUT, read).await.map_err(|_| HttpError::RequestTimeout)??;
            Ok(page(&fields))
        })
    }
}

async fn multipart(body: Incoming, boundary: String) -> Result<Vec<Field>, HttpError> {
    let stream = BodyStream::new(body)
        .try_filter_map(|frame| futures::future::ready(Ok(frame.into_data().ok())))
        .map_err(std::io::Error::other);
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(MAX_UPLOAD as u64 + 64 * 1024).per_field(MAX_UPLOAD as u64));
    let mut mp = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut fields = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. }) => {
                return Err(HttpError::PayloadTooLarge);
            }
            Err(_) => return Err(HttpError::BadRequest("malformed multipart body")),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let data: Bytes = field.bytes().await.map_err(|e| match e {
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
                HttpError::PayloadTooLarge
            }
            _ => HttpError::BadRequest("malformed multipart body"),
        })?;
        let value = match file_name {
            Some(f) => format!("{f} ({} bytes)", data.len()),
            None => String::from_utf8_lossy(&data).into_owned(),
        };
        fields.push(Field { name, value });
    }
    Ok(fields)
}

async fn urlencoded(body: Incoming) -> Result<Vec<Field>, HttpError> {
    let bytes = Limited::new(body, MAX_URLENCODED).collect().await.map_err(|_| HttpError::PayloadTooLarge)?.to_bytes();
    Ok(form_urlencoded::parse(&bytes).map(|(k, v)| Field { name: k.into_owned(), value: v.into_owned() }).collect())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(fields: &[Field]) -> Response<Body> {
    let mut rows = String::new();
    for f in fields {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.name),
            f.value.len(),
            escape(&f.value)
        ));
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Form results</title></head><body>\
         <h1>Form results</h1><table><tr><th>Name</th><th>Length</th><th>Value</th></tr>{rows}</table>\
         <p><a href=\"/\">back</a></p></body></html>"
    );
    Response::builder()
        .header(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))
        .header(header::CONTENT_LENGTH, html.len())
        .body(Body::full(html))
        .expect("valid response")
}
