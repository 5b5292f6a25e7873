//! Serving HTTP on an accepted (and maybe TLS) stream.
//!
//! HTTP/2 (TLS with ALPN `h2`) runs one hyper connection to the end. HTTP/1 runs hyper only
//! while there is work: a connection starts *parked* (just the socket, waiting for readability),
//! a hyper connection serves the requests that arrive, and once it has been idle for
//! `PARK_AFTER` hyper is stopped (its buffers freed, bytes it read but did not parse put back)
//! and the connection parks again. An idle keep-alive connection is thus a socket and a small
//! task. The deadlines come from `Activity`: `timeout-secs` for a request head and for a peer
//! that stops reading, keep-alive for an idle connection.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::activity::{Activity, Next};
use crate::http::conn::ConnCtx;
use crate::http::io::{Prefixed, Readiness};
use crate::http::passthrough::{self, Outcome};
use crate::http::service::{self, Reply};
use crate::lifecycle::Lifecycle;
use crate::wire::body::Body;
use crate::wire::upgrade::UpgradeSlot;

/// Idle time after which an HTTP/1 connection gives up hyper's buffers. Short, because the
/// buffers of a burst of connections that go idle together otherwise fragment the heap for good
/// (measured: 13 KiB per idle connection at 250 ms, 2.5 KiB at 5 ms); a client that sends its
/// next request later than this only costs a fresh hyper state (no measurable loss under wrk).
const PARK_AFTER: Duration = Duration::from_millis(5);

type Svc = dyn Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future = Reply> + Send + Sync;

