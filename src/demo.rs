//! The built-in demo config and site, served when lwsws starts without a config directory.
//! The files are the ones under `conf/` in the source tree, carried in the binary.

use std::path::{Path, PathBuf};

const FILES: &[(&str, &[u8])] = &[
    ("conf", include_bytes!("../conf/conf")),
    ("conf.d/localhost", include_bytes!("../conf/conf.d/localhost")),
    ("share/lwsws-demo/index.html", include_bytes!("../conf/share/lwsws-demo/index.html")),
    ("share/lwsws-demo/style.css", include_bytes!("../conf/share/lwsws-demo/style.css")),
];

/// Writes the demo into a fresh directory; returns (config dir, data dir for `_lws_ddir_`).
pub fn unpack() -> std::io::Result<(PathBuf, String)> {
    let root = std::env::temp_dir().join(format!("lwsws-demo-{}", std::process::id()));
    write_to(&root)?;
    let ddir = root.join("share").display().to_string();
    Ok((root, ddir))
}

pub fn write_to(root: &Path) -> std::io::Result<()> {
    for (name, data) in FILES {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, data)?;
    }
    Ok(())
}
