#!/usr/bin/env bash
# WebSocket fan-out: 1,000 lws-mirror-protocol clients in one instance, one sender; prints
# messages delivered per second and resident memory per idle websocket connection.
set -euo pipefail
cd "$(dirname "$0")/.."
LWSWS=${LWSWS_BIN:-target/release/lwsws}
CLIENTS=${CLIENTS:-1000}
MESSAGES=${MESSAGES:-2000}
PORT=${LWSWS_PORT:-18083}
[ -x "$LWSWS" ] || cargo build --release
ulimit -n "$(ulimit -Hn)"
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir/conf.d" "$dir/www"
echo '{ "global": { "count-threads": "2" } }' >"$dir/conf"
cat >"$dir/conf.d/ws" <<JSON
{ "vhosts": [ { "name": "localhost", "port": "$PORT", "interface": "127.0.0.1", "keepalive_timeout": "300",
  "mounts": [ { "mountpoint": "/", "origin": "file://$dir/www" } ],
  "ws-protocols": [ { "lws-mirror-protocol": {} } ] } ] }
JSON
RUST_LOG=warn "$LWSWS" -c "$dir" >"$dir/lwsws.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
python3 bench/ws_fanout.py --port "$PORT" --pid "$pid" --clients "$CLIENTS" --messages "$MESSAGES"
