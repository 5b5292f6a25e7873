//! A proxied request's body is read before the request takes an upstream connection, up to
//! `proxy-body-buffer` bytes: a client that uploads slowly then holds only its own connection,
//! never one of the upstream's (a thousand slow uploads used to be a thousand upstream
//! connections). A body larger than that streams on from there. While it is read, the body must
//! keep moving: `timeout-secs` at most between two reads, and, once that long has passed, at
//! least `MIN_RATE` bytes a second on average; otherwise 408.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::upstream::MIN_RATE;
use crate::wire::error::HttpError;

/// What was read of a body: its first bytes, its trailers when it ended with them, and the rest
/// when it did not end within `limit`.
pub struct Front {
    pub bytes: Bytes,
    pub trailers: Option<HeaderMap>,
    pub rest: Option<Incoming>,
}

/// Reads `body` until it ends or `limit` bytes are in hand.
pub async fn read_front(mut body: Incoming, limit: usize, timeout: Duration) -> Result<Front, HttpError> {
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    loop {
        if http_body::Body::is_end_stream(&body) {
            return Ok(Front { bytes: bytes.freeze(), trailers: None, rest: None });
        }
        if bytes.len() >= limit {
            return Ok(Front { bytes: bytes.freeze(), trailers: None, rest: Some(body) });
        }
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(HttpError::RequestTimeout),
            Ok(None) => return Ok(Front { bytes: bytes.freeze(), trailers: None, rest: None }),
            Ok(Some(Err(_))) => return Err(HttpError::BadRequest("malformed request body")),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => bytes.extend_from_slice(&data),
            Err(frame) => {
                let trailers = frame.into_trailers().ok();
                return Ok(Front { bytes: bytes.freeze(), trailers, rest: None });
            }
        }
        if too_slow(bytes.len() as u64, started.elapsed(), timeout) {
            return Err(HttpError::RequestTimeout);
        }
    }
}

/// Whether `received` bytes after `elapsed` is below the minimum rate (checked once `grace`,
/// the read timeout, has passed, so that a connection's first moments are not judged).
fn too_slow(received: u64, elapsed: Duration, grace: Duration) -> bool {
    elapsed > grace && received < MIN_RATE.saturating_mul(elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_judged_after_the_grace() {
        let s = Duration::from_secs;
        assert!(!too_slow(0, s(10), s(15)), "within the grace");
        assert!(too_slow(100, s(20), s(15)), "100 bytes in 20 s");
        assert!(!too_slow(30_000, s(20), s(15)), "1.5 KiB/s");
    }
}
