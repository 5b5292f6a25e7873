//! Where a managed (ACME) certificate lives while the process runs. Slots are keyed by
//! certificate path and outlive any one config, so a reload keeps the certificate and a renewal
//! reaches every TLS config that serves it without a rebuild. The server owns its `CertSlots`
//! and hands them to the compiler and the ACME managers; a `--check` compiles with slots of its
//! own that die with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub type Slot = Arc<ArcSwapOption<CertifiedKey>>;

#[derive(Debug, Default)]
pub struct CertSlots {
    slots: Mutex<HashMap<PathBuf, Slot>>,
}

impl CertSlots {
    /// The slot for the certificate at `cert_path` (made empty on first use).
    pub fn slot(&self, cert_path: &Path) -> Slot {
        self.slots.lock().entry(cert_path.to_path_buf()).or_default().clone()
    }

    /// What the slot for `cert_path` serves now, without making one.
    pub fn current(&self, cert_path: &Path) -> Option<Arc<CertifiedKey>> {
        self.slots.lock().get(cert_path).and_then(|s| s.load_full())
    }

    /// How many slots exist (for tests: a check must make none in the server's slots).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A resolver that serves whatever the slot holds now (nothing, before the first issuance).
#[derive(Debug)]
pub struct ManagedCert(pub Slot);

impl ResolvesServerCert for ManagedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}
