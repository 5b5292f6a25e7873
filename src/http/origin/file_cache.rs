//! An in-memory cache of small static files, so a hot file costs one `stat` and no read.
//!
//! Every request still stats the file and the entry is used only when size, mtime, device and
//! inode all match, so an edit on disk is served at once. The cache survives config reloads.
//!
//! Entries are kept per *scope*: the canonical directory the file was found to resolve inside
//! when it was read (or no scope, for a mount that may follow links anywhere). A hit in a scope
//! is the very file (same device and inode) that was checked against that directory, so a hit
//! needs no new check; a mount with another directory, or another policy, looks in another
//! scope and never sees what this one let in.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Where a file was checked to resolve: inside this canonical directory, or (`None`) anywhere.
pub type Scope<'a> = Option<&'a Path>;

/// Hashing a whole path with SipHash was most of a hit's cost (callgrind); foldhash is seeded
/// per process, and only files that exist are ever inserted, so a client can choose what is
/// looked up but not what the maps hold.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Cached files by scope (the empty path for "anywhere") and path, and the total bytes held.
type Entries = (Map<PathBuf, Map<PathBuf, (Stamp, Bytes)>>, usize);

#[derive(Debug)]
pub struct FileCache {
    entries: RwLock<Entries>,
    max_file: u64,
    max_total: usize,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new(2 * 1024 * 1024, 64 * 1024 * 1024)
    }
}

impl FileCache {
    pub fn new(max_file: u64, max_total: usize) -> Self {
        FileCache { entries: RwLock::new((Map::default(), 0)), max_file, max_total }
    }

    /// Whether a file of this size is kept in memory (else it is streamed from disk).
    pub fn holds(&self, meta: &std::fs::Metadata) -> bool {
        meta.len() <= self.max_file
    }

    /// The bytes of `path` as `meta` describes it, if they were read in `scope` before.
    pub fn hit(&self, scope: Scope, path: &Path, meta: &std::fs::Metadata) -> Option<Bytes> {
        if !self.holds(meta) {
            return None;
        }
        let guard = self.entries.read();
        let (stamp, data) = guard.0.get(scope.unwrap_or(Path::new("")))?.get(path)?;
        (*stamp == Stamp::of(meta)).then(|| data.clone())
    }

    /// Reads `real` (what `path` resolves to, already checked against `scope`) and keeps it
    /// under `path` in `scope`. `meta` is what the request's `stat` of `path` saw.
    pub fn fill(&self, scope: Scope, path: &Path, real: &Path, meta: &std::fs::Metadata) -> io::Result<Bytes> {
        let data = Bytes::from(std::fs::read(real)?);
        let stamp = Stamp::of(meta);
        if data.len() as u64 != stamp.len || !self.holds(meta) {
            // Changed while we read it: serve what we read, cache nothing.
            return Ok(data);
        }
        let mut guard = self.entries.write();
        let (map, total) = &mut *guard;
        let scope = scope.unwrap_or(Path::new(""));
        if let Some((_, old)) = map.get_mut(scope).and_then(|m| m.remove(path)) {
            *total -= old.len();
        }
        if *total + data.len() > self.max_total {
            // Simple and bounded: start over rather than track recency.
            map.clear();
            *total = 0;
        }
        *total += data.len();
        map.entry(scope.to_path_buf()).or_default().insert(path.to_path_buf(), (stamp, data.clone()));
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_seen_and_big_files_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "one").unwrap();
        let cache = FileCache::new(10, 100);
        let meta = std::fs::metadata(&p).unwrap();
        assert!(cache.hit(None, &p, &meta).is_none());
        assert_eq!(cache.fill(None, &p, &p, &meta).unwrap(), "one");
        assert_eq!(cache.hit(None, &p, &meta).unwrap(), "one");
        std::fs::write(&p, "three").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert!(cache.hit(None, &p, &meta).is_none(), "an edit is a miss");
        assert_eq!(cache.fill(None, &p, &p, &meta).unwrap(), "three");
        std::fs::write(&p, "much too long").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert!(!cache.holds(&meta));
        assert!(cache.hit(None, &p, &meta).is_none());
    }

    #[test]
    fn scopes_do_not_share_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "one").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let cache = FileCache::default();
        cache.fill(None, &p, &p, &meta).unwrap();
        assert!(cache.hit(Some(dir.path()), &p, &meta).is_none(), "read by a mount that follows links anywhere");
        cache.fill(Some(dir.path()), &p, &p, &meta).unwrap();
        assert!(cache.hit(Some(dir.path()), &p, &meta).is_some());
        assert!(cache.hit(Some(&dir.path().join("sub")), &p, &meta).is_none(), "another directory");
    }
}
