#!/usr/bin/env bash
# lwsws behind haproxy (Debian's, 2.6) with the PROXY protocol: haproxy in TCP mode on
# loopback sends `send-proxy` (v1) to one lwsws port and `send-proxy-v2` to two others, one of
# them TLS (haproxy passes the client's TLS through, as a cloud network load balancer does).
# curl connects to haproxy from a chosen loopback source address; lwsws's access log must show
# that address, not haproxy's 127.0.0.1.
#
#   e2e/peers/haproxy-proxy-protocol.sh [path/to/lwsws]   (default: target/release/lwsws)
#
# Ports: lwsws 17701 (v1), 17702 (v2), 17703 (v2, TLS); haproxy 17711, 17712, 17713 in front.
# Checks:
#   v1, v2, v2-tls   a request through haproxy from 127.0.0.5/.6/.7 is answered 200 and the
#                    access log line of that port starts with the client's address
#   direct           a plain request straight to the v1 port, with no header, gets no answer
#                    and no access log line
#   alive            lwsws still runs at the end
# Installs haproxy (apt) when it is missing; needs curl and openssl. Logs go to
# $ARTEFACT_DIR/haproxy-proxy-protocol/ (default /tmp/lwsws-artefacts). KEEP_TMP=1 keeps the
# temp dir. Ends with "N passed, M failed"; exit 1 if any check failed, 2 if it could not run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/release/lwsws}"
if [[ "$BIN" != /* ]]; then
    if [[ -x "$BIN" ]]; then BIN="$(pwd)/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
ARTEFACT_DIR="${ARTEFACT_DIR:-/tmp/lwsws-artefacts}"
OUT="$ARTEFACT_DIR/haproxy-proxy-protocol"
LWS_V1=17701 LWS_V2=17702 LWS_TLS=17703
HA_V1=17711 HA_V2=17712 HA_TLS=17713

SERVER_PID=""
HAPROXY_PID=""
TMP=""

log() { printf '[haproxy-pp] %s\n' "$*"; }
die() {
    printf '[haproxy-pp] ERROR: %s\n' "$*" >&2
    echo "0 passed, 1 failed"
    exit 2
}

# shellcheck source=e2e/peers/lwsws.sh
source "$HERE/lwsws.sh"
# shellcheck source=e2e/tally.sh
source "$ROOT/e2e/tally.sh"

stop_all() {
    if [[ -n "$HAPROXY_PID" ]] && kill -0 "$HAPROXY_PID" 2>/dev/null; then
        kill -TERM "$HAPROXY_PID" 2>/dev/null || true
        wait "$HAPROXY_PID" 2>/dev/null || true
    fi
    cleanup
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the test needs ------------------------------------------------------------------
[[ -x "$BIN" ]] || die "no lwsws binary at $BIN (build it, or pass its path as the first argument)"
if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy >/dev/null; } \
        || die "could not install haproxy"
fi
for tool in haproxy curl openssl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
for p in "$LWS_V1" "$LWS_V2" "$LWS_TLS" "$HA_V1" "$HA_V2" "$HA_TLS"; do
    port_open "$p" && die "something already listens on 127.0.0.1:$p; stop it first"
done

# --- config ---------------------------------------------------------------------------------
TMP="$(mktemp -d -t lwsws-haproxy-pp.XXXXXX)"
mkdir -p "$TMP/conf.d" "$TMP/www" "$OUT"
echo 'behind haproxy' >"$TMP/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.log" \
    || { cat "$TMP/openssl.log" >&2; die "openssl could not make the test certificate"; }

echo '{}' >"$TMP/conf"
vhost() { # PORT VERSION LOGNAME [EXTRA]
    cat <<EOF
    { "name": "localhost", "port": "$1", "interface": "127.0.0.1", "proxy-protocol": "$2",
      "access-log": "$TMP/$3.log", $4
      "mounts": [ { "mountpoint": "/", "origin": "file://$TMP/www", "default": "index.html" } ] }
EOF
}
{
    echo '{ "vhosts": ['
    vhost "$LWS_V1" v1 access-v1 ""
    echo ','
    vhost "$LWS_V2" v2 access-v2 ""
    echo ','
    vhost "$LWS_TLS" any access-tls "\"host-ssl-cert\": \"$TMP/cert.pem\", \"host-ssl-key\": \"$TMP/key.pem\","
    echo '] }'
} >"$TMP/conf.d/site"

cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe_v1
    bind 127.0.0.1:$HA_V1
    default_backend be_v1
backend be_v1
    server s1 127.0.0.1:$LWS_V1 send-proxy
frontend fe_v2
    bind 127.0.0.1:$HA_V2
    default_backend be_v2
backend be_v2
    server s2 127.0.0.1:$LWS_V2 send-proxy-v2
frontend fe_tls
    bind 127.0.0.1:$HA_TLS
    default_backend be_tls
backend be_tls
    server s3 127.0.0.1:$LWS_TLS send-proxy-v2
EOF

# --- the servers ----------------------------------------------------------------------------
SERVER_LOG="$OUT/lwsws.log"
RUST_LOG="${RUST_LOG:-lwsws=debug}" start_lwsws "$BIN" "$TMP" "$SERVER_LOG" "$LWS_V1" "$LWS_V2" "$LWS_TLS"
log "lwsws $BIN (pid $SERVER_PID); log $SERVER_LOG"
haproxy -c -f "$TMP/haproxy.cfg" >"$OUT/haproxy-check.log" 2>&1 \
    || { cat "$OUT/haproxy-check.log" >&2; die "haproxy refused its config"; }
haproxy -db -f "$TMP/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for ((i = 0; i < 100; i++)); do
    port_open "$HA_V1" && port_open "$HA_V2" && port_open "$HA_TLS" && break
    kill -0 "$HAPROXY_PID" 2>/dev/null || { cat "$OUT/haproxy.log" >&2; die "haproxy exited during startup"; }
    sleep 0.1
done
port_open "$HA_TLS" || die "haproxy did not listen within 10 s"
log "haproxy $(haproxy -v | head -n 1) (pid $HAPROXY_PID)"

# --- the checks -----------------------------------------------------------------------------
# logged LOG ADDR PATH: within 5 s, LOG has a line for PATH that starts with ADDR.
logged() {
    local file=$1 addr=$2 path=$3 i
    for ((i = 0; i < 50; i++)); do
        grep -q "^${addr//./\\.} - - .*\"GET ${path} " "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no line for $path from $addr in $file:"
    sed 's/^/      /' "$file" 2>/dev/null || echo "      (no log)"
    return 1
}

# through NAME SOURCE URL LOG PATH: a request through haproxy from SOURCE, answered 200, logged
# with SOURCE as the client.
through() {
    local name=$1 src=$2 url=$3 file=$4 path=$5 code
    code=$(curl -sk -o /dev/null --max-time 10 --interface "$src" \
        --resolve "localhost:$HA_TLS:127.0.0.1" -w '%{http_code}' "$url$path") || code="none"
    if [[ "$code" != 200 ]]; then
        bad "$name: GET $path from $src through haproxy got $code, want 200"
        return
    fi
    check "$name: GET $path from $src logged as $src, not haproxy's address" logged "$file" "$src" "$path"
}

through v1 127.0.0.5 "http://127.0.0.1:$HA_V1" "$TMP/access-v1.log" /index.html
through v2 127.0.0.6 "http://127.0.0.1:$HA_V2" "$TMP/access-v2.log" /index.html
through v2-tls 127.0.0.7 "https://localhost:$HA_TLS" "$TMP/access-tls.log" /index.html

# No header: the connection is closed without an answer, and nothing is logged.
if curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$LWS_V1/direct.html"; then
    bad "direct: a request without a PROXY header was answered"
else
    check "direct: a request without a PROXY header is closed unanswered" \
        bash -c "! grep -q 'GET /direct.html ' '$TMP/access-v1.log'"
fi

if kill -0 "$SERVER_PID" 2>/dev/null; then
    ok "alive: lwsws still running"
else
    bad "alive: lwsws exited; tail of its log:"
    tail -n 20 "$SERVER_LOG" | sed 's/^/      /'
fi
cp "$TMP"/access-*.log "$OUT/" 2>/dev/null || true
tally
