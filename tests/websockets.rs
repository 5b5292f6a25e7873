//! The built-in protocols over real websockets: subprotocol selection (default pvo, refusals),
//! dumb-increment, mirror instances, lws-status, lws-server-status, the ws basic-auth pvo, D10
//! idle pings, and protocol-post-demo on a callback:// mount.

mod common;

use std::time::Duration;

use common::{TestServer, connect};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn site(protocols: &str, extra_vhost: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1", {extra_vhost}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }},
                       {{ "mountpoint": "/formtest", "origin": "callback://protocol-post-demo" }}],
            "ws-protocols": [{protocols}] }}] }}"#
    )
}

const ALL: &str = r#"{ "dumb-increment-protocol": {}, "lws-mirror-protocol": {}, "lws-status": {},
    "protocol-post-demo": {}, "lws-server-status": { "update-ms": "1000", "filepath": "{DIR}/temp" } }"#;

async fn ws(s: &TestServer, path: &str, protocol: Option<&str>, extra: &[(&str, &str)]) -> Result<Client, String> {
    let mut req = format!("ws://localhost{path}").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut().insert("sec-websocket-protocol", p.parse().unwrap());
    }
    for (k, v) in extra {
        let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    tokio_tungstenite::client_async(req, tcp).await.map(|(w, _)| w).map_err(|e| e.to_string())
}

async fn next_text(w: &mut Client) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn dumb_increment_counts_resets_and_closes() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let mut w = ws(&s, "/", Some("dumb-increment-protocol"), &[]).await.unwrap();
    let a: u64 = next_text(&mut w).await.parse().unwrap();
    let b: u64 = next_text(&mut w).await.parse().unwrap();
    assert_eq!((a, b), (0, 1));
    for _ in 0..5 {
        next_text(&mut w).await;
    }
    w.send(Message::text("reset\n")).await.unwrap();
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(next_text(&mut w).await.parse::<u64>().unwrap());
    }
    assert!(after.iter().any(|n| *n <= 1), "the counter went back to 0: {after:?}");
    w.send(Message::text("closeme\n")).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1001);
                assert_eq!(f.reason.as_str(), "seeya");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn mirror_instances_echo_to_all_members() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let mut a = ws(&s, "/?mirror=room", Some("lws-mirror-protocol"), &[]).await.unwrap();
    let mut b = ws(&s, "/?mirror=room", Some("lws-mirror-protocol"), &[]).await.unwrap();
    let mut other = ws(&s, "/?mirror=elsewhere", Some("lws-mirror-protocol"), &[]).await.unwrap();
    a.send(Message::text("d #ff0000 1 2 3 4;")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "d #ff0000 1 2 3 4;", "the sender gets its own message");
    assert_eq!(next_text(&mut b).await, "d #ff0000 1 2 3 4;");
    other.send(Message::text("c #00ff00 5 5 5;")).await.unwrap();
    assert_eq!(next_text(&mut other).await, "c #00ff00 5 5 5;");
    let quiet = tokio::time::timeout(Duration::from_millis(300), b.next()).await;
    assert!(quiet.is_err(), "another instance's traffic does not arrive");
    // A fourth instance on the vhost is refused.
    let _third = ws(&s, "/?mirror=third", Some("lws-mirror-protocol"), &[]).await.unwrap();
    let mut fourth = ws(&s, "/?mirror=fourth", Some("lws-mirror-protocol"), &[]).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), fourth.next()).await.unwrap();
    assert!(matches!(msg, Some(Ok(Message::Close(_))) | None), "{msg:?}");
    s.stop().await;
}

#[tokio::test]
async fn lws_status_lists_the_connections() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let mut a = ws(&s, "/", Some("lws-status"), &[("user-agent", "agent-a")]).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    assert_eq!(first["conns"].as_array().unwrap().len(), 1);
    assert_eq!(first["hostname"], "localhost");
    let mut b = ws(&s, "/", Some("lws-status"), &[("user-agent", "agent-b")]).await.unwrap();
    let seen_by_a: serde_json::Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    let conns = seen_by_a["conns"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[1]["ua"], "agent-b");
    assert_eq!(conns[1]["peer"], "127.0.0.1");
    let _ = next_text(&mut b).await;
    b.close(None).await.unwrap();
    drop(b);
    let after: serde_json::Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    assert_eq!(after["conns"].as_array().unwrap().len(), 1, "a close is announced");
    s.stop().await;
}

