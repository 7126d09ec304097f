"""Faults under load, through the real binary (issue 11): clients that reset, close or vanish mid-transfer; the
daemon stopped and continued; SIGHUP storms; SIGTERM under load. Nothing a surviving client sent is lost."""

import os
import random
import signal
import socket
import struct
import threading
import time

from conftest import recv_exactly
from race.procfs import fd_count, memory_kb

SEED = int(os.environ.get("RELIABILITY_SEED", "20261102"))


def config(port, extra=""):
    return f"listen: ['127.0.0.1:{port}']\nthreads: 2\n{extra}"


class Pinger(threading.Thread):
    """A client that echoes random messages in a loop until stopped, checking each; counts round trips and records
    the first failure. Bounded: it stops at `stop` or after `limit` seconds."""

    def __init__(self, port, seed, limit=60.0, pause=0.0):
        super().__init__(daemon=True)
        self.pause = pause
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.limit = limit
        self.trips = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + self.limit
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                payload = self.rng.randbytes(self.rng.randint(1, 16 * 1024))
                self.sock.sendall(payload)
                got = recv_exactly(self.sock, len(payload), timeout=10)
                if got != payload:
                    self.error = f"round trip {self.trips}: {len(got)} of {len(payload)} bytes, corrupted or short"
                    return
                self.trips += 1
                if self.pause:
                    time.sleep(self.pause)
        except OSError as e:
            self.error = f"round trip {self.trips}: {e!r}"

    def finish(self):
        self.stop.set()
        self.join(timeout=15)
        self.sock.close()
        assert not self.is_alive(), "pinger did not stop"
        return self.error


def start_pingers(port, n, tag, pause=0.0):
    pingers = [Pinger(port, SEED * 1000 + tag * 100 + i, pause=pause) for i in range(n)]
    for p in pingers:
        p.start()
    return pingers


def finish_pingers(pingers):
    errors = [e for e in (p.finish() for p in pingers) if e]
    assert not errors, f"connections dropped or corrupted (seed {SEED}): {errors[:5]}"
    return sum(p.trips for p in pingers)


