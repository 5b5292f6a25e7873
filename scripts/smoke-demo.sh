#!/usr/bin/env bash
# Runs the binary with no config, as `cargo run --release` does for a new user, and checks that
# the built-in demo answers on port 7681. Fails (never skips) when anything is missing.
set -euo pipefail
bin=${1:-target/release/lwsws}
log=$(mktemp)
LWSWS_DEFAULT_CONFIG_DIR=/nonexistent/lwsws "$bin" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:7681/ 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "smoke: lwsws exited early"; exit 1; }
  sleep 0.1
done
page=$(curl -fsS http://127.0.0.1:7681/)
grep -q "lwsws is running" <<<"$page" || { echo "smoke: unexpected page"; exit 1; }
head -1 "$log" | grep -q "built-in demo" || { echo "smoke: first log line does not mention the demo"; cat "$log"; exit 1; }
kill -TERM "$pid"
wait "$pid"
echo "1 passed, 0 failed"
