//! Many replicas, one certificate. Three lwsws processes, each on its own loopback address
//! (127.0.0.2–4, same ports), order a certificate from Debian's Pebble, which resolves the
//! domain through a DNS responder of this test that hands out the three addresses in turn, so
//! each validation lands on whichever replica it likes. They coordinate through the Kubernetes
//! API (an in-process fake of it: no API server can run here; it keeps the API's Lease,
//! optimistic concurrency and watch semantics) or through one shared directory.
//!
//! The tests with Pebble are `#[ignore]`d under plain `cargo test` and run by
//! `scripts/test-all.sh`, which installs Pebble; the Lease and answer-sharing tests below them
//! need nothing but Rust.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fake_kube::FakeKube;
use common::pebble::Pebble;
use serde_json::{Value, json};

const DOMAIN: &str = "replicas.test";
const NS: &str = "lwsws";
const REPLICAS: [Ipv4Addr; 3] = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)];

/// A DNS server for Pebble: an A query gets the next replica's address, anything else an
/// empty answer. Stops when dropped.
struct Dns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    addrs: Arc<std::sync::Mutex<Vec<Ipv4Addr>>>,
}

impl Dns {
    /// Stops handing out `ip`, as a load balancer stops sending to a replica that died.
    fn withdraw(&self, ip: Ipv4Addr) {
        self.addrs.lock().unwrap().retain(|a| *a != ip);
    }

