//! Where certificates, keys and the ACME account are kept between runs: files (0600, written
//! atomically, so a crash leaves the old or the new file, never half of one), or in Kubernetes
//! mode Secrets (`k8s::acme_store`), so that a pod that restarts finds what it had.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::challenge::{Answer, file_answers};
use super::lock::{ClaimBackend, OrderLock, StoreFuture, lock_ttl, replica_id};
use super::private_files::{read_opt, stage, write_private};
use crate::model::acme::Acme;

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
    /// Tries to become the one replica that orders this certificate (`lock`); `Ok(None)` when
    /// another replica holds the claim.
    fn try_lock(&self) -> StoreFuture<'_, io::Result<Option<OrderLock>>>;
    /// Publishes a challenge answer where every replica sees it, and resolves once this replica
    /// sees it come back the way the others will; dropping the result withdraws it.
    fn publish<'a>(&'a self, answer: &'a Answer) -> StoreFuture<'a, io::Result<Box<dyn Send + Sync>>>;
}

/// Makes the store for one ACME vhost. The server is handed one (files by default, Secrets in
/// Kubernetes mode) and gives it to its managers.
pub type StoreFactory = dyn Fn(&str, &Acme) -> Box<dyn CertStore> + Send + Sync;

/// Keeps each vhost's ACME state in the files its config names.
pub fn file_stores() -> std::sync::Arc<StoreFactory> {
    std::sync::Arc::new(|_, a: &Acme| Box::new(FileStore::new(a)) as Box<dyn CertStore>)
}

/// Files, as the config names them. Replicas that share the directory (containers with one
/// volume) coordinate there too: `<cert>.lock` names the replica that orders and until when
/// (see `FileClaim`), and challenge answers are files in `answer_dir(<cert>)`.
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

/// Where replicas sharing a certificate's directory leave challenge answers for each other.
pub fn answer_dir(cert: &Path) -> PathBuf {
    cert.parent().unwrap_or(Path::new(".")).join("acme-challenges")
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

    fn try_lock(&self) -> StoreFuture<'_, io::Result<Option<OrderLock>>> {
        Box::pin(async move {
            let claim = Arc::new(FileClaim::new(&self.cert, replica_id(), lock_ttl()));
            let lock = OrderLock::try_take(claim, lock_ttl()).await?;
            if lock.is_some() {
                // Answers a replica left when it died mid-order (no order lasts an hour).
                let dir = answer_dir(&self.cert);
                let _ =
                    tokio::task::spawn_blocking(move || file_answers(&dir).sweep(std::time::Duration::from_secs(3600)))
                        .await;
            }
            Ok(lock)
        })
    }

    fn publish<'a>(&'a self, answer: &'a Answer) -> StoreFuture<'a, io::Result<Box<dyn Send + Sync>>> {
        Box::pin(async move {
            let dir = answer_dir(&self.cert);
            let answer = answer.clone();
            let published = tokio::task::spawn_blocking(move || file_answers(&dir).publish(&answer))
                .await
                .map_err(io::Error::other)??;
            Ok(Box::new(published) as Box<dyn Send + Sync>)
        })
    }
}

/// A claim kept in `<cert>.lock` as `{"owner": …, "expires_ms": …}`. Reading and replacing it
/// happen under an exclusive `flock` of `<cert>.lock.guard`, so two replicas that find a stale
/// claim at once cannot both take it; the guard is held only for that instant, and the kernel
/// drops it when a process dies, so only the claim's expiry can keep others waiting.
pub struct FileClaim {
    lock: PathBuf,
    guard: PathBuf,
    owner: String,
    ttl: std::time::Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ClaimRecord {
    owner: String,
    expires_ms: i64,
}

impl FileClaim {
    pub fn new(cert: &Path, owner: &str, ttl: std::time::Duration) -> FileClaim {
        let with = |ext: &str| {
            let mut name = cert.as_os_str().to_owned();
            name.push(ext);
            PathBuf::from(name)
        };
        FileClaim { lock: with(".lock"), guard: with(".lock.guard"), owner: owner.to_string(), ttl }
    }

