//! The PROXY protocol header (haproxy's `proxy-protocol.txt`, v1 text and v2 binary) that a
//! load balancer in front sends before a connection's first byte, saying who the client is.
//!
//! It is read before anything else on the connection: before the TLS ClientHello and before
//! the sniffing of `allow-non-tls` and `fallback-listen-accept`. Exactly the header's bytes are
//! read, never more, so what follows is left on the socket for TLS or HTTP. Parsing is `ppp`'s;
//! this module owns only how many bytes to take and what the result means.
//!
//! As with nginx's `listen ... proxy_protocol` and haproxy's `accept-proxy`, a listener that
//! requires the header closes a connection without one (a client reaching the port directly
//! must not choose its own address), and a v2 `LOCAL` header or a v1 `UNKNOWN` one (a load
//! balancer's health check) keeps the socket's own peer address. v2 TLVs are ignored.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::metrics::{Metrics, ResultLabels};
use crate::model::ProxyProtocol;

/// The v2 signature: 12 bytes no text protocol starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family, address length.
const V2_FIXED: usize = 16;
/// The longest v1 line, CRLF included (the spec's 107 bytes: UNKNOWN with IPv6 addresses).
const V1_MAX: usize = 107;
/// Read first: the shortest header of either version (`PROXY UNKNOWN\r\n`), so that this
/// read never takes a byte past a valid header.
const FIRST: usize = 15;

/// Why a connection was closed before it carried anything.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the peer closed or failed before the header was whole: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY protocol {0} header where the listener requires one")]
    Missing(&'static str),
    #[error("a v1 header longer than 107 bytes or with a stray CR")]
    V1Line,
    #[error("invalid PROXY protocol v1 header: {0}")]
    V1(String),
    #[error("invalid PROXY protocol v2 header: {0}")]
    V2(String),
}

/// What became of the header, for whoever serves the connection.
pub enum Arrival {
    /// The connection's client address from now on: the header's, or the socket's own peer
    /// when the header named none (`LOCAL`, `UNKNOWN`, `AF_UNSPEC`, unix addresses).
    Client(Option<SocketAddr>),
    /// Closed: no valid header in time (counted and logged at debug).
    Refused,
}

/// Reads the header `accept` requires within `timeout` (the listener's `timeout-secs`, the
/// limit the TLS handshake also has) and counts the result.
pub async fn arrive<S>(
    stream: &mut S,
    socket_peer: Option<SocketAddr>,
    accept: ProxyProtocol,
    timeout: Duration,
    metrics: &Metrics,
) -> Arrival
where
    S: AsyncRead + Unpin,
{
    let (result, arrival) = match tokio::time::timeout(timeout, read_header(stream, accept)).await {
        Ok(Ok(Some(client))) => ("proxied", Arrival::Client(Some(client))),
        Ok(Ok(None)) => ("local", Arrival::Client(socket_peer)),
        Ok(Err(HeaderError::Io(e))) => {
            tracing::debug!(peer = ?socket_peer, error = %e, "connection closed before its PROXY protocol header");
            ("closed", Arrival::Refused)
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = ?socket_peer, error = %e, "closing a connection with no valid PROXY protocol header");
            ("invalid", Arrival::Refused)
        }
        Err(_) => {
            tracing::debug!(peer = ?socket_peer, "PROXY protocol header timed out");
            ("timeout", Arrival::Refused)
        }
    };
    metrics.proxy_headers.get_or_create(&ResultLabels { result }).inc();
    arrival
}

/// Reads one header of a kind `accept` allows, and not a byte more. `Ok(None)`: a valid header
/// that names no client address.
pub async fn read_header<S>(s: &mut S, accept: ProxyProtocol) -> Result<Option<SocketAddr>, HeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; FIRST];
    s.read_exact(&mut buf).await?;
    if buf.starts_with(&V2_SIGNATURE[..]) && accept.accepts_v2() {
        buf.resize(V2_FIXED, 0);
        s.read_exact(&mut buf[FIRST..]).await?;
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        buf.resize(V2_FIXED + len, 0);
        s.read_exact(&mut buf[V2_FIXED..]).await?;
        return v2_client(&buf);
    }
    if buf.starts_with(b"PROXY ") && accept.accepts_v1() {
        read_v1_line(s, &mut buf).await?;
        return v1_client(&buf);
    }
    Err(HeaderError::Missing(accept.as_str()))
}

/// Reads on to the line's CRLF. Each read takes only what the line must still have (two bytes
/// while no CR has come, one after a CR), so the read that ends the line ends at its LF.
async fn read_v1_line<S>(s: &mut S, buf: &mut Vec<u8>) -> Result<(), HeaderError>
where
    S: AsyncRead + Unpin,
{
    loop {
        let need = match buf.iter().position(|b| *b == b'\r') {
            Some(cr) if cr + 2 == buf.len() => {
                return if buf[cr + 1] == b'\n' { Ok(()) } else { Err(HeaderError::V1Line) };
            }
            Some(cr) if cr + 1 == buf.len() => 1,
            // A CR with more than one byte after it: only in a first read of a line shorter
            // than any valid one.
            Some(_) => return Err(HeaderError::V1Line),
            None => 2,
        };
        let at = buf.len();
        if at + need > V1_MAX {
            return Err(HeaderError::V1Line);
        }
        buf.resize(at + need, 0);
        s.read_exact(&mut buf[at..]).await?;
    }
}

fn v1_client(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(line).map_err(|e| HeaderError::V1(e.to_string()))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unknown => None,
    })
}

fn v2_client(bytes: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|e| HeaderError::V2(e.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests;
