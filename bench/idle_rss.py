#!/usr/bin/env python3
"""Idle-connection memory of an echo server: bytes of server RSS per idle connection.

    idle_rss.py --pid PID --port PORT [-n 10000] [--settle 1.0] [--tree] [--json]

1. reads the server's resident memory: Rss from /proc/PID/smaps_rollup (VmRSS of
   /proc/PID/status is the same figure but lags behind, being per-CPU counters
   folded in lazily; it is the fallback) — with --tree: the sum of
   Pss over the process and all its descendants, for fork-per-connection
   servers such as socat and xinetd, whose per-connection cost lives in child
   processes);
2. opens N connections to 127.0.0.1:PORT (RLIMIT_NOFILE is raised as far as
   needed), in batches, each connect() completed before the next batch;
3. waits until the server has accepted them (its fd count, or with --tree its
   process count, stops growing), lets it settle, reads the memory again:
   "idle" = accepted, no byte exchanged;
4. unless --no-echo: sends one 16-byte message on every connection, reads and
   verifies the echo, settles, reads the memory again: "after one echo"
   (shows buffers a server keeps per connection once it has read);
5. closes everything, settles, reads the memory a last time.

Bytes per connection = (memory after - memory before) / N.  The kernel's own
socket memory is not in RSS; this is the server's user-space cost.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from race.procfs import descendants, fd_count, memory_kb, rollup_kb, vm_rss_kib


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def wait_stable(probe, target, timeout, quiet=0.5):
    """Wait until probe() >= target, or it has not changed for `quiet` seconds; bounded by timeout."""
    deadline = time.monotonic() + timeout
    last, last_change = probe(), time.monotonic()
    while time.monotonic() < deadline:
        v = probe()
        if v >= target:
            return v
        if v != last:
            last, last_change = v, time.monotonic()
        elif time.monotonic() - last_change > quiet and v > 0:
            return v
        time.sleep(0.05)
    return probe()


def open_connections(host, port, n, batch, timeout):
    socks, failed = [], 0
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    i = 0
    while i < n and time.monotonic() < deadline:
        pending = []
        for _ in range(min(batch, n - i)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, 115):  # EINPROGRESS
                s.close()
                failed += 1
                continue
            pending.append(s)
            sel.register(s, selectors.EVENT_WRITE)
        i += batch
        left = len(pending)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                sel.unregister(s)
                left -= 1
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    s.close()
                    failed += 1
                else:
                    socks.append(s)
        for s in pending:  # anything still not connected at the deadline
            if s.fileno() >= 0 and s not in socks:
                try:
                    sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
                failed += 1
    sel.close()
    return socks, failed


def echo_once(socks, timeout):
    """Send 16 bytes on each connection, read back and verify; returns the number of failures."""
    msg = b"idle-rss-check!\n"
    sel = selectors.DefaultSelector()
    got = {}
    bad = 0
    for s in socks:
        try:
            s.send(msg)
            got[s] = b""
            sel.register(s, selectors.EVENT_READ)
        except OSError:
            bad += 1
    deadline = time.monotonic() + timeout
    while got and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                d = s.recv(64)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                sel.unregister(s)
                del got[s]
                bad += 1
                continue
            got[s] += d
            if len(got[s]) >= len(msg):
                sel.unregister(s)
                if got.pop(s) != msg:
                    bad += 1
    bad += len(got)
    sel.close()
    return bad


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True, help="server process id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each reading")
    ap.add_argument("--batch", type=int, default=256, help="connections opened per batch")
    ap.add_argument("--timeout", type=float, default=60.0, help="bound on connecting (seconds)")
    ap.add_argument("--tree", action="store_true", help="sum Pss over the process tree (fork-per-connection servers)")
    ap.add_argument("--no-echo", action="store_true", help="skip the one-echo-per-connection reading")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("idle_rss.py only targets loopback")
    return a


def accepted_count(pid, tree, base):
    """What the server holds beyond `base`: descendants (tree) or open descriptors."""
    return (len(descendants(pid)) if tree else fd_count(pid)) - base


def measure(a):
    """Steps 1 to 5 of the module's description; the readings, in kB."""
    t0 = time.monotonic()
    base = len(descendants(a.pid)) if a.tree else fd_count(a.pid)
    time.sleep(min(a.settle, 0.5))
    r = {"kb_before": memory_kb(a.pid, a.tree)}

    socks, r["connect_failures"] = open_connections(a.host, a.port, a.connections, a.batch, a.timeout)
    n = r["connections"] = len(socks)
    wait_stable(lambda: accepted_count(a.pid, a.tree, base), n, 30.0, quiet=1.0 if a.tree else 0.5)
    r["accepted_delta"] = accepted_count(a.pid, a.tree, base)
    time.sleep(a.settle)
    r["kb_idle"] = memory_kb(a.pid, a.tree)

    r["kb_after_echo"], r["echo_failures"] = None, None
    if not a.no_echo and n:
        r["echo_failures"] = echo_once(socks, 30.0)
        time.sleep(a.settle)
        r["kb_after_echo"] = memory_kb(a.pid, a.tree)

    for s in socks:
        s.close()
    time.sleep(a.settle)
    r["kb_after_close"] = memory_kb(a.pid, a.tree)
    r["seconds"] = round(time.monotonic() - t0, 2)
    return r


def per_connection(kb, before, n):
    """Bytes per connection of a reading, or None without connections or reading."""
    return round((kb - before) * 1024 / n, 1) if n and kb is not None else None


def main():
    a = parse_args()
    raise_nofile(a.connections + 256)
    m = measure(a)
    n, before = m["connections"], m["kb_before"]
    res = {
        "pid": a.pid,
        "port": a.port,
        "metric": "Pss(tree)" if a.tree else ("Rss" if rollup_kb(a.pid, "Rss") is not None else "VmRSS"),
        "vmrss_kb_after_close": vm_rss_kib(a.pid),
        "requested": a.connections,
        **{k: m[k] for k in ("connections", "connect_failures", "accepted_delta")},
        **{k: m[k] for k in ("kb_before", "kb_idle", "kb_after_echo", "kb_after_close")},
        "bytes_per_conn_idle": per_connection(m["kb_idle"], before, n),
        "bytes_per_conn_after_echo": per_connection(m["kb_after_echo"], before, n),
        "echo_failures": m["echo_failures"],
        "seconds": m["seconds"],
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['metric']} before {before} kB, {n} idle connections -> {m['kb_idle']} kB "
            f"({res['bytes_per_conn_idle']} B/conn); after one echo each {m['kb_after_echo']} kB "
            f"({res['bytes_per_conn_after_echo']} B/conn, {m['echo_failures']} failures); "
            f"after close {m['kb_after_close']} kB"
        )
    return 0 if n == a.connections and not m["echo_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
