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
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::connect::Connector;
use super::idle::IdleConns;
use super::upload::Upload;
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
    /// The response is cut when the upstream sends nothing for this long mid-body (as the
    /// passthrough cuts it), so a stalled upstream holds neither the client nor the turn.
    idle: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    /// An upstream failure, held back one poll so that hyper flushes what already arrived.
    failed: Option<BoxError>,
}

impl Driven {
    pub fn new(body: Incoming, conn: Conn, pool: Arc<Pool>) -> Self {
        Driven { body, conn: Some(conn), pool, turn: None, idle: None, failed: None }
    }

    /// Cuts the response when the upstream sends nothing for `timeout` mid-body.
    pub fn cut_after(mut self, timeout: Duration) -> Self {
        self.idle = Some((Box::pin(tokio::time::sleep(timeout)), timeout));
        self
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
        if let Some((sleep, timeout)) = this.idle.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(_))) => sleep.as_mut().reset(tokio::time::Instant::now() + *timeout),
                Poll::Pending if sleep.as_mut().poll(cx).is_ready() => {
                    // Neither the connection nor the turn is kept for an upstream that stalled.
                    this.conn = None;
                    this.turn = None;
                    this.idle = None;
                    return Poll::Ready(Some(Err("the upstream stalled mid-body".into())));
                }
                _ => {}
            }
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
