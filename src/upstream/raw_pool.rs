//! The plain upstream connections of one endpoint, as the passthrough uses them: sockets with
//! nothing in flight, kept for the next request.

use std::io;

use super::connect::Connector;
use super::idle::IdleConns;
use super::stream::Stream;

pub struct RawPool {
    idle: IdleConns<Stream>,
    connector: Connector,
}

impl RawPool {
    pub fn new(connector: Connector) -> Self {
        RawPool { idle: IdleConns::default(), connector }
    }

    /// The most recently used idle connection that is still open.
    pub fn checkout(&self) -> Option<Stream> {
        self.idle.take(|conn| conn.is_idle_open())
    }

    /// A new connection, within the mount's timeout.
    pub async fn dial(&self) -> io::Result<Stream> {
        self.connector.open().await
    }

    /// Keeps a connection whose response was read to its end.
    pub fn checkin(&self, conn: Stream) {
        self.idle.put(conn);
    }
}
