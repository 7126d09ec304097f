"""Integrity under load and 10,000 concurrent connections, through the real binary (issue 11)."""

import math
import os
import random
import resource
import selectors
import socket
import time

import pytest
from conftest import recv_exactly, vm_rss_kib
from race.procfs import fd_count

SEED = int(os.environ.get("RELIABILITY_SEED", "20261102"))


def config(port, extra=""):
    return f"listen: ['127.0.0.1:{port}']\nthreads: 2\n{extra}"


def log_uniform(rng, low, high):
    """An integer in [low, high] whose logarithm is uniform: as many tiny sizes as huge ones."""
    return min(high, int(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))


class Stream:
    """One client of the integrity run: sends `data` in random chunks, reads in random sizes, half-closes when all is
    sent; done at echod's end of stream."""

    def __init__(self, port, rng, size):
        self.rng = rng
        self.data = rng.randbytes(size)
        self.sent = 0
        self.received = bytearray()
        self.done = False
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)

    def on_writable(self):
        chunk = log_uniform(self.rng, 1, 64 * 1024)
        try:
            self.sent += self.sock.send(self.data[self.sent : self.sent + chunk])
        except BlockingIOError:
            return
        if self.sent == len(self.data):
            self.sock.shutdown(socket.SHUT_WR)

    def on_readable(self):
        try:
            chunk = self.sock.recv(log_uniform(self.rng, 1, 64 * 1024))
        except BlockingIOError:
            return
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.received += chunk
        else:
            self.done = True


def run_round(port, rng, connections, time_limit):
    """One round of concurrent streams; returns (streams, unfinished, seconds)."""
    streams = [Stream(port, random.Random(rng.random()), log_uniform(rng, 1, 1 << 20)) for _ in range(connections)]
    sel = selectors.DefaultSelector()
    for s in streams:
        sel.register(s.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, s)
    t0 = time.monotonic()
    live = len(streams)
    while live and time.monotonic() - t0 < time_limit:
        for key, events in sel.select(timeout=1.0):
            s = key.data
            if events & selectors.EVENT_READ:
                s.on_readable()
            if events & selectors.EVENT_WRITE and s.sent < len(s.data):
                s.on_writable()
                if s.sent == len(s.data):
                    sel.modify(s.sock, selectors.EVENT_READ, s)
            if s.done:
                sel.unregister(s.sock)
                s.sock.close()
                live -= 1
    sel.close()
    for s in streams:
        s.sock.close()
    return streams, live, time.monotonic() - t0


def test_integrity_under_load(start_echod, port):
    """Rounds of 300 concurrent connections echo random binary data of mixed sizes (1 B to 1 MiB each, written in
    1 B to 64 KiB chunks, read in random sizes) for a bounded time; every byte is compared. Corrupted and short
    connections are counted apart: zero of each."""
    connections, rounds, run_for, round_limit = 300, 10, 5.0, 60.0
    print(f"\nintegrity: seed {SEED} (replay: RELIABILITY_SEED={SEED})")
    rng = random.Random(SEED)
    start_echod(config=config(port), ready=True)
    t0 = time.monotonic()
    total = corrupted = short = unfinished = done = 0
    while done < rounds and time.monotonic() - t0 < run_for:
        streams, live, _ = run_round(port, rng, connections, round_limit)
        done += 1
        total += sum(len(s.data) for s in streams)
        unfinished += live
        for s in streams:
            if bytes(s.received) != s.data[: len(s.received)]:
                corrupted += 1
            elif len(s.received) < len(s.data):
                short += 1
    print(
        f"integrity: {done} rounds x {connections} connections, {total} bytes each way in "
        f"{time.monotonic() - t0:.1f}s; corrupted {corrupted}, short {short}, unfinished {unfinished}"
    )
    assert corrupted == 0, f"{corrupted} corrupted connections (seed {SEED})"
    assert short == 0, f"{short} short connections (seed {SEED})"
    assert unfinished == 0, f"{unfinished} connections unfinished after {round_limit}s"


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


def test_ten_thousand_concurrent_connections(start_echod, port):
    """10,000 connections open at once (echod inherits the raised limit): all served, a sample verified with random
    data, and the RSS each idle connection costs reported."""
    wanted_connections = 10_000
    soft, hard = raise_fd_limit(wanted_connections + 1000)
    if soft < wanted_connections + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit is {hard}: 10,000 connections need about 10,200 descriptors")
    rng = random.Random(SEED)
    print(f"\n10k: seed {SEED}, RLIMIT_NOFILE {soft} (hard {hard})")
    e = start_echod(config=config(port), ready=True)
    base_rss, base_fds = vm_rss_kib(e.pid), fd_count(e.pid)
    conns = []
    t0 = time.monotonic()
    try:
        for _ in range(wanted_connections):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            assert time.monotonic() - t0 < 60, f"only {len(conns)} connections in 60s"
        deadline = time.monotonic() + 20
        while fd_count(e.pid) < base_fds + wanted_connections and time.monotonic() < deadline:
            time.sleep(0.1)
        held = fd_count(e.pid) - base_fds
        idle_rss = vm_rss_kib(e.pid)
        per_conn = (idle_rss - base_rss) * 1024 / wanted_connections
        print(
            f"10k: {held} connections held by echod; RSS {base_rss} -> {idle_rss} KiB, "
            f"{per_conn:.0f} B per idle connection"
        )
        assert held >= wanted_connections, f"echod holds {held} of {wanted_connections} connections"
        # All served: one byte each, every connection at once.
        for i, c in enumerate(conns):
            c.sendall(bytes([i & 0xFF]))
        for i, c in enumerate(conns):
            assert recv_exactly(c, 1) == bytes([i & 0xFF]), f"connection {i} not served"
        # A sample verified with more data.
        for i in rng.sample(range(wanted_connections), 200):
            payload = rng.randbytes(rng.randint(1, 64 * 1024))
            conns[i].sendall(payload)
            assert recv_exactly(conns[i], len(payload)) == payload, f"connection {i} corrupted (seed {SEED})"
        print(f"10k: all {wanted_connections} served, 200 verified, in {time.monotonic() - t0:.1f}s")
    finally:
        for c in conns:
            c.close()
    assert e.proc.poll() is None
