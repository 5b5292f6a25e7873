#!/usr/bin/env bash
# The full test run: installs what the tests need, then the strict gates and every test.
# `cargo test` alone runs everything that needs only Rust; this adds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need curl curl
need pebble pebble
need python3 python3
if ((${#missing[@]})); then
  echo "[test-all] installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "[test-all] cargo fmt --check"
cargo fmt --all -- --check
echo "[test-all] import graph: no circles (scripts/check-imports.py)"
python3 scripts/check-imports.py --self-test
python3 scripts/check-imports.py
echo "[test-all] cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "[test-all] cargo test"
cargo test --all-targets
echo "[test-all] ACME against Pebble (the tests cargo test leaves out: they need Pebble)"
cargo test --test acme -- --ignored
echo "[test-all] smoke test of the release binary (the README's run command)"
cargo build --release
scripts/smoke-demo.sh target/release/lwsws

# Real peers. Each script installs what it needs and ends with "N passed, M failed"; any
# failure, or a peer that cannot run, fails this run.
export ARTEFACT_DIR="${ARTEFACT_DIR:-$PWD/target/artefacts}"
mkdir -p "$ARTEFACT_DIR"
echo "[test-all] the demo page in headless Chromium over WebDriver"
e2e/browser/run.sh target/release/lwsws
echo "[test-all] libwebsockets-test-client against the ws protocols (ws and wss)"
e2e/peers/lws-test-client.sh target/release/lwsws
echo "[test-all] promtool check metrics on /metrics"
e2e/peers/promtool.sh target/release/lwsws
echo "[test-all] Autobahn|Testsuite fuzzingclient against lws-echo"
e2e/peers/autobahn.sh target/release/lwsws
echo "[test-all] the Helm chart: lint, render, kubernetes-validate"
e2e/chart/check.sh target/release/lwsws
echo "[test-all] the container image (docker/test.sh) and the e2e scripts' syntax and shellcheck"
e2e/kind/check.sh target/release/lwsws
