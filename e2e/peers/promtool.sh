#!/usr/bin/env bash
# Checks lwsws's /metrics with Prometheus's own linter: installs Debian `prometheus` (for
# promtool) if missing, starts lwsws with the demo config and an admin listener, sends some
# traffic, and runs `promtool check metrics` on what /metrics returns.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/lwsws}
ADMIN=127.0.0.1:${ADMIN_PORT:-17699}
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
cp -r conf/. "$dir/"
"$BIN" -c "$dir" --data-dir "$dir/share" --admin-addr "$ADMIN" >"$dir/lwsws.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://$ADMIN/healthz" 2>/dev/null && break
  sleep 0.1
done
for path in / /style.css /missing.html /server-status/; do
  curl -s -o /dev/null "http://127.0.0.1:7681$path" || true
done
curl -fsS "http://$ADMIN/metrics" >"$dir/metrics.txt"
if promtool check metrics <"$dir/metrics.txt"; then
  echo "promtool check metrics: clean ($(grep -c '^lwsws_' "$dir/metrics.txt") samples)"
  echo "1 passed, 0 failed"
else
  cat "$dir/metrics.txt"
  echo "0 passed, 1 failed"
  exit 1
fi
