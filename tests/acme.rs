//! ACME against a real CA: Debian's Pebble, started by each test on loopback ports of its own,
//! with its validation ports pointed at the server under test. Pebble's default 5 % badNonce
//! rejection stays on in every test; `PEBBLE_VA_ALWAYS_VALID` is never set, so every
//! challenge is really validated. Pebble is not a Rust program: these tests are `#[ignore]`d
//! under plain `cargo test` and run by `scripts/test-all.sh`, which installs Pebble; run there,
//! a missing Pebble fails them.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

use common::pebble::Pebble;

/// A config with a plain vhost on `plain` (where http-01 is answered) and an ACME vhost for
/// `localhost` on `tls`.
fn acme_config(plain: Option<u16>, tls: u16, acme: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(p) = plain {
        v.push(format!(
            r#"{{ "vhosts": [{{ "name": "plain", "port": "{p}",
                "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}] }}] }}"#
        ));
    }
    v.push(format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{tls}", "acme": {{ {acme} }},
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/www" }}] }}] }}"#
    ));
    v
}

fn acme_keys(pebble: &Pebble, extra: &str) -> String {
    format!(
        r#""email": "admin@example.test", "directory-url": "{}", "ca-file": "{}",
           "cert-path": "{{DIR}}/state/cert.pem", "key-path": "{{DIR}}/state/key.pem",
           "auth-path": "{{DIR}}/state/account.json" {extra}"#,
        pebble.directory(),
        pebble.ca_pem().display()
    )
}

