//! The `lwsws` binary as a user runs it: `--check`, exit status 64 on a bad config with its
//! file:line:col, SIGTERM draining in-flight requests, privilege dropping, the built-in demo.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{put, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_lwsws");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn site_vhost(port: u16, extra: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://_lws_ddir_/www",
                          "extra-mimetypes": {{ ".bin": "application/octet-stream" }} }}] }}] }}"#
    )
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env("RUST_LOG", "lwsws=info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_for_port(addr: SocketAddr, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("lwsws exited early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("lwsws did not listen on {addr}");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < until, "lwsws did not exit in time");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[test]
fn check_reports_summary_and_warnings() {
    let dir = write_config("{ \"global\": { \"bogus\": 1 } }", &[("site", &site_vhost(8099, ""))]);
    for args in [vec!["--check", "-c"], vec!["check", "-c"]] {
        let mut a = args.clone();
        let d = dir.path().to_str().unwrap();
        a.push(d);
        let out = Command::new(BIN).args(&a).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("127.0.0.1:8099 http vhosts: localhost"), "{text}");
        assert!(text.contains("mount / -> file:///usr/share/www"), "{text}");
        assert!(text.contains(&format!("{d}/conf:1:15: unknown key \"bogus\" in global is ignored")), "{text}");
    }
}

#[test]
fn bad_config_exits_64_with_location_at_check_and_at_startup() {
    let dir = write_config(
        "{}",
        &[(
            "site",
            "{ \"vhosts\": [\n  { \"name\": \"x\", \"port\": \"80\",\n    \"mounts\": [{ \"mountpoint\": \"/\", \"origin\": \"nope://\" }] } ] }",
        )],
    );
    let d = dir.path().to_str().unwrap();
    let out = Command::new(BIN).args(["--check", "-c", d]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{d}/conf.d/site:3:47: \"origin\": unknown origin scheme")), "{text}");
    let out = Command::new(BIN).args(["-c", d]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{d}/conf.d/site:3:47")), "{err}");
}

#[test]
fn port_in_use_fails_startup_with_the_vhost_named() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = write_config("{}", &[("site", &site_vhost(port, ""))]);
    let out = Command::new(BIN).args(["-c", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vhost \"localhost\": cannot listen on port"), "{err}");
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let port = free_port();
    let dir = write_config("{}", &[("site", &site_vhost(port, ""))]);
    let big = vec![b'x'; 32 * 1024 * 1024];
    put(dir.path(), "www/big.bin", &big);
    let d = dir.path().to_str().unwrap();
    let mut child = spawn(&["-c", d, "--data-dir", d], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, &mut child);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once stopping has begun...
    assert!(TcpStream::connect(addr).is_err(), "the listener closes at SIGTERM");
    // ...while the in-flight response completes.
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = n;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                total += k;
                rest.extend_from_slice(&buf[..k.min(16)]);
            }
            Err(e) => panic!("read failed: {e}"),
        }
        if total >= big.len() {
            break;
        }
    }
    assert!(total >= big.len(), "got {total} of {}", big.len());
    drop(s);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn privileges_are_dropped_after_binding_when_root() {
    let port = free_port();
    let dir = write_config("{ \"global\": { \"username\": \"nobody\" } }", &[("site", &site_vhost(port, ""))]);
    put(dir.path(), "www/index.html", "hi");
    let d = dir.path().to_str().unwrap();
    let mut child = spawn(&["-c", d, "--data-dir", d], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, &mut child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    if nix::unistd::getuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
        assert!(uid_line.split_whitespace().skip(1).all(|u| u == nobody.to_string()), "{uid_line}");
    } else {
        assert!(err.contains("not running as root"), "{err}");
    }
}

#[test]
fn without_a_config_dir_the_builtin_demo_serves_on_7681() {
    let mut child = spawn(&[], &[("LWSWS_DEFAULT_CONFIG_DIR", "/nonexistent/lwsws")]);
    let addr: SocketAddr = "127.0.0.1:7681".parse().unwrap();
    wait_for_port(addr, &mut child);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("lwsws is running"));
    let first_line = err.lines().next().unwrap_or("");
    assert!(first_line.contains("built-in demo"), "first log line: {first_line}");
}
