#!/usr/bin/env bash
# CPU flame graphs of lwsws under load, one per serving path, with perf + inferno.
#
#   bench/flamegraph.sh BIN             e.g. bench/flamegraph.sh /tmp/lwsws-prof
#   PATHS=static,h2-static bench/flamegraph.sh /tmp/lwsws-prof
#
# BIN should be a profiling build (release + line tables + frame pointers):
#   flock /tmp/lwsws-cargo.lock env CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#       RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release
# A plain release build works too, but has no line tables and its stacks are short.
#
# Paths (PATHS, comma or space separated; default all):
#   static             1 KiB file, HTTP/1.1 keep-alive, plain            (wrk)
#   tls-static         1 KiB file, HTTP/1.1 keep-alive over TLS          (wrk https)
#   h2-static          1 KiB file, HTTP/2 over TLS                       (h2load -m10)
#   proxy-passthrough  1 KiB from an nginx origin, HTTP/1.1, the passthrough, "rewrite-links": "0"
#   proxy-hyper        the same through hyper (global "proxy-passthrough": "0")
#   proxy-rewrite      the same with lwsws's defaults (passthrough on, link rewriting on)
#   h2-proxy           HTTP/2 over TLS in front, HTTP/1.1 to the origin, "rewrite-links": "0"
#                      (h2load -mPROXY_STREAMS: 64 x 4 = 256 requests in flight, lwsws's default
#                      "proxy-max-conns"; more would be queued and then refused with 503s)
#
# For each path: lwsws (count-threads THREADS) on 127.0.0.1 (and an nginx origin, 1 worker, for
# the proxy paths) is started from a temp dir, checked (200, 1024 bytes, the HTTP version),
# loaded for WARMUP + DURATION seconds (wrk -t2 -cCONNECTIONS, or h2load -t2 -cCONNECTIONS
# -mSTREAMS), and sampled for the last DURATION seconds with
#   perf record -e cpu-clock -F FREQ --call-graph CALLGRAPH -p PID -- sleep DURATION
# The samples are folded with inferno-collapse-perf (kernel frames marked _[k]) and drawn with
# inferno-flamegraph into OUT/<path>.svg, titled with the path and COMMIT. A summary of where
# the samples are is printed too (leaf frames by component, top frames self and inclusive):
#   RESULT flamegraph path=... rps=... cpu_us_per_req=... cpu_ms=... kernel=..% lwsws=..% ...
#
# TLS vhosts use a self-signed ECDSA P-256 certificate made with openssl in the temp dir.
#
# Knobs: PATHS, DURATION (10), WARMUP (2), FREQ (499), CALLGRAPH (dwarf,65528: std has no frame
#   pointers, so with fp the passthrough's send(2) stacks lost their callers; see bench/README.md),
#   THREADS (2), CONNECTIONS (64),
#   STREAMS (h2load -m, 10), PROXY_STREAMS (h2load -m for h2-proxy, 4), MINWIDTH (0.01:
#   inferno --minwidth, in percent of the samples; raise it if an SVG is too big),
#   OUT (docs/flamegraphs), COMMIT (git describe of HEAD: the commit BIN was built from),
#   LWSWS_PORT (18281), BACKEND_PORT (18290), KEEP_TMP=1 (keeps perf.data and the folded stacks).
# Needs perf (Debian linux-perf), wrk, h2load (nghttp2-client), nginx, openssl, curl, python3,
# and inferno (`cargo install inferno`: inferno-collapse-perf, inferno-flamegraph).
# Runs as root or with kernel.perf_event_paranoid low enough to attach to the server.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

