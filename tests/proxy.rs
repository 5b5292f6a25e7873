//! Reverse proxy mounts (spec 2.5, D13) against real backends on 127.0.0.1 (and a unix socket,
//! and a TLS backend with an rcgen certificate): mapping, streaming, pooling, failures.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, connect, get, put};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

type Resp = hyper::Response<Full<Bytes>>;

/// A backend answering with a text description of what it received; counts its connections.
async fn echo(req: hyper::Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    if parts.uri.path().ends_with("/deny") {
        // Answers before reading the request body, as an upstream refusing an upload does.
        return Ok(hyper::Response::builder().status(401).body(Full::new(Bytes::from_static(b"no"))).unwrap());
    }
    if parts.method == hyper::Method::HEAD || parts.uri.path().ends_with("/empty") {
        return Ok(hyper::Response::builder().status(204).body(Full::new(Bytes::new())).unwrap());
    }
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if parts.uri.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if parts.uri.path().ends_with("/page.html") {
        let host = parts.headers.get("host").unwrap().to_str().unwrap();
        let html = format!(
            "<html><body><a href=\"/v1/x\">x</a><img src=\"http://{host}/v1/i.png\"><a href=\"rel.html\">r</a></body></html>"
        );
        return Ok(hyper::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .header("content-length", html.len())
            .body(Full::new(Bytes::from(html)))
            .unwrap());
    }
    let mut text = format!("{} {}\n", parts.method, parts.uri);
    for (n, v) in &parts.headers {
        text.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("?")));
    }
    text.push_str(&format!("body-len: {}\n", body.len()));
    let sum: u64 = body.iter().map(|b| *b as u64).sum();
    text.push_str(&format!("body-sum: {sum}\n"));
    Ok(hyper::Response::builder()
        .header("x-backend", "echo")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-not-pass")
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}

async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), service_fn(echo)),
            );
        }
    });
    (addr, conns)
}

/// The global config for each request path: `proxy-passthrough` off (every request goes through
/// hyper), then on (the HTTP/1 passthrough serves what it can). Each test runs on both.
fn both_paths(keys: &str) -> [String; 2] {
    let sep = if keys.is_empty() { "" } else { ", " };
    [false, true].map(|on| format!(r#"{{ "global": {{ {keys}{sep}"proxy-passthrough": "{}" }} }}"#, on as u8))
}

/// `both_paths`, each with a backend of its own: (global config, backend, its connection count).
async fn both_paths_with(keys: &str) -> Vec<(String, SocketAddr, Arc<AtomicUsize>)> {
    let mut runs = Vec::new();
    for global in both_paths(keys) {
        let (b, conns) = backend().await;
        runs.push((global, b, conns));
    }
    runs
}

fn proxy_vhost(origin: &str, extra_vhost: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1", {extra_vhost}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }},
                       {{ "mountpoint": "/api", "origin": "{origin}" }}] }}] }}"#
    )
}

#[tokio::test]
async fn paths_headers_and_forwarding() {
    let (b, _) = backend().await;
    for global in both_paths("") {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/v1"), "")]).await;
        let mut c = connect(s.addr()).await;
        c.send(
            "GET /api/items/7?x=1&y=2 HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 10.1.1.1\r\nTE: trailers\r\n\r\n",
        )
        .await;
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.status, 200);
        let t = r.text();
        assert!(t.starts_with("GET /v1/items/7?x=1&y=2\n"), "{t}");
        assert!(t.contains(&format!("host: {b}\n")), "D13 Host is the origin's: {t}");
        assert!(t.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1\n"), "{t}");
        assert!(t.contains("x-forwarded-proto: http\n"), "{t}");
        assert!(t.contains("x-forwarded-host: site.test\n"), "{t}");
        assert!(t.contains("forwarded: for=127.0.0.1;proto=http;host=\"site.test\"\n"), "{t}");
        assert!(!t.contains("\nte:"), "hop-by-hop request headers are dropped: {t}");
        assert_eq!(r.header("x-backend"), Some("echo"));
        assert_eq!(r.header("x-hop"), None, "headers named in Connection are dropped");
        // The mountpoint itself, without its slash, redirects first (spec 2.3).
        assert_eq!(c.get("/api", "").await.status, 301);
        assert!(c.get("/api/", "").await.text().starts_with("GET /v1/\n"));
        s.stop().await;
    }
}

#[tokio::test]
async fn bodies_stream_both_ways_and_upstreams_are_pooled() {
    for (global, b, conns) in both_paths_with("").await {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/"), "")]).await;
        let client = reqwest::Client::new();
        // A body that arrives with its head (the passthrough takes it), then large streamed ones.
        let small = client.post(format!("http://{}/api/small", s.addr())).body("hello").send().await.unwrap();
        assert!(small.text().await.unwrap().contains("body-len: 5\nbody-sum: 532\n"));
        let before = conns.load(Ordering::SeqCst);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let sum: u64 = big.iter().map(|b| *b as u64).sum();
        for _ in 0..5 {
            let r = client.post(format!("http://{}/api/upload", s.addr())).body(big.clone()).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let t = r.text().await.unwrap();
            assert!(t.starts_with("POST /upload\n"), "{t}");
            assert!(t.contains("body-len: 3000000\n") && t.contains(&format!("body-sum: {sum}\n")), "{t}");
        }
        assert!(conns.load(Ordering::SeqCst) - before <= 1, "one pooled upstream connection served all five");
        s.stop().await;
    }
}

