#!/usr/bin/env bash
# Instructions per request, by valgrind's callgrind: a count that does not depend on what else
# the machine is doing, so two builds can be compared where wall-clock benchmarks are too noisy.
#
#   bench/callgrind.sh BIN [BIN ...]     e.g. bench/callgrind.sh /tmp/lwsws-before target/release/lwsws
#
# For each binary and each path, lwsws runs under callgrind on 127.0.0.1 (count-threads 1) and one
# client opens one keep-alive connection, sends WARMUP requests, has the counters zeroed
# (callgrind_control -z), sends REQUESTS more on the same connection and has the counters dumped:
# instructions / REQUESTS is printed. The TLS handshake and the connection setup are therefore in
# the warm-up, not in the count. Paths (PATHS, comma or space separated; default all):
#   static             a 1 KiB static file, HTTP/1.1
#   tls-static         the same over TLS (HTTP/1.1, ALPN http/1.1; python's ssl)
#   h2-static          the same over HTTP/2 and TLS (ALPN h2; a small stdlib HTTP/2 client,
#                      one request at a time on one connection)
#   proxy-passthrough  a proxied 1 KiB file through the passthrough ("rewrite-links": "0")
#   proxy-hyper        the same through hyper ("proxy-passthrough": "0")
# The backend is a plain nginx (not measured); TLS uses a self-signed ECDSA P-256 certificate
# made with openssl. Knobs: REQUESTS (2000), WARMUP (200), PATHS.
#
#   RESULT path=static bin=... ir_per_request=...
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

