//! The `lwsws` binary as a user runs it: `--check`, exit status 64 on a bad config with its
//! file:line:col, SIGTERM draining in-flight requests, privilege dropping, the built-in demo.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{put, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_lwsws");

fn site_vhost(port: u16, extra: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://_lws_ddir_/www",
                          "extra-mimetypes": {{ ".bin": "application/octet-stream" }} }}] }}] }}"#
    )
}

/// The server, killed when the test ends even if an assertion failed first.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> common::Running {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env("RUST_LOG", "lwsws=info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Running(cmd.spawn().unwrap())
}

fn wait_for_port(addr: SocketAddr, child: &mut Child) {
    common::wait_for_child_port(addr, child);
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
    let port = common::free_port();
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
    // New connections are refused once stopping has begun (waited for: a loaded machine may
    // take a while to deliver the signal; the deadline only guards against a hang)...
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < until, "the listener still accepts 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// `"username": "nobody"`. Run as root (as CI runs), the process must really become nobody:
/// every uid and gid in /proc/PID/status, and it still serves after the drop. Run as another
/// user the drop cannot happen: the test then checks the warning that says so, and that the
/// process kept our uid. Which branch ran is printed.
#[test]
fn username_drops_privileges_when_root_and_warns_when_not() {
    let port = common::free_port();
    let dir = write_config("{ \"global\": { \"username\": \"nobody\" } }", &[("site", &site_vhost(port, ""))]);
    put(dir.path(), "www/index.html", "hi");
    let d = dir.path().to_str().unwrap();
    let mut child = spawn(&["-c", d, "--data-dir", d], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, &mut child);
    let ids = |key: &str| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap().to_string();
        line.split_whitespace().skip(1).map(|v| v.parse::<u32>().unwrap()).collect::<Vec<_>>()
    };
    let root = nix::unistd::getuid().is_root();
    if root {
        eprintln!("running as root: checking that the privileges were really dropped");
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a user named nobody");
        let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
        // The socket is bound a moment before the privileges go: wait until they have.
        let until = Instant::now() + Duration::from_secs(30);
        while !(ids("Uid:").iter().all(|&u| u == uid) && ids("Gid:").iter().all(|&g| g == gid)) {
            assert!(Instant::now() < until, "still Uid {:?} Gid {:?}", ids("Uid:"), ids("Gid:"));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fetch(addr), "hi", "serves after dropping");
    } else {
        eprintln!("not running as root: checking the warning, no drop is possible");
        let me = nix::unistd::getuid().as_raw();
        assert!(ids("Uid:").iter().all(|&u| u == me), "{:?}", ids("Uid:"));
    }
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err.contains("not running as root"), !root, "{err}");
}

/// Without a config dir the binary picks the demo and tries port 7681. The test makes sure
/// 7681 is taken (it holds it itself, unless another server already does) so the outcome does
/// not depend on what else runs on the machine: the demo line comes first, then the refusal.
#[test]
fn without_a_config_dir_the_builtin_demo_is_chosen_and_asks_for_7681() {
    let _holder = std::net::TcpListener::bind("[::]:7681").or_else(|_| std::net::TcpListener::bind("0.0.0.0:7681"));
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env("LWSWS_DEFAULT_CONFIG_DIR", empty.path())
        .env("RUST_LOG", "lwsws=info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first_line = err.lines().next().unwrap_or("");
    assert!(first_line.contains("built-in demo") && first_line.contains("7681"), "first log line: {first_line}");
    assert!(err.contains("cannot listen on port 7681"), "{err}");
}

/// The demo config and site (conf/, which the binary carries byte for byte: see
/// `demo::tests`) serve the test page; on a port of the test's own, not 7681.
#[test]
fn the_demo_config_serves_the_test_page() {
    let (dir, port) = demo_copy();
    let d = dir.path().to_str().unwrap();
    let share = dir.path().join("share");
    let mut child = spawn(&["-c", d, "--data-dir", share.to_str().unwrap()], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, &mut child);
    let page = fetch(addr);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)).code(), Some(0));
    assert!(page.contains("lwsws is running"), "{page}");
}

