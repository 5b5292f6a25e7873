//! `file://` mounts (spec 2.4): default documents, ETag/304, single and multipart ranges, the
//! mount's cache-control, and content types with the 415 rule (D9).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::file_cache::FileCache;
use crate::table::MountRt;
use crate::wire::body::{Body, Segment};
use crate::wire::error::HttpError;

/// More ranges than this in one request is an abuse, not a download manager.
const MAX_RANGES: usize = 32;
const BOUNDARY: &str = "_lws";

pub fn serve(
    dir: &Path,
    mount: &MountRt,
    remainder: &str,
    req: &Parts,
    cache: &FileCache,
) -> Result<Response<Body>, HttpError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(HttpError::MethodNotAllowed);
    }
    let default = match mount.model.default.as_deref() {
        None | Some("") | Some("/") => "index.html",
        Some(d) => d.trim_start_matches('/'),
    };
    let (path, meta) = resolve(dir, remainder, default)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let content_type = mount.mime.lookup(name).ok_or(HttpError::UnsupportedMediaType)?;
    let len = meta.len();
    let etag = format!("{:08X}{:08X}", len as u32, meta.mtime() as u32);
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header");

    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(header::ETAG, etag_value.clone())
        .header(header::CACHE_CONTROL, mount.cache_control.clone());

    if etag_matches(req.headers.get(header::IF_NONE_MATCH), &etag) {
        let mut r = Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag_value)
            .header(header::CACHE_CONTROL, mount.cache_control.clone())
            .body(Body::empty())
            .expect("valid 304");
        r.headers_mut().remove(header::CONTENT_LENGTH);
        return Ok(r);
    }

    let ranges = match requested_ranges(&req.headers, &etag) {
        None => None,
        Some(spec) => Some(parse_ranges(spec, len).ok_or(HttpError::RangeNotSatisfiable(len))?),
    };
    let multi = ranges.as_ref().is_some_and(|r| r.len() > 1);
    if let Some(ct) = content_type.filter(|_| !multi) {
        builder = builder.header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(ct).map_err(|_| HttpError::Internal("bad mimetype".into()))?,
        );
    }
    let head = req.method == Method::HEAD;
    let content = Content::open(&path, &meta, cache)?;
    let (status, body) = match ranges.as_deref() {
        None => (StatusCode::OK, content.slice(0, len)),
        Some([(a, b)]) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            (StatusCode::PARTIAL_CONTENT, content.slice(*a, b - a + 1))
        }
        Some(many) => {
            builder = builder.header(header::CONTENT_TYPE, format!("multipart/byteranges; boundary={BOUNDARY}"));
            (StatusCode::PARTIAL_CONTENT, multipart(&content, many, content_type, len))
        }
    };
    let body = Body::from_segments(body);
    let body_len = body.len();
    builder
        .status(status)
        .header(header::CONTENT_LENGTH, body_len)
        .body(if head { Body::empty() } else { body })
        .map_err(|e| HttpError::Internal(e.to_string()))
}

/// origin dir + remainder; an empty remainder, a trailing `/` or a directory gets `default`.
fn resolve(dir: &Path, remainder: &str, default: &str) -> Result<(PathBuf, std::fs::Metadata), HttpError> {
    let rel = remainder.trim_start_matches('/');
    let mut path = dir.join(rel);
    if rel.is_empty() || remainder.ends_with('/') {
        path.push(default);
    }
    let mut meta = std::fs::metadata(&path).map_err(|_| HttpError::NotFound)?;
    if meta.is_dir() {
        path.push(default);
        meta = std::fs::metadata(&path).map_err(|_| HttpError::NotFound)?;
    }
    if !meta.is_file() {
        return Err(HttpError::NotFound);
    }
    Ok((path, meta))
}

/// lws compares the ETag exactly; quoted and weak forms are accepted too, as clients send them.
fn etag_matches(header: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(v) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').map(|t| t.trim().trim_start_matches("W/").trim_matches('"')).any(|t| t == etag || t == "*")
}

