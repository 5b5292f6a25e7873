//! The HTTP/1 passthrough: plain proxy requests relayed between two sockets without hyper.
//!
//! Most of a reverse proxy's CPU goes on taking each request and response apart and putting it
//! back together (measured: hyper's server and client together cost lwsws three times nginx's
//! user time per proxied request). For the common case, an HTTP/1.1 request with its whole body
//! at hand on a `http://` mount, this module parses the client's head once, writes the
//! upstream's request straight from it, and relays the response's bytes, rewriting only its
//! head (and, for HTML on mounts that rewrite links, the body, through the same rewriter as the
//! hyper path). Everything else (HTTP/1.0, upgrades, `Expect`, streamed uploads, auth, TLS
//! upstreams, tracing) is declined before anything is sent, and the hyper path gets the request
//! exactly as it arrived.
//!
//! Where the two paths differ, on purpose: an idempotent request on a pooled connection that
//! closes without answering is sent once more on a new connection (as nginx does), and an
//! upstream that stalls mid-body for the proxy timeout has the response cut.
//!
//! The behaviour is the hyper path's: the same route lookup, forwarding headers (D13),
//! response headers, error pages, metrics and access log, on the same connection deadlines.

mod buffers;
mod chunked;
mod relay;
mod request;
mod response;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use upstream::RawPool;

use self::relay::{relay, write_all};
use self::request::{Parsed, Plan};
use self::response::{Head, Shape};
use crate::http::activity::Activity;
use crate::http::error::HttpError;
use crate::http::origin::proxy::Stream;
use crate::http::service::ConnCtx;
use crate::listen::io::Prefixed;

/// Reads from either side start with this much room.
const READ_CHUNK: usize = buffers::SIZE;
/// A request head that has not ended by this size goes to hyper (which allows more, or answers
/// 431); an upstream head this large is refused.
const MAX_HEAD: usize = 16 * 1024;
const MAX_UPSTREAM_HEAD: usize = 64 * 1024;

/// How serving one request went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the connection is ready for the next request.
    Served,
    /// The connection is finished: the client closed it, asked for that, or the response had
    /// to be cut.
    Close,
    /// Not for the passthrough: what was read has been put back for hyper.
    Declined,
}

/// Whether any request on this connection could take the passthrough, so that connections
/// that never could skip the extra look at each head.
pub fn applies(ctx: &ConnCtx) -> bool {
    ctx.table.global.passthrough
        && !ctx.redirect_to_https
        && !crate::telemetry::enabled()
        && ctx
            .routes()
            .vhosts
            .iter()
            .any(|v| v.mounts.iter().any(|m| m.proxy.as_ref().is_some_and(|p| p.passthrough().is_some())))
}

/// Reads the next request head and serves it if it can. Call when the client has sent bytes,
/// on a connection `applies` accepted.
/// `shutdown`: once cancelled (server stopping, listener drained), the response says
/// `connection: close` and the connection ends after it, as hyper's do.
pub async fn serve_one<S>(
    io: &mut Prefixed<S>,
    ctx: &ConnCtx,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = buffers::take();
    let plan = loop {
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                // The client left, or a head took longer than `timeout-secs`: as hyper does,
                // close without an answer.
                return Outcome::Close;
            }
            Ok(Ok(_)) => {}
        }
        match request::plan(&buf, ctx) {
            Parsed::Plan(plan) => break plan,
            Parsed::Partial if buf.len() < MAX_HEAD => buf.reserve(READ_CHUNK),
            Parsed::Partial | Parsed::Decline => {
                io.unread(buf.freeze());
                return Outcome::Declined;
            }
        }
    };
    if buf.len() > plan.consumed {
        // Pipelined requests wait their turn in front of the stream.
        io.unread(buf.split_off(plan.consumed).freeze());
    }
    buffers::give(buf);
    let _in_flight = InFlight::begin(&ctx.activity);
    let mut plan = *plan;
    plan.close |= shutdown.is_cancelled();
    serve_planned(io, ctx, plan, timeout).await
}

