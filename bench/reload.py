#!/usr/bin/env python3
"""Reload latency and reload memory: starts lwsws on a config of N vhosts (one port, name-based),
then repeatedly edits the first vhost's mount and times edit -> first response with the new
content (the file watcher path). Then sends SIGHUP reloads and compares resident memory after 1
and after RELOADS reloads. Loopback only."""

import argparse
import http.client
import os
import signal
import subprocess
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def body(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Host": "v0.test"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return data


def write_config(d, port, vhosts, root):
    items = []
    for i in range(vhosts):
        origin = root if i == 0 else "one"
        items.append(
            f'{{ "name": "v{i}.test", "port": "{port}", "interface": "127.0.0.1", '
            f'"mounts": [ {{ "mountpoint": "/", "origin": "file://{d}/www/{origin}" }} ] }}'
        )
    tmp = os.path.join(d, "conf.d", ".site.tmp")
    with open(tmp, "w") as f:
        f.write('{ "vhosts": [\n' + ",\n".join(items) + "\n] }\n")
    os.rename(tmp, os.path.join(d, "conf.d", "site"))  # editors write aside and rename


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--vhosts", type=int, default=10)
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--reloads", type=int, default=1000)
    ap.add_argument("--port", type=int, default=18085)
    a = ap.parse_args()
    d = tempfile.mkdtemp()
    os.makedirs(f"{d}/conf.d")
    for name in ("one", "two"):
        os.makedirs(f"{d}/www/{name}")
        with open(f"{d}/www/{name}/index.html", "w") as f:
            f.write(name)
    with open(f"{d}/conf", "w") as f:
        f.write('{ "global": { "count-threads": "2" } }\n')
    write_config(d, a.port, a.vhosts, "one")
    t0 = time.monotonic()
    proc = subprocess.Popen([a.bin, "-c", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RUST_LOG": "warn"})
    try:
        while True:
            try:
                if body(a.port) == "one":
                    break
            except OSError:
                time.sleep(0.01)
        startup = time.monotonic() - t0
        latencies = []
        for i in range(a.edits):
            want = "two" if i % 2 == 0 else "one"
            t = time.monotonic()
            write_config(d, a.port, a.vhosts, want)
            while body(a.port) != want:
                time.sleep(0.002)
            latencies.append(time.monotonic() - t)
        latencies.sort()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        after_one = rss_kib(proc.pid)
        for i in range(a.reloads):
            write_config(d, a.port, a.vhosts, "two" if i % 2 == 0 else "one")
            os.kill(proc.pid, signal.SIGHUP)
            time.sleep(0.005)
        time.sleep(1.0)
        after_many = rss_kib(proc.pid)
        med = latencies[len(latencies) // 2]
        print(
            f"RESULT reload vhosts={a.vhosts} startup_s={startup:.2f} edit_to_new_content_median_ms={med * 1000:.0f} "
            f"min_ms={latencies[0] * 1000:.0f} max_ms={latencies[-1] * 1000:.0f} "
            f"rss_after_1_reload_kib={after_one} rss_after_{a.reloads}_reloads_kib={after_many}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


main()
