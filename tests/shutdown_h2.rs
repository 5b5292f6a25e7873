//! HTTP/2 through the shutdown delay, in process with `Server::stop`: once the stop has begun,
//! a connection is sent GOAWAY after its next answer (HTTP/1's `connection: close`), new
//! connections are still served, and a nudge (what a second signal sends) ends the delay.
//! Only order and outcomes are asserted; the 30 s waits guard against a hang.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Pki, TestServer, put, tls_connect};
use http_body_util::Empty;
use hyper::client::conn::http2::{SendRequest, handshake};
use hyper_util::rt::{TokioExecutor, TokioIo};

const GUARD: Duration = Duration::from_secs(30);

/// An HTTP/2 connection over TLS; the returned task ends when the connection does.
async fn h2(addr: SocketAddr, pki: &Pki) -> (SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let tls = tls_connect(addr, "a.test", pki.roots(), None, &["h2"]).await.unwrap();
    let (send, conn) = handshake(TokioExecutor::new(), TokioIo::new(tls.s)).await.unwrap();
    (send, tokio::spawn(async move { conn.await.unwrap_or_default() }))
}

async fn status(send: &mut SendRequest<Empty<Bytes>>) -> u16 {
    let req = http::Request::get("https://a.test/").body(Empty::new()).unwrap();
    send.send_request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn during_the_delay_an_http2_connection_gets_goaway_after_its_next_answer() {
    let pki = Pki::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    pki.leaf(dir.path(), "a.test", &["a.test"], false);
    put(dir.path(), "www/index.html", "hello");
    // Idle connections are not closed for being idle while the test runs: only the drain can.
    let d = dir.path().display();
    let vhost = format!(
        r#"{{ "vhosts": [{{ "name": "a.test", "port": "0", "interface": "127.0.0.1", "keepalive_timeout": "300",
            "host-ssl-cert": "{d}/a.test.crt", "host-ssl-key": "{d}/a.test.key",
            "mounts": [{{ "mountpoint": "/", "origin": "file://{d}/www", "default": "index.html" }}] }}] }}"#
    );
    put(dir.path(), "conf", "{}");
    put(dir.path(), "conf.d/a", vhost);
    let mut s = TestServer::start_dir(dir).await;
    let addr = s.addr();
    let server = s.server.take().unwrap();
    let admin = server.start_admin("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let (mut send, mut closed) = h2(addr, &pki).await;
    assert_eq!(status(&mut send).await, 200);
    let (nudge, mut nudges) = tokio::sync::mpsc::unbounded_channel();
    let stopping =
        tokio::spawn(async move { server.stop(Duration::from_secs(600), Duration::from_secs(30), &mut nudges).await });
    let not_ready = common::try_eventually_async(|| async { common::get(admin, "/readyz", "").await.status == 503 });
    assert!(not_ready.await, "/readyz stays 200");

    assert_eq!(status(&mut send).await, 200);
    assert!(tokio::time::timeout(GUARD, &mut closed).await.is_ok(), "no GOAWAY after the answer");
    let (mut again, _) = h2(addr, &pki).await;
    assert_eq!(status(&mut again).await, 200, "a new connection during the delay");

    // Ten minutes of delay are left: the stop ending within the guard means the nudge ended it.
    nudge.send(()).unwrap();
    assert!(tokio::time::timeout(GUARD, stopping).await.is_ok(), "the nudge did not end the delay");
}
