//! The HTTP/1 passthrough of plain proxy mounts (`"rewrite-links": "0"`), against a scripted
//! upstream on 127.0.0.1 that writes raw bytes: every way an upstream can frame a response,
//! upstreams that misbehave, and the requests the passthrough leaves to hyper.
//!
//! The passthrough keeps the client's header names as they were written, where hyper lowercases
//! them; the upstream's record of `X-Path-Probe` shows which path served a request.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, connect, put};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The scripted upstream: what it was sent, and how many connections it accepted.
struct Upstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    accepts: Arc<AtomicUsize>,
}

impl Upstream {
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn last_head(&self) -> String {
        self.heads().last().cloned().unwrap_or_default()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request (head and content-length body) off `s`; `None` when the peer closed.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut tmp = [0u8; 8192];
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < end + len {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    buf.drain(..end + len);
    Some(head)
}

async fn upstream() -> Upstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let accepts = Arc::new(AtomicUsize::new(0));
    let (h, a) = (heads.clone(), accepts.clone());
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_script(s, h.clone()));
        }
    });
    Upstream { addr, heads, accepts }
}

/// Answers by the request path's last segment.
async fn serve_script(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut s, &mut buf).await {
        heads.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let reply: &[u8] = match path.rsplit('/').next().unwrap_or("") {
            "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-t: 1\r\n\r\n",
            "until-close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = s.write_all(b"close").await;
                return;
            }
            "early" => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater",
            "garbage" => b"NOT HTTP AT ALL\r\n\r\n",
            "extra" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            "head" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            "hang" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "bad-chunks" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloZZ\r\n",
            "huge-head" => {
                let filler = format!("X-Filler: {}\r\n", "f".repeat(1000)).repeat(70);
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\n{filler}Content-Length: 0\r\n\r\n").as_bytes()).await;
                continue;
            }
            "big" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 33554432\r\n\r\n").await;
                let _ = s.write_all(&vec![b'b'; 32 << 20]).await;
                continue;
            }
            "stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "conn-cl" => b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
            "bare-lf" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nHTTP/1.1 200 OK\r\n\r\n",
            "low-status" => b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
            "reason" => b"HTTP/1.1 200 Fine Indeed\r\nContent-Length: 0\r\n\r\n",
            "close-after" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").await;
                return;
            }
            "html" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"v1\"\r\nContent-Length: 23\r\n\r\n<a href=\"/x\">x</a>\n<br>",
            "html-chunked" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<a hre\r\n8\r\nf=\"/y\">y\r\n4\r\n</a>\r\n0\r\n\r\n",
            "html-close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<img src=\"/z.png\">").await;
                return;
            }
            "html-empty" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n",
            "html-bad-chunks" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            "html-cut" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100\r\n\r\n").await;
                return;
            }
            "css" => b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 17\r\n\r\na { b: url(/c) }\n",
            "cut" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial").await;
                return;
            }
            "drop-next" => {
                // Answers, then takes the next request on this connection and closes unanswered:
                // a pooled connection that dies just as it is reused.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                if let Some(next) = read_request(&mut s, &mut buf).await {
                    heads.lock().unwrap().push(next);
                }
                return;
            }
            "redirect" => b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-From: upstream\r\n\r\nok",
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn vhost(up: SocketAddr, extra_vhost: &str) -> String {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1", {extra_vhost}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }},
                       {{ "mountpoint": "/dead", "origin": "http://{dead}/", "rewrite-links": "0" }},
                       {{ "mountpoint": "/site", "origin": "http://{up}/" }},
                       {{ "mountpoint": "/api", "origin": "http://{up}/", "rewrite-links": "0" }}] }}] }}"#
    )
}

async fn server(up: &Upstream, global: &str, extra_vhost: &str) -> TestServer {
    let s = TestServer::start(global, &[&vhost(up.addr, extra_vhost)]).await;
    put(s.path(), "www/index.html", "home");
    s
}

const PROBE: &str = "X-Path-Probe: 1\r\n";

/// The passthrough served the latest request: the header name kept its case.
fn by_passthrough(up: &Upstream) -> bool {
    up.last_head().contains("\r\nX-Path-Probe: 1\r\n")
}

