//! `raw-proxy` (spec 5): every byte of the accepted connection goes to the `onward` address
//! and back, with TCP's back-pressure, until both directions have ended (a half-close is passed
//! on, not turned into a full close).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::protocols::Onward;

pub async fn pipe<S>(mut client: S, first: &[u8], onward: &Onward, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connect = match onward {
        Onward::V4 { host, port } => tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), *port))).await,
        Onward::V6 { addr, port } => tokio::time::timeout(timeout, TcpStream::connect((*addr, *port))).await,
    };
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(?onward, error = %e, "raw-proxy: onward connect failed");
            return;
        }
        Err(_) => {
            tracing::warn!(?onward, "raw-proxy: onward connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if !first.is_empty() && upstream.write_all(first).await.is_err() {
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "raw-proxy connection ended");
    }
}
