//! A Gateway API rule, compiled: its conditions (regular expressions built once), how it ranks
//! against the other rules of its vhost, and its header edits as ready header names and values.

use http::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;

use crate::model::{ConfigError, HeaderEdits, Loc, Mount, RouteRule, ValueMatch};

/// What a Gateway API rule's conditions read of a request, whichever request path parsed it.
pub trait RouteFacts {
    fn method(&self) -> &str;
    /// The query as sent, without the `?`.
    fn query(&self) -> Option<&str>;
    /// The first value of the header named `name` (lowercase).
    fn header(&self, name: &str) -> Option<&[u8]>;
}

#[derive(Debug)]
pub struct RouteRt {
    path_regex: Option<Regex>,
    method: Option<String>,
    headers: Vec<(String, Matcher)>,
    query: Vec<(String, Matcher)>,
    pub request_headers: EditsRt,
    pub response_headers: EditsRt,
    host_rank: (usize, usize),
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// Header edits with their names and values parsed.
#[derive(Debug, Default)]
pub struct EditsRt {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl EditsRt {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// `set` replaces, `add` joins what is there with `,` (so `foo` + `bar` arrives as one
    /// `foo,bar`), `remove` drops.
    pub fn apply(&self, h: &mut HeaderMap) {
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let joined = match h.get(n) {
                Some(old) => {
                    let mut b = old.as_bytes().to_vec();
                    b.push(b',');
                    b.extend_from_slice(v.as_bytes());
                    HeaderValue::from_bytes(&b).unwrap_or_else(|_| v.clone())
                }
                None => v.clone(),
            };
            h.insert(n.clone(), joined);
        }
        for n in &self.remove {
            h.remove(n);
        }
    }
}

/// How a rule ranks (Gateway API precedence; the front end orders mounts for the rest, and the
/// earlier mount wins a tie): its route's hostname, then an exact path, the longer path (a
/// regular expression counts its pattern's length), a method, more headers, more query
/// parameters.
pub type Rank = ((usize, usize), bool, usize, bool, usize, usize);

impl RouteRt {
    pub fn compile(rule: &RouteRule, loc: &Loc) -> Result<Self, ConfigError> {
        let bad = |what: &str, e: String| ConfigError::new(loc.clone(), Some(what), e);
        let regex = |pattern: &str, what: &str| {
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| bad(what, format!("bad regular expression: {e}")))
        };
        let matcher = |m: &ValueMatch, what: &str| -> Result<(String, Matcher), ConfigError> {
            let v = if m.regex { Matcher::Regex(regex(&m.value, what)?) } else { Matcher::Exact(m.value.clone()) };
            Ok((m.name.clone(), v))
        };
        let m = &rule.matches;
        Ok(RouteRt {
            path_regex: m.path_regex.as_deref().map(|p| regex(p, "path")).transpose()?,
            method: m.method.clone(),
            headers: m.headers.iter().map(|h| matcher(h, "headers")).collect::<Result<_, _>>()?,
            query: m.query.iter().map(|q| matcher(q, "queryParams")).collect::<Result<_, _>>()?,
            request_headers: edits(&rule.request_headers, loc, "requestHeaderModifier")?,
            response_headers: edits(&rule.response_headers, loc, "responseHeaderModifier")?,
            host_rank: rule.host_rank,
        })
    }

    pub fn has_path_regex(&self) -> bool {
        self.path_regex.is_some()
    }

    /// Whether the request meets every condition (the mountpoint already matched, unless the
    /// path is a regular expression).
    pub fn admits(&self, path: &str, facts: &dyn RouteFacts) -> bool {
        if let Some(r) = &self.path_regex
            && !r.is_match(path)
        {
            return false;
        }
        if let Some(m) = &self.method
            && m != facts.method()
        {
            return false;
        }
        let header_ok = |(name, m): &(String, Matcher)| {
            facts.header(name).and_then(|v| std::str::from_utf8(v).ok()).is_some_and(|v| m.matches(v))
        };
        if !self.headers.iter().all(header_ok) {
            return false;
        }
        if self.query.is_empty() {
            return true;
        }
        let query = facts.query().unwrap_or("");
        self.query.iter().all(|(name, m)| {
            // The first parameter of that name counts.
            form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).is_some_and(|(_, v)| m.matches(&v))
        })
    }

    pub fn rank(&self, mount: &Mount) -> Rank {
        let len = match &self.path_regex {
            Some(r) => r.as_str().len().saturating_sub(6),
            None => mount.mountpoint.trim_end_matches('/').len().max(1),
        };
        (self.host_rank, mount.exact_match, len, self.method.is_some(), self.headers.len(), self.query.len())
    }
}