#[tokio::test]
async fn lws_status_cuts_long_user_agents() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let long = "Mozilla/5.0 ".repeat(700);
    let mut a = ws(&s, "/", Some("lws-status"), &[("user-agent", long.as_str())]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    let ua = doc["conns"][0]["ua"].as_str().unwrap();
    assert_eq!(ua, format!("{}...", &long[..128]), "{doc}");
    s.stop().await;
}

#[tokio::test]
async fn server_status_pushes_the_document() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    common::put(s.path(), "temp", "42000");
    let mut w = ws(&s, "/", Some("lws-server-status"), &[]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&next_text(&mut w).await).unwrap();
    assert!(doc["i"]["uptime"].is_string() && doc["i"]["l1"].is_string(), "{doc}");
    assert_eq!(doc["i"]["contexts"][0]["vhosts"][0]["name"], "localhost");
    assert_eq!(doc["files"][0]["val"], "42000");
    let t = std::time::Instant::now();
    let _ = next_text(&mut w).await;
    assert!(t.elapsed() >= Duration::from_millis(700), "pushed every update-ms");
    s.stop().await;
    let hidden = r#"{ "lws-server-status": { "hide-vhosts": "1" } }"#;
    let s = TestServer::start("{}", &[&site(hidden, "")]).await;
    let mut w = ws(&s, "/", Some("lws-server-status"), &[]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&next_text(&mut w).await).unwrap();
    assert!(doc["i"]["contexts"][0]["vhosts"].is_null(), "{doc}");
    s.stop().await;
}

#[tokio::test]
async fn subprotocol_selection_default_and_refusals() {
    let with_default = r#"{ "dumb-increment-protocol": {}, "lws-mirror-protocol": { "default": "1" } }"#;
    let s = TestServer::start("{}", &[&site(with_default, "")]).await;
    // No subprotocol offered: the default pvo's protocol (mirror echoes).
    let mut w = ws(&s, "/", None, &[]).await.unwrap();
    w.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut w).await, "hello");
    // The first offered protocol the vhost has wins.
    let mut w = ws(&s, "/", Some("nope, dumb-increment-protocol, lws-mirror-protocol"), &[]).await.unwrap();
    assert_eq!(next_text(&mut w).await, "0");
    let e = ws(&s, "/", Some("lws-status"), &[]).await.unwrap_err();
    assert!(e.contains("400"), "a protocol not enabled here: {e}");
    s.stop().await;

    let s = TestServer::start(
        "{}",
        &[&site(r#"{ "dumb-increment-protocol": {} }"#, r#""disable-no-protocol-ws-upgrades": "1","#)],
    )
    .await;
    let e = ws(&s, "/", None, &[]).await.unwrap_err();
    assert!(e.contains("403"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn ws_basic_auth_pvo() {
    use base64::Engine;
    // Read when the config is loaded: the file must be there before the server starts.
    let creds = tempfile::tempdir().unwrap();
    let logins = common::put(creds.path(), "logins", "u:p\n");
    let p = format!(r#"{{ "dumb-increment-protocol": {{ "basic-auth": "{}" }} }}"#, logins.display());
    let s = TestServer::start("{}", &[&site(&p, "")]).await;
    let e = ws(&s, "/", Some("dumb-increment-protocol"), &[]).await.unwrap_err();
    assert!(e.contains("401"), "{e}");
    let e = ws(&s, "/", Some("dumb-increment-protocol"), &[("authorization", "Bearer x")]).await.unwrap_err();
    assert!(e.contains("403"), "{e}");
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:p"));
    let mut w = ws(&s, "/", Some("dumb-increment-protocol"), &[("authorization", &good)]).await.unwrap();
    assert_eq!(next_text(&mut w).await, "0");
    s.stop().await;
}

#[tokio::test]
async fn idle_websockets_are_pinged_then_closed() {
    let s = TestServer::start(
        r#"{ "global": { "ws-pingpong-secs": "1" } }"#,
        &[&site(r#"{ "lws-mirror-protocol": {} }"#, "")],
    )
    .await;
    // A raw client that completes the handshake and then neither reads nor answers.
    let mut c = connect(s.addr()).await;
    c.send("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: lws-mirror-protocol\r\n\r\n").await;
    let r = c.read_response(true).await.unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let t = std::time::Instant::now();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let mut got_ping = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.s.read(&mut buf)).await.expect("closed in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => got_ping |= buf[..n].contains(&0x89),
        }
    }
    assert!(got_ping, "a PING came first");
    assert!(t.elapsed() >= Duration::from_millis(1500), "closed after the second period");
    s.stop().await;
}

#[tokio::test]
async fn post_demo_answers_forms() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{}/formtest", s.addr()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hello+%3Cworld%3E&send=Send")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = r.text().await.unwrap();
    assert!(t.contains("<td>text</td><td>13</td><td>hello &lt;world&gt;</td>"), "{t}");
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nmulti\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n";
    let r = client
        .post(format!("http://{}/formtest", s.addr()))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let t = r.text().await.unwrap();
    assert!(t.contains("<td>text</td><td>5</td><td>multi</td>"), "{t}");
    assert!(t.contains("<td>a.txt (9 bytes)</td>"), "{t}");
    // Nothing was written to disk (uploads used to stay in the temp dir as post-file-PID-N).
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("post-file-{}-", std::process::id())))
        .collect();
    assert!(left.is_empty(), "uploads left behind: {left:?}");
    let big = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n\r\n{}\r\n--XyZ--\r\n",
        "x".repeat(150_000)
    );
    let r = client
        .post(format!("http://{}/formtest", s.addr()))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    s.stop().await;
}

