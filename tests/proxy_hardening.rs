//! What abuse found on the proxy mounts (issue 12), answered the same on both request paths
//! (`"proxy-passthrough"` off: every request through hyper; on: the HTTP/1 passthrough serves
//! what it can). The upstream is scripted on 127.0.0.1: it writes raw bytes chosen by the
//! request path's last segment, and records every head it was sent.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{Conn, TestServer, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Upstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn upstream() -> Upstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(script(s, h.clone()));
        }
    });
    Upstream { addr, heads }
}

/// Reads request heads (bodies are not read: these requests have none the script cares about)
/// and answers by the path's last segment.
async fn script(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = common::read_head(&mut s, &mut buf).await else { return };
        heads.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let reply: Vec<u8> = match path.rsplit('/').next().unwrap_or("") {
            // Switches protocols whatever it was asked, with no Sec-WebSocket-Accept.
            "switch" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".to_vec(),
            "ws-no-accept" => {
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec()
            }
            "both" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                .to_vec(),
            "stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome").await;
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                return;
            }
            "hang" => {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                return;
            }
            "old" => b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold".to_vec(),
            "huge-head" => {
                let filler = format!("X-Filler: {}\r\n", "f".repeat(1000)).repeat(200);
                format!("HTTP/1.1 200 OK\r\n{filler}Content-Length: 0\r\n\r\n").into_bytes()
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        };
        if s.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn vhost(up: SocketAddr) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1",
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }},
                       {{ "mountpoint": "/api", "origin": "http://{up}/", "rewrite-links": "0" }}] }}] }}"#
    )
}

/// A server on each request path, each with an upstream of its own.
async fn both_paths() -> Vec<(&'static str, TestServer, Upstream)> {
    both_paths_with("").await
}