(($# == 1)) || die "usage: bench/flamegraph.sh BIN"
[[ -x "$1" ]] || die "not an executable: $1"
LWSWS="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

ALL_PATHS=(static tls-static h2-static proxy-passthrough proxy-hyper proxy-rewrite h2-proxy)
PATHS="${PATHS:-${ALL_PATHS[*]}}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
FREQ="${FREQ:-499}"
CALLGRAPH="${CALLGRAPH:-dwarf,65528}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
STREAMS="${STREAMS:-10}"
PROXY_STREAMS="${PROXY_STREAMS:-4}"
MINWIDTH="${MINWIDTH:-0.01}"
OUT="${OUT:-docs/flamegraphs}"
LWSWS_PORT="${LWSWS_PORT:-18281}"
BACKEND_PORT="${BACKEND_PORT:-18290}"
COMMIT="${COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}"

for v in DURATION WARMUP FREQ THREADS CONNECTIONS STREAMS PROXY_STREAMS LWSWS_PORT BACKEND_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((DURATION >= 1 && THREADS >= 1)) || die "DURATION and THREADS must be at least 1"

SELECTED=()
for p in ${PATHS//,/ }; do
    case " ${ALL_PATHS[*]} " in
        *" $p "*) SELECTED+=("$p") ;;
        *) die "unknown path '$p' in PATHS (known: ${ALL_PATHS[*]})" ;;
    esac
done
((${#SELECTED[@]} > 0)) || die "PATHS names no path"

# perf and h2load are not packages of the same name: say which package to install.
command -v perf >/dev/null 2>&1 || die "perf not found (Debian: apt-get install linux-perf)"
command -v h2load >/dev/null 2>&1 || die "h2load not found (Debian: apt-get install nghttp2-client)"
ensure_tools nginx wrk curl python3 openssl
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
for t in inferno-collapse-perf inferno-flamegraph; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: cargo install inferno"
done

bench_init
mkdir -p "$OUT"
DOCROOT="$BENCH_TMP/www"
make_docroot "$DOCROOT"

# --- a self-signed ECDSA P-256 certificate for the TLS vhosts -------------
CERT="$BENCH_TMP/cert.pem"
KEY="$BENCH_TMP/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 ||
    die "openssl could not make the test certificate"

# --- the origin for the proxy paths: nginx, 1 worker ----------------------
needs_backend=0
for p in "${SELECTED[@]}"; do [[ "$p" == *proxy* ]] && needs_backend=1; done
if ((needs_backend)); then
    start_nginx "$BENCH_TMP/backend" "$DOCROOT" "$BACKEND_PORT" 1 65 4096
fi

# stop_pid PID: TERM, wait up to ~5 s, KILL; then forget it (the EXIT trap skips it).
stop_pid() {
    local pid="$1" i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    for i in "${BENCH_PIDS[@]}"; do [[ "$i" != "$pid" ]] && keep+=("$i"); done
    BENCH_PIDS=("${keep[@]}")
}

# summarize FOLDED: where the samples are, by the component of the leaf frame, and the top
# frames (self and inclusive). Last line: the RESULT fields of the components.
summarize() {
    python3 - "$1" <<'EOF'
import collections, re, sys

def component(frame):
    if frame.endswith("_[k]"):
        return "kernel"
    f = frame
    if re.search(r"jemalloc|^_?rjem_|^je_|^__rust_(alloc|dealloc|realloc)|^__rdl_|^(malloc|free|realloc|calloc|cfree)$|^_int_(malloc|free)", f):
        return "allocator"
    if f.startswith("aws_lc") or re.search(r"^(aes|gcm|sha\d|ecp_nistz|p256|bn_|x25519|CRYPTO_|EVP_|ChaCha)", f, re.I):
        return "crypto"
    m = re.match(r"^[<&\s(*]*(?:dyn |mut |const )*([A-Za-z_][A-Za-z0-9_]*)::", f)
    if m:
        crate = m.group(1)
        return {
            "lwsws": "lwsws", "hyper": "hyper", "hyper_util": "hyper", "h2": "h2", "http": "hyper",
            "httparse": "hyper", "http_body": "hyper", "http_body_util": "hyper",
            "rustls": "rustls", "tokio_rustls": "rustls", "aws_lc_rs": "crypto",
            "tokio": "tokio", "mio": "tokio", "tokio_util": "tokio",
            "core": "std", "alloc": "std", "std": "std", "bytes": "std", "hashbrown": "std",
            "tracing": "tracing", "tracing_core": "tracing", "tikv_jemallocator": "allocator",
            "prometheus_client": "metrics",
        }.get(crate, "other:" + crate)
    if re.match(r"^(__)?(mem(cpy|move|set|cmp|chr)|str(len|cmp|chr)|__mem|__str)", f) or "libc" in f:
        return "libc"
    if re.match(r"^(__)?(libc_)?(send|recv|write|read|writev|readv|epoll|sendto|recvfrom|sendmsg|recvmsg|syscall|pthread|clock_gettime|__GI_|__lll|futex)", f):
        return "libc"
    return "other"

stacks = collections.Counter()
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if not line:
        continue
    stack, _, n = line.rpartition(" ")
    stacks[stack] += int(n)
total = sum(stacks.values()) or 1
selfc, comp, incl, incl_lwsws = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
kentry = collections.Counter()  # kernel time by the user-space frame that entered the kernel
for stack, n in stacks.items():
    frames = stack.split(";")[1:]  # the first frame is the thread name
    if not frames:
        continue
    leaf = frames[-1]
    selfc[leaf] += n
    comp[component(leaf).split(":")[0]] += n
    if leaf.endswith("_[k]"):
        user = [f for f in frames if not f.endswith("_[k]")]
        kentry[user[-1] if user else "(kernel only: interrupts, softirq)"] += n
    for f in set(frames):
        incl[f] += n
        if component(f) == "lwsws":
            incl_lwsws[f] += n

pct = lambda n: 100.0 * n / total
print(f"  CPU sampled: {total / 1e6:.0f} ms (inferno counts the samples' cpu-clock periods, in ns)")
print("  leaf frames by component: " + ", ".join(f"{c} {pct(n):.1f}%" for c, n in comp.most_common()))
print("  kernel time by the user-space frame that entered it:")
for f, n in kentry.most_common(8):
    print(f"    {pct(n):5.1f}%  {f[:150]}")
print("  top frames, self:")
for f, n in selfc.most_common(15):
    print(f"    {pct(n):5.1f}%  {f[:150]}")
print("  top lwsws frames, inclusive:")
for f, n in incl_lwsws.most_common(15):
    print(f"    {pct(n):5.1f}%  {f[:150]}")
print("  top frames, inclusive (all):")
skip = re.compile(r"^(\[unknown\]|_start|__libc_start|main$|std::rt|std::sys|start_thread|clone3?|__clone)")
shown = 0
for f, n in incl.most_common():
    if skip.match(f):
        continue
    print(f"    {pct(n):5.1f}%  {f[:150]}")
    shown += 1
    if shown == 25:
        break
print("FIELDS cpu_ms=%d " % (total // 1000000) + " ".join(f"{c}={pct(comp[c]):.1f}%" for c in
      ["kernel", "lwsws", "hyper", "h2", "rustls", "crypto", "tokio", "allocator", "std", "libc", "tracing", "metrics", "other"]))
EOF
}

# --- one path ---------------------------------------------------------------
profile_path() {
    local name="$1" dir scheme=http tls=0 proxy=0 passthrough=1 rewrite=1 load=wrk want_ver=1.1
    local desc
    case "$name" in
        static) desc="1 KiB static file, HTTP/1.1 keep-alive" ;;
        tls-static) desc="1 KiB static file, HTTP/1.1 keep-alive over TLS" tls=1 ;;
        h2-static) desc="1 KiB static file, HTTP/2 over TLS" tls=1 load=h2load want_ver=2 ;;
        proxy-passthrough) desc="reverse proxy 1 KiB, HTTP/1.1, passthrough, rewrite-links 0" proxy=1 rewrite=0 ;;
        proxy-hyper) desc="reverse proxy 1 KiB, HTTP/1.1, through hyper (proxy-passthrough 0), rewrite-links 0" proxy=1 passthrough=0 rewrite=0 ;;
        proxy-rewrite) desc="reverse proxy 1 KiB, HTTP/1.1, defaults (passthrough on, rewrite-links on)" proxy=1 ;;
        h2-proxy) desc="reverse proxy 1 KiB, HTTP/2 over TLS to HTTP/1.1 origin, rewrite-links 0" tls=1 load=h2load want_ver=2 proxy=1 rewrite=0 ;;
    esac
    ((tls)) && scheme=https
    dir="$BENCH_TMP/$name"
    mkdir -p "$dir/etc/conf.d"
    port_answers "$LWSWS_PORT" && die "127.0.0.1:$LWSWS_PORT is already in use (set LWSWS_PORT)"

    local tls_keys="" mount
    ((tls)) && tls_keys="\"host-ssl-cert\": \"$CERT\", \"host-ssl-key\": \"$KEY\","
    if ((proxy)); then
        mount="{ \"mountpoint\": \"/\", \"origin\": \"http://127.0.0.1:$BACKEND_PORT/\", \"rewrite-links\": \"$rewrite\" }"
    else
        mount="{ \"mountpoint\": \"/\", \"origin\": \"file://$DOCROOT\", \"default\": \"1k.html\" }"
    fi
    printf '{ "global": { "count-threads": "%s", "proxy-passthrough": "%s" } }\n' "$THREADS" "$passthrough" >"$dir/etc/conf"
    cat >"$dir/etc/conf.d/site" <<EOF
{ "vhosts": [ { "name": "localhost", "port": "$LWSWS_PORT", "interface": "127.0.0.1", $tls_keys
    "mounts": [ $mount ] } ] }
