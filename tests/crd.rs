//! The CRD YAML in `crds/` and in the Helm chart is what `crdgen` makes from the Rust types:
//! a change to `src/k8s/crd.rs` without `cargo run --bin crdgen` fails here.

#[test]
fn committed_crds_match_the_rust_types() {
    let want = lwsws::k8s::crd::crd_yaml();
    for path in ["crds/lwsws.io_lwswsconfigs.yaml", "charts/lwsws/crds/lwsws.io_lwswsconfigs.yaml"] {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let have = std::fs::read_to_string(&full).unwrap_or_default();
        assert!(have == want, "{path} differs from the Rust types: run `cargo run --bin crdgen`");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen")).arg("--check").status().unwrap();
    assert!(status.success(), "crdgen --check");
}
