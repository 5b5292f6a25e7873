//! Serving HTTP on an accepted (and maybe TLS) stream.
//!
//! HTTP/2 (TLS with ALPN `h2`) runs one hyper connection to the end. HTTP/1 runs hyper only
//! while there is work: once the connection has been idle for `PARK_AFTER`, hyper is stopped
//! (its read and write buffers freed), the stream waits for readability holding no buffer, and a
//! fresh hyper connection takes over when the next request arrives. This keeps an idle
//! keep-alive connection to a socket and a small task. The keep-alive and header deadlines are
//! enforced in both states.

use std::convert::Infallible;
use std::future::{Ready, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::io::{Prefixed, Readiness};
use crate::http::activity::Activity;
use crate::http::body::Body;
use crate::http::service::{self, ConnCtx};

/// Idle time after which an HTTP/1 connection gives up hyper's buffers. Short, because the
/// buffers of a burst of connections that go idle together otherwise fragment the heap for good
/// (measured: 13 KiB per idle connection at 250 ms, 2.5 KiB at 5 ms); a client that sends its
/// next request later than this only costs a fresh hyper state (no measurable loss under wrk).
const PARK_AFTER: Duration = Duration::from_millis(5);
/// How long a connection asked to close (or park) may take to finish what it is writing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A request head larger than this is answered 431 (nginx allows 32 KiB by default, lws 4 KiB).
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// In-flight requests at shutdown are bounded by the server's grace period, not here.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3600);

type Svc = dyn Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = Ready<Result<Response<Body>, Infallible>>,
    > + Send
    + Sync;

pub async fn serve<S>(io: S, ctx: ConnCtx, h2: bool, header_timeout: Duration, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let activity = ctx.activity.clone();
    let ctx = Arc::new(ctx);
    let svc = service_fn(move |req| std::future::ready(Ok::<_, Infallible>(service::handle(&ctx, req))));
    let svc: Arc<Svc> = Arc::new(svc);
    if h2 {
        // Boxed: hyper's HTTP/2 state is large, and an HTTP/1 task should not carry its size.
        return Box::pin(serve_h2(io, svc, &activity, header_timeout, shutdown)).await;
    }
    let mut io = Prefixed::new(io);
    loop {
        io = match Box::pin(h1_until_idle(io, svc.clone(), &activity, header_timeout, shutdown)).await {
            Some(io) => io,
            None => return,
        };
        let Some(deadline) = activity.deadline(header_timeout).map(Instant::from_std) else { return };
        if Instant::now() >= deadline || shutdown.is_cancelled() {
            return;
        }
        if io.has_unread() {
            continue;
        }
        tokio::select! {
            r = io.inner_mut().wait_readable() => if r.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Runs hyper on `io` until the connection ends (`None`) or goes idle and is parked (`Some`).
async fn h1_until_idle<S>(
    io: Prefixed<S>,
    svc: Arc<Svc>,
    activity: &Activity,
    header_timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<Prefixed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // No pipeline_flush: with it, hyper 1.12 never flushes the 400 it writes for a malformed
    // request (tests/static_files.rs, malformed_requests_get_4xx_never_a_crash).
    let mut conn =
        http1::Builder::new().keep_alive(true).max_buf_size(MAX_REQUEST_HEAD).serve_connection(TokioIo::new(io), svc);
    let resumed = Instant::now();
    let timer = tokio::time::sleep(header_timeout);
    tokio::pin!(timer);
    rearm(&mut timer, activity, header_timeout, resumed);
    let mut parking = false;
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            res = poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/1 connection ended with an error");
                    return None;
                }
                if !parking {
                    return None;
                }
                let parts = conn.into_parts();
                let mut io = parts.io.into_inner();
                io.unread(parts.read_buf);
                return Some(io);
            }
            _ = &mut timer => {
                let now = Instant::now();
                if closing.is_some_and(|at| now >= at) {
                    return None;
                }
                match park_deadline(activity, header_timeout, resumed) {
                    Some(at) if at <= now && closing.is_none() => {
                        Pin::new(&mut conn).graceful_shutdown();
                        parking = true;
                        closing = Some(now + CLOSE_GRACE);
                        timer.as_mut().reset(now + CLOSE_GRACE);
                    }
                    _ => rearm(&mut timer, activity, header_timeout, resumed),
                }
            }
            _ = activity.changed.notified(), if closing.is_none() => rearm(&mut timer, activity, header_timeout, resumed),
            _ = shutdown.cancelled(), if !parking && closing.is_none() => {
                Pin::new(&mut conn).graceful_shutdown();
                closing = Some(Instant::now() + SHUTDOWN_WAIT);
                timer.as_mut().reset(Instant::now() + SHUTDOWN_WAIT);
            }
        }
    }
}

/// When to park: `PARK_AFTER` of idleness, but never sooner than `PARK_AFTER` after hyper was
/// (re)started, so a request trickling in is not parked and resumed in a tight loop; and never
/// later than the close deadline.
fn park_deadline(activity: &Activity, header_timeout: Duration, resumed: Instant) -> Option<Instant> {
    let park = Instant::from_std(activity.park_at(header_timeout, PARK_AFTER)?);
    let close = Instant::from_std(activity.deadline(header_timeout)?);
    Some(park.max(resumed + PARK_AFTER).min(close))
}

fn rearm(timer: &mut Pin<&mut tokio::time::Sleep>, activity: &Activity, header_timeout: Duration, resumed: Instant) {
    let at = park_deadline(activity, header_timeout, resumed);
    timer.as_mut().reset(at.unwrap_or_else(|| Instant::now() + header_timeout));
}

/// HTTP/2 until the peer closes, the connection idles past its deadline, or shutdown.
async fn serve_h2<S>(io: S, svc: Arc<Svc>, activity: &Activity, header_timeout: Duration, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let timer = tokio::time::sleep(header_timeout);
    tokio::pin!(timer);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = &mut timer => {
                let now = Instant::now();
                if closing.is_some_and(|at| now >= at) {
                    return;
                }
                match activity.deadline(header_timeout).map(Instant::from_std) {
                    Some(at) if at <= now => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now + CLOSE_GRACE);
                        timer.as_mut().reset(now + CLOSE_GRACE);
                    }
                    Some(at) => timer.as_mut().reset(at),
                    None => timer.as_mut().reset(now + header_timeout),
                }
            }
            _ = activity.changed.notified(), if closing.is_none() => {
                if let Some(at) = activity.deadline(header_timeout) {
                    timer.as_mut().reset(Instant::from_std(at));
                }
            }
            _ = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + SHUTDOWN_WAIT);
            }
        }
    }
}
