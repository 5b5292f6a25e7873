#!/usr/bin/env bash
# Reverse-proxy throughput/latency: lwsws vs nginx vs haproxy, side by side,
# in front of one fixed nginx backend, with wrk.
#
# Usage (from anywhere):  bench/proxy.sh
# Environment:
#   LWSWS_BIN     lwsws binary, relative to the repo root (default target/release/lwsws;
#                 the default one is built with `cargo build --release` if missing)
#   THREADS       proxy workers/threads: nginx worker_processes, haproxy nbthread,
#                 lwsws count-threads (default 2). The backend always has 1 worker.
#   BACKEND_PORT  default 18090 (the nginx backend, 1 worker)
#   NGINX_PORT    default 18080   HAPROXY_PORT default 18082   LWSWS_PORT default 18081
#   ROUNDS        wrk runs per proxy (default 3)
#   DURATION      seconds per wrk run (default 5)
#   WARMUP        seconds of untimed wrk per proxy before the rounds (default 1; 0 = none)
#   CONNECTIONS   wrk -c (default 64); wrk always uses -t2
#   ONLY          subset of "nginx haproxy lwsws" (space or comma separated) to run
#                 (testing); default all three. The backend is always started.
#   REWRITE_LINKS lwsws's mount "rewrite-links" (default 1, lwsws's default; 0 is the
#                 like-for-like comparison: nginx and haproxy rewrite nothing)
#   KEEP_TMP=1    keep the temp dir (configs, logs, raw wrk output)
#
# The backend, the three proxies and wrk all share the same cores (2 on the
# reference VM), so absolute figures are low; compare the ratios within a run.
#
# Prints a per-round table (proxy, round, req/s, p99 ms, errors, CPU per request), the
# means, the ratios lwsws/nginx and lwsws/haproxy, and one machine-readable line:
#   RESULT proxy rewrite_links=1 lwsws_framing=chunked|length nginx_rps=... haproxy_rps=... lwsws_rps=... ratio_nginx=... ratio_haproxy=... nginx_p99_ms=... haproxy_p99_ms=... lwsws_p99_ms=... nginx_cpu_us=... haproxy_cpu_us=... lwsws_cpu_us=... cpu_ratio_nginx=... cpu_ratio_haproxy=...
# CPU per request is the proxy's user+system time (all its processes, from /proc) over the
# requests wrk completed: it does not depend on how the shared cores were split with wrk and the
# backend, so it is the steadier comparison. cpu_ratio_X = X's CPU per request / lwsws's
# (above 1: lwsws does the same work with less CPU).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

THREADS="${THREADS:-2}"
BACKEND_PORT="${BACKEND_PORT:-18090}"
NGINX_PORT="${NGINX_PORT:-18080}"
HAPROXY_PORT="${HAPROXY_PORT:-18082}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
ONLY="${ONLY:-}"

ALL_PROXIES=(nginx haproxy lwsws)
SERVERS=()
if [[ -z "$ONLY" ]]; then
    SERVERS=("${ALL_PROXIES[@]}")