#[tokio::test]
async fn post_demo_reads_at_most_eight_forms_at_once() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let form = |addr| async move {
        let mut c = connect(addr).await;
        c.send("POST /formtest HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000\r\n\r\n--XyZ\r\n").await;
        c
    };
    // Eight uploads whose bodies never finish hold the eight places.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(form(s.addr()).await);
    }
    let small = "text=hi";
    let post = |addr| async move {
        let mut c = connect(addr).await;
        c.send(&format!("POST /formtest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{small}", small.len())).await;
        c.read_response(false).await.expect("an answer").status
    };
    // Once the server has taken up all eight, a ninth form is refused, not buffered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen.last() != Some(&503) {
        assert!(tokio::time::Instant::now() < deadline, "no 503 while eight forms were open: {seen:?}");
        seen.push(post(s.addr()).await);
        tokio::task::yield_now().await;
    }
    // The places come back when those connections go.
    drop(stalled);
    let mut seen = Vec::new();
    while seen.last() != Some(&200) {
        assert!(tokio::time::Instant::now() < deadline, "the places did not come back: {seen:?}");
        seen.push(post(s.addr()).await);
        tokio::task::yield_now().await;
    }
    s.stop().await;
}

/// A form that stops arriving is answered 408 after 15 s (lws's `timeout-secs` default) and
/// its place is given back: eight clients that send a length and no body cannot keep the demo's
/// form handler full.
#[tokio::test]
async fn a_stalled_form_is_answered_408() {
    use tokio::io::AsyncReadExt;
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let mut c = connect(s.addr()).await;
    c.send("POST /formtest HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000\r\n\r\n--XyZ\r\n").await;
    // Read by hand: the helper's own read gives up after 10 s, before the form's 15 s.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") && c.s.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("answered before the guard");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    s.stop().await;
}

