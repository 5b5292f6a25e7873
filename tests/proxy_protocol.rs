//! `proxy-protocol` on a listener: every connection starts with a PROXY header (v1 text, v2
//! binary), read before TLS and before sniffing, and the address in it is the client's in the
//! access log, the forwarding headers (hyper and passthrough alike), CGI and raw roles. A
//! connection without a valid header, or whose header does not come in time, is closed. A
//! reload changes the rule for new connections only; a bad value leaves the running one.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Conn, Pki, TestServer, connect, put};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V1_V4: &str = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
const V1_V6: &str = "PROXY TCP6 2001:db8::7 2001:db8::1 40001 443\r\n";

/// A v2 header: `command` 0 LOCAL or 1 PROXY, `family` 0x11 TCP/IPv4, 0x21 TCP/IPv6, 0 none.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x20 | command, family]);
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

/// v2 PROXY from 192.0.2.9:40002 (with a NOOP TLV, which is skipped).
fn v2_v4() -> Vec<u8> {
    v2(1, 0x11, &[192, 0, 2, 9, 198, 51, 100, 1, 0x9c, 0x42, 0x01, 0xbb, 0x04, 0x00, 0x01, 0x00])
}

/// v2 PROXY from [2001:db8::9]:40003.
fn v2_v6() -> Vec<u8> {
    let mut body = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    body.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    body.extend([0x9c, 0x43, 0x01, 0xbb]);
    v2(1, 0x21, &body)
}

/// Every kind of header with the client address it names.
fn headers() -> Vec<(Vec<u8>, &'static str)> {
    vec![(V1_V4.into(), "192.0.2.7"), (V1_V6.into(), "2001:db8::7"), (v2_v4(), "192.0.2.9"), (v2_v6(), "2001:db8::9")]
}

/// A connection that has sent `header`.
async fn with_header(addr: SocketAddr, header: &[u8]) -> Conn<TcpStream> {
    let mut c = connect(addr).await;
    c.s.write_all(header).await.unwrap();
    c
}

/// Files for the requests of each test: the access log shows the path without its query, so
/// each request has a file of its own.
fn files(root: &std::path::Path) {
    put(root, "www/index.html", "home");
    for i in 0..4 {
        for name in ["n", "tls", "plain", "health"] {
            put(root, &format!("www/{name}{i}.html"), "page");
        }
    }
}

fn site(accept: &str, extra: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1",
            "proxy-protocol": "{accept}", "access-log": "{{DIR}}/access.log", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}] }}] }}"#
    )
}

/// Waits for an access log line of `path` and returns it.
async fn log_line(s: &TestServer, path: &str) -> String {
    let file = s.path().join("access.log");
    let find = || {
        let log = std::fs::read_to_string(&file).unwrap_or_default();
        log.lines().find(|l| l.contains(&format!("GET {path} "))).map(str::to_string)
    };
    common::eventually(&format!("an access log line for {path}"), || find().is_some()).await;
    find().unwrap()
}

#[tokio::test]
async fn each_header_gives_the_client_address_on_a_plain_listener() {
    let s = TestServer::start("{}", &[&site("any", "")]).await;
    files(s.path());
    for (i, (header, addr)) in headers().into_iter().enumerate() {
        let mut c = with_header(s.addr(), &header).await;
        let path = format!("/n{i}.html");
        assert_eq!(c.get(&path, "").await.status, 200);
        let line = log_line(&s, &path).await;
        assert!(line.starts_with(&format!("{addr} - - [")), "{line}");
        // The header is read once: later requests on the connection are plain HTTP.
        assert_eq!(c.get("/", "").await.status, 200);
    }
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_proxy_protocol_headers_total{result="proxied"} 4"#), "{m}");
    s.stop().await;
}

/// A TLS client over a stream the header has already gone down.
async fn tls_after(stream: TcpStream, pki: &Pki) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
    common::init();
    let mut config = rustls::ClientConfig::builder().with_root_certificates(pki.roots()).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("site.test").unwrap();
    Conn::new(connector.connect(name, stream).await.unwrap())
}

#[tokio::test]
async fn the_header_comes_before_tls_and_before_plain_text_on_a_tls_port() {
    let pki = Pki::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    pki.leaf(dir.path(), "site", &["site.test"], false);
    files(dir.path());
    let tls = r#""host-ssl-cert": "{DIR}/site.crt", "host-ssl-key": "{DIR}/site.key",
        "allow-non-tls": "1", "allow-http-on-https": "1","#;
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("conf"), "{}").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/site"), site("any", tls).replace("{DIR}", &d)).unwrap();
    let s = TestServer::start_dir(dir).await;
    for (i, (header, addr)) in headers().into_iter().enumerate() {
        let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let mut c = tls_after(tcp, &pki).await;
        let path = format!("/tls{i}.html");
        assert_eq!(c.get(&path, "").await.status, 200);
        assert!(log_line(&s, &path).await.starts_with(&format!("{addr} - - [")));
        // Plain HTTP on the TLS port (allow-non-tls): the header still comes first.
        let mut c = with_header(s.addr(), &header).await;
        let path = format!("/plain{i}.html");
        assert_eq!(c.get(&path, "").await.status, 200);
        assert!(log_line(&s, &path).await.starts_with(&format!("{addr} - - [")));
    }
    s.stop().await;
}

