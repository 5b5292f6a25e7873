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
mod request;
mod response;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use upstream::RawPool;

use self::chunked::ChunkedEnd;
use self::request::{Parsed, Plan};
use self::response::{Framing, Head, Shape};
use crate::http::activity::Activity;
use crate::http::error::HttpError;
use crate::http::origin::proxy::Stream;
use crate::http::origin::rewrite::LinkRewriter;
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

/// Reads the next request head and serves it if it can. Call when the client has sent bytes.
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
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(())) => read_head(&mut conn, &mut buf, shape, deadline).await,
        };
        match answer {
            Ok(head) => return Ok((conn, head, buf)),
            Err(why) if why == TIMED_OUT => return Err(Failure::Timeout),
            Err(_) if reused && buf.is_empty() && plan.idempotent => continue,
            Err(why) => return Err(Failure::Failed(why)),
        }
    }
}

const TIMED_OUT: &str = "timed out";

/// Reads until a final response head is complete; interim (1xx) heads are dropped on the way.
async fn read_head(
    conn: &mut Stream,
    buf: &mut BytesMut,
    shape: &Shape<'_>,
    deadline: tokio::time::Instant,
) -> Result<Head, String> {
    loop {
        match tokio::time::timeout_at(deadline, conn.read_buf(buf)).await {
            Err(_) => return Err(TIMED_OUT.to_string()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err("the upstream closed the connection before a response".to_string()),
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
                response::Parsed::Partial => return Err("response head too large".to_string()),
                response::Parsed::Invalid => return Err("malformed response head".to_string()),
            }
            if buf.is_empty() {
                break;
            }
        }
    }
}

struct Relayed {
    /// Body bytes the client was given (chunk framing not counted).
    payload: u64,
    result: Result<(), ()>,
}

/// Sends the client head and the body as the upstream frames it. The upstream connection goes
/// back to the pool only when the body ended exactly where its framing said. `Err`: the body
/// was unusable before anything was sent, so the client can still be given a 502.
async fn relay<S>(
    io: &mut Prefixed<S>,
    mut conn: Stream,
    head: Head,
    mut buf: BytesMut,
    plan: &Plan,
    timeout: Duration,
) -> Result<Relayed, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if head.rewrite {
        return relay_rewritten(io, conn, head, buf, plan, timeout).await;
    }
    let up_timeout = plan.proxy.timeout();
    let mut out = head.client;
    let mut payload = 0u64;
    let mut clean_end = buf.is_empty();
    let result = match head.framing {
        Framing::Empty => write_all(io, &[&out], timeout).await,
        Framing::Length(len) => {
            let mut left = len;
            loop {
                let take = (buf.len() as u64).min(left) as usize;
                out.extend_from_slice(&buf[..take]);
                left -= take as u64;
                payload += take as u64;
                clean_end = buf.len() == take;
                buf.clear();
                if write_all(io, &[&out], timeout).await.is_err() {
                    break Err(());
                }
                out.clear();
                if left == 0 {
                    break Ok(());
                }
                if read_more(&mut conn, &mut buf, up_timeout).await.is_err() {
                    break Err(());
                }
            }
        }
        Framing::Chunked => {
            let mut scan = ChunkedEnd::default();
            let mut first = true;
            loop {
                let found = match scan.scan(&buf) {
                    Ok(found) => found,
                    Err(_) if first => return Err("malformed chunked body".to_string()),
                    Err(_) => break Err(()),
                };
                first = false;
                let end = found.end;
                out.extend_from_slice(&buf[..found.forward]);
                if end.is_some() {
                    // The trailer section stays behind: an empty one ends the body.
                    out.extend_from_slice(b"\r\n");
                }
                clean_end = end.is_none_or(|n| n == buf.len());
                buf.clear();
                if write_all(io, &[&out], timeout).await.is_err() {
                    break Err(());
                }
                out.clear();
                if end.is_some() {
                    payload = scan.payload();
                    break Ok(());
                }
                if read_more(&mut conn, &mut buf, up_timeout).await.is_err() {
                    payload = scan.payload();
                    break Err(());
                }
            }
        }
        Framing::UntilClose => loop {
            let done = buf.is_empty();
            if !done {
                chunk(&mut out, &buf);
                payload += buf.len() as u64;
                buf.clear();
            } else {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if write_all(io, &[&out], timeout).await.is_err() {
                break Err(());
            }
            out.clear();
            if done {
                break Ok(());
            }
            match tokio::time::timeout(up_timeout, conn.read_buf(&mut buf)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break Err(()),
            }
        },
    };
    if result.is_ok() && head.reusable && clean_end {
        plan.pool.checkin(conn);
    }
    buffers::give(buf);
    Ok(Relayed { payload, result })
}

