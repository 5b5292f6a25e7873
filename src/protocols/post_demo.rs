//! `protocol-post-demo` (spec 6), on a `callback://` mount: a form POST (urlencoded or
//! multipart) with fields `text`, `send`, `file`, `upload` is answered with a table of what
//! arrived. An uploaded file of up to 100000 bytes is kept in the temp dir as `post-file-N`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

#[derive(Debug, Default)]
pub struct PostDemo {
    uploads: AtomicU64,
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
            let ctype = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let fields = if let Ok(boundary) = multer::parse_boundary(ctype) {
                self.multipart(body, boundary).await?
            } else {
                urlencoded(body).await?
            };
            Ok(page(&fields))
        })
    }
}

impl PostDemo {
    async fn multipart(&self, body: Incoming, boundary: String) -> Result<Vec<Field>, HttpError> {
        let stream = BodyStream::new(body)
            .try_filter_map(|frame| futures::future::ready(Ok(frame.into_data().ok())))
            .map_err(std::io::Error::other);
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new().whole_stream(MAX_UPLOAD as u64 + 64 * 1024).per_field(MAX_UPLOAD as u64),
        );
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
                Some(f) => {
                    let saved = self.save(&data)?;
                    format!("{f} ({} bytes, saved as {saved})", data.len())
                }
                None => String::from_utf8_lossy(&data).into_owned(),
            };
            fields.push(Field { name, value });
        }
        Ok(fields)
    }

    fn save(&self, data: &[u8]) -> Result<String, HttpError> {
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("post-file-{}-{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| HttpError::Internal(format!("upload: {e}")))?;
        f.write_all(data).map_err(|e| HttpError::Internal(format!("upload: {e}")))?;
        Ok(path.display().to_string())
    }
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