#[tokio::test]
async fn refused_upstream_is_503_and_slow_is_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for global in both_paths("") {
        let vhost = proxy_vhost(&format!("http://{dead}/"), r#""headers": [{ "X-Site": "yes" }],"#);
        let s = TestServer::start(&global, &[&vhost]).await;
        let mut c = connect(s.addr()).await;
        let r = c.get("/api/x", "").await;
        assert_eq!(r.status, 503);
        assert!(r.text().contains("<h1>503</h1>Service Temporarily Unavailable"), "{}", r.text());
        assert_eq!((r.header("content-type"), r.header("x-site")), (Some("text/html"), Some("yes")));
        assert_eq!(c.get("/api/y", "").await.status, 503, "the client connection stays usable");
        let m = s.server.as_ref().unwrap().metrics().render();
        assert!(m.contains(r#"lwsws_upstream_errors_total{vhost="site.test",mount="/api",result="connect"} 2"#), "{m}");
        assert!(m.contains(r#"lwsws_http_requests_total{vhost="site.test",mount="/api",status="5xx"} 2"#), "{m}");
        s.stop().await;
    }

    for (global, b, _) in both_paths_with(r#""timeout-secs": "1""#).await {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/"), "")]).await;
        let r = get(s.addr(), "/api/slow", "").await;
        assert_eq!(r.status, 504);
        let m = s.server.as_ref().unwrap().metrics().render();
        assert!(m.contains(r#"lwsws_upstream_errors_total{vhost="site.test",mount="/api",result="timeout"} 1"#), "{m}");
        s.stop().await;
    }
}

#[tokio::test]
async fn an_upstream_dying_mid_response_ends_the_client_response() {
    for passthrough in [false, true] {
        upstream_dies_mid_response(passthrough).await;
    }
}

async fn upstream_dies_mid_response(passthrough: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly a little").await.unwrap();
        // and the backend dies
    });
    let global = &both_paths("")[passthrough as usize];
    let s = TestServer::start(global, &[&proxy_vhost(&format!("http://{b}/"), "")]).await;
    let mut c = connect(s.addr()).await;
    c.send("GET /api/x HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client connection must not hang");
    assert!(String::from_utf8_lossy(&got).contains("only a little"), "{:?}", String::from_utf8_lossy(&got));
    s.stop().await;
}

#[tokio::test]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), service_fn(echo)),
            );
        }
    });
    for global in both_paths("") {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://+{}:/app", sock.display()), "")]).await;
        let r = get(s.addr(), "/api/z", "").await;
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("GET /app/z\n"), "{}", r.text());
        s.stop().await;
    }
}

