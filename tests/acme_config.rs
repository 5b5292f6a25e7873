//! The two ways to ask for an ACME certificate (the lws-acme-client pvos and the short
//! `"acme"` object) read into the same model, and the mistakes in them that are refused.

mod common;

use std::path::PathBuf;

use lwsws::model::acme::Challenge;

fn load(vhost: &str) -> Result<lwsws::model::Vhost, String> {
    let dir = common::write_config("{}", &[("site", vhost)]);
    match lwsws::lwsws::load(dir.path(), "/usr/share") {
        Ok(l) => Ok(l.config.vhosts.into_iter().next().unwrap()),
        Err(e) => Err(e.to_string().replace(&dir.path().display().to_string(), "DIR")),
    }
}

#[test]
fn the_short_form_needs_an_email_and_a_directory() {
    let v = load(
        r#"{ "vhosts": [{ "name": "example.test", "port": "443",
             "acme": { "email": "a@example.test", "directory-url": "https://ca.test/dir" } }] }"#,
    )
    .unwrap();
    let a = v.acme.as_ref().unwrap();
    assert_eq!(a.domains, vec!["example.test"]);
    assert_eq!(a.challenge, Challenge::Http01);
    assert!(a.cert_path.ends_with("acme/example.test/cert.pem"), "{}", a.cert_path.display());
    assert!(a.account_path.ends_with("acme/example.test/account.json"));
    assert!(v.is_tls() && v.ignore_missing_cert, "an ACME vhost serves TLS before it has a certificate");
    assert_eq!(v.host_ssl_cert.as_ref(), Some(&a.cert_path));

    let v = load(
        r#"{ "vhosts": [{ "name": "example.test", "port": "443",
             "acme": { "email": "a@example.test", "directory-url": "https://ca.test/dir",
                       "challenge": "tls-alpn-01", "domains": "www.example.test, example.test",
                       "cert-path": "/x/c.pem", "key-path": "/x/k.pem", "ca-file": "/x/ca.pem" } }] }"#,
    )
    .unwrap();
    let a = v.acme.unwrap();
    assert_eq!(a.challenge, Challenge::TlsAlpn01);
    assert_eq!(a.domains, vec!["example.test", "www.example.test"]);
    assert_eq!(a.cert_path, PathBuf::from("/x/c.pem"));
    assert_eq!(a.ca_file, Some(PathBuf::from("/x/ca.pem")));
}

#[test]
fn lws_acme_client_pvos_read_into_the_same_model() {
    let v = load(
        r#"{ "vhosts": [{ "name": "home.example.test", "port": "443",
             "host-ssl-cert": "/etc/lwsws/acme/home.crt", "host-ssl-key": "/etc/lwsws/acme/home.key",
             "ignore-missing-cert": "1",
             "ws-protocols": [{ "lws-acme-client": {
                 "common-name": "home.example.test", "email": "a@example.test",
                 "directory-url": "https://acme-staging-v02.api.letsencrypt.org/directory",
                 "auth-path": "/etc/lwsws/acme/auth.jwk", "cert-path": "/etc/lwsws/acme/home.crt",
                 "key-path": "/etc/lwsws/acme/home.key", "subject-alt-name": "www.example.test" } }] }] }"#,
    )
    .unwrap();
    let a = v.acme.unwrap();
    assert_eq!(a.domains, vec!["home.example.test", "www.example.test"]);
    assert_eq!(a.account_path, PathBuf::from("/etc/lwsws/acme/auth.jwk"));
    assert_eq!(a.key_path, PathBuf::from("/etc/lwsws/acme/home.key"));
    assert_eq!(a.challenge, Challenge::Http01);
}

