"""The race's C references (c-epoll, c-uring) and how the race registers them: the many-connection workloads, the
io_uring reference skipped with its reason where io_uring is unavailable, and the references' own correctness (every
byte, half-close, a slow reader, an exhausted buffer ring), each built from source into a temporary directory."""

import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from race import measure, options, peers, workloads
from race.context import Plan
from race.peers import FORK_MAX_CONNECTIONS, Builder, PeerSpec, Tools
from race.phases import slow_reader_check
from race.procs import free_port, wait_listening

CC = shutil.which(os.environ.get("CC", "cc"))
HAVE_LIBURING = os.path.exists("/usr/include/liburing.h")


def test_many_connection_workloads_sit_in_table_order_and_fit_the_fork_limit():
    names = [w.name for w in workloads.ALL if w.mode == "pingpong" and w.size == 64 and not w.udp]
    assert names == ["pp64-c1", "pp64-c10", "pp64-c50", "pp64-c200", "pp64-c300", "pp64-c1000"]
    assert {"pp64-c300", "pp64-c1000"} <= set(options.parse([]).workloads)
    assert {"pp64-c300", "pp64-c1000"} <= {w.name for w in workloads.selected(sweep=False)}
    assert workloads.BY_NAME["pp64-c1000"].connections == 1000
    assert workloads.BY_NAME["pp64-c300"].connections <= FORK_MAX_CONNECTIONS < 1000


def test_fork_per_connection_peers_skip_workloads_over_their_connection_limit():
    specs = peers.specs(Tools(client="client", socat="/usr/bin/socat", xinetd="/usr/sbin/xinetd"), "/tmp")
    for name in ("socat", "xinetd"):
        s = specs[name]
        assert s.runs("pp64-c300") and s.runs("pp64-c1") and not s.runs("pp64-c1000"), name
    one = PeerSpec("c-epoll", lambda p: [], 1, "c")
    assert one.runs("pp64-c1000") and one.runs("pp64-c300")
    # the time estimate counts only the peers that race a workload
    counts = measure.PeerCounts([one, specs["socat"], specs["xinetd"]])
    assert counts.of(workloads.BY_NAME["pp64-c1000"]) == (1, 0)
    assert counts.of(workloads.BY_NAME["pp64-c300"]) == (3, 2)


def test_the_time_estimate_counts_opening_many_connections():
    opts = options.parse(["--client", "c", "--no-perf"])
    plan = Plan([], 4, 0)
    one = measure.estimate_workload(2, 0, opts, plan, connections=1)
    many = measure.estimate_workload(2, 0, opts, plan, connections=1000)
    assert round(many - one, 6) == round(2 * 4 * 999 * 2e-4, 6)  # 2 peers x 4 runs, 0.2 ms per connection
    whole = measure.estimate(Plan([workloads.BY_NAME["pp64-c1000"]], 4, 0), measure.PeerCounts([_spec()] * 2), opts)
    assert whole > measure.estimate(Plan([workloads.BY_NAME["pp64-c1"]], 4, 0), measure.PeerCounts([_spec()] * 2), opts)


def _spec():
    return PeerSpec("c-epoll", lambda p: [], 1, "c")


def test_c_uring_is_a_single_threaded_peer_and_can_be_chosen():
    specs = peers.specs(Tools(client="client", c_epoll="/bin/c-epoll", c_uring="/bin/c-uring"), "/tmp")
    assert specs["c-uring"].threads == 1 == specs["c-epoll"].threads
    assert specs["c-uring"].argv(4242) == ["/bin/c-uring", "4242"]
    assert options.parse(["--only", "c-uring"]).peers == ["c-epoll", "c-uring"]
    assert peers.ORDER.index("c-uring") == peers.ORDER.index("c-epoll") + 1
    assert "c-uring" not in peers.specs(Tools(client="client"), "/tmp")


def _fake_probe(tmp_path, rc, message):
    path = tmp_path / f"c-uring-echo-{rc}"
    path.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {rc}\n")
    path.chmod(0o755)
    return str(path)


def test_an_unavailable_io_uring_skips_c_uring_loudly_with_the_reason(tmp_path):
    why = "c-uring: io_uring unavailable: io_uring_setup: Operation not permitted (kernel.io_uring_disabled=2)"
    fake = _fake_probe(tmp_path, 3, why)
    assert peers.uring_unavailable(fake) == why
    assert peers.uring_unavailable(_fake_probe(tmp_path, 0, "")) is None
    logged = []
    b = Builder(io.StringIO(), {})
    b.cc = lambda *a: fake
    assert peers._build_uring(b, logged.append) is None
    assert b.notes["c-uring"].endswith(why) and "not raced" in b.notes["c-uring"]
    assert any(line.startswith("SKIPPING c-uring") and why in line for line in logged)


def test_a_failed_c_uring_build_names_the_missing_package():
    b = Builder(io.StringIO(), {})

    def failed(name, *a):
        b.notes[name] = "build failed (rc=1): ['liburing.h: No such file or directory']"

    b.cc = failed
    assert peers._build_uring(b, lambda line: None) is None
    assert "liburing-dev" in b.notes["c-uring"]


