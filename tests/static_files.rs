//! `file://` mounts over real sockets: defaults, redirects, ETag/304, ranges, cache-control,
//! mimetypes (D9), error documents, traversal, header order, auth, keywords, access log.

mod common;

use std::time::Duration;

use common::{TestServer, connect, get, put};

fn vhost(extra_vhost: &str, mounts: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1", {extra_vhost}
             "mounts": [{mounts}] }}] }}"#
    )
}

async fn site(extra_vhost: &str, extra_mount: &str) -> TestServer {
    let mounts =
        format!(r#"{{ "mountpoint": "/", "origin": "file://{{DIR}}/www", "default": "index.html" {extra_mount} }}"#);
    let s =
        TestServer::start(r#"{ "global": { "server-string": "lwsws-test" } }"#, &[&vhost(extra_vhost, &mounts)]).await;
    put(s.path(), "www/index.html", "<h1>home</h1>");
    put(s.path(), "www/a.txt", "0123456789abcdefghij");
    put(s.path(), "www/sub/index.html", "sub-index");
    put(s.path(), "www/noext", "secret");
    put(s.path(), "www/x.zip", "zipdata");
    s
}

#[tokio::test]
async fn serves_files_defaults_and_directories() {
    let s = site("", "").await;
    let r = get(s.addr(), "/", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("server"), Some("lwsws-test"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    // A subdirectory without its slash is served, not redirected (spec 2.3).
    let r = get(s.addr(), "/sub", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "sub-index"));
    let r = get(s.addr(), "/sub/", "").await;
    assert_eq!(r.text(), "sub-index");
    let r = get(s.addr(), "/a.txt?x=1", "").await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/plain")));
    let r = get(s.addr(), "/missing.html", "").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<h1>404</h1>"));
    s.stop().await;
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let s = site("", "").await;
    let mut c = connect(s.addr()).await;
    c.send("HEAD /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let r = c.read_response(true).await.unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("20")));
    // The connection is still in sync: the next response parses.
    let r = c.get("/a.txt", "").await;
    assert_eq!(r.text(), "0123456789abcdefghij");
    s.stop().await;
}

#[tokio::test]
async fn unknown_suffix_is_415_unless_star_or_extra() {
    let s = site("", "").await;
    assert_eq!(get(s.addr(), "/noext", "").await.status, 415);
    assert_eq!(get(s.addr(), "/x.zip", "").await.status, 415);
    s.stop().await;
    let s = site("", r#", "extra-mimetypes": { ".zip": "application/zip", "*": "" }"#).await;
    let r = get(s.addr(), "/x.zip", "").await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/zip")));
    let r = get(s.addr(), "/noext", "").await;
    assert_eq!((r.status, r.header("content-type"), r.text().as_str()), (200, None, "secret"));
    s.stop().await;
}

#[tokio::test]
async fn etag_and_304() {
    let s = site("", "").await;
    let r = get(s.addr(), "/a.txt", "").await;
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(etag.len(), 16);
    assert!(etag.starts_with("00000014"), "size first: {etag}");
    assert!(etag.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    let r = get(s.addr(), "/a.txt", &format!("If-None-Match: {etag}\r\n")).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());
    let r = get(s.addr(), "/a.txt", "If-None-Match: 0000000000000000\r\n").await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn ranges_single_multi_and_416() {
    let s = site("", "").await;
    let r = get(s.addr(), "/a.txt", "Range: bytes=2-5\r\n").await;
    assert_eq!((r.status, r.text().as_str()), (206, "2345"));
    assert_eq!(r.header("content-range"), Some("bytes 2-5/20"));
    let r = get(s.addr(), "/a.txt", "Range: bytes=-3\r\n").await;
    assert_eq!(r.text(), "hij");
    let r = get(s.addr(), "/a.txt", "Range: bytes=0-1,10-11\r\n").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-type"), Some("multipart/byteranges; boundary=_lws"));
    let body = r.text();
    assert!(
        body.starts_with("--_lws\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/20\r\n\r\n01\r\n"),
        "{body}"
    );
    assert!(body.contains("Content-Range: bytes 10-11/20\r\n\r\nab\r\n--_lws--\r\n"), "{body}");
    assert_eq!(r.body.len(), r.header("content-length").unwrap().parse::<usize>().unwrap());
    let r = get(s.addr(), "/a.txt", "Range: bytes=50-60\r\n").await;
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */20")));
    // A stale If-Range cancels the range.
    let r = get(s.addr(), "/a.txt", "Range: bytes=2-5\r\nIf-Range: 0000000000000000\r\n").await;
    assert_eq!((r.status, r.body.len()), (200, 20));
    s.stop().await;
}

#[tokio::test]
async fn large_files_stream_whole_and_ranged() {
    let s = site("", r#", "extra-mimetypes": { ".bin": "application/octet-stream" }"#).await;
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    put(s.path(), "www/big.bin", &data);
    let r = get(s.addr(), "/big.bin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5000000"));
    assert!(r.body == data, "the whole file, byte for byte ({} bytes came)", r.body.len());
    let r = get(s.addr(), "/big.bin", "Range: bytes=4000000-4000009\r\n").await;
    assert_eq!(r.status, 206, "{}", r.head_text);
    assert_eq!(r.header("content-range"), Some("bytes 4000000-4000009/5000000"));
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.body, &data[4_000_000..4_000_010]);
    s.stop().await;
}

#[tokio::test]
async fn cache_control_variants() {
    for (keys, want) in [
        (r#", "cache-max-age": "60", "cache-reuse": "1""#, "private, max-age=60"),
        (
            r#", "cache-max-age": "60", "cache-reuse": "1", "cache-revalidate": "1""#,
            "must-revalidate, private, max-age=60",
        ),
        (r#", "cache-max-age": "60", "cache-reuse": "1", "cache-intermediaries": "1""#, "public, max-age=60"),
        (r#", "cache-no": "1", "cache-max-age": "60", "cache-reuse": "1""#, "no-cache"),
        (r#", "cache-max-age": "60""#, "no-store"),
    ] {
        let s = site("", keys).await;
        assert_eq!(get(s.addr(), "/a.txt", "").await.header("cache-control"), Some(want), "{keys}");
        s.stop().await;
    }
}

#[tokio::test]
async fn traversal_attempts_stay_inside_the_mount() {
    let s = site("", r#", "extra-mimetypes": { "*": "" }"#).await;
    // A file beside the docroot that must never be reachable.
    put(s.path(), "outside.txt", "LEAK");
    put(s.path(), "conf.d/secret", "LEAK");
    for path in [
        "/../outside.txt",
        "/..%2foutside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E%2Foutside.txt",
        "/sub/../../outside.txt",
        "//..//outside.txt",
        "/..\\outside.txt",
        "/%2e%2e%5coutside.txt",
        "/./../conf.d/secret",
        "/sub/%2e%2e/%2e%2e/%2e%2e/conf",
    ] {
        let mut c = connect(s.addr()).await;
        c.send(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        let r = c.read_response(false).await.unwrap();
        assert!(!r.text().contains("LEAK"), "{path} leaked");
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
    }
    // Normalisation still finds files that are inside.
    assert_eq!(get(s.addr(), "/sub/../a.txt", "").await.status, 200);
    // An encoded NUL is a bad request.
    assert_eq!(get(s.addr(), "/a.txt%00.html", "").await.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn trailing_slash_redirect_for_exact_mountpoint() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" },
                    { "mountpoint": "/docs", "origin": "file://{DIR}/docs" }"#;
    let s = TestServer::start("{}", &[&vhost("", mounts)]).await;
    put(s.path(), "docs/index.html", "docs!");
    let r = get(s.addr(), "/docs?q=1", "").await;
    assert_eq!((r.status, r.reason.as_str()), (301, "Redirect"));
    assert_eq!(r.header("location"), Some("http://localhost/docs/?q=1"));
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(get(s.addr(), "/docs/", "").await.text(), "docs!");
    s.stop().await;
}

#[tokio::test]
async fn longest_mount_wins_and_exact_match() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/a" },
                    { "mountpoint": "/x", "origin": "file://{DIR}/b" },
                    { "mountpoint": "/x/y", "origin": "file://{DIR}/c" }"#;
    let s = TestServer::start("{}", &[&vhost("", mounts)]).await;
    put(s.path(), "a/x.txt", "A");
    put(s.path(), "a/xy.txt", "A2");
    put(s.path(), "b/f.txt", "B");
    put(s.path(), "c/f.txt", "C");
    assert_eq!(get(s.addr(), "/x/f.txt", "").await.text(), "B");
    assert_eq!(get(s.addr(), "/x/y/f.txt", "").await.text(), "C");
    assert_eq!(get(s.addr(), "/xy.txt", "").await.text(), "A2");
    s.stop().await;
}

#[tokio::test]
async fn redirect_mounts_both_spellings() {
    let mounts = r#"{ "mountpoint": "/old", "origin": ">https://example.com/new" },
                    { "mountpoint": "/readme", "origin": "^http://example.org//x/" },
                    { "mountpoint": "/keep", "origin": ">https://example.net/base", "append-path": "1" }"#;
    let s = TestServer::start("{}", &[&vhost(r#""sts": "1","#, mounts)]).await;
    let r = get(s.addr(), "/old/thing", "").await;
    assert_eq!((r.status, r.reason.as_str()), (301, "Redirect"));
    assert_eq!(r.header("location"), Some("https://example.com/new"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("strict-transport-security"), Some("max-age=15768000 ; includeSubDomains"));
    assert_eq!(get(s.addr(), "/readme", "").await.header("location"), Some("http://example.org/x/"));
    assert_eq!(get(s.addr(), "/keep/a/b", "").await.header("location"), Some("https://example.net/base/a/b"));
    s.stop().await;
}

#[tokio::test]
async fn header_order_vhost_then_mount_overrides_then_server_then_sts() {
    let v = r#""sts": "on", "headers": [{ "X-A": "va", "X-B": "vb" }],"#;
    let m = r#", "headers": [{ "x-b": "mount-b", "X-C": "vc" }]"#;
    let s = site(v, m).await;
    let r = get(s.addr(), "/a.txt", "").await;
    let names = r.names();
    let pos =
        |n: &str| names.iter().position(|x| x.eq_ignore_ascii_case(n)).unwrap_or_else(|| panic!("{n} in {names:?}"));
    assert!(pos("x-a") < pos("x-b") && pos("x-b") < pos("x-c") && pos("x-c") < pos("server"));
    assert!(pos("server") < pos("strict-transport-security") && pos("strict-transport-security") < pos("content-type"));
    assert_eq!(r.header("x-b"), Some("mount-b"));
    // Errors carry them too.
    let r = get(s.addr(), "/nope.txt", "").await;
    assert_eq!(r.header("x-a"), Some("va"));
    assert!(r.header("strict-transport-security").is_some());
    s.stop().await;
}

#[tokio::test]
async fn error_document_404() {
    let s = site(r#""error-document-404": "/404.html","#, "").await;
    put(s.path(), "www/404.html", "custom not found");
    let r = get(s.addr(), "/missing.html", "").await;
    assert_eq!((r.status, r.reason.as_str(), r.header("location")), (302, "Redirect", Some("/404.html")));
    let r = get(s.addr(), "/404.html", "").await;
    assert_eq!((r.status, r.text().as_str()), (404, "custom not found"));
    s.stop().await;
}

#[tokio::test]
async fn basic_auth_401_403_200() {
    use base64::Engine;
    // Read when the config is loaded: the file must be there before the server starts.
    let creds = tempfile::tempdir().unwrap();
    let logins = put(creds.path(), "logins", "user:pass\nother:x\n");
    let s = site("", &format!(r#", "basic-auth": "{}""#, logins.display())).await;
    let r = get(s.addr(), "/a.txt", "").await;
    assert_eq!(
        (r.status, r.header("www-authenticate"), r.header("content-length")),
        (401, Some("Basic realm=\"lwsws\""), Some("0"))
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = connect(s.addr()).await;
    let r = c.get("/a.txt", &format!("Authorization: Basic {}\r\n", b64("user:wrong"))).await;
    assert_eq!(r.status, 401);
    // The connection stays open after a 401.
    let r = c.get("/a.txt", &format!("Authorization: Basic {}\r\n", b64("user:pass"))).await;
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789abcdefghij"));
    let r = get(s.addr(), "/a.txt", "Authorization: Bearer abc\r\n").await;
    assert_eq!(r.status, 403);
    let r = get(s.addr(), "/a.txt", &format!("Authorization: Basic {}\r\n", b64("nocolon"))).await;
    assert_eq!(r.status, 403);
    s.stop().await;
}

#[tokio::test]
async fn reject_service_keywords_closes() {
    let global = r#"{ "global": { "reject-service-keywords": [{ "scumbot": "404 Not Welcome" }] } }"#;
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" }"#;
    let s = TestServer::start(global, &[&vhost("", mounts)]).await;
    put(s.path(), "www/index.html", "hi");
    let mut c = connect(s.addr()).await;
    let r = c.get("/", "User-Agent: Mozilla scumbot/1.0\r\n").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<h1>404</h1>Not Welcome"), "{}", r.text());
    assert!(c.closed_within(Duration::from_secs(2)).await);
    assert_eq!(get(s.addr(), "/", "User-Agent: curl\r\n").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn access_log_line_format() {
    let s = site(r#""access-log": "{DIR}/access.log","#, "").await;
    let r = get(s.addr(), "/a.txt?q=1", "User-Agent: test \"agent\"\r\nReferer: http://ref/\r\n").await;
    assert_eq!(r.status, 200);
    get(s.addr(), "/missing.html", "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(s.path().join("access.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let re = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /a\.txt HTTP/1\.1" 200 (\d+) "http://ref/" "test 'agent'"$"#,
    )
    .unwrap();
    let caps = re.captures(lines[0]).unwrap_or_else(|| panic!("no match: {}", lines[0]));
    let bytes: usize = caps[1].parse().unwrap();
    assert!(bytes > 20 && bytes < 400, "headers are counted: {bytes}");
    assert!(lines[1].contains("\"GET /missing.html HTTP/1.1\" 404 "), "{}", lines[1]);
    assert!(lines[1].ends_with("\"\" \"\""));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.path().join("access.log")).unwrap().permissions().mode() & 0o777, 0o600);
    s.stop().await;
}

#[tokio::test]
async fn pipelined_requests_answer_in_order() {
    let s = site("", "").await;
    let mut c = connect(s.addr()).await;
    c.send("GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().text(), "0123456789abcdefghij");
    assert_eq!(c.read_response(false).await.unwrap().text(), "<h1>home</h1>");
    assert_eq!(c.read_response(false).await.unwrap().status, 404);
    s.stop().await;
}

#[tokio::test]
async fn keepalive_timeout_closes_idle_connections() {
    let s = site(r#""keepalive_timeout": "1","#, "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/a.txt", "").await.status, 200);
    let t = std::time::Instant::now();
    assert!(c.closed_within(Duration::from_secs(4)).await, "idle connection must be closed");
    assert!(t.elapsed() >= Duration::from_millis(800));
    s.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_by_timeout_secs() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" }"#;
    let s = TestServer::start(r#"{ "global": { "timeout-secs": "1" } }"#, &[&vhost("", mounts)]).await;
    let mut c = connect(s.addr()).await;
    c.send("GET / HTTP/1.1\r\nHo").await;
    assert!(c.closed_within(Duration::from_secs(4)).await, "a client sending headers too slowly is cut off");
    s.stop().await;
}

#[tokio::test]
async fn other_methods_get_405_and_callbacks_need_their_protocol() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" },
                    { "mountpoint": "/p", "origin": "callback://protocol-post-demo" }"#;
    let s = TestServer::start("{}", &[&vhost("", mounts)]).await;
    put(s.path(), "www/index.html", "hi");
    let mut c = connect(s.addr()).await;
    c.send("DELETE /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").await;
    let r = c.read_response(false).await.unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // callback:// names a protocol this vhost did not enable in ws-protocols.
    assert_eq!(get(s.addr(), "/p/x", "").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn idle_keepalive_connections_park_and_resume() {
    let s = site(r#""keepalive_timeout": "10","#, "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/a.txt", "").await.status, 200);
    // Idle past the parking delay: the next request is served by a fresh HTTP/1 state.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.get("/", "").await.text(), "<h1>home</h1>");
    // A request that trickles in across parking delays is still understood.
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send("GET /a.txt HTTP/1.1\r\nHo").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.send("st: localhost\r\n\r\n").await;
    let r = c.read_response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789abcdefghij"));
    // Pipelined requests sent after a park are answered in order.
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().text(), "<h1>home</h1>");
    assert_eq!(c.read_response(false).await.unwrap().text(), "0123456789abcdefghij");
    s.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_4xx_never_a_crash() {
    let s = site("", "").await;
    let cases: Vec<(String, u16)> = vec![
        ("GET /a.txt HTTP/1.1\r\nHost localhost\r\n\r\n".into(), 400),
        ("GARBAGE\r\n\r\n".into(), 400),
        (format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)), 431),
        ("GET http://localhost/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), 200),
        ("OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), 405),
        ("GET /%zz HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), 404),
        ("GET /%ff%fe HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), 400),
        ("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=99999999999999999999-\r\n\r\n".into(), 416),
        ("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=-99999999999999999\r\n\r\n".into(), 206),
        ("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic \u{7f}\r\n\r\n".into(), 400),
    ];
    for (raw, want) in cases {
        let mut c = connect(s.addr()).await;
        // The server may answer and close before reading everything we send: ignore write errors.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut c.s, raw.as_bytes()).await;
        let r =
            c.read_response(false).await.unwrap_or_else(|| panic!("no response to {:?}", &raw[..raw.len().min(60)]));
        assert_eq!(r.status, want, "{:?}", &raw[..raw.len().min(60)]);
    }
    // Still serving.
    assert_eq!(get(s.addr(), "/a.txt", "").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_response_and_keeps_the_connection() {
    use tokio::io::AsyncReadExt;
    let s =
        site(r#""keepalive_timeout": "10","#, r#", "extra-mimetypes": { ".bin": "application/octet-stream" }"#).await;
    let data = vec![b'z'; 1_500_000];
    put(s.path(), "www/slow.bin", &data);
    let mut c = connect(s.addr()).await;
    c.send("GET /slow.bin HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    // Read in small sips for about 2.5 s: far longer than the parking delay.
    let mut got: Vec<u8> = Vec::new();
    let mut sip = vec![0u8; 4096];
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = c.s.read(&mut sip).await.unwrap();
        got.extend_from_slice(&sip[..n]);
    }
    assert!(got.len() < 1_000_000, "the test must read slower than the server writes");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let want = head_end + 1_500_000;
    let mut buf = vec![0u8; 65536];
    while got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(5), c.s.read(&mut buf[..(want - got.len()).min(65536)]))
            .await
            .expect("the body keeps coming")
            .unwrap();
        assert!(n > 0, "connection closed after {} of {want} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got[head_end..].iter().all(|b| *b == b'z'));
    // The connection is still usable.
    assert_eq!(c.get("/a.txt", "").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_request_head_in_pieces_after_a_response_is_served_with_keepalive() {
    let s = site(r#""keepalive_timeout": "10","#, "").await;
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/a.txt", "").await.status, 200);
    c.send("GET /a.txt HTTP/1.1\r\nHost: lo").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send("calhost\r\n\r\n").await;
    let r = c.read_response(false).await.expect("served");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "keep-alive kept");
    assert_eq!(c.get("/", "").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_slow_head_after_a_response_is_cut_at_timeout_secs() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" }"#;
    let s = TestServer::start(
        r#"{ "global": { "timeout-secs": "1" } }"#,
        &[&vhost(r#""keepalive_timeout": "30","#, mounts)],
    )
    .await;
    put(s.path(), "www/index.html", "hi");
    let mut c = connect(s.addr()).await;
    assert_eq!(c.get("/", "").await.status, 200);
    c.send("GET / HTTP/1.1\r\n").await;
    assert!(c.closed_within(Duration::from_secs(4)).await);
    s.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_cut_at_timeout_secs() {
    use tokio::io::AsyncReadExt;
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www", "extra-mimetypes": { ".bin": "application/octet-stream" } }"#;
    let s = TestServer::start(
        r#"{ "global": { "timeout-secs": "1" } }"#,
        &[&vhost(r#""keepalive_timeout": "30","#, mounts)],
    )
    .await;
    put(s.path(), "www/huge.bin", vec![0u8; 64 * 1024 * 1024]);
    let mut c = connect(s.addr()).await;
    c.send("GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), c.s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total < 64 * 1024 * 1024, "the stalled response was cut ({total} bytes)");
    s.stop().await;
}

#[tokio::test]
async fn keepalive_follows_the_vhost_chosen_by_host() {
    let two = r#"{ "vhosts": [
        { "name": "long", "port": "0", "interface": "127.0.0.1", "keepalive_timeout": "30",
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/www" }] },
        { "name": "short", "port": "0", "interface": "127.0.0.1", "keepalive_timeout": "1",
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/www" }] } ] }"#;
    let s = TestServer::start("{}", &[two]).await;
    put(s.path(), "www/index.html", "hi");
    let mut c = connect(s.addr()).await;
    c.send("GET / HTTP/1.1\r\nHost: short\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    assert!(c.closed_within(Duration::from_secs(4)).await, "the short vhost's keep-alive applies");
    s.stop().await;
}

#[tokio::test]
async fn append_path_redirects_keep_the_path_encoded() {
    let mounts = r#"{ "mountpoint": "/keep", "origin": ">https://example.net/base", "append-path": "1" }"#;
    let s = TestServer::start("{}", &[&vhost("", mounts)]).await;
    let r = get(s.addr(), "/keep/caf%C3%A9/a%20b%3Fc", "").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.net/base/caf%C3%A9/a%20b%3Fc"));
    s.stop().await;
}

/// Like `site`, with the files made by `prepare` before the server starts (the table then
/// knows the docroot's canonical form); `mounts` may use `{DIR}`.
async fn site_prepared(mounts: &str, prepare: impl FnOnce(&std::path::Path)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("conf"), "{}").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/site"), vhost("", &mounts.replace("{DIR}", &d))).unwrap();
    TestServer::start_dir(dir).await
}

#[tokio::test]
async fn overlapping_ranges_are_merged_and_never_amplify() {
    let s = site("", r#", "extra-mimetypes": { ".bin": "application/octet-stream" }"#).await;
    // Single after merging: overlapping and adjacent ranges make one 206, not a multipart.
    let r = get(s.addr(), "/a.txt", "Range: bytes=2-5,0-3,6-7\r\n").await;
    assert_eq!((r.status, r.text().as_str()), (206, "01234567"));
    assert_eq!((r.header("content-range"), r.header("content-type")), (Some("bytes 0-7/20"), Some("text/plain")));
    // Multipart after merging: sorted, one part per merged range.
    let r = get(s.addr(), "/a.txt", "Range: bytes=10-11,0-1,1-2,-2\r\n").await;
    assert_eq!(r.status, 206);
    let body = r.text();
    assert_eq!(body.matches("Content-Range:").count(), 3, "{body}");
    let first = body.find("bytes 0-2/20\r\n\r\n012\r\n").expect(&body);
    let second = body.find("bytes 10-11/20\r\n\r\nab\r\n").expect(&body);
    let third = body.find("bytes 18-19/20\r\n\r\nij\r\n--_lws--").expect(&body);
    assert!(first < second && second < third, "{body}");
    // The reproducer of the issue: 32 `bytes=0-` on a 5.4 MB file made a 173 MB response.
    // Ranges that add up to more than the file are ignored: the file, once, with 200.
    let data: Vec<u8> = (0..5_400_000u32).map(|i| (i % 253) as u8).collect();
    put(s.path(), "www/big.bin", &data);
    let range = format!("Range: bytes={}\r\n", vec!["0-"; 32].join(","));
    let r = get(s.addr(), "/big.bin", &range).await;
    assert_eq!((r.status, r.header("content-length")), (200, Some("5400000")));
    assert!(r.body == data);
    let r = get(s.addr(), "/big.bin", "Range: bytes=0-3000000,2000000-\r\n").await;
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    // 33 ranges are refused outright, as before.
    let range = format!("Range: bytes={}\r\n", vec!["0-0"; 33].join(","));
    assert_eq!(get(s.addr(), "/big.bin", &range).await.status, 416);
    s.stop().await;
}

/// A docroot laid out as kubelet mounts a ConfigMap, plus links that leave it and dotfiles.
fn configmap_layout(root: &std::path::Path) {
    use std::os::unix::fs::symlink;
    put(root, "outside/secret.txt", "LEAK");
    put(root, "outside/dir/index.html", "LEAK");
    put(root, "outside/dir/x.txt", "LEAK");
    let www = root.join("www");
    put(&www, "..2026_12_02_10_00_00.1/index.html", "configmap index");
    put(&www, "..2026_12_02_10_00_00.1/app.txt", "configmap app");
    symlink("..2026_12_02_10_00_00.1", www.join("..data")).unwrap();
    symlink("..data/index.html", www.join("index.html")).unwrap();
    symlink("..data/app.txt", www.join("app.txt")).unwrap();
    symlink("..data", www.join("alias")).unwrap();
    symlink(root.join("outside/secret.txt"), www.join("passwd.txt")).unwrap();
    symlink("../outside/secret.txt", www.join("up.txt")).unwrap();
    symlink(root.join("outside/dir"), www.join("docs")).unwrap();
    put(&www, ".env.txt", "LEAK");
    put(&www, ".git/config.txt", "LEAK");
    put(&www, "sub/.htpasswd.txt", "LEAK");
    put(&www, ".hidden.txt", "hidden");
    put(&www, ".well-known/security.txt", "Contact: mailto:x@example.com");
}

#[tokio::test]
async fn symlinks_stay_inside_the_mount_and_dotfiles_are_404() {
    let s = site_prepared(r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" }"#, configmap_layout).await;
    // A ConfigMap's links stay inside the mount: served.
    assert_eq!(get(s.addr(), "/", "").await.text(), "configmap index");
    assert_eq!(get(s.addr(), "/app.txt", "").await.text(), "configmap app");
    assert_eq!(get(s.addr(), "/alias/app.txt", "").await.text(), "configmap app");
    // Links to a file or a directory outside: 404, whatever the spelling.
    for path in ["/passwd.txt", "/up.txt", "/docs", "/docs/", "/docs/x.txt", "/docs/index.html"] {
        let r = get(s.addr(), path, "").await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("LEAK"), "{path}");
        // A conditional or ranged request says nothing about the file either.
        let r = get(s.addr(), path, "If-None-Match: *\r\nRange: bytes=0-0\r\n").await;
        assert_eq!((r.status, r.header("etag")), (404, None), "{path}");
    }
    // Dot segments: 404, the ConfigMap's `..data` too; `/.well-known/` is served (RFC 8615).
    for path in ["/.env.txt", "/.git/config.txt", "/sub/.htpasswd.txt", "/..data/app.txt", "/.hidden.txt", "/%2egit/"] {
        assert_eq!(get(s.addr(), path, "").await.status, 404, "{path}");
    }
    let r = get(s.addr(), "/.well-known/security.txt", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Contact: mailto:x@example.com"));

    // A cached file does not outlive the check: once a link to outside takes its place, 404.
    assert_eq!(get(s.addr(), "/app.txt", "").await.status, 200);
    let www = s.path().join("www");
    std::fs::remove_file(www.join("app.txt")).unwrap();
    std::os::unix::fs::symlink(s.path().join("outside/secret.txt"), www.join("app.txt")).unwrap();
    assert_eq!(get(s.addr(), "/app.txt", "").await.status, 404);

    // kubelet's update: a new timestamped directory, `..data` swapped by a rename.
    put(&www, "..2026_12_03_10_00_00.2/index.html", "configmap index v2");
    std::os::unix::fs::symlink("..2026_12_03_10_00_00.2", www.join("..data_tmp")).unwrap();
    std::fs::rename(www.join("..data_tmp"), www.join("..data")).unwrap();
    assert_eq!(get(s.addr(), "/", "").await.text(), "configmap index v2");
    s.stop().await;
}

#[tokio::test]
async fn mounts_opt_in_to_links_outside_and_to_dotfiles() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/www" },
                    { "mountpoint": "/open", "origin": "file://{DIR}/www", "follow-symlinks-outside": "1" },
                    { "mountpoint": "/dots", "origin": "file://{DIR}/www", "serve-dotfiles": "1" }"#;
    let s = site_prepared(mounts, configmap_layout).await;
    assert_eq!(get(s.addr(), "/open/passwd.txt", "").await.text(), "LEAK");
    assert_eq!(get(s.addr(), "/open/docs/x.txt", "").await.text(), "LEAK");
    assert_eq!(get(s.addr(), "/open/.hidden.txt", "").await.status, 404, "one opt-in does not bring the other");
    // What the opted-in mount read (and cached) is not served by the mount that did not opt in.
    assert_eq!(get(s.addr(), "/passwd.txt", "").await.status, 404);
    assert_eq!(get(s.addr(), "/dots/passwd.txt", "").await.status, 404);
    assert_eq!(get(s.addr(), "/dots/.hidden.txt", "").await.text(), "hidden");
    assert_eq!(get(s.addr(), "/dots/..data/app.txt", "").await.text(), "configmap app");
    assert_eq!(get(s.addr(), "/.hidden.txt", "").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn basic_auth_edits_apply_at_the_next_reload_not_per_request() {
    use base64::Engine;
    let auth = |s: &str| format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(s));
    let creds = tempfile::tempdir().unwrap();
    let logins = put(creds.path(), "logins", "u:old\n");
    let mut s = site("", &format!(r#", "basic-auth": "{}""#, logins.display())).await;
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:old")).await.status, 200);
    // Coarse file clocks: let the edit get another mtime.
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&logins, "u:new\n").unwrap();
    // Read once per (re)load, like a certificate: the running table keeps what it read.
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:old")).await.status, 200);
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:new")).await.status, 401);
    let config_dir = s.path().to_path_buf();
    let server = s.server.as_mut().unwrap();
    server.apply(lwsws::lwsws::load(&config_dir, "/usr/share"), "test").await.unwrap();
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:old")).await.status, 401);
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:new")).await.status, 200);
    // A credentials file that cannot be read refuses the reload; the last good one serves on.
    std::fs::remove_file(&logins).unwrap();
    let server = s.server.as_mut().unwrap();
    let e = server.apply(lwsws::lwsws::load(&config_dir, "/usr/share"), "test").await.unwrap_err();
    assert!(e.to_string().contains("\"basic-auth\"") && e.to_string().contains("logins"), "{e}");
    assert_eq!(get(s.addr(), "/a.txt", &auth("u:new")).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn a_missing_docroot_is_warned_about_at_start_and_at_reload() {
    let mounts = r#"{ "mountpoint": "/", "origin": "file://{DIR}/nowhere" }"#;
    let mut s = site_prepared(mounts, |_| {}).await;
    let missing = |w: &[lwsws::model::Warning]| {
        w.iter()
            .filter(|w| w.msg.starts_with("the file:// directory") && w.msg.contains("/nowhere does not exist"))
            .map(|w| w.loc.to_string())
            .collect::<Vec<_>>()
    };
    let site = s.path().join("conf.d/site").display().to_string();
    // The origin's own position: the vhost text starts on line 1, the mounts on line 2.
    assert_eq!(missing(&s.warnings), [format!("{site}:2:56")], "{:?}", s.warnings);
    assert_eq!(get(s.addr(), "/", "").await.status, 404);
    // A reload that compiles a new table says it again.
    let text = std::fs::read_to_string(s.path().join("conf.d/site")).unwrap();
    std::fs::write(s.path().join("conf.d/site"), text.replace("\"localhost\"", "\"renamed\"")).unwrap();
    let loaded = lwsws::lwsws::load(s.path(), "/usr/share").unwrap();
    let mut warnings = loaded.warnings;
    s.server.as_mut().unwrap().reload(&loaded.config, &mut warnings).await.unwrap();
    assert_eq!(missing(&warnings), [format!("{site}:2:56")], "{warnings:?}");
    s.stop().await;
}