/// The Range header, unless an `If-Range` that does not match cancels it.
fn requested_ranges<'h>(headers: &'h HeaderMap, etag: &str) -> Option<&'h str> {
    let range = headers.get(header::RANGE)?.to_str().ok()?;
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && !etag_matches(Some(if_range), etag)
    {
        return None;
    }
    Some(range)
}

/// `bytes=a-b,c-,-n` → inclusive ranges within `len`; `None` when unsatisfiable or malformed.
pub fn parse_ranges(spec: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let list = spec.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-')?;
        let (start, end) = if a.is_empty() {
            let n: u64 = b.parse().ok()?;
            if n == 0 || len == 0 {
                return None;
            }
            (len.saturating_sub(n), len - 1)
        } else {
            let start: u64 = a.parse().ok()?;
            let end = if b.is_empty() { len.checked_sub(1)? } else { b.parse::<u64>().ok()?.min(len.checked_sub(1)?) };
            (start, end)
        };
        if start > end || start >= len {
            return None;
        }
        out.push((start, end));
    }
    if out.is_empty() || out.len() > MAX_RANGES {
        return None;
    }
    Some(out)
}

/// The file's bytes: shared from the cache, or an open file to stream from.
enum Content {
    Mem(Bytes),
    File(Arc<File>),
}

impl Content {
    fn open(path: &Path, meta: &std::fs::Metadata, cache: &FileCache) -> Result<Content, HttpError> {
        match cache.get(path, meta) {
            Ok(Some(b)) => Ok(Content::Mem(b)),
            Ok(None) => Ok(Content::File(Arc::new(File::open(path).map_err(|_| HttpError::NotFound)?))),
            Err(_) => Err(HttpError::NotFound),
        }
    }

    fn slice(&self, offset: u64, len: u64) -> Vec<Segment> {
        match self {
            Content::Mem(b) => {
                // The bytes may be shorter than the stat said if the file changed meanwhile.
                let start = (offset as usize).min(b.len());
                let end = (offset + len).min(b.len() as u64) as usize;
                vec![Segment::Mem(b.slice(start..end.max(start)))]
            }
            Content::File(f) => vec![Segment::File { file: f.clone(), offset, len }],
        }
    }
}

fn multipart(content: &Content, ranges: &[(u64, u64)], content_type: Option<&str>, len: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    for (i, (a, b)) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let ct = content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
        let head = format!("{lead}--{BOUNDARY}\r\n{ct}Content-Range: bytes {a}-{b}/{len}\r\n\r\n");
        out.push(Segment::Mem(Bytes::from(head)));
        out.extend(content.slice(*a, b - a + 1));
    }
    out.push(Segment::Mem(Bytes::from(format!("\r\n--{BOUNDARY}--\r\n"))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_ranges("bytes=0-9", 100), Some(vec![(0, 9)]));
        assert_eq!(parse_ranges("bytes=90-", 100), Some(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=-10", 100), Some(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=95-200", 100), Some(vec![(95, 99)]));
        assert_eq!(parse_ranges("bytes=0-1, 5-6", 100), Some(vec![(0, 1), (5, 6)]));
        assert_eq!(parse_ranges("bytes=100-", 100), None);
        assert_eq!(parse_ranges("bytes=5-1", 100), None);
        assert_eq!(parse_ranges("bytes=x-1", 100), None);
        assert_eq!(parse_ranges("items=0-1", 100), None);
        assert_eq!(parse_ranges("bytes=-0", 100), None);
        assert_eq!(parse_ranges(&format!("bytes={}", vec!["0-0"; 40].join(",")), 100), None);
    }

    #[test]
    fn etags() {
        let v = HeaderValue::from_static("\"0000000A12345678\"");
        assert!(etag_matches(Some(&v), "0000000A12345678"));
        assert!(!etag_matches(Some(&v), "0000000B12345678"));
        assert!(!etag_matches(None, "x"));
    }
}
