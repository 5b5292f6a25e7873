#!/usr/bin/env bash
# A Service's endpoints behind a reverse proxy: lwsws vs nginx, side by side, in front of four
# nginx backends (the "pods"), with wrk.
#
# Usage (from anywhere):  bench/endpoints.sh
# Environment:
#   SERVICE_PROXY_BIN  lwsws's examples/service_proxy binary; by default it is built (or found
#                      up to date) with `cargo build --release --example service_proxy`
#   BUILD_LOCK         a file to hold with flock(1) around that build only (e.g.
#                      /tmp/lwsws-cargo.lock on a shared machine); default none
#   THREADS            proxy workers/threads: nginx worker_processes, lwsws worker threads
#                      (default 2). Each backend has 1 worker.
#   BACKENDS           number of backends, 127.0.0.2 upwards (default 4, at most 250)
#   BACKEND_PORT       the backends' common port (default 18090)
#   NGINX_PORT         default 18080     LWSWS_PORT default 18081
#   ROUNDS             wrk runs per proxy (default 3)
#   DURATION           seconds per wrk run (default 5)
#   WARMUP             seconds of untimed wrk per proxy before the rounds (default 1; 0 = none)
#   CONNECTIONS        wrk -c (default 64); wrk always uses -t2
#   ONLY               "nginx" or "lwsws" (or both, space or comma separated); default both
#   NGINX_KEEPALIVE    nginx's `keepalive` (idle upstream connections cached per worker; default 32)
#   PASSTHROUGH        1 (default): lwsws's HTTP/1 passthrough carries plain requests, as it does
#                      by default; 0: every request through hyper (`"proxy-passthrough": "0"`)
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk output)
#
# lwsws's config files cannot name a Kubernetes Service, and Kubernetes mode needs an API server
# to watch. examples/service_proxy.rs builds the config the Gateway API front end makes for a
# hostless HTTPRoute with one backendRef (an `Origin::Service` mount on `/`), writes the
# backends' addresses into the Services registry as the EndpointSlice watch does, and serves it
# with the server lwsws runs (`app::Server::start_with`). Each request picks an endpoint by power
# of two choices (least in flight of two drawn at random). nginx has an `upstream` block of the
# same addresses (round robin, `keepalive 32` by default, HTTP/1.1 with `Connection ""`).
#
# The backends, the proxy under test and wrk all share the same cores: compare the ratios of one
# run. Prints a per-round table (req/s, p99, errors, CPU per request), the means, how each
# proxy's requests spread over the backends (from their stub_status counters), and
#   RESULT endpoints backends=4 passthrough=1 nginx_keepalive=32 nginx_rps=... lwsws_rps=... ratio=... nginx_p99_ms=... lwsws_p99_ms=... nginx_cpu_us=... lwsws_cpu_us=... cpu_ratio=...
# CPU per request is the proxy's user+system time (all its processes, from /proc) over the
# requests wrk completed; cpu_ratio = nginx's / lwsws's (above 1: lwsws uses less).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

THREADS="${THREADS:-2}"
BACKENDS="${BACKENDS:-4}"
BACKEND_PORT="${BACKEND_PORT:-18090}"
NGINX_PORT="${NGINX_PORT:-18080}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
ONLY="${ONLY:-}"
PASSTHROUGH="${PASSTHROUGH:-1}"
NGINX_KEEPALIVE="${NGINX_KEEPALIVE:-32}"

SERVERS=()
if [[ -z "$ONLY" ]]; then
    SERVERS=(nginx lwsws)
