//! The stop a rolling update relies on, with the real binary and real signals: at SIGTERM
//! `/readyz` fails while both request paths (hyper, and the passthrough of plain proxy mounts)
//! go on serving for the shutdown delay, each keep-alive connection ending after its next
//! response; then the listeners close, idle connections are closed, in-flight requests finish,
//! and the grace period cuts what never ends. A second signal skips the delay.
//!
//! Which path serves a request: a file mount and any HTTP/1.0 request go through hyper; an
//! HTTP/1.1 request to the `rewrite-links: 0` proxy mount goes through the passthrough.
//! Only order and outcomes are asserted; the 30 s waits guard against a hang.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Conn, Running, connect, free_port, put, write_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

const BIN: &str = env!("CARGO_BIN_EXE_lwsws");
const GUARD: Duration = Duration::from_secs(30);

/// An upstream that answers `/fast` at once, holds `/slow` until released, and never answers
/// `/never`; it reports each request's path as it arrives.
struct Upstream {
    addr: SocketAddr,
    arrived: mpsc::UnboundedReceiver<String>,
    release: watch::Sender<bool>,
}

impl Upstream {
    async fn start() -> Upstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, arrived) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(upstream_conn(s, tx.clone(), released.clone()));
            }
        });
        Upstream { addr, arrived, release }
    }

    /// Waits until `n` requests for `path` have arrived.
    async fn wait_for(&mut self, path: &str, n: usize) {
        let mut seen = 0;
        while seen < n {
            let got = tokio::time::timeout(GUARD, self.arrived.recv()).await.expect("requests reach the upstream");
            seen += usize::from(got.as_deref() == Some(path));
        }
    }
}

async fn upstream_conn(mut s: TcpStream, arrived: mpsc::UnboundedSender<String>, mut released: watch::Receiver<bool>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let Some(head) = common::read_head(&mut s, &mut buf).await else { return };
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let _ = arrived.send(path.clone());
        match path.as_str() {
            "/slow" => {
                let _ = released.wait_for(|r| *r).await;
            }
            "/never" => {
                while !matches!(s.read(&mut tmp).await, Ok(0) | Err(_)) {}
                return;
            }
            _ => {}
        }
        let body = &path[1..];
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The binary on a fresh port with an admin port, a file mount and a passthrough proxy mount.
struct Lwsws {
    child: Running,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Lwsws {
    async fn start(up: SocketAddr, delay: u64, grace: u64) -> Lwsws {
        let (port, admin_port) = (free_port(), free_port());
        let vhost = format!(
            r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1", "keepalive_timeout": "300",
                "mounts": [{{ "mountpoint": "/", "origin": "file://_lws_ddir_/www" }},
                           {{ "mountpoint": "/up", "origin": "http://{up}/", "rewrite-links": "0" }}] }}] }}"#
        );
        // Requests and idle connections outlive any test here: neither the proxy timeout nor
        // the keep-alive timeout is what ends them.
        let dir = write_config(r#"{ "global": { "timeout-secs": "300" } }"#, &[("site", &vhost)]);
        put(dir.path(), "www/index.html", "home");
        let d = dir.path().to_str().unwrap();
        let admin = format!("127.0.0.1:{admin_port}");
        let (delay, grace) = (delay.to_string(), grace.to_string());
        let args = ["-c", d, "--data-dir", d, "--admin-addr", &admin, "--shutdown-delay-secs", &delay];
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["--grace-secs", &grace]).env("RUST_LOG", "lwsws=info");
        let mut child = Running(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        common::wait_for_child_port(addr, &mut child);
        Lwsws { child, addr, admin: admin.parse().unwrap(), _dir: dir }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    async fn readyz(&self) -> u16 {
        common::get(self.admin, "/readyz", "").await.status
    }

    async fn not_ready(&self) -> bool {
        common::try_eventually_async(|| async move { self.readyz().await == 503 }).await
    }

    async fn exited(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "lwsws did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn refuses_connections(&self) -> bool {
        let addr = self.addr;
        common::try_eventually_async(|| async move { TcpStream::connect(addr).await.is_err() }).await
    }
}

