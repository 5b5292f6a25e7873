//! The upstream connections of one endpoint as the hyper path uses them, driven inline.
//!
//! hyper's pooled client runs every upstream connection as a task of its own and spawns another
//! per request to hand the connection back; this pool instead polls the connection from the
//! request (until the head arrives) and then from the response body (while it streams), so a
//! proxied request stays on the client connection's task. A connection goes back to the pool
//! when its response has been read to the end; a half-read one is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::connect::Connector;
use super::idle::IdleConns;
use crate::wire::body::BoxError;

type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

pub struct Conn {
    sender: http1::SendRequest<Upload>,
    driver: Driver,
    done: bool,
}

impl Conn {
    /// Polls the connection once: true while it is still alive.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && self.driver.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
        !self.done
    }
}

/// Why a request got no response head from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("{0}")]
    Upstream(hyper::Error),
}

pub struct Pool {
    idle: IdleConns<Conn>,
    connector: Connector,
}

impl Pool {
    pub fn new(connector: Connector) -> Self {
        Pool { idle: IdleConns::default(), connector }
    }

    async fn connect(&self, upgrade: bool) -> Result<Conn, SendError> {
        let io = self.connector.dial().await.map_err(SendError::Connect)?;
        // The passthrough's limit on a response head, so that both paths refuse the same heads.
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(super::MAX_RESPONSE_HEAD)
            .handshake(io)
            .await
            .map_err(SendError::Upstream)?;
        let driver: Driver = if upgrade { Box::pin(conn.with_upgrades()) } else { Box::pin(conn) };
        Ok(Conn { sender, driver, done: false })
    }

    /// An idle connection that is still open and ready.
    fn checkout(&self) -> Option<Conn> {
        // A peer that closed an idle connection shows as a finished driver.
        self.idle.take(|conn| conn.drive(&mut Context::from_waker(Waker::noop())) && conn.sender.is_ready())
    }

    /// Keeps `conn` for the next request if it is ready for one (a connection still writing a
    /// request body the upstream did not wait for is not). Expired entries go at the same time,
    /// so a burst's leftovers do not hold sockets open.
    fn checkin(&self, conn: Conn) {
        if conn.done || !conn.sender.is_ready() {
            return;
        }
        self.idle.put(conn);
    }

    /// A response with no body to read (HEAD, 204, 304, a zero length): its connection is
    /// done with at once.
    pub fn release(&self, mut conn: Conn) {
        conn.drive(&mut Context::from_waker(Waker::noop()));
        self.checkin(conn);
    }

    /// Sends `req` on a pooled connection (retrying once on a fresh one if a reused connection
    /// turned out closed before the request left), and returns the response with its connection.
    pub async fn send(&self, req: Request<Upload>, upgrade: bool) -> Result<(Response<Incoming>, Conn), SendError> {
        let reused = if upgrade { None } else { self.checkout() };
        let fresh = reused.is_none();
        let mut conn = match reused {
            Some(c) => c,
            None => self.connect(upgrade).await?,
        };
        match exchange(&mut conn, req).await {
            Ok(resp) => Ok((resp, conn)),
            Err(mut e) => match e.take_message() {
                Some(req) if !fresh => {
                    let mut conn = self.connect(upgrade).await?;
                    exchange(&mut conn, req).await.map(|r| (r, conn)).map_err(|e| SendError::Upstream(e.into_error()))
                }
                _ => Err(SendError::Upstream(e.into_error())),
            },
        }
    }
}

async fn exchange(
    conn: &mut Conn,
    req: Request<Upload>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Upload>>> {
    let fut = conn.sender.try_send_request(req);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = &mut conn.driver, if !conn.done => conn.done = true,
        }
    }
}

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

/// When the request last made progress, in milliseconds since it started, and whether the
/// client's body turned out malformed (a failed exchange is then the client's fault, not the
/// upstream's).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_ms: std::sync::atomic::AtomicU64,
    client_failed: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            client_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The client's request body could not be read (bad chunked framing, or the client left).
    pub fn client_body_failed(&self) -> bool {
        self.client_failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the request stalls if nothing moves from now on.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed)) + timeout
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
            Poll::Ready(Some(Ok(_))) => this.progress.touch(),
            Poll::Ready(Some(Err(_))) => this.progress.client_failed.store(true, std::sync::atomic::Ordering::Relaxed),
            _ => {}
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

/// An upgraded (101) response's connection finishes its handover on a task of its own.
pub fn finish_upgrade(conn: Conn) {
    if !conn.done {
        tokio::spawn(conn.driver);
    }
}

/// The upstream's response body; polling it also drives the connection, which goes back to
/// the pool once the body has ended.
pub struct Driven {
    body: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// The endpoint's turn, given back when the body is done with.
    turn: Option<super::limit::Turn>,
    /// An upstream failure, held back one poll so that hyper flushes what already arrived.
    failed: Option<BoxError>,
}

impl Driven {
    pub fn new(body: Incoming, conn: Conn, pool: Arc<Pool>) -> Self {
        Driven { body, conn: Some(conn), pool, turn: None, failed: None }
    }

    /// Holds `turn` until the body has been read to its end (or dropped).
    pub fn holding(mut self, turn: super::limit::Turn) -> Self {
        self.turn = Some(turn);
        self
    }
}

impl http_body::Body for Driven {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        // The body first, so that it asks for data; then the connection, which delivers it.
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = this.conn.as_mut()
            && !conn.done
        {
            conn.drive(cx);
            polled = Pin::new(&mut this.body).poll_frame(cx);
        }
        let ended = matches!(polled, Poll::Ready(None)) || (polled.is_ready() && this.body.is_end_stream());
        let failed = matches!(polled, Poll::Ready(Some(Err(_))));
        if ended || failed {
            this.turn = None;
        }
        if (ended || failed)
            && let Some(mut conn) = this.conn.take()
            && ended
            && conn.drive(cx)
        {
            // Read to the end and still open: ready for the next request.
            this.pool.checkin(conn);
        }
        match polled {
            Poll::Ready(Some(Err(e))) => {
                // hyper drops its unflushed output when a body fails: yield once so that the
                // bytes the upstream did send reach the client before the response is cut.
                this.failed = Some(Box::new(e));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other.map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