    fn start(addrs: &[Ipv4Addr]) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let addrs = Arc::new(std::sync::Mutex::new(addrs.to_vec()));
        let (flag, count, list) = (stop.clone(), answered.clone(), addrs.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let next = {
                    let list = list.lock().unwrap();
                    list[count.load(Ordering::Relaxed) % list.len()]
                };
                if let Some((reply, was_a)) = dns_reply(&buf[..n], next) {
                    if was_a {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Dns { addr, stop, answered, addrs }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The reply to one query: its question, and for an A question one answer with `ip`.
fn dns_reply(query: &[u8], ip: Ipv4Addr) -> Option<(Vec<u8>, bool)> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + *query.get(at)? as usize;
    }
    let end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    query.get(..end)?;
    let a = qtype == 1;
    let mut reply = Vec::with_capacity(end + 16);
    reply.extend_from_slice(&query[..2]);
    reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..end]);
    if a {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some((reply, a))
}

/// One lwsws process serving `DOMAIN` over ACME on `ip`: http-01 answered on `http`, the
/// certificate served on `tls`.
struct Replica {
    ip: Ipv4Addr,
    child: Option<common::Running>,
    log: std::path::PathBuf,
    _conf: tempfile::TempDir,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Setup<'a> {
    pebble: &'a Pebble,
    http: u16,
    tls: u16,
    /// Where certificates are kept: the shared directory (file mode) or a per-replica one.
    shared: &'a Path,
    kube: Option<&'a Path>,
    challenge: &'a str,
}

fn start_replica(ip: Ipv4Addr, s: &Setup) -> Replica {
    let conf = tempfile::tempdir().unwrap();
    let d = conf.path();
    std::fs::create_dir_all(d.join("conf.d")).unwrap();
    std::fs::create_dir_all(d.join("www")).unwrap();
    std::fs::write(d.join("www/index.html"), format!("served by {ip}")).unwrap();
    std::fs::write(d.join("conf"), r#"{ "global": {} }"#).unwrap();
    let www = d.join("www").display().to_string();
    let plain = json!({ "vhosts": [{ "name": "plain", "port": s.http.to_string(), "interface": ip.to_string(),
        "mounts": [{ "mountpoint": "/", "origin": format!("file://{www}") }] }] });
    let state = s.shared.display();
    let acme = json!({ "vhosts": [{ "name": DOMAIN, "port": s.tls.to_string(), "interface": ip.to_string(),
        "acme": { "email": "admin@example.test", "directory-url": s.pebble.directory(),
            "ca-file": s.pebble.ca_pem(), "challenge": s.challenge,
            "cert-path": format!("{state}/cert.pem"), "key-path": format!("{state}/key.pem"),
            "auth-path": format!("{state}/account.json") },
        "mounts": [{ "mountpoint": "/", "origin": format!("file://{www}") }] }] });
    std::fs::write(d.join("conf.d/plain"), plain.to_string()).unwrap();
    std::fs::write(d.join("conf.d/acme"), acme.to_string()).unwrap();
    let log = d.join("lwsws.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lwsws"));
    cmd.args(["-c", d.to_str().unwrap()])
        .env("LWSWS_STATE_DIR", d.join("state"))
        .env("LWSWS_ACME_CLAIM_SECS", "3")
        .env("RUST_LOG", "info")
        .env("POD_NAME", format!("replica-{ip}"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(kubeconfig) = s.kube {
        cmd.env("KUBECONFIG", kubeconfig).args(["--kubernetes", "--namespace", NS]);
    }
    let child = common::Running(cmd.spawn().unwrap());
    Replica { ip, child: Some(child), log, _conf: conf }
}

/// The certificate `ip`:`port` serves for `DOMAIN`, once it verifies against `roots`.
async fn verified_cert(ip: Ipv4Addr, port: u16, roots: &rustls::RootCertStore) -> Option<Vec<u8>> {
    let config = rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from(DOMAIN).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await.ok()?.ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}

/// Waits until every live replica serves a certificate from Pebble; returns them.
async fn all_serve(replicas: &[Replica], tls: u16, roots: &rustls::RootCertStore, pebble: &Pebble) -> Vec<Vec<u8>> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let mut certs = Vec::new();
        for r in replicas.iter().filter(|r| r.child.is_some()) {
            match verified_cert(r.ip, tls, roots).await {
                Some(c) => certs.push(c),
                None => break,
            }
        }
        if certs.len() == replicas.iter().filter(|r| r.child.is_some()).count() {
            return certs;
        }
        if Instant::now() > until {
            for r in replicas {
                eprintln!("---- replica {} log ----\n{}", r.ip, r.log());
            }
            panic!("not every replica serves a certificate from Pebble; pebble log:\n{}", pebble.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn setup_pebble(http: u16, tls: u16, dns: &Dns, env: &[(&str, &str)]) -> Pebble {
    Pebble::start_with(common::free_port(), common::free_port(), http, tls, None, Some(dns.addr), env)
}

/// What the Kubernetes-mode tests share: the fake API with the server's namespace, a
/// kubeconfig for it, the DNS responder and Pebble.
struct KubeRun {
    fake: FakeKube,
    home: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    dns: Dns,
    pebble: Pebble,
    http: u16,
    tls: u16,
}

impl KubeRun {
    async fn start() -> KubeRun {
        common::init();
        let fake = FakeKube::start().await;
        fake.put(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NS } }));
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        fake.kubeconfig(&kubeconfig);
        let dns = Dns::start(&REPLICAS);
        let (http, tls) = (common::free_port(), common::free_port());
        let pebble = setup_pebble(http, tls, &dns, &[]);
        KubeRun { fake, home, kubeconfig, dns, pebble, http, tls }
    }

    fn setup<'a>(&'a self, challenge: &'a str) -> Setup<'a> {
        Setup {
            pebble: &self.pebble,
            http: self.http,
            tls: self.tls,
            shared: self.home.path(),
            kube: Some(&self.kubeconfig),
            challenge,
        }
    }
}

/// Three replicas sharing one state directory (containers with one volume): one order, one
/// certificate, served by all three; nothing of the coordination is left behind.
#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn three_replicas_sharing_a_directory_order_one_certificate() {
    common::init();
    let dns = Dns::start(&REPLICAS);
    let (http, tls) = (common::free_port(), common::free_port());
    let pebble = setup_pebble(http, tls, &dns, &[]);
    let shared = tempfile::tempdir().unwrap();
    let setup = Setup { pebble: &pebble, http, tls, shared: shared.path(), kube: None, challenge: "http-01" };
    let replicas: Vec<Replica> = REPLICAS.iter().map(|ip| start_replica(*ip, &setup)).collect();
    let roots = pebble.issuing_root().await;
    let certs = all_serve(&replicas, tls, &roots, &pebble).await;
    assert!(certs.windows(2).all(|w| w[0] == w[1]), "all three serve the one certificate");
    assert_eq!(pebble.orders_and_issued(), (1, 1), "one order, one certificate; pebble log:\n{}", pebble.log());
    assert!(dns.answered.load(Ordering::Relaxed) >= 1, "Pebble resolved the name through the test's DNS");
    // The claim is released and the answers withdrawn once the certificate is stored.
    assert!(
        common::try_eventually(|| !shared.path().join("cert.pem.lock").exists()).await,
        "the lock file is removed when the order ends"
    );
    let answers: Vec<_> = std::fs::read_dir(shared.path().join("acme-challenges/http-01"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(answers.is_empty(), "answer files left: {answers:?}");
    let ordered = replicas.iter().filter(|r| r.log().contains("ACME: ordering a certificate")).count();
    assert_eq!(ordered, 1, "one replica ordered; the others took what it stored");
}

/// The same in Kubernetes mode, with tls-alpn-01 (answered on the TLS port, so a replica
/// answers with a certificate it made from another replica's published digest): one order,
/// one certificate in one Secret, served by all three; the Lease released, no answer Secret
/// left.
#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn three_replicas_in_kubernetes_mode_order_one_certificate() {
    let run = KubeRun::start().await;
    let (fake, pebble, tls) = (&run.fake, &run.pebble, run.tls);
    let setup = run.setup("tls-alpn-01");
    let replicas: Vec<Replica> = REPLICAS.iter().map(|ip| start_replica(*ip, &setup)).collect();
    let roots = pebble.issuing_root().await;
    let certs = all_serve(&replicas, tls, &roots, pebble).await;
    assert!(certs.windows(2).all(|w| w[0] == w[1]), "all three serve the one certificate");
    assert_eq!(pebble.orders_and_issued(), (1, 1), "one order, one certificate; pebble log:\n{}", pebble.log());
    let secrets = fake.list("v1", "Secret");
    let tls_secrets: Vec<&Value> = secrets.iter().filter(|s| s["type"] == "kubernetes.io/tls").collect();
    assert_eq!(tls_secrets.len(), 1, "one certificate Secret: {tls_secrets:?}");
    assert!(
        common::try_eventually(|| fake
            .list("v1", "Secret")
            .iter()
            .all(|s| s["metadata"]["labels"]["lwsws.io/acme-challenge"].is_null()))
        .await,
        "answer Secrets are withdrawn when the order ends"
    );
    let leases = fake.list("coordination.k8s.io/v1", "Lease");
    let cert_lease =
        leases.iter().find(|l| l["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("lwsws-acme-")));
    let cert_lease = cert_lease.unwrap_or_else(|| panic!("a Lease for the certificate: {leases:?}"));
    assert!(cert_lease["spec"]["holderIdentity"].is_null(), "released: {cert_lease}");
}

/// The replica holding the certificate's Lease is killed (SIGKILL: it releases nothing) as soon
/// as its challenge answer is published; another replica takes the Lease over once it goes
/// stale and completes the work: both survivors serve a certificate from Pebble.
#[tokio::test]
#[ignore = "needs Pebble; run by scripts/test-all.sh"]
async fn a_lease_holder_killed_mid_order_is_taken_over() {
    let run = KubeRun::start().await;
    let (fake, dns, pebble, tls) = (&run.fake, &run.dns, &run.pebble, run.tls);
    let setup = run.setup("http-01");
    let mut replicas: Vec<Replica> = REPLICAS.iter().map(|ip| start_replica(*ip, &setup)).collect();
    // Mid-order: an answer Secret is out, so the holder has an order open at the CA.
    let until = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        let published =
            fake.list("v1", "Secret").iter().any(|s| !s["metadata"]["labels"]["lwsws.io/acme-challenge"].is_null());
        let lease = fake
            .list("coordination.k8s.io/v1", "Lease")
            .into_iter()
            .find(|l| l["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("lwsws-acme-")));
        if published && let Some(h) = lease.as_ref().and_then(|l| l["spec"]["holderIdentity"].as_str()) {
            break h.to_string();
        }
        assert!(Instant::now() < until, "no replica published an answer; pebble log:\n{}", pebble.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let victim = replicas
        .iter()
        .position(|r| r.pid().is_some_and(|pid| holder.contains(&format!("-{pid}-"))))
        .unwrap_or_else(|| panic!("the holder {holder} is one of the replicas"));
    replicas[victim].kill();
    dns.withdraw(replicas[victim].ip);
    let stored_before = fake.list("v1", "Secret").iter().any(|s| s["type"] == "kubernetes.io/tls");
    let roots = pebble.issuing_root().await;
    let certs = all_serve(&replicas, tls, &roots, pebble).await;
    assert_eq!(certs.len(), 2);
    assert!(certs.windows(2).all(|w| w[0] == w[1]), "both survivors serve the one certificate");
    if !stored_before {
        // The order died with its replica: a survivor took the Lease over and ordered anew.
        let (orders, issued) = pebble.orders_and_issued();
        assert_eq!((orders, issued), (2, 1), "pebble log:\n{}", pebble.log());
        let took_over =
            replicas.iter().filter(|r| r.child.is_some()).any(|r| r.log().contains("ordering a certificate"));
        assert!(took_over, "a survivor ordered");
    }
    eprintln!("holder {holder} killed; certificate stored before the kill: {stored_before}");
}

/// Leases through the (fake) API: one holder at a time, even when several race for a new
/// Lease; a holder that stops renewing is taken over once the Lease is stale; a released Lease
/// is free at once; the loser of a race is told by the API's 409, not by luck.
#[tokio::test]
async fn lease_claims_are_exclusive_and_taken_over_when_stale() {
    use lwsws::k8s::lease::LeaseClaim;
    common::init();
    let fake = FakeKube::start().await;
    let claim = |who: &str, secs: u64| LeaseClaim::new(fake.client(), NS, "cert", who, Duration::from_secs(secs));
    let racers: Vec<LeaseClaim> = (0..6).map(|i| claim(&format!("r{i}"), 2)).collect();
    let won = futures::future::join_all(racers.iter().map(|c| c.acquire())).await;
    let winners: Vec<usize> = won.iter().enumerate().filter(|(_, r)| *r.as_ref().unwrap()).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "one of six racers holds the Lease: {won:?}");
    let holder = &racers[winners[0]];
    let other = &racers[(winners[0] + 1) % racers.len()];
    assert!(!other.acquire().await.unwrap(), "held and fresh");
    assert!(holder.refresh().await.unwrap());
    assert!(!other.refresh().await.unwrap(), "only the holder renews");
    // The holder stops renewing (it died): after the Lease's duration, another takes it.
    let start = Instant::now();
    while !other.acquire().await.unwrap() {
        assert!(start.elapsed() < Duration::from_secs(20), "never taken over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(1), "not taken while it was fresh");
    assert!(!holder.refresh().await.unwrap(), "the old holder learns it lost");
    let lease = fake.get("coordination.k8s.io/v1", "Lease", NS, "cert").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    other.release().await.unwrap();
    assert!(holder.acquire().await.unwrap(), "a released Lease is free at once");
}

/// An answer one replica publishes through a Secret is served by another replica that only
/// watches, and is gone from both when the order drops it.
#[tokio::test]
async fn challenge_answers_published_through_secrets_reach_every_replica() {
    use lwsws::acme::{Answer, CertStore, SharedAnswers};
    use lwsws::k8s::acme_store::{ChallengeSecrets, SecretStore};
    common::init();
    let fake = FakeKube::start().await;
    let mine = ChallengeSecrets::start(&fake.client(), NS);
    let theirs = ChallengeSecrets::start(&fake.client(), NS);
    let store = SecretStore::new(fake.client(), NS, DOMAIN, mine);
    let answer = Answer::Http01 { token: "tok-1".into(), key_authorization: "tok-1.thumb".into() };
    let published = store.publish(&answer).await.expect("seen back through the watch");
    assert!(
        common::try_eventually_async(|| async { theirs.http01("tok-1").as_deref() == Some("tok-1.thumb") }).await,
        "the other replica sees the answer"
    );
    assert_eq!(theirs.http01("tok-2"), None);
    let alpn = Answer::TlsAlpn01 { domain: DOMAIN.into(), digest: vec![3u8; 32] };
    let p2 = store.publish(&alpn).await.unwrap();
    assert!(common::try_eventually_async(|| async { theirs.alpn_digest(DOMAIN) == Some(vec![3u8; 32]) }).await);
    drop(published);
    drop(p2);
    assert!(
        common::try_eventually_async(|| async {
            theirs.http01("tok-1").is_none() && theirs.alpn_digest(DOMAIN).is_none()
        })
        .await,
        "withdrawn with the order"
    );
    assert!(fake.list("v1", "Secret").is_empty(), "no answer Secret left");
}

/// Two controllers (replicas) over the same LwswsConfig: only the holder of the status Lease
/// writes its status; when it stops, it lets the Lease go and the other takes it over.
#[tokio::test]
async fn statuses_are_written_by_the_status_lease_holder_only() {
    common::init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let (mut ctl, rx) = lwsws::k8s::Controller::start(fake.client(), NS, dir.path().join(name), Default::default());
        // 45 s: longer than any wait below, so only a release can hand the Lease over.
        ctl.elect_with("lwsws-status", &format!("replica-{name}"), Duration::from_secs(45));
        (ctl, rx)
    };
    let (a, _rx_a) = start("a");
    assert!(common::try_eventually(|| a.writes_status()).await, "the first replica leads");
    let (b, _rx_b) = start("b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.writes_status() && !b.writes_status(), "one leader at a time");
    fake.put(json!({ "apiVersion": "lwsws.io/v1alpha1", "kind": "LwswsConfig",
        "metadata": { "name": "site", "namespace": NS, "generation": 1 },
        "spec": { "vhosts": [{ "name": "site.test", "port": "8080",
            "mounts": [{ "mountpoint": "/", "origin": "file:///nonexistent" }] }] } }));
    for ctl in [&a, &b] {
        assert!(ctl.synced(Duration::from_secs(10)).await);
    }
    assert!(common::try_eventually(|| b.build(dir.path(), "/usr/share").verdicts.len() == 1).await);
    let verdicts = b.build(dir.path(), "/usr/share").verdicts;
    b.report(&verdicts, Ok(())).await;
    assert_eq!(fake.status_writes("LwswsConfig"), 0, "a replica that does not lead writes nothing");
    a.report(&a.build(dir.path(), "/usr/share").verdicts, Ok(())).await;
    assert_eq!(fake.status_writes("LwswsConfig"), 1, "the leader writes");
    drop(a);
    // The leader that goes lets the Lease go at once: the other takes it at its next try (every
    // 15 s), long before it could have gone stale.
    assert!(
        common::try_eventually(|| {
            let lease = fake.get("coordination.k8s.io/v1", "Lease", NS, "lwsws-status").unwrap();
            lease["spec"]["holderIdentity"].as_str() != Some("replica-a")
        })
        .await,
        "released"
    );
    assert!(
        common::try_eventually_async(|| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            b.writes_status()
        })
        .await,
        "the other replica takes the released Lease over"
    );
}
