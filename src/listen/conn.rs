//! Accepting and serving connections. A connection takes the route table current at accept
//! time and keeps it until it closes, so a reload never changes a request mid-flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bind::Socket;
use super::io::Readiness;
use super::serve::serve;
use crate::http::activity::Activity;
use crate::http::service::{ConnCtx, Shared};
use crate::model::ListenKey;
use crate::table::RouteTable;

/// What every accept loop shares: the current table (swapped on reload) and long-lived state.
pub struct AppState {
    pub table: ArcSwap<RouteTable>,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

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
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
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
        return serve(stream, ctx, false, timeout, &state.shutdown).await;
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
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    serve(tls, ctx, h2, timeout, &state.shutdown).await
}