EOF
    python3 -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' "$dir/etc/conf" "$dir/etc/conf.d/site" ||
        die "generated lwsws JSON is invalid ($name)"

    RUST_LOG="${RUST_LOG:-warn}" "$LWSWS" -c "$dir/etc" </dev/null >"$dir/lwsws.log" 2>&1 &
    local pid=$! i url="$scheme://127.0.0.1:$LWSWS_PORT/1k.html" got
    BENCH_PIDS+=("$pid")
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/lwsws.log" >&2; die "lwsws exited during startup ($name)"; }
        curl -sk -o /dev/null --max-time 1 "$url" && break
        sleep 0.2
    done
    local curl_ver=(--http1.1)
    [[ "$want_ver" == 2 ]] && curl_ver=(--http2)
    got="$(curl -sk "${curl_ver[@]}" -o "$dir/check" -w '%{http_code} %{size_download} %{http_version}' --max-time 5 "$url" || true)"
    [[ "$got" == "200 1024 $want_ver" ]] || { tail -n 20 "$dir/lwsws.log" >&2; die "$name: GET $url gave '$got', expected '200 1024 $want_ver'"; }
    cmp -s "$dir/check" "$DOCROOT/1k.html" || die "$name: GET $url returned the wrong bytes"

    local secs=$((WARMUP + DURATION + 1)) loadcmd load_pid
    if [[ "$load" == wrk ]]; then
        loadcmd=(wrk -t2 -c"$CONNECTIONS" -d"${secs}s" "$url")
    else
        local m="$STREAMS"
        ((proxy)) && m="$PROXY_STREAMS"
        loadcmd=(h2load -t2 -c"$CONNECTIONS" -m"$m" -D "$secs" "$url")
    fi
    log "$name: ${loadcmd[*]}; perf after ${WARMUP}s for ${DURATION}s"
    "${loadcmd[@]}" >"$dir/load.txt" 2>&1 &
    load_pid=$!
    sleep "$WARMUP"
    local cpu0 cpu1
    cpu0="$(cpu_ticks "$pid")"
    perf record -e cpu-clock -F "$FREQ" --call-graph "$CALLGRAPH" -p "$pid" -o "$dir/perf.data" \
        -- sleep "$DURATION" >"$dir/perf-record.log" 2>&1 || { cat "$dir/perf-record.log" >&2; die "perf record failed ($name)"; }
    cpu1="$(cpu_ticks "$pid")"
    wait "$load_pid" || { cat "$dir/load.txt" >&2; die "${loadcmd[0]} failed ($name)"; }
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/lwsws.log" >&2; die "lwsws died under load ($name)"; }
    stop_pid "$pid"

    # requests per second over the whole load run (warm-up included)
    local rps errs
    if [[ "$load" == wrk ]]; then
        rps="$(awk '/^Requests\/sec:/ { print $2 }' "$dir/load.txt")"
        errs="$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $NF } END { print e + 0 }' "$dir/load.txt")"
    else
        rps="$(awk '/^finished in/ { gsub(/,/, ""); print $4 }' "$dir/load.txt")"
        errs="$(awk '/^requests:/ { gsub(/,/, ""); print $10 + $12 }' "$dir/load.txt")"
        local bad
        bad="$(awk '/^status codes:/ { gsub(/,/, ""); print $7 + $9 }' "$dir/load.txt")"
        errs=$((errs + ${bad:-0}))
    fi
    [[ -n "$rps" ]] || { cat "$dir/load.txt" >&2; die "could not read req/s from ${loadcmd[0]} ($name)"; }
    ((errs == 0)) || log "WARNING: $name: $errs failed / non-2xx requests (see $dir/load.txt)"
    local cpu_us
    cpu_us="$(awk -v t="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v r="$rps" -v d="$DURATION" \
        'BEGIN { printf "%.1f", (r > 0) ? t / hz * 1e6 / (r * d) : 0 }')"

    perf script -i "$dir/perf.data" --no-inline 2>"$dir/perf-script.log" |
        inferno-collapse-perf --kernel >"$dir/folded.txt"
    [[ -s "$dir/folded.txt" ]] || die "no samples for $name (see $dir/perf-record.log)"

    local summary fields
    summary="$(summarize "$dir/folded.txt")"
    fields="$(sed -n 's/^FIELDS //p' <<<"$summary")"
    inferno-flamegraph --title "lwsws $name: $desc (commit $COMMIT)" \
        --subtitle "${loadcmd[0]} ${loadcmd[*]:1:3}: ${rps} req/s, ~${cpu_us} us lwsws CPU/request; perf -e cpu-clock -F $FREQ --call-graph $CALLGRAPH, ${DURATION}s, count-threads $THREADS" \
        --minwidth "$MINWIDTH" --colors rust --hash --countname ns \
        <"$dir/folded.txt" >"$OUT/$name.svg"
    log "$name: wrote $OUT/$name.svg ($(du -k "$OUT/$name.svg" | cut -f1) KiB)"
    echo "== $name: $desc"
    echo "  load: ${loadcmd[*]}  => $rps req/s, lwsws CPU ~$cpu_us us/request"
    grep -v '^FIELDS ' <<<"$summary"
    echo "RESULT flamegraph path=$name rps=$rps cpu_us_per_req=$cpu_us $fields"
    echo
}

log "binary $LWSWS, commit label $COMMIT, paths: ${SELECTED[*]}"
for p in "${SELECTED[@]}"; do
    profile_path "$p"
done
