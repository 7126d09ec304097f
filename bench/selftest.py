#!/usr/bin/env python3
"""Self-test of the bench tooling: does bench/client/echoclient catch broken echo servers?

    python3 bench/selftest.py [--client PATH]

Starts small deliberately faulty servers on loopback (in this process, one
thread each) and checks that the client reports errors for each fault, then
checks that it reports none against the C epoll reference.  Exit 0 when every
expectation holds.  Bounded: each client run lasts under 2 s.
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


def run_client(client, port, mode, size, conns=2, secs=0.5):
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


if __name__ == "__main__":
    sys.exit(main())
