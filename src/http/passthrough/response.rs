//! The response side: the upstream's head, how its body is framed, and the head the client gets
//! (the route's headers first, as `service::finish` puts them, then the upstream's).

use http::{HeaderName, HeaderValue, StatusCode};

use super::request::header;
use crate::http::forward::HOP_BY_HOP;
use crate::http::origin::rewrite::is_plain_html_by;

/// More upstream headers than this and the response is refused (502).
const MAX_HEADERS: usize = 100;

/// How the upstream's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes; the client gets it chunked.
    UntilClose,
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// Bytes of the upstream's head, which the body follows.
    pub len: usize,
    pub framing: Framing,
    /// The upstream connection can carry another request once the body has been read.
    pub reusable: bool,
    /// An HTML body whose links are rewritten (D11): decoded, rewritten, sent chunked.
    pub rewrite: bool,
    /// The head for the client, blank line included.
    pub client: Vec<u8>,
}

pub enum HeadParse {
    Head(Head),
    /// An interim (1xx) response of this many bytes, which is not passed on.
    Interim(usize),
    Partial,
    Invalid,
}

/// What the client-facing head carries besides the upstream's headers.
pub struct Shape<'a> {
    pub head_request: bool,
    /// `mount.headers` or `vhost.headers`: configured headers, `server:`, STS.
    pub prefix: &'a [(HeaderName, HeaderValue)],
    pub close: bool,
    /// The mount rewrites links in HTML.
    pub links: bool,
}

pub fn parse(buf: &[u8], shape: &Shape) -> HeadParse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return HeadParse::Partial,
        Err(_) => return HeadParse::Invalid,
    };
    let Some(status) = resp.code.filter(|c| *c >= 100) else { return HeadParse::Invalid };
    if status < 200 {
        // 101 was not asked for (upgrades take the hyper path); other interim answers are
        // dropped, as hyper's client drops them.
        return if status == 101 { HeadParse::Invalid } else { HeadParse::Interim(len) };
    }
    let Some(facts) = facts(resp.headers) else { return HeadParse::Invalid };
    if facts.transfer_encoding && facts.content_length.is_some() {
        // Two framings (RFC 9112 6.3: "ought to be handled as an error"): a 502, as on the
        // hyper path.
        return HeadParse::Invalid;
    }
    let framing = if shape.head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if facts.chunked {
        Framing::Chunked
    } else if facts.transfer_encoding {
        Framing::UntilClose
    } else if let Some(n) = facts.content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = match resp.version {
        Some(1) => !facts.close,
        _ => facts.keep_alive && !facts.close,
    };
    let reusable = keep_alive && framing != Framing::UntilClose;
    // An empty body is passed on as it is, validators and all, as the hyper path does.
    let rewrite = framing != Framing::Length(0)
        && shape.links
        && status == 200
        && !shape.head_request
        && is_plain_html_by(facts.content_type, facts.content_encoding);
    let mut client = Vec::with_capacity(len + 128);
    status_line(&mut client, status, resp.reason.unwrap_or(""));
    for (n, v) in shape.prefix {
        header(&mut client, n.as_str(), v.as_bytes());
    }
    let is_named = |name: &str| facts.named.iter().any(|n| name.eq_ignore_ascii_case(n));
    for h in resp.headers.iter() {
        let hop = HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) || is_named(h.name);
        // The framing is written below, whatever the upstream's `Connection` lists; rewritten
        // bytes have no length or validator to keep.
        let stale = rewrite && h.name.eq_ignore_ascii_case("etag");
        if !hop && !stale && !h.name.eq_ignore_ascii_case("content-length") {
            header(&mut client, h.name, h.value);
        }
    }
    if !facts.date {
        header(&mut client, "date", httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    }
    match framing {
        _ if rewrite => header(&mut client, "transfer-encoding", b"chunked"),
        Framing::Chunked | Framing::UntilClose => header(&mut client, "transfer-encoding", b"chunked"),
        Framing::Length(n) => header(&mut client, "content-length", n.to_string().as_bytes()),
        Framing::Empty if !facts.transfer_encoding => {
            // HEAD, 204 and 304 keep the length the upstream declared.
            if let Some(n) = facts.content_length {
                header(&mut client, "content-length", n.to_string().as_bytes());
            }
        }
        Framing::Empty => {}
    }
    if shape.close {
        header(&mut client, "connection", b"close");
    }
    client.extend_from_slice(b"\r\n");
    HeadParse::Head(Head { status, len, framing, reusable, rewrite, client })
}

#[derive(Default)]
struct Facts<'h> {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding is `chunked`.
    chunked: bool,
    close: bool,
    keep_alive: bool,
    date: bool,
    named: Vec<&'h str>,
    content_type: Option<&'h [u8]>,
    content_encoding: Option<&'h [u8]>,
}

