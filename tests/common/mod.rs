//! Shared helpers for the integration tests: a config dir in a temp dir, an in-process server
//! on 127.0.0.1 port 0, a raw HTTP/1.1 client over TCP or TLS (so tests see the bytes), and a
//! fake Kubernetes API (`fake_kube`).

#![allow(dead_code)]

pub mod fake_kube;
pub mod pebble;
pub mod routes_env;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Option<lwsws::app::Server>,
    pub addrs: Vec<SocketAddr>,
    pub warnings: Vec<lwsws::model::Warning>,
}

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Writes `conf` and `conf.d/NAME` files under a fresh temp dir.
pub fn write_config(global: &str, vhost_files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), global).unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    for (name, text) in vhost_files {
        std::fs::write(dir.path().join("conf.d").join(name), text).unwrap();
    }
    dir
}

impl TestServer {
    /// Starts a server from config text. `{DIR}` in the texts is replaced with the temp dir.
    pub async fn start(global: &str, vhosts: &[&str]) -> TestServer {
        init();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("conf"), global.replace("{DIR}", &d)).unwrap();
        std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
        for (i, text) in vhosts.iter().enumerate() {
            std::fs::write(dir.path().join("conf.d").join(format!("v{i:02}")), text.replace("{DIR}", &d)).unwrap();
        }
        Self::start_dir(dir).await
    }

    pub async fn start_dir(dir: tempfile::TempDir) -> TestServer {
        init();
        let loaded = lwsws::lwsws::load(dir.path(), "/usr/share").unwrap_or_else(|e| panic!("config: {e}"));
        let mut warnings = loaded.warnings;
        let server =
            lwsws::app::Server::start(&loaded.config, &mut warnings).await.unwrap_or_else(|e| panic!("start: {e}"));
        let addrs = server.tcp_addrs().to_vec();
        TestServer { dir, server: Some(server), addrs, warnings }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// Waits until `f` holds, polling every 20 ms; fails naming `what` after 30 s, a deadline
/// generous enough for a loaded machine (the wait ends as soon as `f` holds).
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < until, "timed out after 30 s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `eventually` that reports instead of failing: whether `f` held within 30 s.
pub async fn try_eventually<F: FnMut() -> bool>(mut f: F) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// `try_eventually` for a check that must await.
pub async fn try_eventually_async<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !f().await {
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Creates a file (and its parents) under `root`.
pub fn put(root: &Path, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub head_text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// For hand-made upstreams: reads from `s` into `buf` until a request head is whole, and returns
/// it (blank line included), leaving what follows in `buf`. `None` when the peer closes first.
/// No time limit: an upstream waits on a keep-alive connection as long as the proxy keeps it.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head)
}

/// A raw connection: write bytes, read whole responses (content-length framed).
pub struct Conn<S> {
    pub s: S,
    buf: Vec<u8>,
}

pub async fn connect(addr: SocketAddr) -> Conn<TcpStream> {
    Conn { s: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(s: S) -> Self {
        Conn { s, buf: Vec::new() }
    }

    pub async fn send(&mut self, raw: &str) {
        self.s.write_all(raw.as_bytes()).await.unwrap();
    }

    pub async fn get(&mut self, path: &str, extra: &str) -> Resp {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")).await;
        self.read_response(false).await.expect("a response")
    }

    /// Reads one response; `head_only` for HEAD requests (no body despite content-length).
    pub async fn read_response(&mut self, head_only: bool) -> Option<Resp> {
        let end = self.fill_until(b"\r\n\r\n").await?;
        let head_text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, ' ');
        parts.next();
        let status: u16 = parts.next()?.parse().ok()?;
        let reason = parts.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
        if chunked && !head_only {
            let body = self.read_chunked().await?;
            return Some(Resp { status, reason, headers, body, head_text });
        }
        let len = if head_only || status == 304 { 0 } else { len };
        while self.buf.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        let body = self.buf.drain(..len).collect();
        Some(Resp { status, reason, headers, body, head_text })
    }

    /// A chunked body, decoded; trailers are read and dropped.
    async fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = self.fill_until(b"\r\n").await?;
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let end = self.fill_until(b"\r\n").await?;
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Some(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Reads until `needle` is in the buffer: where it starts, or `None` if the peer closed.
    async fn fill_until(&mut self, needle: &[u8]) -> Option<usize> {
        loop {
            if let Some(i) = find(&self.buf, needle) {
                return Some(i);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn fill(&mut self) -> bool {
        // Straight into the heap buffer: a 64 KiB array here would sit in every future that
        // reads a response, and debug builds copy those futures on the stack.
        self.buf.reserve(65536);
        match tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(_)) => true,
            Err(_) => panic!("timed out waiting for the server"),
        }
    }

    /// True when the server closes the connection (without sending anything first). `within`
    /// is when the test expects the close; the wait goes on to at least 30 s, a guard against a
    /// hang only, so a loaded machine that is late cannot fail the test while a server that
    /// never closes still does.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut tmp = [0u8; 1024];
        let guard = within.max(Duration::from_secs(30));
        matches!(tokio::time::timeout(guard, self.s.read(&mut tmp)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    connect(addr).await.get(path, extra).await
}

/// A self-signed CA and leaf certificates for names, made with rcgen.
pub struct Pki {
    pub ca_cert: rcgen::Certificate,
    pub ca_issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(cn: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&key).unwrap();
        let ca_issuer = rcgen::Issuer::new(params, key);
        Pki { ca_cert, ca_issuer }
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`, signed by this CA; returns the cert PEM.
    pub fn leaf(&self, dir: &Path, file: &str, names: &[&str], client: bool) -> String {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.pem()
    }

    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca_cert.pem()).unwrap();
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).unwrap();
        roots
    }
}

/// A TLS client connection to `addr` with SNI `name`, optionally presenting a client cert.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    roots: rustls::RootCertStore,
    client: Option<(&Path, &Path)>,
    alpn: &[&str],
) -> std::io::Result<Conn<tokio_rustls::client::TlsStream<TcpStream>>> {
    use rustls_pki_types::pem::PemObject;
    init();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain: Vec<_> =
                rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let sn = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut s = connector.connect(sn, tcp).await?;
    // TLS 1.3 reports a refused client certificate only on the first read: probe with a flush.
    s.flush().await?;
    Ok(Conn::new(s))
}

/// Waits until a spawned server accepts on `addr`; if it exits first, fails with its stderr.
pub fn wait_for_child_port(addr: SocketAddr, child: &mut std::process::Child) {
    use std::io::Read;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("lwsws exited early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("lwsws did not listen on {addr}");
}

/// A spawned process used as a `Child`, killed when the test ends if it is still running.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Running {
    /// SIGTERM, then waits: how a clean stop is asked for and checked.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A port that was free a moment ago on every address, for a process that must be told its
/// port before it starts (the binary, Pebble); in-process servers use port 0 instead.
///
/// The probe binds the wildcard (`[::]` dual-stack, else `0.0.0.0`), which is what a vhost
/// without `interface` binds and a superset of `127.0.0.1`: a port taken on any address, v4
/// or v6, is never handed out. (Probing only `127.0.0.1` missed servers on `[::1]` or
/// `127.0.0.2`, whose ports the ACME tests' all-interfaces vhosts then failed to bind.)
pub fn free_port() -> u16 {
    // The kernel may hand the same ephemeral port out twice in a row once the probe socket is
    // closed; a test that asks for two ports (Pebble's listener and its management port) needs
    // two different ones, so no port is given out twice in one test process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let probe =
            std::net::TcpListener::bind("[::]:0").or_else(|_| std::net::TcpListener::bind("0.0.0.0:0")).unwrap();
        let port = probe.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