#[test]
fn mistakes_are_refused_with_their_location() {
    let cases = [
        (
            r#"{ "vhosts": [{ "name": "e", "port": "443",
  "acme": { "directory-url": "https://ca.test/dir" } }] }"#,
            "DIR/conf.d/site:2:11: \"acme\": vhost \"e\": \"acme\" needs \"email\"",
        ),
        (
            r#"{ "vhosts": [{ "name": "e", "port": "443",
  "acme": { "email": "a@e", "directory-url": "http://ca.test/dir" } }] }"#,
            "must be https://",
        ),
        (
            r#"{ "vhosts": [{ "name": "e", "port": "443",
  "acme": { "email": "a@e", "directory-url": "https://ca.test/dir", "challenge": "dns-01" } }] }"#,
            "DIR/conf.d/site:2:82: \"challenge\": \"dns-01\" is not http-01 or tls-alpn-01",
        ),
        (r#"{ "vhosts": [{ "name": "e", "port": "443", "acme": "yes" }] }"#, "\"acme\": expected an object"),
    ];
    for (text, want) in cases {
        let err = load(text).unwrap_err();
        assert!(err.contains(want), "{err}\n  wanted: {want}");
    }
}

#[test]
fn acme_vhosts_may_not_share_files_or_names_and_need_their_ca_over_https() {
    let two = |a: &str, b: &str| {
        format!(
            r#"{{ "vhosts": [
                {{ "name": "a.test", "port": "443", "acme": {{ "email": "x@a.test", "directory-url": "https://ca.test/dir" {a} }} }},
                {{ "name": "b.test", "port": "443", "acme": {{ "email": "x@a.test", "directory-url": "https://ca.test/dir" {b} }} }} ] }}"#
        )
    };
    let err = load(&two(r#", "cert-path": "/x/c.pem""#, r#", "cert-path": "/x/c.pem""#)).unwrap_err();
    assert!(
        err.contains("\"cert-path\": vhost \"b.test\": its certificate files are also vhost \"a.test\"'s"),
        "{err}"
    );
    let err = load(&two(r#", "domains": "www.test""#, r#", "domains": "WWW.test""#)).unwrap_err();
    assert!(err.contains("WWW.test is already certified for vhost \"a.test\""), "{err}");
    assert!(load(&two("", "")).is_ok(), "different names and default paths are fine");

    let pvo = |extra: &str| {
        format!(
            r#"{{ "vhosts": [{{ "name": "e", "port": "443", "ws-protocols": [{{ "lws-acme-client": {{
                "common-name": "e.test", "email": "x@e.test", "auth-path": "/x/a", "cert-path": "/x/c",
                "key-path": "/x/k", {extra} }} }}] }}] }}"#
        )
    };
    let err = load(&pvo(r#""directory-url": "http://ca.test/dir""#)).unwrap_err();
    assert!(err.contains("must be https://"), "{err}");
    let err = load(&pvo(r#""directory-url": "https://ca.test/dir", "challenge-type": "dns-01""#)).unwrap_err();
    assert!(err.contains("\"dns-01\" is not http-01 or tls-alpn-01"), "{err}");
}

#[test]
fn http01_without_a_plain_listener_is_warned_about() {
    let dir = common::write_config(
        "{}",
        &[(
            "site",
            r#"{ "vhosts": [{ "name": "e.test", "port": "443",
                 "acme": { "email": "x@e.test", "directory-url": "https://ca.test/dir" } }] }"#,
        )],
    );
    let loaded = lwsws::lwsws::load(dir.path(), "/usr/share").unwrap();
    assert!(loaded.warnings.iter().any(|w| w.msg.contains("ACME http-01 is answered on plain listeners")));
    let dir = common::write_config(
        "{}",
        &[(
            "site",
            r#"{ "vhosts": [{ "name": "e.test", "port": "443",
                 "acme": { "email": "x@e.test", "directory-url": "https://ca.test/dir" } },
               { "name": "plain", "port": "80" }] }"#,
        )],
    );
    let loaded = lwsws::lwsws::load(dir.path(), "/usr/share").unwrap();
    assert!(!loaded.warnings.iter().any(|w| w.msg.contains("http-01")));
}
