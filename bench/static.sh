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
#   TLS          1 = HTTPS with HTTP/1.1 keep-alive: both servers get the same self-signed
#                ECDSA P-256 certificate (nginx "listen ... ssl", no http2; lwsws a TLS vhost);
#                0 (default) = plain HTTP
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output)
#
# Prints a table (file, server, round, req/s, p99 ms, CPU us per request), per-file means and
# the lwsws/nginx req/s ratio, and one machine-readable line per file:
#   RESULT file=1k tls=0 nginx_rps=... lwsws_rps=... ratio=... nginx_p99_ms=... lwsws_p99_ms=... nginx_cpu_us=... lwsws_cpu_us=... cpu_ratio=...
# CPU per request: the server's user+system time (all its processes, from /proc) over the
# requests wrk completed; cpu_ratio = nginx's / lwsws's (above 1: lwsws uses less).
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
TLS="${TLS:-0}"
[[ "$TLS" == 0 || "$TLS" == 1 ]] || die "TLS must be 0 or 1 (got '$TLS')"
SCHEME=http
((TLS)) && SCHEME=https

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

tools=(wrk curl)
has_server nginx && tools+=(nginx)
((TLS)) && tools+=(openssl)
ensure_tools "${tools[@]}"
has_server lwsws && ensure_lwsws_bin

bench_init
DOCROOT="$BENCH_TMP/docroot"
make_docroot "$DOCROOT"

CERT="" KEY="" NGINX_EXTRA="" NGINX_FLAGS=""
if ((TLS)); then
    make_cert "$BENCH_TMP/cert"
    CERT="$BENCH_TMP/cert/cert.pem" KEY="$BENCH_TMP/cert/key.pem"
    # HTTP/1.1 only on nginx (no "http2" on the listen line): wrk speaks HTTP/1.1 and
    # lwsws's ALPN offers h2 too, which wrk does not ask for
    NGINX_EXTRA="$(nginx_tls_lines "$CERT" "$KEY")" NGINX_FLAGS=ssl
    log "TLS=1: both servers use $CERT (ECDSA P-256, self-signed)"
fi

declare -A PORT=([nginx]="$NGINX_PORT" [lwsws]="$LWSWS_PORT")
declare -A PID=()
if has_server nginx; then
    start_nginx "$BENCH_TMP/nginx" "$DOCROOT" "$NGINX_PORT" "$THREADS" 65 4096 "$NGINX_EXTRA" "$NGINX_FLAGS"
    PID[nginx]="$NGINX_PID"
fi
if has_server lwsws; then
    mkdir -p "$BENCH_TMP/lwsws"
    start_lwsws "$BENCH_TMP/lwsws" "$DOCROOT" "$LWSWS_PORT" "$THREADS" "" "$CERT" "$KEY"
    PID[lwsws]="$LWSWS_PID"
fi

# --- correctness check: 200 + exact bytes for both files ------------------
FILES=(1k.html 1m.bin)
check_file() {
    local server="$1" file="$2" url out got
    url="$SCHEME://127.0.0.1:${PORT[$server]}/$file"
    out="$BENCH_TMP/check-$server-$file"
    # --http1.1: what wrk speaks; -k: the certificate is self-signed
    got="$(curl -sk --http1.1 -o "$out" -w '%{http_code} %{size_download}' --max-time 10 "$url" || true)"
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
    local url="$SCHEME://127.0.0.1:${PORT[$1]}/$2"
    wrk -t2 -c"$CONNECTIONS" -d"$3"s --latency "$url" >"$4" 2>&1 || {
        cat "$4" >&2
        die "wrk failed against $1 ($url)"
    }
}

