//! Serving one request on the passthrough: read the head, route it (`request::plan`), exchange
//! with the upstream, relay the answer, and record it as the hyper path would (metrics, access
//! log, the connection's timers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::buffers::{self, READ_CHUNK};
use super::exchange::{UpstreamFailure, exchange};
use super::relay::{relay, write_all};
use super::request::{self, Plan, Planned};
use super::response::{self, Shape};
use crate::http::activity::Activity;
use crate::http::conn::ConnCtx;
use crate::http::io::Prefixed;
use crate::wire::error::HttpError;

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
            .any(|v| v.mounts.iter().any(|m| m.proxy.as_ref().is_some_and(|p| p.passthrough())))
}

/// Reads the next request head and serves it if it can. Call when the client has sent bytes,
/// on a connection `applies` accepted.
/// `shutdown`: once cancelled (server stopping, listener drained), or once the process is
/// draining, the response says `connection: close` and the connection ends after it, as
/// hyper's do.
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
            Planned::Plan(plan) => break plan,
            // A head that has not ended by the passthrough's buffer (16 KiB) or by
            // `max-request-head`, whichever is less, goes to hyper: it serves the heads between
            // the two and answers 431 beyond the limit.
            Planned::Partial if buf.len() < ctx.table.global.max_head.min(buffers::SIZE) => buf.reserve(READ_CHUNK),
            Planned::Partial | Planned::Decline => {
                io.unread(buf.freeze());
                return Outcome::Declined;
            }
            Planned::Refuse(why) => {
                buffers::give(buf);
                let shape = Shape { head_request: false, prefix: &[], close: true, links: false };
                let (head, page) = error_response(&HttpError::BadRequest(why), &shape);
                let _ = write_all(io, &[&head, page.as_bytes()], timeout).await;
                let _ = tokio::time::timeout(timeout, io.shutdown()).await;
                return Outcome::Close;
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
    // Draining or stopping: this is the connection's last response (see `respond::finish`).
    plan.close |= shutdown.is_cancelled() || ctx.shared.lifecycle.ending();
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
    // A turn at the endpoint for the whole exchange, as on the hyper path.
    let mut turn = plan.endpoint.limit.enter(plan.proxy.timeout()).await;
    let mut exchanged = match &turn {
        Ok(_) => exchange(&plan, &shape).await,
        Err(busy) => Err(UpstreamFailure::Busy(busy.clone())),
    };
    let mut resends = 0;
    while let Err(UpstreamFailure::Connect(e)) = &exchanged {
        // An endpoint that refuses is passed over for a while; an idempotent request goes to
        // another of the Service's, as on the hyper path.
        plan.endpoint.set_aside(crate::upstream::SET_ASIDE);
        if resends == crate::upstream::RESENDS {
            break;
        }
        resends += 1;
        let Some(next) = plan.idempotent.then(|| plan.picked.another()).flatten() else { break };
        let Some(pool) = next.endpoint.raw.clone() else { break };
        tracing::info!(upstream = %plan.endpoint.name, error = %e, next = %next.endpoint.name,
            "endpoint refused the connection; trying another");
        (plan.endpoint, plan.pool, plan.picked) = (next.endpoint.clone(), pool, next);
        turn = plan.endpoint.limit.enter(plan.proxy.timeout()).await;
        exchanged = match &turn {
            Ok(_) => exchange(&plan, &shape).await,
            Err(busy) => Err(UpstreamFailure::Busy(busy.clone())),
        };
    }
    let answered = match exchanged {
        Ok((conn, head, rest)) => {
            let status = head.status;
            let header_bytes = head.client.len();
            match relay(io, conn, head, rest, &plan, timeout).await {
                Ok(relayed) => {
                    let outcome = match relayed.result {
                        Ok(()) if plan.close => Outcome::Close,
                        Ok(()) => Outcome::Served,
                        Err(_) => Outcome::Close,
                    };
                    Ok((status, relayed.payload, header_bytes, outcome))
                }
                Err(why) => Err(UpstreamFailure::Failed(why.to_string())),
            }
        }
        Err(failure) => Err(failure),
    };
    let (status, sent, header_bytes, outcome) = match answered {
        Ok(answered) => answered,
        Err(failure) => {
            let (kind, error) = match failure {
                UpstreamFailure::Connect(e) => {
                    tracing::warn!(upstream = %plan.endpoint.name, error = %e, "upstream connect failed");
                    ("connect", HttpError::ServiceUnavailable)
                }
                UpstreamFailure::Timeout => {
                    tracing::warn!(upstream = %plan.endpoint.name, "upstream timed out");
                    ("timeout", HttpError::GatewayTimeout)
                }
                UpstreamFailure::Failed(why) => {
                    tracing::warn!(upstream = %plan.endpoint.name, error = %why, "upstream request failed");
                    ("failed", HttpError::BadGateway)
                }
                UpstreamFailure::Busy(busy) => {
                    tracing::warn!(upstream = %plan.endpoint.name, reason = %busy, "upstream busy");
                    ("busy", HttpError::ServiceUnavailable)
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
