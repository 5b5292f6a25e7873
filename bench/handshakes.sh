#!/usr/bin/env bash
# Full TLS handshakes per second: lwsws vs nginx, one new TLS connection per request.
#
# Usage (from anywhere):  bench/handshakes.sh
# Environment:
#   LWSWS_BIN    lwsws binary, relative to the repo root (default target/release/lwsws;
#                the default one is built with `cargo build --release` if missing)
#   THREADS      nginx worker_processes and lwsws count-threads (default 2)
#   CLIENTS      parallel `openssl s_time` processes (default 4)
#   ROUNDS       runs per server (default 3)
#   DURATION     seconds per run (s_time -time, whole seconds; default 5)
#   WARMUP       seconds of untimed handshakes per server before the rounds (default 1; 0 = none)
#   NGINX_PORT   18080   LWSWS_PORT 18081   ADMIN_PORT 18098 (lwsws /metrics, plain HTTP)
#   ONLY         "nginx" or "lwsws" to run one side only (testing); default both
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw s_time output)
#
# The client is `openssl s_time -new -www /1k.html`: every connection is a new TLS session
# (s_time -new never offers a session id or ticket), one "GET /1k.html HTTP/1.0" on it, read
# to the server's close. So no session is ever resumed, whatever the servers cache (both keep
# the same kind of cache as in the other scripts: nginx "ssl_session_cache shared:SSL:1m;
# ssl_session_tickets off", lwsws rustls's default in-memory cache). Both servers use the same
# self-signed ECDSA P-256 certificate; s_time negotiates TLS 1.3 (X25519) and does not verify it.
#
# Each run counts the connections on both ends: the clients' "N connections in ..." lines, and
# the server's own count (nginx stub_status "accepts", lwsws /metrics
# lwsws_tls_handshakes_total{result="success"}); the script fails if they disagree by more
# than CLIENTS (connections in flight at the end), so one request is one full handshake.
#
#   RESULT handshakes nginx_conns_per_s=... lwsws_conns_per_s=... ratio=... nginx_cpu_us_per_conn=... lwsws_cpu_us_per_conn=... cpu_ratio=...
# ratio = lwsws/nginx connections per second; cpu_ratio = nginx's CPU per connection over
# lwsws's (above 1: lwsws uses less).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

THREADS="${THREADS:-2}"
CLIENTS="${CLIENTS:-4}"
NGINX_PORT="${NGINX_PORT:-18080}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
ADMIN_PORT="${ADMIN_PORT:-18098}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
ONLY="${ONLY:-}"

SERVERS=()
case "$ONLY" in
    "") SERVERS=(nginx lwsws) ;;
    nginx | lwsws) SERVERS=("$ONLY") ;;
    *) die "ONLY must be empty, 'nginx' or 'lwsws' (got '$ONLY')" ;;
esac
has_server() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }

for v in THREADS CLIENTS NGINX_PORT LWSWS_PORT ADMIN_PORT ROUNDS DURATION WARMUP; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((THREADS >= 1 && CLIENTS >= 1 && DURATION >= 1)) || die "THREADS, CLIENTS and DURATION must be at least 1"

tools=(curl openssl)
has_server nginx && tools+=(nginx)
ensure_tools "${tools[@]}"
has_server lwsws && ensure_lwsws_bin

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"
make_cert "$BENCH_TMP/cert"
CERT="$BENCH_TMP/cert/cert.pem" KEY="$BENCH_TMP/cert/key.pem"

declare -A PORT=([nginx]="$NGINX_PORT" [lwsws]="$LWSWS_PORT")
declare -A PID=() LOGF=()
if has_server nginx; then
    start_nginx "$BENCH_TMP/nginx" "$DOCROOT" "$NGINX_PORT" "$THREADS" 65 4096 \
        "$(nginx_tls_lines "$CERT" "$KEY")
        location = /nginx_status { stub_status; }" ssl
    PID[nginx]="$NGINX_PID"
    LOGF[nginx]="$BENCH_TMP/nginx/error.log"
fi
if has_server lwsws; then
    mkdir -p "$BENCH_TMP/lwsws"
    port_answers "$ADMIN_PORT" && die "127.0.0.1:$ADMIN_PORT is already in use (set ADMIN_PORT)"
    start_lwsws "$BENCH_TMP/lwsws" "$DOCROOT" "$LWSWS_PORT" "$THREADS" "" "$CERT" "$KEY" "127.0.0.1:$ADMIN_PORT"
    PID[lwsws]="$LWSWS_PID"
    LOGF[lwsws]="$BENCH_TMP/lwsws/lwsws.log"
fi

# server_conns NAME -> the server's own count of connections so far
server_conns() {
    local v
    if [[ "$1" == nginx ]]; then
        # "Active connections: N \n server accepts handled requests \n A H R \n ..."
        v="$(curl -sk --max-time 5 "https://127.0.0.1:$NGINX_PORT/nginx_status" | awk 'NR == 3 { print $1 }')"
    else
        v="$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
            awk '/^lwsws_tls_handshakes_total\{result="success"\}/ { print $2 }')"
    fi
    [[ "$v" =~ ^[0-9]+$ ]] || die "$1: could not read its connection count (got '$v')"
    echo "$v"
}

