//! TLS over real sockets: vhosts chosen by SNI on one port, client certificates (mTLS), HTTP/2
//! by ALPN, and the Host-vs-SNI guard. Certificates are made with rcgen.

mod common;

use common::{Pki, TestServer, put, tls_connect};

fn tls_vhost(name: &str, extra: &str) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "{name}", "port": "0", "interface": "127.0.0.1",
            "host-ssl-cert": "{{DIR}}/{name}.crt", "host-ssl-key": "{{DIR}}/{name}.key", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{{DIR}}/{name}-www" }}] }}] }}"#
    )
}

/// Two vhosts sharing one TLS port: both in one conf.d file so they share the listener.
fn two_vhosts(extra_b: &str) -> String {
    r#"{ "vhosts": [
        { "name": "a.test", "port": "0", "interface": "127.0.0.1",
          "host-ssl-cert": "{DIR}/a.test.crt", "host-ssl-key": "{DIR}/a.test.key",
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/a.test-www" }] },
        { "name": "b.test", "port": "0", "interface": "127.0.0.1",
          "host-ssl-cert": "{DIR}/b.test.crt", "host-ssl-key": "{DIR}/b.test.key", EXTRA_B
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/b.test-www" }] } ] }"#
        .replace("EXTRA_B", extra_b)
}

/// Certificates must exist before the server starts, so write them into a prepared dir.
async fn start_with_certs(pki: &Pki, names: &[&str], global: &str, vhosts: &[&str], client_ca: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for n in names {
        pki.leaf(dir.path(), n, &[n], false);
        put(dir.path(), &format!("{n}-www/index.html"), format!("site {n}"));
    }
    if client_ca {
        pki.write_ca(&dir.path().join("client-ca.pem"));
    }
    std::fs::write(dir.path().join("conf"), global).unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    for (i, v) in vhosts.iter().enumerate() {
        std::fs::write(dir.path().join(format!("conf.d/v{i}")), v.replace("{DIR}", &d)).unwrap();
    }
    TestServer::start_dir(dir).await
}

#[tokio::test]
async fn sni_chooses_between_two_vhosts_on_one_port() {
    let pki = Pki::new("test ca");
    let s = start_with_certs(&pki, &["a.test", "b.test"], "{}", &[&two_vhosts("")], false).await;
    assert_eq!(s.addrs.len(), 1, "one shared socket");
    let m = s.server.as_ref().unwrap().metrics().render();
    for name in ["a.test", "b.test"] {
        let line = format!("lwsws_tls_certificate_expiry_timestamp_seconds{{vhost=\"{name}\"}} ");
        let at: i64 =
            m.lines().find_map(|l| l.strip_prefix(&line)).unwrap_or_else(|| panic!("{line} in {m}")).parse().unwrap();
        assert!(at > chrono::Utc::now().timestamp(), "the test certificates are valid now");
    }
    for name in ["a.test", "b.test"] {
        let mut c = tls_connect(s.addr(), name, pki.roots(), None, &["http/1.1"]).await.unwrap();
        c.send(&format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n")).await;
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.text(), format!("site {name}"));
        // The certificate presented was the vhost's own: the handshake verified `name`.
        let (_, session) = c.s.get_ref();
        let cert = &session.peer_certificates().unwrap()[0];
        assert!(String::from_utf8_lossy(cert.as_ref()).contains(name));
    }
    // Unknown SNI falls back to the first vhost's certificate, which does not verify for it.
    assert!(tls_connect(s.addr(), "c.test", pki.roots(), None, &[]).await.is_err());
    s.stop().await;
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let pki = Pki::new("test ca");
    let s = start_with_certs(&pki, &["a.test"], "{}", &[&tls_vhost("a.test", "")], false).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(pki.ca_cert.der()).unwrap()])
        .resolve("a.test", s.addr())
        .build()
        .unwrap();
    let r = client.get(format!("https://a.test:{}/", s.addr().port())).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "site a.test");
    s.stop().await;
}

#[tokio::test]
async fn client_certificate_accepted_and_refused() {
    let pki = Pki::new("client ca");
    let extra = r#""host-ssl-ca": "{DIR}/client-ca.pem", "client-cert-required": "1","#;
    let s = start_with_certs(&pki, &["m.test"], "{}", &[&tls_vhost("m.test", extra)], true).await;
    let good_dir = tempfile::tempdir().unwrap();
    pki.leaf(good_dir.path(), "client", &["client.test"], true);
    let rogue = Pki::new("rogue ca");
    rogue.leaf(good_dir.path(), "rogue", &["rogue.test"], true);
    let d = good_dir.path();

    let mut ok =
        tls_connect(s.addr(), "m.test", pki.roots(), Some((&d.join("client.crt"), &d.join("client.key"))), &[])
            .await
            .expect("a client cert from the CA is accepted");
    ok.send("GET / HTTP/1.1\r\nHost: m.test\r\n\r\n").await;
    assert_eq!(ok.read_response(false).await.unwrap().text(), "site m.test");

    for client in [None, Some((d.join("rogue.crt"), d.join("rogue.key")))] {
        let refused = match tls_connect(
            s.addr(),
            "m.test",
            pki.roots(),
            client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            &[],
        )
        .await
        {
            Err(_) => true,
            Ok(mut c) => {
                c.send("GET / HTTP/1.1\r\nHost: m.test\r\n\r\n").await;
                c.read_response(false).await.is_none()
            }
        };
        assert!(refused, "a missing or foreign client cert is refused");
    }
    s.stop().await;
}

