//! The byte stream under HTTP: bytes hyper had read but not parsed are put back in front
//! (`Prefixed`), and a parked connection can wait for the peer without any buffer (`Readiness`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

use super::activity::Activity;

/// Waiting for the peer to send something, holding no read buffer meanwhile.
pub trait Readiness {
    fn wait_readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Readiness for TcpStream {
    async fn wait_readable(&mut self) -> io::Result<()> {
        self.readable().await
    }
}

impl Readiness for UnixStream {
    async fn wait_readable(&mut self) -> io::Result<()> {
        self.readable().await
    }
}

impl<S: Readiness + Send> Readiness for Prefixed<S> {
    async fn wait_readable(&mut self) -> io::Result<()> {
        if self.has_unread() {
            return Ok(());
        }
        self.inner.wait_readable().await
    }
}

impl<S: Readiness + Send> Readiness for TlsStream<S> {
    async fn wait_readable(&mut self) -> io::Result<()> {
        let (inner, tls) = self.get_mut();
        // rustls may already hold decrypted bytes that the socket will never signal again.
        let buffered = tls.process_new_packets().map(|s| s.plaintext_bytes_to_read() > 0).unwrap_or(true);
        if buffered {
            return Ok(());
        }
        inner.wait_readable().await
    }
}

/// The stream under hyper: unread bytes first, and every read and write reported to the
/// connection's `Activity` (a request head arriving; a peer that stopped reading).
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
    activity: Option<Arc<Activity>>,
}

impl<S> Prefixed<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Prefixed { prefix: Bytes::new(), inner, activity: Some(activity) }
    }

    /// Bytes read to decide what the connection speaks, put back for whoever reads next.
    pub fn sniffed(inner: S, prefix: Bytes) -> Self {
        Prefixed { prefix, inner, activity: None }
    }

    /// Puts `bytes` back in front of whatever is still unread.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.freeze();
        }
    }

    pub fn has_unread(&self) -> bool {
        !self.prefix.is_empty()
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if let Some(a) = &self.activity {
                a.on_read();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(a) = &self.activity
        {
            a.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Some(a) = &self.activity {
            a.on_write(r.is_ready());
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Some(a) = &self.activity {
            a.on_write(r.is_ready());
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn unread_bytes_come_first_in_order() {
        let (a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"tail").await.unwrap();
        drop(b);
        let mut p = Prefixed::new(a, Arc::new(Activity::new(std::time::Duration::from_secs(5))));
        p.unread(Bytes::from_static(b"mid-"));
        p.unread(Bytes::from_static(b"head-"));
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "head-mid-tail");
    }
}