/// A copy of conf/ with the demo vhost on a free loopback port instead of 7681.
fn demo_copy() -> (tempfile::TempDir, u16) {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    copy_tree(&src, dir.path());
    let vhost = dir.path().join("conf.d/localhost");
    let text = std::fs::read_to_string(&vhost).unwrap();
    assert!(text.contains("\"port\": \"7681\","), "the demo vhost moved its port: {text}");
    let text = text.replace("\"port\": \"7681\",", &format!("\"port\": \"{port}\", \"interface\": \"127.0.0.1\","));
    std::fs::write(&vhost, text).unwrap();
    (dir, port)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `--check` with no `-c` checks what a plain start would serve: the demo when the default
/// dir has no config (it used to check the empty default dir and fail).
#[test]
fn check_without_a_config_dir_checks_the_builtin_demo() {
    let empty = tempfile::tempdir().unwrap();
    for args in [["--check"], ["check"]] {
        let out = Command::new(BIN).args(args).env("LWSWS_DEFAULT_CONFIG_DIR", empty.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {text}{err}");
        assert!(text.contains("*:7681 http vhosts: localhost"), "{text}");
        assert!(err.contains("checking the built-in demo config"), "{err}");
    }
    // A default dir that holds a config is what is checked (and served), demo or not.
    let bad = write_config("{ \"global\": ", &[]);
    let out = Command::new(BIN).arg("--check").env("LWSWS_DEFAULT_CONFIG_DIR", bad.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(text.contains(&format!("{}/conf:1:", bad.path().display())), "{text}");
}

/// Logs to a pipe (a file, `docker logs`) carry no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--check")
        .env("LWSWS_DEFAULT_CONFIG_DIR", empty.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "lwsws=info")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built-in demo"), "something was logged: {err}");
    assert!(!out.stderr.contains(&0x1b), "escape bytes in piped logs: {err:?}");
}

/// On a terminal (util-linux `script` provides one) the log is coloured, unless `NO_COLOR`.
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let empty = tempfile::tempdir().unwrap();
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("{BIN} --check"), "/dev/null"])
            .env("LWSWS_DEFAULT_CONFIG_DIR", empty.path())
            .env("RUST_LOG", "lwsws=info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("util-linux `script` runs the binary on a terminal");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("built-in demo"), "{text:?}");
        text
    };
    assert!(on_tty(None).contains('\x1b'), "a terminal gets colour");
    assert!(!on_tty(Some("1")).contains('\x1b'), "NO_COLOR=1 turns it off");
    // no-color.org: an empty NO_COLOR does not count.
    assert!(on_tty(Some("")).contains('\x1b'), "an empty NO_COLOR is ignored");
}

