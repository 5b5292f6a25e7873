#!/usr/bin/env bash
# A rolling restart behind a load balancer drops nothing: three lwsws replicas on 127.0.0.1
# (17781-17783, admin 17791-17793), each serving a small static file, behind haproxy (Debian
# 2.6, 127.0.0.1:17780) that health-checks each replica's /readyz every 200 ms and takes it out
# at the first failure. wrk (-c16) runs through the whole test while each replica in turn gets
# SIGTERM, exits, is started again and waits until it is ready.
#
#   e2e/peers/rolling-restart.sh [path/to/lwsws]   (default: target/release/lwsws in the repo root)
#
# Each replica runs with --shutdown-delay-secs 2 --grace-secs 10: at SIGTERM its /readyz
# answers 503 (checked), haproxy stops sending it requests within one check interval, and the
# listener closes only after the delay. Checks: every replica stopped with status 0 and came
# back ready; the restarts were over before wrk stopped; wrk made requests, and saw 0 socket
# errors (connect, read, write, timeout) and 0 non-2xx responses. wrk's summary is printed.
#
# Installs haproxy and wrk (apt) when missing. Logs go to $ARTEFACT_DIR/rolling-restart/
# (default /tmp/lwsws-artefacts). KEEP_TMP=1 keeps the temp dir; RUN_SECS sets wrk's duration
# (default 24); SHUTDOWN_DELAY=0 is the control: without the delay the same restarts lose
# requests (haproxy's 503s, wrk's read errors) and its checks fail. Ends with
# "N passed, M failed"; exit 1 if any check failed, 2 if the test could not run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/release/lwsws}"
if [[ "$BIN" != /* ]]; then
    if [[ -x "$BIN" ]]; then BIN="$(pwd)/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
LB_PORT=17780
REPLICAS=(1 2 3)
DELAY="${SHUTDOWN_DELAY:-2}"
GRACE=10
RUN_SECS="${RUN_SECS:-24}"
ARTEFACT_DIR="${ARTEFACT_DIR:-/tmp/lwsws-artefacts}"
OUT="$ARTEFACT_DIR/rolling-restart"

TMP=""
HAPROXY_PID=""
WRK_PID=""
declare -A PIDS=()

# shellcheck source=e2e/tally.sh
source "$ROOT/e2e/tally.sh"
log() { printf '[rolling-restart] %s\n' "$*"; }
die() {
    printf '[rolling-restart] ERROR: %s\n' "$*" >&2
    echo "$passed passed, $((failed + 1)) failed"
    exit 2
}

# Stops what this script started, by PID: TERM, then KILL what is left after 5 s.
cleanup() {
    local pid n
    {
        for pid in "${PIDS[@]}" "$HAPROXY_PID" "$WRK_PID"; do
            if [[ -n "$pid" ]]; then kill -TERM "$pid" || true; fi
        done
        for ((n = 0; n < 50; n++)); do
            jobs -pr | grep -q . || break
            sleep 0.1
        done
        for pid in $(jobs -pr); do kill -KILL "$pid" || true; done
        wait || true
    } 2>/dev/null
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "keeping $TMP"; else rm -rf -- "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The status code /readyz answers on admin port $1 ("000" when nothing answers).
readyz() {
    local line
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && head -n1 <&3) 2>/dev/null) || true
    line=${line#HTTP/1.? }
    echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

# --- what the test needs ------------------------------------------------------------------
[[ -x "$BIN" ]] || die "no lwsws binary at $BIN (build it, or pass its path as the first argument)"
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        || die "could not install ${missing[*]}"
fi
for p in "$LB_PORT" 17781 17782 17783 17791 17792 17793; do
    port_open "$p" && die "something already listens on 127.0.0.1:$p; stop it first"
done
mkdir -p "$OUT"
TMP="$(mktemp -d)"

# --- the replicas ---------------------------------------------------------------------------
mkdir -p "$TMP/www"
head -c 2048 /dev/zero | tr '\0' 'x' >"$TMP/www/index.html"
for i in "${REPLICAS[@]}"; do
    mkdir -p "$TMP/r$i/conf.d"
    echo '{ "global": { "timeout-secs": "15" } }' >"$TMP/r$i/conf"
    cat >"$TMP/r$i/conf.d/site" <<EOF
{ "vhosts": [{ "name": "localhost", "port": "1778$i", "interface": "127.0.0.1",
    "mounts": [{ "mountpoint": "/", "origin": "file://$TMP/www", "default": "index.html" }] }] }
EOF
done

# start_replica N: runs replica N in the background and waits until its /readyz says 200.
start_replica() {
    local i=$1 n
    RUST_LOG="${RUST_LOG:-lwsws=info}" "$BIN" -c "$TMP/r$i" --admin-addr "127.0.0.1:1779$i" \
        --shutdown-delay-secs "$DELAY" --grace-secs "$GRACE" >>"$OUT/lwsws-$i.log" 2>&1 &
    PIDS[$i]=$!
    for ((n = 0; n < 100; n++)); do
        [[ "$(readyz "1779$i")" == 200 ]] && return 0
        kill -0 "${PIDS[$i]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

rm -f "$OUT"/lwsws-*.log
for i in "${REPLICAS[@]}"; do
    start_replica "$i" || die "replica $i did not become ready (see $OUT/lwsws-$i.log)"
done

# --- haproxy --------------------------------------------------------------------------------
cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend lb
    bind 127.0.0.1:$LB_PORT
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
    server r1 127.0.0.1:17781 check port 17791
    server r2 127.0.0.1:17782 check port 17792
    server r3 127.0.0.1:17783 check port 17793
EOF
haproxy -c -f "$TMP/haproxy.cfg" >"$OUT/haproxy-check.log" 2>&1 || die "haproxy refuses its config: $(cat "$OUT/haproxy-check.log")"
haproxy -db -f "$TMP/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for ((n = 0; n < 50; n++)); do port_open "$LB_PORT" && break; sleep 0.1; done
port_open "$LB_PORT" || die "haproxy did not listen on $LB_PORT"
sleep 1 # a round of health checks: every replica up
log "haproxy $(haproxy -v | head -n1 | awk '{print $3}'), $("$BIN" --version), wrk -c16 for ${RUN_SECS}s"

# --- the rolling restart under load ----------------------------------------------------------
started=$(date +%s)
wrk -t2 -c16 -d"${RUN_SECS}s" "http://127.0.0.1:$LB_PORT/index.html" >"$OUT/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 2
for i in "${REPLICAS[@]}"; do
    pid=${PIDS[$i]}
    kill -TERM "$pid"
    # Told to stop, the replica is unready at once (well within its delay) yet still running.
    code=000
    for ((n = 0; n < 10; n++)); do
        code=$(readyz "1779$i")
        [[ "$code" == 503 ]] && break
        sleep 0.1
    done
    check "replica $i: /readyz 503 after SIGTERM" test "$code" = 503
    status=0
    wait "$pid" || status=$?
    check "replica $i: exited with status 0" test "$status" = 0
    check "replica $i: ready again after a restart" start_replica "$i"
    sleep 1 # haproxy's next checks see it up before the next replica goes
done
restarts_done=$(date +%s)
wait "$WRK_PID" || true
WRK_PID=""
cat "$OUT/wrk.txt"
check "the restarts ($((restarts_done - started)) s) were over before wrk stopped (${RUN_SECS} s)" \
    test $((restarts_done - started)) -lt "$RUN_SECS"

requests=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
socket_errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$OUT/wrk.txt")
non_2xx=$(awk '/Non-2xx/ {print $NF}' "$OUT/wrk.txt")
check "wrk made requests (${requests:-none})" test "${requests:-0}" -gt 0
check "0 socket errors (${socket_errors:-0})" test "${socket_errors:-0}" -eq 0
check "0 non-2xx responses (${non_2xx:-0})" test "${non_2xx:-0}" -eq 0
tally
