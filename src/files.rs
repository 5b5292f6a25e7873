//! Reading the files a config names: certificates, keys, CAs and basic-auth credentials.
//!
//! Every such read goes through `read_config_file`, which takes regular files only and no more
//! than a limit. A path set by mistake to `/dev/zero`, a FIFO or a log file then fails the
//! config at once with a message naming it, instead of hanging `--check` or the reload, or
//! filling memory. A leaf: it imports nothing of the crate.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The limit for certificates, keys, CA bundles and credentials files. A CA bundle of every
/// public root is about 200 KiB, a key or a chain a few KiB, and 1 MiB of bcrypt lines holds
/// some 16,000 users: anything larger is not what the key was meant to name.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The limit for one config text (`conf` or a `conf.d/` file): tens of thousands of vhosts fit.
pub const MAX_CONFIG_TEXT: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not a regular file ({kind})", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// The whole of `path`, if it is a regular file of at most `limit` bytes.
pub fn read_config_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    // Looked at before opening, so that no device is ever opened; and again once open, in case
    // the name was swapped meanwhile. O_NONBLOCK: opening a FIFO must not wait for a writer.
    regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io)?;
    regular(path, &file.metadata().map_err(io)?)?;
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(data)
}

/// `read_config_file` for a file that must be text.
pub fn read_config_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_config_file(path, limit)?).map_err(|_| ReadError::NotText { path: path.to_path_buf() })
}

fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), ReadError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    let kind = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(ReadError::NotRegular { path: path.to_path_buf(), kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_small_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.pem");
        std::fs::write(&ok, "hello").unwrap();
        assert_eq!(read_config_file(&ok, 5).unwrap(), b"hello");
        let e = read_config_file(&ok, 4).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 4, .. }), "{e}");
        let e = read_config_file(Path::new("/dev/zero"), MAX_CONFIG_FILE).unwrap_err();
        assert!(e.to_string().contains("/dev/zero is not a regular file (a character device)"), "{e}");
        let e = read_config_file(dir.path(), MAX_CONFIG_FILE).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_config_file(&fifo, MAX_CONFIG_FILE).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let e = read_config_file(&dir.path().join("missing"), MAX_CONFIG_FILE).unwrap_err();
        assert!(matches!(e, ReadError::Io { .. }), "{e}");
        std::fs::write(&ok, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_config_text(&ok, 10).unwrap_err(), ReadError::NotText { .. }));
    }
}
