//! The response body on its way to the client: relayed in the upstream's framing, or, for HTML
//! whose links are rewritten, decoded, rewritten and sent chunked.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::buffers::{self, READ_CHUNK};
use super::chunked::ChunkedEnd;
use super::request::Plan;
use super::response::{Framing, Head};
use crate::http::io::Prefixed;
use crate::http::origin::rewrite::LinkRewriter;
use crate::upstream::Stream;

pub(super) struct Relayed {
    /// Body bytes the client was given (chunk framing not counted).
    pub payload: u64,
    /// `Err`: the response was cut after its head went out.
    pub result: Result<(), Cut>,
}

/// Why a body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum Cut {
    #[error("the client stopped reading")]
    Client,
    #[error("the upstream closed or stalled mid-body")]
    Upstream,
    #[error("malformed chunked body")]
    Malformed,
    #[error("rewriting HTML: {0}")]
    Rewrite(String),
}

/// Sends the client head and the body as the upstream frames it. The upstream connection goes
/// back to the pool only when the body ended exactly where its framing said. `Err`: the body
/// was unusable before anything was sent, so the client can still be given a 502.
pub(super) async fn relay<S>(
    io: &mut Prefixed<S>,
    mut conn: Stream,
    head: Head,
    mut buf: BytesMut,
    plan: &Plan,
    timeout: Duration,
) -> Result<Relayed, Cut>
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
                if let Err(cut) = write_all(io, &[&out], timeout).await {
                    break Err(cut);
                }
                out.clear();
                if left == 0 {
                    break Ok(());
                }
                if let Err(cut) = read_more(&mut conn, &mut buf, up_timeout).await {
                    break Err(cut);
                }
            }
        }
        Framing::Chunked => {
            let mut scan = ChunkedEnd::default();
            let mut first = true;
            loop {
                let found = match scan.scan(&buf) {
                    Ok(found) => found,
                    Err(_) if first => return Err(Cut::Malformed),
                    Err(_) => break Err(Cut::Malformed),
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
                if let Err(cut) = write_all(io, &[&out], timeout).await {
                    break Err(cut);
                }
                out.clear();
                if end.is_some() {
                    payload = scan.payload();
                    break Ok(());
                }
                if let Err(cut) = read_more(&mut conn, &mut buf, up_timeout).await {
                    payload = scan.payload();
                    break Err(cut);
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
            if let Err(cut) = write_all(io, &[&out], timeout).await {
                break Err(cut);
            }
            out.clear();
            if done {
                break Ok(());
            }
            match tokio::time::timeout(up_timeout, conn.read_buf(&mut buf)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break Err(Cut::Upstream),
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
) -> Result<Relayed, Cut>
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
                    written.map_err(|e| Cut::Rewrite(e.to_string()))
                }
                _ => match rewriter.take() {
                    Some(r) => r.end().map_err(|e| Cut::Rewrite(e.to_string())),
                    None => Ok(Vec::new()),
                },
            },
        };
        // When the whole body is already in hand, the end goes out in the same write.
        let rewritten = match rewritten {
            Ok(mut bytes) if rewriter.is_some() && body.ended_in_buffer(&buf) => {
                let r = rewriter.take().expect("checked above");
                r.end().map_err(|e| Cut::Rewrite(e.to_string())).map(|tail| {
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
                tracing::debug!(upstream = %plan.endpoint.name, error = %why, "response cut");
                break Err(why);
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
            if let Err(cut) = write_all(io, &[&out], timeout).await {
                break Err(cut);
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
    async fn next(&mut self, conn: &mut Stream, buf: &mut BytesMut, timeout: Duration) -> Result<Option<Piece>, Cut> {
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
                    let end = self.chunks.decode(buf, &mut data).map_err(|_| Cut::Malformed)?;
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
                        _ => return Err(Cut::Upstream),
                    }
                }
                Framing::Length(_) | Framing::Chunked => read_more(conn, buf, timeout).await?,
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
async fn read_more(conn: &mut Stream, buf: &mut BytesMut, timeout: Duration) -> Result<(), Cut> {
    buf.reserve(READ_CHUNK);
    match tokio::time::timeout(timeout, conn.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(Cut::Upstream),
    }
}

/// `data` as one chunk of a chunked body.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes to the client; one that stops reading for `timeout-secs` is given up on.
pub(super) async fn write_all<S>(io: &mut Prefixed<S>, parts: &[&[u8]], timeout: Duration) -> Result<(), Cut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for part in parts.iter().filter(|p| !p.is_empty()) {
        match tokio::time::timeout(timeout, io.write_all(part)).await {
            Ok(Ok(())) => {}
            _ => return Err(Cut::Client),
        }
    }
    Ok(())
}