/// `both_paths`, with more global keys (`"key": "value", `).
async fn both_paths_with(keys: &str) -> Vec<(&'static str, TestServer, Upstream)> {
    let mut runs = Vec::new();
    for (name, on) in [("hyper", 0), ("passthrough", 1)] {
        let up = upstream().await;
        let global = format!(r#"{{ "global": {{ {keys} "proxy-passthrough": "{on}" }} }}"#);
        let s = TestServer::start(&global, &[&vhost(up.addr)]).await;
        common::put(s.path(), "www/index.html", "home");
        runs.push((name, s, up));
    }
    runs
}

async fn status_of(c: &mut Conn<TcpStream>, raw: &str) -> (u16, Option<String>) {
    c.send(raw).await;
    let r = c.read_response(false).await.expect("a response");
    (r.status, r.header("connection").map(str::to_string))
}

/// An `Upgrade` that is not a websocket handshake is never forwarded, and a 101 the client did
/// not ask for (or that does not answer its handshake) is a 502: the client never gets a raw
/// pipe to the backend.
#[tokio::test]
async fn only_websocket_upgrades_cross_the_proxy() {
    for (path, s, up) in both_paths().await {
        let mut c = connect(s.addr()).await;
        let h2c = "GET /api/switch HTTP/1.1\r\nHost: site.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
        let (status, _) = status_of(&mut c, h2c).await;
        assert_eq!(status, 502, "{path}: an unasked 101 is refused");
        let sent = up.heads().pop().expect("the request went upstream as a plain request");
        let lower = sent.to_ascii_lowercase();
        assert!(!lower.contains("upgrade") && !lower.contains("http2-settings"), "{path}: {sent}");

        let mut c = connect(s.addr()).await;
        let ws = "GET /api/ws-no-accept HTTP/1.1\r\nHost: site.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let (status, _) = status_of(&mut c, ws).await;
        assert_eq!(status, 502, "{path}: a 101 without the right Sec-WebSocket-Accept is refused");
        let sent = up.heads().pop().unwrap().to_ascii_lowercase();
        assert!(sent.contains("upgrade: websocket"), "{path}: the websocket handshake is forwarded: {sent}");
        s.stop().await;
    }
}

/// RFC 9112 3.2: an HTTP/1.1 request without Host, with two, or with one that is not an
/// authority is a 400 (and the connection closes); none of them reaches the upstream, so no
/// invalid Host is ever forwarded in `X-Forwarded-Host`.
#[tokio::test]
async fn requests_without_one_valid_host_are_400() {
    for (path, s, up) in both_paths().await {
        let bad = [
            "GET /api/x HTTP/1.1\r\n\r\n".to_string(),
            "GET /api/x HTTP/1.1\r\nHost: site.test\r\nHost: other.test\r\n\r\n".to_string(),
            "GET /api/x HTTP/1.1\r\nHost: a b\r\n\r\n".to_string(),
            "GET /api/x HTTP/1.1\r\nHost: ../../etc\r\n\r\n".to_string(),
            "GET /api/x HTTP/1.1\r\nHost: x\"y;for=1.2.3.4\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: site.test:80:80\r\n\r\n".to_string(),
        ];
        for raw in &bad {
            let mut c = connect(s.addr()).await;
            let (status, connection) = status_of(&mut c, raw).await;
            assert_eq!(status, 400, "{path}: {raw:?}");
            assert_eq!(connection.as_deref(), Some("close"), "{path}: {raw:?}");
        }
        assert!(up.heads().is_empty(), "{path}: nothing reached the upstream: {:?}", up.heads());
        let good = [
            "GET /api/x HTTP/1.1\r\nHost: site.test:8080\r\n\r\n",
            "GET /api/x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
            "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "GET /api/x HTTP/1.0\r\n\r\n",
        ];
        for raw in good {
            let mut c = connect(s.addr()).await;
            assert_eq!(status_of(&mut c, raw).await.0, 200, "{path}: {raw:?}");
        }
        s.stop().await;
    }
}

/// A request with both Content-Length and Transfer-Encoding: the two framings are how requests
/// are smuggled past one reader and not another. Where lwsws reads the head itself (the
/// passthrough) it is refused with 400 and the connection closes. hyper never shows lwsws the
/// length (it drops it and follows the chunks): there the request is served by its chunks, goes
/// upstream with one framing only, and the connection closes after the answer, so nothing
/// smuggled after it can be read as a request (docs/compatibility.md).
#[tokio::test]
async fn a_request_with_two_framings_is_refused_or_read_one_way_and_closed() {
    for (path, s, up) in both_paths().await {
        let mut c = connect(s.addr()).await;
        let raw = "POST /api/x HTTP/1.1\r\nHost: site.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: site.test\r\n\r\n";
        let (status, connection) = status_of(&mut c, raw).await;
        if path == "passthrough" {
            assert_eq!(status, 400, "{path}");
            assert_eq!(connection.as_deref(), Some("close"), "{path}");
            assert!(up.heads().is_empty(), "{path}: {:?}", up.heads());
        } else {
            let sent = up.heads().pop().expect("served by its chunks").to_ascii_lowercase();
            assert!(!sent.contains("content-length: 4"), "{path}: one framing upstream: {sent}");
        }
        assert!(c.read_response(false).await.is_none(), "{path}: the connection closed after the answer");
        assert!(!up.heads().iter().any(|h| h.contains("/smuggled")), "{path}: {:?}", up.heads());
        s.stop().await;
    }
}

/// A chunked request body whose framing is broken is the client's fault: 400 on both paths
/// (the hyper path used to answer 502, as if the upstream had failed).
#[tokio::test]
async fn a_malformed_chunked_request_body_is_400() {
    for bad_size in ["ffffffffffffffffff", "0x5", "-1"] {
        for (path, s, _up) in both_paths().await {
            let mut c = connect(s.addr()).await;
            let raw = format!(
                "POST /api/x HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n{bad_size}\r\nhello\r\n0\r\n\r\n"
            );
            let (status, _) = status_of(&mut c, &raw).await;
            assert_eq!(status, 400, "{path}: chunk size {bad_size:?}");
            s.stop().await;
        }
    }
}

/// One answer per upstream misbehaviour, the same on both paths: an HTTP/1.0 answer goes to
/// the client as HTTP/1.1 and the connection serves the next (pipelined) request; two framings
/// or a 200 KB head are a 502.
#[tokio::test]
async fn upstream_answers_are_judged_the_same_on_both_paths() {
    for (path, s, _up) in both_paths().await {
        let mut c = connect(s.addr()).await;
        c.send("GET /api/old HTTP/1.1\r\nHost: site.test\r\n\r\nGET /api/next HTTP/1.1\r\nHost: site.test\r\n\r\n")
            .await;
        let first = c.read_response(false).await.expect("the first answer");
        assert_eq!((first.status, first.text().as_str()), (200, "old"), "{path}");
        assert!(first.head_text.starts_with("HTTP/1.1 "), "{path}: {}", first.head_text);
        let second = c.read_response(false).await.expect("the pipelined request is answered too");
        assert_eq!((second.status, second.text().as_str()), (200, "ok"), "{path}");

        for bad in ["both", "huge-head"] {
            let mut c = connect(s.addr()).await;
            let (status, _) = status_of(&mut c, &format!("GET /api/{bad} HTTP/1.1\r\nHost: site.test\r\n\r\n")).await;
            assert_eq!(status, 502, "{path}: {bad}");
        }
        s.stop().await;
    }
}

/// A slow upload holds only its own connection: its body is read before the request takes a
/// turn at the upstream. With one request allowed in flight, a complete request is answered
/// while a slow upload is still arriving; the upload goes upstream once whole.
#[tokio::test]
async fn a_slow_upload_holds_no_upstream_connection() {
    for (path, s, up) in both_paths_with(r#""proxy-max-conns": "1","#).await {
        let mut slow = connect(s.addr()).await;
        slow.send("POST /api/upload HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10\r\n\r\nhello").await;
        let mut quick = connect(s.addr()).await;
        let (status, _) = status_of(&mut quick, "GET /api/x HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
        assert_eq!(status, 200, "{path}: answered while the upload is still arriving");
        assert!(!up.heads().iter().any(|h| h.contains("/upload")), "{path}: not upstream before it is whole");
        let (status, _) = status_of(&mut slow, "world").await;
        assert_eq!(status, 200, "{path}");
        let sent = up.heads().into_iter().find(|h| h.contains("/upload")).expect("the upload went upstream");
        assert!(sent.to_ascii_lowercase().contains("content-length: 10"), "{path}: {sent}");
        s.stop().await;
    }
}

/// A body that stops moving for `timeout-secs` is answered 408, and never reaches the upstream.
#[tokio::test]
async fn a_stalled_upload_is_408() {
    for (path, s, up) in both_paths_with(r#""timeout-secs": "1","#).await {
        let mut c = connect(s.addr()).await;
        let (status, _) =
            status_of(&mut c, "POST /api/upload HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10\r\n\r\nhel").await;
        assert_eq!(status, 408, "{path}");
        assert!(up.heads().is_empty(), "{path}: {:?}", up.heads());
        s.stop().await;
    }
}

/// `proxy-max-conns`: requests beyond the limit wait for a turn, at most half the proxy timeout
/// (2 s here, while the request holding the turn has 4 s), then get 503; the upstream never
/// sees more requests at once than the limit.
#[tokio::test]
async fn requests_beyond_the_upstream_limit_wait_then_get_503() {
    for (path, s, up) in both_paths_with(r#""proxy-max-conns": "1", "timeout-secs": "4","#).await {
        let mut hanging = connect(s.addr()).await;
        hanging.send("GET /api/hang HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
        while !up.heads().iter().any(|h| h.contains("/hang")) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut c = connect(s.addr()).await;
        let (status, _) = status_of(&mut c, "GET /api/x HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
        assert_eq!(status, 503, "{path}");
        assert_eq!(up.heads().len(), 1, "{path}: only the hanging request reached the upstream");
        let metrics = s.server.as_ref().unwrap().metrics().render();
        assert!(metrics.contains("result=\"busy\""), "{path}: counted as busy: {metrics}");
        s.stop().await;
    }
}

/// `max-request-head` (16 KiB unless set): a larger head is answered 431, on both paths; a
/// larger limit lets it through.
#[tokio::test]
async fn request_heads_beyond_the_limit_are_431() {
    let big = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    for (path, s, _up) in both_paths().await {
        let mut c = connect(s.addr()).await;
        let (status, _) = status_of(&mut c, &format!("GET /api/x HTTP/1.1\r\nHost: site.test\r\n{big}\r\n")).await;
        assert_eq!(status, 431, "{path}");
        let mut c = connect(s.addr()).await;
        let (status, _) = status_of(&mut c, "GET /api/x HTTP/1.1\r\nHost: site.test\r\nX-Small: 1\r\n\r\n").await;
        assert_eq!(status, 200, "{path}");
        s.stop().await;
    }
    for (path, s, _up) in both_paths_with(r#""max-request-head": "65536","#).await {
        let mut c = connect(s.addr()).await;
        let (status, _) = status_of(&mut c, &format!("GET /api/x HTTP/1.1\r\nHost: site.test\r\n{big}\r\n")).await;
        assert_eq!(status, 200, "{path}: within a larger limit");
        s.stop().await;
    }
}

/// A body that trickles in below 1 KiB/s (here past a zero `proxy-body-buffer`, so it streams)
/// is answered 408 once `timeout-secs` has passed: it cannot hold an upstream connection and a
/// turn for ever by sending a byte just before each timeout.
#[tokio::test]
async fn a_trickling_upload_is_408() {
    for (path, s, _up) in both_paths_with(r#""proxy-body-buffer": "0", "timeout-secs": "2","#).await {
        let mut c = connect(s.addr()).await;
        c.send("POST /api/hang HTTP/1.1\r\nHost: site.test\r\nContent-Length: 100000\r\n\r\n").await;
        let (mut reader, mut writer) = tokio::io::split(c.s);
        let trickle = tokio::spawn(async move {
            loop {
                if writer.write_all(b"0123456789").await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while !head.ends_with(b"\r\n\r\n") && reader.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
        })
        .await;
        trickle.abort();
        assert!(answered.is_ok(), "{path}: no answer");
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 408"), "{path}: {head}");
        s.stop().await;
    }
}

/// An upstream that stalls mid-body has the response cut after the proxy timeout on both paths,
/// and gives its turn back: with one request allowed in flight, the next request is answered.
#[tokio::test]
async fn a_response_stalled_mid_body_is_cut_and_frees_its_turn() {
    for (path, s, _up) in both_paths_with(r#""proxy-max-conns": "1", "timeout-secs": "1","#).await {
        let mut c = connect(s.addr()).await;
        c.send("GET /api/stall HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
        let mut got = Vec::new();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(30), c.s.read_to_end(&mut got)).await;
        assert!(ended.is_ok(), "{path}: the response was not cut");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200") && !text.ends_with(&"x".repeat(96)), "{path}: {text}");
        let mut c = connect(s.addr()).await;
        let (status, _) = status_of(&mut c, "GET /api/x HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
        assert_eq!(status, 200, "{path}: the turn came back");
        s.stop().await;
    }
}