/// `None` for framing that cannot be trusted: unreadable or disagreeing lengths.
fn facts<'h>(headers: &[httparse::Header<'h>]) -> Option<Facts<'h>> {
    let mut f = Facts::default();
    for h in headers {
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("content-length") {
            let n = super::request::content_length(h.value)? as u64;
            if f.content_length.is_some_and(|m| m != n) {
                return None;
            }
            f.content_length = Some(n);
        } else if is("transfer-encoding") {
            f.transfer_encoding = true;
            let last = std::str::from_utf8(h.value).ok()?.rsplit(',').next().unwrap_or("").trim();
            f.chunked = last.eq_ignore_ascii_case("chunked");
        } else if is("connection") {
            for token in std::str::from_utf8(h.value).ok()?.split(',').map(str::trim) {
                f.close |= token.eq_ignore_ascii_case("close");
                f.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                f.named.push(token);
            }
        } else if is("date") {
            f.date = true;
        } else if is("content-type") {
            f.content_type.get_or_insert(h.value);
        } else if is("content-encoding") {
            f.content_encoding.get_or_insert(h.value);
        }
    }
    // Headers the upstream's `Connection` names are gone before anything reads them.
    let named = |n: &str| f.named.iter().any(|t| t.eq_ignore_ascii_case(n));
    if named("content-type") {
        f.content_type = None;
    }
    if named("content-encoding") {
        f.content_encoding = None;
    }
    if named("date") {
        f.date = false;
    }
    Some(f)
}

/// `HTTP/1.1 200 OK`: lws's reason for redirects (as `service::finish` gives them), else the
/// upstream's own reason, else the standard one.
pub fn status_line(out: &mut Vec<u8>, status: u16, upstream_reason: &str) {
    let reason = if (300..400).contains(&status) && status != 304 {
        "Redirect"
    } else if !upstream_reason.is_empty() {
        upstream_reason
    } else {
        StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(head_request: bool) -> Shape<'static> {
        Shape { head_request, prefix: &[], close: false, links: false }
    }

    fn head(raw: &str, head_request: bool) -> Head {
        match parse(raw.as_bytes(), &shape(head_request)) {
            HeadParse::Head(h) => h,
            _ => panic!("not a head: {raw}"),
        }
    }

    #[test]
    fn framing_follows_the_upstream() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: x\r\n\r\nhello", false);
        assert_eq!((h.status, h.len, h.framing, h.reusable), (200, 47, Framing::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Chunked);
        let client = String::from_utf8(h.client).unwrap();
        assert!(!client.contains("content-length") && !client.contains("gzip"), "{client}");
        assert!(client.contains("transfer-encoding: chunked\r\n"));
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n", false).framing, Framing::UntilClose);
        assert!(!head("HTTP/1.1 200 OK\r\n\r\n", false).reusable);
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 304 Not Modified\r\n\r\n", false).framing, Framing::Empty);
        assert!(!head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n", false).reusable);
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false).reusable);
        assert!(head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n", false).reusable);
        let both = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n";
        assert!(matches!(parse(both.as_bytes(), &shape(false)), HeadParse::Invalid), "two framings are refused");
        let h = head("HTTP/1.1 200 OK\r\nconnection: date\r\ndate: stale\r\ncontent-length: 0\r\n\r\n", false);
        let client = String::from_utf8(h.client).unwrap();
        assert!(!client.contains("stale") && client.contains("date: "), "{client}");
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let h = head("HTTP/1.1 302 Found\r\nconnection: x-a\r\nx-a: 1\r\nkeep-alive: 5\r\nlocation: /b\r\n\r\n", false);
        let client = String::from_utf8(h.client).unwrap();
        assert!(client.starts_with("HTTP/1.1 302 Redirect\r\n"), "{client}");
        assert!(client.contains("location: /b\r\n") && client.contains("date: "));
        assert!(!client.contains("x-a") && !client.contains("keep-alive"), "{client}");
    }

    #[test]
    fn html_is_rewritten_only_where_it_can_be() {
        let links = Shape { head_request: false, prefix: &[], close: false, links: true };
        let parse_with = |raw: &str, shape: &Shape| match parse(raw.as_bytes(), shape) {
            HeadParse::Head(h) => h,
            _ => panic!("not a head: {raw}"),
        };
        let h = parse_with(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"x\"\r\nContent-Length: 9\r\n\r\n",
            &links,
        );
        let client = String::from_utf8(h.client.clone()).unwrap();
        assert!(h.rewrite && h.framing == Framing::Length(9));
        assert!(client.contains("transfer-encoding: chunked") && !client.contains("ETag") && !client.contains("ength"));
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: content-type\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
        ] {
            assert!(!parse_with(raw, &links).rewrite, "{raw}");
        }
        let head = Shape { head_request: true, ..links };
        assert!(!parse_with("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", &head).rewrite);
    }

    #[test]
    fn bad_heads_are_refused() {
        let bad = |raw: &str| matches!(parse(raw.as_bytes(), &shape(false)), HeadParse::Invalid);
        assert!(bad("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"));
        assert!(bad("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"));
        assert!(bad("HTTP/1.1 101 Switching Protocols\r\n\r\n"));
        assert!(bad("garbage\r\n\r\n"));
        assert!(matches!(
            parse(b"HTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1", &shape(false)),
            HeadParse::Interim(37)
        ));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\n", &shape(false)), HeadParse::Partial));
    }
}
