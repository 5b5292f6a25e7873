#!/usr/bin/env bash
# Every lwsws comparison in one command: runs the bench/ scripts one after the other,
# collects their RESULT lines into one file and prints one markdown table.
#
# Usage (from anywhere):  bench/all.sh
#                         ONLY=static,h2 DURATION=2 ROUNDS=1 bench/all.sh
# Environment:
#   LWSWS_BIN     lwsws binary, relative to the repo root (default target/release/lwsws;
#                 the default one is built with `cargo build --release` if missing)
#   LWSWS_COMMIT  the commit to name in the header (default: git rev-parse --short HEAD)
#   DURATION      seconds per timed run (default 10)      ROUNDS  runs per server (default 3)
#   WARMUP        seconds of untimed load per server (default 1)
#   THREADS       server threads/workers everywhere but scaling.sh (default 2)
#   IDLE_CONNS    idle connections per idle-memory run (default 5000)
#   WS_CLIENTS    websocket fan-out members (default 1000)   WS_MESSAGES  (default 2000)
#   ONLY          comma/space separated subset of
#                 static,tls,h2,h2proxy,proxy,handshakes,idle,ws,scaling (default all)
#   OUT           the RESULT file (default bench/results/all-<UTC date>-<commit>.txt; the
#                 full output of every step goes next to it, same name with .log)
#
# Steps: static (static.sh, plain 1k/1m), tls (static.sh TLS=1), h2 (h2.sh), h2proxy
# (h2.sh MODE=proxy), proxy (proxy.sh with REWRITE_LINKS=0, then 1), handshakes
# (handshakes.sh), idle (idle-conns.sh, lwsws and nginx, PROTO plain/tls/h2), ws
# (ws-fanout.sh: fan-out rate and idle websocket memory, lwsws only), scaling (scaling.sh).
# With the defaults the whole run takes about 15 minutes (estimated: the sum of the timed
# runs, warm-ups and start-ups; DURATION=5 ROUNDS=2 about 7).
#
# A step that fails does not stop the others; all.sh prints what it has and then exits 1,
# naming the steps that failed. The RESULT file is not committed (bench/results/ is ignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

export DURATION="${DURATION:-10}" ROUNDS="${ROUNDS:-3}" WARMUP="${WARMUP:-1}" THREADS="${THREADS:-2}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
WS_CLIENTS="${WS_CLIENTS:-1000}"
WS_MESSAGES="${WS_MESSAGES:-2000}"
ALL_STEPS=(static tls h2 h2proxy proxy handshakes idle ws scaling)
STEPS=()
if [[ -z "${ONLY:-}" ]]; then
    STEPS=("${ALL_STEPS[@]}")
else
    for s in ${ONLY//,/ }; do
        [[ " ${ALL_STEPS[*]} " == *" $s "* ]] || die "ONLY must list some of: ${ALL_STEPS[*]} (got '$ONLY')"
        STEPS+=("$s")
    done
fi
# the sub-scripts read ONLY themselves (a server subset): never pass ours down
unset ONLY
for v in DURATION ROUNDS WARMUP THREADS IDLE_CONNS WS_CLIENTS WS_MESSAGES; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done

ensure_tools python3 nginx curl
ensure_lwsws_bin
export LWSWS_BIN="$LWSWS"

COMMIT="${LWSWS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="${OUT:-bench/results/all-$STAMP-$COMMIT.txt}"
mkdir -p "$(dirname "$OUT")"
LOGFILE="${OUT%.txt}.log"
NGINX_VERSION="$(nginx -v 2>&1 | sed 's/^nginx version: //')"
HAPROXY_VERSION="$(haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 }' || true)"
HEADER="lwsws $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'), binary $LWSWS ($(stat -c %y "$LWSWS" | cut -d. -f1)), nginx ${NGINX_VERSION:-NA}, haproxy ${HAPROXY_VERSION:-NA}, $(nproc) CPU(s), THREADS=$THREADS ROUNDS=$ROUNDS DURATION=${DURATION}s"
{
    echo "# $HEADER"
    echo "# steps: ${STEPS[*]}"
} >"$OUT"
: >"$LOGFILE"
log "$HEADER"
log "RESULT lines -> $OUT, full output -> $LOGFILE"

FAILED=()
# step NAME LABEL CMD... : run one sub-benchmark, keep its RESULT lines
step() {
    local name="$1" label="$2" t0 rc=0 tmp
    shift 2
    tmp="$(mktemp -t lwsws-all.XXXXXX)"
    log "=== $label: $*"
    t0=$SECONDS
    "$@" >"$tmp" 2>&1 || rc=$?
    {
        echo "=== $label (exit $rc, $((SECONDS - t0)) s): $*"
        cat "$tmp"
    } >>"$LOGFILE"
    echo "# step $label exit=$rc" >>"$OUT"
    grep '^RESULT ' "$tmp" | tee -a "$OUT" >&2 || true
    if ((rc != 0)); then
        log "FAILED: $label (exit $rc) after $((SECONDS - t0)) s; last lines:"
        tail -n 15 "$tmp" >&2
        FAILED+=("$label")
    else
        log "done: $label in $((SECONDS - t0)) s"
    fi
    rm -f "$tmp"
}

for s in "${STEPS[@]}"; do
    case "$s" in
        static) step static "static plain" bench/static.sh ;;
        tls) step tls "static tls" env TLS=1 bench/static.sh ;;
        h2) step h2 "h2 static" env MODE=static bench/h2.sh ;;
        h2proxy) step h2proxy "h2 proxy" env MODE=proxy bench/h2.sh ;;
        proxy)
            step proxy "proxy rewrite-links=0" env REWRITE_LINKS=0 bench/proxy.sh
            step proxy "proxy rewrite-links=1" env REWRITE_LINKS=1 bench/proxy.sh
            ;;
        handshakes) step handshakes handshakes bench/handshakes.sh ;;
        idle)
            for proto in plain tls h2; do
                for server in lwsws nginx; do
                    step idle "idle $proto $server" env SERVER="$server" PROTO="$proto" CONNS="$IDLE_CONNS" bench/idle-conns.sh
                done
            done
            ;;
        ws) step ws "ws fan-out" env CLIENTS="$WS_CLIENTS" MESSAGES="$WS_MESSAGES" bench/ws-fanout.sh ;;
        scaling) step scaling scaling bench/scaling.sh ;;
    esac