#[tokio::test]
async fn host_naming_an_mtls_vhost_over_an_open_handshake_is_misdirected() {
    let pki = Pki::new("ca");
    let extra = r#""host-ssl-ca": "{DIR}/client-ca.pem", "client-cert-required": "1","#;
    let s = start_with_certs(&pki, &["a.test", "b.test"], "{}", &[&two_vhosts(extra)], true).await;
    let mut c = tls_connect(s.addr(), "a.test", pki.roots(), None, &[]).await.unwrap();
    c.send("GET / HTTP/1.1\r\nHost: b.test\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 421);
    s.stop().await;
}

#[tokio::test]
async fn tls13_only_by_ssl_option_and_cipher_warnings() {
    let pki = Pki::new("ca");
    let extra =
        r#""ssl-option-set": "134217728", "ciphers": "ECDHE-RSA-AES256-SHA384:HIGH", "ecdh-curve": "prime256v1","#;
    let s = start_with_certs(&pki, &["a.test"], "{}", &[&tls_vhost("a.test", extra)], false).await;
    assert!(s.warnings.iter().any(|w| w.msg.contains("ECDHE-RSA-AES256-SHA384")), "{:?}", s.warnings);
    let c = tls_connect(s.addr(), "a.test", pki.roots(), None, &[]).await.unwrap();
    assert_eq!(c.s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    // A TLS 1.2-only client cannot connect.
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("a.test").unwrap(), tcp)
        .await;
    assert!(r.is_err());
    s.stop().await;
}

#[tokio::test]
async fn idle_tls_connection_parks_and_resumes() {
    let pki = Pki::new("ca");
    let s = start_with_certs(&pki, &["a.test"], "{}", &[&tls_vhost("a.test", r#""keepalive_timeout": "10","#)], false)
        .await;
    let mut c = tls_connect(s.addr(), "a.test", pki.roots(), None, &["http/1.1"]).await.unwrap();
    for _ in 0..3 {
        c.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
        assert_eq!(c.read_response(false).await.unwrap().text(), "site a.test");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_client_cert_for_one_mtls_vhost_does_not_open_another() {
    let pki_a = Pki::new("ca a");
    let pki_b = Pki::new("ca b");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for n in ["a.test", "b.test"] {
        pki_a.leaf(dir.path(), n, &[n], false);
        put(dir.path(), &format!("{n}-www/index.html"), format!("site {n}"));
    }
    pki_a.write_ca(&dir.path().join("ca-a.pem"));
    pki_b.write_ca(&dir.path().join("ca-b.pem"));
    pki_a.leaf(dir.path(), "client-a", &["client.test"], true);
    let v = r#"{ "vhosts": [
        { "name": "a.test", "port": "0", "interface": "127.0.0.1",
          "host-ssl-cert": "{DIR}/a.test.crt", "host-ssl-key": "{DIR}/a.test.key",
          "host-ssl-ca": "{DIR}/ca-a.pem", "client-cert-required": "1",
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/a.test-www" }] },
        { "name": "b.test", "port": "0", "interface": "127.0.0.1",
          "host-ssl-cert": "{DIR}/b.test.crt", "host-ssl-key": "{DIR}/b.test.key",
          "host-ssl-ca": "{DIR}/ca-b.pem", "client-cert-required": "1",
          "mounts": [{ "mountpoint": "/", "origin": "file://{DIR}/b.test-www" }] } ] }"#
        .replace("{DIR}", &d);
    std::fs::write(dir.path().join("conf"), "{}").unwrap();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/v"), v).unwrap();
    let s = TestServer::start_dir(dir).await;
    let p = s.path().to_path_buf();
    let client = Some((p.join("client-a.crt"), p.join("client-a.key")));
    let client = client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let mut c = tls_connect(s.addr(), "a.test", pki_a.roots(), client, &[]).await.unwrap();
    c.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().text(), "site a.test");
    c.send("GET / HTTP/1.1\r\nHost: b.test\r\n\r\n").await;
    assert_eq!(c.read_response(false).await.unwrap().status, 421);
    s.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_picked_up_by_a_reload_without_a_config_change() {
    let pki = Pki::new("ca");
    let mut s = start_with_certs(&pki, &["a.test"], "{}", &[&tls_vhost("a.test", "")], false).await;
    let leaf_der = |c: &common::Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>| {
        c.s.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    let before = leaf_der(&tls_connect(s.addr(), "a.test", pki.roots(), None, &[]).await.unwrap());
    let config = lwsws::lwsws::load(s.path(), "/usr/share").unwrap().config;
    let server = s.server.as_mut().unwrap();
    assert_eq!(server.reload(&config, &mut Vec::new()).await.unwrap(), lwsws::app::Reloaded::Unchanged);
    // The renewed files get an mtime a minute past the old one, set explicitly: a rewrite in
    // the same clock tick (coarse file system timestamps) must not look unchanged.
    let later = |name: &str| {
        let p = s.dir.path().join(name);
        let old = std::fs::metadata(&p).unwrap().modified().unwrap();
        (p, old + std::time::Duration::from_secs(60))
    };
    let stamps = [later("a.test.crt"), later("a.test.key")];
    pki.leaf(s.dir.path(), "a.test", &["a.test"], false);
    for (p, t) in &stamps {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(*t).unwrap();
    }
    let server = s.server.as_mut().unwrap();
    assert!(server.certificates_changed());
    assert!(matches!(server.reload(&config, &mut Vec::new()).await.unwrap(), lwsws::app::Reloaded::Applied { .. }));
    let after = leaf_der(&tls_connect(s.addr(), "a.test", pki.roots(), None, &[]).await.unwrap());
    assert_ne!(before, after, "new connections get the renewed certificate");
    s.stop().await;
}