async fn serve_planned<S>(io: &mut Prefixed<S>, ctx: &ConnCtx, mut plan: Plan, timeout: Duration) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let vhost = plan.vhost.clone();
    let mount = &vhost.mounts[plan.mount];
    let shape = Shape {
        head_request: plan.head_request,
        prefix: &mount.headers,
        close: plan.close,
        links: plan.proxy.links().is_some(),
    };
    let answered = match exchange(&plan, &shape).await {
        Ok((conn, head, rest)) => {
            let status = head.status;
            let header_bytes = head.client.len();
            match relay(io, conn, head, rest, &plan, timeout).await {
                Ok(relayed) => {
                    let outcome = match relayed.result {
                        Ok(()) if plan.close => Outcome::Close,
                        Ok(()) => Outcome::Served,
                        Err(()) => Outcome::Close,
                    };
                    Ok((status, relayed.payload, header_bytes, outcome))
                }
                Err(why) => Err(Failure::Failed(why)),
            }
        }
        Err(failure) => Err(failure),
    };
    let (status, sent, header_bytes, outcome) = match answered {
        Ok(answered) => answered,
        Err(failure) => {
            let (kind, error) = match failure {
                Failure::Connect(e) => {
                    tracing::warn!(upstream = %plan.proxy.upstream_name(), error = %e, "upstream connect failed");
                    ("connect", HttpError::ServiceUnavailable)
                }
                Failure::Timeout => {
                    tracing::warn!(upstream = %plan.proxy.upstream_name(), "upstream timed out");
                    ("timeout", HttpError::GatewayTimeout)
                }
                Failure::Failed(why) => {
                    tracing::warn!(upstream = %plan.proxy.upstream_name(), error = %why, "upstream request failed");
                    ("failed", HttpError::BadGateway)
                }
            };
            ctx.shared.metrics.upstream_error(&vhost.name, &mount.model.mountpoint, kind);
            let (head, page) = error_response(&error, &shape);
            let written = write_all(io, &[&head, page.as_bytes()], timeout).await;
            let outcome = if written.is_err() || plan.close { Outcome::Close } else { Outcome::Served };
            (error.status().as_u16(), page.len() as u64, head.len(), outcome)
        }
    };
    let took = started.elapsed();
    ctx.shared.metrics.record_request_in(&mount.series, &vhost.name, &mount.model.mountpoint, status, sent, took);
    if let (Some(log), Some(mut entry)) = (&vhost.access_log, plan.log.take()) {
        entry.status = status;
        entry.header_bytes = header_bytes as u64;
        log.write(&entry, sent);
    }
    if outcome == Outcome::Close && plan.close {
        let _ = tokio::time::timeout(timeout, io.shutdown()).await;
    }
    outcome
}

/// Why the upstream gave no usable response head.
enum Failure {
    Connect(std::io::Error),
    Timeout,
    Failed(String),
}

/// Sends the request and reads the response head: on a pooled connection, or a new one when
/// none is idle or a reused one turns out to have been closed before answering (an idempotent
/// request is then sent once more, as nginx does).
async fn exchange(plan: &Plan, shape: &Shape<'_>) -> Result<(Stream, Head, BytesMut), Failure> {
    let timeout = plan.proxy.timeout();
    let mut pooled = plan.pool.checkout();
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => plan.pool.dial().await.map_err(Failure::Connect)?,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = tokio::time::timeout_at(deadline, conn.write_all(&plan.upstream)).await;
        let mut buf = buffers::take();
        let answer = match sent {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Failed(e.to_string())),
            Ok(Ok(())) => read_head(&mut conn, &mut buf, shape, deadline).await,
        };
        match answer {
            Ok(head) => return Ok((conn, head, buf)),
            Err(Failure::Failed(_)) if reused && buf.is_empty() && plan.idempotent => continue,
            Err(failure) => return Err(failure),
        }
    }
}

/// Reads until a final response head is complete; interim (1xx) heads are dropped on the way.
async fn read_head(
    conn: &mut Stream,
    buf: &mut BytesMut,
    shape: &Shape<'_>,
    deadline: tokio::time::Instant,
) -> Result<Head, Failure> {
    let failed = |why: &str| Failure::Failed(why.to_string());
    loop {
        match tokio::time::timeout_at(deadline, conn.read_buf(buf)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => return Err(Failure::Failed(e.to_string())),
            Ok(Ok(0)) => return Err(failed("the upstream closed the connection before a response")),
            Ok(Ok(_)) => {}
        }
        loop {
            match response::parse(buf, shape) {
                response::Parsed::Head(head) => {
                    buf.advance(head.len);
                    return Ok(head);
                }
                response::Parsed::Interim(n) => buf.advance(n),
                response::Parsed::Partial if buf.len() < MAX_UPSTREAM_HEAD => {
                    buf.reserve(READ_CHUNK);
                    break;
                }
                response::Parsed::Partial => return Err(failed("response head too large")),
                response::Parsed::Invalid => return Err(failed("malformed response head")),
            }
            if buf.is_empty() {
                break;
            }
        }
    }
}

/// The error page as the hyper path sends it: the route's headers, then the page's own.
fn error_response(error: &HttpError, shape: &Shape) -> (Vec<u8>, String) {
    let page = error.page();
    let mut head = Vec::with_capacity(256);
    response::status_line(&mut head, error.status().as_u16(), "");
    for (n, v) in shape.prefix {
        request::header(&mut head, n.as_str(), v.as_bytes());
    }
    request::header(&mut head, "content-type", b"text/html");
    request::header(&mut head, "content-length", page.len().to_string().as_bytes());
    request::header(&mut head, "date", httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    if shape.close {
        request::header(&mut head, "connection", b"close");
    }
    head.extend_from_slice(b"\r\n");
    let page = if shape.head_request { String::new() } else { page };
    (head, page)
}

/// A request in flight for the connection's timers, however serving it ends.
struct InFlight<'a>(&'a Arc<Activity>);

impl<'a> InFlight<'a> {
    fn begin(activity: &'a Arc<Activity>) -> Self {
        activity.begin();
        InFlight(activity)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}
