//! The response body: a queue of in-memory chunks and file ranges, with a hook that runs once
//! when the body is finished with (sent, aborted, or never polled as for HEAD). The hook is how
//! the access log learns the byte count and how the connection learns it is idle again.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Called once with the number of body bytes handed to the connection.
pub type OnDone = Box<dyn FnOnce(u64) + Send + Sync>;

/// Files larger than the cache are streamed in reads of this size.
const FILE_CHUNK: u64 = 256 * 1024;

pub enum Segment {
    Mem(Bytes),
    File { file: Arc<File>, offset: u64, len: u64 },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Mem(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body produced elsewhere (an upstream's response, a CGI's stdout), streamed through.
pub type StreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

#[derive(Default)]
pub struct Body {
    segments: VecDeque<Segment>,
    stream: Option<StreamBody>,
    sent: u64,
    on_done: Option<OnDone>,
}

impl Body {
    pub fn empty() -> Self {
        Body::default()
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let mut b = Body::default();
        if !data.is_empty() {
            b.segments.push_back(Segment::Mem(data));
        }
        b
    }

    pub fn from_segments(segments: Vec<Segment>) -> Self {
        Body { segments: segments.into_iter().filter(|s| s.len() > 0).collect(), stream: None, sent: 0, on_done: None }
    }

    pub fn stream(body: StreamBody) -> Self {
        Body { segments: VecDeque::new(), stream: Some(body), sent: 0, on_done: None }
    }

    pub fn len(&self) -> u64 {
        self.segments.iter().map(Segment::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.stream.is_none()
    }

    /// Adds a completion hook; hooks run in the order they were added.
    pub fn on_done(&mut self, hook: OnDone) {
        self.on_done = Some(match self.on_done.take() {
            None => hook,
            Some(prev) => Box::new(move |n| {
                prev(n);
                hook(n)
            }),
        });
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(hook) = self.on_done.take() {
            hook(self.sent);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(stream) = this.stream.as_mut() {
            return match Pin::new(stream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.sent += d.len() as u64;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
        let Some(seg) = this.segments.pop_front() else {
            return Poll::Ready(None);
        };
        let data = match seg {
            Segment::Mem(b) => b,
            Segment::File { file, offset, len } => {
                // Why a plain read here: the file is almost always in the page cache, where a
                // read costs less than a hop to the blocking pool; small files never get here
                // (they are served from the file cache).
                let n = len.min(FILE_CHUNK);
                let mut buf = vec![0u8; n as usize];
                if let Err(e) = file.read_exact_at(&mut buf, offset) {
                    return Poll::Ready(Some(Err(e)));
                }
                if len > n {
                    this.segments.push_front(Segment::File { file, offset: offset + n, len: len - n });
                }
                Bytes::from(buf)
            }
        };
        this.sent += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.stream {
            Some(s) => s.is_end_stream(),
            None => self.segments.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.stream {
            Some(s) => s.size_hint(),
            None => SizeHint::with_exact(self.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn file_segments_stream_and_hook_reports_bytes() {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, &vec![7u8; 600_000]).unwrap();
        let file = Arc::new(tmp);
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let mut body = Body::from_segments(vec![
            Segment::Mem(Bytes::from_static(b"ab")),
            Segment::File { file, offset: 10, len: 500_000 },
        ]);
        body.on_done(Box::new(move |n| s2.store(n, Ordering::SeqCst)));
        assert_eq!(body.len(), 500_002);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 500_002);
        assert_eq!(seen.load(Ordering::SeqCst), 500_002);
    }
}