/// The certificate served for `localhost` on `port`, once it verifies against `roots`.
async fn served_cert(port: u16, roots: &rustls::RootCertStore, within: Duration) -> Vec<u8> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let until = Instant::now() + within;
    loop {
        if let Ok(mut c) = common::tls_connect(addr, "localhost", roots.clone(), None, &["http/1.1"]).await {
            c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
            if let Some(r) = c.read_response(false).await {
                assert_eq!(r.text(), "hello over acme");
                let (_, session) = c.s.get_ref();
                return session.peer_certificates().unwrap()[0].to_vec();
            }
        }
        assert!(Instant::now() < until, "no verifiable certificate on port {port} in {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric(s: &TestServer, line_prefix: &str) -> f64 {
    let m = s.server.as_ref().unwrap().metrics().render();
    m.lines().find_map(|l| l.strip_prefix(line_prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0.0)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn http01_issues_a_certificate_that_chains_to_pebbles_root() {
    let (plain, tls) = (common::free_port(), common::free_port());
    let pebble = Pebble::start(plain, tls, None);
    let files = acme_config(Some(plain), tls, &acme_keys(&pebble, ""));
    let s = TestServer::start("{}", &files.iter().map(String::as_str).collect::<Vec<_>>()).await;
    common::put(s.path(), "www/index.html", "hello over acme");
    let roots = pebble.issuing_root().await;
    let der = served_cert(tls, &roots, Duration::from_secs(60)).await;
    assert_eq!(crate_names(&der), vec!["localhost".to_string()]);
    let state = s.path().join("state");
    for f in ["cert.pem", "key.pem", "account.json"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(metric(&s, r#"lwsws_acme_orders_total{vhost="localhost",kind="issue",result="success"} "#), 1.0);
    let expiry = metric(&s, r#"lwsws_tls_certificate_expiry_timestamp_seconds{vhost="localhost"} "#);
    assert!(expiry > chrono::Utc::now().timestamp() as f64, "expiry {expiry}");
    s.stop().await;
}

#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn tls_alpn01_is_answered_on_the_tls_port_itself() {
    let tls = common::free_port();
    // No plain listener at all: http-01 could not succeed.
    let pebble = Pebble::start(common::free_port(), tls, None);
    let files = acme_config(None, tls, &acme_keys(&pebble, r#", "challenge": "tls-alpn-01""#));
    let s = TestServer::start("{}", &files.iter().map(String::as_str).collect::<Vec<_>>()).await;
    common::put(s.path(), "www/index.html", "hello over acme");
    let roots = pebble.issuing_root().await;
    served_cert(tls, &roots, Duration::from_secs(60)).await;
    assert_eq!(metric(&s, r#"lwsws_acme_orders_total{vhost="localhost",kind="issue",result="success"} "#), 1.0);
    s.stop().await;
}

#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn a_short_lived_certificate_is_renewed_in_place() {
    let (plain, tls) = (common::free_port(), common::free_port());
    // 45 s certificates: renewal is due 30 s after issuance, with room for a slow machine.
    let pebble = Pebble::start(plain, tls, Some(45));
    let files = acme_config(Some(plain), tls, &acme_keys(&pebble, ""));
    let s = TestServer::start("{}", &files.iter().map(String::as_str).collect::<Vec<_>>()).await;
    common::put(s.path(), "www/index.html", "hello over acme");
    let roots = pebble.issuing_root().await;
    let first = served_cert(tls, &roots, Duration::from_secs(60)).await;
    let until = Instant::now() + Duration::from_secs(90);
    let renewed = loop {
        let now = served_cert(tls, &roots, Duration::from_secs(10)).await;
        if now != first {
            break now;
        }
        assert!(Instant::now() < until, "the certificate was not renewed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(renewed, first);
    assert!(metric(&s, r#"lwsws_acme_orders_total{vhost="localhost",kind="renew",result="success"} "#) >= 1.0);
    let stored = std::fs::read_to_string(s.path().join("state/cert.pem")).unwrap();
    assert!(stored.contains(&pem_body(&renewed)), "the renewed certificate is the one stored");
    s.stop().await;
}

#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn a_ca_down_at_startup_is_retried_until_it_is_back() {
    let (plain, tls, listen, mgmt) =
        (common::free_port(), common::free_port(), common::free_port(), common::free_port());
    let directory = format!("https://127.0.0.1:{listen}/dir");
    // Pebble's listener certificate is made when it starts: the CA file appears with it.
    let keys = format!(
        r#""email": "admin@example.test", "directory-url": "{directory}", "ca-file": "{{DIR}}/pebble-ca.pem",
           "cert-path": "{{DIR}}/state/cert.pem", "key-path": "{{DIR}}/state/key.pem",
           "auth-path": "{{DIR}}/state/account.json""#
    );
    let files = acme_config(Some(plain), tls, &keys);
    let s = TestServer::start("{}", &files.iter().map(String::as_str).collect::<Vec<_>>()).await;
    common::put(s.path(), "www/index.html", "hello over acme");
    let until = Instant::now() + Duration::from_secs(20);
    while metric(&s, r#"lwsws_acme_orders_total{vhost="localhost",kind="issue",result="failure"} "#) < 1.0 {
        assert!(Instant::now() < until, "no failed attempt recorded while the CA was down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pebble = Pebble::start_on(listen, mgmt, plain, tls, None);
    std::fs::copy(pebble.ca_pem(), s.path().join("pebble-ca.pem")).unwrap();
    let roots = pebble.issuing_root().await;
    served_cert(tls, &roots, Duration::from_secs(90)).await;
    assert_eq!(metric(&s, r#"lwsws_acme_orders_total{vhost="localhost",kind="issue",result="success"} "#), 1.0);
    s.stop().await;
}

/// The restart test runs the real binary twice; the CA is trusted through `SSL_CERT_FILE`.
#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn a_restart_reuses_the_stored_certificate_without_asking_the_ca() {
    let (plain, tls, admin) = (common::free_port(), common::free_port(), common::free_port());
    let pebble = Pebble::start(plain, tls, None);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let keys = format!(
        r#""email": "admin@example.test", "directory-url": "{}",
           "cert-path": "{d}/state/cert.pem", "key-path": "{d}/state/key.pem", "auth-path": "{d}/state/account.json""#,
        pebble.directory()
    );
    std::fs::write(dir.path().join("conf"), format!(r#"{{ "global": {{ "admin-addr": "127.0.0.1:{admin}" }} }}"#))
        .unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    for (i, f) in acme_config(Some(plain), tls, &keys).iter().enumerate() {
        std::fs::write(dir.path().join(format!("conf.d/v{i}")), f.replace("{DIR}", &d)).unwrap();
    }
    common::put(dir.path(), "www/index.html", "hello over acme");
    let ca = dir.path().join("pebble-ca.pem");
    let spawn = || {
        let child = Command::new(env!("CARGO_BIN_EXE_lwsws"))
            .args(["-c", &d])
            .env("SSL_CERT_FILE", &ca)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::Running(child)
    };
    let stop = |c: common::Running| assert!(c.terminate().success());
    let roots = pebble.issuing_root().await;
    std::fs::copy(pebble.ca_pem(), &ca).unwrap();
    let first_run = spawn();
    let issued = served_cert(tls, &roots, Duration::from_secs(60)).await;
    stop(first_run);
    drop(pebble);

    // The CA is gone now: a second run that asked it anything would record a failure.
    let second_run = spawn();
    let again = served_cert(tls, &roots, Duration::from_secs(10)).await;
    assert_eq!(again, issued, "the stored certificate is served");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = common::get(format!("127.0.0.1:{admin}").parse().unwrap(), "/metrics", "").await.text();
    assert!(!metrics.contains("lwsws_acme_orders_total{"), "no order was attempted: {metrics}");
    assert!(metrics.contains("lwsws_tls_certificate_expiry_timestamp_seconds{vhost=\"localhost\"}"), "{metrics}");
    stop(second_run);
}

fn crate_names(der: &[u8]) -> Vec<String> {
    lwsws::tls::expiry::dns_names(der)
}

fn pem_body(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64[..64].to_string()
}
