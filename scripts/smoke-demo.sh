#!/usr/bin/env bash
# Smoke test of the release binary as a new user meets it: with no config it picks the built-in
# demo (checked with `--check`, which resolves the config dir exactly as a plain start does,
# without taking port 7681 away from whatever already runs there), and the demo config and site
# (conf/, carried byte for byte in the binary: see src/demo.rs's test) serve the test page, here
# on a port of the run's own. Fails (never skips) when anything is missing; on a failure the
# server's log is printed before it is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/lwsws}
# shellcheck source=scripts/demo-server.sh
source scripts/demo-server.sh
command -v curl >/dev/null 2>&1 || { echo "smoke: curl is missing"; exit 1; }
[ -x "$bin" ] || { echo "smoke: no binary at $bin"; exit 1; }
work=$(mktemp -d)
log=$work/lwsws.log
finish() {
  local status=$?
  if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; fi
  if [ "$status" -ne 0 ] && [ -s "$log" ]; then
    echo "smoke: the server's log:"
    cat "$log"
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
}
trap finish EXIT

# 1. No config: the demo is what would be served, on 7681.
empty=$work/no-config
mkdir -p "$empty"
if ! LWSWS_DEFAULT_CONFIG_DIR=$empty NO_COLOR=1 "$bin" --check >"$work/check.out" 2>"$work/check.err"; then
  echo "smoke: lwsws --check without a config failed:"
  cat "$work/check.out" "$work/check.err"
  exit 1
fi
grep -q '\*:7681 http vhosts: localhost' "$work/check.out" || {
  echo "smoke: --check without a config does not show the demo on 7681:"
  cat "$work/check.out"
  exit 1
}
head -1 "$work/check.err" | grep -q "built-in demo" || {
  echo "smoke: the first log line does not mention the demo:"
  cat "$work/check.err"
  exit 1
}

# 2. The demo config serves the test page.
demo_config "$work/conf"
demo_start "$bin" "$work/conf" "$log"
port=$(demo_port "$log")
page=$(curl -fsS --max-time 30 "http://127.0.0.1:$port/") || { echo "smoke: GET / on port $port failed"; exit 1; }
grep -q "lwsws is running" <<<"$page" || { echo "smoke: unexpected page: $page"; exit 1; }
kill -TERM "$demo_pid"
status=0
wait "$demo_pid" || status=$?
demo_pid=""
[ "$status" -eq 0 ] || { echo "smoke: lwsws exited $status after SIGTERM"; exit 1; }
