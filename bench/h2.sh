#!/usr/bin/env bash
# HTTP/2 over TLS with h2load: lwsws vs nginx serving a 1 KiB file (MODE=static), or
# lwsws vs nginx vs haproxy proxying h2 clients to an HTTP/1.1 nginx backend (MODE=proxy).
#
# Usage (from anywhere):  bench/h2.sh                 # MODE=static
#                         MODE=proxy bench/h2.sh
# Environment:
#   LWSWS_BIN     lwsws binary, relative to the repo root (default target/release/lwsws;
#                 the default one is built with `cargo build --release` if missing)
#   MODE          static (default) or proxy
#   THREADS       nginx worker_processes, haproxy nbthread, lwsws count-threads (default 2);
#                 the proxy mode's backend always has 1 worker
#   ROUNDS        h2load runs per server (default 3)
#   DURATION      seconds per h2load run (-D, default 5)
#   WARMUP        h2load --warm-up-time seconds at the start of every run (default 1; 0 = none)
#   CONNECTIONS   h2load -c (default 64)     STREAMS  h2load -m (default 10); h2load uses -t2
#   NGINX_PORT    18080   LWSWS_PORT 18081   HAPROXY_PORT 18082   BACKEND_PORT 18090
#   ONLY          subset of the servers (static: nginx lwsws; proxy: nginx haproxy lwsws),
#                 space or comma separated; default all
#   KEEP_TMP=1    keep the temp dir (configs, logs, raw h2load output)
#
# Every server gets the same self-signed ECDSA P-256 certificate (make_cert) and offers
# ALPN h2 (nginx "listen ... ssl http2", haproxy "alpn h2,http/1.1", lwsws's default).
# h2load gives no percentiles: the report has the mean and the max request time.
# CPU per request is the server's user+system time (all its processes, from /proc) from the
# end of h2load's warm-up to the end of the run, over the requests h2load counted.
#
#   RESULT h2 mode=static nginx_rps=... lwsws_rps=... haproxy_rps=NA ratio_nginx=... ratio_haproxy=NA nginx_mean_ms=... lwsws_mean_ms=... haproxy_mean_ms=NA nginx_max_ms=... lwsws_max_ms=... haproxy_max_ms=NA nginx_errors=0 lwsws_errors=0 haproxy_errors=NA nginx_cpu_us=... lwsws_cpu_us=... haproxy_cpu_us=NA cpu_ratio_nginx=... cpu_ratio_haproxy=NA
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

MODE="${MODE:-static}"
THREADS="${THREADS:-2}"
NGINX_PORT="${NGINX_PORT:-18080}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
HAPROXY_PORT="${HAPROXY_PORT:-18082}"
BACKEND_PORT="${BACKEND_PORT:-18090}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
STREAMS="${STREAMS:-10}"
ONLY="${ONLY:-}"

case "$MODE" in
    static) ALL=(nginx lwsws) ;;
    proxy) ALL=(nginx haproxy lwsws) ;;
    *) die "MODE must be 'static' or 'proxy' (got '$MODE')" ;;
esac
SERVERS=()
if [[ -z "$ONLY" ]]; then
    SERVERS=("${ALL[@]}")
else
    for s in ${ONLY//,/ }; do
        [[ " ${ALL[*]} " == *" $s "* ]] || die "ONLY must list some of '${ALL[*]}' for MODE=$MODE (got '$ONLY')"
        SERVERS+=("$s")
    done
fi
has_server() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }

for v in THREADS NGINX_PORT LWSWS_PORT HAPROXY_PORT BACKEND_PORT ROUNDS DURATION WARMUP CONNECTIONS STREAMS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((THREADS >= 1 && DURATION >= 1 && CONNECTIONS >= 2)) || die "THREADS, DURATION >= 1 and CONNECTIONS >= 2 needed"

# h2load comes with Debian's nghttp2-client
if ! command -v h2load >/dev/null 2>&1; then
    [[ "$(id -u)" == 0 ]] || die "h2load missing; install nghttp2-client"
    log "installing missing package: nghttp2-client (h2load)"
    apt-get update && apt-get install -y --no-install-recommends nghttp2-client
