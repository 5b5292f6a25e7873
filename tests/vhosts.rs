//! Vhost selection (D3) and listeners: Host matching on a shared port, unix sockets, the
//! named loopback interface, and port sharing between configs files.

mod common;

use common::{Conn, TestServer, put};

const TWO: &str = r#"{ "vhosts": [
    { "name": "localhost", "port": "0", "interface": "127.0.0.1",
      "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/one" }] },
    { "name": "example.com", "port": "0", "interface": "127.0.0.1",
      "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/two" }] } ] }"#;

#[tokio::test]
async fn host_header_selects_exact_then_suffix_then_first() {
    let s = TestServer::start("{}", &[TWO]).await;
    put(s.path(), "one/index.html", "one");
    put(s.path(), "two/index.html", "two");
    let get_host = |host: &'static str| {
        let addr = s.addr();
        async move {
            let mut c = common::connect(addr).await;
            c.send(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
            c.read_response(false).await.unwrap().text()
        }
    };
    assert_eq!(get_host("example.com").await, "two");
    assert_eq!(get_host("EXAMPLE.COM:8080").await, "two");
    assert_eq!(get_host("www.example.com").await, "two");
    // D3: no prefix quirk. "example" is not "example.com"; "local" is not "localhost".
    assert_eq!(get_host("example").await, "one");
    assert_eq!(get_host("local").await, "one");
    assert_eq!(get_host("other.org").await, "one");
    s.stop().await;
}

#[tokio::test]
async fn unix_socket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("web.sock");
    let v = format!(
        r#"{{ "vhosts": [{{ "name": "u", "unix-socket": "1", "interface": "{}",
              "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}] }}] }}"#,
        sock.display()
    );
    let s = TestServer::start("{}", &[&v]).await;
    put(s.path(), "www/index.html", "over unix");
    let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let mut c = Conn::new(stream);
    let r = c.get("/", "").await;
    assert_eq!(r.text(), "over unix");
    s.stop().await;
}

#[tokio::test]
async fn named_interface_binds_its_addresses() {
    let v = r#"{ "vhosts": [{ "name": "lo", "port": "0", "interface": "lo", "noipv6": "1",
              "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/www" }] }] }"#;
    let s = TestServer::start("{}", &[v]).await;
    put(s.path(), "www/index.html", "lo");
    assert!(s.addrs.iter().all(|a| a.ip().is_loopback()));
    assert_eq!(common::get(s.addr(), "/", "").await.text(), "lo");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let v = r#"{ "vhosts": [{ "name": "x", "port": "0", "interface": "127.0.0.1",
              "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/www" }] }] }"#;
    let s = TestServer::start("{}", &[v]).await;
    let addr = s.addr();
    s.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