# --- correctness check: 200 + exact bytes over TLS, and the counters ------
for s in "${SERVERS[@]}"; do
    out="$BENCH_TMP/check-$s"
    got="$(curl -sk --http1.1 -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "https://127.0.0.1:${PORT[$s]}/1k.html" || true)"
    [[ "$got" == "200 1024" ]] || die "$s: GET https://127.0.0.1:${PORT[$s]}/1k.html returned '$got', expected '200 1024'"
    cmp -s "$out" "$DOCROOT/1k.html" || die "$s: /1k.html has the right size but wrong content"
    # s_time's request: HTTP/1.0, read to the close
    got="$(printf 'GET /1k.html HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${PORT[$s]}" 2>/dev/null | wc -c || true)"
    ((got > 1024)) || die "$s: an HTTP/1.0 request over openssl s_client got $got bytes, expected the headers + 1024"
    server_conns "$s" >/dev/null
    log "$s serves /1k.html over TLS correctly (200, exact bytes; HTTP/1.0 too) and reports its connection count"
done

# run_clients NAME SECONDS OUTPREFIX -> "CLIENT_CONNS WALL_SECONDS"
run_clients() {
    local name="$1" secs="$2" prefix="$3" pids=() i t0 t1 n=0 c
    t0="$(date +%s.%N)"
    for ((i = 1; i <= CLIENTS; i++)); do
        openssl s_time -connect "127.0.0.1:${PORT[$name]}" -new -time "$secs" -www /1k.html \
            >"$prefix-$i.txt" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            tail -n 5 "$prefix-$((i + 1)).txt" >&2
            die "openssl s_time failed against $name"
        fi
    done
    t1="$(date +%s.%N)"
    for ((i = 1; i <= CLIENTS; i++)); do
        # "N connections in T real seconds, B bytes read per connection"
        c="$(awk '/connections in .* real seconds/ { print $1 }' "$prefix-$i.txt")"
        [[ "$c" =~ ^[0-9]+$ ]] || die "could not parse s_time output $prefix-$i.txt"
        n=$((n + c))
    done
    echo "$n $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

RESULTS="$BENCH_TMP/results.tsv" # server round conns_per_s client_conns server_conns cpu_us
: >"$RESULTS"
log "$CLIENTS x openssl s_time -new -time $DURATION -www /1k.html, $ROUNDS round(s), THREADS=$THREADS, servers: ${SERVERS[*]}"
if ((WARMUP > 0)); then
    for s in "${SERVERS[@]}"; do run_clients "$s" "$WARMUP" "$BENCH_TMP/warmup-$s" >/dev/null; done
fi
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SERVERS[@]}"; do
        n0="$(server_conns "$s")"
        c0="$(cpu_ticks "${PID[$s]}")"
        read -r cconns wall <<<"$(run_clients "$s" "$DURATION" "$BENCH_TMP/s_time-$s-$r")"
        c1="$(cpu_ticks "${PID[$s]}")"
        n1="$(server_conns "$s")"
        kill -0 "${PID[$s]}" 2>/dev/null || die "$s (PID ${PID[$s]}) died during the run"
        sconns=$((n1 - n0))
        # nginx's count includes the stub_status request that read n1
        [[ "$s" == nginx ]] && sconns=$((sconns - 1))
        diff=$((sconns - cconns))
        if ((diff < -CLIENTS || diff > CLIENTS)); then
            die "$s round $r: the clients made $cconns connections but the server counted $sconns handshakes"
        fi
        rate="$(awk -v n="$sconns" -v w="$wall" 'BEGIN { printf "%.2f", n / w }')"
        cpu_us="$(cpu_us_per_request $((c1 - c0)) "$sconns")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$rate" "$cconns" "$sconns" "$cpu_us" >>"$RESULTS"
        log "$s round $r: $sconns handshakes in $wall s ($cconns client connections) = $rate conns/s, CPU $cpu_us us/connection"
    done
done

for s in "${SERVERS[@]}"; do
    f="${LOGF[$s]}"
    if [[ -s "$f" ]]; then
        log "$s logged $(wc -l <"$f") line(s) in $f; last lines:"
        tail -n 5 "$f" >&2
    fi
done

# --- report --------------------------------------------------------------
echo
echo "Full TLS 1.3 handshakes (new session per connection, ECDSA P-256 certificate), one HTTP/1.0 request each; $CLIENTS s_time clients share the $(nproc) core(s)."
printf '%-6s %5s %12s %12s %12s %12s\n' server round 'conns/s' 'client conns' 'server conns' 'CPU us/conn'
printf '%-6s %5s %12s %12s %12s %12s\n' ------ ----- ------------ ------------ ------------ ------------
awk -F'\t' '{ printf "%-6s %5s %12.2f %12d %12d %12.2f\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
echo
awk -F'\t' '
    { rate[$1] += $3; cpu[$1] += $6; n[$1]++ }
    function mean(a, k) { return (k in n) ? sprintf("%.2f", a[k] / n[k]) : "NA" }
    function ratio(a, b) { return (a != "NA" && b != "NA" && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA" }
    END {
        nr = mean(rate, "nginx"); lr = mean(rate, "lwsws"); nc = mean(cpu, "nginx"); lc = mean(cpu, "lwsws")
        printf "nginx %s conns/s (%s us CPU each), lwsws %s conns/s (%s us CPU each)\n", nr, nc, lr, lc
        printf "ratio lwsws/nginx = %s   CPU per connection nginx/lwsws = %s (above 1: lwsws uses less)\n", ratio(lr, nr), ratio(nc, lc)
        print ""
        printf "RESULT handshakes nginx_conns_per_s=%s lwsws_conns_per_s=%s ratio=%s nginx_cpu_us_per_conn=%s lwsws_cpu_us_per_conn=%s cpu_ratio=%s\n", \
            nr, lr, ratio(lr, nr), nc, lc, ratio(nc, lc)
    }' "$RESULTS"