# The references themselves, built and run.


def _build(tmp_path, name, source, *flags):
    out = str(tmp_path / name)
    subprocess.run([CC, "-O2", "-Wall", "-o", out, os.path.join(peers.BENCH, *source), *flags], check=True)
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    if not CC:
        pytest.skip("no C compiler")
    return _build(tmp_path_factory.mktemp("client"), "echoclient", ("client", "echoclient.c"), "-pthread", "-lm")


def _serve(binary):
    port = free_port()
    proc = subprocess.Popen([binary, str(port)], stdout=subprocess.DEVNULL)
    if not wait_listening(port, proc, 10):
        proc.kill()
        pytest.fail(f"{binary} did not start")
    return proc, port


def _stop(proc):
    alive = proc.poll() is None
    proc.kill()
    proc.wait(timeout=5)
    return alive


def _client(client, port, mode, conns, size, seconds=0.4):
    import json

    out = subprocess.run(
        [client, f"127.0.0.1:{port}", "--mode", mode, "--connections", str(conns), "--size", str(size)]
        + ["--duration", str(seconds), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _half_close_echo(port, data: bytes, timeout=5.0) -> bytes:
    """Send everything and half-close at once (the FIN often arrives with the last bytes), then read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)), daemon=True)
        sender.start()
        got = bytearray()
        while chunk := s.recv(1 << 20):
            got += chunk
        sender.join(timeout)
        return bytes(got)


def _check_reference(client, binary):
    proc, port = _serve(binary)
    try:
        for mode, conns, size in (("pingpong", 1, 1), ("pingpong", 3, 100000), ("stream", 4, 7), ("connect", 4, 64)):
            out = _client(client, port, mode, conns, size)
            assert out["ops"] > 0 and out["errors_total"] == 0, (mode, conns, size, out["errors"])
        out = _client(client, port, "pingpong", 1000, 64, 0.5)
        assert out["ops"] >= 1000 and out["errors_total"] == 0, out["errors"]
        # data and FIN together: every byte back, then EOF (a server that stops at the short read hangs here)
        for n in (5, 70000, 3 << 20):
            data = bytes((i * 7 + n) & 0xFF for i in range(n))
            assert _half_close_echo(port, data) == data, n
        assert slow_reader_check(port) is None
    finally:
        assert _stop(proc), f"{binary} exited during the checks"


def test_c_epoll_echoes_every_byte_half_closes_and_survives_a_slow_reader(tmp_path, client):
    _check_reference(client, _build(tmp_path, "c-epoll-echo", ("peers", "c-epoll", "echo.c")))


@pytest.fixture
def uring(tmp_path):
    if not (CC and HAVE_LIBURING):
        pytest.skip("no liburing-dev (make bench-deps installs it)")

    def build(*flags):
        path = _build(tmp_path, "c-uring-echo", ("peers", "c-uring", "echo.c"), *flags, "-luring")
        why = peers.uring_unavailable(path)
        if why:
            pytest.skip(f"io_uring unavailable here: {why}")
        return path

    return build


def test_c_uring_echoes_every_byte_half_closes_and_survives_a_slow_reader(client, uring):
    _check_reference(client, uring())


def test_c_uring_rearms_receives_that_an_exhausted_buffer_ring_ended(client, uring):
    # 8 buffers for 50 connections: most receives end with ENOBUFS and must be re-armed when buffers come back;
    # 2 queued buffers at most per connection: the slow reader's receive is cancelled and re-armed again and again
    proc, port = _serve(uring("-DNBUF=8", "-DBUF_SIZE=4096", "-DMAX_QUEUED=2"))
    try:
        out = _client(client, port, "pingpong", 50, 64, 0.5)
        assert out["ops"] > 50 and out["errors_total"] == 0, out["errors"]
        out = _client(client, port, "stream", 10, 65536, 0.5)
        assert out["ops"] > 10 and out["errors_total"] == 0, out["errors"]
        assert slow_reader_check(port) is None
    finally:
        assert _stop(proc)


def test_c_uring_a_peer_that_does_not_read_cannot_hold_every_buffer(uring):
    # 8 buffers, at most 2 queued per connection: while one peer sends without reading, another is still echoed
    # (without the cap its receive would take every buffer and the second peer would wait for the first to read)
    proc, port = _serve(uring("-DNBUF=8", "-DBUF_SIZE=4096", "-DMAX_QUEUED=2"))
    data = bytes(i & 0xFF for i in range(4 << 20))
    try:
        with socket.socket() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning: the echo backs up at once
            slow.settimeout(10)
            slow.connect(("127.0.0.1", port))
            sender = threading.Thread(target=lambda: slow.sendall(data), daemon=True)
            sender.start()
            time.sleep(0.5)  # both socket buffers fill: the slow peer's echo is parked in the server
            with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
                other.settimeout(5)
                other.sendall(b"x" * 64)
                got = b""
                while len(got) < 64:
                    got += other.recv(64 - len(got))
                assert got == b"x" * 64
            echoed = bytearray()
            while len(echoed) < len(data):
                echoed += slow.recv(1 << 20)
            sender.join(10)
            assert echoed == data
    finally:
        assert _stop(proc)
