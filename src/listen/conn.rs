//! Accepting and serving connections. A connection takes the route table current at accept
//! time and keeps it until it closes, so a reload never changes a request mid-flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bind::Socket;
use super::proxy_protocol::{self, Arrival};
use super::serve::serve;
use super::sniff::{self, Verdict};
use crate::acme::Challenges;
use crate::http::conn::{ConnCtx, Shared};
use crate::http::io::{Prefixed, Readiness};
use crate::lograte::RateLimited;
use crate::metrics::ResultLabels;
use crate::model::protocols::Onward;
use crate::model::{ListenKey, ProxyProtocol};
use crate::protocols::raw_proxy;
use crate::table::{ListenerRoutes, RouteTable, VhostRt};

/// How often a failing accept loop may log.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What every accept loop shares: the current table (swapped on reload) and long-lived state.
pub struct AppState {
    pub table: ArcSwap<RouteTable>,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Per listener: cancelled (after the drain limit) when a reload removes the listener, so
    /// its HTTP connections finish their requests and close. Children of `shutdown`.
    pub drains: parking_lot::Mutex<std::collections::HashMap<ListenKey, CancellationToken>>,
}

impl AppState {
    /// The token an HTTP connection on `key` stops on: server shutdown, or its listener drained.
    pub fn drain_for(&self, key: &ListenKey) -> CancellationToken {
        let mut drains = self.drains.lock();
        drains.entry(key.clone()).or_insert_with(|| self.shutdown.child_token()).clone()
    }
}

/// Accepts until `stop` (the listener was removed by a reload, or the server is stopping).
pub async fn accept_loop(socket: Socket, key: ListenKey, state: Arc<AppState>, stop: CancellationToken) {
    match socket {
        Socket::Tcp(l) => {
            let l = &tokio::net::TcpListener::from_std(l).expect("listener registers with the runtime");
            let start = |(stream, peer): (tokio::net::TcpStream, SocketAddr)| {
                let _ = stream.set_nodelay(true);
                state.tracker.spawn(connection(stream, Some(peer), key.clone(), state.clone()));
            };
            accept_each(&stop, || l.accept(), start).await
        }
        Socket::Unix(l) => {
            let l = &tokio::net::UnixListener::from_std(l).expect("listener registers with the runtime");
            let start = |(stream, _)| {
                state.tracker.spawn(connection(stream, None, key.clone(), state.clone()));
            };
            accept_each(&stop, || l.accept(), start).await
        }
    }
}

/// Hands each accepted connection to `start` until `stop`.
async fn accept_each<C, A>(stop: &CancellationToken, mut accept: impl FnMut() -> A, mut start: impl FnMut(C))
where
    A: std::future::Future<Output = std::io::Result<C>>,
{
    let mut failures = RateLimited::new(ACCEPT_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = accept() => r,
        };
        match accepted {
            Ok(conn) => start(conn),
            Err(e) => accept_error(e, &mut failures).await,
        }
    }
}

