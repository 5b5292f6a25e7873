//! The ACME manager without a CA (the directory URL is a closed port): a certificate that is stored and valid is served and no order
//! is made; when renewal falls due and the store already holds a newer certificate (another
//! replica renewed, or an operator put one there), that one is taken and the CA is not asked.
//! The directory URL points at a closed port, so any order would show as a failure.

mod common;

use std::time::{Duration, Instant};

use common::{Pki, TestServer};

fn write_pair(pki: &Pki, dir: &std::path::Path, lifetime_secs: i64) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let now = time_now();
    params.not_before = now - time::Duration::seconds(2);
    params.not_after = now + time::Duration::seconds(lifetime_secs);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.ca_issuer).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    cert.der().to_vec()
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn served(addr: std::net::SocketAddr, pki: &Pki) -> Option<Vec<u8>> {
    let c = common::tls_connect(addr, "localhost", pki.roots(), None, &["http/1.1"]).await.ok()?;
    let (_, session) = c.s.get_ref();
    Some(session.peer_certificates()?[0].to_vec())
}

/// An ACME vhost whose certificate, key and account live in `state`, with a CA that cannot be
/// reached.
fn stored_acme_vhost(state: &std::path::Path) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1",
            "acme": {{ "email": "a@example.test", "directory-url": "https://127.0.0.1:1/dir",
                       "cert-path": "{0}/cert.pem", "key-path": "{0}/key.pem", "auth-path": "{0}/account.json" }},
            "mounts": [{{ "mountpoint": "/", "origin": "file://{0}" }}] }}] }}"#,
        state.display()
    )
}

#[tokio::test]
async fn a_newer_stored_certificate_is_taken_instead_of_ordering() {
    let pki = Pki::new("acme renewal test ca");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // 10 s in all: renewal falls due with a third left, about 4.7 s from now.
    let short = write_pair(&pki, &state, 8);
    let s = TestServer::start("{}", &[&stored_acme_vhost(&state)]).await;
    assert_eq!(served(s.addr(), &pki).await.as_deref(), Some(&short[..]), "the stored certificate is served");

    let long = write_pair(&pki, &state, 3600);
    let until = Instant::now() + Duration::from_secs(15);
    while served(s.addr(), &pki).await.as_deref() != Some(&long[..]) {
        assert!(Instant::now() < until, "the newer stored certificate was not taken");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = s.server.as_ref().unwrap().metrics().render();
    assert!(!m.contains("lwsws_acme_orders_total{"), "no order was made: {m}");
    s.stop().await;
}

/// A reload that removes a vhost's `acme` stops its manager: with the CA unreachable, the
/// failed attempts stop growing once the ACME settings are gone; bringing them back starts a
/// manager again.
#[tokio::test]
async fn a_reload_stops_and_starts_acme_managers() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let acme = format!(
        r#", "acme": {{ "email": "a@example.test", "directory-url": "https://127.0.0.1:1/dir",
             "cert-path": "{0}/cert.pem", "key-path": "{0}/key.pem", "auth-path": "{0}/account.json" }}"#,
        state.display()
    );
    let vhost = |extra: &str| {
        format!(
            r#"{{ "vhosts": [{{ "name": "localhost", "port": "0", "interface": "127.0.0.1" {extra},
                "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
            dir.path().display()
        )
    };
    let mut s = TestServer::start("{}", &[&vhost(&acme)]).await;
    let failures = |s: &TestServer| {
        let m = s.server.as_ref().unwrap().metrics().render();
        let line = r#"lwsws_acme_orders_total{vhost="localhost",kind="issue",result="failure"} "#;
        m.lines().find_map(|l| l.strip_prefix(line)).map(|v| v.parse::<u64>().unwrap()).unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(10);
    while failures(&s) < 1 {
        assert!(Instant::now() < until, "the manager did not try");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let conf_d = s.dir.path().join("conf.d/v00");
    std::fs::write(&conf_d, vhost("")).unwrap();
    let plain = lwsws::lwsws::load(s.dir.path(), "/usr/share").unwrap().config;
    s.server.as_mut().unwrap().reload(&plain, &mut Vec::new()).await.unwrap();
    let after_stop = failures(&s);
    // Backoff is 2 s, then 4 s: a running manager would have tried again within 7 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(failures(&s), after_stop, "the removed vhost's manager stopped");

    std::fs::write(&conf_d, vhost(&acme)).unwrap();
    let again = lwsws::lwsws::load(s.dir.path(), "/usr/share").unwrap().config;
    s.server.as_mut().unwrap().reload(&again, &mut Vec::new()).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while failures(&s) <= after_stop {
        assert!(Instant::now() < until, "a manager did not start again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// `--check` has no side effects: compiling a config for a check touches nothing outside what it
/// returns. Here a check runs in the same process as a server whose ACME certificate was
/// replaced on disk by one that lasts longer; serving that one is the server's own business (at
/// its next reload or renewal), so the check must leave the served certificate as it was. When
/// certificate slots were process-wide, the check's compile put the new certificate in the
/// server's slot.
#[tokio::test]
async fn a_check_in_the_same_process_changes_nothing_served() {
    let pki = Pki::new("acme check test ca");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = write_pair(&pki, &state, 3600);
    let s = TestServer::start("{}", &[&stored_acme_vhost(&state)]).await;
    assert_eq!(served(s.addr(), &pki).await.as_deref(), Some(&first[..]));

    let longer = write_pair(&pki, &state, 7200);
    let checked = lwsws::check::check(s.path(), "/usr/share");
    assert_eq!(checked.code, 0, "{}", checked.text);
    assert_eq!(served(s.addr(), &pki).await.as_deref(), Some(&first[..]), "the check changed what is served");

    // The server itself takes the longer-lasting certificate at its next reload.
    let mut s = s;
    let loaded = lwsws::lwsws::load(s.path(), "/usr/share").unwrap();
    s.server.as_mut().unwrap().apply(Ok(loaded), "test").await.unwrap();
    assert_eq!(served(s.addr(), &pki).await.as_deref(), Some(&longer[..]), "a reload serves the newer certificate");
    s.stop().await;
}
