#!/usr/bin/env bash
# Checks lwsws's /metrics with Prometheus's own linter: installs Debian `prometheus` (for
# promtool) if missing, starts lwsws with the demo config and an admin listener (both on ports
# the kernel picks, read back from the log: scripts/demo-server.sh), sends traffic whose every
# answer is checked, and runs `promtool check metrics` on what /metrics returns, which must
# count that traffic. Ends with "N passed, M failed"; fails on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/lwsws}
# shellcheck source=scripts/demo-server.sh
source scripts/demo-server.sh
# shellcheck source=e2e/tally.sh
source e2e/tally.sh
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v promtool >/dev/null 2>&1 || { echo "promtool is missing and could not be installed"; echo "0 passed, 1 failed"; exit 1; }
dir=$(mktemp -d)
cleanup() {
  if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
demo_config "$dir/conf"
demo_start "$BIN" "$dir/conf" "$dir/lwsws.log" --admin-addr 127.0.0.1:0
port=$(demo_port "$dir/lwsws.log")
admin=""
for _ in $(seq 1 300); do
  admin=$(grep -o 'admin listener: .* bound=127\.0\.0\.1:[0-9]*' "$dir/lwsws.log" | sed 's/.*bound=//' || true)
  [ -n "$admin" ] && break
  sleep 0.1
done
[ -n "$admin" ] || { cat "$dir/lwsws.log"; echo "no admin listener in the log"; echo "0 passed, 1 failed"; exit 1; }

# Every request must get the answer it should: a status that is not wanted fails the run.
status_is() {
  local want=$1 path=$2 got
  got=$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' "http://127.0.0.1:$port$path") || got="no answer"
  [ "$got" = "$want" ] || { echo "GET $path: $got, want $want"; return 1; }
}
check "GET / is 200" status_is 200 /
check "GET /style.css is 200" status_is 200 /style.css
check "GET /missing.html is 404" status_is 404 /missing.html
check "GET /server-status/ is 200" status_is 200 /server-status/

if curl -fsS --max-time 30 "http://$admin/metrics" >"$dir/metrics.txt"; then
  ok "GET /metrics"
else
  bad "GET /metrics"
fi
if promtool check metrics <"$dir/metrics.txt"; then
  ok "promtool check metrics: clean ($(grep -c '^lwsws_' "$dir/metrics.txt") samples)"
else
  cat "$dir/metrics.txt"
  bad "promtool check metrics"
fi
# The page counts what was sent: four requests, one of them a 404.
counted() { grep -E '^lwsws_http_requests_total\{.*\} ' "$dir/metrics.txt" | awk '{ n += $NF } END { print n + 0 }'; }
check "/metrics counts the 4 requests sent (saw $(counted))" test "$(counted)" -ge 4
if ! tally; then
  echo "the server's log:"
  cat "$dir/lwsws.log"
  exit 1
fi
