#!/usr/bin/env bash
# The full test run: installs what the tests need, then the strict gates and every test.
# `cargo test` alone runs everything that needs only Rust; this adds the rest.
#
# Every stage runs even when an earlier one failed, so one failure does not hide the others.
# Each stage's output goes to the terminal and to $ARTEFACT_DIR/stages/NAME.log; at the end a
# table gives each stage's result and duration, and the run exits non-zero if any stage failed.
# A stage that cannot run (a tool missing, the release binary not built) counts as failed.
# Env: ARTEFACT_DIR (default target/artefacts), FUZZ_SECONDS (per fuzz target, default 60).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

export ARTEFACT_DIR="${ARTEFACT_DIR:-$PWD/target/artefacts}"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target_dir/release/lwsws
stage_logs=$ARTEFACT_DIR/stages
mkdir -p "$stage_logs"

names=()
results=()
# Ctrl-C stops the whole run, not just the stage it lands in.
trap 'echo "[test-all] interrupted"; exit 130' INT TERM
durations=()

# stage NAME COMMAND...: runs COMMAND (a shell function or a program) with `set -e` in a
# subshell, its output teed to the stage log; records pass or fail and how long it took.
stage() {
  local name=$1 start status
  shift
  echo
  echo "[test-all] ==> $name"
  start=$SECONDS
  (set -e; "$@") 2>&1 | tee "$stage_logs/$name.log"
  status=${PIPESTATUS[0]}
  names+=("$name")
  durations+=($((SECONDS - start)))
  if [ "$status" -eq 0 ]; then
    results+=("pass")
  else
    results+=("FAIL ($status)")
    echo "[test-all] <== $name FAILED (exit $status; log $stage_logs/$name.log)"
  fi
}

# A stage that needs the release binary fails, saying so, when it was not built.
needs_bin() {
  [ -x "$bin" ] || { echo "cannot run: no release binary at $bin (the release build failed)"; return 1; }
}

install_prerequisites() {
  local missing=() pair
  for pair in curl:curl pebble:pebble python3:python3 script:bsdutils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
run_imports() {
  python3 scripts/check-imports.py --self-test
  python3 scripts/check-imports.py
}
run_pebble_tests() {
  command -v pebble >/dev/null 2>&1 || { echo "cannot run: pebble is missing (apt-get install pebble)"; return 1; }
  cargo test --test acme -- --ignored
  cargo test --test acme_replicas -- --ignored
}
run_smoke() { needs_bin && scripts/smoke-demo.sh "$bin"; }
run_browser() { needs_bin && e2e/browser/run.sh "$bin"; }
run_lws_client() { needs_bin && e2e/peers/lws-test-client.sh "$bin"; }
run_rolling() { needs_bin && e2e/peers/rolling-restart.sh "$bin"; }
run_haproxy_pp() { needs_bin && e2e/peers/haproxy-proxy-protocol.sh "$bin"; }
run_promtool() { needs_bin && e2e/peers/promtool.sh "$bin"; }
run_autobahn() { needs_bin && e2e/peers/autobahn.sh "$bin"; }
run_chart() { needs_bin && e2e/chart/check.sh "$bin"; }
run_kind_check() { needs_bin && e2e/kind/check.sh "$bin"; }
run_fuzz() { scripts/fuzz.sh "${FUZZ_SECONDS:-60}"; }

stage prerequisites install_prerequisites
stage fmt cargo fmt --all -- --check
stage imports run_imports
stage clippy cargo clippy --all-targets -- -D warnings
stage cargo-test cargo test --all-targets
stage acme-pebble run_pebble_tests
stage release-build cargo build --release
stage smoke run_smoke
# Real peers. Each script installs what it needs and ends with "N passed, M failed"; any
# failure, or a peer that cannot run, fails its stage.
stage browser run_browser
stage lws-test-client run_lws_client
stage rolling-restart run_rolling
stage haproxy-proxy-protocol run_haproxy_pp
stage promtool run_promtool
stage autobahn run_autobahn
stage chart run_chart
stage docker-kind run_kind_check
stage fuzz run_fuzz

echo
echo "[test-all] summary (logs in $stage_logs/)"
printf '  %-16s %-10s %8s\n' stage result seconds
failed=0
for i in "${!names[@]}"; do
  printf '  %-16s %-10s %8s\n' "${names[$i]}" "${results[$i]}" "${durations[$i]}"
  [ "${results[$i]}" = pass ] || failed=$((failed + 1))
done
passed=$((${#names[@]} - failed))
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
