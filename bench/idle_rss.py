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


def main():
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

    raise_nofile(a.connections + 256)
    t0 = time.monotonic()
    base_fds = fd_count(a.pid)
    base_procs = len(descendants(a.pid))
    time.sleep(min(a.settle, 0.5))
    before = memory_kb(a.pid, a.tree)

    socks, failed = open_connections(a.host, a.port, a.connections, a.batch, a.timeout)
    n = len(socks)
    if a.tree:
        wait_stable(lambda: len(descendants(a.pid)) - base_procs, n, 30.0, quiet=1.0)
    else:
        wait_stable(lambda: fd_count(a.pid) - base_fds, n, 30.0)
    accepted = (len(descendants(a.pid)) - base_procs) if a.tree else (fd_count(a.pid) - base_fds)
    time.sleep(a.settle)
    idle = memory_kb(a.pid, a.tree)

    after_echo, echo_failures = None, None
    if not a.no_echo and n:
        echo_failures = echo_once(socks, 30.0)
        time.sleep(a.settle)
        after_echo = memory_kb(a.pid, a.tree)

    for s in socks:
        s.close()
    time.sleep(a.settle)
    after_close = memory_kb(a.pid, a.tree)

    res = {
        "pid": a.pid,
        "port": a.port,
        "metric": "Pss(tree)" if a.tree else ("Rss" if rollup_kb(a.pid, "Rss") is not None else "VmRSS"),
        "vmrss_kb_after_close": vm_rss_kib(a.pid),
        "requested": a.connections,
        "connections": n,
        "connect_failures": failed,
        "accepted_delta": accepted,
        "kb_before": before,
        "kb_idle": idle,
        "kb_after_echo": after_echo,
        "kb_after_close": after_close,
        "bytes_per_conn_idle": round((idle - before) * 1024 / n, 1) if n else None,
        "bytes_per_conn_after_echo": round((after_echo - before) * 1024 / n, 1)
        if (n and after_echo is not None)
        else None,
        "echo_failures": echo_failures,
        "seconds": round(time.monotonic() - t0, 2),
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['metric']} before {before} kB, {n} idle connections -> {idle} kB "
            f"({res['bytes_per_conn_idle']} B/conn); after one echo each {after_echo} kB "
            f"({res['bytes_per_conn_after_echo']} B/conn, {echo_failures} failures); after close {after_close} kB"
        )
    return 0 if n == a.connections and not echo_failures else 1


if __name__ == "__main__":
    sys.exit(main())
