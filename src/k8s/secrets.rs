//! TLS Secrets as the front ends use them: the PEM pair, written to files the TLS loader reads.

use std::path::{Path, PathBuf};

/// A `kubernetes.io/tls` Secret's certificate chain and key (PEM).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Writes a Secret's pair where the TLS loader reads it, in a directory named by its content:
/// a rotated Secret gets new paths (so the config changes and is reloaded) and the files of the
/// version before stay for as long as that version may serve. Unchanged content is not
/// rewritten, so an unchanged Secret does not look like a renewed certificate.
pub fn write_pair(dir: &Path, namespace: &str, name: &str, pair: &TlsPair) -> std::io::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let version = super::stable_hash(&[&pair.cert, &pair.key]);
    let d = dir.join(namespace).join(name).join(format!("{version:016x}"));
    std::fs::create_dir_all(&d)?;
    let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
    for (path, data) in [(&key, &pair.key), (&cert, &pair.cert)] {
        if std::fs::read(path).ok().as_ref() == Some(data) {
            continue;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        std::io::Write::write_all(&mut f, data)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok((cert, key))
}