/// An upstream that records each request head and answers 200.
async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = common::read_head(&mut s, &mut buf).await else { return };
                    h.lock().unwrap().push(head);
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn forwarding_headers_carry_the_header_address_on_both_request_paths() {
    let (up, heads) = upstream().await;
    for passthrough in ["0", "1"] {
        let global = format!(r#"{{ "global": {{ "proxy-passthrough": "{passthrough}" }} }}"#);
        let vhost = format!(
            r#"{{ "vhosts": [{{ "name": "site.test", "port": "0", "interface": "127.0.0.1", "proxy-protocol": "any",
                "mounts": [{{ "mountpoint": "/api", "origin": "http://{up}/", "rewrite-links": "0" }}] }}] }}"#
        );
        let s = TestServer::start(&global, &[&vhost]).await;
        for (header, addr) in headers() {
            let mut c = with_header(s.addr(), &header).await;
            assert_eq!(c.get("/api/x", "X-Path-Probe: 1\r\n").await.status, 200);
            let head = heads.lock().unwrap().last().cloned().unwrap();
            // The passthrough keeps the client's header case, hyper lowercases it.
            let probe = if passthrough == "1" { "\r\nX-Path-Probe: 1\r\n" } else { "\r\nx-path-probe: 1\r\n" };
            assert!(head.contains(probe), "passthrough {passthrough}: {head}");
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains(&format!("\r\nx-forwarded-for: {addr}\r\n")), "{head}");
            let element = if addr.contains(':') { format!("for=\"[{addr}]\"") } else { format!("for={addr}") };
            assert!(lower.contains(&format!("\r\nforwarded: {element};")), "{head}");
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn a_cgi_script_sees_the_header_address() {
    use std::os::unix::fs::PermissionsExt;
    let vhost = r#"{ "vhosts": [{ "name": "cgi.test", "port": "0", "interface": "127.0.0.1", "proxy-protocol": "v1",
        "mounts": [{ "mountpoint": "/cgi", "origin": "cgi://{DIR}/bin/run.sh" }] }] }"#;
    let s = TestServer::start("{}", &[vhost]).await;
    let script = put(s.path(), "bin/run.sh", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv | sort\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = with_header(s.addr(), V1_V4.as_bytes()).await;
    let env = c.get("/cgi", "").await.text();
    assert!(env.contains("REMOTE_ADDR=192.0.2.7\n") && env.contains("REMOTE_PORT=40000\n"), "{env}");
    s.stop().await;
}

#[tokio::test]
async fn local_and_unknown_keep_the_socket_address() {
    let s = TestServer::start("{}", &[&site("any", "")]).await;
    files(s.path());
    let local = v2(0, 0x00, &[]);
    for (i, header) in [local, b"PROXY UNKNOWN\r\n".to_vec()].into_iter().enumerate() {
        let mut c = with_header(s.addr(), &header).await;
        let path = format!("/health{i}.html");
        assert_eq!(c.get(&path, "").await.status, 200);
        assert!(log_line(&s, &path).await.starts_with("127.0.0.1 - - ["));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_valid_header_is_closed() {
    let s = TestServer::start("{}", &[&site("v1", "")]).await;
    put(s.path(), "www/index.html", "home");
    let cases: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n",
        b"PROXY TCP4 nonsense here 1 2\r\nGET / HTTP/1.1\r\nHost: site.test\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\nGET / HTTP/1.1\r\n\r\n",
        // A v2 header where v1 is required.
        &v2_v4(),
        // A line that never ends within 107 bytes.
        &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30),
    ];
    for raw in cases {
        let mut c = connect(s.addr()).await;
        let _ = c.s.write_all(raw).await;
        assert!(c.closed_within(Duration::from_secs(1)).await, "{:?}", String::from_utf8_lossy(raw));
    }
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_proxy_protocol_headers_total{result="invalid"} 5"#), "{m}");
    assert!(!std::fs::read_to_string(s.path().join("access.log")).unwrap_or_default().contains("GET"));
    s.stop().await;
}

