#!/usr/bin/env bash
# Instructions per request, by valgrind's callgrind: a count that does not depend on what else
# the machine is doing, so two builds can be compared where wall-clock benchmarks are too noisy.
#
#   bench/callgrind.sh BIN [BIN ...]     e.g. bench/callgrind.sh /tmp/lwsws-before target/release/lwsws
#
# For each binary and each path (a 1 KiB static file; a proxied 1 KiB file through the
# passthrough; the same through hyper, with the passthrough off), lwsws runs under callgrind on
# 127.0.0.1, answers WARMUP requests, has its counters zeroed, answers REQUESTS keep-alive
# requests from one client, and has its counters dumped: instructions / REQUESTS is printed.
# The backend is a plain nginx (not measured). Knobs: REQUESTS (2000), WARMUP (200).
#
#   RESULT path=static bin=... ir_per_request=...
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

REQUESTS="${REQUESTS:-2000}"
WARMUP="${WARMUP:-200}"
(($# >= 1)) || die "usage: bench/callgrind.sh BIN [BIN ...]"
ensure_tools nginx curl python3 valgrind
bench_init

DOCROOT="$BENCH_TMP/www"
make_docroot "$DOCROOT"
BACKEND_PORT=18190
port_free() { # NAME PORT VAR: the first free port from PORT up
    local p="$2"
    while port_answers "$p" || ss -ltn "sport = :$p" | grep -q LISTEN; do p=$((p + 1)); done
    printf -v "$3" '%s' "$p"
}
port_free backend "$BACKEND_PORT" BACKEND_PORT
start_nginx "$BENCH_TMP/backend" "$DOCROOT" "$BACKEND_PORT" 1 65 1024

# client PORT PATH N: N sequential keep-alive GETs on one connection; fails on a non-200.
client() {
    python3 - "$@" <<'EOF'
import socket, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
req = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected answer: {head[:80]!r}")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
EOF
}

# measure BIN NAME PATH PASSTHROUGH: prints instructions per request.
measure() {
    local bin="$1" name="$2" path="$3" passthrough="$4" dir port pid ir
    dir="$(mktemp -d "$BENCH_TMP/run.XXXX")"
    port_free lwsws 18191 port
    mkdir -p "$dir/etc/conf.d"
    printf '{ "global": { "count-threads": "1", "proxy-passthrough": "%s" } }\n' "$passthrough" >"$dir/etc/conf"
    cat >"$dir/etc/conf.d/site" <<EOF
{ "vhosts": [ { "name": "localhost", "port": "$port", "interface": "127.0.0.1",
    "mounts": [
      { "mountpoint": "/static", "origin": "file://$DOCROOT" },
      { "mountpoint": "/proxy", "origin": "http://127.0.0.1:$BACKEND_PORT/", "rewrite-links": "0" } ] } ] }
EOF
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" -c "$dir/etc" \
        </dev/null >"$dir/lwsws.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    for ((i = 0; i < 300; i++)); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port$path" && break
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/lwsws.log" >&2; die "lwsws under callgrind exited"; }
        sleep 0.2
    done
    client "$port" "$path" "$WARMUP"
    callgrind_control -z "$pid" >/dev/null 2>&1
    client "$port" "$path" "$REQUESTS"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump taken after the measured requests is the highest-numbered one.
    ir="$(for f in "$dir"/cg.out.*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; done | sort -n | tail -1)"
    [[ -n "$ir" ]] || die "no callgrind totals for $bin"
    printf 'RESULT path=%s bin=%s ir_per_request=%d\n' "$name" "$bin" "$((ir / REQUESTS))"
}

for bin in "$@"; do
    [[ -x "$bin" ]] || die "not an executable: $bin"
    measure "$bin" static /static/1k.html 1
    measure "$bin" proxy-passthrough /proxy/1k.html 1
    measure "$bin" proxy-hyper /proxy/1k.html 0
done