else
    for s in ${ONLY//,/ }; do
        case "$s" in
            nginx | haproxy | lwsws) SERVERS+=("$s") ;;
            *) die "ONLY must list some of 'nginx haproxy lwsws' (got '$ONLY')" ;;
        esac
    done
    ((${#SERVERS[@]} > 0)) || die "ONLY is set but names no proxy"
fi
has_server() {
    local s
    for s in "${SERVERS[@]}"; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}

for v in THREADS BACKEND_PORT NGINX_PORT HAPROXY_PORT LWSWS_PORT ROUNDS DURATION WARMUP CONNECTIONS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((THREADS >= 1)) || die "THREADS must be at least 1"

# nginx is always needed (it is the backend)
tools=(nginx wrk curl python3)
has_server haproxy && tools+=(haproxy)
ensure_tools "${tools[@]}"
has_server lwsws && ensure_lwsws_bin

bench_init
DOCROOT="$BENCH_TMP/docroot"
mkdir -p "$DOCROOT/api"
head -c 1024 /dev/zero | tr '\0' 'a' >"$DOCROOT/1k.html"
# /api/1k.html: the same bytes, for proxies that get a path-prefixed mount
cp "$DOCROOT/1k.html" "$DOCROOT/api/1k.html"
chmod 755 "$DOCROOT" "$DOCROOT/api"
chmod 644 "$DOCROOT/1k.html" "$DOCROOT/api/1k.html"

declare -A PORT=([nginx]="$NGINX_PORT" [haproxy]="$HAPROXY_PORT" [lwsws]="$LWSWS_PORT")
declare -A PID=()
declare -A LOGF=()

port_free() { # NAME PORT VAR
    if port_answers "$2"; then die "127.0.0.1:$2 is already in use (set $3)"; fi
}

# --- backend: plain nginx, 1 worker, serving the docroot ------------------
start_backend() {
    local dir="$BENCH_TMP/backend"
    mkdir -p "$dir"
    port_free backend "$BACKEND_PORT" BACKEND_PORT
    # common.sh's static-file config: access_log off, keepalive_requests 1000000
    write_nginx_conf "$dir/nginx.conf" "$dir" "$DOCROOT" "$BACKEND_PORT" 1 65 4096
    run_nginx backend "$dir" "$dir/nginx.conf" "$BACKEND_PORT"
}

# --- nginx reverse proxy --------------------------------------------------
start_nginx_proxy() {
    local dir="$BENCH_TMP/nginx" port="$NGINX_PORT"
    port_free nginx "$port" NGINX_PORT
    write_nginx_proxy_conf "$dir/nginx.conf" "$dir" "$port" "$THREADS" "127.0.0.1:$BACKEND_PORT" 64
    run_nginx nginx "$dir" "$dir/nginx.conf" "$port"
}

# --- haproxy --------------------------------------------------------------
start_haproxy() {
    port_free haproxy "$HAPROXY_PORT" HAPROXY_PORT
    start_haproxy_proxy "$BENCH_TMP/haproxy" "$HAPROXY_PORT" "$BACKEND_PORT" "$THREADS"
}

# --- lwsws ----------------------------------------------------------------
start_lwsws_proxy() {
    local dir="$BENCH_TMP/lwsws" port="$LWSWS_PORT"
    local confdir="$dir/etc"
    mkdir -p "$confdir/conf.d"
    port_free lwsws "$port" LWSWS_PORT
    cat >"$confdir/conf" <<EOF
{
  "global": {
    "count-threads": "$THREADS"
  }
}
EOF
    # no access-log key => no access logging; lwsws pools upstream connections itself
    cat >"$confdir/conf.d/bench" <<EOF
{
  "vhosts": [
    {
      "name": "localhost",
      "port": "$port",
      "interface": "127.0.0.1",
      "mounts": [
        {
          "mountpoint": "/",
          "origin": "http://127.0.0.1:$BACKEND_PORT/",
          "rewrite-links": "${REWRITE_LINKS:-1}"
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
    wait_port lwsws "$port" "${PID[lwsws]}" "$dir/lwsws.log"
}

log "NOTE: the nginx backend (1 worker), the proxy under test and wrk all share this machine's $(nproc) core(s)"
start_backend
has_server nginx && start_nginx_proxy
has_server haproxy && start_haproxy
has_server lwsws && start_lwsws_proxy

# --- correctness check: 200 + the exact 1024 bytes ------------------------
check_path() { # NAME PORT PATH
    local name="$1" url="http://127.0.0.1:$2$3" out="$BENCH_TMP/check-$1" got
    got="$(curl -s -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "$url" || true)"
    if [[ "$got" != "200 1024" ]]; then
        [[ -n "${LOGF[$name]:-}" ]] && tail -n 20 "${LOGF[$name]}" >&2 2>/dev/null
        die "$name: GET $url returned '$got' (status bytes), expected '200 1024'"
    fi
    cmp -s "$out" "$DOCROOT/1k.html" || die "$name: GET $url returned the right size but wrong content"
    rm -f "$out"
}
for p in /1k.html /api/1k.html; do check_path backend "$BACKEND_PORT" "$p"; done
for s in "${SERVERS[@]}"; do
    for p in /1k.html /api/1k.html; do check_path "$s" "${PORT[$s]}" "$p"; done
    log "$s proxies /1k.html and /api/1k.html correctly (200, exact 1024 bytes)"
done
# The backend's 1k.html is text/html, so with "rewrite-links" on lwsws passes it through its
# link rewriter (no links in it: the bytes stay the same, the response comes chunked); with
# "0" it is passed through with the backend's Content-Length. Say which one ran.
LWSWS_FRAMING=NA
if has_server lwsws; then
    hdrs="$(curl -s -D - -o /dev/null --max-time 10 "http://127.0.0.1:$LWSWS_PORT/1k.html" | tr -d '\r' | tr '[:upper:]' '[:lower:]')"
    if grep -q '^transfer-encoding: chunked' <<<"$hdrs"; then
        LWSWS_FRAMING=chunked
    elif grep -q '^content-length:' <<<"$hdrs"; then
        LWSWS_FRAMING=length
    fi
    log "lwsws rewrite-links=${REWRITE_LINKS:-1}: /1k.html (text/html) comes back framed by $LWSWS_FRAMING ($([[ "$LWSWS_FRAMING" == chunked ]] && echo "through the link rewriter" || echo "passed through as is"))"
fi

# --- wrk runs ------------------------------------------------------------
run_wrk() { # server seconds outfile
    local url="http://127.0.0.1:${PORT[$1]}/1k.html"
    wrk -t2 -c"$CONNECTIONS" -d"$2"s --latency "$url" >"$3" 2>&1 || {
        cat "$3" >&2
        die "wrk failed against $1 ($url)"
    }
}

check_alive() { # name
    if ! kill -0 "${PID[$1]}" 2>/dev/null; then
        log "$1 (PID ${PID[$1]}) died; last lines of ${LOGF[$1]}:"
        tail -n 30 "${LOGF[$1]}" >&2 2>/dev/null || true
        die "$1 exited during the benchmark"
    fi
}

RESULTS="$BENCH_TMP/results.tsv" # server round rps p99 errors
: >"$RESULTS"
log "wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency /1k.html, $ROUNDS round(s), THREADS=$THREADS, proxies: ${SERVERS[*]}"
if ((WARMUP > 0)); then
    for s in "${SERVERS[@]}"; do
        run_wrk "$s" "$WARMUP" "$BENCH_TMP/warmup-$s.txt"
    done
fi
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SERVERS[@]}"; do
        raw="$BENCH_TMP/wrk-$s-$r.txt"
        cpu_before="$(cpu_ticks "${PID[$s]}")"
        run_wrk "$s" "$DURATION" "$raw"
        cpu_after="$(cpu_ticks "${PID[$s]}")"
        check_alive "$s"
        check_alive backend
        if ! parsed="$(parse_wrk "$raw")"; then
            cat "$raw" >&2
            die "could not parse wrk output for $s round $r"
        fi
        read -r rps p99 errs total <<<"$parsed"
        cpu_us="$(cpu_us_per_request $((cpu_after - cpu_before)) "$total")"
        if ((errs > 0)); then
            log "WARNING: $s round $r: $errs socket errors / non-2xx responses:"
            grep -E 'Socket errors|Non-2xx' "$raw" >&2 || true
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$rps" "$p99" "$errs" "$cpu_us" >>"$RESULTS"
        log "$s round $r: $rps req/s, p99 $p99 ms, errors $errs, CPU $cpu_us us/request"
    done
done

# anything the servers logged (warnings and errors only: RUST_LOG=warn for lwsws)
for s in backend "${SERVERS[@]}"; do
    f="${LOGF[$s]:-}"
    if [[ -n "$f" && -s "$f" ]]; then
        log "$s logged $(wc -l <"$f") line(s) in $f; last lines:"
        tail -n 10 "$f" >&2
    fi
done

# --- report --------------------------------------------------------------
echo
echo "Backend: nginx, 1 worker, on 127.0.0.1:$BACKEND_PORT -- it shares the same $(nproc) core(s) with the proxy under test and wrk."
echo
printf '%-8s %5s %12s %10s %7s %10s\n' proxy round 'req/s' 'p99 ms' errors 'CPU us/req'
printf '%-8s %5s %12s %10s %7s %10s\n' -------- ----- ------------ ---------- ------- ----------
awk -F'\t' '{ printf "%-8s %5s %12.2f %10.3f %7d %10.2f\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
echo
awk -F'\t' -v rw="${REWRITE_LINKS:-1}" -v framing="$LWSWS_FRAMING" '
    { rps[$1] += $3; p99[$1] += $4; err[$1] += $5; cpu[$1] += $6; n[$1]++ }
    function mean(a, k)  { return (k in n) ? sprintf("%.2f", a[k] / n[k]) : "NA" }
    function meanp(a, k) { return (k in n) ? sprintf("%.3f", a[k] / n[k]) : "NA" }
    function ratio(a, b) { return (a != "NA" && b != "NA" && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA" }
    END {
        split("nginx haproxy lwsws", names, " ")
        printf "%-8s %12s %10s %7s %10s\n", "proxy", "mean req/s", "p99 ms", "errors", "CPU us/req"
        for (i = 1; i <= 3; i++) {
            s = names[i]
            if (!(s in n)) continue
            printf "%-8s %12s %10s %7d %10s\n", s, mean(rps, s), meanp(p99, s), err[s], mean(cpu, s)
        }
        nr = mean(rps, "nginx"); hr = mean(rps, "haproxy"); lr = mean(rps, "lwsws")
        rn = ratio(lr, nr); rh = ratio(lr, hr)
        nc = mean(cpu, "nginx"); hc = mean(cpu, "haproxy"); lc = mean(cpu, "lwsws")
        cn = ratio(nc, lc); ch = ratio(hc, lc)
        print ""
        printf "ratio lwsws/nginx = %s   ratio lwsws/haproxy = %s\n", rn, rh
        printf "CPU per request, X/lwsws: nginx = %s   haproxy = %s   (above 1: lwsws uses less)\n", cn, ch
        print ""
        printf "RESULT proxy rewrite_links=%s lwsws_framing=%s nginx_rps=%s haproxy_rps=%s lwsws_rps=%s ratio_nginx=%s ratio_haproxy=%s nginx_p99_ms=%s haproxy_p99_ms=%s lwsws_p99_ms=%s nginx_cpu_us=%s haproxy_cpu_us=%s lwsws_cpu_us=%s cpu_ratio_nginx=%s cpu_ratio_haproxy=%s\n", \
            rw, framing, nr, hr, lr, rn, rh, meanp(p99, "nginx"), meanp(p99, "haproxy"), meanp(p99, "lwsws"), nc, hc, lc, cn, ch
    }' "$RESULTS"
