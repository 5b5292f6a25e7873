//! `file://` mounts (spec 2.4): default documents, ETag/304, single and multipart ranges, the
//! mount's cache-control, and content types with the 415 rule (D9).
//!
//! What a mount serves stays inside its directory: a file whose links resolve outside it is
//! 404 (a ConfigMap's `file -> ..data/file -> ..2026_…/file` stays inside and is served), unless
//! the mount says `"follow-symlinks-outside": "1"`; and a path with a segment starting with `.`
//! (`/.git/config`, `/.env`, `/..data/`) is 404 except `/.well-known/` (RFC 8615), unless it
//! says `"serve-dotfiles": "1"`.

use std::borrow::Cow;
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
    let at_root = mount.model.mountpoint.trim_end_matches('/').is_empty();
    if !mount.model.serve_dotfiles && hidden(remainder, at_root) {
        return Err(HttpError::NotFound);
    }
    let default = match mount.model.default.as_deref() {
        None | Some("") | Some("/") => "index.html",
        Some(d) => d.trim_start_matches('/'),
    };
    let (path, meta) = resolve(dir, remainder, default)?;
    // Before anything about the file is answered (its ETag, a 304, a 416).
    let admitted = admit(dir, mount, &path, &meta, cache)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let content_type = mount.mime.lookup(name).ok_or(HttpError::UnsupportedMediaType)?;
    let len = meta.len();
    let etag_bytes = etag(len, meta.mtime());
    let etag = std::str::from_utf8(&etag_bytes).expect("hex digits");
    let etag_value = HeaderValue::from_bytes(&etag_bytes).expect("hex is a valid header");

    if etag_matches(req.headers.get(header::IF_NONE_MATCH), etag) {
        let mut r = Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag_value)
            .header(header::CACHE_CONTROL, mount.cache_control.clone())
            .body(Body::empty())
            .expect("valid 304");
        r.headers_mut().remove(header::CONTENT_LENGTH);
        return Ok(r);
    }
    // The headers go straight into one map sized for them: every static request builds it, and
    // `Response::builder` cost more than the file lookup (callgrind, docs/flamegraphs).
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, etag_value);
    headers.insert(header::CACHE_CONTROL, mount.cache_control.clone());

    let ranges = match requested_ranges(&req.headers, etag) {
        None => None,
        Some(spec) => match parse_ranges(spec, len).ok_or(HttpError::RangeNotSatisfiable(len))? {
            Ranges::Whole => None,
            Ranges::Parts(parts) => Some(parts),
        },
    };
    let multi = ranges.as_ref().is_some_and(|r| r.len() > 1);
    if let Some(ct) = content_type.filter(|_| !multi) {
        let ct = HeaderValue::from_str(ct).map_err(|_| HttpError::Internal("bad mimetype".into()))?;
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let head = req.method == Method::HEAD;
    let content = Content::open(admitted, &path, &meta, cache)?;
    let text = |s: String| HeaderValue::try_from(s).map_err(|e| HttpError::Internal(e.to_string()));
    let (status, body) = match ranges.as_deref() {
        None => (StatusCode::OK, content.slice(0, len)),
        Some([(a, b)]) => {
            headers.insert(header::CONTENT_RANGE, text(format!("bytes {a}-{b}/{len}"))?);
            (StatusCode::PARTIAL_CONTENT, content.slice(*a, b - a + 1))
        }
        Some(many) => {
            headers.insert(header::CONTENT_TYPE, text(format!("multipart/byteranges; boundary={BOUNDARY}"))?);
            (StatusCode::PARTIAL_CONTENT, multipart(&content, many, content_type, len))
        }
    };
    let body = Body::from_segments(body);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut response = Response::new(if head { Body::empty() } else { body });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The ETag lws sends: the file's size and mtime, the low 32 bits of each as 8 hex digits.
fn etag(len: u64, mtime: i64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 16];
    for (half, v) in [len as u32, mtime as u32].into_iter().enumerate() {
        for digit in 0..8 {
            out[half * 8 + digit] = HEX[((v >> (28 - 4 * digit)) & 0xF) as usize];
        }
    }
    out
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

/// A segment starting with `.` (`.git`, `.env`, `.htpasswd`, a ConfigMap's `..data`), except
/// `.well-known` first in the request path (`at_root`: the mount is `/`), as RFC 8615 puts it.
fn hidden(remainder: &str, at_root: bool) -> bool {
    remainder
        .split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .any(|(i, seg)| seg.starts_with('.') && !(at_root && i == 0 && seg == ".well-known"))
}

/// A file let in: its bytes from the cache, or where it really is, checked, and the directory
/// it was checked against (the cache scope; `None` for a mount that follows links anywhere).
enum Admitted {
    Cached(Bytes),
    Checked { real: PathBuf, scope: Option<PathBuf> },
}

/// The symlink rule. A cache hit is a file (same device and inode) already checked against the
/// same directory, so a hot file costs no `realpath`; anything else is resolved once here.
fn admit(
    dir: &Path,
    mount: &MountRt,
    path: &Path,
    meta: &std::fs::Metadata,
    cache: &FileCache,
) -> Result<Admitted, HttpError> {
    let root: Option<Cow<Path>> = match (&mount.canonical_dir, mount.model.follow_symlinks_outside) {
        (_, true) => None,
        (Some(d), false) => Some(Cow::Borrowed(d)),
        // Not there when the table was compiled: resolve it now.
        (None, false) => Some(Cow::Owned(std::fs::canonicalize(dir).map_err(|_| HttpError::NotFound)?)),
    };
    if let Some(data) = cache.hit(root.as_deref(), path, meta) {
        return Ok(Admitted::Cached(data));
    }
    let real = std::fs::canonicalize(path).map_err(|_| HttpError::NotFound)?;
    let Some(root) = root else {
        return Ok(Admitted::Checked { real, scope: None });
    };
    if real.starts_with(&root) {
        return Ok(Admitted::Checked { real, scope: Some(root.into_owned()) });
    }
    // The directory may itself be a link re-pointed since the table was compiled: look again
    // before refusing.
    match std::fs::canonicalize(dir) {
        Ok(now) if now != *root && real.starts_with(&now) => Ok(Admitted::Checked { real, scope: Some(now) }),
        _ => {
            tracing::debug!(path = %path.display(), real = %real.display(), "refused: resolves outside the mount");
            Err(HttpError::NotFound)
        }
    }
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

/// What a `Range` header asks of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Ranges that add up to more than the file (the same bytes asked for again and again):
    /// the header is ignored and the whole file is sent with 200, so no request makes a
    /// response larger than the file. RFC 9110 (14.2) lets a server ignore such a Range; a 416
    /// would refuse a client that merely overlapped, and Apache's answer to CVE-2011-3192 is
    /// this 200 too.
    Whole,
    /// Sorted, with overlapping and adjacent ranges merged: one is a plain 206, more a
    /// multipart one.
    Parts(Vec<(u64, u64)>),
}

/// `bytes=a-b,c-,-n` → inclusive ranges within `len`; `None` (416) when unsatisfiable,
/// malformed, or more than `MAX_RANGES`.
pub fn parse_ranges(spec: &str, len: u64) -> Option<Ranges> {
    let list = spec.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if out.len() == MAX_RANGES {
            return None;
        }
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
    if out.is_empty() {
        return None;
    }
    let asked = out.iter().fold(0u64, |sum, (a, b)| sum.saturating_add(b - a + 1));
    if asked > len {
        return Some(Ranges::Whole);
    }
    out.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    Some(Ranges::Parts(merged))
}

/// The file's bytes: shared from the cache, or an open file to stream from.
enum Content {
    Mem(Bytes),
    File(Arc<File>),
}

impl Content {
    /// A small file is read (from where it really is) into the cache under the path asked for;
    /// a large one is opened there to stream from.
    fn open(
        admitted: Admitted,
        path: &Path,
        meta: &std::fs::Metadata,
        cache: &FileCache,
    ) -> Result<Content, HttpError> {
        match admitted {
            Admitted::Cached(b) => Ok(Content::Mem(b)),
            Admitted::Checked { real, scope } if cache.holds(meta) => {
                cache.fill(scope.as_deref(), path, &real, meta).map(Content::Mem).map_err(|_| HttpError::NotFound)
            }
            Admitted::Checked { real, .. } => {
                Ok(Content::File(Arc::new(File::open(real).map_err(|_| HttpError::NotFound)?)))
            }
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

    fn parts(v: &[(u64, u64)]) -> Option<Ranges> {
        Some(Ranges::Parts(v.to_vec()))
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_ranges("bytes=0-9", 100), parts(&[(0, 9)]));
        assert_eq!(parse_ranges("bytes=90-", 100), parts(&[(90, 99)]));
        assert_eq!(parse_ranges("bytes=-10", 100), parts(&[(90, 99)]));
        assert_eq!(parse_ranges("bytes=95-200", 100), parts(&[(95, 99)]));
        assert_eq!(parse_ranges("bytes=0-1, 5-6", 100), parts(&[(0, 1), (5, 6)]));
        assert_eq!(parse_ranges("bytes=100-", 100), None);
        assert_eq!(parse_ranges("bytes=5-1", 100), None);
        assert_eq!(parse_ranges("bytes=x-1", 100), None);
        assert_eq!(parse_ranges("items=0-1", 100), None);
        assert_eq!(parse_ranges("bytes=-0", 100), None);
        assert_eq!(parse_ranges(&format!("bytes={}", vec!["0-0"; 40].join(",")), 100), None);
    }

    #[test]
    fn ranges_are_sorted_merged_and_bounded_by_the_file() {
        // Overlapping, adjacent and out of order: merged after suffix and open ranges resolve.
        assert_eq!(parse_ranges("bytes=50-59,0-9,5-14,15-19", 100), parts(&[(0, 19), (50, 59)]));
        assert_eq!(parse_ranges("bytes=-10,80-89", 100), parts(&[(80, 99)]));
        assert_eq!(parse_ranges("bytes=0-0,0-0", 100), parts(&[(0, 0)]));
        assert_eq!(parse_ranges("bytes=0-49,50-", 100), parts(&[(0, 99)]));
        // More than the file, asked for again and again: the whole file, once.
        assert_eq!(parse_ranges(&format!("bytes={}", vec!["0-"; 32].join(",")), 100), Some(Ranges::Whole));
        assert_eq!(parse_ranges("bytes=0-60,40-99", 100), Some(Ranges::Whole));
        assert_eq!(parse_ranges(&format!("bytes={}", vec!["0-"; 33].join(",")), 100), None);
    }

    #[test]
    fn dot_segments() {
        for p in ["/.git/config", "/.env", "/a/.htpasswd", "/..data/x", "/a/.well-known/x", "/.well-known/.x"] {
            assert!(hidden(p, true), "{p}");
        }
        assert!(!hidden("/.well-known/security.txt", true));
        assert!(hidden("/.well-known/security.txt", false), "only first in the request path");
        assert!(!hidden("/a.b/c.txt", true));
        assert!(!hidden("/", true));
    }

    #[test]
    fn etag_is_size_then_mtime_in_hex() {
        assert_eq!(&etag(0xA, 0x12345678), b"0000000A12345678");
        assert_eq!(&etag(0x1_0000_00FF, -1), b"000000FFFFFFFFFF");
    }

    #[test]
    fn etags() {
        let v = HeaderValue::from_static("\"0000000A12345678\"");
        assert!(etag_matches(Some(&v), "0000000A12345678"));
        assert!(!etag_matches(Some(&v), "0000000B12345678"));
        assert!(!etag_matches(None, "x"));
    }
}
