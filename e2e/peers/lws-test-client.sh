#!/usr/bin/env bash
# lwsws against the libwebsockets test client (Debian libwebsockets-test-server, lws 4.1.6):
# the reference client's dumb-increment-protocol and lws-mirror-protocol connections, over
# plain ws (127.0.0.1:17681) and over TLS (wss, 127.0.0.1:17682, self-signed cert that the
# client is told to trust with -A and checks strictly with -S).
#
#   e2e/peers/lws-test-client.sh [path/to/lwsws]   (default: target/release/lwsws in the repo root)
#
# Checks, for ws and for wss:
#   counter     the dumb-increment numbers arrive (client lines "rx 1 '0'", "rx 1 '1'", ...),
#               start at 0 and each is the previous one plus 1 (>= 20 of them in 4 s)
#   mirror      mirror-only run (-j): the messages the client sends ("c #RRGGBB x y r;") come
#               back to it; sent = "LWS_CALLBACK_CLIENT_WRITEABLE" lines (one message each),
#               received = frames of 16..30 bytes ("starting disbursal of N deframed rx");
#               pass if >= 100 came back and at least 90 % of those sent
#   mirror-open the server never closes a mirror connection during either run (a client log
#               "mirror: LWS_CALLBACK_CLOSED" before "Exiting" that the client did not start
#               with "closing mirror session"); lws itself never closes a member that keeps
#               reading, it pauses the sender's RX when its ring fills
#   exit        each client run lasts until it is stopped (exit 124 from timeout): a client that
#               exits by itself, or cannot start, fails
# plus: lwsws still running after all runs.
#
# Installs libwebsockets-test-server (apt) when libwebsockets-test-client is missing; needs
# openssl and timeout. Logs (gzipped client logs, server log) go to
# $ARTEFACT_DIR/lws-test-client/ (default /tmp/lwsws-artefacts). KEEP_TMP=1 keeps the temp dir.
# Env RUST_LOG for the server (default lwsws=debug). Ends with "N passed, M failed"; exit 1 if
# any check failed, 2 if the test could not run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/release/lwsws}"
if [[ "$BIN" != /* ]]; then
    if [[ -x "$BIN" ]]; then BIN="$(pwd)/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
WS_PORT=17681
WSS_PORT=17682
RUN_SECS=4
ARTEFACT_DIR="${ARTEFACT_DIR:-/tmp/lwsws-artefacts}"
OUT="$ARTEFACT_DIR/lws-test-client"
CLIENT=libwebsockets-test-client

SERVER_PID=""
TMP=""
PASSED=0
FAILED=0

log() { printf '[lws-test-client] %s\n' "$*"; }
die() {
    printf '[lws-test-client] ERROR: %s\n' "$*" >&2
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 2
}
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-16s %s\n' "$1" "$2"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-16s %s\n' "$1" "$2"; }

# shellcheck source=e2e/peers/lwsws.sh
source "$(dirname "${BASH_SOURCE[0]}")/lwsws.sh"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# --- what the test needs ------------------------------------------------------------------
[[ -x "$BIN" ]] || die "no lwsws binary at $BIN (build it, or pass its path as the first argument)"
if ! command -v "$CLIENT" >/dev/null 2>&1; then
    log "installing libwebsockets-test-server (apt-get) for $CLIENT"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends libwebsockets-test-server; } \
        || die "could not install libwebsockets-test-server"
fi
for tool in openssl timeout gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
for p in "$WS_PORT" "$WSS_PORT"; do
    port_open "$p" && die "something already listens on 127.0.0.1:$p; stop it first"
done

# --- cert and config ------------------------------------------------------------------------
TMP="$(mktemp -d -t lwsws-lws-test-client.XXXXXX)"
mkdir -p "$TMP/conf.d" "$TMP/www" "$OUT"
echo '<html><body>lwsws lws-test-client e2e</body></html>' >"$TMP/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.log" \
    || { cat "$TMP/openssl.log" >&2; die "openssl could not make the test certificate"; }

echo '{ "global": { "ws-pingpong-secs": "0" } }' >"$TMP/conf"
# Both vhosts are named localhost: the test client sends "Host: 127.0.0.1" without the port,
# and each is the only (so the first) vhost on its port anyway.
cat >"$TMP/conf.d/peers" <<EOF
{
  "vhosts": [
    {
      "name": "localhost", "port": "$WS_PORT", "interface": "127.0.0.1",
      "mounts": [ { "mountpoint": "/", "origin": "file://$TMP/www", "default": "index.html" } ],
      "ws-protocols": [ { "dumb-increment-protocol": {}, "lws-mirror-protocol": {} } ]
    },
    {
      "name": "localhost", "port": "$WSS_PORT", "interface": "127.0.0.1",
      "host-ssl-cert": "$TMP/cert.pem", "host-ssl-key": "$TMP/key.pem",
      "mounts": [ { "mountpoint": "/", "origin": "file://$TMP/www", "default": "index.html" } ],
      "ws-protocols": [ { "dumb-increment-protocol": {}, "lws-mirror-protocol": {} } ]
    }
  ]
}
EOF

# --- the server -----------------------------------------------------------------------------
SERVER_LOG="$OUT/lwsws.log"
RUST_LOG="${RUST_LOG:-lwsws=debug}" start_lwsws "$BIN" "$TMP" "$SERVER_LOG" "$WS_PORT" "$WSS_PORT"
log "lwsws $BIN (pid $SERVER_PID): ws 127.0.0.1:$WS_PORT, wss 127.0.0.1:$WSS_PORT; log $SERVER_LOG"

# --- the client runs --------------------------------------------------------------------------
# run_client NAME ARGS...: the test client for RUN_SECS seconds, stopped by SIGINT as a user
# would; its log (stdout+stderr) goes to $TMP/NAME.log. The client runs until interrupted, so
# timeout's 124 is the one good end: any other status (the client gave up, crashed, could not
# start: 125..127) is a failed check of its own, with the tail of the client's log.
run_client() {
    local name=$1 rc=0
    shift
    timeout -s INT "$RUN_SECS" "$CLIENT" "$@" >"$TMP/$name.log" 2>&1 || rc=$?
    if [[ $rc == 124 ]]; then
        pass "$name exit" "ran until stopped after ${RUN_SECS}s"
    else
        fail "$name exit" "$CLIENT $* exited with $rc before the ${RUN_SECS}s timeout; its log ends:"
        tail -n 10 "$TMP/$name.log" | sed 's/^/      /'
    fi
}

# server_closes LOG: mirror connections that ended before the client began to exit and that
# the client itself did not close (it closes one only after logging "closing mirror session").
server_closes() {
    awk '/mirror: LWS_CALLBACK_CLIENT_ESTABLISHED/ { own = 0 }
         /closing mirror session/ { own = 1 }
         /E: Exiting/ { exiting = 1 }
         /mirror: LWS_CALLBACK_CLOSED/ { if (!exiting && !own) n++ }
         END { print n + 0 }' "$1"
}

check_transport() {
    local label=$1 port=$2
    shift 2
    local tls=("$@") a="$label-default" b="$label-mirror-only"

    log "$label: $CLIENT 127.0.0.1 --port=$port ${tls[*]} -d 15   (dumb-increment + mirror, ${RUN_SECS}s)"
    run_client "$a" 127.0.0.1 --port="$port" "${tls[@]}" -d 15
    # -d 1045 = err + notice + debug + user: "U: LWS_CALLBACK_CLIENT_WRITEABLE" per message sent,
    # "D: ... starting disbursal of N deframed rx" per frame received
    log "$label: $CLIENT 127.0.0.1 --port=$port ${tls[*]} -j -d 1045   (mirror only, ${RUN_SECS}s)"
    run_client "$b" 127.0.0.1 --port="$port" "${tls[@]}" -j -d 1045

    # counter
    local nums
    nums="$(sed -n "s/.* I: rx [0-9]* '\([0-9]*\)'\$/\1/p" "$TMP/$a.log" | tr '\n' ' ')"
    local verdict
    verdict="$(awk -v list="$nums" 'BEGIN {
        n = split(list, v, " ")
        if (n < 20) { printf "only %d numbers (want >= 20)", n; exit }
        if (v[1] != 0) { printf "first number is %s, not 0", v[1]; exit }
        for (i = 2; i <= n; i++) if (v[i] != v[i-1] + 1) {
            printf "number %d is %s after %s (not +1)", i, v[i], v[i-1]; exit }
        printf "ok %d numbers, %s..%s, each +1", n, v[1], v[n] }')"
    if [[ "$verdict" == ok* ]]; then
        pass "$label counter" "${verdict#ok }"
    else
        fail "$label counter" "$verdict; first rx lines: $(grep -m3 " I: rx " "$TMP/$a.log" | tr '\n' '|')"
    fi

    # mirror echo
    local sent got
    sent="$(grep -c 'U: LWS_CALLBACK_CLIENT_WRITEABLE' "$TMP/$b.log" || true)"
    got="$(sed -n 's/.*starting disbursal of \([0-9]*\) deframed rx.*/\1/p' "$TMP/$b.log" \
        | awk '$1 >= 16 && $1 <= 30 { n++ } END { print n + 0 }')"
    if ((got >= 100 && got * 10 >= sent * 9)); then
        pass "$label mirror" "$got of $sent mirror messages came back to the sender"
    else
        fail "$label mirror" "$got of $sent mirror messages came back (want >= 100 and >= 90 %)"
    fi

    # mirror connection stays open
    local ca cb
    ca="$(server_closes "$TMP/$a.log")"
    cb="$(server_closes "$TMP/$b.log")"
    if ((ca == 0 && cb == 0)); then
        pass "$label mirror-open" "no mirror connection closed by the server (2 runs)"
    else
        fail "$label mirror-open" "the server closed the mirror connection $ca time(s) in the default run and $cb in the -j run (client reconnects after 2 s)"
        grep -h -B3 'mirror: LWS_CALLBACK_CLOSED' "$TMP/$a.log" "$TMP/$b.log" \
            | grep -v -e 'lws_issue_raw' -e 'WRITEABLE' -e 'deframed' | head -n 12 | sed 's/^/      /'
    fi
}

check_transport ws "$WS_PORT"
check_transport wss "$WSS_PORT" -S -A "$TMP/cert.pem"

if kill -0 "$SERVER_PID" 2>/dev/null; then
    pass "server alive" "lwsws (pid $SERVER_PID) still running after the 4 client runs"
else
    fail "server alive" "lwsws exited during the runs; tail of its log:"
    tail -n 20 "$SERVER_LOG" | sed 's/^/      /'
fi

for f in "$TMP"/ws*.log; do
    gzip -c "$f" >"$OUT/$(basename "$f").gz"
done
log "client logs: $OUT/*.log.gz"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