    /// Runs `step` on the current record under the guard; `step` says what to write (`Some`:
    /// this replica's fresh record, `None`: leave it) and what to answer.
    fn guarded(&self, step: impl FnOnce(Option<ClaimRecord>, i64) -> (Change, bool)) -> io::Result<bool> {
        if let Some(dir) = self.lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let guard =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&self.guard)?;
        guard.lock()?;
        let now = chrono::Utc::now().timestamp_millis();
        // A record that cannot be read is taken as stale: a crash mid-write cannot leave one
        // (writes are renames), so it is garbage, and waiting on it would wait for ever.
        let record = read_opt(&self.lock)?.and_then(|t| serde_json::from_str::<ClaimRecord>(&t).ok());
        let (change, answer) = step(record, now);
        match change {
            Change::Keep => {}
            Change::Mine => {
                let record = ClaimRecord { owner: self.owner.clone(), expires_ms: now + self.ttl.as_millis() as i64 };
                write_private(&self.lock, serde_json::to_string(&record).map_err(io::Error::other)?.as_bytes())?;
            }
            Change::Remove => std::fs::remove_file(&self.lock)?,
        }
        drop(guard);
        Ok(answer)
    }

    fn blocking_acquire(&self) -> io::Result<bool> {
        self.guarded(|record, now| match record {
            Some(r) if r.owner != self.owner && r.expires_ms > now => (Change::Keep, false),
            _ => (Change::Mine, true),
        })
    }

    fn blocking_refresh(&self) -> io::Result<bool> {
        self.guarded(|record, _| match record {
            Some(r) if r.owner == self.owner => (Change::Mine, true),
            _ => (Change::Keep, false),
        })
    }

    fn blocking_release(&self) -> io::Result<()> {
        self.guarded(|record, _| match record {
            Some(r) if r.owner == self.owner => (Change::Remove, true),
            _ => (Change::Keep, false),
        })
        .map(|_| ())
    }
}

enum Change {
    Keep,
    Mine,
    Remove,
}

/// The steps run on the calling thread, as the store's other file operations do: they touch
/// two small local files, and the guard is only ever held for that long.
impl ClaimBackend for FileClaim {
    fn acquire(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(async move { self.blocking_acquire() })
    }
    fn refresh(&self) -> StoreFuture<'_, io::Result<bool>> {
        Box::pin(async move { self.blocking_refresh() })
    }
    fn release(&self) -> StoreFuture<'_, io::Result<()>> {
        Box::pin(async move { self.blocking_release() })
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
        write_private(&self.account, json.as_bytes())
    }

    fn remove_account(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.account) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn a_file_claim_is_exclusive_until_released_or_stale() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("shared/cert.pem");
        let ttl = std::time::Duration::from_secs(60);
        let a = FileClaim::new(&cert, "replica-a", ttl);
        let b = FileClaim::new(&cert, "replica-b", ttl);
        assert!(a.blocking_acquire().unwrap(), "nobody holds it");
        assert!(!b.blocking_acquire().unwrap(), "a holds it");
        assert!(a.blocking_acquire().unwrap(), "a holder may take it again");
        assert!(a.blocking_refresh().unwrap());
        assert!(!b.blocking_refresh().unwrap(), "only the holder refreshes");
        b.blocking_release().unwrap();
        assert!(!b.blocking_acquire().unwrap(), "b's release did not free a's claim");
        a.blocking_release().unwrap();
        assert!(b.blocking_acquire().unwrap(), "released");
        assert!(!a.blocking_refresh().unwrap(), "a lost it");

        // A holder that died: its record expires and is taken over.
        let quick = FileClaim::new(&cert, "replica-c", std::time::Duration::ZERO);
        b.blocking_release().unwrap();
        assert!(quick.blocking_acquire().unwrap());
        assert!(a.blocking_acquire().unwrap(), "a stale claim is taken over");
        // Garbage in the lock file counts as stale, never as held for ever.
        std::fs::write(dir.path().join("shared/cert.pem.lock"), "{not json").unwrap();
        assert!(b.blocking_acquire().unwrap());
        assert_eq!(mode_of(&dir.path().join("shared/cert.pem.lock")), 0o600);
    }

    /// Many replicas (threads here, each with its own name) race for one claim: one wins.
    #[test]
    fn one_of_many_racing_replicas_takes_the_claim() {
        let dir = tempfile::tempdir().unwrap();
        let cert = std::sync::Arc::new(dir.path().join("cert.pem"));
        let winners: usize = (0..8)
            .map(|i| {
                let cert = cert.clone();
                std::thread::spawn(move || {
                    let claim = FileClaim::new(&cert, &format!("r{i}"), std::time::Duration::from_secs(60));
                    claim.blocking_acquire().unwrap() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }
}
