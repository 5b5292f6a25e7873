//! `cgi://` mounts with real shell scripts: the RFC 3875 environment, stdin and stdout
//! streaming, Status/Location handling, cgi-timeout killing the whole process group, cgi-chdir,
//! and no zombies left behind under concurrent load.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{TestServer, connect, get, put};

fn script(root: &Path, name: &str, body: &str) {
    let p = put(root, name, format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn cgi_site(mount_extra: &str) -> TestServer {
    let v = format!(
        r#"{{ "vhosts": [{{ "name": "cgi.test", "port": "0", "interface": "127.0.0.1",
            "mounts": [{{ "mountpoint": "/cgi", "origin": "cgi://{{DIR}}/bin/run.sh" {mount_extra} }}] }}] }}"#
    );
    TestServer::start("{}", &[&v]).await
}

#[tokio::test]
async fn environment_follows_rfc3875_and_lws() {
    let s = cgi_site(r#", "cgi-env": [{ "APP_MODE": "test" }]"#).await;
    script(s.path(), "bin/run.sh", "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv | sort\n");
    let mut c = connect(s.addr()).await;
    c.send("GET /cgi/extra/path?a=1&b=2 HTTP/1.1\r\nHost: cgi.test\r\nUser-Agent: tester\r\nProxy: http://evil/\r\nCookie: k=v\r\n\r\n").await;
    // CGI output has no length: read to the end of the chunked body.
    let r = read_chunked(&mut c).await;
    for want in [
        "GATEWAY_INTERFACE=CGI/1.1",
        "REQUEST_METHOD=GET",
        "QUERY_STRING=a=1&b=2",
        "PATH_INFO=/extra/path",
        "REQUEST_URI=/cgi/extra/path",
        "SCRIPT_NAME=/cgi",
        "HTTP_HOST=cgi.test",
        "HTTP_USER_AGENT=tester",
        "HTTP_COOKIE=k=v",
        "SERVER_SOFTWARE=lws",
        "REMOTE_ADDR=127.0.0.1",
        "APP_MODE=test",
        "PATH=/bin:/usr/bin:/usr/local/bin:/var/www/cgi-bin",
    ] {
        assert!(r.contains(&format!("{want}\n")), "missing {want} in:\n{r}");
    }
    assert!(!r.contains("HTTP_PROXY"), "httpoxy: a Proxy header must not become HTTP_PROXY");
    // REQUEST_URI is the path alone, decoded and normalised as lws keeps it; the query is in
    // QUERY_STRING only.
    let mut c = connect(s.addr()).await;
    c.send("GET /cgi/a/../caf%C3%A9?q=%2F HTTP/1.1\r\nHost: cgi.test\r\n\r\n").await;
    let r = read_chunked(&mut c).await;
    assert!(r.contains("REQUEST_URI=/cgi/café\n"), "{r}");
    assert!(r.contains("PATH_INFO=/café\n") && r.contains("QUERY_STRING=q=%2F\n"), "{r}");
    assert!(!r.contains("HTTPS="), "not TLS");
    // The exact mountpoint runs the script: no trailing-slash redirect for cgi (spec 2.3).
    let r = get(s.addr(), "/cgi", "").await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

/// Reads one chunked response and returns its body as text.
async fn read_chunked(c: &mut common::Conn<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.s.read(&mut buf)).await.unwrap().unwrap();
        all.extend_from_slice(&buf[..n]);
        if n == 0 || all.ends_with(b"\r\n0\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

#[tokio::test]
async fn request_bodies_stream_to_stdin() {
    let s = cgi_site("").await;
    script(s.path(), "bin/run.sh", "printf 'Content-Type: text/plain\\n\\n'\nwc -c | tr -d ' '\n");
    let body = vec![b'x'; 2_000_000];
    let r = reqwest::Client::new().post(format!("http://{}/cgi", s.addr())).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), "2000000");
    s.stop().await;
}

#[tokio::test]
async fn status_and_location_headers() {
    let s = cgi_site("").await;
    script(
        s.path(),
        "bin/run.sh",
        "case \"$QUERY_STRING\" in\n  missing) printf 'Status: 404 Not Found\\nContent-Type: text/plain\\nX-App: 1\\n\\nnope' ;;\n  go) printf 'Location: /elsewhere\\n\\n' ;;\n  bad) printf 'this is not a header\\n\\n' ;;\nesac\n",
    );
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client.get(format!("http://{}/cgi?missing", s.addr())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-app"], "1");
    assert_eq!(r.text().await.unwrap(), "nope");
    let r = client.get(format!("http://{}/cgi?go", s.addr())).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/elsewhere");
    let r = client.get(format!("http://{}/cgi?bad", s.addr())).send().await.unwrap();
    assert_eq!(r.status(), 500, "a script that prints no header block is a server error");
    s.stop().await;
}

#[tokio::test]
async fn cgi_timeout_kills_the_process_group_and_cgi_chdir_applies() {
    let marker = format!("lwsws-cgi-test-{}", std::process::id());
    let s = cgi_site(r#", "cgi-timeout": "1", "cgi-chdir": "{DIR}/work""#).await;
    std::fs::create_dir_all(s.path().join("work")).unwrap();
    script(
        s.path(),
        "bin/run.sh",
        &format!(
            "if [ \"$QUERY_STRING\" = pwd ]; then printf 'Content-Type: text/plain\\n\\n'; pwd; exit 0; fi\n\
             sh -c 'exec sleep 300 {marker}' &\nexec sleep 301\n"
        ),
    );
    let text = reqwest::get(format!("http://{}/cgi?pwd", s.addr())).await.unwrap().text().await.unwrap();
    let want = s.path().join("work").canonicalize().unwrap();
    assert_eq!(text.trim(), want.to_str().unwrap());
    // The script sleeps 301 s: an answer at all within the 30 s guard means it was cut at the
    // 1 s cgi-timeout (no bound tighter than that: a loaded machine may be slow).
    let r = tokio::time::timeout(Duration::from_secs(30), get(s.addr(), "/cgi?hang", ""))
        .await
        .expect("the hanging script was not cut at its cgi-timeout");
    assert_eq!(r.status, 504);
    // Killing the group is asynchronous: wait for the background child to be gone.
    let left = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .filter(|c| c.contains(&marker))
            .collect()
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !left().is_empty() {
        assert!(std::time::Instant::now() < until, "the script's background child survived: {:?}", left());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn no_zombies_under_concurrent_load() {
    let s = cgi_site("").await;
    script(s.path(), "bin/run.sh", "printf 'Content-Type: text/plain\\n\\nok'\n");
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let c = client.clone();
        let url = format!("http://{}/cgi", s.addr());
        tasks.push(tokio::spawn(async move { c.get(url).send().await.unwrap().text().await.unwrap() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "ok");
    }
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(m.contains(r#"lwsws_cgi_runs_total{vhost="cgi.test",mount="/cgi",result="answered"} 60"#), "{m}");
    // Every script answered; reaping the last ones may lag: wait for no zombie child of ours.
    let me = std::process::id().to_string();
    let zombies = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // pid (comm) state ppid ...
                let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
                let mut f = after.split_whitespace();
                f.next() == Some("Z") && f.next() == Some(me.as_str())
            })
            .count()
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while zombies() > 0 {
        assert!(std::time::Instant::now() < until, "{} zombie children left after 30 s", zombies());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_script_killed_mid_stream_cuts_the_response_and_a_lingering_child_is_killed_too() {
    let s = cgi_site(r#", "cgi-timeout": "1""#).await;
    script(
        s.path(),
        "bin/run.sh",
        "printf 'Content-Type: text/plain\\n\\n'\n\
         if [ \"$QUERY_STRING\" = linger ]; then echo started; sleep 300 & exit 0; fi\n\
         while true; do echo tick; sleep 0.1; done\n",
    );
    let client = reqwest::Client::new();
    for q in ["stream", "linger"] {
        let r = client.get(format!("http://{}/cgi?{q}", s.addr())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // The script never ends by itself (a loop, or a child holding stdout for 300 s): an
        // end within the 30 s guard is the 1 s cgi-timeout cutting it.
        let body = tokio::time::timeout(Duration::from_secs(30), r.text())
            .await
            .unwrap_or_else(|_| panic!("{q}: not cut at the cgi-timeout"));
        assert!(body.is_err(), "{q}: a killed script's output must not look complete");
    }
    s.stop().await;
}
