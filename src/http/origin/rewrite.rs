//! D11: links in proxied `text/html` are rewritten so that the origin's URL, or a root-relative
//! path, points under the mountpoint instead, as the lwsws README describes. Streamed through
//! lol_html (a real HTML tokenizer), chunk by chunk; never a regex over the document.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body::{Frame, SizeHint};
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{OutputSink, Selector};
use parking_lot::Mutex;

use crate::http::forward::is_header_text;
use crate::upstream::LinkMap;
use crate::wire::body::{BoxError, StreamBody};

/// `text/html` that is not compressed: the only bodies whose links are rewritten.
pub fn is_plain_html(h: &HeaderMap) -> bool {
    is_plain_html_by(
        h.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        h.get(header::CONTENT_ENCODING).map(HeaderValue::as_bytes),
    )
}

/// `is_plain_html` from the first `Content-Type` and `Content-Encoding` values.
pub fn is_plain_html_by(content_type: Option<&[u8]>, content_encoding: Option<&[u8]>) -> bool {
    let html = content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| is_header_text(v.as_bytes()))
        .is_some_and(|t| t.trim_start().get(..9).is_some_and(|p| p.eq_ignore_ascii_case("text/html")));
    let encoded = content_encoding.is_some_and(|v| v != b"identity");
    html && !encoded
}

/// The attributes that carry links, with their selectors parsed once (parsing them per
/// response showed up in profiles).
static SELECTORS: LazyLock<[(&str, Selector); 3]> =
    LazyLock::new(|| ["href", "src", "action"].map(|n| (n, format!("[{n}]").parse().expect("a valid selector"))));

struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0.lock().extend_from_slice(chunk);
    }
}

/// Rewrites an HTML document handed over in pieces: each `write` returns what is ready.
pub struct LinkRewriter {
    /// Boxed: lol_html's rewriter is large, and the futures that hold one should not be.
    rewriter: Box<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl LinkRewriter {
    pub fn new(map: &LinkMap) -> Self {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut settings = Settings::new_send();
        for (name, selector) in SELECTORS.iter() {
            let map = map.clone();
            let handler = move |el: &mut lol_html::send::Element<'_, '_>| -> lol_html::HandlerResult {
                if let Some(v) = el.get_attribute(name)
                    && let Some(new) = map.map(&v)
                {
                    el.set_attribute(name, &new)?;
                }
                Ok(())
            };
            settings = settings.append_element_content_handler((
                Cow::Borrowed(selector),
                ElementContentHandlers::default().element(handler),
            ));
        }
        LinkRewriter { rewriter: Box::new(HtmlRewriter::new(settings, Sink(out.clone()))), out }
    }

    /// The next piece of the document; what it lets the rewriter finish comes back.
    pub fn write(&mut self, data: &[u8]) -> Result<Vec<u8>, RewritingError> {
        self.rewriter.write(data)?;
        Ok(self.take())
    }

    /// The end of the document: the rest of the output.
    pub fn end(self) -> Result<Vec<u8>, RewritingError> {
        let LinkRewriter { rewriter, out } = self;
        rewriter.end()?;
        Ok(std::mem::take(&mut *out.lock()))
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock())
    }
}

pub use lol_html::errors::RewritingError;

/// The upstream body, rewritten as it streams.
pub struct Rewritten {
    upstream: StreamBody,
    rewriter: Option<LinkRewriter>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl Rewritten {
    pub fn new(upstream: StreamBody, map: LinkMap) -> Self {
        Rewritten { upstream, rewriter: Some(LinkRewriter::new(&map)), pending: VecDeque::new(), done: false }
    }

    fn push(&mut self, out: Vec<u8>) {
        if !out.is_empty() {
            self.pending.push_back(Bytes::from(out));
        }
    }
}

impl http_body::Body for Rewritten {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && let Some(r) = this.rewriter.as_mut()
                    {
                        let out = r.write(&data).map_err(|e| Box::new(e) as BoxError)?;
                        this.push(out);
                    }
                }
                Poll::Ready(None) => {
                    if let Some(r) = this.rewriter.take() {
                        let out = r.end().map_err(|e| Box::new(e) as BoxError)?;
                        this.push(out);
                    }
                    this.done = true;
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> LinkMap {
        LinkMap {
            origin_url: "http://127.0.0.1:8080/app".into(),
            origin_path: "/app".into(),
            mountpoint: "/proxied".into(),
        }
    }

    #[test]
    fn a_rewriter_is_small_to_hold() {
        assert!(std::mem::size_of::<LinkRewriter>() <= 32, "{}", std::mem::size_of::<LinkRewriter>());
    }

    #[test]
    fn urls() {
        let m = map();
        assert_eq!(m.map("http://127.0.0.1:8080/app/x.css").as_deref(), Some("/proxied/x.css"));
        assert_eq!(m.map("http://127.0.0.1:8080/app").as_deref(), Some("/proxied/"));
        assert_eq!(m.map("/app/img.png").as_deref(), Some("/proxied/img.png"));
        assert_eq!(m.map("/other").as_deref(), Some("/proxied/other"));
        assert_eq!(m.map("/proxied/already").as_deref(), None);
        assert_eq!(m.map("//cdn.example/x.js"), None);
        assert_eq!(m.map("relative.html"), None);
        assert_eq!(m.map("https://elsewhere.example/"), None);
        assert_eq!(m.map("http://127.0.0.1:8080/application"), None);
    }

    #[tokio::test]
    async fn streams_across_chunk_boundaries() {
        use http_body_util::BodyExt;
        let chunks =
            vec!["<html><a hr", "ef=\"/app/a\">x</a><img src=\"http://127.0.0.1:8080/app/i.png\">", "<a href=\"rel\">"];
        let stream = futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))));
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        let out = Rewritten::new(body, map()).collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "<html><a href=\"/proxied/a\">x</a><img src=\"/proxied/i.png\"><a href=\"rel\">"
        );
    }
}