/// An HTML body whose links are rewritten (D11): its payload is taken out of the upstream's
/// framing, rewritten as it streams, and sent to the client in chunks. `Err`: it failed before
/// anything was sent, so the client can still be given a 502.
async fn relay_rewritten<S>(
    io: &mut Prefixed<S>,
    mut conn: Stream,
    head: Head,
    mut buf: BytesMut,
    plan: &Plan,
    timeout: Duration,
) -> Result<Relayed, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let map = plan.proxy.links().expect("only mounts that rewrite links get rewritten heads");
    let mut rewriter = Some(LinkRewriter::new(map));
    let mut body = Payload::new(head.framing);
    let mut out = head.client;
    let mut head_sent = false;
    let mut sent = 0u64;
    let result = loop {
        let rewritten = match body.next(&mut conn, &mut buf, plan.proxy.timeout()).await {
            Err(why) => Err(why),
            Ok(piece) => match (piece, rewriter.as_mut()) {
                (Some(piece), Some(r)) => {
                    let written = match piece {
                        Piece::Front(n) => {
                            let w = r.write(&buf[..n]);
                            buf.advance(n);
                            w
                        }
                        Piece::Decoded(data) => r.write(&data),
                    };
                    written.map_err(|e| format!("rewriting HTML: {e}"))
                }
                _ => match rewriter.take() {
                    Some(r) => r.end().map_err(|e| format!("rewriting HTML: {e}")),
                    None => Ok(Vec::new()),
                },
            },
        };
        // When the whole body is already in hand, the end goes out in the same write.
        let rewritten = match rewritten {
            Ok(mut bytes) if rewriter.is_some() && body.ended_in_buffer(&buf) => {
                let r = rewriter.take().expect("checked above");
                r.end().map_err(|e| format!("rewriting HTML: {e}")).map(|tail| {
                    bytes.extend_from_slice(&tail);
                    bytes
                })
            }
            other => other,
        };
        let rewritten = match rewritten {
            Ok(bytes) => bytes,
            Err(why) if !head_sent => return Err(why),
            Err(why) => {
                tracing::debug!(upstream = %plan.proxy.upstream_name(), error = %why, "response cut");
                break Err(());
            }
        };
        if !rewritten.is_empty() {
            chunk(&mut out, &rewritten);
            sent += rewritten.len() as u64;
        }
        let ended = rewriter.is_none();
        if ended {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if !out.is_empty() {
            if write_all(io, &[&out], timeout).await.is_err() {
                break Err(());
            }
            head_sent = true;
        }
        out.clear();
        if ended {
            break Ok(());
        }
    };
    if result.is_ok() && head.reusable && body.clean_end {
        plan.pool.checkin(conn);
    }
    buffers::give(buf);
    Ok(Relayed { payload: sent, result })
}

/// A piece of payload: the first bytes of the read buffer, or bytes taken out of chunks.
enum Piece {
    Front(usize),
    Decoded(Vec<u8>),
}

/// An upstream body's payload, piece by piece, whatever its framing.
struct Payload {
    framing: Framing,
    left: u64,
    chunks: ChunkedEnd,
    done: bool,
    /// The body ended and nothing came after it.
    clean_end: bool,
}

impl Payload {
    fn new(framing: Framing) -> Self {
        let left = if let Framing::Length(n) = framing { n } else { 0 };
        Payload { framing, left, chunks: ChunkedEnd::default(), done: false, clean_end: false }
    }

    /// The next piece of payload, `None` once the body has ended. `buf` holds what has been
    /// read of the body and not yet used; a `Front` piece is used once the caller advances
    /// past it.
    async fn next(
        &mut self,
        conn: &mut Stream,
        buf: &mut BytesMut,
        timeout: Duration,
    ) -> Result<Option<Piece>, String> {
        let cut = || "the upstream closed or stalled mid-body".to_string();
        loop {
            if self.done {
                return Ok(None);
            }
            match self.framing {
                Framing::Empty => self.finish(buf),
                Framing::Length(_) if self.left == 0 => self.finish(buf),
                Framing::Length(_) if !buf.is_empty() => {
                    let take = (buf.len() as u64).min(self.left) as usize;
                    self.left -= take as u64;
                    return Ok(Some(Piece::Front(take)));
                }
                Framing::Chunked if !buf.is_empty() => {
                    let mut data = Vec::new();
                    let end = self.chunks.decode(buf, &mut data).map_err(|_| "malformed chunked body".to_string())?;
                    match end {
                        Some(end) => {
                            buf.advance(end);
                            self.finish(buf);
                        }
                        None => buf.clear(),
                    }
                    if !data.is_empty() {
                        return Ok(Some(Piece::Decoded(data)));
                    }
                }
                Framing::UntilClose if !buf.is_empty() => return Ok(Some(Piece::Front(buf.len()))),
                Framing::UntilClose => {
                    buf.reserve(READ_CHUNK);
                    match tokio::time::timeout(timeout, conn.read_buf(buf)).await {
                        Ok(Ok(0)) => self.done = true,
                        Ok(Ok(_)) => {}
                        _ => return Err(cut()),
                    }
                }
                Framing::Length(_) | Framing::Chunked => read_more(conn, buf, timeout).await.map_err(|_| cut())?,
            }
        }
    }

    /// The body has ended with what is in `buf`: the next piece would be `None` without a read.
    fn ended_in_buffer(&mut self, buf: &BytesMut) -> bool {
        if matches!(self.framing, Framing::Length(_) | Framing::Empty) && self.left == 0 && !self.done {
            self.finish(buf);
        }
        self.done
    }

    fn finish(&mut self, buf: &BytesMut) {
        self.done = true;
        self.clean_end = buf.is_empty();
    }
}

/// More of the upstream's body; an upstream that closes or stalls mid-body cuts the response.
async fn read_more(conn: &mut Stream, buf: &mut BytesMut, timeout: Duration) -> Result<(), ()> {
    buf.reserve(READ_CHUNK);
    match tokio::time::timeout(timeout, conn.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(()),
    }
}

/// `data` as one chunk of a chunked body.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes to the client; one that stops reading for `timeout-secs` is given up on.
async fn write_all<S>(io: &mut Prefixed<S>, parts: &[&[u8]], timeout: Duration) -> Result<(), ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for part in parts.iter().filter(|p| !p.is_empty()) {
        match tokio::time::timeout(timeout, io.write_all(part)).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
    }
    Ok(())
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
