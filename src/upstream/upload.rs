//! The client's request body on its way upstream (hyper path): the part read before an
//! upstream connection was taken, then the rest as it arrives, watched so that a slow upload is
//! told from a slow upstream and a trickle is cut.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// The slowest average upload that is waited for, in bytes a second (after `timeout-secs`).
pub const MIN_RATE: u64 = 1024;

/// The client's request body on its way upstream: what was read before the upstream was asked
/// (the whole body, for most requests), then the rest as it arrives, noting when bytes last
/// moved: a slow upload is not a timed-out upstream.
pub struct Upload {
    front: Option<Frame<Bytes>>,
    trailers: Option<Frame<Bytes>>,
    /// `None` once the whole body is in `front`.
    inner: Option<Incoming>,
    progress: Arc<Progress>,
}

/// How the client's body moves: when it last did (in milliseconds since it started), how much
/// of it has come, whether it has ended, and whether it turned out malformed (a failed exchange
/// is then the client's fault, not the upstream's).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    bytes: AtomicU64,
    done: AtomicBool,
    client_failed: AtomicBool,
}

impl Progress {
    /// `done`: the whole body is already in hand.
    pub fn new(done: bool) -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicBool::new(done),
            client_failed: AtomicBool::new(false),
        })
    }

    /// Whether the client's body is still arriving.
    pub fn body_arriving(&self) -> bool {
        !self.done.load(Ordering::Relaxed)
    }

    /// The client's request body could not be read (bad chunked framing, or the client left).
    pub fn client_body_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    fn touch(&self, n: usize) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// When the request stalls if nothing moves from now on: `timeout` after the body last
    /// moved; and while the body is still arriving, also once it falls below `MIN_RATE` on
    /// average (judged after `timeout`), so that a trickle cannot hold an upstream connection
    /// for ever.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        let idle = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout;
        if !self.body_arriving() {
            return idle;
        }
        let paid_for = Duration::from_secs(self.bytes.load(Ordering::Relaxed) / MIN_RATE);
        idle.min(self.start + timeout.max(paid_for))
    }
}

impl Upload {
    /// `front`: the body's first bytes, already read; `trailers`: when the body ended with
    /// them while it was read; `rest`: what has not arrived yet, if anything.
    pub fn new(
        front: Bytes,
        trailers: Option<http::HeaderMap>,
        rest: Option<Incoming>,
        progress: Arc<Progress>,
    ) -> Self {
        Upload {
            front: (!front.is_empty()).then(|| Frame::data(front)),
            trailers: trailers.map(Frame::trailers),
            inner: rest,
            progress,
        }
    }

    /// The body read so far and its trailers, unsent: to send the request again (only whole
    /// bodies are, so this is all of it).
    pub fn buffered(&self) -> (Bytes, Option<http::HeaderMap>) {
        let bytes = self.front.as_ref().and_then(|f| f.data_ref()).cloned().unwrap_or_default();
        let trailers = self.trailers.as_ref().and_then(|f| f.trailers_ref()).cloned();
        (bytes, trailers)
    }
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.front.take().or_else(|| this.trailers.take()) {
            return Poll::Ready(Some(Ok(f)));
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => this.progress.touch(frame.data_ref().map_or(0, |d| d.len())),
            Poll::Ready(Some(Err(_))) => this.progress.client_failed.store(true, Ordering::Relaxed),
            Poll::Ready(None) => this.progress.done.store(true, Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.front.is_none() && self.trailers.is_none() && self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // The front plus what is still to come, so that a body sent with a length goes upstream
        // with that length.
        let front = self.front.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = self.inner.as_ref().map_or(SizeHint::with_exact(0), |i| i.size_hint());
        let mut hint = SizeHint::new();
        hint.set_lower(front + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(front + upper);
        }
        hint
    }
}