/// The hyper path served the latest request: it lowercases header names.
fn by_hyper(up: &Upstream) -> bool {
    up.last_head().contains("\r\nx-path-probe: 1\r\n")
}

#[tokio::test]
async fn requests_go_upstream_with_forwarding_headers() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    let r = c
        .get(
            "/api/a%20b/./c?q=1",
            &format!("{PROBE}X-Forwarded-For: 10.0.0.9\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nTE: trailers\r\n"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!((r.text().as_str(), r.header("x-from")), ("ok", Some("upstream")));
    assert!(r.header("date").is_some(), "a Date is added when the upstream sends none");
    let head = up.last_head();
    assert!(by_passthrough(&up), "{head}");
    assert!(head.starts_with("GET /a%20b/c?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {}\r\n", up.addr)), "D13: the origin's Host: {head}");
    assert!(head.contains("\r\nx-forwarded-for: 10.0.0.9, 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n") && head.contains("\r\nx-forwarded-host: localhost\r\n"));
    assert!(head.contains("\r\nforwarded: for=127.0.0.1;proto=http;host=\"localhost\"\r\n"), "{head}");
    for gone in ["X-Secret", "TE:", "Connection:", "Host: localhost"] {
        assert!(!head.contains(gone), "{gone} must not reach the upstream: {head}");
    }
    assert_eq!(head.matches("\r\nhost:").count() + head.matches("\r\nHost:").count(), 1, "{head}");
    // The next request reuses the upstream connection.
    assert_eq!(c.get("/api/again", PROBE).await.status, 200);
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_http_requests_total{vhost="site.test",mount="/api",status="2xx"} 2"#), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn every_framing_reaches_the_client_intact() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    let r = c.get("/api/chunked", PROBE).await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(by_passthrough(&up));
    // No length and the upstream closes: the client gets it chunked and keeps its connection.
    let r = c.get("/api/until-close", PROBE).await;
    assert_eq!((r.status, r.text().as_str()), (200, "until close"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let r = c.get("/api/early", PROBE).await;
    assert_eq!((r.status, r.text().as_str()), (200, "later"), "interim responses are not passed on");
    c.send(&format!("HEAD /api/head HTTP/1.1\r\nHost: x\r\n{PROBE}\r\n")).await;
    let r = c.read_response(true).await.unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
    let r = c.get("/api/redirect", PROBE).await;
    assert_eq!((r.status, r.reason.as_str(), r.header("location")), (302, "Redirect", Some("/elsewhere")));
    assert!(r.header("x-hop").is_none() && r.header("keep-alive").is_none(), "{}", r.head_text);
    assert_eq!(c.get("/api/plain", PROBE).await.text(), "ok", "the connection is still in step");
    s.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    c.send(&format!(
        "GET /api/chunked HTTP/1.1\r\nHost: x\r\n{PROBE}\r\nPOST /api/p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /api/last HTTP/1.1\r\nHost: x\r\n\r\n"
    ))
    .await;
    assert_eq!(c.read_response(false).await.unwrap().text(), "hello world");
    assert_eq!(c.read_response(false).await.unwrap().text(), "ok");
    assert_eq!(c.read_response(false).await.unwrap().text(), "ok");
    let heads = up.heads();
    assert!(heads[1].starts_with("POST /p ") && heads[2].starts_with("GET /last "), "{heads:?}");
    s.stop().await;
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    let r = c.get("/api/x", &format!("{PROBE}Connection: close\r\n")).await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(by_passthrough(&up));
    assert!(c.closed_within(Duration::from_secs(2)).await);
    s.stop().await;
}

#[tokio::test]
async fn upstream_failures_get_the_error_pages() {
    let up = upstream().await;
    let s = server(&up, r#"{ "global": { "timeout-secs": "1" } }"#, r#""headers": [{ "X-Site": "yes" }],"#).await;
    let mut c = connect(s.addr()).await;
    let r = c.get("/api/garbage", PROBE).await;
    assert_eq!((r.status, r.header("x-site")), (502, Some("yes")));
    assert!(r.text().contains("<h1>502</h1>"), "{}", r.text());
    let r = c.get("/api/hang", PROBE).await;
    assert_eq!(r.status, 504);
    assert_eq!(c.get("/api/x", PROBE).await.status, 200, "the client connection survives both");
    let m = s.server.as_ref().unwrap().metrics().render();
    for kind in ["failed", "timeout"] {
        let line = format!(r#"lwsws_upstream_errors_total{{vhost="site.test",mount="/api",result="{kind}"}} 1"#);
        assert!(m.contains(&line), "{line}\n{m}");
    }
    assert_eq!(c.get("/api/huge-head", PROBE).await.status, 502, "an upstream head over 64 KiB");
    assert_eq!(c.get("/api/bad-chunks", PROBE).await.status, 502, "chunks garbled before anything was sent");
    // Upstreams that die or stall mid-body: the client's response ends, and no hang.
    for (path, last) in [("cut", "partial"), ("stall", "some")] {
        let mut c = connect(s.addr()).await;
        c.send(&format!("GET /api/{path} HTTP/1.1\r\nHost: x\r\n{PROBE}\r\n")).await;
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), c.s.read_to_end(&mut got)).await;
        assert!(ended.is_ok(), "{path}: the client connection is closed, not left hanging");
        assert!(String::from_utf8_lossy(&got).ends_with(last), "{path}: {:?}", String::from_utf8_lossy(&got));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_let_go() {
    let up = upstream().await;
    let s = server(&up, r#"{ "global": { "timeout-secs": "1" } }"#, "").await;
    let mut c = connect(s.addr()).await;
    c.send(&format!("GET /api/big HTTP/1.1\r\nHost: x\r\n{PROBE}\r\n")).await;
    // Socket buffers fill, the write waits, and after timeout-secs the server gives up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), c.s.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the connection is closed");
    assert!(got.len() < 32 << 20, "the response was cut, not finished: {} bytes", got.len());
    assert!(by_passthrough(&up));
    s.stop().await;
}

#[tokio::test]
async fn a_large_request_head_is_left_to_hyper() {
    let up = upstream().await;
    // Above the passthrough's 16 KiB read, within the server's limit.
    let s = server(&up, r#"{ "global": { "max-request-head": "65536" } }"#, "").await;
    let mut c = connect(s.addr()).await;
    let big = format!("X-Big: {}\r\n", "v".repeat(20_000));
    assert_eq!(c.get("/api/x", &format!("{big}{PROBE}")).await.status, 200);
    assert!(by_hyper(&up), "a head over 16 KiB is hyper's");
    s.stop().await;
}

#[tokio::test]
async fn a_pooled_connection_that_died_is_retried_only_when_safe() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/api/drop-next", PROBE).await.status, 200);
    // The pooled connection takes this request and closes: a GET is sent again on a new one.
    let r = c.get("/api/after", PROBE).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(up.heads().iter().filter(|h| h.starts_with("GET /after ")).count(), 2);
    // A POST is not sent twice.
    assert_eq!(c.get("/api/drop-next", PROBE).await.status, 200);
    c.send("POST /api/once HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 502);
    assert_eq!(up.heads().iter().filter(|h| h.starts_with("POST /once ")).count(), 1);
    // Bytes after a response's end: that connection is not used again.
    assert_eq!(c.get("/api/x", PROBE).await.text(), "ok");
    let before = up.accepts.load(Ordering::SeqCst);
    assert_eq!(c.get("/api/extra", PROBE).await.text(), "ok");
    assert_eq!(c.get("/api/x", PROBE).await.text(), "ok");
    assert_eq!(up.accepts.load(Ordering::SeqCst), before + 1, "the poisoned connection was dropped");
    s.stop().await;
}

#[tokio::test]
async fn what_the_passthrough_leaves_to_hyper_still_works() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    // A file on the same connection, between proxied requests.
    assert_eq!(c.get("/api/x", PROBE).await.status, 200);
    assert!(by_passthrough(&up));
    assert_eq!(c.get("/index.html", "").await.text(), "home");
    // HTTP/1.0, and a body still on its way (Expect: 100-continue): hyper takes them.
    c.send(&format!("GET /api/x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n{PROBE}\r\n")).await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    assert!(by_hyper(&up));
    c.send(&format!("POST /api/up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n{PROBE}\r\n"))
        .await;
    let r = c.read_response(false).await.unwrap();
    assert_eq!(r.status, 100);
    c.send("data").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    assert!(by_hyper(&up));
    // Once hyper has let the connection go idle, the passthrough serves it again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.get("/api/x", PROBE).await.status, 200);
    assert!(by_passthrough(&up));
    // The mountpoint without its slash is hyper's redirect; a malformed head is hyper's 400.
    assert_eq!(c.get("/api", "").await.status, 301);
    let mut bad = connect(s.addr()).await;
    bad.send("GET /api/x HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n").await;
    assert_eq!(bad.read_response(false).await.unwrap().status, 400);
    s.stop().await;
}

/// Reads raw bytes until `end` has arrived.
async fn read_until(c: &mut common::Conn<TcpStream>, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&got, end).is_none() {
        match tokio::time::timeout(Duration::from_secs(5), c.s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("no {:?} in {:?}: {other:?}", String::from_utf8_lossy(end), String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn framing_is_written_by_lwsws_not_taken_from_connection_tokens() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    // A client that names Content-Length in Connection: the body must not become a request.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(&format!(
        "POST /api/x HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n{PROBE}\r\n{smuggled}",
        smuggled.len()
    ))
    .await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    assert!(by_passthrough(&up));
    assert!(up.last_head().contains(&format!("\r\ncontent-length: {}\r\n", smuggled.len())), "{}", up.last_head());
    assert_eq!(c.get("/api/y", PROBE).await.status, 200);
    let heads = up.heads();
    assert!(heads.iter().all(|h| !h.contains("/smuggled")), "{heads:?}");
    // Nor may an upstream's Connection take the response's length away.
    let r = c.get("/api/conn-cl", PROBE).await;
    assert_eq!((r.header("content-length"), r.text().as_str()), (Some("2"), "ok"));
    assert_eq!(c.get("/api/y", PROBE).await.text(), "ok", "still in step");
    // A length padded with a non-ASCII space is not a length: hyper refuses it.
    let mut c = connect(s.addr()).await;
    c.send("POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\u{a0}\r\n\r\nhi").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 400);
    let mut c = connect(s.addr()).await;
    c.send("POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 400);
    s.stop().await;
}

#[tokio::test]
async fn chunked_bodies_end_where_lwsws_says() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    // Trailers are not passed on; the body ends with an empty trailer section.
    c.send(&format!("GET /api/chunked HTTP/1.1\r\nHost: x\r\n{PROBE}\r\n")).await;
    let raw = read_until(&mut c, b"0\r\n\r\n").await;
    assert!(raw.ends_with("6;x=y\r\n world\r\n0\r\n\r\n") && !raw.contains("x-t"), "{raw:?}");
    // A bare LF where the trailers start could end the message early for lenient clients.
    assert_eq!(c.get("/api/bare-lf", PROBE).await.status, 502);
    // A request with a chunked body is hyper's to stream.
    c.send(&format!(
        "POST /api/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{PROBE}\r\n3\r\nabc\r\n0\r\n\r\n"
    ))
    .await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    let heads = up.heads();
    assert!(heads.iter().any(|h| h.starts_with("POST /up ") && h.contains("\r\nx-path-probe: 1\r\n")), "{heads:?}");
    s.stop().await;
}

#[tokio::test]
async fn odd_heads_are_handled_as_hyper_would() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/api/low-status", PROBE).await.status, 502, "a status under 100");
    let r = c.get("/api/reason", PROBE).await;
    assert_eq!((r.status, r.reason.as_str()), (200, "Fine Indeed"), "the upstream's reason phrase is kept");
    assert_eq!(c.get("/api/a<b", "").await.status, 400, "a target hyper refuses");
    let mut c = connect(s.addr()).await;
    // Two Hosts, or one that is not text, are refused (RFC 9112 3.2), and never forwarded.
    c.s.write_all(b"GET /api/h HTTP/1.1\r\nHost: \xff\r\nHost: other.test\r\nX-Path-Probe: 1\r\n\r\n").await.unwrap();
    assert_eq!(c.read_response(false).await.unwrap().status, 400);
    assert!(!up.last_head().contains("other.test"), "{}", up.last_head());
    let mut c = connect(s.addr()).await;
    // A forwarding header the client names in Connection is dropped before the chain grows.
    let r = c.get("/api/f", &format!("{PROBE}X-Forwarded-For: 10.9.9.9\r\nConnection: X-Forwarded-For\r\n")).await;
    assert_eq!(r.status, 200);
    assert!(up.last_head().contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{}", up.last_head());
    // An upstream that closes after its answer is not pooled, and nothing fails for it.
    assert_eq!(c.get("/api/close-after", PROBE).await.text(), "ok");
    assert_eq!(c.get("/api/y", PROBE).await.text(), "ok");
    s.stop().await;
}

#[tokio::test]
async fn error_pages_follow_the_request() {
    let up = upstream().await;
    let s = server(&up, r#"{ "global": { "timeout-secs": "1" } }"#, "").await;
    let mut c = connect(s.addr()).await;
    c.send(&format!("HEAD /dead/x HTTP/1.1\r\nHost: x\r\n{PROBE}\r\n")).await;
    let r = c.read_response(true).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.header("content-length").is_some_and(|l| l != "0"), "HEAD gets the length, not the page");
    assert_eq!(c.get("/api/y", PROBE).await.text(), "ok", "no page bytes were left on the wire");
    let r = c.get("/dead/x", "Connection: close\r\n").await;
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    assert!(c.closed_within(Duration::from_secs(2)).await);
    // A head that stops arriving is given timeout-secs, then the connection closes.
    let mut c = connect(s.addr()).await;
    c.send("GET /api/x HTTP/1.1\r\nHost: x\r\n").await;
    assert!(c.closed_within(Duration::from_secs(4)).await);
    s.stop().await;
}

#[tokio::test]
async fn html_is_rewritten_in_the_passthrough_too() {
    let up = upstream().await;
    let s = server(&up, "{}", "").await;
    let mut c = connect(s.addr()).await;
    let r = c.get("/site/html", PROBE).await;
    assert!(by_passthrough(&up));
    assert_eq!(r.text(), "<a href=\"/site/x\">x</a>\n<br>");
    assert_eq!(
        (r.header("transfer-encoding"), r.header("etag"), r.header("content-length")),
        (Some("chunked"), None, None)
    );
    assert_eq!(c.get("/site/html-chunked", PROBE).await.text(), "<a href=\"/site/y\">y</a>", "chunks decoded first");
    let r = c.get("/site/css", PROBE).await;
    assert_eq!(
        (r.header("content-length"), r.text().as_str()),
        (Some("17"), "a { b: url(/c) }\n"),
        "only HTML changes"
    );
    assert_eq!(c.get("/site/html-close", PROBE).await.text(), "<img src=\"/site/z.png\">");
    assert_eq!(c.get("/site/x", PROBE).await.text(), "ok", "the connection is still in step");
    let r = c.get("/site/html-empty", PROBE).await;
    assert_eq!(
        (r.header("content-length"), r.header("etag")),
        (Some("0"), Some("\"e\"")),
        "an empty page is passed on"
    );
    // A page that fails before any of it was sent is a 502, counted as the upstream's failure.
    assert_eq!(c.get("/site/html-bad-chunks", PROBE).await.status, 502);
    assert_eq!(c.get("/site/html-cut", PROBE).await.status, 502);
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_upstream_errors_total{vhost="site.test",mount="/site",result="failed"} 2"#), "{m}");
    // The same upstream unrewritten where the mount turns it off.
    assert_eq!(c.get("/api/html", PROBE).await.text(), "<a href=\"/x\">x</a>\n<br>");
    s.stop().await;
}

#[tokio::test]
async fn the_passthrough_can_be_turned_off() {
    let up = upstream().await;
    let s = server(&up, r#"{ "global": { "proxy-passthrough": "0" } }"#, "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/api/x", PROBE).await.text(), "ok");
    assert!(by_hyper(&up), "{}", up.last_head());
    s.stop().await;
}
