//! Connections that stop being HTTP after a `101 Switching Protocols`: the handler that the
//! request path leaves for the connection, which runs it on the raw stream once hyper has
//! written the 101 and handed the stream back.

use std::future::Future;
use std::pin::Pin;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream a connection may be carried on (TCP, TLS, unix), with bytes already read
/// past the 101 request put back in front.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type UpgradedIo = Box<dyn Io>;
pub type OnUpgrade = Box<dyn FnOnce(UpgradedIo) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Where a request that answered 101 leaves what should happen next.
#[derive(Default)]
pub struct UpgradeSlot(Mutex<Option<OnUpgrade>>);

impl UpgradeSlot {
    pub fn set(&self, handler: OnUpgrade) {
        *self.0.lock() = Some(handler);
    }

    pub fn is_set(&self) -> bool {
        self.0.lock().is_some()
    }

    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().take()
    }
}

impl std::fmt::Debug for UpgradeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradeSlot")
    }
}
