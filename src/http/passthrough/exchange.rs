//! The exchange with the upstream: the request goes out on a pooled connection (or a new one),
//! and the response head comes back.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::buffers::{self, READ_CHUNK};
use super::request::Plan;
use super::response::{self, Head, HeadParse, Shape};
use crate::upstream::Stream;

/// An upstream head this large is refused (on the hyper path too).
const MAX_UPSTREAM_HEAD: usize = crate::upstream::MAX_RESPONSE_HEAD;

/// Why the upstream gave no usable response head (or, from the relay, no usable body before
/// anything was sent).
#[derive(Debug, thiserror::Error)]
pub(super) enum UpstreamFailure {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Busy(crate::upstream::Busy),
}

/// Sends the request and reads the response head: on a pooled connection, or a new one when
/// none is idle or a reused one turns out to have been closed before answering (an idempotent
/// request is then sent once more, as nginx does).
pub(super) async fn exchange(plan: &Plan, shape: &Shape<'_>) -> Result<(Stream, Head, BytesMut), UpstreamFailure> {
    let timeout = plan.proxy.timeout();
    let mut pooled = plan.pool.checkout();
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => plan.pool.dial().await.map_err(UpstreamFailure::Connect)?,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = tokio::time::timeout_at(deadline, conn.write_all(&plan.upstream)).await;
        let mut buf = buffers::take();
        let answer = match sent {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Failed(e.to_string())),
            Ok(Ok(())) => read_head(&mut conn, &mut buf, shape, deadline).await,
        };
        match answer {
            Ok(head) => return Ok((conn, head, buf)),
            Err(UpstreamFailure::Failed(_)) if reused && buf.is_empty() && plan.idempotent => continue,
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
) -> Result<Head, UpstreamFailure> {
    let failed = |why: &str| UpstreamFailure::Failed(why.to_string());
    loop {
        match tokio::time::timeout_at(deadline, conn.read_buf(buf)).await {
            Err(_) => return Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => return Err(UpstreamFailure::Failed(e.to_string())),
            Ok(Ok(0)) => return Err(failed("the upstream closed the connection before a response")),
            Ok(Ok(_)) => {}
        }
        loop {
            match response::parse(buf, shape) {
                HeadParse::Head(head) => {
                    buf.advance(head.len);
                    return Ok(head);
                }
                HeadParse::Interim(n) => buf.advance(n),
                HeadParse::Partial if buf.len() < MAX_UPSTREAM_HEAD => {
                    buf.reserve(READ_CHUNK);
                    break;
                }
                HeadParse::Partial => return Err(failed("response head too large")),
                HeadParse::Invalid => return Err(failed("malformed response head")),
            }
            if buf.is_empty() {
                break;
            }
        }
    }
}
