//! `http://` and `https://` mounts: a reverse proxy (spec 2.5, D13).
//!
//! Each proxy mount owns a pool of upstream connections (`pool.rs`) whose connector always dials
//! that mount's upstream (TCP, TLS verified against the system roots or `client-ssl-ca`, or a
//! unix socket), so a pool never mixes upstreams and TLS settings. Bodies stream both ways.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::pool::{self, Driven, Failure, Pool, Progress, Upload};
use super::redirect::encode_path;
use super::rewrite::{LinkMap, Rewritten};
use crate::http::body::Body;
use crate::http::error::HttpError;
use crate::http::passthrough::RawPool;
use crate::model::{Mount, Upstream, Vhost};

/// A compiled proxy mount.
pub struct ProxyRt {
    pool: Arc<Pool>,
    tls: bool,
    /// `Host:` for the upstream: the origin's `host[:port]` (D13).
    host: HeaderValue,
    /// `scheme://authority` of the request URIs (the connector ignores it; the pool keys on it).
    base: String,
    path: String,
    timeout: Duration,
    /// D11 link rewriting of `text/html`, unless the mount turned it off.
    links: Option<LinkMap>,
    /// Plain upstream connections for the HTTP/1 passthrough, when it can serve this mount.
    passthrough: Option<Arc<RawPool>>,
}

impl std::fmt::Debug for ProxyRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRt").field("base", &self.base).field("path", &self.path).finish()
    }
}

/// What the request path knows about the client, for the forwarding headers.
pub struct ClientInfo<'a> {
    pub addr: Option<IpAddr>,
    pub tls: bool,
    pub host: Option<&'a str>,
}

impl ProxyRt {
    pub fn new(
        tls: bool,
        upstream: &Upstream,
        path: &str,
        mount: &Mount,
        vhost: &Vhost,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (target, host, base) = match upstream {
            Upstream::Tcp { host, port } => {
                let default = if tls { 443 } else { 80 };
                let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                let authority = if *port == default { shown.clone() } else { format!("{shown}:{port}") };
                let scheme = if tls { "https" } else { "http" };
                (Target::Tcp(host.clone(), *port), authority.clone(), format!("{scheme}://{authority}"))
            }
            Upstream::Unix(p) => (Target::Unix(p.clone()), "localhost".to_string(), "http://localhost".to_string()),
        };
        let tls_connector = if tls {
            let name = match upstream {
                Upstream::Tcp { host, .. } => host.clone(),
                Upstream::Unix(_) => "localhost".to_string(),
            };
            let server_name = ServerName::try_from(name).map_err(|e| format!("upstream name: {e}"))?;
            Some((TlsConnector::from(client_tls(vhost)?), server_name))
        } else {
            None
        };
        let connector = Connector { target: Arc::new(target), tls: tls_connector, timeout };
        // The passthrough speaks plain HTTP/1 to its upstreams: not for TLS ones.
        let passthrough = (!tls).then(|| Arc::new(RawPool::new(connector.clone())));
        let pool = Arc::new(Pool::new(connector));
        let links = mount.rewrite_links.then(|| LinkMap {
            origin_url: format!("{base}{path}"),
            origin_path: path.to_string(),
            mountpoint: mount.mountpoint.clone(),
        });
        Ok(ProxyRt {
            links,
            passthrough,
            pool,
            tls,
            host: HeaderValue::from_str(&host).map_err(|_| "upstream host is not a valid header".to_string())?,
            base,
            path: path.to_string(),
            timeout,
        })
    }

