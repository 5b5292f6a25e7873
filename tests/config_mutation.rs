//! Seeded mutation of whole config directories, a bounded fuzzing run inside `cargo test`: the
//! demo config (conf/) and every fixture under tests/fixtures/config are mutated a few hundred
//! times (bytes deleted, inserted, duplicated, swapped, cut off; some not UTF-8) with a fixed
//! seed, and `lwsws::load` must return Ok or a ConfigError that names one of the files with a
//! line and column, and never panic. The seed is fixed so a failure reproduces: it prints the
//! round, the file and the mutated text. The open-ended search is `scripts/fuzz.sh` (cargo fuzz).

use std::path::{Path, PathBuf};

const SEED: u64 = 0x6c77_7377_735f_6675;
const ROUNDS: usize = 600;

/// xorshift64*: small, fast and good enough to pick mutations; no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A config dir as (relative path, bytes): `conf` first, then `conf.d/*`.
fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("conf".to_string(), std::fs::read(dir.join("conf")).unwrap())];
    let mut names: Vec<_> = std::fs::read_dir(dir.join("conf.d"))
        .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    for n in names {
        if let Ok(bytes) = std::fs::read(dir.join("conf.d").join(&n)) {
            files.push((format!("conf.d/{n}"), bytes));
        }
    }
    files
}

/// The bytes config text is made of, and some it should never hold.
const ALPHABET: &[u8] = b"{}[]\",:\\/*#\n\r\t 0123456789abcdefxyz-._";
const ODD: &[&[u8]] =
    &[b"\xff", b"\xc3", b"\0", b"\xe2\x80\x8b", b"99999999999999999999", b"-1", b"\"\"", b"/*", b"\\u0000"];

fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(text.len() + 1);
        match rng.below(7) {
            0 if !text.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(text.len());
                text.drain(at.min(end)..end);
            }
            1 => text.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            2 => {
                let odd = ODD[rng.below(ODD.len())];
                text.splice(at..at, odd.iter().copied());
            }
            3 if !text.is_empty() => {
                let start = rng.below(text.len());
                let end = (start + 1 + rng.below(40)).min(text.len());
                let copy = text[start..end].to_vec();
                text.splice(at..at, copy);
            }
            4 if text.len() > 1 => {
                let (a, b) = (rng.below(text.len()), rng.below(text.len()));
                text.swap(a, b);
            }
            5 => text.truncate(at),
            _ => {
                // A digit run replaced: ports, counts and timeouts at their edges.
                if let Some(i) = text.iter().skip(at).position(u8::is_ascii_digit) {
                    let big: &[u8] = [&b"0"[..], b"65536", b"4294967296", b"18446744073709551616"][rng.below(4)];
                    text.splice(at + i..at + i + 1, big.iter().copied());
                }
            }
        }
    }
}

fn cases() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("conf")];
    let mut fixtures: Vec<_> = std::fs::read_dir("tests/fixtures/config")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("conf").is_file())
        .collect();
    fixtures.sort();
    dirs.extend(fixtures);
    dirs
}

#[test]
fn mutated_config_dirs_load_or_fail_with_a_location_never_panic() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cases = cases();
    assert!(cases.len() >= 10, "the demo config and the fixtures: {cases:?}");
    let mut rng = Rng(SEED);
    let (mut ok, mut refused, mut not_utf8) = (0, 0, 0);
    for round in 0..ROUNDS {
        let case = &cases[rng.below(cases.len())];
        let mut files = read_dir_files(case);
        let victim = rng.below(files.len());
        mutate(&mut rng, &mut files[victim].1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let what = || {
            format!(
                "round {round}, {} with {} mutated:\n{}",
                case.display(),
                files[victim].0,
                String::from_utf8_lossy(&files[victim].1)
            )
        };
        let path = dir.path().to_path_buf();
        let result = std::panic::catch_unwind(|| lwsws::lwsws::load(&path, "/usr/share"))
            .unwrap_or_else(|_| panic!("load panicked: {}", what()));
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                let file = e.loc.file.to_string();
                let named = files.iter().any(|(n, _)| file == dir.path().join(n).display().to_string());
                assert!(named, "the error names none of the files: \"{e}\": {}", what());
                let shown = e.to_string();
                if e.msg == "not UTF-8" {
                    assert!(std::str::from_utf8(&files[victim].1).is_err(), "{shown}: {}", what());
                    not_utf8 += 1;
                }
                assert!(e.loc.line >= 1 && e.loc.col >= 1, "no line:col in \"{e}\": {}", what());
                assert!(shown.starts_with(&format!("{file}:{}:{}: ", e.loc.line, e.loc.col)), "{shown}");
                refused += 1;
            }
        }
    }
    eprintln!("{ROUNDS} mutated config dirs: {ok} loaded, {refused} refused at file:line:col, {not_utf8} not UTF-8");
    // Both outcomes must occur, or the mutations are too weak (or too strong) to test anything.
    assert!(ok > 0 && refused > 0, "{ok} loaded, {refused} refused");
}

/// A file that is not UTF-8 is refused at the line and column of its first bad byte, as every
/// other config error is.
#[test]
fn a_file_that_is_not_utf8_names_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), b"{ \"global\": {\n  \"ti\xffmeout\": \"15\" } }\n").unwrap();
    let e = lwsws::lwsws::load(dir.path(), "/usr/share").expect_err("refused");
    assert_eq!((e.loc.line, e.loc.col, e.msg.as_str()), (2, 6, "not UTF-8"), "{e}");
    assert!(e.to_string().ends_with("conf:2:6: not UTF-8"), "{e}");
}
