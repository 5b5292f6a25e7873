//! Raw roles on shared ports (spec 5): a raw-proxy alone on its port, HTTP or raw on a plain
//! port (`fallback-listen-accept`), and on a TLS port with `allow-non-tls`: HTTPS, ssh-like
//! traffic to a loopback echo service, `redirect-http` and `allow-http-on-https`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Pki, TestServer, connect, put, tls_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP echo service that answers "bye" when its peer half-closes, then closes.
async fn echo_service() -> SocketAddr {
    echo_service_counted().await.0
}

/// The echo service, with the number of connections it has accepted.
async fn echo_service_counted() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = s.write_all(b"bye").await;
                            return;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn read_exactly(s: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut out)).await.expect("no hang").unwrap();
    out
}

#[tokio::test]
async fn raw_proxy_alone_on_its_port_with_half_close() {
    let echo = echo_service().await;
    let v = format!(
        r#"{{ "vhosts": [{{ "name": "ssh", "port": "0", "interface": "127.0.0.1",
            "listen-accept-role": "raw-proxy", "listen-accept-protocol": "raw-proxy", "apply-listen-accept": "1",
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "ipv4:127.0.0.1:{}" }} }}] }}] }}"#,
        echo.port()
    );
    let s = TestServer::start("{}", &[&v]).await;
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut c, 18).await, b"GET / HTTP/1.1\r\n\r\n", "even HTTP is just bytes here");
    let big = vec![7u8; 1_000_000];
    c.write_all(&big).await.unwrap();
    assert_eq!(read_exactly(&mut c, big.len()).await, big);
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(rest, b"bye", "the half-close reached the service and its answer came back");
    s.stop().await;
}

/// A plain vhost serving files, whose non-HTTP connections go raw to `echo`.
fn plain_fallback_vhost(echo: SocketAddr) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1", "fallback-listen-accept": "1",
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}],
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "ipv4:127.0.0.1:{}", "raw": "1" }} }}] }}] }}"#,
        echo.port()
    )
}

#[tokio::test]
async fn fallback_on_a_plain_port_serves_http_and_passes_the_rest() {
    let echo = echo_service().await;
    let v = plain_fallback_vhost(echo);
    let s = TestServer::start("{}", &[&v]).await;
    put(s.path(), "www/index.html", "web page");
    assert_eq!(common::get(s.addr(), "/", "").await.text(), "web page");
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut c, 21).await, b"SSH-2.0-OpenSSH_9.2\r\n", "the bytes already read are passed on");
    s.stop().await;
}

async fn tls_site(pki: &Pki, roles: &str, echo: SocketAddr) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    pki.leaf(dir.path(), "site", &["site.test"], false);
    put(dir.path(), "www/index.html", "secure page");
    let d = dir.path().display().to_string();
    let v = format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1",
            "host-ssl-cert": "{d}/site.crt", "host-ssl-key": "{d}/site.key", "allow-non-tls": "1", {roles}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{d}/www" }}],
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "ipv4:127.0.0.1:{}", "raw": "1" }} }}] }}] }}"#,
        echo.port()
    );
    std::fs::write(dir.path().join("conf"), "{}").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/site"), v).unwrap();
    TestServer::start_dir(dir).await
}

#[tokio::test]
async fn https_and_ssh_like_traffic_share_a_tls_port() {
    let pki = Pki::new("ca");
    let echo = echo_service().await;
    let s = tls_site(&pki, r#""fallback-listen-accept": "1","#, echo).await;
    let mut tls = tls_connect(s.addr(), "site.test", pki.roots(), None, &["http/1.1"]).await.unwrap();
    tls.send("GET / HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
    assert_eq!(tls.read_response(false).await.unwrap().text(), "secure page");
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(b"SSH-2.0-OpenSSH_9.2\r\nkex...").await.unwrap();
    assert_eq!(read_exactly(&mut c, 27).await, b"SSH-2.0-OpenSSH_9.2\r\nkex...");
    s.stop().await;
}

#[tokio::test]
async fn plain_http_on_a_tls_port_redirects_or_is_served_or_closed() {
    let pki = Pki::new("ca");
    let echo = echo_service().await;
    let s = tls_site(&pki, r#""redirect-http": "1","#, echo).await;
    let r = common::get(s.addr(), "/a/b?x=1&y=2", "").await;
    assert_eq!((r.status, r.reason.as_str()), (301, "Redirect"));
    assert_eq!(r.header("location"), Some("https://localhost/a/b?x=1&y=2"));
    s.stop().await;

    let s = tls_site(&pki, r#""allow-http-on-https": "1","#, echo).await;
    assert_eq!(common::get(s.addr(), "/", "").await.text(), "secure page");
    s.stop().await;

    let s = tls_site(&pki, "", echo).await;
    let mut c = connect(s.addr()).await;
    c.send("GET / HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
    assert!(c.read_response(false).await.is_none(), "no role for plain text: closed");
    // TLS still works on it.
    let mut tls = tls_connect(s.addr(), "site.test", pki.roots(), None, &[]).await.unwrap();
    tls.send("GET / HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
    assert_eq!(tls.read_response(false).await.unwrap().status, 200);
    s.stop().await;
}

#[tokio::test]
async fn plain_http_on_a_tls_port_does_not_reach_an_mtls_vhost() {
    let pki = Pki::new("ca");
    let dir = tempfile::tempdir().unwrap();
    pki.leaf(dir.path(), "open", &["open.test"], false);
    pki.leaf(dir.path(), "secure", &["secure.test"], false);
    pki.write_ca(&dir.path().join("ca.pem"));
    put(dir.path(), "www/index.html", "page");
    let d = dir.path().display().to_string();
    let v = format!(
        r#"{{ "vhosts": [
            {{ "name": "open.test", "port": "0", "interface": "127.0.0.1",
               "host-ssl-cert": "{d}/open.crt", "host-ssl-key": "{d}/open.key",
               "allow-non-tls": "1", "allow-http-on-https": "1",
               "mounts": [{{ "mountpoint": "/", "origin": "file://{d}/www" }}] }},
            {{ "name": "secure.test", "port": "0", "interface": "127.0.0.1",
               "host-ssl-cert": "{d}/secure.crt", "host-ssl-key": "{d}/secure.key",
               "host-ssl-ca": "{d}/ca.pem", "client-cert-required": "1",
               "mounts": [{{ "mountpoint": "/", "origin": "file://{d}/www" }}] }} ] }}"#
    );
    std::fs::write(dir.path().join("conf"), "{}").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/v"), v).unwrap();
    let s = TestServer::start_dir(dir).await;
    let mut c = connect(s.addr()).await;
    c.send("GET / HTTP/1.1\r\nHost: open.test\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 200);
    c.send("GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 421);
    s.stop().await;
}

#[tokio::test]
async fn a_silent_client_on_a_fallback_port_is_closed_not_sent_raw() {
    let (echo, accepted) = echo_service_counted().await;
    let v = plain_fallback_vhost(echo);
    let s = TestServer::start(r#"{ "global": { "timeout-secs": "1" } }"#, &[&v]).await;
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    // Closed at the 1 s timeout; 30 s only guard against a hang.
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("never closed").unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte (an echo's \"bye\" would be {} bytes)", "bye".len());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "the echo service never saw a connection");
    // The control: the same vhost does pass a talking client's bytes on to the echo service.
    let mut talker = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    talker.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut talker, 21).await, b"SSH-2.0-OpenSSH_9.2\r\n");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "the talker reached the echo service");
    s.stop().await;
}
