//! An in-memory cache of small static files, so a hot file costs one `stat` and no read.
//!
//! Every request still stats the file and the entry is used only when size, mtime and inode
//! all match, so an edit on disk is served at once. The cache survives config reloads.

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
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// Cached files by path, and the total bytes they hold.
type Entries = (HashMap<PathBuf, (Stamp, Bytes)>, usize);

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
        FileCache { entries: RwLock::new((HashMap::new(), 0)), max_file, max_total }
    }

    /// The file's bytes when it is small enough to cache; `None` means "stream it".
    pub fn get(&self, path: &Path, meta: &std::fs::Metadata) -> io::Result<Option<Bytes>> {
        if meta.len() > self.max_file {
            return Ok(None);
        }
        let stamp = Stamp::of(meta);
        if let Some((s, data)) = self.entries.read().0.get(path)
            && *s == stamp
        {
            return Ok(Some(data.clone()));
        }
        let data = Bytes::from(std::fs::read(path)?);
        if data.len() as u64 != stamp.len {
            // Changed while we read it: serve what we read, cache nothing.
            return Ok(Some(data));
        }
        let mut guard = self.entries.write();
        let (map, total) = &mut *guard;
        if let Some((_, old)) = map.remove(path) {
            *total -= old.len();
        }
        if *total + data.len() > self.max_total {
            // Simple and bounded: start over rather than track recency.
            map.clear();
            *total = 0;
        }
        *total += data.len();
        map.insert(path.to_path_buf(), (stamp, data.clone()));
        Ok(Some(data))
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
        let got = cache.get(&p, &std::fs::metadata(&p).unwrap()).unwrap();
        assert_eq!(got.unwrap(), "one");
        std::fs::write(&p, "three").unwrap();
        let got = cache.get(&p, &std::fs::metadata(&p).unwrap()).unwrap();
        assert_eq!(got.unwrap(), "three");
        std::fs::write(&p, "much too long").unwrap();
        assert!(cache.get(&p, &std::fs::metadata(&p).unwrap()).unwrap().is_none());
    }
}
