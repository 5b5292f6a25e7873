//! The built-in demo config and site, served when lwsws starts without a config directory.
//! The files are the ones under `conf/` in the source tree, carried in the binary.

use std::path::{Path, PathBuf};

const FILES: &[(&str, &[u8])] = &[
    ("conf", include_bytes!("../conf/conf")),
    ("conf.d/localhost", include_bytes!("../conf/conf.d/localhost")),
    ("share/lwsws-demo/index.html", include_bytes!("../conf/share/lwsws-demo/index.html")),
    ("share/lwsws-demo/style.css", include_bytes!("../conf/share/lwsws-demo/style.css")),
    ("share/lwsws-demo/test.js", include_bytes!("../conf/share/lwsws-demo/test.js")),
    ("share/lwsws-demo/favicon.svg", include_bytes!("../conf/share/lwsws-demo/favicon.svg")),
    (
        "share/lwsws-demo/server-status/server-status.html",
        include_bytes!("../conf/share/lwsws-demo/server-status/server-status.html"),
    ),
    (
        "share/lwsws-demo/server-status/server-status.js",
        include_bytes!("../conf/share/lwsws-demo/server-status/server-status.js"),
    ),
];

/// Writes the demo into a fresh directory; returns (config dir, data dir for `_lws_ddir_`).
pub fn unpack() -> std::io::Result<(PathBuf, String)> {
    let root = std::env::temp_dir().join(format!("lwsws-demo-{}", std::process::id()));
    write_to(&root)?;
    let ddir = root.join("share").display().to_string();
    Ok((root, ddir))
}

/// Every file under `conf/` must be carried: the test below compares the two lists.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_file_is_built_in() {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut on_disk = Vec::new();
        walk(Path::new("conf"), Path::new("conf"), &mut on_disk);
        on_disk.sort();
        let mut built_in: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in, "conf/ and the files built into the binary differ");
    }
}