/// Out of file descriptors and the like: back off briefly instead of spinning, and say so once
/// per `ACCEPT_LOG_EVERY` rather than at every retry (twenty lines a second at the fd limit).
async fn accept_error(e: std::io::Error, log: &mut RateLimited) {
    if let Some(suppressed) = log.allow(std::time::Instant::now()) {
        tracing::warn!(error = %e, suppressed, "accept failed (logged at most once per 10 s; suppressed: failures since the last line)");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn connection<S>(mut stream: S, peer: Option<SocketAddr>, key: ListenKey, state: Arc<AppState>)
where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let table = state.table.load_full();
    let Some(listener) = table.listeners.iter().position(|l| l.key == key) else {
        return;
    };
    let _open = OpenConnection::new(&state);
    let routes = &table.listeners[listener];
    let timeout = table.global.timeout;
    // First of all, before any sniffing or TLS: from here on the header's address is the
    // client's, for forwarding headers, logs, CGI and the status page alike.
    let peer = match routes.proxy_protocol {
        ProxyProtocol::Off => peer,
        accept => {
            let metrics = &state.shared.metrics;
            // Boxed: the header's reads should not add to every connection's task.
            match Box::pin(proxy_protocol::arrive(&mut stream, peer, accept, timeout, metrics)).await {
                Arrival::Client(client) => client,
                Arrival::Refused => return,
            }
        }
    };
    let mode = &routes.mode;
    if let Some(onward) = &mode.raw {
        return Box::pin(raw_proxy::pipe(stream, &[], onward, timeout)).await;
    }
    if !routes.tls {
        if let Some(onward) = mode.fallback.clone() {
            return Box::pin(plain_or_raw(stream, peer, table.clone(), listener, onward, state)).await;
        }
        return Box::pin(plain(stream, Bytes::new(), peer, table.clone(), listener, false, state)).await;
    }
    if mode.allow_non_tls {
        return Box::pin(tls_or_not(stream, peer, table.clone(), listener, state)).await;
    }
    // Boxed: a moved-out TLS stream would otherwise keep its size in every connection's task.
    Box::pin(tls_connection(stream, peer, table.clone(), listener, state)).await
}

/// Plain HTTP, with bytes already read put back in front.
async fn plain<S>(
    stream: S,
    first: Bytes,
    peer: Option<SocketAddr>,
    table: Arc<RouteTable>,
    listener: usize,
    redirect_to_https: bool,
    state: Arc<AppState>,
) where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let timeout = table.global.timeout;
    let keepalive = table.listeners[listener].first().keepalive;
    let ctx = ConnCtx { redirect_to_https, ..ConnCtx::new(table, listener, peer, state.shared.clone(), keepalive) };
    let drain = state.drain_for(&ctx.routes_key());
    serve(stream, first, ctx, false, timeout, &drain).await
}

/// `fallback-listen-accept` on a plain port: a first token that is not an HTTP method sends
/// the connection, with what was read, to the raw protocol.
async fn plain_or_raw<S>(
    mut stream: S,
    peer: Option<SocketAddr>,
    table: Arc<RouteTable>,
    listener: usize,
    onward: Onward,
    state: Arc<AppState>,
) where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let timeout = table.global.timeout;
    let Ok((head, verdict)) = sniff::read_until(&mut stream, timeout, sniff::http_request).await else {
        return;
    };
    if verdict == Verdict::Yes {
        return plain(stream, head.freeze(), peer, table, listener, false, state).await;
    }
    raw_proxy::pipe(stream, &head, &onward, timeout).await
}

/// `allow-non-tls` on a TLS port (spec 5): a first byte that cannot start a TLS handshake is
/// plain text, and then `redirect-http`, `allow-http-on-https` and `fallback-listen-accept`
/// are tried in that order; with none of them the connection is closed.
async fn tls_or_not<S>(
    mut stream: S,
    peer: Option<SocketAddr>,
    table: Arc<RouteTable>,
    listener: usize,
    state: Arc<AppState>,
) where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let timeout = table.global.timeout;
    let one = |b: &[u8]| if b.is_empty() { Verdict::NeedMore } else { Verdict::Yes };
    let Ok((head, _)) = sniff::read_until(&mut stream, timeout, one).await else {
        return;
    };
    if head.is_empty() {
        return;
    }
    if sniff::is_tls(head[0]) {
        let stream = Prefixed::sniffed(stream, head.freeze());
        return tls_connection(stream, peer, table, listener, state).await;
    }
    let mode = table.listeners[listener].mode.clone();
    if mode.redirect_http || mode.allow_http_on_https {
        return plain(stream, head.freeze(), peer, table, listener, mode.redirect_http, state).await;
    }
    if let Some(onward) = &mode.fallback {
        return raw_proxy::pipe(stream, &head, onward, timeout).await;
    }
    tracing::info!(?peer, first = ?&head[..head.len().min(16)], "plain text on a TLS port with no allow-non-tls role; closing");
}