fi
tools=(curl openssl python3)
{ has_server nginx || [[ "$MODE" == proxy ]]; } && tools+=(nginx)
has_server haproxy && tools+=(haproxy)
ensure_tools "${tools[@]}"
has_server lwsws && ensure_lwsws_bin

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"
make_cert "$BENCH_TMP/cert"
CERT="$BENCH_TMP/cert/cert.pem" KEY="$BENCH_TMP/cert/key.pem"

declare -A PORT=([nginx]="$NGINX_PORT" [haproxy]="$HAPROXY_PORT" [lwsws]="$LWSWS_PORT" [backend]="$BACKEND_PORT")
declare -A PID=() LOGF=()
for s in "${SERVERS[@]}"; do
    port_answers "${PORT[$s]}" && die "127.0.0.1:${PORT[$s]} is already in use ($s)"
done

start_backend() { # plain HTTP/1.1 nginx, 1 worker (as proxy.sh's)
    local dir="$BENCH_TMP/backend"
    mkdir -p "$dir"
    port_answers "$BACKEND_PORT" && die "127.0.0.1:$BACKEND_PORT is already in use (set BACKEND_PORT)"
    write_nginx_conf "$dir/nginx.conf" "$dir" "$DOCROOT" "$BACKEND_PORT" 1 65 4096
    run_nginx backend "$dir" "$dir/nginx.conf" "$BACKEND_PORT"
}

start_nginx_h2() {
    local dir="$BENCH_TMP/nginx"
    mkdir -p "$dir/tmp"
    if [[ "$MODE" == static ]]; then
        # nginx 1.22: "http2" is a listen parameter
        write_nginx_conf "$dir/nginx.conf" "$dir" "$DOCROOT" "$NGINX_PORT" "$THREADS" 65 4096 \
            127.0.0.1 "$(nginx_tls_lines "$CERT" "$KEY")" "ssl http2"
    else
        write_nginx_proxy_conf "$dir/nginx.conf" "$dir" "$NGINX_PORT" "$THREADS" "127.0.0.1:$BACKEND_PORT" 64 \
            "ssl http2" "$(nginx_tls_lines "$CERT" "$KEY")"
    fi
    run_nginx nginx "$dir" "$dir/nginx.conf" "$NGINX_PORT"
}

start_haproxy_h2() {
    # no-tls-tickets: like lwsws and nginx (session cache only)
    start_haproxy_proxy "$BENCH_TMP/haproxy" "$HAPROXY_PORT" "$BACKEND_PORT" "$THREADS" \
        "ssl crt $BENCH_TMP/cert/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2 no-tls-tickets"
}

start_lwsws_h2() {
    local dir="$BENCH_TMP/lwsws"
    mkdir -p "$dir"
    if [[ "$MODE" == static ]]; then
        start_lwsws "$dir" "$DOCROOT" "$LWSWS_PORT" "$THREADS" "" "$CERT" "$KEY"
        PID[lwsws]="$LWSWS_PID"
        LOGF[lwsws]="$dir/lwsws.log"
        return
    fi
    local confdir="$dir/etc"
    mkdir -p "$confdir/conf.d"
    cat >"$confdir/conf" <<EOF
{
  "global": {
    "count-threads": "$THREADS"
  }
}
EOF
    # TLS vhost (ALPN h2,http/1.1 by default), no access-log key => no access logging
    cat >"$confdir/conf.d/bench" <<EOF
{
  "vhosts": [
    {
      "name": "localhost",
      "port": "$LWSWS_PORT",
      "interface": "127.0.0.1",
      "host-ssl-cert": "$CERT",
      "host-ssl-key": "$KEY",
      "mounts": [
        {
          "mountpoint": "/",
          "origin": "http://127.0.0.1:$BACKEND_PORT/",
          "rewrite-links": "0"
        }
      ]
    }
  ]
}
EOF
    python3 -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' \
        "$confdir/conf" "$confdir/conf.d/bench" || die "generated lwsws JSON is invalid"
    RUST_LOG="${RUST_LOG:-warn}" "$LWSWS" -c "$confdir" </dev/null >"$dir/lwsws.log" 2>&1 &
    PID[lwsws]=$!
    LOGF[lwsws]="$dir/lwsws.log"
    BENCH_PIDS+=("${PID[lwsws]}")
    wait_port lwsws "$LWSWS_PORT" "${PID[lwsws]}" "$dir/lwsws.log"
}

