#!/usr/bin/env bash
# The full test run: installs what the tests need, then the strict gates and every test.
# `cargo test` alone runs everything that needs only Rust; this adds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need curl curl
if ((${#missing[@]})); then
  echo "[test-all] installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "[test-all] cargo fmt --check"
cargo fmt --all -- --check
echo "[test-all] cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "[test-all] cargo test"
cargo test --all-targets
echo "[test-all] smoke test of the release binary (the README's run command)"
cargo build --release
scripts/smoke-demo.sh target/release/lwsws