async fn tls_connection<S>(
    stream: S,
    peer: Option<SocketAddr>,
    table: Arc<RouteTable>,
    listener: usize,
    state: Arc<AppState>,
) where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let routes = &table.listeners[listener];
    let timeout = table.global.timeout;
    let handshakes = &state.shared.metrics.tls_handshakes;
    let drain;
    // The TLS stream lives in a scope of its own and moves into the boxed serve future: a local
    // moved out of before an await keeps its room in the enclosing future, which was then a
    // 4.4 KiB allocation per TLS connection (massif); this way an idle one holds 1.3 KB less.
    let serving =
        {
            // Boxed so the handshake's state is freed once done, not carried by the connection's task.
            let (tls, vhost) =
                match Box::pin(tokio::time::timeout(timeout, tls_handshake(stream, routes, &state.shared.challenges)))
                    .await
                {
                    Ok(Ok(Some(done))) => {
                        handshakes.get_or_create(&ResultLabels { result: "success" }).inc();
                        done
                    }
                    Ok(Ok(None)) => {
                        handshakes.get_or_create(&ResultLabels { result: "acme_challenge" }).inc();
                        return;
                    }
                    Ok(Err(e)) => {
                        handshakes.get_or_create(&ResultLabels { result: "failure" }).inc();
                        tracing::debug!(?peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        handshakes.get_or_create(&ResultLabels { result: "timeout" }).inc();
                        tracing::debug!(?peer, "TLS handshake timed out");
                        return;
                    }
                };
            let keepalive = vhost.keepalive;
            let ctx = ConnCtx {
                tls: true,
                handshake_vhost: Some(vhost),
                ..ConnCtx::new(table.clone(), listener, peer, state.shared.clone(), keepalive)
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            drain = state.drain_for(&ctx.routes_key());
            Box::pin(serve(tls, Bytes::new(), ctx, h2, timeout, &drain))
        };
    serving.await
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<AppState>);

impl OpenConnection {
    fn new(state: &Arc<AppState>) -> Self {
        state.shared.metrics.connections_open.inc();
        OpenConnection(state.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.shared.metrics.connections_open.dec();
    }
}

/// Reads the ClientHello, picks the vhost by SNI (D3; unknown or absent SNI: the first vhost on
/// the port), and completes the handshake with that vhost's certificate and settings.
/// `None`: the handshake was a CA's tls-alpn-01 validation, answered and done.
async fn tls_handshake<S>(
    stream: S,
    routes: &ListenerRoutes,
    challenges: &Challenges,
) -> std::io::Result<Option<(TlsStream<S>, Arc<VhostRt>)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let sni = start.client_hello().server_name().map(str::to_string);
    let acme_validation =
        start.client_hello().alpn().is_some_and(|mut offered| offered.any(|p| p == crate::acme::ACME_TLS_ALPN));
    if acme_validation && let Some(config) = sni.as_deref().and_then(|name| challenges.alpn_config(name)) {
        // A CA validating tls-alpn-01: the handshake itself is the answer (RFC 8737).
        let mut tls = start.into_stream(config).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return Ok(None);
    }
    let vhost = sni.as_deref().and_then(|n| routes.find_vhost(n)).unwrap_or_else(|| routes.first()).clone();
    let config = vhost.tls.clone().expect("a TLS listener's vhosts all have TLS");
    let tls = start.into_stream(config).await?;
    Ok(Some((tls, vhost)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_task_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let state = Arc::new(AppState {
            table: ArcSwap::from_pointee(crate::table::RouteTable {
                global: crate::table::GlobalRt {
                    server: None,
                    reject: vec![],
                    timeout: Duration::from_secs(1),
                    threads: 1,
                    passthrough: true,
                    body_buffer: 0,
                    max_head: 16 * 1024,
                },
                listeners: vec![],
            }),
            shared: Arc::new(Shared::default()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            drains: Default::default(),
        });
        let key = ListenKey::Unix { path: "/x".into() };
        let ctx = ConnCtx::new(state.table.load_full(), 0, None, state.shared.clone(), Duration::from_secs(5));
        let shutdown = CancellationToken::new();
        let serving = serve(
            tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap(),
            bytes::Bytes::new(),
            ctx,
            false,
            Duration::from_secs(1),
            &shutdown,
        );
        let serve_size = std::mem::size_of_val(&serving);
        eprintln!("serve future: {serve_size} bytes");
        assert!(serve_size <= 1024, "serve future grew to {serve_size} bytes");
        let fut = connection(s, None, key, state);
        // Every idle connection carries this much: keep it small (see listen/serve.rs).
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 512, "connection future grew to {size} bytes");
        eprintln!("connection future: {size} bytes");
    }
}
