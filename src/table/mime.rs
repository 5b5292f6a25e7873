//! Content types: a mount's `extra-mimetypes` first, then lws's canned list, then `"*"` (spec 2.6).
//! A suffix nobody knows is not served at all (D9).

/// `Some(None)` means "serve with no content-type header" (`"*": ""`); `None` means refuse (415).
pub type Lookup<'a> = Option<Option<&'a str>>;

#[derive(Debug, Clone, Default)]
pub struct MimeRules {
    extra: Vec<(String, String)>,
    fallback: Option<String>,
}

const CANNED: &[(&str, &str)] = &[
    (".html", "text/html"),
    (".htm", "text/html"),
    (".js", "text/javascript"),
    (".mjs", "text/javascript"),
    (".css", "text/css"),
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".jpeg", "image/jpeg"),
    (".ico", "image/x-icon"),
    (".gif", "image/gif"),
    (".svg", "image/svg+xml"),
    (".ttf", "application/x-font-ttf"),
    (".otf", "application/font-woff"),
    (".woff", "application/font-woff"),
    (".woff2", "application/font-woff2"),
    (".gz", "application/gzip"),
    (".txt", "text/plain"),
    (".xml", "application/xml"),
    (".json", "application/json"),
    (".babylon", "application/json"),
    (".wasm", "application/wasm"),
];

fn ends_with_ci(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len() && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

impl MimeRules {
    pub fn new(extra: &[(String, String)]) -> Self {
        let fallback = extra.iter().find(|(k, _)| k == "*").map(|(_, v)| v.clone());
        let extra = extra.iter().filter(|(k, _)| k != "*").cloned().collect();
        MimeRules { extra, fallback }
    }

    pub fn lookup(&self, file_name: &str) -> Lookup<'_> {
        if let Some((_, t)) = self.extra.iter().find(|(sfx, _)| ends_with_ci(file_name, sfx)) {
            return Some(Some(t.as_str()).filter(|t| !t.is_empty()));
        }
        if let Some((_, t)) = CANNED.iter().find(|(sfx, _)| ends_with_ci(file_name, sfx)) {
            return Some(Some(t));
        }
        self.fallback.as_deref().map(|t| Some(t).filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_fallback() {
        let r = MimeRules::new(&[(".zip".into(), "application/zip".into()), (".html".into(), "text/evil".into())]);
        assert_eq!(r.lookup("a.ZIP"), Some(Some("application/zip")));
        assert_eq!(r.lookup("a.html"), Some(Some("text/evil")));
        assert_eq!(r.lookup("a.css"), Some(Some("text/css")));
        assert_eq!(r.lookup("passwd"), None);
        let any = MimeRules::new(&[("*".into(), "".into())]);
        assert_eq!(any.lookup("passwd"), Some(None));
        let typed = MimeRules::new(&[("*".into(), "application/octet-stream".into())]);
        assert_eq!(typed.lookup("x.bin"), Some(Some("application/octet-stream")));
    }
}