pub async fn serve<S>(io: S, first: Bytes, ctx: ConnCtx, h2: bool, timeout: Duration, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let activity = ctx.activity.clone();
    let ctx = Arc::new(ctx);
    let conn_ctx = ctx.clone();
    let svc: Arc<Svc> = Arc::new(service_fn(move |req| service::handle(&ctx, req)));
    let mut io = Prefixed::new(io, activity.clone());
    io.unread(first);
    if h2 {
        // Boxed: hyper's HTTP/2 state is large, and an HTTP/1 task should not carry its size.
        let shared = conn_ctx.shared.clone();
        return Box::pin(serve_h2(io, svc, &activity, timeout, shutdown, &shared.lifecycle)).await;
    }
    let passthrough = passthrough::applies(&conn_ctx);
    loop {
        if !io.has_unread() {
            let deadline = Instant::from_std(activity.close_at(timeout));
            tokio::select! {
                r = io.inner_mut().wait_readable() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.cancelled() => return,
            }
        }
        if passthrough {
            // Boxed: an idle connection's task should not carry a request's state.
            match Box::pin(passthrough::serve_one(&mut io, &conn_ctx, timeout, shutdown)).await {
                Outcome::Served if shutdown.is_cancelled() => return,
                Outcome::Served => continue,
                Outcome::Close => return,
                Outcome::Declined => {}
            }
        }
        let max_head = conn_ctx.table.global.max_head;
        io = match Box::pin(h1_session(io, svc.clone(), &activity, &conn_ctx.upgrade, timeout, max_head, shutdown))
            .await
        {
            SessionEnd::Closed => return,
            SessionEnd::Parked(io) => io,
            SessionEnd::Upgraded(io) => {
                // hyper wrote a 101; the request left what runs on the stream now.
                if let Some(run) = conn_ctx.upgrade.take() {
                    run(Box::new(io)).await;
                }
                return;
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// How an HTTP/1 session with hyper ended. `Parked` and `Upgraded` hand the stream back with
/// any bytes hyper read but did not parse put back in front.
enum SessionEnd<S> {
    Closed,
    Parked(Prefixed<S>),
    Upgraded(Prefixed<S>),
}

/// Runs hyper on `io` until the connection ends, switches protocols, or has been idle long
/// enough to park.
async fn h1_session<S>(
    io: Prefixed<S>,
    svc: Arc<Svc>,
    activity: &Activity,
    upgrade: &UpgradeSlot,
    timeout: Duration,
    max_head: usize,
    shutdown: &CancellationToken,
) -> SessionEnd<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // No pipeline_flush: with it, hyper 1.12 never flushes the 400 it writes for a malformed
    // request (tests/static_files.rs, malformed_requests_get_4xx_never_a_crash).
    let mut conn =
        http1::Builder::new().keep_alive(true).max_buf_size(max_head).serve_connection(TokioIo::new(io), svc);
    // hyper can only be stopped cleanly between messages, which a fresh connection is not
    // until it has answered one: parking waits for that.
    let served_before = activity.served();
    let timer = tokio::time::sleep(timeout);
    tokio::pin!(timer);
    let mut parking = false;
    let mut stopping = false;
    // Once hyper has been asked to stop and has nothing left to do, how long it may take.
    let mut give_up: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match activity.next(timeout) {
            Next::Stalled => return SessionEnd::Closed,
            Next::Busy(at) => timer.as_mut().reset(Instant::from_std(at)),
            Next::ReadingHead(by) => {
                let by = Instant::from_std(by);
                if now >= by {
                    return SessionEnd::Closed;
                }
                timer.as_mut().reset(by);
            }
            Next::Idle(since) => {
                let park_at = Instant::from_std(since) + PARK_AFTER;
                if parking || stopping {
                    let at = *give_up.get_or_insert(now + timeout);
                    if now >= at {
                        return SessionEnd::Closed;
                    }
                    timer.as_mut().reset(at);
                } else if activity.served() == served_before {
                    // Woken for bytes that were not a request (or nothing): the idle deadline.
                    let close = Instant::from_std(activity.close_at(timeout));
                    if now >= close {
                        return SessionEnd::Closed;
                    }
                    timer.as_mut().reset(close);
                } else if now >= park_at {
                    Pin::new(&mut conn).graceful_shutdown();
                    parking = true;
                    timer.as_mut().reset(now + timeout);
                } else {
                    timer.as_mut().reset(park_at);
                }
            }
        }
        tokio::select! {
            res = poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/1 connection ended with an error");
                    return SessionEnd::Closed;
                }
                let upgraded = !parking && !stopping && upgrade.is_set();
                if !parking && !upgraded {
                    return SessionEnd::Closed;
                }
                let parts = conn.into_parts();
                let mut io = parts.io.into_inner();
                io.unread(parts.read_buf);
                return if upgraded { SessionEnd::Upgraded(io) } else { SessionEnd::Parked(io) };
            }
            _ = &mut timer => {}
            _ = activity.changed.notified() => {}
            _ = shutdown.cancelled(), if !stopping => {
                Pin::new(&mut conn).graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// HTTP/2 until the peer closes, the connection idles past keep-alive (GOAWAY), a peer stops
/// reading, or shutdown. While the process drains, a connection is sent GOAWAY once it has
/// answered a request (HTTP/1's `connection: close` on its response): the client opens its
/// next connection through the load balancer. An idle one is left for the stop.
async fn serve_h2<S>(
    io: Prefixed<S>,
    svc: Arc<Svc>,
    activity: &Activity,
    timeout: Duration,
    shutdown: &CancellationToken,
    lifecycle: &Lifecycle,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let timer = tokio::time::sleep(timeout);
    tokio::pin!(timer);
    let mut goaway: Option<Instant> = None;
    // Requests answered when the drain began.
    let mut drain_mark: Option<u64> = None;
    loop {
        let now = Instant::now();
        if goaway.is_none() && drain_mark.is_some_and(|m| activity.served() > m) {
            conn.as_mut().graceful_shutdown();
            goaway = Some(now);
        }
        match activity.next(timeout) {
            Next::Stalled => return,
            Next::Busy(at) => timer.as_mut().reset(Instant::from_std(at)),
            // Frames that are not requests (SETTINGS, PING) do not start a head timeout.
            Next::ReadingHead(_) | Next::Idle(_) => match goaway {
                Some(sent) if now >= sent + timeout => return,
                Some(sent) => timer.as_mut().reset(sent + timeout),
                None => {
                    let close = Instant::from_std(activity.close_at(timeout));
                    if now >= close {
                        conn.as_mut().graceful_shutdown();
                        goaway = Some(now);
                        timer.as_mut().reset(now + timeout);
                    } else {
                        timer.as_mut().reset(close);
                    }
                }
            },
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = &mut timer => {}
            _ = activity.changed.notified() => {}
            _ = shutdown.cancelled(), if goaway.is_none() => {
                conn.as_mut().graceful_shutdown();
                goaway = Some(Instant::now() + Duration::from_secs(3600));
            }
            _ = lifecycle.told_to_stop(), if drain_mark.is_none() => drain_mark = Some(activity.served()),
        }
    }
}