    /// Forwards the request with `remainder` (the normalised path after the mountpoint).
    pub async fn forward(
        &self,
        parts: &Parts,
        body: Incoming,
        remainder: &str,
        client: ClientInfo<'_>,
    ) -> Result<Response<Body>, HttpError> {
        let path = upstream_path(&self.path, remainder, parts.uri.query());
        let uri: Uri = path.parse().map_err(|_| HttpError::BadRequest("unusable path"))?;
        let progress = Progress::new();
        let body = Upload::new(body, progress.clone());
        let mut req = Request::builder().method(parts.method.clone()).uri(uri).body(body).expect("valid request");
        *req.headers_mut() = forward_headers(&parts.headers, &self.host, &client);
        crate::telemetry::inject(parts.extensions.get::<tracing::Span>(), req.headers_mut());
        let upgrade = upgrade_token(&parts.headers);
        if let Some(token) = &upgrade {
            // A websocket handshake: the upgrade is what is being forwarded (spec 2.5).
            req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(header::UPGRADE, token.clone());
        }
        // The timeout is for the upstream to answer, counted from when the request body last
        // moved, so a long upload is not cut while it flows.
        let send = self.pool.send(req, upgrade.is_some());
        tokio::pin!(send);
        let sent = loop {
            tokio::select! {
                r = &mut send => break Ok(r),
                _ = tokio::time::sleep_until(progress.deadline(self.timeout).into()) => {
                    if tokio::time::Instant::now() >= progress.deadline(self.timeout).into() {
                        break Err(());
                    }
                }
            }
        };
        let (resp, conn) = match sent {
            Err(_) => return Err(HttpError::GatewayTimeout),
            Ok(Err(Failure::Connect(e))) => {
                tracing::warn!(upstream = %self.base, error = %e, "upstream connect failed");
                return Err(HttpError::ServiceUnavailable);
            }
            Ok(Err(Failure::Upstream(e))) => {
                tracing::warn!(upstream = %self.base, error = %e, "upstream request failed");
                return Err(HttpError::BadGateway);
            }
            Ok(Ok(r)) => r,
        };
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
            let mut resp = resp;
            let on = hyper::upgrade::on(&mut resp);
            pool::finish_upgrade(conn);
            let (head, _) = resp.into_parts();
            let mut out = Response::from_parts(head, Body::empty());
            out.extensions_mut().insert(UpstreamUpgrade(Arc::new(std::sync::Mutex::new(Some(on)))));
            return Ok(out);
        }
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if http_body::Body::is_end_stream(&body) {
            // hyper would drop such a body unpolled, and the connection with it.
            self.pool.release(conn);
            return Ok(Response::from_parts(head, Body::empty()));
        }
        let mut body = Driven::new(body, conn, self.pool.clone()).boxed_unsync();
        if let Some(map) = &self.links
            && head.status == http::StatusCode::OK
            && is_plain_html(&head.headers)
        {
            // The bytes change: their length and validators no longer hold.
            head.headers.remove(header::CONTENT_LENGTH);
            head.headers.remove(header::ETAG);
            body = Rewritten::new(body, map.clone()).boxed_unsync();
        }
        Ok(Response::from_parts(head, Body::stream(body)))
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The plain connection pool, when the HTTP/1 passthrough can serve this mount.
    pub fn passthrough(&self) -> Option<&Arc<RawPool>> {
        self.passthrough.as_ref()
    }

    /// What D11 link rewriting maps, unless the mount turned it off.
    pub fn links(&self) -> Option<&LinkMap> {
        self.links.as_ref()
    }

    /// The `Host:` sent upstream.
    pub fn upstream_host(&self) -> &HeaderValue {
        &self.host
    }

    /// The origin's path, which the request's remainder is joined to.
    pub fn upstream_base_path(&self) -> &str {
        &self.path
    }

    /// `scheme://authority` of the upstream, for logs.
    pub fn upstream_name(&self) -> &str {
        &self.base
    }

    /// How long the upstream has to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `text/html` that is not compressed: the only bodies whose links are rewritten.
fn is_plain_html(h: &HeaderMap) -> bool {
    is_plain_html_by(
        h.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        h.get(header::CONTENT_ENCODING).map(HeaderValue::as_bytes),
    )
}

/// `is_plain_html` from the first `Content-Type` and `Content-Encoding` values.
pub(crate) fn is_plain_html_by(content_type: Option<&[u8]>, content_encoding: Option<&[u8]>) -> bool {
    let html = content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| is_header_text(v.as_bytes()))
        .is_some_and(|t| t.trim_start().get(..9).is_some_and(|p| p.eq_ignore_ascii_case("text/html")));
    let encoded = content_encoding.is_some_and(|v| v != b"identity");
    html && !encoded
}

/// The upstream side of an accepted upgrade, handed from `forward` to the connection through
/// the response's extensions (which must be `Clone`, hence the shared slot).
#[derive(Clone)]
pub struct UpstreamUpgrade(Arc<std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>>);