def all_threads_stopped(pid):
    """Whether every thread of `pid` is in state T (stopped by a signal), from /proc/PID/task/*/stat."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return all(state == "T" for state in states)


def settle_fds(pid, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    while fd_count(pid) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return fd_count(pid)


def test_resets_closes_and_vanishing_clients_mid_transfer(start_echod, port):
    """Clients that reset with echo pending, close without reading, or send and go silent: others are unharmed, no
    descriptor leaks once the idle timeout takes the silent ones."""
    print(f"\nfaults: seed {SEED}")
    rng = random.Random(SEED)
    e = start_echod(config=config(port, "limits:\n  idle_timeout: 2s\n"), ready=True)
    base_fds = fd_count(e.pid)
    pingers = start_pingers(port, 4, 1)
    vanished = []
    for i in range(150):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.sendall(rng.randbytes(rng.randint(64 * 1024, 1 << 20)))
        except OSError:
            pass  # a full window: the reset or close below happens mid-transfer either way
        if i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, echo pending
            s.close()
        elif i % 3 == 1:
            s.close()  # close while echo is pending, unread
        else:
            vanished.append(s)  # sent and went silent, never reads nor closes
    trips = finish_pingers(pingers)
    assert e.proc.poll() is None
    # The silent ones are closed by the idle timeout; every descriptor comes back.
    fds = settle_fds(e.pid, base_fds, timeout=6)
    print(f"faults: 150 faulty clients; pingers made {trips} clean round trips; echod fds {base_fds} -> {fds}")
    assert fds == base_fds, f"echod holds {fds - base_fds} descriptors more than before the faulty clients"
    for s in vanished:
        s.close()


def test_stop_and_continue_under_load_loses_nothing(start_echod, port):
    e = start_echod(config=config(port), ready=True)
    pingers = start_pingers(port, 8, 2)
    time.sleep(0.5)
    os.kill(e.pid, signal.SIGSTOP)
    try:
        # Counted once every thread of echod is stopped and the echoes already on their way are read: counting
        # before the signal raced the pingers' threads (they can finish dozens of round trips between the count and
        # the kill while this thread waits for the GIL).
        deadline = time.monotonic() + 5
        while not all_threads_stopped(e.pid):
            assert time.monotonic() < deadline, "echod's threads did not stop within 5 s of SIGSTOP"
            time.sleep(0.01)
        time.sleep(0.3)
        before = sum(p.trips for p in pingers)
        time.sleep(2)
        frozen = sum(p.trips for p in pingers)
    finally:
        os.kill(e.pid, signal.SIGCONT)
    time.sleep(1)
    after = sum(p.trips for p in pingers)
    total = finish_pingers(pingers)
    print(f"\nstop/cont: {before} round trips before, {frozen - before} while stopped, {after - frozen} after; {total}")
    assert frozen == before, "round trips completed while echod was stopped"
    assert after > frozen, "no round trip after SIGCONT"


def test_sighup_storm_under_load_drops_nothing_and_leaks_nothing(start_echod, port):
    e = start_echod(config=config(port, "limits:\n  idle_timeout: 300s\n"), ready=True)
    # Steady load rather than saturation: a reload waits for every loop, and saturated loops make 100 reloads take
    # longer than make test can spend.
    pingers = start_pingers(port, 8, 3, pause=0.002)
    time.sleep(0.5)
    base_fds, base_kib = fd_count(e.pid), memory_kb(e.pid, tree=False)
    # One SIGHUP at a time, each waited for: signals sent faster than echod reloads merge into one pending signal.
    # Each reload sends RELOADING=1 and READY=1 to the test's notify socket, which is read here as systemd would:
    # a full queue (net.unix.max_dgram_qlen, 10) makes each send wait out echod's 250 ms send timeout.
    deadline = time.monotonic() + 30
    t0 = time.monotonic()
    e.notify.sock.setblocking(False)
    for i in range(100):
        e.signal(signal.SIGHUP)
        while (done := e.log().count("configuration reloaded") + e.log().count("reload ignored")) < i + 1:
            assert time.monotonic() < deadline, f"{done} of 100 reloads logged in 30s"
            try:
                while e.notify.sock.recv(4096):
                    pass
            except BlockingIOError:
                pass
            time.sleep(0.002)
    storm = time.monotonic() - t0
    fds, kib = fd_count(e.pid), memory_kb(e.pid, tree=False)
    total = finish_pingers(pingers)
    reloaded = e.log().count("configuration reloaded")
    print(
        f"\nsighup storm: {reloaded} reloads in {storm:.1f}s under {total} round trips; "
        f"fds {base_fds} -> {fds}, RSS {base_kib} -> {kib} KiB"
    )
    assert reloaded == 100, f"{100 - reloaded} reloads ignored"
    assert fds == base_fds, f"descriptors grew by {fds - base_fds} over 100 reloads"
    assert kib - base_kib < 2048, f"RSS grew by {kib - base_kib} KiB over 100 reloads"
    assert e.proc.poll() is None


def test_sigterm_under_load_echoes_every_byte_sent_before_the_drain(start_echod, port):
    rng = random.Random(SEED)
    print(f"\nsigterm: seed {SEED}")
    e = start_echod(config=config(port, "shutdown:\n  drain_timeout: 20s\n"), ready=True)
    clients = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        data = rng.randbytes(rng.randint(1, 256 * 1024))
        clients.append((s, data))
    # Each client's bytes are in flight (sent, echo unread) when the drain begins.
    senders = [threading.Thread(target=s.sendall, args=(d,), daemon=True) for s, d in clients]
    for t in senders:
        t.start()
    for t in senders:
        t.join(timeout=20)
    e.signal(signal.SIGTERM)
    results = {}

    def drain_one(i, s, data):
        s.shutdown(socket.SHUT_WR)
        results[i] = recv_exactly(s, len(data) + 1, timeout=20)

    readers = [threading.Thread(target=drain_one, args=(i, s, d), daemon=True) for i, (s, d) in enumerate(clients)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(timeout=30)
    corrupted = [i for i, (_, d) in enumerate(clients) if results.get(i, b"") != d[: len(results.get(i, b""))]]
    short = [i for i, (_, d) in enumerate(clients) if i not in corrupted and len(results.get(i, b"")) != len(d)]
    print(
        f"sigterm: {len(clients)} clients, {sum(len(d) for _, d in clients)} bytes in flight at SIGTERM; "
        f"corrupted {corrupted}, short {short}"
    )
    assert not corrupted and not short
    assert e.stop(timeout=15) == 0
    for s, _ in clients:
        s.close()
