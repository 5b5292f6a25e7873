#!/usr/bin/env bash
# Static-file throughput/latency: lwsws vs nginx, side by side, with wrk.
#
# Usage (from anywhere):  bench/static.sh
# Environment:
#   LWSWS_BIN    lwsws binary, relative to the repo root (default target/release/lwsws;
#                the default one is built with `cargo build --release` if missing)
#   THREADS      nginx worker_processes and lwsws count-threads (default 2)
#   NGINX_PORT   default 18080      LWSWS_PORT  default 18081
#   ROUNDS       wrk runs per file per server (default 3)
#   DURATION     seconds per wrk run (default 5)
#   WARMUP       seconds of untimed wrk per file per server before the rounds (default 1; 0 = none)
#   CONNECTIONS  wrk -c (default 64); wrk always uses -t2
#   ONLY         "nginx" or "lwsws" to run one side only (testing); default both
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output)
#
# Prints a table (file, server, round, req/s, p99 ms), per-file means and the
# lwsws/nginx req/s ratio, and one machine-readable line per file:
#   RESULT file=1k nginx_rps=... lwsws_rps=... ratio=... nginx_p99_ms=... lwsws_p99_ms=...
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

THREADS="${THREADS:-2}"
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
has_server() {
    local s
    for s in "${SERVERS[@]}"; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}

for v in THREADS NGINX_PORT LWSWS_PORT ROUNDS DURATION WARMUP CONNECTIONS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done

if has_server nginx; then
    ensure_tools nginx wrk curl
else
    ensure_tools wrk curl
fi
has_server lwsws && ensure_lwsws_bin

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"

declare -A PORT=([nginx]="$NGINX_PORT" [lwsws]="$LWSWS_PORT")
if has_server nginx; then
    start_nginx "$BENCH_TMP/nginx" "$DOCROOT" "$NGINX_PORT" "$THREADS" 65 4096
fi
if has_server lwsws; then
    mkdir -p "$BENCH_TMP/lwsws"
    start_lwsws "$BENCH_TMP/lwsws" "$DOCROOT" "$LWSWS_PORT" "$THREADS"
fi

# --- correctness check: 200 + exact bytes for both files ------------------
FILES=(1k.html 1m.bin)
check_file() {
    local server="$1" file="$2" url out got
    url="http://127.0.0.1:${PORT[$server]}/$file"
    out="$BENCH_TMP/check-$server-$file"
    got="$(curl -s -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "$url" || true)"
    local want
    want="200 $(stat -c %s "$DOCROOT/$file")"
    if [[ "$got" != "$want" ]]; then
        die "$server: GET $url returned '$got' (status bytes), expected '$want'"
    fi
    cmp -s "$out" "$DOCROOT/$file" || die "$server: GET $url returned the right size but wrong content"
    rm -f "$out"
}
for s in "${SERVERS[@]}"; do
    for f in "${FILES[@]}"; do check_file "$s" "$f"; done
    log "$s serves ${FILES[*]} correctly (200, exact bytes)"
done

# --- wrk runs ------------------------------------------------------------
run_wrk() { # server file seconds outfile
    local url="http://127.0.0.1:${PORT[$1]}/$2"
    wrk -t2 -c"$CONNECTIONS" -d"$3"s --latency "$url" >"$4" 2>&1 || {
        cat "$4" >&2
        die "wrk failed against $1 ($url)"
    }
}

RESULTS="$BENCH_TMP/results.tsv" # file server round rps p99
: >"$RESULTS"
log "wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS round(s), THREADS=$THREADS, servers: ${SERVERS[*]}"
for f in "${FILES[@]}"; do
    if ((WARMUP > 0)); then
        for s in "${SERVERS[@]}"; do
            run_wrk "$s" "$f" "$WARMUP" "$BENCH_TMP/warmup-$s-$f.txt"
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "${SERVERS[@]}"; do
            raw="$BENCH_TMP/wrk-$s-$f-$r.txt"
            run_wrk "$s" "$f" "$DURATION" "$raw"
            if ! parsed="$(parse_wrk "$raw")"; then
                cat "$raw" >&2
                die "could not parse wrk output for $s $f round $r"
            fi
            read -r rps p99 errs _ <<<"$parsed"
            if ((errs > 0)); then
                log "WARNING: $s $f round $r: $errs socket errors / non-2xx responses:"
                grep -E 'Socket errors|Non-2xx' "$raw" >&2 || true
            fi
            printf '%s\t%s\t%s\t%s\t%s\n' "${f%%.*}" "$s" "$r" "$rps" "$p99" >>"$RESULTS"
            log "$s $f round $r: $rps req/s, p99 $p99 ms"
        done
    done
done

# --- report --------------------------------------------------------------
echo
printf '%-6s %-6s %5s %12s %10s\n' file server round 'req/s' 'p99 ms'
printf '%-6s %-6s %5s %12s %10s\n' ------ ------ ----- ------------ ----------
awk -F'\t' '{ printf "%-6s %-6s %5s %12.2f %10.3f\n", $1, $2, $3, $4, $5 }' "$RESULTS"
echo
awk -F'\t' '
    {
        k = $1 SUBSEP $2; rps[k] += $4; p99[k] += $5; n[k]++
        if (!($1 in seen)) { seen[$1] = 1; order[++nf] = $1 }
    }
    function mean(a, k) { return (k in n) ? sprintf("%.2f", a[k] / n[k]) : "NA" }
    function meanp(a, k) { return (k in n) ? sprintf("%.3f", a[k] / n[k]) : "NA" }
    END {
        printf "%-6s %14s %14s %8s %13s %13s\n", "file", "nginx req/s", "lwsws req/s", "ratio", "nginx p99 ms", "lwsws p99 ms"
        for (i = 1; i <= nf; i++) {
            f = order[i]
            nr = mean(rps, f SUBSEP "nginx");  lr = mean(rps, f SUBSEP "lwsws")
            np = meanp(p99, f SUBSEP "nginx"); lp = meanp(p99, f SUBSEP "lwsws")
            ratio = (nr != "NA" && lr != "NA" && nr + 0 > 0) ? sprintf("%.2f", lr / nr) : "NA"
            printf "%-6s %14s %14s %8s %13s %13s\n", f, nr, lr, ratio, np, lp
            line[i] = sprintf("RESULT file=%s nginx_rps=%s lwsws_rps=%s ratio=%s nginx_p99_ms=%s lwsws_p99_ms=%s", f, nr, lr, ratio, np, lp)
        }
        print ""
        for (i = 1; i <= nf; i++) print line[i]
    }' "$RESULTS"
