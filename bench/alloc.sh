#!/usr/bin/env bash
# The allocator that serves users best: the same load on lwsws built with glibc's malloc,
# jemalloc and mimalloc, one after the other.
#
#   bench/alloc.sh NAME=BIN [NAME=BIN ...]
#   e.g. bench/alloc.sh glibc=/tmp/lwsws-glibc jemalloc=/tmp/lwsws-jemalloc mimalloc=/tmp/lwsws-mimalloc
#   (build each with `cargo build --release [--features jemalloc|mimalloc]`)
#
# For each binary, on 127.0.0.1 with count-threads 2 (THREADS):
#   - throughput: wrk -t2 -c64 for DURATION s on a 1 KiB file (req/s);
#   - a burst: wrk with BURST_CONNS connections for DURATION s on a 1 MiB file, the RSS right
#     after it (peak) and SETTLE s after every connection has gone (what was given back);
#   - RSS per idle keep-alive connection, with IDLE_CONNS of them, on a fresh process
#     (bench/idle_conns.py).
# Prints one line per binary:
#   RESULT alloc=NAME rps=... rss_start_kib=... rss_after_burst_kib=... rss_settled_kib=... idle_per_conn_bytes=...
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

THREADS="${THREADS:-2}"
DURATION="${DURATION:-5}"
BURST_CONNS="${BURST_CONNS:-1000}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
SETTLE="${SETTLE:-10}"
PORT="${LWSWS_PORT:-18181}"
(($# >= 1)) || die "usage: bench/alloc.sh NAME=BIN [NAME=BIN ...]"
ensure_tools wrk curl python3
bench_init
DOCROOT="$BENCH_TMP/www"
make_docroot "$DOCROOT"
raise_nofile $((IDLE_CONNS + BURST_CONNS + 1024)) $((IDLE_CONNS + 256))

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

for spec in "$@"; do
    name="${spec%%=*}" bin="${spec#*=}"
    [[ -x "$bin" ]] || die "not an executable: $bin"
    dir="$BENCH_TMP/$name"
    mkdir -p "$dir"
    LWSWS="$bin"
    start_lwsws "$dir" "$DOCROOT" "$PORT" "$THREADS" 300
    pid="$LWSWS_PID"
    curl -s -o /dev/null "http://127.0.0.1:$PORT/1k.html"
    start="$(rss_kib "$pid")"
    rps="$(wrk -t2 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT/1k.html" | awk '/Requests\/sec/ { print $2 }')"
    wrk -t2 -c"$BURST_CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/1m.bin" >/dev/null
    burst="$(rss_kib "$pid")"
    sleep "$SETTLE"
    settled="$(rss_kib "$pid")"
    # Idle connections on a fresh process: after the burst, what an allocator gives back while
    # they are opened would be counted against them.
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    start_lwsws "$dir" "$DOCROOT" "$PORT" "$THREADS" 300
    pid="$LWSWS_PID"
    idle="$(python3 bench/idle_conns.py --server "$name" --pid "$pid" --port "$PORT" --conns "$IDLE_CONNS" \
        --settle 2 --timeout 120 | awk -F'per_conn_bytes=' '/RESULT/ { split($2, a, " "); print a[1] }')"
    printf 'RESULT alloc=%s rps=%s rss_start_kib=%s rss_after_burst_kib=%s rss_settled_kib=%s idle_per_conn_bytes=%s\n' \
        "$name" "$rps" "$start" "$burst" "$settled" "$idle"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
done
