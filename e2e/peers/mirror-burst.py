#!/usr/bin/env python3
"""Deterministic repro for the lws-mirror-protocol "too slow" close (stdlib only).

One mirror member (its own ?mirror= instance, so it is alone) sends COUNT small messages
back to back ("c #RRGGBB x y r;", as the lws test client does) while a second thread reads
everything the server sends. The member reads as fast as it can, so a server that mirrors
like lws (RX flow control when the ring fills) returns all COUNT messages and never closes.

    python3 e2e/peers/mirror-burst.py PORT [COUNT]      (plain ws on 127.0.0.1; COUNT 2000)

Counts payload bytes, since lws may mirror one message as several frames. Prints what came
back and how the connection ended; exit 0 if every byte sent came back and the server sent no
close frame, 1 otherwise. Not run by lws-test-client.sh. Seen here: lwsws closes with 1008
"too slow" after a few dozen echoes; libwebsockets-test-server 4.1.6 returns all of 20000.
"""
import base64
import os
import socket
import struct
import sys
import threading


def main():
    port = int(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /?mirror=burst%d HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: lws-mirror-protocol\r\n\r\n" % (os.getpid(), key)
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            print("handshake: connection closed")
            return 1
        buf += chunk
    status = buf.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status:
        print("handshake refused: %s" % status)
        return 1
    rest = buf.split(b"\r\n\r\n", 1)[1]
    messages = [
        b"c #%06X %u %u %u;" % (i & 0xFFFFFF, i % 512, i % 256, i % 32 + 1) for i in range(count)
    ]
    total = sum(len(m) for m in messages)
    # lws may mirror one message as several frames (each chunk it read), so count bytes
    state = {"bytes": 0, "frames": 0, "close": None, "end": None}

    def reader():
        data = rest
        while state["bytes"] < total:
            while len(data) >= 2:
                n, j = data[1] & 127, 2
                if n == 126:
                    if len(data) < 4:
                        break
                    n, j = struct.unpack("!H", data[2:4])[0], 4
                elif n == 127:
                    if len(data) < 10:
                        break
                    n, j = struct.unpack("!Q", data[2:10])[0], 10
                if len(data) < j + n:
                    break
                op, payload, data = data[0] & 15, data[j : j + n], data[j + n :]
                if op == 8:
                    code = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
                    state["close"] = (code, payload[2:].decode(errors="replace"))
                    return
                if op in (0, 1, 2):
                    state["bytes"] += n
                    state["frames"] += 1
            try:
                chunk = sock.recv(65536)
            except OSError as e:
                state["end"] = "recv error: %s" % e
                return
            if not chunk:
                state["end"] = "EOF"
                return
            data += chunk

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sent = 0
    try:
        for payload in messages:
            mask = os.urandom(4)
            masked = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
            sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            sent += 1
    except OSError as e:
        state["end"] = state["end"] or "send error after %d messages: %s" % (sent, e)
    thread.join(10)
    print(
        "sent %d of %d messages (%d bytes); %d of %d bytes came back in %d frames; "
        "server close frame: %s; %s"
        % (sent, count, total, state["bytes"], total, state["frames"], state["close"],
           state["end"] or "connection still open")
    )
    ok = sent == count and state["bytes"] == total and state["close"] is None
    print("mirror-burst: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
