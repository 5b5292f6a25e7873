#!/usr/bin/env bash
# Memory per idle keep-alive connection (server VmRSS delta / connections).
#
# Usage (from anywhere):  bench/idle-conns.sh              # lwsws
#                         SERVER=nginx bench/idle-conns.sh # nginx, for comparison
# Environment:
#   SERVER      lwsws (default) or nginx
#   PROTO       plain (default): HTTP/1.1; tls: HTTP/1.1 over TLS (nginx "listen ... ssl");
#               h2: HTTP/2 over TLS, ALPN h2 (nginx "listen ... ssl http2"). Both servers get
#               the same self-signed ECDSA P-256 certificate; lwsws a TLS vhost.
#   CONNS       idle keep-alive connections to open (default 10000)
#   THREADS     nginx worker_processes / lwsws count-threads (default 2)
#   LWSWS_BIN   lwsws binary, relative to the repo root (default target/release/lwsws;
#               the default one is built with `cargo build --release` if missing)
#   NGINX_PORT  default 18080      LWSWS_PORT  default 18081
#   SETTLE      seconds to wait with all connections idle before the 2nd RSS read (default 2)
#   TIMEOUT     overall bound for the client, seconds (default 120)
#   KEEP_TMP=1  keep the temp dir (configs, logs)
#
# Both servers get a 300 s keep-alive timeout so nothing is reaped mid-run.
# Prints: RESULT server=... proto=... conns=N rss_before_kib=... rss_after_kib=... per_conn_bytes=... alive=... failed=...
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

SERVER="${SERVER:-lwsws}"
CONNS="${CONNS:-10000}"
THREADS="${THREADS:-2}"
NGINX_PORT="${NGINX_PORT:-18080}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
SETTLE="${SETTLE:-2}"
TIMEOUT="${TIMEOUT:-120}"
PROTO="${PROTO:-plain}"
KEEPALIVE=300
case "$PROTO" in
    plain | tls | h2) ;;
    *) die "PROTO must be plain, tls or h2 (got '$PROTO')" ;;
esac

for v in CONNS THREADS NGINX_PORT LWSWS_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done

case "$SERVER" in
    nginx) ensure_tools nginx curl python3 ;;
    lwsws)
        ensure_tools curl python3
        ensure_lwsws_bin
        ;;
    *) die "SERVER must be 'lwsws' or 'nginx' (got '$SERVER')" ;;
esac

# fds for this shell and (inherited) the server: CONNS server-side sockets
# plus listeners/logs/etc. The client raises its own soft limit likewise.
want=$((CONNS + 2000))
((want < 30000)) && want=30000
raise_nofile "$want" $((CONNS + 200))

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"
CERT="" KEY="" NGINX_EXTRA="" NGINX_FLAGS=""
if [[ "$PROTO" != plain ]]; then
    ensure_tools openssl
    make_cert "$BENCH_TMP/cert"
    CERT="$BENCH_TMP/cert/cert.pem" KEY="$BENCH_TMP/cert/key.pem"
    NGINX_EXTRA="$(nginx_tls_lines "$CERT" "$KEY")" NGINX_FLAGS=ssl
    [[ "$PROTO" == h2 ]] && NGINX_FLAGS="ssl http2"
fi

if [[ "$SERVER" == nginx ]]; then
    PORT="$NGINX_PORT"
    # each worker must be able to hold every connection (accept is not balanced)
    start_nginx "$BENCH_TMP/nginx" "$DOCROOT" "$PORT" "$THREADS" "$KEEPALIVE" $((CONNS + 1024)) \
        "$NGINX_EXTRA" "$NGINX_FLAGS"
    SERVER_PID="$NGINX_PID"
else
    PORT="$LWSWS_PORT"
    mkdir -p "$BENCH_TMP/lwsws"
    start_lwsws "$BENCH_TMP/lwsws" "$DOCROOT" "$PORT" "$THREADS" "$KEEPALIVE" "$CERT" "$KEY"
    SERVER_PID="$LWSWS_PID"
fi

log "opening $CONNS idle $PROTO keep-alive connections to $SERVER on 127.0.0.1:$PORT (PID $SERVER_PID)"
python3 bench/idle_conns.py --server "$SERVER" --pid "$SERVER_PID" --port "$PORT" --proto "$PROTO" \
    --conns "$CONNS" --settle "$SETTLE" --timeout "$TIMEOUT"
