#!/usr/bin/env python3
"""WebSocket fan-out through lws-mirror-protocol: CLIENTS members of one mirror instance, one of
them sending MESSAGES messages; measures messages delivered per second (sent x members) and the
server's resident memory per connection. Stdlib only (a minimal RFC 6455 client), loopback only."""

import argparse
import asyncio
import base64
import os
import struct
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def handshake(host, port, path, protocol):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    return reader, writer


def frame(text):
    data = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    if len(data) < 126:
        return bytes([0x81, 0x80 | len(data)]) + mask + masked
    return bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(data)) + mask + masked


async def read_frames(reader, want, counter, done):
    while counter[0] < want:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await reader.readexactly(8))
        await reader.readexactly(n)
        if b0 & 0x0F == 0x1:
            counter[0] += 1
        elif b0 & 0x0F == 0x8:
            raise RuntimeError("server closed a member")
    done.set()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    before = rss_kib(a.pid)
    conns = []
    for i in range(a.clients):
        conns.append(await handshake("127.0.0.1", a.port, "/?mirror=fanout", "lws-mirror-protocol"))
    await asyncio.sleep(1.0)
    idle = rss_kib(a.pid)
    counters = [[0] for _ in conns]
    events = [asyncio.Event() for _ in conns]
    readers = [
        asyncio.create_task(read_frames(r, a.messages, c, e)) for (r, _), c, e in zip(conns, counters, events)
    ]
    sender = conns[0][1]
    t0 = time.monotonic()
    for i in range(a.messages):
        sender.write(frame(f"c #102030 {i} {i} 1;"))
        if i % 16 == 0:
            await sender.drain()
    await sender.drain()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), a.timeout)
    elapsed = time.monotonic() - t0
    busy = rss_kib(a.pid)
    delivered = sum(c[0] for c in counters)
    for t in readers:
        t.cancel()
    for _, w in conns:
        w.close()
    per_conn = (idle - before) * 1024 / a.clients
    print(
        f"RESULT ws-fanout clients={a.clients} messages={a.messages} delivered={delivered} "
        f"seconds={elapsed:.2f} delivered_per_s={delivered / elapsed:.0f} "
        f"rss_before_kib={before} rss_idle_kib={idle} rss_busy_kib={busy} idle_bytes_per_conn={per_conn:.0f}"
    )


asyncio.run(main())
