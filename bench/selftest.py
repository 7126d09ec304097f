#!/usr/bin/env python3
"""Self-test of the bench tooling: does bench/client/echoclient catch broken echo servers?

    python3 bench/selftest.py [--client PATH]

Starts small deliberately faulty servers on loopback (in this process, one
thread each) and checks that the client reports errors for each fault, then
checks that it reports none against the C epoll reference; the same for UDP
(--udp) with faulty UDP servers and the C recvmmsg/sendmmsg reference.  Exit 0
when every expectation holds.  Bounded: each client run lasts under 2 s.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading

BENCH = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(BENCH, "results", "bin")


def faulty_server(fault):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.settimeout(0.2)
    stop = threading.Event()

    def conn(s):
        total = 0
        try:
            s.settimeout(3)
            while not stop.is_set():
                d = s.recv(65536)
                if not d:
                    if fault == "no-close":
                        stop.wait(4)
                    break
                total += len(d)
                if fault == "corrupt" and total > 1000:
                    d = bytes([d[0] ^ 1]) + d[1:]
                if fault == "drop" and total > 1000:
                    d = d[1:]
                if fault == "extra" and total > 1000:
                    d = d + b"x"
                if fault == "withhold" and total > 1000:
                    continue  # keeps reading, never echoes again
                if fault == "early-close" and total > 1000:
                    break
                s.sendall(d)
        except OSError:
            pass
        finally:
            s.close()

    def accept_loop():
        while not stop.is_set():
            try:
                s, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=conn, args=(s,), daemon=True).start()
        ls.close()

    threading.Thread(target=accept_loop, daemon=True).start()
    return ls.getsockname()[1], stop


def faulty_udp_server(fault):
    """A UDP echo server with a fault: corrupt (a flipped byte from the 20th datagram on), drop (every 5th datagram),
    twice (every datagram echoed twice), longer (a byte added)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def serve():
        n = 0
        while not stop.is_set():
            try:
                d, peer = s.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            n += 1
            if fault == "drop" and n % 5 == 0:
                continue
            if fault == "corrupt" and n >= 20:
                d = bytes([d[0]]) + bytes([d[1] ^ 1]) + d[2:]
            if fault == "longer":
                d += b"x"
            s.sendto(d, peer)
            if fault == "twice":
                s.sendto(d, peer)
        s.close()

    threading.Thread(target=serve, daemon=True).start()
    return s.getsockname()[1], stop


def run_client(client, port, mode, size, conns=2, secs=0.5, extra=()):
    r = subprocess.run(
        [
            client,
            f"127.0.0.1:{port}",
            "--mode",
            mode,
            "--size",
            str(size),
            "--connections",
            str(conns),
            "--duration",
            str(secs),
            "--drain-timeout",
            "1",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(r.stdout.strip().splitlines()[-1]), r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--client", default=os.path.join(BIN, "echoclient"))
    ap.add_argument("--reference", default=os.path.join(BIN, "c-epoll-echo"))
    ap.add_argument("--udp-reference", default=os.path.join(BIN, "c-udp-echo"))
    a = ap.parse_args()
    passed = failed = 0
    cases = [
        ("corrupt", "pingpong", 100, "mismatch"),
        ("corrupt", "stream", 512, "mismatch"),
        ("drop", "pingpong", 100, ("mismatch", "lost")),  # a dropped byte shifts the stream
        ("drop", "stream", 512, ("mismatch", "lost")),
        ("withhold", "pingpong", 100, ("lost",)),
        ("withhold", "stream", 512, ("lost",)),
        ("extra", "pingpong", 100, "mismatch"),
        ("early-close", "pingpong", 100, "early_close"),
        ("early-close", "stream", 512, "early_close"),
        ("no-close", "pingpong", 100, "no_eof"),
        ("corrupt", "connect", 2000, "mismatch"),
    ]
    for fault, mode, size, expect in cases:
        port, stop = faulty_server(fault)
        try:
            out, rc = run_client(a.client, port, mode, size)
        finally:
            stop.set()
        expect = (expect,) if isinstance(expect, str) else expect
        ok = any(out["errors"].get(e, 0) > 0 for e in expect) and rc == 1
        passed += ok
        failed += not ok
        verdict, want = "ok  " if ok else "FAIL", "/".join(expect)
        print(f"{verdict} {fault:12s} {mode:9s} -> errors {out['errors']} (want {want}) rc={rc}")

    udp = ("--udp", "--loss-timeout", "0.1")
    for fault, expect in (("corrupt", "mismatch"), ("drop", "lost"), ("twice", "mismatch"), ("longer", "mismatch")):
        port, stop = faulty_udp_server(fault)
        try:
            out, rc = run_client(a.client, port, "pingpong", 100, extra=udp)
        finally:
            stop.set()
        ok = out["errors"].get(expect, 0) > 0 and rc == 1
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} udp-{fault:8s} pingpong  -> errors {out['errors']} (want {expect}) rc={rc}")

    if os.access(a.udp_reference, os.X_OK):
        passed, failed = udp_reference(a, passed, failed)

    if os.access(a.reference, os.X_OK):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        port = ls.getsockname()[1]
        ls.close()
        p = subprocess.Popen([a.reference, str(port)], stdout=subprocess.DEVNULL)
        try:
            import time

            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            for mode, size, conns in (
                ("pingpong", 1, 1),
                ("pingpong", 100000, 3),
                ("stream", 65536, 4),
                ("stream", 3, 5),
                ("connect", 64, 4),
            ):
                out, rc = run_client(a.client, port, mode, size, conns, 0.3)
                ok = rc == 0 and out["errors_total"] == 0 and out["ops"] > 0
                passed += ok
                failed += not ok
                print(
                    f"{'ok  ' if ok else 'FAIL'} c-epoll      {mode:9s} size {size}: {out['ops']} ops, "
                    f"errors {out['errors_total']}"
                )
        finally:
            p.terminate()
            p.wait(timeout=5)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def udp_reference(a, passed, failed):
    """The C UDP reference (1 and 2 threads) under the client's --udp: every datagram back, none lost."""
    for threads in ("1", "2"):
        p = subprocess.Popen([a.udp_reference, "0", threads], stdout=subprocess.PIPE, text=True)
        try:
            port = int(p.stdout.readline())  # port 0: the kernel picks, the server prints it
            for size, conns in ((1, 1), (1400, 10), (65507, 2)):
                out, rc = run_client(a.client, port, "pingpong", size, conns, 0.3, ("--udp",))
                ok = rc == 0 and out["errors_total"] == 0 and out["ops"] > 0
                passed += ok
                failed += not ok
                print(
                    f"{'ok  ' if ok else 'FAIL'} c-udp/{threads}    pingpong  size {size}: {out['ops']} ops, "
                    f"errors {out['errors_total']}"
                )
        finally:
            p.terminate()
            p.wait(timeout=5)
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
