# shellcheck shell=bash
# Shared helpers for the bench/ scripts (static.sh, proxy.sh, endpoints.sh, idle-conns.sh, ...).
# Sourced, not executed. Callers must have `set -euo pipefail` and must have
# cd'ed to the repo root before sourcing.
#
# Every server is started on 127.0.0.1 only, and the EXIT trap kills only the
# PIDs recorded in BENCH_PIDS (never anything by name).

BENCH_PIDS=()
BENCH_TMP=""

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

bench_cleanup() {
    local pid i
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        # give each server up to ~5 s to exit, then SIGKILL that PID only
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "PID $pid did not exit on SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then
            log "keeping temp dir $BENCH_TMP (KEEP_TMP=1)"
        else
            rm -rf -- "$BENCH_TMP"
        fi
    fi
}

# bench_init: create the temp dir and install the cleanup traps.
bench_init() {
    BENCH_TMP="$(mktemp -d -t lwsws-bench.XXXXXX)"
    # nginx workers may run as another user; let them traverse the tree
    chmod 755 "$BENCH_TMP"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ensure_tools CMD... : apt-get install the Debian packages for any missing
# command (command name == package name for nginx, wrk, curl, python3).
ensure_tools() {
    local missing=() c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing packages: ${missing[*]}"
    if [[ "$(id -u)" != 0 ]]; then
        die "need root to apt-get install ${missing[*]} (or install them yourself)"
    fi
    apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' still not found after apt-get install"
    done
}

# make_docroot DIR: 1k.html (1024 bytes) and 1m.bin (1 MiB of random bytes).
make_docroot() {
    local dir="$1"
    mkdir -p "$dir"
    head -c 1024 /dev/zero | tr '\0' 'a' >"$dir/1k.html"
    head -c 1048576 /dev/urandom >"$dir/1m.bin"
    chmod 755 "$dir"
    chmod 644 "$dir/1k.html" "$dir/1m.bin"
}

# port_answers PORT [ADDR]: true if something answers HTTP or HTTPS (any certificate) on
# ADDR:PORT (ADDR: 127.0.0.1).
port_answers() {
    curl -s -o /dev/null --max-time 1 "http://${2:-127.0.0.1}:$1/" 2>/dev/null ||
        curl -sk -o /dev/null --max-time 1 "https://${2:-127.0.0.1}:$1/" 2>/dev/null
}

# make_cert DIR: a self-signed ECDSA P-256 certificate for CN/SAN localhost + IP 127.0.0.1,
# valid 30 days: DIR/cert.pem, DIR/key.pem and DIR/combined.pem (cert + key, for haproxy).
# Every server of a script uses this one pair, so the handshakes cost the same.
make_cert() {
    local dir="$1"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 30 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$dir/openssl.log" 2>&1 ||
        { cat "$dir/openssl.log" >&2; die "openssl could not make a self-signed certificate"; }
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/combined.pem"
    chmod 755 "$dir"
    chmod 644 "$dir/cert.pem" "$dir/key.pem" "$dir/combined.pem"
}

# nginx_tls_lines CERT KEY: server-block lines for TLS like lwsws's (rustls) defaults:
# TLS 1.2 and 1.3, an in-memory session cache (rustls keeps 256 sessions) and no
# stateless session tickets (rustls issues none by default). The caller adds "ssl"
# (and "http2") to the listen line.
nginx_tls_lines() {
    cat <<EOF
        ssl_certificate $1;
        ssl_certificate_key $2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;
EOF
}

# wait_port NAME PORT PID LOGFILE [ADDR]: bounded wait (~15 s) for the port to
# answer on ADDR (127.0.0.1); aborts early if PID died.
wait_port() {
    local name="$1" port="$2" pid="$3" logf="$4" addr="${5:-127.0.0.1}" i
    for ((i = 0; i < 75; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (PID $pid) exited during startup; last lines of $logf:"
            tail -n 30 "$logf" >&2 2>/dev/null || true
            die "$name failed to start"
        fi
        if port_answers "$port" "$addr"; then
            log "$name is up on $addr:$port (PID $pid)"
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$logf" >&2 2>/dev/null || true
    die "$name did not answer on $addr:$port within 15 s"
}

# nginx_user_line: as root, nginx's workers would otherwise switch to "nobody".
nginx_user_line() {
    if [[ "$(id -u)" == 0 ]]; then echo "user root;"; else echo "# not root: workers run as the invoking user"; fi
}

# run_nginx NAME DIR CONF PORT [ADDR]: checks CONF, starts nginx in the foreground with it and
# waits for ADDR:PORT (127.0.0.1). Records the PID in the caller's PID[NAME] and the error log
# in LOGF[NAME] (associative arrays the script declares) and in BENCH_PIDS for the cleanup.
run_nginx() {
    local name="$1" dir="$2" conf="$3" port="$4" addr="${5:-127.0.0.1}" errlog="$2/error.log"
    if ! nginx -t -q -c "$conf" -e "$errlog" 2>"$dir/nginx-t.log"; then
        cat "$dir/nginx-t.log" >&2
        die "nginx rejected the generated config $conf ($name)"
    fi
    nginx -c "$conf" -e "$errlog" </dev/null >"$dir/stdout.log" 2>&1 &
    PID["$name"]=$!
    # shellcheck disable=SC2034 # read by the scripts that print the servers' logs
    LOGF["$name"]="$errlog"
    BENCH_PIDS+=("${PID[$name]}")
    wait_port "$name" "$port" "${PID[$name]}" "$errlog" "$addr"
}

# write_nginx_proxy_conf CONF DIR PORT WORKERS "ADDR:PORT ..." KEEPALIVE [LISTEN_FLAGS [SERVER_LINES]]
# nginx as the reverse proxy the benchmarks compare with: WORKERS workers, no access log,
# keep-alive to clients, an `upstream backend` of the given servers (round robin) keeping
# KEEPALIVE idle connections, `proxy_pass` over HTTP/1.1 with `Connection` cleared.
# LISTEN_FLAGS: more listen parameters ("ssl http2"); SERVER_LINES: more server-block lines.
write_nginx_proxy_conf() {
    local conf="$1" dir="$2" port="$3" workers="$4" keepalive="$6" flags="${7:-}" extra="${8:-}"
    local servers="" s
    for s in $5; do servers+="        server $s;"$'\n'; done
    mkdir -p "$dir/tmp"
    cat >"$conf" <<EOF
# generated by bench/ -- nginx reverse proxy run outside the system service
daemon off;
$(nginx_user_line)
worker_processes $workers;
worker_rlimit_nofile 8192;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;

    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    upstream backend {
$servers        keepalive $keepalive;
    }

    server {
        listen 127.0.0.1:$port${flags:+ $flags} backlog=4096;
        server_name localhost;
$extra
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# start_haproxy_proxy DIR PORT BACKEND_PORT THREADS [BIND_ARGS]: haproxy as the reverse proxy
# the benchmarks compare with, in the foreground (-db): THREADS threads, keep-alive both ways,
# `http-reuse always` to 127.0.0.1:BACKEND_PORT, no "log" lines (no logging). BIND_ARGS go on
# the bind line (TLS: "ssl crt PEM alpn h2,http/1.1 ..."). Records PID[haproxy] and
# LOGF[haproxy] (the script's arrays) and BENCH_PIDS, and waits for 127.0.0.1:PORT.
start_haproxy_proxy() {
    local dir="$1" port="$2" backend_port="$3" threads="$4" bind_args="${5:-}"
    local cfg="$dir/haproxy.cfg" logf="$dir/haproxy.log"
    mkdir -p "$dir"
    cat >"$cfg" <<EOF
# generated by bench/ -- haproxy run in the foreground (-db)
global
    nbthread $threads
    maxconn 8192

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 65s

frontend fe
    bind 127.0.0.1:$port${bind_args:+ $bind_args}
    default_backend be

backend be
    server backend 127.0.0.1:$backend_port
EOF
    if ! haproxy -c -q -f "$cfg" >"$dir/haproxy-c.log" 2>&1; then
        cat "$dir/haproxy-c.log" >&2
        die "haproxy rejected the generated config $cfg"
    fi
    haproxy -f "$cfg" -db </dev/null >"$logf" 2>&1 &
    PID["haproxy"]=$!
    # shellcheck disable=SC2034 # read by the scripts that print the servers' logs
    LOGF["haproxy"]="$logf"
    BENCH_PIDS+=("${PID["haproxy"]}")
    wait_port haproxy "$port" "${PID["haproxy"]}" "$logf"
}

# write_nginx_conf FILE DIR DOCROOT PORT WORKERS KEEPALIVE_TIMEOUT WORKER_CONNS [ADDR [EXTRA [LISTEN_FLAGS]]]
# ADDR: the listen address (127.0.0.1); EXTRA: more lines for the server block;
# LISTEN_FLAGS: more listen parameters ("ssl", "ssl http2").
write_nginx_conf() {
    local conf="$1" dir="$2" docroot="$3" port="$4" workers="$5" ka="$6" wconns="$7"
    local addr="${8:-127.0.0.1}" extra="${9:-}" flags="${10:-}"
    mkdir -p "$dir/tmp"
    cat >"$conf" <<EOF
# generated by bench/ -- nginx run outside the system service
daemon off;
$(nginx_user_line)
worker_processes $workers;
worker_rlimit_nofile $((wconns + 1024));
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections $wconns;
}

http {
    types {
        text/html html;
        application/octet-stream bin;
    }
    default_type application/octet-stream;

    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout $ka;
    keepalive_requests 1000000;

    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    server {
        listen $addr:$port $flags backlog=4096;
        server_name localhost;
        root $docroot;
        index 1k.html;
$extra
    }
}
EOF
}

# start_nginx DIR DOCROOT PORT WORKERS KEEPALIVE_TIMEOUT WORKER_CONNS [EXTRA [LISTEN_FLAGS]]
# Sets NGINX_PID (the master; workers are its children). EXTRA, LISTEN_FLAGS: as for
# write_nginx_conf (e.g. "$(nginx_tls_lines CERT KEY)" and "ssl").
start_nginx() {
    local dir="$1" docroot="$2" port="$3" workers="$4" ka="$5" wconns="$6"
    local extra="${7:-}" flags="${8:-}"
    mkdir -p "$dir"
    local conf="$dir/nginx.conf" errlog="$dir/error.log"
    port_answers "$port" && die "127.0.0.1:$port is already in use (set NGINX_PORT)"
    write_nginx_conf "$conf" "$dir" "$docroot" "$port" "$workers" "$ka" "$wconns" 127.0.0.1 "$extra" "$flags"
    if ! nginx -t -q -c "$conf" -e "$errlog" 2>"$dir/nginx-t.log"; then
        cat "$dir/nginx-t.log" >&2
        die "nginx rejected the generated config $conf"
    fi
    nginx -c "$conf" -e "$errlog" </dev/null >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    wait_port nginx "$port" "$NGINX_PID" "$errlog"
}

# write_lwsws_conf CONFDIR DOCROOT PORT THREADS [KEEPALIVE_TIMEOUT [CERT KEY [ADMIN_ADDR]]]
# CONFDIR/conf + CONFDIR/conf.d/bench, in the libwebsockets lwsws format.
# No access-log key => access logging off. CERT and KEY make the vhost a TLS one
# ("host-ssl-cert", "host-ssl-key"; ALPN h2 and http/1.1, lwsws's default);
# ADMIN_ADDR (host:port) turns on the admin listener (/metrics).
write_lwsws_conf() {
    local confdir="$1" docroot="$2" port="$3" threads="$4" ka="${5:-}"
    local cert="${6:-}" key="${7:-}" admin="${8:-}"
    local ka_line="" tls_lines="" admin_line=""
    [[ -n "$ka" ]] && ka_line="\"keepalive_timeout\": \"$ka\","
    [[ -n "$cert" ]] && tls_lines="\"host-ssl-cert\": \"$cert\", \"host-ssl-key\": \"$key\","
    [[ -n "$admin" ]] && admin_line="\"admin-addr\": \"$admin\","
    mkdir -p "$confdir/conf.d"
    cat >"$confdir/conf" <<EOF
{
  "global": {
    $admin_line
    "count-threads": "$threads"
  }
}
EOF
    cat >"$confdir/conf.d/bench" <<EOF
{
  "vhosts": [
    {
      "name": "localhost",
      "port": "$port",
      "interface": "127.0.0.1",
      $ka_line
      $tls_lines
      "mounts": [
        {
          "mountpoint": "/",
          "origin": "file://$docroot",
          "default": "1k.html",
          "extra-mimetypes": { ".bin": "application/octet-stream" }
        }
      ]
    }
  ]
}
EOF
    # catch template mistakes early (e.g. a dangling comma)
    python3 -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' \
        "$confdir/conf" "$confdir/conf.d/bench" || die "generated lwsws JSON is invalid"
}

# ensure_lwsws_bin: sets LWSWS (absolute path); builds the default binary
# with `cargo build --release` if it is missing.
ensure_lwsws_bin() {
    local default="target/release/lwsws"
    local bin="${LWSWS_BIN:-$default}"
    if [[ ! -x "$bin" ]]; then
        if [[ "$bin" == "$default" ]]; then
            command -v cargo >/dev/null 2>&1 || die "$bin missing and cargo not found"
            log "$bin missing; running cargo build --release"
            cargo build --release
        fi
        [[ -x "$bin" ]] || die "lwsws binary not found or not executable: $bin (set LWSWS_BIN)"
    fi
    LWSWS="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

# start_lwsws DIR DOCROOT PORT THREADS [KEEPALIVE_TIMEOUT [CERT KEY [ADMIN_ADDR]]]
# Sets LWSWS_PID. Needs LWSWS (see ensure_lwsws_bin).
start_lwsws() {
    local dir="$1" docroot="$2" port="$3" threads="$4" ka="${5:-}"
    local cert="${6:-}" key="${7:-}" admin="${8:-}"
    local confdir="$dir/etc"
    port_answers "$port" && die "127.0.0.1:$port is already in use (set LWSWS_PORT)"
    write_lwsws_conf "$confdir" "$docroot" "$port" "$threads" "$ka" "$cert" "$key" "$admin"
    # RUST_LOG is left to the caller; default to warnings only so logging
    # does not skew the numbers.
    RUST_LOG="${RUST_LOG:-warn}" "$LWSWS" -c "$confdir" </dev/null >"$dir/lwsws.log" 2>&1 &
    LWSWS_PID=$!
    BENCH_PIDS+=("$LWSWS_PID")
    wait_port lwsws "$port" "$LWSWS_PID" "$dir/lwsws.log"
}

# raise_nofile WANT: raise the fd soft limit (inherited by the servers we
# start) to at least WANT; fall back to the hard limit if that is all we may
# have, and fail only if even that is below MIN (2nd arg).
raise_nofile() {
    local want="$1" min="$2" hard
    if ulimit -n "$want" 2>/dev/null; then
        log "ulimit -n = $(ulimit -n)"
        return 0
    fi
    hard="$(ulimit -Hn)"
    if [[ "$hard" != unlimited ]] && ((hard < min)); then
        die "cannot raise ulimit -n to $want (hard limit $hard < needed $min); lower CONNS"
    fi
    ulimit -n "$hard"
    log "WARNING: could not raise ulimit -n to $want (no CAP_SYS_RESOURCE?); using hard limit $hard, enough for $min"
}

# parse_wrk FILE -> "RPS P99_MS ERRORS TOTAL" ; ERRORS counts socket errors + non-2xx/3xx,
# TOTAL the requests wrk completed
parse_wrk() {
    awk '
        function to_ms(v,   n, u) {
            n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "ms") return n
            if (u == "s")  return n * 1000
            if (u == "m")  return n * 60000
            if (u == "h")  return n * 3600000
            return -1
        }
        /^Requests\/sec:/             { rps = $2 }
        / requests in /               { total = $1 }
        /^[ \t]+99(\.0+)?%[ \t]/      { p99 = to_ms($2) }
        /^[ \t]+Socket errors:/       { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        /^[ \t]+Non-2xx or 3xx/       { err += $NF }
        END {
            if (rps == "" || p99 == "" || p99 < 0 || total == "") exit 1
            printf "%s %.3f %d %s\n", rps, p99, err, total
        }' "$1"
}

# cpu_ticks PID -> user+system clock ticks of PID and its child processes (nginx's workers)
cpu_ticks() {
    local total=0 p u s
    for p in "$1" $(pgrep -P "$1" || true); do
        read -r u s < <(awk '{ print $14, $15 }' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        total=$((total + u + s))
    done
    echo "$total"
}

# cpu_us_per_request TICKS REQUESTS -> microseconds of CPU per request
cpu_us_per_request() {
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", (n > 0) ? t / hz * 1e6 / n : 0 }'
}

# parse_h2load FILE -> "RPS MEAN_MS MAX_MS FAILED ERRORED SUCCEEDED NON2XX" from h2load's
# "finished in ..., N req/s", "requests: ... N succeeded, N failed, N errored",
# "status codes: N 2xx, N 3xx, N 4xx, N 5xx" and "time for request: min max mean sd"
# lines (h2load reports no percentiles).
parse_h2load() {
    awk '
        function to_ms(v,   n, u) {
            n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "ms") return n
            if (u == "s")  return n * 1000
            return -1
        }
        /^finished in / { rps = $4 }
        /^requests: / {
            for (i = 2; i <= NF; i++) {
                v = $i; gsub(/,/, "", $(i + 1))
                if ($(i + 1) == "succeeded") ok = v
                if ($(i + 1) == "failed") failed = v
                if ($(i + 1) == "errored") errored = v
            }
        }
        /^status codes: / { gsub(/,/, ""); non2xx = $5 + $7 + $9 }
        /^time for request:/ { mx = to_ms($5); mean = to_ms($6) }
        END {
            if (rps == "" || ok == "" || mean == "" || mean < 0 || mx < 0) exit 1
            printf "%s %.3f %.3f %d %d %d %d\n", rps, mean, mx, failed, errored, ok, non2xx
        }' "$1"
}
