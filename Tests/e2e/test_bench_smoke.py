"""`echod bench` against the real echod and against misbehaving servers: counts, JSON schema, exit status."""

import json
import socket
import subprocess
import threading

import pytest
from conftest import echod_binary, free_port

LATENCY_KEYS = {"p50", "p90", "p99", "p999", "max", "mean"}
ERROR_KEYS = {"mismatch", "early_close", "connect_failed", "lost", "no_eof", "other"}


def run_bench(target, *args, timeout=30):
    cmd = [echod_binary(), "bench", target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def parse_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line on stdout, got: {result.stdout!r} / {result.stderr!r}"
    report = json.loads(lines[0])
    assert set(report["latency_us"]) == LATENCY_KEYS
    assert set(report["errors"]) == ERROR_KEYS
    return report


@pytest.mark.parametrize(
    "mode,connections,size",
    [
        ("pingpong", 4, 64),
        ("pingpong", 2, 100_000),
        ("stream", 4, 65536),
        ("connect", 4, 64),
    ],
)
def test_bench_each_mode_against_echod(start_echod, port, mode, connections, size):
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    r = run_bench(
        f"127.0.0.1:{port}",
        "--mode",
        mode,
        "--connections",
        str(connections),
        "--size",
        str(size),
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--threads",
        "2",
        "--json",
    )
    report = parse_json(r)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert report["mode"] == mode
    assert report["connections"] == connections and report["size"] == size and report["threads"] == 2
    assert report["ops"] > 0 and report["ops_all"] >= report["ops"]
    assert report["ops_per_s"] > 0 and report["ops_per_sec"] == report["ops_per_s"]
    assert report["bytes_sent"] > 0 and report["bytes_received"] > 0
    assert report["mb_per_s_in"] > 0 and report["mb_per_s_out"] > 0
    assert 0.9 < report["duration_s"] < 1.5
    assert report["errors_total"] == 0 and sum(report["errors"].values()) == 0, report["error_details"]
    lat = report["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def test_bench_table_when_piped_has_no_progress_line(start_echod, port):
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    r = run_bench(f"127.0.0.1:{port}", "--duration", "1.2s", "--warmup", "0s", "--connections", "2")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout  # progress only on a terminal
    assert "round trips" in r.stdout and "no errors" in r.stdout


class FakeServer:
    """A thread-per-connection echo server that misbehaves: flips every `flip_every`th byte of each stream."""

    def __init__(self, flip_every):
        self.flip_every = flip_every
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.accept_loop, daemon=True)]
        self.threads[0].start()

    def accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def serve(self, conn):
        offset = 0
        conn.settimeout(5)
        with conn:
            try:
                while not self.stop.is_set():
                    data = bytearray(conn.recv(65536))
                    if not data:
                        return
                    for i in range(len(data)):
                        if (offset + i + 1) % self.flip_every == 0:
                            data[i] ^= 0xFF
                    offset += len(data)
                    conn.sendall(data)
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=6)


@pytest.mark.parametrize("mode", ["pingpong", "stream"])
def test_bench_wrong_echo_exits_1(mode):
    server = FakeServer(flip_every=1000)
    try:
        r = run_bench(
            f"127.0.0.1:{server.port}",
            "--mode",
            mode,
            "--connections",
            "2",
            "--size",
            "600",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--drain-timeout",
            "1s",
            "--json",
        )
    finally:
        server.close()
    report = parse_json(r)
    assert r.returncode == 1, f"{r.stdout}\n{r.stderr}"
    assert report["errors"]["mismatch"] > 0
    assert report["errors_total"] > 0
    assert any("offset 999" in d for d in report["error_details"]), report["error_details"]


def test_bench_wrong_echo_table_says_what_went_wrong():
    server = FakeServer(flip_every=1000)
    try:
        r = run_bench(
            f"127.0.0.1:{server.port}", "--connections", "1", "--size", "600", "--duration", "300ms", "--warmup", "0s"
        )
    finally:
        server.close()
    assert r.returncode == 1
    assert "mismatch" in r.stdout and "FAILED" in r.stdout


@pytest.mark.parametrize("mode", ["pingpong", "connect"])
def test_bench_nothing_listening_exits_2(mode):
    port = free_port()
    r = run_bench(f"127.0.0.1:{port}", "--mode", mode, "--duration", "1s", "--json")
    assert r.returncode == 2, f"{r.stdout}\n{r.stderr}"
    report = parse_json(r)
    assert report["setup_failed"] is True
    assert "refused" in r.stderr.lower()


def test_bench_rejects_bad_options():
    r = run_bench("127.0.0.1:1", "--mode", "sideways")
    assert r.returncode != 0 and "mode" in r.stderr
    r = run_bench("no-port-here", "--duration", "1s")
    assert r.returncode != 0 and "target" in r.stderr
