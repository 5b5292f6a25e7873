#!/usr/bin/env bash
# Thread scaling, 1 KiB static file over plain HTTP/1.1 with wrk: lwsws count-threads 1 vs 2,
# nginx worker_processes 1 vs 2.
#
# Usage (from anywhere):  bench/scaling.sh
# Environment:
#   LWSWS_BIN    lwsws binary, relative to the repo root (default target/release/lwsws;
#                the default one is built with `cargo build --release` if missing)
#   ROUNDS       wrk runs per server and thread count (default 3)
#   DURATION     seconds per wrk run (default 5)
#   WARMUP       seconds of untimed wrk before the rounds of each configuration (default 1; 0 = none)
#   CONNECTIONS  wrk -c (default 64)
#   NGINX_PORT   default 18080      LWSWS_PORT  default 18081
#   ONLY         "nginx" or "lwsws" to run one side only (testing); default both
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output)
#
# threads=1: the server (every process and thread) is pinned to CPU 1 with taskset, wrk -t1 to
# CPU 0, so server and client do not compete. threads=2: server and wrk -t2 unpinned: on a
# 2-core machine the 2-thread figure shares both cores with wrk (the report says so), so it is
# not "twice the hardware" of the 1-thread figure.
#
#   RESULT scaling threads=1 pinned=1 nginx_rps=... lwsws_rps=... ratio=... nginx_p99_ms=... lwsws_p99_ms=... nginx_cpu_us=... lwsws_cpu_us=... cpu_ratio=...
#   RESULT scaling threads=2 pinned=0 ...
#   RESULT scaling speedup nginx=... lwsws=...   (req/s with 2 threads over req/s with 1)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

NGINX_PORT="${NGINX_PORT:-18080}"
LWSWS_PORT="${LWSWS_PORT:-18081}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
CONNECTIONS="${CONNECTIONS:-64}"
ONLY="${ONLY:-}"

SERVERS=()
case "$ONLY" in
    "") SERVERS=(nginx lwsws) ;;
    nginx | lwsws) SERVERS=("$ONLY") ;;
    *) die "ONLY must be empty, 'nginx' or 'lwsws' (got '$ONLY')" ;;
esac
has_server() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }

for v in NGINX_PORT LWSWS_PORT ROUNDS DURATION WARMUP CONNECTIONS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done

tools=(wrk curl)
has_server nginx && tools+=(nginx)
ensure_tools "${tools[@]}"
command -v taskset >/dev/null 2>&1 || die "taskset not found (Debian package util-linux)"
has_server lwsws && ensure_lwsws_bin
# CPUs 0 and 1 must both be ours
taskset -c 0,1 true 2>/dev/null || die "cannot run on CPUs 0 and 1 (taskset -c 0,1 failed); this script needs 2 CPUs"

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"
declare -A PORT=([nginx]="$NGINX_PORT" [lwsws]="$LWSWS_PORT")

# pin PID CPU: every thread of PID and of its child processes (nginx workers)
pin() {
    local p
    for p in "$1" $(pgrep -P "$1" || true); do
        taskset -a -p -c "$2" "$p" >/dev/null || die "taskset -a -p -c $2 $p failed"
    done
}