else
    for s in ${ONLY//,/ }; do
        case "$s" in
            nginx | lwsws) SERVERS+=("$s") ;;
            *) die "ONLY must list some of 'nginx lwsws' (got '$ONLY')" ;;
        esac
    done
    ((${#SERVERS[@]} > 0)) || die "ONLY is set but names no proxy"
fi
has_server() {
    local s
    for s in "${SERVERS[@]}"; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}

for v in THREADS BACKENDS BACKEND_PORT NGINX_PORT LWSWS_PORT ROUNDS DURATION WARMUP CONNECTIONS NGINX_KEEPALIVE; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((THREADS >= 1)) || die "THREADS must be at least 1"
((BACKENDS >= 1 && BACKENDS <= 250)) || die "BACKENDS must be 1 to 250"
[[ "$PASSTHROUGH" == 0 || "$PASSTHROUGH" == 1 ]] || die "PASSTHROUGH must be 0 or 1 (got '$PASSTHROUGH')"

ensure_tools nginx wrk curl python3

# --- the lwsws side: examples/service_proxy ---------------------------------
if has_server lwsws; then
    if [[ -n "${SERVICE_PROXY_BIN:-}" ]]; then
        SERVICE_PROXY="$SERVICE_PROXY_BIN"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo not found (or set SERVICE_PROXY_BIN)"
        lock=()
        [[ -n "${BUILD_LOCK:-}" ]] && lock=(flock "$BUILD_LOCK")
        log "building examples/service_proxy (cargo build --release --example service_proxy)"
        "${lock[@]}" cargo build --release --example service_proxy >&2
        target_dir="$(cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
        SERVICE_PROXY="$target_dir/release/examples/service_proxy"
    fi
    [[ -x "$SERVICE_PROXY" ]] || die "not an executable: $SERVICE_PROXY"
fi

bench_init
DOCROOT="$BENCH_TMP/docroot"
mkdir -p "$DOCROOT"
head -c 1024 /dev/zero | tr '\0' 'a' >"$DOCROOT/1k.html"
chmod 755 "$DOCROOT"
chmod 644 "$DOCROOT/1k.html"

declare -A PORT=([nginx]="$NGINX_PORT" [lwsws]="$LWSWS_PORT")
declare -A PID=()
declare -A LOGF=()
BACKEND_ADDRS=()
for ((b = 0; b < BACKENDS; b++)); do BACKEND_ADDRS+=("127.0.0.$((b + 2))"); done

port_free() { # PORT VAR [ADDR]
    if port_answers "$1" "${3:-127.0.0.1}"; then die "${3:-127.0.0.1}:$1 is already in use (set $2)"; fi
}

# --- backends: plain nginx, 1 worker each, same port, one loopback address each ----------
start_backends() {
    local addr dir
    for addr in "${BACKEND_ADDRS[@]}"; do
        dir="$BENCH_TMP/backend-$addr"
        mkdir -p "$dir"
        port_free "$BACKEND_PORT" BACKEND_PORT "$addr"
        # common.sh's static-file config (access_log off, keepalive_requests 1000000) and a
        # stub_status page, whose request counter tells how the proxies spread the load
        write_nginx_conf "$dir/nginx.conf" "$dir" "$DOCROOT" "$BACKEND_PORT" 1 65 4096 "$addr" \
            "        location = /bench-status { stub_status; }"
        run_nginx "backend-$addr" "$dir" "$dir/nginx.conf" "$BACKEND_PORT" "$addr"
    done
}

# --- nginx reverse proxy with an upstream block of the backends --------------------------
start_nginx_proxy() {
    local dir="$BENCH_TMP/nginx" port="$NGINX_PORT" servers="" addr
    port_free "$port" NGINX_PORT
    for addr in "${BACKEND_ADDRS[@]}"; do servers+="$addr:$BACKEND_PORT "; done
    write_nginx_proxy_conf "$dir/nginx.conf" "$dir" "$port" "$THREADS" "$servers" "$NGINX_KEEPALIVE"
    run_nginx nginx "$dir" "$dir/nginx.conf" "$port"
}

# --- lwsws: a Service route whose endpoints are the backends ------------------------------
start_lwsws_proxy() {
    local dir="$BENCH_TMP/lwsws" port="$LWSWS_PORT" endpoints=() addr
    mkdir -p "$dir"
    port_free "$port" LWSWS_PORT
    for addr in "${BACKEND_ADDRS[@]}"; do endpoints+=("$addr:$BACKEND_PORT"); done
    RUST_LOG="${RUST_LOG:-warn}" SERVICE_PROXY_PASSTHROUGH="$PASSTHROUGH" "$SERVICE_PROXY" "127.0.0.1:$port" "$THREADS" "${endpoints[@]}" \
        </dev/null >"$dir/lwsws.log" 2>&1 &
    PID[lwsws]=$!
    LOGF[lwsws]="$dir/lwsws.log"
    BENCH_PIDS+=("${PID[lwsws]}")
    wait_port lwsws "$port" "${PID[lwsws]}" "$dir/lwsws.log"
}

log "NOTE: $BACKENDS nginx backends (1 worker each), the proxy under test and wrk all share this machine's $(nproc) core(s)"
start_backends
has_server nginx && start_nginx_proxy
has_server lwsws && start_lwsws_proxy

# --- correctness check: 200 + the exact 1024 bytes ------------------------------------------
check_get() { # NAME URL
    local name="$1" url="$2" out="$BENCH_TMP/check-$1" got
    got="$(curl -s -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "$url" || true)"
    if [[ "$got" != "200 1024" ]]; then
        [[ -n "${LOGF[$name]:-}" ]] && tail -n 20 "${LOGF[$name]}" >&2 2>/dev/null
        die "$name: GET $url returned '$got' (status bytes), expected '200 1024'"
    fi
    cmp -s "$out" "$DOCROOT/1k.html" || die "$name: GET $url returned the right size but wrong content"
    rm -f "$out"
}
for addr in "${BACKEND_ADDRS[@]}"; do check_get "backend-$addr" "http://$addr:$BACKEND_PORT/1k.html"; done
for s in "${SERVERS[@]}"; do
    # enough requests that every backend is very likely to be asked at least once
    for ((i = 0; i < 4 * BACKENDS; i++)); do check_get "$s" "http://127.0.0.1:${PORT[$s]}/1k.html"; done
    log "$s proxies /1k.html correctly (200, exact 1024 bytes)"
done

# backend_counters -> "ACCEPTS REQUESTS" of every backend in turn, space separated
backend_counters() {
    local addr acc req out=()
    for addr in "${BACKEND_ADDRS[@]}"; do
        acc="" req=""
        # stub_status: "Active connections: N", "server accepts handled requests", "A H R", ...
        read -r acc req < <(curl -s --max-time 5 "http://$addr:$BACKEND_PORT/bench-status" |
            awk 'NR == 3 { print $1, $3 }') || true
        [[ "$acc" =~ ^[0-9]+$ && "$req" =~ ^[0-9]+$ ]] || die "cannot read the stub_status of $addr:$BACKEND_PORT"
        out+=("$acc" "$req")
    done
    echo "${out[*]}"
}

# --- wrk runs ------------------------------------------------------------------------------
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

RESULTS="$BENCH_TMP/results.tsv"  # server round rps p99 errors cpu_us
SPREAD="$BENCH_TMP/spread.tsv"    # server backend-index requests connections-accepted
: >"$RESULTS"
: >"$SPREAD"
log "wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency /1k.html, $ROUNDS round(s), THREADS=$THREADS, $BACKENDS backends, proxies: ${SERVERS[*]}"
if ((WARMUP > 0)); then
    for s in "${SERVERS[@]}"; do
        run_wrk "$s" "$WARMUP" "$BENCH_TMP/warmup-$s.txt"
    done
fi
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SERVERS[@]}"; do
        raw="$BENCH_TMP/wrk-$s-$r.txt"
        read -r -a count_before <<<"$(backend_counters)"
        cpu_before="$(cpu_ticks "${PID[$s]}")"
        run_wrk "$s" "$DURATION" "$raw"
        cpu_after="$(cpu_ticks "${PID[$s]}")"
        read -r -a count_after <<<"$(backend_counters)"
        check_alive "$s"
        for addr in "${BACKEND_ADDRS[@]}"; do check_alive "backend-$addr"; done
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
        # a status read counts itself: the "after" read is one connection and one request more
        # than the proxy brought
        for ((b = 0; b < BACKENDS; b++)); do
            printf '%s\t%s\t%s\t%s\n' "$s" "$b" $((count_after[2 * b + 1] - count_before[2 * b + 1] - 1)) \
                $((count_after[2 * b] - count_before[2 * b] - 1)) >>"$SPREAD"
        done
        log "$s round $r: $rps req/s, p99 $p99 ms, errors $errs, CPU $cpu_us us/request"
    done
done

for s in "${BACKEND_ADDRS[@]/#/backend-}" "${SERVERS[@]}"; do
    f="${LOGF[$s]:-}"
    if [[ -n "$f" && -s "$f" ]]; then
        log "$s logged $(wc -l <"$f") line(s) in $f; last lines:"
        tail -n 10 "$f" >&2
    fi
done

# --- report ----------------------------------------------------------------------------------
echo
echo "Backends: $BACKENDS nginx servers, 1 worker each, on ${BACKEND_ADDRS[*]} port $BACKEND_PORT -- they share the same $(nproc) core(s) with the proxy under test and wrk."
echo "nginx: upstream block (round robin, keepalive $NGINX_KEEPALIVE); lwsws: a Service route's endpoints (power of two choices), passthrough=$PASSTHROUGH."
echo
printf '%-8s %5s %12s %10s %7s %10s\n' proxy round 'req/s' 'p99 ms' errors 'CPU us/req'
printf '%-8s %5s %12s %10s %7s %10s\n' -------- ----- ------------ ---------- ------- ----------
awk -F'\t' '{ printf "%-8s %5s %12.2f %10.3f %7d %10.2f\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
echo
echo "Requests each backend answered over the timed rounds (share of the proxy's total), and the"
echo "connections the proxy opened to the backends during them:"
awk -F'\t' -v addrs="${BACKEND_ADDRS[*]}" '
    {
        n[$1, $2] += $3; tot[$1] += $3; conns[$1] += $4
        if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
    }
    END {
        m = split(addrs, a, " ")
        for (i = 1; i <= k; i++) {
            s = order[i]; line = sprintf("  %-6s", s)
            for (b = 0; b < m; b++)
                line = line sprintf("  %s %d (%.1f %%)", a[b + 1], n[s, b], tot[s] > 0 ? 100 * n[s, b] / tot[s] : 0)
            print line sprintf("  connections opened: %d", conns[s])
        }
    }' "$SPREAD"
echo
awk -F'\t' -v backends="$BACKENDS" -v passthrough="$PASSTHROUGH" -v keepalive="$NGINX_KEEPALIVE" '
    { rps[$1] += $3; p99[$1] += $4; err[$1] += $5; cpu[$1] += $6; n[$1]++ }
    function mean(a, k)  { return (k in n) ? sprintf("%.2f", a[k] / n[k]) : "NA" }
    function meanp(a, k) { return (k in n) ? sprintf("%.3f", a[k] / n[k]) : "NA" }
    function ratio(a, b) { return (a != "NA" && b != "NA" && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA" }
    END {
        split("nginx lwsws", names, " ")
        printf "%-8s %12s %10s %7s %10s\n", "proxy", "mean req/s", "p99 ms", "errors", "CPU us/req"
        for (i = 1; i <= 2; i++) {
            s = names[i]
            if (!(s in n)) continue
            printf "%-8s %12s %10s %7d %10s\n", s, mean(rps, s), meanp(p99, s), err[s], mean(cpu, s)
        }
        nr = mean(rps, "nginx"); lr = mean(rps, "lwsws"); r = ratio(lr, nr)
        nc = mean(cpu, "nginx"); lc = mean(cpu, "lwsws"); c = ratio(nc, lc)
        print ""
        printf "ratio lwsws/nginx = %s   CPU per request nginx/lwsws = %s (above 1: lwsws uses less)\n", r, c
        print ""
        printf "RESULT endpoints backends=%s passthrough=%s nginx_keepalive=%s nginx_rps=%s lwsws_rps=%s ratio=%s nginx_p99_ms=%s lwsws_p99_ms=%s nginx_cpu_us=%s lwsws_cpu_us=%s cpu_ratio=%s\n", \
            backends, passthrough, keepalive, nr, lr, r, meanp(p99, "nginx"), meanp(p99, "lwsws"), nc, lc, c
    }' "$RESULTS"