/// A keep-alive connection that has been answered once on each path.
async fn kept_alive(addr: SocketAddr) -> (Conn<TcpStream>, Conn<TcpStream>) {
    let mut hyper = connect(addr).await;
    let r = hyper.get("/index.html", "").await;
    assert_eq!((r.status, r.header("connection")), (200, None));
    let mut passthrough = connect(addr).await;
    let r = passthrough.get("/up/fast", "").await;
    assert_eq!((r.status, r.header("connection")), (200, None));
    (hyper, passthrough)
}

/// A request sent and left waiting on the upstream: HTTP/1.0 goes through hyper.
async fn sent(addr: SocketAddr, path: &str, version: &str) -> Conn<TcpStream> {
    let mut c = connect(addr).await;
    c.send(&format!("GET /up{path} HTTP/{version}\r\nHost: localhost\r\n\r\n")).await;
    c
}

#[tokio::test]
async fn at_sigterm_readyz_fails_while_both_paths_serve_with_connection_close() {
    let up = Upstream::start().await;
    let s = Lwsws::start(up.addr, 600, 30).await;
    assert_eq!(s.readyz().await, 200);
    let (mut hyper, mut passthrough) = kept_alive(s.addr).await;
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.not_ready().await, "/readyz stays 200");
    assert_eq!(common::get(s.admin, "/readyz", "").await.text(), "shutting down\n");
    assert_eq!(common::get(s.admin, "/healthz", "").await.status, 200);
    let metrics = common::get(s.admin, "/metrics", "").await.text();
    assert!(metrics.contains("lwsws_shutdown_phase 1"), "{metrics}");
    // Open connections are served once more, and told to go.
    for (c, path) in [(&mut hyper, "/index.html"), (&mut passthrough, "/up/fast")] {
        let r = c.get(path, "").await;
        assert_eq!((r.status, r.header("connection")), (200, Some("close")), "{path}");
        assert!(c.closed_within(GUARD).await, "{path}: the connection stays open after connection: close");
    }
    // New connections are still accepted and served.
    for path in ["/index.html", "/up/fast"] {
        let r = common::get(s.addr, path, "").await;
        assert_eq!((r.status, r.header("connection")), (200, Some("close")), "{path}");
    }
}

#[tokio::test]
async fn after_the_delay_new_connections_are_refused_idle_ones_closed_and_in_flight_requests_finish() {
    let mut up = Upstream::start().await;
    let mut s = Lwsws::start(up.addr, 1, 60).await;
    let (mut idle_hyper, mut idle_passthrough) = kept_alive(s.addr).await;
    let mut slow_passthrough = sent(s.addr, "/slow", "1.1").await;
    let mut slow_hyper = sent(s.addr, "/slow", "1.0").await;
    up.wait_for("/slow", 2).await;
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.refuses_connections().await, "the listener still accepts");
    assert!(idle_hyper.closed_within(GUARD).await, "an idle hyper connection stays open");
    assert!(idle_passthrough.closed_within(GUARD).await, "an idle passthrough connection stays open");
    assert!(s.child.try_wait().unwrap().is_none(), "lwsws exited with requests in flight");
    up.release.send(true).unwrap();
    for (c, which) in [(&mut slow_passthrough, "passthrough"), (&mut slow_hyper, "hyper")] {
        let r = c.read_response(false).await.unwrap_or_else(|| panic!("{which}: no response"));
        assert_eq!((r.status, r.text().as_str()), (200, "slow"), "{which}");
    }
    assert!(s.exited().await.success());
}

#[tokio::test]
async fn the_grace_period_cuts_requests_that_never_end() {
    let mut up = Upstream::start().await;
    let mut s = Lwsws::start(up.addr, 0, 1).await;
    let mut passthrough = sent(s.addr, "/never", "1.1").await;
    let mut hyper = sent(s.addr, "/never", "1.0").await;
    up.wait_for("/never", 2).await;
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.exited().await.success());
    assert!(passthrough.closed_within(GUARD).await, "passthrough: not cut, or answered");
    assert!(hyper.closed_within(GUARD).await, "hyper: not cut, or answered");
}

#[tokio::test]
async fn a_second_signal_skips_the_delay() {
    let up = Upstream::start().await;
    let mut s = Lwsws::start(up.addr, 600, 30).await;
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(s.not_ready().await, "/readyz stays 200");
    assert_eq!(common::get(s.addr, "/index.html", "").await.status, 200);
    // Ten minutes of delay are left: exiting within the guard means the delay was skipped.
    s.signal(nix::sys::signal::Signal::SIGINT);
    assert!(s.exited().await.success());
}