# stop PID: SIGTERM and wait (bench_cleanup would do it at exit; this frees the port now)
stop() {
    local i
    kill -TERM "$1" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

check_file() { # SERVER
    local url="http://127.0.0.1:${PORT[$1]}/1k.html" out="$BENCH_TMP/check-$1" got
    got="$(curl -s -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "$url" || true)"
    [[ "$got" == "200 1024" ]] || die "$1: GET $url returned '$got', expected '200 1024'"
    cmp -s "$out" "$DOCROOT/1k.html" || die "$1: GET $url returned the right size but wrong content"
    rm -f "$out"
}

RESULTS="$BENCH_TMP/results.tsv" # server threads round rps p99 cpu_us
: >"$RESULTS"
for s in "${SERVERS[@]}"; do
    for threads in 1 2; do
        dir="$BENCH_TMP/$s-$threads"
        mkdir -p "$dir"
        if [[ "$s" == nginx ]]; then
            start_nginx "$dir" "$DOCROOT" "$NGINX_PORT" "$threads" 65 4096
            pid="$NGINX_PID"
        else
            start_lwsws "$dir" "$DOCROOT" "$LWSWS_PORT" "$threads"
            pid="$LWSWS_PID"
        fi
        wrk_cmd=(wrk -t2)
        if ((threads == 1)); then
            pin "$pid" 1
            wrk_cmd=(taskset -c 0 wrk -t1)
            log "$s threads=1: pinned to CPU 1 ($(taskset -p "$pid" | awk '{ print $NF }') mask), wrk -t1 on CPU 0"
        else
            log "$s threads=2: unpinned; shares the $(nproc) core(s) with wrk -t2"
        fi
        check_file "$s"
        url="http://127.0.0.1:${PORT[$s]}/1k.html"
        if ((WARMUP > 0)); then
            "${wrk_cmd[@]}" -c"$CONNECTIONS" -d"$WARMUP"s "$url" >"$dir/warmup.txt" 2>&1 ||
                { cat "$dir/warmup.txt" >&2; die "wrk failed against $s"; }
        fi
        for ((r = 1; r <= ROUNDS; r++)); do
            raw="$dir/wrk-$r.txt"
            c0="$(cpu_ticks "$pid")"
            "${wrk_cmd[@]}" -c"$CONNECTIONS" -d"$DURATION"s --latency "$url" >"$raw" 2>&1 ||
                { cat "$raw" >&2; die "wrk failed against $s"; }
            c1="$(cpu_ticks "$pid")"
            kill -0 "$pid" 2>/dev/null || die "$s (PID $pid) died during the run"
            parsed="$(parse_wrk "$raw")" || { cat "$raw" >&2; die "could not parse wrk output ($s threads=$threads)"; }
            read -r rps p99 errs total <<<"$parsed"
            if ((errs > 0)); then
                log "WARNING: $s threads=$threads round $r: $errs socket errors / non-2xx responses"
            fi
            cpu_us="$(cpu_us_per_request $((c1 - c0)) "$total")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$threads" "$r" "$rps" "$p99" "$cpu_us" >>"$RESULTS"
            log "$s threads=$threads round $r: $rps req/s, p99 $p99 ms, CPU $cpu_us us/request"
        done
        stop "$pid"
    done
done

# --- report --------------------------------------------------------------
echo
echo "1 KiB static, plain HTTP/1.1, wrk -c$CONNECTIONS. threads=1: server pinned to CPU 1, wrk -t1 to CPU 0."
echo "threads=2: unpinned, the server's 2 threads/workers share this machine's $(nproc) core(s) with wrk -t2."
printf '%-6s %7s %5s %12s %10s %10s\n' server threads round 'req/s' 'p99 ms' 'CPU us/req'
printf '%-6s %7s %5s %12s %10s %10s\n' ------ ------- ----- ------------ ---------- ----------
awk -F'\t' '{ printf "%-6s %7s %5s %12.2f %10.3f %10.2f\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
echo
awk -F'\t' '
    { k = $1 SUBSEP $2; rps[k] += $4; p99[k] += $5; cpu[k] += $6; n[k]++ }
    function mean(a, k, f) { return (k in n) ? sprintf(f, a[k] / n[k]) : "NA" }
    function ratio(a, b) { return (a != "NA" && b != "NA" && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA" }
    END {
        for (t = 1; t <= 2; t++) {
            nr = mean(rps, "nginx" SUBSEP t, "%.2f"); lr = mean(rps, "lwsws" SUBSEP t, "%.2f")
            np = mean(p99, "nginx" SUBSEP t, "%.3f"); lp = mean(p99, "lwsws" SUBSEP t, "%.3f")
            nc = mean(cpu, "nginx" SUBSEP t, "%.2f"); lc = mean(cpu, "lwsws" SUBSEP t, "%.2f")
            R["nginx", t] = nr; R["lwsws", t] = lr
            line[t] = sprintf("RESULT scaling threads=%d pinned=%d nginx_rps=%s lwsws_rps=%s ratio=%s nginx_p99_ms=%s lwsws_p99_ms=%s nginx_cpu_us=%s lwsws_cpu_us=%s cpu_ratio=%s", \
                t, (t == 1), nr, lr, ratio(lr, nr), np, lp, nc, lc, ratio(nc, lc))
            printf "threads=%d: nginx %s req/s, lwsws %s req/s, lwsws/nginx %s\n", t, nr, lr, ratio(lr, nr)
        }
        sn = ratio(R["nginx", 2], R["nginx", 1]); sl = ratio(R["lwsws", 2], R["lwsws", 1])
        printf "speedup 2 threads / 1 thread: nginx %s, lwsws %s (the 2-thread runs share their cores with wrk)\n", sn, sl
        print ""
        print line[1]; print line[2]
        printf "RESULT scaling speedup nginx=%s lwsws=%s\n", sn, sl
    }' "$RESULTS"
