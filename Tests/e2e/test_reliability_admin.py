"""Slowloris and idle floods on the admin port: health checks keep answering whatever slow clients hold, and the
admin header timeout closes the slow ones (issue 11)."""

import socket
import subprocess
import time

from conftest import free_port

HALF_SENT = 100
SILENT = 100
# AdminServer.Limits: 64 connections at most, 10 s to send a whole request.
ADMIN_LIMIT = 64
HEADER_TIMEOUT = 10.0


def curl_livez(admin_port):
    """(status, seconds) of one `curl /livez`, as an orchestrator's probe would ask."""
    t0 = time.monotonic()
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{admin_port}/livez",
        ],
        capture_output=True,
        timeout=10,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, f"curl /livez failed after {elapsed:.3f}s: {out.stderr.decode(errors='replace')}"
    return int(out.stdout), elapsed


def closed_or_answered(s):
    """b'' on end of stream or reset, the bytes otherwise (non-blocking)."""
    try:
        return s.recv(4096)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""


def test_half_sent_and_silent_floods_cannot_lock_out_probes(start_echod, port):
    admin = free_port()
    e = start_echod(
        config=f"listen: ['127.0.0.1:{port}']\nthreads: 2\nadmin:\n  listen: '127.0.0.1:{admin}'\n", ready=True
    )
    flood = []
    for i in range(HALF_SENT + SILENT):
        s = socket.create_connection(("127.0.0.1", admin), timeout=5)
        if i % 2 == 0:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # half a request, never finished
        flood.append(s)
    time.sleep(0.3)
    # Before the fix, each probe here got a reset at once: 64 slots full of slow clients, the newcomer refused.
    latencies = []
    for _ in range(20):
        status, elapsed = curl_livez(admin)
        assert status == 200, f"/livez said {status} while {len(flood)} slow clients flooded the admin port"
        latencies.append(elapsed)
        time.sleep(0.05)
    held = 0
    for s in flood:
        s.setblocking(False)
        held += closed_or_answered(s) is None
    assert held <= ADMIN_LIMIT, f"{held} flood connections still open: the admin limit is {ADMIN_LIMIT}"
    print(
        f"\nadmin flood: {len(flood)} slow connections, {held} still held (limit {ADMIN_LIMIT}); "
        f"20 /livez probes all 200, slowest {max(latencies) * 1000:.1f} ms"
    )
    # The admin header timeout closes the rest: half-sent ones with 408, silent ones without a word.
    deadline = time.monotonic() + HEADER_TIMEOUT + 4
    open_ones = list(flood)
    got_408 = 0
    while open_ones and time.monotonic() < deadline:
        still = []
        for s in open_ones:
            data = closed_or_answered(s)
            if data is None:
                still.append(s)
            elif data.startswith(b"HTTP/1.1 408"):
                got_408 += 1
        open_ones = still
        time.sleep(0.1)
    assert not open_ones, f"{len(open_ones)} slow admin connections outlived the {HEADER_TIMEOUT:.0f}s header timeout"
    assert got_408 > 0, "no half-sent request got its 408"
    assert curl_livez(admin)[0] == 200
    e.wait_log("closing the oldest idle or incomplete one")
    for s in flood:
        s.close()