#[tokio::test]
async fn echo_returns_each_message_as_sent() {
    let s = TestServer::start("{}", &[&site(r#"{ "lws-echo": {} }"#, "")]).await;
    let mut w = ws(&s, "/", Some("lws-echo"), &[]).await.unwrap();
    w.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(back, Message::binary(vec![1u8, 2, 3]));
    let big = "é".repeat(100_000);
    w.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_text(&mut w).await, big);
    let m = s.server.as_ref().unwrap().metrics().render();
    for dir in ["received", "sent"] {
        let line = format!(
            "lwsws_websocket_messages_total{{vhost=\"localhost\",protocol=\"lws-echo\",direction=\"{dir}\"}} 2"
        );
        assert!(m.contains(&line), "{line} in {m}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_mirror_burst_is_paced_not_closed() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let w = ws(&s, "/?mirror=burst", Some("lws-mirror-protocol"), &[]).await.unwrap();
    let (mut tx, mut rx) = w.split();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            tx.send(Message::text(format!("c #123456 {i} {i} 1;"))).await.unwrap();
        }
        tx
    });
    let mut got = 0;
    while got < 2000 {
        match tokio::time::timeout(Duration::from_secs(10), rx.next()).await.expect("echoes keep coming") {
            Some(Ok(Message::Text(t))) => {
                assert_eq!(t.as_str(), format!("c #123456 {got} {got} 1;"), "in order, none lost");
                got += 1;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("after {got} echoes: {other:?}"),
        }
    }
    drop(sender.await.unwrap());
    s.stop().await;
}

#[tokio::test]
async fn a_close_from_the_client_is_answered() {
    use tokio::io::AsyncReadExt;
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    for protocol in ["lws-mirror-protocol", "dumb-increment-protocol", "lws-status"] {
        let mut c = connect(s.addr()).await;
        c.send(&format!("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n")).await;
        assert_eq!(c.read_response(true).await.unwrap().status, 101);
        // A masked Close 1000 "bye".
        let mask = [1u8, 2, 3, 4];
        let payload = [0x03, 0xe8, b'b', b'y', b'e'];
        let mut frame = vec![0x88, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tokio::io::AsyncWriteExt::write_all(&mut c.s, &frame).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.s.read_to_end(&mut all)).await.unwrap().unwrap();
        // Whatever came before (counter frames, a status document), the last frame is a Close.
        let close_at = all.windows(2).rposition(|w| w[0] == 0x88 && (w[1] & 0x7f) >= 2).expect("a Close frame back");
        assert_eq!(&all[close_at + 2..close_at + 4], &[0x03, 0xe8], "{protocol}: code 1000 echoed");
    }
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_mirror_message_is_refused_not_half_delivered() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    let mut w = ws(&s, "/?mirror=big", Some("lws-mirror-protocol"), &[]).await.unwrap();
    w.send(Message::text("x".repeat(200_000))).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Some(Ok(Message::Text(t))) => panic!("a piece of an oversized message went out ({} bytes)", t.len()),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn server_status_reads_the_same_counters_as_metrics() {
    let s = TestServer::start("{}", &[&site(ALL, "")]).await;
    common::put(s.path(), "www/index.html", "x");
    for _ in 0..3 {
        common::get(s.addr(), "/", "").await;
    }
    let mut w = ws(&s, "/", Some("lws-server-status"), &[]).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&next_text(&mut w).await).unwrap();
    // Three GETs and this websocket's own upgrade request.
    assert_eq!(doc["i"]["server"]["requests"], "4", "{doc}");
    assert!(s.server.as_ref().unwrap().metrics().render().contains(r#"status="2xx"} 3"#));
    s.stop().await;
}

/// Reads until the server's Close and returns its code; data messages on the way (counters,
/// status documents) are skipped, but none may be longer than `limit`.
async fn close_code(w: &mut Client, limit: usize) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                assert!(m.len() <= limit, "a {}-byte message came back over the {limit}-byte limit", m.len())
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// One fragment of a text message, sent as is (the client masks it).
fn fragment(data: Vec<u8>, first: bool, last: bool) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let opcode = OpCode::Data(if first { Data::Text } else { Data::Continue });
    Message::Frame(Frame::message(data, opcode, last))
}

#[tokio::test]
async fn messages_over_the_protocol_limit_are_closed_with_1009() {
    let p = r#"{ "lws-echo": { "max-message-size": "1000" } }"#;
    let s = TestServer::start("{}", &[&site(p, "")]).await;
    // At the limit: echoed, whole or in fragments.
    let mut w = ws(&s, "/", Some("lws-echo"), &[]).await.unwrap();
    w.send(Message::text("a".repeat(1000))).await.unwrap();
    assert_eq!(next_text(&mut w).await.len(), 1000);
    for i in 0..10 {
        w.send(fragment(vec![b'b'; 100], i == 0, i == 9)).await.unwrap();
    }
    assert_eq!(next_text(&mut w).await, "b".repeat(1000));
    // One byte over in a single frame: refused from the frame's header.
    w.send(Message::text("c".repeat(1001))).await.unwrap();
    assert_eq!(close_code(&mut w, 1000).await, 1009);
    // A fragmented message that never ends: refused at the fragment that crosses the limit,
    // so the server never holds more than the limit of it.
    let mut w = ws(&s, "/", Some("lws-echo"), &[]).await.unwrap();
    for i in 0..11 {
        w.send(fragment(vec![b'd'; 100], i == 0, false)).await.unwrap();
    }
    assert_eq!(close_code(&mut w, 1000).await, 1009);
    s.stop().await;
}

#[tokio::test]
async fn each_protocol_has_a_default_limit_fitting_what_it_does() {
    let s = TestServer::start("{}", &[&site(r#"{ "lws-echo": {}, "dumb-increment-protocol": {} }"#, "")]).await;
    // dumb-increment reads `reset\n` and `closeme\n`: 4096 bytes at most.
    let mut w = ws(&s, "/", Some("dumb-increment-protocol"), &[]).await.unwrap();
    w.send(Message::text("reset\n".repeat(700))).await.unwrap();
    assert_eq!(close_code(&mut w, 4096).await, 1009);
    // lws-echo holds what it echoes: 1 MiB.
    let mut w = ws(&s, "/", Some("lws-echo"), &[]).await.unwrap();
    w.send(Message::binary(vec![7u8; 1 << 20])).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(back.len(), 1 << 20);
    w.send(Message::binary(vec![7u8; (1 << 20) + 1])).await.unwrap();
    assert_eq!(close_code(&mut w, 1 << 20).await, 1009);
    s.stop().await;
}

#[tokio::test]
async fn the_vhost_key_sets_the_limit_and_a_pvo_overrides_it() {
    let p = r#"{ "lws-echo": {}, "lws-mirror-protocol": { "max-message-size": "500" } }"#;
    let s = TestServer::start("{}", &[&site(p, r#""ws-max-message-size": "2000","#)]).await;
    let mut w = ws(&s, "/", Some("lws-echo"), &[]).await.unwrap();
    w.send(Message::text("e".repeat(2000))).await.unwrap();
    assert_eq!(next_text(&mut w).await.len(), 2000);
    w.send(Message::text("e".repeat(2001))).await.unwrap();
    assert_eq!(close_code(&mut w, 2000).await, 1009);
    let mut m = ws(&s, "/?mirror=limits", Some("lws-mirror-protocol"), &[]).await.unwrap();
    m.send(Message::text("f".repeat(500))).await.unwrap();
    assert_eq!(next_text(&mut m).await.len(), 500);
    m.send(Message::text("f".repeat(501))).await.unwrap();
    assert_eq!(close_code(&mut m, 500).await, 1009);
    s.stop().await;
}

/// A raw websocket handshake with this Host (none when `None`); the status, and whether the
/// server then closed the connection.
async fn handshake_status(s: &TestServer, host: Option<&str>) -> (u16, bool) {
    use tokio::io::AsyncReadExt;
    let mut c = connect(s.addr()).await;
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    c.send(&format!("GET / HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: lws-echo\r\n\r\n")).await;
    let r = c.read_response(false).await.expect("an answer");
    if r.status == 101 {
        return (101, false);
    }
    let mut rest = Vec::new();
    let closed = matches!(tokio::time::timeout(Duration::from_secs(5), c.s.read_to_end(&mut rest)).await, Ok(Ok(_)));
    (r.status, closed)
}

#[tokio::test]
async fn strict_host_check_refuses_upgrades_for_another_host() {
    let port = common::free_port();
    let vhost = |port: u16, strict: &str| {
        format!(
            r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1", {strict}
                "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}],
                "ws-protocols": [{{ "lws-echo": {{}} }}] }}] }}"#
        )
    };
    let s = TestServer::start("{}", &[&vhost(port, r#""strict-host-check": "1","#)]).await;
    common::put(s.path(), "www/index.html", "x");
    assert_eq!(handshake_status(&s, Some(&format!("localhost:{port}"))).await.0, 101);
    assert_eq!(handshake_status(&s, Some(&format!("LOCALHOST:{port}"))).await.0, 101, "names are not case-sensitive");
    for bad in [format!("127.0.0.1:{port}"), format!("other.example:{port}"), "localhost".into()] {
        assert_eq!(handshake_status(&s, Some(&bad)).await, (403, true), "Host: {bad}");
    }
    // A Host that is not an authority, or none in HTTP/1.1, is a bad request before any vhost
    // is chosen (RFC 9112 3.2): 400, and the connection closes too.
    assert_eq!(handshake_status(&s, Some("localhost:x")).await, (400, true), "Host: localhost:x");
    assert_eq!(handshake_status(&s, None).await, (400, true), "no Host");
    // Only upgrades are checked.
    let r = common::get(s.addr(), "/", "").await;
    assert_eq!(r.status, 200);
    s.stop().await;
    // Without the key, any Host may upgrade.
    let s = TestServer::start("{}", &[&vhost(0, "")]).await;
    assert_eq!(handshake_status(&s, Some("127.0.0.1:1234")).await.0, 101);
    s.stop().await;
}