REQUESTS="${REQUESTS:-2000}"
WARMUP="${WARMUP:-200}"
ALL_PATHS=(static tls-static h2-static proxy-passthrough proxy-hyper)
PATHS="${PATHS:-${ALL_PATHS[*]}}"
(($# >= 1)) || die "usage: bench/callgrind.sh BIN [BIN ...]"
for p in ${PATHS//,/ }; do
    [[ " ${ALL_PATHS[*]} " == *" $p "* ]] || die "unknown path '$p' in PATHS (known: ${ALL_PATHS[*]})"
done
ensure_tools nginx curl python3 valgrind openssl
bench_init

# a self-signed ECDSA P-256 certificate for the TLS paths
CERT="$BENCH_TMP/cert.pem"
KEY="$BENCH_TMP/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 2 -subj /CN=localhost >/dev/null 2>&1 ||
    die "openssl could not make the test certificate"

DOCROOT="$BENCH_TMP/www"
make_docroot "$DOCROOT"
BACKEND_PORT=18190
port_free() { # NAME PORT VAR: the first free port from PORT up
    local p="$2"
    while port_answers "$p" || ss -ltn "sport = :$p" | grep -q LISTEN; do p=$((p + 1)); done
    printf -v "$3" '%s' "$p"
}
port_free backend "$BACKEND_PORT" BACKEND_PORT
start_nginx "$BENCH_TMP/backend" "$DOCROOT" "$BACKEND_PORT" 1 65 1024

# client PID PORT PATH MODE: one connection (MODE h1: plain HTTP/1.1; tls: HTTP/1.1 over TLS;
# h2: HTTP/2 over TLS), WARMUP sequential GETs, callgrind_control -z PID, REQUESTS more GETs,
# callgrind_control -d PID. Fails on anything but 200 with the 1024 bytes.
client() {
    python3 - "$@" "$WARMUP" "$REQUESTS" <<'EOF'
import socket, ssl, struct, subprocess, sys
pid, port, path, mode, warmup, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode != "h1":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2" if mode == "h2" else "http/1.1"])
    s = ctx.wrap_socket(s, server_hostname="localhost")
    want = "h2" if mode == "h2" else "http/1.1"
    if s.selected_alpn_protocol() != want:
        sys.exit(f"ALPN: wanted {want}, got {s.selected_alpn_protocol()!r}")

buf = b""
def recv_more():
    global buf
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("connection closed by the server")
    buf += chunk

def h1_get():
    global buf
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    while b"\r\n\r\n" not in buf:
        recv_more()
    head, _, buf = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected answer: {head[:80]!r}")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(buf) < length:
        recv_more()
    if length != 1024:
        sys.exit(f"unexpected length {length}")
    buf = buf[length:]

# HTTP/2: frames are length(3) type(1) flags(1) stream(4); HPACK with static-table names only.
def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

def read_frame():
    global buf
    while len(buf) < 9:
        recv_more()
    length = int.from_bytes(buf[:3], "big")
    while len(buf) < 9 + length:
        recv_more()
    ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
    payload, buf = buf[9:9 + length], buf[9 + length:]
    return ftype, flags, stream, payload

def lit(index, value):  # literal header field without indexing, indexed name (4-bit prefix)
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v

stream_id = -1
def h2_get():
    global stream_id
    stream_id += 2
    block = b"\x82\x87" + lit(4, path) + lit(1, "localhost")  # :method GET, :scheme https
    s.sendall(frame(1, 0x5, stream_id, block))  # HEADERS, END_STREAM | END_HEADERS
    status, body, done = None, 0, False
    while not done:
        ftype, flags, sid, payload = read_frame()
        if ftype == 4 and not flags & 1:  # SETTINGS: acknowledge
            s.sendall(frame(4, 1, 0))
        elif ftype == 6 and not flags & 1:  # PING: answer
            s.sendall(frame(6, 1, 0, payload))
        elif ftype == 7:
            sys.exit(f"GOAWAY {payload[:16].hex()}")
        elif ftype == 3 and sid == stream_id:
            sys.exit(f"RST_STREAM {payload.hex()}")
        elif ftype == 1 and sid == stream_id:
            if status is None:
                if flags & 0x28 or not flags & 0x4:
                    sys.exit("response HEADERS with padding, priority or CONTINUATION: not handled")
                status = payload[:1]
                if status != b"\x88":  # indexed :status 200
                    sys.exit(f"unexpected response header block {payload[:16].hex()}")
            done = bool(flags & 1)
        elif ftype == 0 and sid == stream_id:
            if flags & 0x8:
                sys.exit("padded DATA: not handled")
            body += len(payload)
            done = bool(flags & 1)
    if body != 1024:
        sys.exit(f"unexpected body length {body}")

if mode == "h2":
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
              + frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65535)))  # connection window: no more updates
    get = h2_get
else:
    get = h1_get

for _ in range(warmup):
    get()
subprocess.run(["callgrind_control", "-z", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(n):
    get()
subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
EOF
}

# measure BIN NAME PATH PASSTHROUGH MODE: prints instructions per request. MODE: h1, tls or h2
# (tls and h2 make the vhost a TLS one; its ALPN offers h2 and http/1.1).
measure() {
    local bin="$1" name="$2" path="$3" passthrough="$4" mode="$5" dir port pid ir scheme=https tls_keys
    [[ "$mode" == h1 ]] && scheme=http
    tls_keys="\"host-ssl-cert\": \"$CERT\", \"host-ssl-key\": \"$KEY\","
    [[ "$mode" == h1 ]] && tls_keys=""
    dir="$(mktemp -d "$BENCH_TMP/run.XXXX")"
    port_free lwsws 18191 port
    mkdir -p "$dir/etc/conf.d"
    printf '{ "global": { "count-threads": "1", "proxy-passthrough": "%s" } }\n' "$passthrough" >"$dir/etc/conf"
    cat >"$dir/etc/conf.d/site" <<EOF
{ "vhosts": [ { "name": "localhost", "port": "$port", "interface": "127.0.0.1", $tls_keys
    "mounts": [
      { "mountpoint": "/static", "origin": "file://$DOCROOT" },
      { "mountpoint": "/proxy", "origin": "http://127.0.0.1:$BACKEND_PORT/", "rewrite-links": "0" } ] } ] }
EOF
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" -c "$dir/etc" \
        </dev/null >"$dir/lwsws.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    for ((i = 0; i < 300; i++)); do
        curl -sk -o /dev/null --max-time 2 "$scheme://127.0.0.1:$port$path" && break
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/lwsws.log" >&2; die "lwsws under callgrind exited"; }
        sleep 0.2
    done
    client "$pid" "$port" "$path" "$mode" || { tail -n 30 "$dir/lwsws.log" >&2; die "client failed on $name ($bin)"; }
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump taken after the measured requests is the highest-numbered one.
    ir="$(for f in "$dir"/cg.out.*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; done | sort -n | tail -1)"
    [[ -n "$ir" ]] || die "no callgrind totals for $bin"
    printf 'RESULT path=%s bin=%s ir_per_request=%d\n' "$name" "$bin" "$((ir / REQUESTS))"
}

for bin in "$@"; do
    [[ -x "$bin" ]] || die "not an executable: $bin"
    for p in ${PATHS//,/ }; do
        case "$p" in
            static) measure "$bin" static /static/1k.html 1 h1 ;;
            tls-static) measure "$bin" tls-static /static/1k.html 1 tls ;;
            h2-static) measure "$bin" h2-static /static/1k.html 1 h2 ;;
            proxy-passthrough) measure "$bin" proxy-passthrough /proxy/1k.html 1 h1 ;;
            proxy-hyper) measure "$bin" proxy-hyper /proxy/1k.html 0 h1 ;;
        esac
    done
done