if [[ "$MODE" == proxy ]]; then
    log "NOTE: the nginx backend (1 worker), the proxy under test and h2load all share this machine's $(nproc) core(s)"
    start_backend
fi
has_server nginx && start_nginx_h2
has_server haproxy && start_haproxy_h2
has_server lwsws && start_lwsws_h2

# --- correctness check: HTTP/2, 200 and the exact 1024 bytes ------------
check_h2() { # NAME
    local name="$1" url="https://127.0.0.1:${PORT[$1]}/1k.html" out="$BENCH_TMP/check-$1" got
    got="$(curl -sk --http2 -o "$out" -w '%{http_code} %{size_download} %{http_version}' --max-time 10 "$url" || true)"
    if [[ "$got" != "200 1024 2" ]]; then
        tail -n 20 "${LOGF[$name]}" >&2 2>/dev/null || true
        die "$name: GET $url returned '$got' (status bytes http-version), expected '200 1024 2'"
    fi
    cmp -s "$out" "$DOCROOT/1k.html" || die "$name: GET $url returned the right size but wrong content"
    rm -f "$out"
}
if [[ "$MODE" == proxy ]]; then
    got="$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 10 "http://127.0.0.1:$BACKEND_PORT/1k.html" || true)"
    [[ "$got" == "200 1024" ]] || die "backend: GET /1k.html returned '$got', expected '200 1024'"
fi
for s in "${SERVERS[@]}"; do
    check_h2 "$s"
    log "$s serves /1k.html over h2 correctly (200, exact 1024 bytes)"
done

# --- h2load runs -----------------------------------------------------------
URLPATH=/1k.html
H2THREADS=2
check_alive() { # name
    if ! kill -0 "${PID[$1]}" 2>/dev/null; then
        tail -n 30 "${LOGF[$1]}" >&2 2>/dev/null || true
        die "$1 (PID ${PID[$1]}) exited during the benchmark"
    fi
}

# run_h2load NAME OUTFILE -> prints the server's CPU ticks over the measured phase
run_h2load() {
    local name="$1" raw="$2" url="https://127.0.0.1:${PORT[$1]}$URLPATH" hpid i c0 c1
    local args=(-t"$H2THREADS" -c"$CONNECTIONS" -m"$STREAMS" -D "$DURATION")
    ((WARMUP > 0)) && args+=(--warm-up-time="$WARMUP")
    h2load "${args[@]}" "$url" >"$raw" 2>&1 &
    hpid=$!
    c0="$(cpu_ticks "${PID[$name]}")"
    if ((WARMUP > 0)); then
        # CPU from the end of the warm-up: h2load prints one line per thread when it ends
        for ((i = 0; i < (WARMUP + 10) * 50; i++)); do
            (($(grep -c 'Main benchmark duration is started' "$raw" || true) >= H2THREADS)) && break
            kill -0 "$hpid" 2>/dev/null || break
            sleep 0.02
        done
        c0="$(cpu_ticks "${PID[$name]}")"
    fi
    if ! wait "$hpid"; then
        cat "$raw" >&2
        die "h2load failed against $name ($url)"
    fi
    c1="$(cpu_ticks "${PID[$name]}")"
    echo $((c1 - c0))
}

RESULTS="$BENCH_TMP/results.tsv" # server round rps mean max errors cpu_us
: >"$RESULTS"
log "h2load -t$H2THREADS -c$CONNECTIONS -m$STREAMS -D $DURATION --warm-up-time=$WARMUP $URLPATH, MODE=$MODE, $ROUNDS round(s), THREADS=$THREADS, servers: ${SERVERS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SERVERS[@]}"; do
        raw="$BENCH_TMP/h2load-$s-$r.txt"
        ticks="$(run_h2load "$s" "$raw")"
        check_alive "$s"
        [[ "$MODE" == proxy ]] && check_alive backend
        if ! parsed="$(parse_h2load "$raw")"; then
            cat "$raw" >&2
            die "could not parse h2load output for $s round $r"
        fi
        read -r rps mean mx failed errored ok non2xx <<<"$parsed"
        # h2load counts a non-2xx response as "failed" too
        errs=$((failed > non2xx ? failed + errored : non2xx + errored))
        if ((errs > 0)); then
            log "WARNING: $s round $r: $failed failed, $errored errored, $non2xx non-2xx:"
            grep -E '^(requests|status codes):' "$raw" >&2 || true
        fi
        cpu_us="$(cpu_us_per_request "$ticks" "$ok")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$rps" "$mean" "$mx" "$errs" "$cpu_us" >>"$RESULTS"
        log "$s round $r: $rps req/s, mean $mean ms, max $mx ms, errors $errs, CPU $cpu_us us/request"
    done
