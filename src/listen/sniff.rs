//! Telling what a connection speaks from its first bytes, for listeners that carry more than
//! one thing (spec 5): TLS or not on a TLS port with `allow-non-tls`, HTTP or not on a plain
//! port with `fallback-listen-accept`. The bytes read are handed on, never lost.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The methods that make a connection HTTP (and `PRI`, the HTTP/2 preface).
const METHODS: &[&[u8]] = &[b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"PRI"];

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    NeedMore,
}

/// Whether the first bytes begin an HTTP request line. `CONNECT` goes to the raw role, as in
/// lws's current code.
pub fn http_request(buf: &[u8]) -> Verdict {
    let token_end = buf.iter().position(|b| *b == b' ');
    let token = &buf[..token_end.unwrap_or(buf.len())];
    if token_end.is_some() {
        return if METHODS.contains(&token) { Verdict::Yes } else { Verdict::No };
    }
    if METHODS.iter().any(|m| m.starts_with(token)) && buf.len() < 8 { Verdict::NeedMore } else { Verdict::No }
}

/// A TLS ClientHello starts with 0x16; lws treats a first byte of 0x20 or more as plain text.
pub fn is_tls(first: u8) -> bool {
    first < 0x20
}

/// Reads until `decide` can tell (or the peer stops sending for `timeout`, or closes).
pub async fn read_until<S, F>(s: &mut S, timeout: Duration, mut decide: F) -> std::io::Result<(BytesMut, Verdict)>
where
    S: AsyncRead + Unpin,
    F: FnMut(&[u8]) -> Verdict,
{
    let mut buf = BytesMut::with_capacity(64);
    loop {
        let n = match tokio::time::timeout(timeout, s.read_buf(&mut buf)).await {
            Ok(r) => r?,
            // Silence says nothing about what the client speaks: the caller closes it.
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "nothing to tell the protocol by")),
        };
        let verdict = decide(&buf);
        if n == 0 || verdict != Verdict::NeedMore || buf.len() >= 64 {
            let verdict = if verdict == Verdict::NeedMore { Verdict::No } else { verdict };
            return Ok((buf, verdict));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(http_request(b"GET / HTTP/1.1"), Verdict::Yes);
        assert_eq!(http_request(b"PRI * HTTP/2.0"), Verdict::Yes);
        assert_eq!(http_request(b"GE"), Verdict::NeedMore);
        assert_eq!(http_request(b"SSH-2.0-OpenSSH_9.2"), Verdict::No);
        assert_eq!(http_request(b"CONNECT x:443 HTTP/1.1"), Verdict::No);
        assert_eq!(http_request(b"GETX / HTTP/1.1"), Verdict::No);
        assert!(is_tls(0x16));
        assert!(!is_tls(b'G'));
    }
}
