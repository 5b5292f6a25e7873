//! Debian's Pebble (an ACME CA for tests), started on loopback ports of a test's own, with its
//! validation ports pointed at the server under test. Not a Rust program: the tests that use
//! it are `#[ignore]`d under plain `cargo test` and run by `scripts/test-all.sh`, which
//! installs it; run there, a missing Pebble fails them.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    pub listen: u16,
    pub mgmt: u16,
}

impl Pebble {
    /// Pebble with its own listener certificate (trusted through `ca_pem()`), validating
    /// http-01 on `http_port` and tls-alpn-01 on `tls_port`.
    pub fn start(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        Self::start_on(super::free_port(), super::free_port(), http_port, tls_port, validity_secs)
    }

    pub fn start_on(listen: u16, mgmt: u16, http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        Self::start_with(listen, mgmt, http_port, tls_port, validity_secs, None, &[])
    }

    /// `start_on`, resolving names through the DNS server at `dns` (Pebble's `-dnsserver`)
    /// and with extra environment (`PEBBLE_VA_SLEEPTIME`, say).
    pub fn start_with(
        listen: u16,
        mgmt: u16,
        http_port: u16,
        tls_port: u16,
        validity_secs: Option<u64>,
        dns: Option<SocketAddr>,
        env: &[(&str, &str)],
    ) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "pebble");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = validity_secs {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let mut command = Command::new("pebble");
        command.arg("-config").arg(&config);
        if let Some(dns) = dns {
            command.arg("-dnsserver").arg(dns.to_string());
        }
        let child = command
            .env("PEBBLE_VA_NOSLEEP", "1")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble is not installed: scripts/test-all.sh installs it (apt-get install pebble)");
        let p = Pebble { child, dir, listen, mgmt };
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(Instant::now() < until, "pebble did not start: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }

    /// The PEM that makes Pebble's own HTTPS endpoints trusted.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many orders Pebble took, and how many certificates it issued, from its log.
    pub fn orders_and_issued(&self) -> (usize, usize) {
        let log = self.log();
        (log.matches("Added order").count(), log.matches("Issued certificate serial").count())
    }

    /// The root that signs the certificates Pebble issues (new at every Pebble start).
    pub async fn issuing_root(&self) -> rustls::RootCertStore {
        use rustls_pki_types::pem::PemObject;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca_pem()).unwrap()).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
        let pem =
            client.get(format!("https://127.0.0.1:{}/roots/0", self.mgmt)).send().await.unwrap().text().await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