done

for s in "${!LOGF[@]}"; do
    f="${LOGF[$s]}"
    if [[ -s "$f" ]]; then
        log "$s logged $(wc -l <"$f") line(s) in $f; last lines:"
        tail -n 10 "$f" >&2
    fi
done

# --- report --------------------------------------------------------------
echo
if [[ "$MODE" == proxy ]]; then
    echo "MODE=proxy: h2 over TLS -> proxy -> HTTP/1.1 nginx backend (1 worker, 127.0.0.1:$BACKEND_PORT); the backend, the proxy and h2load share $(nproc) core(s)."
else
    echo "MODE=static: h2 over TLS, 1 KiB file."
fi
echo "h2load gives no percentiles: mean and max request time instead of p99."
echo
printf '%-8s %5s %12s %9s %9s %7s %10s\n' server round 'req/s' 'mean ms' 'max ms' errors 'CPU us/req'
printf '%-8s %5s %12s %9s %9s %7s %10s\n' -------- ----- ------------ --------- --------- ------- ----------
awk -F'\t' '{ printf "%-8s %5s %12.2f %9.3f %9.3f %7d %10.2f\n", $1, $2, $3, $4, $5, $6, $7 }' "$RESULTS"
echo
awk -F'\t' -v mode="$MODE" '
    { rps[$1] += $3; mean[$1] += $4; mx[$1] += $5; err[$1] += $6; cpu[$1] += $7; n[$1]++ }
    function avg(a, k, f) { return (k in n) ? sprintf(f, a[k] / n[k]) : "NA" }
    function ratio(a, b) { return (a != "NA" && b != "NA" && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA" }
    END {
        split("nginx haproxy lwsws", names, " ")
        printf "%-8s %12s %9s %9s %7s %10s\n", "server", "mean req/s", "mean ms", "max ms", "errors", "CPU us/req"
        for (i = 1; i <= 3; i++) {
            s = names[i]
            R[s] = avg(rps, s, "%.2f"); M[s] = avg(mean, s, "%.3f"); X[s] = avg(mx, s, "%.3f")
            C[s] = avg(cpu, s, "%.2f"); E[s] = (s in n) ? err[s] : "NA"
            if (s in n) printf "%-8s %12s %9s %9s %7d %10s\n", s, R[s], M[s], X[s], err[s], C[s]
        }
        rn = ratio(R["lwsws"], R["nginx"]); rh = ratio(R["lwsws"], R["haproxy"])
        cn = ratio(C["nginx"], C["lwsws"]); ch = ratio(C["haproxy"], C["lwsws"])
        print ""
        printf "ratio lwsws/nginx = %s   ratio lwsws/haproxy = %s\n", rn, rh
        printf "CPU per request, X/lwsws: nginx = %s   haproxy = %s   (above 1: lwsws uses less)\n", cn, ch
        print ""
        printf "RESULT h2 mode=%s nginx_rps=%s lwsws_rps=%s haproxy_rps=%s ratio_nginx=%s ratio_haproxy=%s nginx_mean_ms=%s lwsws_mean_ms=%s haproxy_mean_ms=%s nginx_max_ms=%s lwsws_max_ms=%s haproxy_max_ms=%s nginx_errors=%s lwsws_errors=%s haproxy_errors=%s nginx_cpu_us=%s lwsws_cpu_us=%s haproxy_cpu_us=%s cpu_ratio_nginx=%s cpu_ratio_haproxy=%s\n", \
            mode, R["nginx"], R["lwsws"], R["haproxy"], rn, rh, M["nginx"], M["lwsws"], M["haproxy"], X["nginx"], X["lwsws"], X["haproxy"], \
            E["nginx"], E["lwsws"], E["haproxy"], C["nginx"], C["lwsws"], C["haproxy"], cn, ch
    }' "$RESULTS"