done

# --- the table ---------------------------------------------------------------
echo
python3 - "$OUT" "$HEADER" <<'PY'
import sys

path, header = sys.argv[1], sys.argv[2]
rows = []
results = []
for line in open(path):
    if line.startswith("RESULT "):
        words = line.split()[1:]
        kv = dict(w.split("=", 1) for w in words if "=" in w)
        tags = [w for w in words if "=" not in w]
        results.append((tags, kv))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, digits=0):
    x = num(v)
    if x is None:
        return "NA"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    a, b = num(a), num(b)
    return f"{a / b:.2f}" if a is not None and b else "NA"


def p99(l, n, h="NA", what="p99"):
    vals = [fmt(x, 2) if num(x) is not None else "NA" for x in (l, n, h)]
    if all(v == "NA" for v in vals):
        return "NA"
    return " / ".join(vals) + ("" if what == "p99" else f" ({what})")


def row(path, l, n, h="NA", cpu="NA", lat="NA", digits=0):
    rows.append(
        (path, fmt(l, digits), fmt(n, digits), fmt(h, digits), ratio(l, n), ratio(l, h), cpu if num(cpu) is not None else "NA", lat)
    )


for tags, kv in results:
    if "file" in kv:
        mode = "TLS" if kv.get("tls") == "1" else "plain"
        row(f"static {kv['file']} {mode} HTTP/1.1 (req/s)", kv.get("lwsws_rps"), kv.get("nginx_rps"),
            cpu=kv.get("cpu_ratio"), lat=p99(kv.get("lwsws_p99_ms"), kv.get("nginx_p99_ms")))
    elif tags[:1] == ["h2"]:
        label = "h2 static 1k over TLS (req/s)" if kv.get("mode") == "static" else "h2 -> proxy -> h1 backend (req/s)"
        errs = [kv.get(f"{s}_errors", "NA") for s in ("lwsws", "nginx", "haproxy")]
        if any(e not in ("0", "NA") for e in errs):
            label += f" [errors lwsws/nginx/haproxy {'/'.join(errs)}]"
        row(label, kv.get("lwsws_rps"), kv.get("nginx_rps"), kv.get("haproxy_rps"), cpu=kv.get("cpu_ratio_nginx"),
            lat=p99(kv.get("lwsws_mean_ms"), kv.get("nginx_mean_ms"), kv.get("haproxy_mean_ms"), "mean, h2load has no p99"))
    elif tags[:1] == ["proxy"]:
        rw = kv.get("rewrite_links", "?")
        row(f"proxy h1 1k, lwsws rewrite-links={rw} (req/s)", kv.get("lwsws_rps"), kv.get("nginx_rps"), kv.get("haproxy_rps"),
            cpu=kv.get("cpu_ratio_nginx"),
            lat=p99(kv.get("lwsws_p99_ms"), kv.get("nginx_p99_ms"), kv.get("haproxy_p99_ms")))
    elif tags[:1] == ["handshakes"]:
        row("TLS full handshakes (conns/s; CPU per conn)", kv.get("lwsws_conns_per_s"), kv.get("nginx_conns_per_s"),
            cpu=kv.get("cpu_ratio"))
    elif tags[:1] == ["ws-fanout"]:
        row("ws fan-out, lwsws-mirror (messages delivered/s)", kv.get("delivered_per_s"), "NA")
        row("idle websocket (bytes/conn, lower is better)", kv.get("idle_bytes_per_conn"), "NA")
    elif tags[:1] == ["scaling"] and "threads" in kv:
        pinned = "1 thread/worker pinned to 1 CPU, wrk on the other" if kv["threads"] == "1" else "2 threads/workers, sharing 2 CPUs with wrk"
        row(f"scaling 1k plain, {pinned} (req/s)", kv.get("lwsws_rps"), kv.get("nginx_rps"), cpu=kv.get("cpu_ratio"),
            lat=p99(kv.get("lwsws_p99_ms"), kv.get("nginx_p99_ms")))

# idle memory: one line per server, paired by proto
idle = {}
for tags, kv in results:
    if "server" in kv and "per_conn_bytes" in kv:
        idle.setdefault(kv.get("proto", "plain"), {})[kv["server"]] = kv["per_conn_bytes"]
for proto in ("plain", "tls", "h2"):
    if proto in idle:
        d = idle[proto]
        row(f"idle {proto} keep-alive conn (bytes/conn, lower is better)", d.get("lwsws"), d.get("nginx"))

print(f"**{header}**")
print()
print("| path | lwsws | nginx | haproxy | lwsws/nginx | lwsws/haproxy | CPU/req nginx÷lwsws | p99 ms lwsws / nginx / haproxy |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("req/s and conns/s: higher is better; bytes/conn: lower is better (the ratio is then lwsws/nginx of memory).")
print("CPU/req nginx÷lwsws above 1: lwsws uses less CPU per request (per connection for the handshakes).")
PY

echo
echo "RESULT lines: $OUT   full output: $LOGFILE"
if ((${#FAILED[@]} > 0)); then
    log "FAILED steps: ${FAILED[*]} (see $LOGFILE)"
    exit 1
fi