/// GET / on a fresh connection, the body as text.
fn fetch(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// Waits for `want` at `addr`; the 30 s only guard against a hang.
fn until(addr: SocketAddr, want: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if fetch(addr) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn reloads_on_sighup_on_edits_and_on_a_kubelet_swap_and_refuses_broken_edits() {
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = write_config("{}", &[]);
    let d = dir.path().to_str().unwrap();
    put(dir.path(), "www/one/index.html", "one");
    put(dir.path(), "www/two/index.html", "two");
    put(dir.path(), "www/three/index.html", "three");
    let site = |root: &str| {
        format!(
            r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                "mounts": [{{ "mountpoint": "/", "origin": "file://{d}/www/{root}" }}] }}] }}"#
        )
    };
    // conf.d/site is a kubelet-style symlink into a timestamped directory.
    let swap = |stamp: &str, text: &str| {
        let data = dir.path().join(format!("conf.d/..{stamp}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("site"), text).unwrap();
        let tmp = dir.path().join("conf.d/..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..{stamp}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("conf.d/..data")).unwrap();
    };
    swap("2026_11_27_15_00_00.1", &site("one"));
    std::os::unix::fs::symlink("..data/site", dir.path().join("conf.d/site")).unwrap();
    let admin_port = common::free_port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let admin_arg = admin.to_string();
    let mut child = spawn(&["-c", d, "--admin-addr", &admin_arg], &[]);
    wait_for_port(addr, &mut child);
    assert_eq!(fetch(addr), "one");

    // kubelet's atomic swap: no event on conf.d/site itself.
    swap("2026_11_27_15_01_00.2", &site("two"));
    assert!(until(addr, "two"), "the ..data swap was picked up");

    // A broken edit is refused; the running config keeps serving.
    swap("2026_11_27_15_02_00.3", "{ \"vhosts\": [ { \"name\": \"x\", ");
    let end = Instant::now() + Duration::from_secs(30);
    while !fetch_path(admin, "/metrics").contains("lwsws_config_reloads_total{result=\"failure\"} 1") {
        assert!(Instant::now() < end, "the broken edit was not noticed: {}", fetch_path(admin, "/metrics"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fetch(addr), "two");

    // A plain edit of a new file, then SIGHUP as well.
    std::fs::write(dir.path().join("conf.d/site"), site("three")).unwrap_or_else(|_| {
        std::fs::remove_file(dir.path().join("conf.d/site")).unwrap();
        std::fs::write(dir.path().join("conf.d/site"), site("three")).unwrap();
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(until(addr, "three"), "the edit applied");
    // The admin listener counts them.
    let mut m = TcpStream::connect(admin).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    m.read_to_string(&mut metrics).unwrap();
    assert!(metrics.contains("lwsws_config_reloads_total{result=\"failure\"}"), "{metrics}");
    assert!(metrics.contains("lwsws_config_reloads_total{result=\"success\"}"), "{metrics}");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let refused = err.lines().find(|l| l.contains("refused")).unwrap_or_else(|| panic!("no refusal logged: {err}"));
    assert!(refused.contains("conf.d/site:1:"), "the refusal names the broken file's line: {refused}");
}

#[test]
fn admin_address_comes_from_the_global_config_and_a_bad_one_is_refused() {
    let port = common::free_port();
    let admin = common::free_port();
    let global = format!("{{ \"global\": {{ \"admin-addr\": \"127.0.0.1:{admin}\" }} }}");
    let dir = write_config(&global, &[("site", &site_vhost(port, ""))]);
    put(dir.path(), "www/index.html", "hi");
    let mut child = spawn(&["-c", dir.path().to_str().unwrap()], &[]);
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    wait_for_port(admin_addr, &mut child);
    assert!(fetch_path(admin_addr, "/healthz").ends_with("ok\n"));
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());

    let dir = write_config("{ \"global\": {\n  \"admin-addr\": \"everywhere\" } }", &[("site", &site_vhost(port, ""))]);
    let out = Command::new(BIN).args(["-c", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let conf = format!("{}/conf:2:17: \"admin-addr\"", dir.path().display());
    assert!(err.contains(&conf) && err.contains("not an address"), "{err}");
}

fn fetch_path(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn kubernetes_mode_without_a_cluster_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--kubernetes", "-c", dir.path().to_str().unwrap()])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the Kubernetes API"), "{err}");
}

/// `lwsws --check -c dir`, given 10 s at most (it used to read `/dev/zero` for ever): its exit
/// code and what it printed.
fn check_within_10s(dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = common::Running(
        Command::new(BIN)
            .args(["--check", "-c", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    (status.code(), out)
}

#[test]
fn files_the_config_names_must_be_small_regular_files() {
    let pki = common::Pki::new("cli-ca");
    let files = tempfile::tempdir().unwrap();
    let f = files.path().display().to_string();
    pki.leaf(files.path(), "site", &["localhost"], false);
    pki.write_ca(&files.path().join("ca.pem"));
    nix::unistd::mkfifo(&files.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    put(files.path(), "big.crt", vec![b'x'; 1024 * 1024 + 1]);
    put(files.path(), "logins", "u:p\n");
    let tls = |cert: &str, key: &str, extra: &str| {
        format!(
            "{{ \"vhosts\": [{{ \"name\": \"localhost\", \"port\": \"8443\", \"host-ssl-cert\": \"{cert}\",\n  \
             \"host-ssl-key\": \"{key}\", {extra} \"mounts\": [{{ \"mountpoint\": \"/\", \"origin\": \"file:///srv\" }}] }}] }}"
        )
    };
    let (crt, key) = (format!("{f}/site.crt"), format!("{f}/site.key"));
    let cases = [
        (tls("/dev/zero", &key, ""), "1:14", "host-ssl-cert", "/dev/zero is not a regular file (a character device)"),
        (tls(&format!("{f}/fifo"), &key, ""), "1:14", "host-ssl-cert", "fifo is not a regular file (a FIFO)"),
        (tls(&format!("{f}/big.crt"), &key, ""), "1:14", "host-ssl-cert", "big.crt is larger than 1048576 bytes"),
        (tls(&crt, "/dev/zero", ""), "1:14", "host-ssl-key", "/dev/zero is not a regular file"),
        (
            tls(&crt, &key, "\"host-ssl-ca\": \"/dev/zero\", \"client-cert-required\": \"1\","),
            "1:14",
            "host-ssl-ca",
            "/dev/zero is not a regular file",
        ),
        (
            tls(&crt, &key, &format!("\"enable-client-ssl\": \"1\", \"client-ssl-ca\": \"{f}/fifo\","))
                .replace("\"origin\": \"file:///srv\"", "\"origin\": \"https://127.0.0.1:9/\""),
            "1:14",
            "client-ssl-ca",
            "fifo is not a regular file (a FIFO)",
        ),
        (
            tls(&crt, &key, "")
                .replace("\"origin\": \"file:///srv\"", "\"origin\": \"file:///srv\", \"basic-auth\": \"/dev/zero\""),
            "2:59",
            "basic-auth",
            "mount \"/\": /dev/zero is not a regular file",
        ),
        (
            tls(&crt, &key, "\"ws-protocols\": [{ \"lws-echo\": { \"basic-auth\": \"/nonexistent/logins\" } }],"),
            "2:66",
            "basic-auth",
            "protocol \"lws-echo\": cannot read /nonexistent/logins",
        ),
    ];
    for (vhost, loc, key_name, what) in cases {
        let dir = write_config("{}", &[("site", &vhost)]);
        let d = dir.path().display().to_string();
        let started = Instant::now();
        let (code, out) = check_within_10s(dir.path());
        assert_eq!(code, Some(64), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(out.contains(&format!("error: {d}/conf.d/site:{loc}: \"{key_name}\": ")), "{key_name}: {out}");
        assert!(out.contains(what), "{what}: {out}");
    }
    // The same files in order: the config is good.
    let dir = write_config("{}", &[("site", &tls(&crt, &key, &format!("\"host-ssl-ca\": \"{f}/ca.pem\",")))]);
    assert_eq!(check_within_10s(dir.path()).0, Some(0));
    // An ACME certificate on disk that cannot be read is not fatal (ACME will issue one), but
    // it is not waited for either.
    let acme = format!(
        r#"{{ "vhosts": [{{ "name": "example.test", "port": "8443",
             "acme": {{ "email": "a@example.test", "directory-url": "https://ca.test/dir",
                       "challenge": "tls-alpn-01", "cert-path": "{f}/fifo", "key-path": "/dev/zero" }} }}] }}"#
    );
    let dir = write_config("{}", &[("site", &acme)]);
    let (code, out) = check_within_10s(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("fifo is not a regular file (a FIFO); serving TLS once ACME has issued"), "{out}");
}

/// The config's own files and the access log are held to the same rule: a `conf` that is a
/// FIFO fails `--check` at once instead of hanging it, a FIFO in `conf.d/` is not taken for a
/// config file at all (and a config file over 64 MiB is refused when read), and an `access-log`
/// that is a FIFO fails the start (exit 64) instead of waiting for a reader.
#[test]
fn a_fifo_as_a_config_file_or_an_access_log_fails_at_once() {
    let dir = write_config("{}", &[]);
    nix::unistd::mkfifo(&dir.path().join("conf.d").join("site"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (code, out) = check_within_10s(dir.path());
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("no vhosts are defined"), "the FIFO in conf.d is not read: {out}");
    std::fs::remove_file(dir.path().join("conf")).unwrap();
    nix::unistd::mkfifo(&dir.path().join("conf"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (code, out) = check_within_10s(dir.path());
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("conf: cannot open the global config file"), "{out}");

    let logs = tempfile::tempdir().unwrap();
    let log_fifo = logs.path().join("access.log");
    nix::unistd::mkfifo(&log_fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let vhost = format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1", "access-log": "{}",
             "mounts": [{{ "mountpoint": "/", "origin": "file:///srv" }}] }}] }}"#,
        log_fifo.display()
    );
    let dir = write_config("{}", &[("site", &vhost)]);
    let mut child = common::Running(
        Command::new(BIN)
            .args(["-c", dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("\"access-log\"") && err.contains("access.log"), "{err}");
}

#[test]
fn a_file_mount_whose_directory_is_missing_is_a_warning_with_its_location() {
    let dir = write_config(
        "{}",
        &[(
            "site",
            "{ \"vhosts\": [\n  { \"name\": \"x\", \"port\": \"80\",\n    \"mounts\": [{ \"mountpoint\": \"/\", \"origin\": \"file:///nonexistent/www\" }] } ] }",
        )],
    );
    let d = dir.path().display().to_string();
    let (code, out) = check_within_10s(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "{d}/conf.d/site:3:47: the file:// directory /nonexistent/www does not exist: \
             mount \"/\" answers 404 until it is there"
        )),
        "{out}"
    );
}

/// With no `count-threads`, the server runs as many threads as the CPUs it may use: one under
/// `taskset -c 0` (an affinity mask, as a cpuset or a pod's CPU limit of 1 gives), whatever the
/// machine has; a `count-threads` in the config is the user's choice and kept.
#[test]
fn worker_threads_follow_the_cpus_the_process_may_use_unless_set() {
    for (global, want) in [("{}", "threads=1 "), (r#"{ "global": { "count-threads": "3" } }"#, "threads=3 ")] {
        let port = common::free_port();
        let dir = write_config(global, &[("site", &site_vhost(port, ""))]);
        let mut child = common::Running(
            Command::new("taskset")
                .args(["-c", "0", BIN, "-c", dir.path().to_str().unwrap()])
                .env("RUST_LOG", "lwsws=info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("taskset (util-linux)"),
        );
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        use std::io::BufRead;
        let line = stderr.lines().map_while(Result::ok).find(|l| l.contains("worker threads"));
        let line = line.expect("the server logs its worker threads");
        assert!(line.contains(want), "{global}: {line}");
        let by = if global == "{}" { "the CPUs this process may use" } else { "count-threads" };
        assert!(line.contains(by), "{line}");
    }
}
