//! Request paths: percent-decoded, then normalised (`.`, `..`, `//`, `\`) so that no request can
//! name anything outside a mount's directory. `..` never climbs above `/`, as in lws.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Characters a decoded path may hold that cannot stand in a URL (a Location, an upstream
/// request target) as they are.
const PATH_ESCAPES: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path holds a NUL byte")]
    Nul,
    #[error("the path is not UTF-8")]
    NotUtf8,
}

/// Decodes and normalises the path part of a request target. A trailing `/` is kept, since it
/// means "the directory" to the file origin.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Nearly every request's path is already what normalising would make of it: then it is
    // copied as it is, without decoding and splitting it (a twentieth of a static request's
    // instructions went there).
    if already_normal(raw) {
        return Ok(raw.to_owned());
    }
    normalize_slowly(raw)
}

/// Nothing to decode (no `%`, no `\`, no NUL), no `.` or `..` segment, no empty segment but
/// the one after a trailing `/`: normalising `raw` gives `raw`.
fn already_normal(raw: &str) -> bool {
    if raw.bytes().any(|b| matches!(b, b'%' | b'\\' | 0)) {
        return false;
    }
    let mut segments = raw[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

fn normalize_slowly(raw: &str) -> Result<String, PathError> {
    let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| PathError::NotUtf8)?;
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let trailing =
        decoded.ends_with('/') || decoded.ends_with('\\') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out = String::with_capacity(decoded.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

/// Re-encodes a decoded, normalised path for use in a URL.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPES).to_string()
}

/// The same for a path already owned, which is kept as it is when nothing needs escaping.
pub fn encode_path_owned(path: String) -> String {
    let encoded = match std::borrow::Cow::from(utf8_percent_encode(&path, PATH_ESCAPES)) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(encoded) => Some(encoded),
    };
    encoded.unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_never_escapes() {
        assert_eq!(normalize("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(normalize("/a/%2e%2e/%2E%2E/b").unwrap(), "/b");
        assert_eq!(normalize("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(normalize("/a/..%2f..%2fetc").unwrap(), "/etc");
        assert_eq!(normalize("/a\\..\\..\\x").unwrap(), "/x");
        assert_eq!(normalize("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/%20x").unwrap(), "/ x");
    }

    #[test]
    fn the_shortcut_gives_what_normalising_gives() {
        for raw in [
            "/",
            "/a",
            "/a/",
            "/a/b.html",
            "/a//b",
            "//",
            "/a/.",
            "/a/..",
            "/./a",
            "/a/../b",
            "/.well-known/x",
            "/a.b/c..d/",
            "/..a/b.",
            "/%41",
            "/a\\b",
            "/a/b/",
            "/a b",
            "/é/ü",
            "/a?b",
            "/a/./",
        ] {
            assert_eq!(normalize(raw), normalize_slowly(raw), "{raw}");
        }
        assert!(already_normal("/a/b/") && already_normal("/") && already_normal("/..a/b."));
        assert!(!already_normal("/a//b") && !already_normal("/a/..") && !already_normal("/%2e"));
    }

    #[test]
    fn refusals() {
        assert_eq!(normalize("/a%00.html"), Err(PathError::Nul));
        assert_eq!(normalize("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize("x"), Err(PathError::NotAbsolute));
    }
}
