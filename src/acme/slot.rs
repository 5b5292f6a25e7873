//! Where a managed certificate lives while the process runs. Slots are keyed by certificate
//! path and outlive any one config, so a reload keeps the certificate and a renewal reaches
//! every TLS config that serves it without a rebuild.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

static SLOTS: LazyLock<Mutex<HashMap<PathBuf, Arc<ArcSwapOption<CertifiedKey>>>>> = LazyLock::new(Default::default);

/// The slot for the certificate at `cert_path` (made empty on first use).
pub fn slot(cert_path: &Path) -> Arc<ArcSwapOption<CertifiedKey>> {
    SLOTS.lock().expect("certificate slots").entry(cert_path.to_path_buf()).or_default().clone()
}

/// A resolver that serves whatever the slot holds now (nothing, before the first issuance).
#[derive(Debug)]
pub struct ManagedCert(pub Arc<ArcSwapOption<CertifiedKey>>);

impl ResolvesServerCert for ManagedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}
