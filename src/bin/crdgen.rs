//! Writes the `LwswsConfig` CRD, generated from the Rust types, to `crds/` and to the Helm
//! chart's `crds/`. `crdgen --check` fails when the committed files differ (CI runs it).

use std::path::Path;
use std::process::ExitCode;

const TARGETS: &[&str] = &["crds/lwsws.io_lwswsconfigs.yaml", "charts/lwsws/crds/lwsws.io_lwswsconfigs.yaml"];

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = lwsws::k8s::crd::crd_yaml();
    let mut stale = Vec::new();
    for t in TARGETS {
        let path = root.join(t);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            stale.push(*t);
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the CRD directory");
        }
        std::fs::write(&path, &yaml).expect("write the CRD");
        println!("wrote {t}");
    }
    if !stale.is_empty() {
        eprintln!("crdgen: {} differ from the Rust types; run `cargo run --bin crdgen`", stale.join(", "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