fn edits(e: &HeaderEdits, loc: &Loc, what: &str) -> Result<EditsRt, ConfigError> {
    let bad = |msg: String| ConfigError::new(loc.clone(), Some(what), msg);
    let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).map_err(|_| bad(format!("\"{n}\" is not a header name")));
    let pair = |(n, v): &(String, String)| -> Result<(HeaderName, HeaderValue), ConfigError> {
        let value = HeaderValue::from_str(v).map_err(|_| bad(format!("the value of \"{n}\" is not header text")))?;
        Ok((name(n)?, value))
    };
    Ok(EditsRt {
        set: e.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: e.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: e.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteMatch;

    struct Facts(&'static str, Option<&'static str>, Vec<(&'static str, &'static str)>);
    impl RouteFacts for Facts {
        fn method(&self) -> &str {
            self.0
        }
        fn query(&self) -> Option<&str> {
            self.1
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.2.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes())
        }
    }

    fn value(name: &str, value: &str, regex: bool) -> ValueMatch {
        ValueMatch { name: name.into(), value: value.into(), regex }
    }

    #[test]
    fn conditions_hold_together() {
        let rule = RouteRule {
            matches: RouteMatch {
                path_regex: None,
                method: Some("POST".into()),
                headers: vec![value("version", "two", false), value("color", "re+d", true)],
                query: vec![value("q", "a b", false)],
            },
            ..Default::default()
        };
        let rt = RouteRt::compile(&rule, &Loc::default()).unwrap();
        let ok = Facts("POST", Some("x=1&q=a+b&q=other"), vec![("version", "two"), ("color", "reed")]);
        assert!(rt.admits("/", &ok));
        assert!(!rt.admits("/", &Facts("GET", Some("q=a+b"), vec![("version", "two"), ("color", "red")])));
        assert!(!rt.admits("/", &Facts("POST", Some("q=other&q=a+b"), vec![("version", "two"), ("color", "red")])));
        assert!(!rt.admits("/", &Facts("POST", Some("q=a+b"), vec![("version", "Two"), ("color", "red")])));
        assert!(!rt.admits("/", &Facts("POST", Some("q=a+b"), vec![("version", "two"), ("color", "blue")])));
        let regex = RouteRule {
            matches: RouteMatch { path_regex: Some("/v[0-9]+/.*".into()), ..Default::default() },
            ..Default::default()
        };
        let rt = RouteRt::compile(&regex, &Loc::default()).unwrap();
        let any = Facts("GET", None, vec![]);
        assert!(rt.admits("/v2/x", &any) && !rt.admits("/x/v2/x", &any), "the whole path");
        let broken = RouteRule {
            matches: RouteMatch { path_regex: Some("(".into()), ..Default::default() },
            ..Default::default()
        };
        let e = RouteRt::compile(&broken, &Loc::default()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("path"));
    }

    #[test]
    fn edits_set_add_then_remove() {
        let e = HeaderEdits {
            set: vec![("x-set".into(), "one".into())],
            add: vec![("x-add".into(), "bar".into()), ("x-new".into(), "n".into())],
            remove: vec!["x-gone".into()],
        };
        let rt = edits(&e, &Loc::default(), "requestHeaderModifier").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-set", HeaderValue::from_static("zero"));
        h.insert("x-add", HeaderValue::from_static("foo"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        rt.apply(&mut h);
        assert_eq!(h["x-set"], "one");
        assert_eq!(h["x-add"], "foo,bar");
        assert_eq!(h["x-new"], "n");
        assert!(!h.contains_key("x-gone"));
        let bad = HeaderEdits { set: vec![("bad name".into(), "v".into())], ..Default::default() };
        assert!(edits(&bad, &Loc::default(), "requestHeaderModifier").is_err());
    }
}
