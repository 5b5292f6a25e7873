#!/usr/bin/env python3
"""Memory per idle keep-alive connection (python3 stdlib only).

Opens N TCP connections to 127.0.0.1:PORT, sends one
``GET /1k.html HTTP/1.1`` on each, reads the full response, and keeps every
connection open and idle.  Reads the server's VmRSS (summed over PID and all
of its descendants, e.g. nginx master + workers) after one warm-up request and
again once all connections are idle, and prints

  RESULT server=NAME proto=P conns=N rss_before_kib=A rss_after_kib=B per_conn_bytes=C alive=M failed=F

--proto: plain (default, HTTP/1.1), tls (HTTP/1.1 over TLS, ALPN http/1.1) or h2
(TLS with ALPN h2: the client preface, an empty SETTINGS, a SETTINGS ack for the
server's, and one HEADERS frame for GET /1k.html hand-encoded with HPACK; the
response is read up to the frame with END_STREAM on stream 1). The certificate is
not verified (the servers use a self-signed one).

per_conn_bytes = (B - A) * 1024 / M, where M is the number of connections the
server still held open at the end.  Exit status is 1 if any connection failed
or was closed by the server.

Only 127.0.0.1 is ever contacted.  The whole run is bounded by --timeout.
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import ssl
import struct
import sys
import time

HOST = "127.0.0.1"
REQUEST = b"GET /1k.html HTTP/1.1\r\nHost: localhost\r\n\r\n"

# HTTP/2 (RFC 9113) frame types and flags used here
H2_DATA, H2_HEADERS, H2_RST_STREAM, H2_SETTINGS, H2_PING, H2_GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
H2_END_STREAM, H2_ACK, H2_END_HEADERS = 0x1, 0x1, 0x4
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(index, value):
    """Literal header field without indexing, name from the static table (RFC 7541 6.2.2)."""
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v


# :method GET (static index 2) and :scheme https (7) indexed; :path (4) and :authority (1)
# literal without indexing
H2_GET = bytes([0x82, 0x87]) + hpack_literal(4, "/1k.html") + hpack_literal(1, "localhost")
H2_REQUEST = (
    H2_PREFACE
    + h2_frame(H2_SETTINGS, 0, 0)
    + h2_frame(H2_HEADERS, H2_END_STREAM | H2_END_HEADERS, 1, H2_GET)
)


def tls_context(proto):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench certificate is self-signed
    ctx.set_alpn_protocols(["h2"] if proto == "h2" else ["http/1.1"])
    return ctx


def log(msg):
    print(f"[idle_conns] {msg}", file=sys.stderr, flush=True)


def descendants(root):
    """root and every process below it, from /proc/*/stat ppid links."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) follows the ")" that closes the comm field
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kib(root):
    """Sum of VmRSS (KiB) over root and its descendants."""
    total, pids = 0, descendants(root)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass  # exited meanwhile
    return total, pids


class Conn:
    __slots__ = ("sock", "state", "buf", "need", "chunked", "out", "h2_body")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connect"
        self.buf = b""
        self.need = None  # total bytes (header + body) once known
        self.chunked = False
        self.out = b""  # h2: frames to send (the SETTINGS ack)
        self.h2_body = 0


def h2_response_complete(c):
    """h2: consume whole frames from c.buf; True once stream 1 ended. Raises on a bad one."""
    while len(c.buf) >= 9:
        length = int.from_bytes(c.buf[:3], "big")
        if len(c.buf) < 9 + length:
            return False
        ftype, flags = c.buf[3], c.buf[4]
        stream = int.from_bytes(c.buf[5:9], "big") & 0x7FFFFFFF
        payload = c.buf[9 : 9 + length]
        c.buf = c.buf[9 + length :]
        if ftype == H2_SETTINGS and not flags & H2_ACK:
            c.out += h2_frame(H2_SETTINGS, H2_ACK, 0)
        elif ftype == H2_PING and not flags & H2_ACK:
            c.out += h2_frame(H2_PING, H2_ACK, 0, payload)
        elif ftype in (H2_GOAWAY, H2_RST_STREAM):
            raise ValueError(f"server sent {'GOAWAY' if ftype == H2_GOAWAY else 'RST_STREAM'}")
        elif stream == 1 and ftype == H2_HEADERS:
            # the first response HEADERS: :status 200 is static index 8, sent as 0x88
            if c.need is None:
                block = payload
                if flags & 0x8:  # PADDED
                    block = block[1 : len(block) - block[0]]
                if flags & 0x20:  # PRIORITY
                    block = block[5:]
                if not block or block[0] != 0x88:
                    raise ValueError(f"response HEADERS does not start with :status 200 (0x88): {block[:8].hex()}")
                c.need = 0
            if flags & H2_END_STREAM:
                return True
        elif stream == 1 and ftype == H2_DATA:
            c.h2_body += length
            if flags & H2_END_STREAM:
                if c.h2_body != 1024:
                    raise ValueError(f"h2 response body is {c.h2_body} bytes, expected 1024")
                return True
    return False


def response_complete(c, proto="plain"):
    """True once c.buf holds one full response; raises on a bad one."""
    if proto == "h2":
        return h2_response_complete(c)
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.buf[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise ValueError(f"bad status line {head[0]!r}")
        length = None
        for h in head[1:]:
            k, _, v = h.partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                c.chunked = True
            elif k == "connection" and "close" in v:
                raise ValueError("server answered Connection: close")
        if c.chunked:
            c.need = -(end + 4)  # body starts here; terminated by 0-chunk
        elif length is not None:
            c.need = end + 4 + length
        else:
            raise ValueError("response has neither Content-Length nor chunked")
    if c.chunked:
        return c.buf.endswith(b"0\r\n\r\n") and len(c.buf) >= -c.need + 5
    return len(c.buf) >= c.need


def warm_up(port, timeout, proto, ctx):
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            check_alpn(s, proto)
        s.sendall(H2_REQUEST if proto == "h2" else REQUEST)
        c = Conn(s)
        while not response_complete(c, proto):
            if c.out:
                s.sendall(c.out)
                c.out = b""
            data = s.recv(65536)
            if not data:
                raise ValueError("connection closed during warm-up")
            c.buf += data
    finally:
        s.close()


def check_alpn(s, proto):
    got = s.selected_alpn_protocol()
    if proto == "h2" and got != "h2":
        raise ValueError(f"server did not select ALPN h2 (got {got!r})")
    if proto == "tls" and got not in (None, "http/1.1"):
        raise ValueError(f"server selected ALPN {got!r}, expected http/1.1")


def open_idle(port, n, inflight, deadline, proto="plain", ctx=None):
    """Returns (list of idle sockets, number of failures)."""
    sel = selectors.DefaultSelector()
    done, failed, started, active = [], 0, 0, 0
    first_errors = []

    def fail(c, why):
        nonlocal failed, active
        failed += 1
        active -= 1
        if len(first_errors) < 5:
            first_errors.append(why)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    while len(done) + failed < n:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out: {len(done)} idle, {failed} failed, {active} in flight of {n}"
            )
        while started < n and active < inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = s.connect_ex((HOST, port))
            started += 1
            active += 1
            c = Conn(s)
            if err not in (0, errno.EINPROGRESS):
                fail(c, f"connect: {os.strerror(err)}")
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                if c.state == "connect":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(c, f"connect: {os.strerror(err)}")
                        continue
                    if ctx is None:
                        c.sock.send(REQUEST)  # 43 bytes: fits any fresh send buffer
                        c.state = "read"
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    sel.unregister(c.sock)
                    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost", do_handshake_on_connect=False)
                    c.state = "handshake"
                    sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                if c.state == "handshake":
                    try:
                        c.sock.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(c.sock, selectors.EVENT_WRITE, c)
                        continue
                    check_alpn(c.sock, proto)
                    # small enough for a fresh send buffer: one write
                    c.sock.send(H2_REQUEST if proto == "h2" else REQUEST)
                    c.state = "read"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                while True:  # TLS: drain what the TLS layer has decrypted already
                    try:
                        data = c.sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        data = None
                    if data is None:
                        break
                    if not data:
                        raise ValueError("server closed before full response")
                    c.buf += data
                    if ctx is None or not c.sock.pending():
                        break
                if c.out:
                    c.sock.sendall(c.out)  # the SETTINGS (or PING) ack: a few bytes
                    c.out = b""
                if response_complete(c, proto):
                    if c.out:
                        c.sock.sendall(c.out)
                        c.out = b""
                    sel.unregister(c.sock)
                    c.buf = b""
                    done.append(c.sock)
                    active -= 1
            except (OSError, ValueError) as e:
                fail(c, str(e))
    sel.close()
    for why in first_errors:
        log(f"failure: {why}")
    return done, failed


def still_open(socks):
    """Count sockets the server has not closed (no EOF/RST pending). Consumes what is
    pending: call it once, just before closing them all."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(timeout=0):
        # read on a plain duplicate of the fd (the sockets are closed right after this):
        # pending TLS records (a session ticket, an h2 frame, a close_notify) are data;
        # only an end of file or an error behind them is a close
        raw = socket.socket(fileno=os.dup(key.fileobj.fileno()))
        try:
            while raw.recv(65536, socket.MSG_DONTWAIT):
                pass
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        finally:
            raw.close()
    sel.close()
    return len(socks) - closed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="label for the RESULT line")
    ap.add_argument("--pid", type=int, required=True, help="server PID (descendants included)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", choices=("plain", "tls", "h2"), default="plain")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=2.0, help="idle wait before 2nd RSS read")
    ap.add_argument("--inflight", type=int, default=256, help="max concurrent handshakes")
    ap.add_argument("--timeout", type=float, default=120.0, help="overall bound, seconds")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"fd limit too low: hard {hard} < {want} needed for {a.conns} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    if not os.path.exists(f"/proc/{a.pid}/status"):
        sys.exit(f"server PID {a.pid} not found")

    ctx = None if a.proto == "plain" else tls_context(a.proto)
    warm_up(a.port, 10, a.proto, ctx)
    time.sleep(0.5)
    before, pids = rss_kib(a.pid)
    log(f"{a.server}: PIDs {pids}, VmRSS before {before} KiB")

    t0 = time.monotonic()
    try:
        socks, failed = open_idle(a.port, a.conns, a.inflight, deadline, a.proto, ctx)
    except TimeoutError as e:
        sys.exit(f"[idle_conns] ERROR: {e} (--timeout {a.timeout:g} s)")
    log(f"{len(socks)} connections idle after {time.monotonic() - t0:.2f} s ({failed} failed)")

    time.sleep(a.settle)
    after, pids = rss_kib(a.pid)
    alive = still_open(socks)
    if alive < len(socks):
        log(f"WARNING: server closed {len(socks) - alive} idle connections")
    log(f"{a.server}: PIDs {pids}, VmRSS after {after} KiB")

    per_conn = (after - before) * 1024 / alive if alive else 0.0
    print(
        f"RESULT server={a.server} proto={a.proto} conns={a.conns} rss_before_kib={before} "
        f"rss_after_kib={after} per_conn_bytes={per_conn:.0f} alive={alive} failed={failed}",
        flush=True,
    )
    for s in socks:
        s.close()
    return 0 if alive == a.conns else 1


if __name__ == "__main__":
    sys.exit(main())