#[tokio::test]
async fn https_upstream_verified_against_client_ssl_ca() {
    let pki = common::Pki::new("backend ca");
    let dir = tempfile::tempdir().unwrap();
    pki.leaf(dir.path(), "backend", &["localhost"], false);
    pki.write_ca(&dir.path().join("ca.pem"));
    // A TLS backend.
    use rustls_pki_types::pem::PemObject;
    common::init();
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.path().join("backend.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.path().join("backend.key")).unwrap();
    let cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(echo))
                        .await;
                }
            });
        }
    });
    let extra = format!(r#""enable-client-ssl": "1", "client-ssl-ca": "{}","#, dir.path().join("ca.pem").display());
    let s = TestServer::start("{}", &[&proxy_vhost(&format!("https://localhost:{port}/"), &extra)]).await;
    let r = get(s.addr(), "/api/secure", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("GET /secure\n"));
    s.stop().await;
    // Without the CA the backend's certificate is not trusted: the proxy refuses it.
    let s =
        TestServer::start("{}", &[&proxy_vhost(&format!("https://localhost:{port}/"), r#""enable-client-ssl": "1","#)])
            .await;
    assert_eq!(get(s.addr(), "/api/secure", "").await.status, 503);
    s.stop().await;
}

#[tokio::test]
async fn proxied_responses_are_access_logged_and_get_vhost_headers() {
    let line = regex::Regex::new(r#""GET /api/logged HTTP/1.1" 200 (\d+) "http://r.test/" "probe/1""#).unwrap();
    for (global, b, _) in both_paths_with("").await {
        let extra = r#""access-log": "{DIR}/access.log", "headers": [{ "X-Site": "yes" }],"#;
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/"), extra)]).await;
        put(s.path(), "www/index.html", "home");
        let r = get(s.addr(), "/api/logged", "User-Agent: probe/1\r\nReferer: http://r.test/\r\n").await;
        assert_eq!(r.header("x-site"), Some("yes"));
        let names = r.names();
        assert_eq!(names[0].to_ascii_lowercase(), "x-site", "configured headers come first: {names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = std::fs::read_to_string(s.path().join("access.log")).unwrap();
        let bytes: usize = line.captures(&log).expect("the request's line")[1].parse().unwrap();
        assert!(bytes > r.body.len() + r.head_text.len(), "head and body are counted: {log}");
        let m = s.server.as_ref().unwrap().metrics().render();
        assert!(m.contains(r#"lwsws_http_requests_total{vhost="site.test",mount="/api",status="2xx"} 1"#), "{m}");
        s.stop().await;
    }
}

/// A websocket echo backend that accepts the subprotocol the client offers first.
#[allow(clippy::result_large_err)] // tungstenite's callback signature, not ours
async fn ws_backend() -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let pick = |req: &Request, mut resp: Response| {
                    if let Some(p) = req.headers().get("sec-websocket-protocol") {
                        let first = p.to_str().unwrap().split(',').next().unwrap().trim().to_string();
                        resp.headers_mut().insert("sec-websocket-protocol", first.parse().unwrap());
                    }
                    Ok(resp)
                };
                let mut ws = tokio_tungstenite::accept_hdr_async(s, pick).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled_with_the_subprotocol() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let b = ws_backend().await;
    let s = TestServer::start("{}", &[&proxy_vhost(&format!("http://{b}/"), "")]).await;
    let mut req = "ws://site.test/api/chat".into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.expect("handshake through the proxy");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "chat");
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    // Idle longer than the parking delay and keep-alive: an upgraded connection is not HTTP any more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(Message::text("still here")).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "still here");
    ws.close(None).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn links_in_proxied_html_point_under_the_mount() {
    let (b, _) = backend().await;
    for global in both_paths("") {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/v1"), "")]).await;
        let r = reqwest::get(format!("http://{}/api/page.html", s.addr())).await.unwrap();
        assert!(r.headers().get("content-length").is_none(), "the length changes with the links");
        let t = r.text().await.unwrap();
        assert!(t.contains("<a href=\"/api/x\">"), "{t}");
        assert!(t.contains("<img src=\"/api/i.png\">"), "{t}");
        assert!(t.contains("<a href=\"rel.html\">"), "relative links need no change: {t}");
        s.stop().await;
    }
    // The mount can turn it off.
    let v = proxy_vhost(&format!(r#"http://{b}/v1", "rewrite-links": "0"#), "");
    let s = TestServer::start("{}", &[&v]).await;
    let t = reqwest::get(format!("http://{}/api/page.html", s.addr())).await.unwrap().text().await.unwrap();
    assert!(t.contains("<a href=\"/v1/x\">"), "{t}");
    s.stop().await;
}

#[tokio::test]
async fn a_slow_upload_is_not_a_timeout_and_early_answers_keep_things_working() {
    for (global, b, conns) in both_paths_with(r#""timeout-secs": "1""#).await {
        let s = TestServer::start(&global, &[&proxy_vhost(&format!("http://{b}/"), "")]).await;
        // 3 s of upload, one chunk every 300 ms, with a 1 s timeout.
        let mut c = connect(s.addr()).await;
        c.send("POST /api/up HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10000\r\n\r\n").await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.send(&"a".repeat(1000)).await;
        }
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().contains("body-len: 10000\n"), "{}", r.text());
        let client = reqwest::Client::new();
        // An upstream that refuses before reading the body: the client gets the answer, and both
        // connections stay usable.
        let r = client.post(format!("http://{}/api/deny", s.addr())).body(vec![0u8; 200_000]).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = client.get(format!("http://{}/api/after", s.addr())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Bodiless answers hand their connection back too.
        let before = conns.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert_eq!(client.get(format!("http://{}/api/empty", s.addr())).send().await.unwrap().status(), 204);
            assert_eq!(client.head(format!("http://{}/api/x", s.addr())).send().await.unwrap().status(), 204);
        }
        assert!(conns.load(Ordering::SeqCst) - before <= 1, "bodiless responses reuse the upstream connection");
        s.stop().await;
    }
}

#[tokio::test]
async fn basic_auth_credentials_stay_with_lwsws() {
    use base64::Engine;
    let (b, _) = backend().await;
    // Read when the config is loaded: the file must be there before the server starts.
    let creds = tempfile::tempdir().unwrap();
    let logins = put(creds.path(), "logins", "u:p\n");
    let v = format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1",
            "mounts": [{{ "mountpoint": "/api", "origin": "http://{b}/", "basic-auth": "{}" }}] }}] }}"#,
        logins.display()
    );
    let s = TestServer::start("{}", &[&v]).await;
    let auth = format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode("u:p"));
    let r = get(s.addr(), "/api/x", &auth).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("authorization:"), "{}", r.text());
    s.stop().await;
}
