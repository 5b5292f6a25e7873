//! Golden tests for the config language: each directory under `tests/fixtures/config/` is a
//! config dir with an `expected` file holding the exit status and the `--check` output (the
//! model summary with every warning, or the error with its file:line:col). The spec's example
//! configs and the demo config in `conf/` are cases too. `UPDATE_GOLDEN=1` rewrites them.

use std::path::Path;

fn run_case(dir: &Path, ddir: &str, expected: &Path) -> Option<String> {
    let result = lwsws::check::check(dir, ddir);
    let got = format!("exit: {}\n{}", result.code, machine_independent(&result.text));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected, &got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_else(|_| panic!("missing {}", expected.display()));
    (got != want).then(|| format!("--- {}\nwant:\n{want}\ngot:\n{got}", dir.display()))
}

/// The warning about a `file://` directory that is not there depends on the machine the check
/// runs on (`/usr/share/libwebsockets-test-server` exists once the e2e peers are installed,
/// `/var/www` once a web server is): left out here, with the count; tested in `cli.rs`
/// (`a_file_mount_whose_directory_is_missing…`) and `static_files.rs`.
fn machine_independent(text: &str) -> String {
    let missing_dir = |l: &str| l.contains(": the file:// directory ");
    let dropped = text.lines().filter(|l| missing_dir(l)).count();
    let mut out = String::new();
    for line in text.lines().filter(|l| !missing_dir(l)) {
        match line.strip_prefix("warnings: ").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => out.push_str(&format!("warnings: {}", n - dropped)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_fixture_matches_its_expected_output() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root = Path::new("tests/fixtures/config");
    let mut cases: Vec<_> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures are missing");
    let mut failures: Vec<String> =
        cases.iter().filter_map(|c| run_case(c, "/usr/share", &c.join("expected"))).collect();
    // The demo config carried in the binary is a case too, with its own data dir.
    failures.extend(run_case(Path::new("conf"), "conf/share", Path::new("tests/fixtures/demo-conf.expected")));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The spec-example case is vendored (libwebsockets' example lwsws configs, MIT-licensed, 297
/// and 1,644 bytes) so that it runs everywhere, the spec checkout or not. It must stay a byte
/// copy of the spec's files: their length and FNV-1a hash, taken from the spec, are pinned
/// here and always checked. Where the spec sits beside the repository (`../shared/spec`, as on
/// the developers' machines and in CI), the files are compared with it directly as well.
#[test]
fn spec_examples_are_byte_copies_of_the_spec() {
    let pinned = [
        ("etc-lwsws-conf-EXAMPLE", "tests/fixtures/config/spec-example/conf", 297, 0x8316_8a71_7300_46e0u64),
        (
            "etc-lwsws-conf.d-localhost-EXAMPLE",
            "tests/fixtures/config/spec-example/conf.d/localhost-EXAMPLE",
            1644,
            0x53bc_73f9_b590_66b7,
        ),
    ];
    let spec = Path::new("../shared/spec/examples");
    eprintln!("spec examples at {}: {}", spec.display(), if spec.is_dir() { "compared too" } else { "absent" });
    for (name, vendored, len, hash) in pinned {
        let bytes = std::fs::read(vendored).unwrap_or_else(|e| panic!("{vendored}: {e}"));
        assert_eq!((bytes.len(), fnv1a(&bytes)), (len, hash), "{vendored} is no longer the spec's {name}");
        if spec.is_dir() {
            assert_eq!(std::fs::read(spec.join(name)).unwrap(), bytes, "the spec's {name} changed: re-vendor it");
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}
