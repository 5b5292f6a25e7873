//! Where the process stands between serving and exit, for the parts that must behave
//! differently while it stops. It holds no sockets and starts no work: `app` moves it on,
//! the admin listener reads it for `/readyz`, and both request paths read it to end HTTP
//! connections early.
//!
//! ```text
//! Serving ──SIGTERM──► Draining ──delay over (or a 2nd signal)──► Stopping ──grace over──► exit
//!  ready            not ready, still accepting;         no new connections; idle ones
//!                   each HTTP/1 response says            closed; in-flight requests
//!                   `connection: close`, HTTP/2 GOAWAY    finish
//! ```
//! The phase only moves forward.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

/// A step of the stop, in order; the number is what the `lwsws_shutdown_phase` gauge shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving = 0,
    /// Told to stop: not ready any more, still serving while load balancers withdraw us.
    Draining = 1,
    /// No new connections; open ones finish what they are doing.
    Stopping = 2,
}

#[derive(Debug, Default)]
pub struct Lifecycle {
    phase: AtomicU8,
    /// Cancelled when the phase leaves `Serving`, for connections that wait on it.
    told: CancellationToken,
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Stopping,
        }
    }

    /// Moves to `to` unless the process is already there or past it; whether it moved.
    pub fn enter(&self, to: Phase) -> bool {
        let before = self.phase.fetch_max(to as u8, Ordering::AcqRel);
        if to != Phase::Serving {
            self.told.cancel();
        }
        before < to as u8
    }

    /// Whether a load balancer should send new traffic here (`/readyz`).
    pub fn ready(&self) -> bool {
        self.phase() == Phase::Serving
    }

    /// Whether connections should end after the response they are on.
    pub fn ending(&self) -> bool {
        self.phase() != Phase::Serving
    }

    /// Resolves once the process has been told to stop.
    pub async fn told_to_stop(&self) {
        self.told.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_only_moves_forward() {
        let l = Lifecycle::default();
        assert!(l.ready() && !l.ending());
        assert!(l.enter(Phase::Draining));
        assert!(!l.ready() && l.ending());
        assert!(l.enter(Phase::Stopping));
        assert!(!l.enter(Phase::Draining));
        assert_eq!(l.phase(), Phase::Stopping);
    }
}