/// Pipes bytes both ways between the client and the upgraded upstream until either side ends.
pub async fn tunnel(mut client: crate::http::upgrade::UpgradedIo, upstream: UpstreamUpgrade) {
    let Some(on) = upstream.0.lock().expect("upgrade slot").take() else { return };
    match on.await {
        Ok(up) => {
            let mut up = TokioIo::new(up);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut up).await {
                tracing::debug!(error = %e, "upgraded tunnel ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upstream upgrade failed"),
    }
}

/// The client's `Upgrade` token when the request asks to switch protocols.
fn upgrade_token(h: &HeaderMap) -> Option<HeaderValue> {
    let wants = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    if wants { h.get(header::UPGRADE).cloned() } else { None }
}

/// origin path + remainder, `//` collapsed, a trailing `/` only where the request had one.
pub(crate) fn upstream_path(base: &str, remainder: &str, query: Option<&str>) -> String {
    let joined = format!("{}/{}", base.trim_end_matches('/'), remainder.trim_start_matches('/'));
    let mut out = String::with_capacity(joined.len() + 16);
    for c in joined.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if remainder.is_empty() && !base.ends_with('/') && out.len() > 1 {
        out.pop();
    }
    let mut out = encode_path(&out);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub(crate) const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// The client's headers minus hop-by-hop ones, the origin's Host (D13), and the forwarding
/// headers (`X-Forwarded-*` and RFC 7239 `Forwarded`), appended to any the client sent.
fn forward_headers(client_headers: &HeaderMap, host: &HeaderValue, client: &ClientInfo) -> HeaderMap {
    let mut h = client_headers.clone();
    strip_hop_by_hop(&mut h);
    h.insert(header::HOST, host.clone());
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let f = Forwarding::new(client, text("x-forwarded-for"), text(header::FORWARDED.as_str()));
    let value = |s: &str| HeaderValue::from_str(s).expect("forwarding values are header text");
    if let Some(xff) = &f.xff {
        h.insert("x-forwarded-for", value(xff));
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(f.proto));
    if let Some(host) = f.host {
        h.insert("x-forwarded-host", value(host));
    }
    h.insert(header::FORWARDED, value(&f.forwarded));
    h
}

/// Whether `v` can be a header value as it stands: visible ASCII, spaces and tabs.
pub(crate) fn is_header_text(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The forwarding headers of one request (D13). Each replaces the client's header of the same
/// name; `X-Forwarded-For` and `Forwarded` carry the client's earlier hops on. `xff` and `host`
/// are `None` where the client's own header is left as it was.
pub(crate) struct Forwarding<'a> {
    pub xff: Option<String>,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub forwarded: String,
}

impl<'a> Forwarding<'a> {
    /// `prev_xff` and `prev_forwarded`: the client's first such header, when it is header text.
    pub fn new(client: &ClientInfo<'a>, prev_xff: Option<&str>, prev_forwarded: Option<&str>) -> Self {
        let proto = if client.tls { "https" } else { "http" };
        let xff = client.addr.map(|ip| match prev_xff {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        });
        let host = client.host.filter(|h| is_header_text(h.as_bytes()));
        let mut element = String::new();
        if let Some(ip) = client.addr {
            element = if ip.is_ipv6() { format!("for=\"[{ip}]\"") } else { format!("for={ip}") };
            element.push(';');
        }
        element.push_str("proto=");
        element.push_str(proto);
        if let Some(c) = client.host.filter(|c| c.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
            element.push_str(&format!(";host=\"{c}\""));
        }
        let forwarded = match prev_forwarded {
            Some(prev) => format!("{prev}, {element}"),
            None => element,
        };
        Forwarding { xff, proto, host, forwarded }
    }
}

/// The client side TLS for `https://` origins: `client-ssl-ca` or the system roots, and the
/// vhost's client certificate when it names one.
fn client_tls(v: &Vhost) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &v.client_ssl_ca {
        Some(ca) => {
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("client-ssl-ca {}: {e}", ca.display()))? {
                let c = c.map_err(|e| format!("client-ssl-ca {}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("client-ssl-ca {}: {e}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match (&v.client_ssl_cert, &v.client_ssl_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client-ssl-cert {}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("client-ssl-key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

enum Target {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Dials the mount's one upstream, whatever URI the pool asks for.
#[derive(Clone)]
pub struct Connector {
    target: Arc<Target>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    /// A new connection to the upstream, within the timeout, as hyper's client takes it.
    pub async fn dial(&self) -> io::Result<UpstreamIo> {
        Ok(UpstreamIo(TokioIo::new(self.open().await?)))
    }

    /// A new connection to the upstream, within the timeout.
    pub async fn open(&self) -> io::Result<Stream> {
        let connect = async {
            Ok(match &*self.target {
                Target::Tcp(host, port) => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    let _ = s.set_nodelay(true);
                    match &self.tls {
                        Some((c, name)) => Stream::Tls(Box::new(c.connect(name.clone(), s).await?)),
                        None => Stream::Tcp(s),
                    }
                }
                Target::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
            })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
    }
}

/// A connection to an upstream.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    /// An idle connection is still usable: the peer has neither closed it nor sent anything
    /// unasked. (TLS connections are only pooled by hyper, which tracks this itself.)
    pub fn is_idle_open(&self) -> bool {
        let probe = match self {
            Stream::Tcp(s) => s.try_read(&mut [0u8; 1]),
            Stream::Unix(s) => s.try_read(&mut [0u8; 1]),
            Stream::Tls(_) => return false,
        };
        matches!(probe, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// The upstream connection as hyper's client connection sees it.
pub struct UpstreamIo(TokioIo<Stream>);

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_as_lws_does() {
        assert_eq!(upstream_path("/", "", None), "/");
        assert_eq!(upstream_path("/app", "", None), "/app");
        assert_eq!(upstream_path("/app", "/x/y", Some("a=1")), "/app/x/y?a=1");
        assert_eq!(upstream_path("/app/", "/x/", None), "/app/x/");
        assert_eq!(upstream_path("/", "/a b", None), "/a%20b");
    }

    #[test]
    fn forwarding_headers() {
        let mut client = HeaderMap::new();
        client.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        client.insert("x-secret", HeaderValue::from_static("1"));
        client.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        client.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let info = ClientInfo { addr: Some("127.0.0.1".parse().unwrap()), tls: true, host: Some("site.test") };
        let h = forward_headers(&client, &HeaderValue::from_static("backend:8080"), &info);
        assert_eq!(h[header::HOST], "backend:8080");
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "site.test");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=https;host=\"site.test\"");
        assert_eq!(h[header::COOKIE], "a=b");
    }
}
