"""Backpressure, idle timeout, connection limits and descriptor exhaustion through the real binary."""

import resource
import socket
import time

from conftest import cpu_seconds, recv_exactly, vm_rss_kib


def config(port, extra=""):
    return f"listen: ['127.0.0.1:{port}']\nthreads: 1\n{extra}"


def test_slow_reader_gets_backpressure_not_a_growing_heap(start_echod, port):
    e = start_echod(config=config(port, "limits:\n  max_pending_bytes: 64KiB\n"), ready=True)
    base = vm_rss_kib(e.pid)
    clients = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.setblocking(False)
        clients.append([s, 0])
    # Each client writes as long as the kernel takes it, never reading: echod must stop reading at its bound.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        progressed = False
        for c in clients:
            try:
                c[1] += c[0].send(b"x" * 65536)
                progressed = True
            except BlockingIOError:
                pass
        if not progressed:
            time.sleep(0.05)
    sent = sum(c[1] for c in clients)
    rss_growth = vm_rss_kib(e.pid) - base
    # Everything sent sits in kernel buffers or echod's bounded buffers (8 x 64 KiB), not in a growing heap.
    assert rss_growth < 8 * 1024, f"RSS grew by {rss_growth} KiB while {sent} bytes were pushed at non-readers"
    # Nobody was closed for being slow: now read everything back, byte-exact.
    for s, n in clients:
        s.setblocking(True)
        got = recv_exactly(s, n, timeout=30)
        assert len(got) == n and got.count(b"x") == n
        s.close()
    assert e.proc.poll() is None


def test_idle_timeout_closes_silent_peers_only(start_echod, port):
    start_echod(config=config(port, "limits:\n  idle_timeout: 2s\n"), ready=True)
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    chatty = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4.5:
        chatty.sendall(b"ping")
        assert recv_exactly(chatty, 4) == b"ping"
        time.sleep(0.5)
    silent.settimeout(5)
    assert silent.recv(1) == b"", "silent peer should have been closed by the idle timeout"
    chatty.sendall(b"alive")
    assert recv_exactly(chatty, 5) == b"alive"


def test_max_connections_closes_excess_at_once(start_echod, port):
    e = start_echod(config=config(port, "limits:\n  max_connections: 3\n"), ready=True)
    kept = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    for s in kept:
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    extra.settimeout(5)
    t0 = time.monotonic()
    try:
        assert extra.recv(1) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 2, "the excess connection was left waiting instead of being closed at once"
    kept[0].close()
    time.sleep(0.2)
    again = socket.create_connection(("127.0.0.1", port), timeout=5)
    again.sendall(b"b")
    assert recv_exactly(again, 1) == b"b"
    e.wait_log("max_connections reached")


def test_max_connections_per_ip(start_echod, port):
    e = start_echod(config=config(port, "limits:\n  max_connections_per_ip: 2\n"), ready=True)
    kept = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for s in kept:
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    extra.settimeout(5)
    try:
        assert extra.recv(1) == b""
    except ConnectionResetError:
        pass
    e.wait_log("max_connections_per_ip reached")


def test_descriptor_exhaustion_does_not_spin_and_recovers(start_echod, port):
    limit = 64

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    e = start_echod(config=config(port), preexec_fn=low_fd_limit, ready=True)
    time.sleep(0.2)
    conns = []
    for _ in range(limit + 20):  # more than echod has descriptors for: the rest wait in the backlog
        conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(0.5)
    before = cpu_seconds(e.pid)
    time.sleep(2)
    used = cpu_seconds(e.pid) - before
    assert used < 0.5, f"echod used {used:.2f}s of CPU in 2s while out of descriptors: busy-spinning"
    # Established connections are still served.
    conns[0].sendall(b"served")
    assert recv_exactly(conns[0], 6) == b"served"
    e.wait_log("accepting paused")
    # Free descriptors: the waiting connections get accepted and served.
    for s in conns[:40]:
        s.close()
    last = conns[-1]
    last.sendall(b"late")
    assert recv_exactly(last, 4, timeout=10) == b"late"
    for s in conns[40:]:
        s.close()
    assert e.proc.poll() is None
