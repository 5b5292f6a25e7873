//! Where certificates, keys and the ACME account are kept between runs: files (0600, written
//! atomically, so a crash leaves the old or the new file, never half of one), or in Kubernetes
//! mode Secrets (`k8s::acme_store`), so that a pod that restarts finds what it had.

use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::model::acme::Acme;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait CertStore: Send + Sync {
    /// The certificate chain and its private key, both PEM; `Ok(None)` when there is none, an
    /// error when the store cannot be read (then nothing is ordered: the certificate may exist).
    fn load_cert(&self) -> StoreFuture<'_, io::Result<Option<(String, String)>>>;
    fn save_cert<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> StoreFuture<'a, io::Result<()>>;
    /// The ACME account's credentials (JSON).
    fn load_account(&self) -> StoreFuture<'_, io::Result<Option<String>>>;
    fn save_account<'a>(&'a self, json: &'a str) -> StoreFuture<'a, io::Result<()>>;
    /// Drops stored credentials the CA no longer knows.
    fn forget_account(&self) -> StoreFuture<'_, io::Result<()>>;
}

/// Makes the store for one ACME vhost. The server is handed one (files by default, Secrets in
/// Kubernetes mode) and gives it to its managers.
pub type StoreFactory = dyn Fn(&str, &Acme) -> Box<dyn CertStore> + Send + Sync;

/// Keeps each vhost's ACME state in the files its config names.
pub fn file_stores() -> std::sync::Arc<StoreFactory> {
    std::sync::Arc::new(|_, a: &Acme| Box::new(FileStore::new(a)) as Box<dyn CertStore>)
}

#[derive(Debug, Clone)]
pub struct FileStore {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub account: PathBuf,
}

impl FileStore {
    pub fn new(a: &Acme) -> FileStore {
        FileStore { cert: a.cert_path.clone(), key: a.key_path.clone(), account: a.account_path.clone() }
    }
}

impl CertStore for FileStore {
    fn load_cert(&self) -> StoreFuture<'_, io::Result<Option<(String, String)>>> {
        Box::pin(async move {
            match (read_opt(&self.cert)?, read_opt(&self.key)?) {
                (Some(c), Some(k)) => Ok(Some((c, k))),
                _ => Ok(None),
            }
        })
    }

    fn save_cert<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move { self.write_cert(chain_pem, key_pem) })
    }

    fn load_account(&self) -> StoreFuture<'_, io::Result<Option<String>>> {
        Box::pin(async move { read_opt(&self.account) })
    }

    fn save_account<'a>(&'a self, json: &'a str) -> StoreFuture<'a, io::Result<()>> {
        Box::pin(async move { self.write_account(json) })
    }

    fn forget_account(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(async move { self.remove_account() })
    }
}

impl FileStore {
    fn write_cert(&self, chain_pem: &str, key_pem: &str) -> io::Result<()> {
        // Both are staged first, so a failure leaves the pair that was there.
        let key_tmp = stage(&self.key, key_pem.as_bytes())?;
        let cert_tmp = match stage(&self.cert, chain_pem.as_bytes()) {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&key_tmp);
                return Err(e);
            }
        };
        std::fs::rename(&key_tmp, &self.key)?;
        std::fs::rename(&cert_tmp, &self.cert)
    }

    fn write_account(&self, json: &str) -> io::Result<()> {
        let tmp = stage(&self.account, json.as_bytes())?;
        std::fs::rename(tmp, &self.account)
    }

    fn remove_account(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.account) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A file's text; `None` when it does not exist.
fn read_opt(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `data` to a fresh 0600 file beside `path` and syncs it; returns its name.
fn stage(path: &Path, data: &[u8]) -> io::Result<PathBuf> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // Unique per write, so two writers in one process never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}.{seq}", std::process::id()));
    let tmp = PathBuf::from(name);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Read back through the store's own (async) reads, as the manager does.
    fn cert(store: &FileStore) -> Option<(String, String)> {
        futures::executor::block_on(store.load_cert()).unwrap()
    }

    fn account(store: &FileStore) -> Option<String> {
        futures::executor::block_on(store.load_account()).unwrap()
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore {
            cert: dir.path().join("new/sub/cert.pem"),
            key: dir.path().join("new/sub/key.pem"),
            account: dir.path().join("new/sub/account.json"),
        };
        assert!(cert(&store).is_none() && account(&store).is_none());
        store.write_cert("CHAIN", "KEY").unwrap();
        store.write_account("{}").unwrap();
        assert_eq!(cert(&store), Some(("CHAIN".into(), "KEY".into())));
        for p in [&store.cert, &store.key, &store.account] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
        let sub = dir.path().join("new/sub");
        assert_eq!(std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777, 0o700);
        store.write_cert("CHAIN2", "KEY2").unwrap();
        assert_eq!(cert(&store), Some(("CHAIN2".into(), "KEY2".into())));
        let left: Vec<_> = std::fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no temp files left: {left:?}");
        store.remove_account().unwrap();
        store.remove_account().unwrap();
        assert!(account(&store).is_none());
    }

    #[test]
    fn a_failed_save_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            account: dir.path().join("account.json"),
        };
        store.write_cert("OLD", "OLDKEY").unwrap();
        // A certificate path whose directory cannot be written makes the second write fail.
        let ro = FileStore { cert: dir.path().join("missing-dir/cert.pem"), ..store.clone() };
        std::fs::write(dir.path().join("missing-dir"), "a file where a directory should be").unwrap();
        assert!(ro.write_cert("NEW", "NEWKEY").is_err());
        assert_eq!(cert(&store), Some(("OLD".into(), "OLDKEY".into())));
    }
}
