#!/usr/bin/env python3
"""Memory per idle keep-alive connection (python3 stdlib only).

Opens N TCP connections to 127.0.0.1:PORT, sends one
``GET /1k.html HTTP/1.1`` on each, reads the full response, and keeps every
connection open and idle.  Reads the server's VmRSS (summed over PID and all
of its descendants, e.g. nginx master + workers) after one warm-up request and
again once all connections are idle, and prints

  RESULT server=NAME conns=N rss_before_kib=A rss_after_kib=B per_conn_bytes=C alive=M failed=F

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
import sys
import time

HOST = "127.0.0.1"
REQUEST = b"GET /1k.html HTTP/1.1\r\nHost: localhost\r\n\r\n"


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
    __slots__ = ("sock", "state", "buf", "need", "chunked")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connect"
        self.buf = b""
        self.need = None  # total bytes (header + body) once known
        self.chunked = False


def response_complete(c):
    """True once c.buf holds one full HTTP/1.1 response; raises on a bad one."""
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


def warm_up(port, timeout):
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(REQUEST)
        c = Conn(s)
        while not response_complete(c):
            data = s.recv(65536)
            if not data:
                raise ValueError("connection closed during warm-up")
            c.buf += data
    finally:
        s.close()


def open_idle(port, n, inflight, deadline):
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
                    c.sock.send(REQUEST)  # 43 bytes: fits any fresh send buffer
                    c.state = "read"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                else:
                    data = c.sock.recv(65536)
                    if not data:
                        fail(c, "server closed before full response")
                        continue
                    c.buf += data
                    if response_complete(c):
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
    """Count sockets the server has not closed (no EOF/RST pending)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(timeout=0):
        try:
            data = key.fileobj.recv(1, socket.MSG_PEEK)
            if not data:
                closed += 1
        except OSError:
            closed += 1
    sel.close()
    return len(socks) - closed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="label for the RESULT line")
    ap.add_argument("--pid", type=int, required=True, help="server PID (descendants included)")
    ap.add_argument("--port", type=int, required=True)
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

    warm_up(a.port, 10)
    time.sleep(0.5)
    before, pids = rss_kib(a.pid)
    log(f"{a.server}: PIDs {pids}, VmRSS before {before} KiB")

    t0 = time.monotonic()
    try:
        socks, failed = open_idle(a.port, a.conns, a.inflight, deadline)
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
        f"RESULT server={a.server} conns={a.conns} rss_before_kib={before} "
        f"rss_after_kib={after} per_conn_bytes={per_conn:.0f} alive={alive} failed={failed}",
        flush=True,
    )
    for s in socks:
        s.close()
    return 0 if alive == a.conns else 1


if __name__ == "__main__":
    sys.exit(main())