#[tokio::test]
async fn a_header_that_does_not_come_in_time_is_closed() {
    let s = TestServer::start(r#"{ "global": { "timeout-secs": "1" } }"#, &[&site("any", "")]).await;
    for partial in [&b"PROXY TCP4 192.0.2.7"[..], &b""[..], &v2_v4()[..20]] {
        let mut c = connect(s.addr()).await;
        c.s.write_all(partial).await.unwrap();
        assert!(c.closed_within(Duration::from_secs(1)).await);
    }
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_proxy_protocol_headers_total{result="timeout"} 3"#), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn a_raw_role_gets_what_follows_the_header_not_the_header() {
    let onward = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let o = onward.local_addr().unwrap();
    let vhost = format!(
        r#"{{ "vhosts": [{{ "name": "raw", "port": "0", "interface": "127.0.0.1", "proxy-protocol": "v2",
            "listen-accept-role": "raw-proxy", "listen-accept-protocol": "raw-proxy", "apply-listen-accept": "1",
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "ipv4:127.0.0.1:{}" }} }}] }}] }}"#,
        o.port()
    );
    let s = TestServer::start("{}", &[&vhost]).await;
    let mut c = with_header(s.addr(), &v2_v4()).await;
    c.s.write_all(b"SSH-2.0-probe\r\n").await.unwrap();
    let (mut back, _) = onward.accept().await.unwrap();
    let mut got = vec![0u8; 15];
    tokio::time::timeout(Duration::from_secs(10), back.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"SSH-2.0-probe\r\n");
    s.stop().await;
}

#[tokio::test]
async fn a_reload_that_changes_the_key_applies_to_new_connections_on_the_same_socket() {
    let mut s = TestServer::start("{}", &[&site("off", "")]).await;
    files(s.path());
    let addr = s.addr();
    let mut kept = connect(addr).await;
    assert_eq!(kept.get("/", "").await.status, 200);
    let d = s.path().display().to_string();
    std::fs::write(s.path().join("conf.d/v00"), site("v2", "").replace("{DIR}", &d)).unwrap();
    let cfg = lwsws::lwsws::load(s.path(), "/usr/share").unwrap().config;
    let server = s.server.as_mut().unwrap();
    let r = server.reload(&cfg, &mut Vec::new()).await.unwrap();
    assert_eq!(r, lwsws::app::Reloaded::Applied { added: 0, removed: 0 }, "the socket is kept");
    assert_eq!(kept.get("/", "").await.status, 200, "an open connection keeps the config it started with");
    let mut plain = connect(addr).await;
    plain.send("GET / HTTP/1.1\r\nHost: site.test\r\n\r\n").await;
    assert!(plain.closed_within(Duration::from_secs(1)).await, "a new connection needs the header");
    let mut c = with_header(addr, &v2_v4()).await;
    assert_eq!(c.get("/n0.html", "").await.status, 200);
    assert!(log_line(&s, "/n0.html").await.starts_with("192.0.2.9 - - ["));
    s.stop().await;
}

/// A bounded, seeded fuzzing run inside `cargo test` (the open-ended one is the `proxy_header`
/// cargo fuzz target): the seeds, cut short and with bytes changed, must never make the reader
/// take a byte past a header it accepts (`fuzzing::proxy_header` checks that).
#[test]
fn mutated_headers_never_read_past_the_header() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/proxy_header");
    let mut seeds: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "seeds missing in {}", dir.display());
    let mut x: u64 = 0x7070_705f_6675_7a7a;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    for seed in &seeds {
        lwsws::fuzzing::proxy_header(seed);
        for _ in 0..400 {
            let mut m = seed.clone();
            match next() % 3 {
                0 => m.truncate(next() % (m.len() + 1)),
                1 => {
                    let at = next() % m.len();
                    m[at] = next() as u8;
                }
                _ => {
                    let at = next() % (m.len() + 1);
                    m.insert(at, [b'\r', b'\n', b' ', 0, 0xff][next() % 5]);
                }
            }
            lwsws::fuzzing::proxy_header(&m);
        }
    }
}

/// A bad value in an edit is refused at reload: the running listener keeps its header rule.
#[test]
fn a_bad_value_at_reload_keeps_the_last_good_config() {
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let dir = common::write_config("{}", &[]);
    put(dir.path(), "www/index.html", "home");
    let conf = |value: &str| {
        format!(
            r#"{{ "vhosts": [{{ "name": "site.test", "port": "{port}", "interface": "127.0.0.1", "proxy-protocol": "{value}",
                "mounts": [{{ "mountpoint": "/", "origin": "file://{}/www" }}] }}] }}"#,
            dir.path().display()
        )
    };
    std::fs::write(dir.path().join("conf.d/site"), conf("v1")).unwrap();
    let mut child = common::Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_lwsws"))
            .args(["-c", dir.path().to_str().unwrap(), "--admin-addr", &admin.to_string()])
            .env("RUST_LOG", "lwsws=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    common::wait_for_child_port(addr, &mut child);
    std::fs::write(dir.path().join("conf.d/site"), conf("v7")).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !fetch(admin, b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .contains(r#"lwsws_config_reloads_total{result="failure"}"#)
    {
        assert!(Instant::now() < until, "the bad edit was not refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    let served =
        fetch(addr, format!("{V1_V4}GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").as_bytes());
    assert!(served.starts_with("HTTP/1.1 200") && served.ends_with("home"), "{served}");
    assert_eq!(fetch(addr, b"GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"), "");
    let mut stderr = child.stderr.take().unwrap();
    child.terminate();
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(err.contains("proxy-protocol") && err.contains("conf.d/site:1:"), "{err}");
}

/// Sends `raw` and reads until the server closes (what it sent, as text).
fn fetch(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