RESULTS="$BENCH_TMP/results.tsv" # file server round rps p99 cpu_us
: >"$RESULTS"
log "wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency $SCHEME://, $ROUNDS round(s), THREADS=$THREADS, servers: ${SERVERS[*]}"
for f in "${FILES[@]}"; do
    if ((WARMUP > 0)); then
        for s in "${SERVERS[@]}"; do
            run_wrk "$s" "$f" "$WARMUP" "$BENCH_TMP/warmup-$s-$f.txt"
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "${SERVERS[@]}"; do
            raw="$BENCH_TMP/wrk-$s-$f-$r.txt"
            cpu_before="$(cpu_ticks "${PID[$s]}")"
            run_wrk "$s" "$f" "$DURATION" "$raw"
            cpu_after="$(cpu_ticks "${PID[$s]}")"
            kill -0 "${PID[$s]}" 2>/dev/null || die "$s (PID ${PID[$s]}) died during the run"
            if ! parsed="$(parse_wrk "$raw")"; then
                cat "$raw" >&2
                die "could not parse wrk output for $s $f round $r"
            fi
            read -r rps p99 errs total <<<"$parsed"
            cpu_us="$(cpu_us_per_request $((cpu_after - cpu_before)) "$total")"
            if ((errs > 0)); then
                log "WARNING: $s $f round $r: $errs socket errors / non-2xx responses:"
                grep -E 'Socket errors|Non-2xx' "$raw" >&2 || true
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${f%%.*}" "$s" "$r" "$rps" "$p99" "$cpu_us" >>"$RESULTS"
            log "$s $f round $r: $rps req/s, p99 $p99 ms, CPU $cpu_us us/request"
        done
    done
done

# --- report --------------------------------------------------------------
echo
echo "$SCHEME (TLS=$TLS), THREADS=$THREADS"
printf '%-6s %-6s %5s %12s %10s %10s\n' file server round 'req/s' 'p99 ms' 'CPU us/req'
printf '%-6s %-6s %5s %12s %10s %10s\n' ------ ------ ----- ------------ ---------- ----------
awk -F'\t' '{ printf "%-6s %-6s %5s %12.2f %10.3f %10.2f\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
echo
awk -F'\t' -v tls="$TLS" '
    {
        k = $1 SUBSEP $2; rps[k] += $4; p99[k] += $5; cpu[k] += $6; n[k]++
        if (!($1 in seen)) { seen[$1] = 1; order[++nf] = $1 }
    }
    function mean(a, k) { return (k in n) ? sprintf("%.2f", a[k] / n[k]) : "NA" }
    function meanp(a, k) { return (k in n) ? sprintf("%.3f", a[k] / n[k]) : "NA" }
    END {
        printf "%-6s %14s %14s %8s %13s %13s %11s %11s %9s\n", "file", "nginx req/s", "lwsws req/s", "ratio", "nginx p99 ms", "lwsws p99 ms", "nginx CPU", "lwsws CPU", "CPU n/l"
        for (i = 1; i <= nf; i++) {
            f = order[i]
            nr = mean(rps, f SUBSEP "nginx");  lr = mean(rps, f SUBSEP "lwsws")
            np = meanp(p99, f SUBSEP "nginx"); lp = meanp(p99, f SUBSEP "lwsws")
            nc = mean(cpu, f SUBSEP "nginx");  lc = mean(cpu, f SUBSEP "lwsws")
            ratio = (nr != "NA" && lr != "NA" && nr + 0 > 0) ? sprintf("%.2f", lr / nr) : "NA"
            cr = (nc != "NA" && lc != "NA" && lc + 0 > 0) ? sprintf("%.2f", nc / lc) : "NA"
            printf "%-6s %14s %14s %8s %13s %13s %11s %11s %9s\n", f, nr, lr, ratio, np, lp, nc, lc, cr
            line[i] = sprintf("RESULT file=%s tls=%s nginx_rps=%s lwsws_rps=%s ratio=%s nginx_p99_ms=%s lwsws_p99_ms=%s nginx_cpu_us=%s lwsws_cpu_us=%s cpu_ratio=%s", f, tls, nr, lr, ratio, np, lp, nc, lc, cr)
        }
        print ""
        for (i = 1; i <= nf; i++) print line[i]
    }' "$RESULTS"
