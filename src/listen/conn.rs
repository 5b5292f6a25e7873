//! Accepting and serving connections. A connection takes the route table current at accept
//! time and keeps it until it closes, so a reload never changes a request mid-flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bind::Socket;
use crate::http::activity::Activity;
use crate::http::service::{self, ConnCtx, Shared};
use crate::model::ListenKey;
use crate::table::RouteTable;

/// What every accept loop shares: the current table (swapped on reload) and long-lived state.
pub struct AppState {
    pub table: ArcSwap<RouteTable>,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// After a graceful close is asked of an idle connection, how long it may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub async fn accept_loop(socket: Socket, key: ListenKey, state: Arc<AppState>) {
    match socket {
        Socket::Tcp(l) => {
            let l = tokio::net::TcpListener::from_std(l).expect("listener registers with the runtime");
            loop {
                let accepted = tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    r = l.accept() => r,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        state.tracker.spawn(connection(stream, Some(peer), key.clone(), state.clone()));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        }
        Socket::Unix(l) => {
            let l = tokio::net::UnixListener::from_std(l).expect("listener registers with the runtime");
            loop {
                let accepted = tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    r = l.accept() => r,
                };
                match accepted {
                    Ok((stream, _)) => {
                        state.tracker.spawn(connection(stream, None, key.clone(), state.clone()));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        }
    }
}

/// Out of file descriptors and the like: back off briefly instead of spinning.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn connection<S>(stream: S, peer: Option<SocketAddr>, key: ListenKey, state: Arc<AppState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let table = state.table.load_full();
    let Some(listener) = table.listeners.iter().position(|l| l.key == key) else {
        return;
    };
    let routes = &table.listeners[listener];
    let timeout = table.global.timeout;
    let keepalive = routes.first().keepalive;
    if !routes.tls {
        let ctx = ConnCtx {
            table: table.clone(),
            listener,
            peer,
            tls: false,
            handshake_vhost: None,
            shared: state.shared.clone(),
            activity: Arc::new(Activity::new(keepalive)),
        };
        return serve_http(stream, ctx, timeout, &state.shutdown).await;
    }
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let sni = start.client_hello().server_name().map(str::to_string);
        let vhost = sni.as_deref().and_then(|n| routes.find_vhost(n)).unwrap_or_else(|| routes.first()).clone();
        let config = vhost.tls.clone().expect("a TLS listener's vhosts all have TLS");
        let tls = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((tls, vhost))
    };
    let (tls, vhost) = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            return;
        }
    };
    let ctx = ConnCtx {
        table: table.clone(),
        listener,
        peer,
        tls: true,
        activity: Arc::new(Activity::new(vhost.keepalive)),
        handshake_vhost: Some(vhost),
        shared: state.shared.clone(),
    };
    serve_http(tls, ctx, timeout, &state.shutdown).await
}

/// HTTP/1.1 (keep-alive, pipelining) or HTTP/2, until the peer closes, the connection idles out
/// (header timeout before the first request, keep-alive after), or the server shuts down.
async fn serve_http<I>(io: I, ctx: ConnCtx, header_timeout: Duration, shutdown: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = ctx.activity.clone();
    let ctx = Arc::new(ctx);
    let svc = service_fn(move |req| std::future::ready(Ok::<_, Infallible>(service::handle(&ctx, req))));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).pipeline_flush(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = tokio::time::sleep(header_timeout);
    tokio::pin!(idle);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut idle => {
                let now = Instant::now();
                if closing.is_some_and(|at| now >= at) {
                    return;
                }
                match activity.deadline(header_timeout).map(Instant::from_std) {
                    Some(at) if at <= now => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now + CLOSE_GRACE);
                        idle.as_mut().reset(now + CLOSE_GRACE);
                    }
                    Some(at) => idle.as_mut().reset(at),
                    None => idle.as_mut().reset(now + header_timeout),
                }
            }
            _ = activity.changed.notified(), if closing.is_none() => {
                match activity.deadline(header_timeout) {
                    Some(at) => idle.as_mut().reset(Instant::from_std(at)),
                    None => idle.as_mut().reset(Instant::now() + header_timeout),
                }
            }
            _ = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // In-flight requests finish under the server's own grace period.
                closing = Some(Instant::now() + Duration::from_secs(3600));
            }
        }
    }
}
