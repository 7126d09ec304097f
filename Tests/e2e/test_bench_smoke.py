"""`echod bench` against the real echod and against misbehaving servers: counts, JSON schema, exit status."""

import json
import os
import re
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


# --- one grammar for the values a user types: bench, probe and the configuration file agree -----------------------

DURATIONS = [
    "1m30s",
    "90",
    "1.5m",
    "90s",
    "500ms",
    "0.25s",
    "1h",
    "1M30S",
    "2500us",
    "1m 30s",
    "30s1m",
    "1m30",
    "soon",
    "-1s",
    "1.5ns",
    "2x",
    "",
]
SIZES = ["64KiB", "64kb", "65536", "1MiB", "4.5KiB", "4 KiB", "16MB", "1k", "1M", "64x", "1.5", "-4KiB", "1e4", ""]
DURATION_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
SIZE_UNITS = {
    "": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}


def check_config(tmp_path, **env):
    """`echod check-config` on a minimal file with ECHOD_* `env`: (accepted value as rendered, or None; refusal
    reason, or None)."""
    cfg = tmp_path / "echod.yaml"
    cfg.write_text("listen: ['127.0.0.1:8888']\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ECHOD_")} | env
    return subprocess.run(
        [echod_binary(), "check-config", "--config", str(cfg)], env=environ, capture_output=True, text=True, timeout=30
    )


def rendered(check, key):
    """The value check-config printed for `key` (the last part of its dotted name)."""
    match = re.search(rf"^\s*{key}: (\S+)", check.stdout, re.MULTILINE)
    assert match, check.stdout
    return match.group(1)


def reason(stderr, value):
    """The grammar's reason for refusing `value`, as the config loader and the command line both end their line:
    `... invalid value "V": REASON` / `invalid --opt "V": REASON`."""
    match = re.search(rf'"{re.escape(value)}": (.*)$', stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


def seconds(text):
    parts = re.findall(r"(\d+)(h|ms|m|s|us|ns)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def size_bytes(text):
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", text)
    assert match, text
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def option(name, text):
    """`--name text`, or `--name=text` when the text starts with "-" and would be read as an option."""
    return [f"{name}={text}"] if text.startswith("-") else [name, text]


def probe_json(*args):
    r = subprocess.run([echod_binary(), "probe", *args, "--json"], capture_output=True, text=True, timeout=30)
    return r, (json.loads(r.stdout) if r.returncode == 2 else None)


@pytest.mark.parametrize("text", DURATIONS)
def test_bench_probe_and_config_read_a_duration_alike(tmp_path, text):
    """The same text is the same duration in the config file (ECHOD_SHUTDOWN_DRAIN_TIMEOUT), `echod bench --warmup`
    and `echod probe --timeout`, or the same refusal for the same reason. Against a dead port, so an accepted value
    runs into "cannot connect" (exit 2) at once and bench's JSON shows the value it took."""
    dead = f"127.0.0.1:{free_port()}"
    config = check_config(tmp_path, ECHOD_SHUTDOWN_DRAIN_TIMEOUT=text)
    bench = run_bench(dead, *option("--warmup", text), "--json")
    probe, _ = probe_json(dead, *option("--timeout", text))
    if config.returncode == 0:
        expected = seconds(rendered(config, "drain_timeout"))
        assert bench.returncode == 2, bench.stderr
        assert abs(parse_json(bench)["warmup_s"] - expected) < 1e-6
        assert probe.returncode == 2, probe.stderr
    else:
        why = reason(config.stderr, text)
        assert bench.returncode == 64 and reason(bench.stderr, text) == why, bench.stderr
        assert probe.returncode == 64 and reason(probe.stderr, text) == why, probe.stderr
    # The inconsistency this fixes: bench refused what the config file takes.
    if text == "1m30s":
        assert config.returncode == 0 and rendered(config, "drain_timeout") == "1m30s"


@pytest.mark.parametrize("text", SIZES)
def test_bench_probe_and_config_read_a_size_alike(tmp_path, text):
    """The same text is the same size in the config file (ECHOD_LIMITS_MAX_PENDING_BYTES), `echod bench --size` and
    `echod probe --payload-size`, or the same refusal for the same reason: `1k` is refused everywhere, naming KiB,
    and `64kb` is 64000 everywhere."""
    dead = f"127.0.0.1:{free_port()}"
    config = check_config(tmp_path, ECHOD_LIMITS_MAX_PENDING_BYTES=text)
    bench = run_bench(dead, *option("--size", text), "--json")
    probe, probe_doc = probe_json(dead, *option("--payload-size", text))
    if config.returncode == 0:
        expected = size_bytes(rendered(config, "max_pending_bytes"))
        assert bench.returncode == 2 and parse_json(bench)["size"] == expected, bench.stderr
        assert probe.returncode == 2 and probe_doc["bytes"] == expected, probe.stderr
    else:
        why = reason(config.stderr, text)
        assert bench.returncode == 64 and reason(bench.stderr, text) == why, bench.stderr
        assert probe.returncode == 64 and reason(probe.stderr, text) == why, probe.stderr
    if text == "1k":
        assert "KiB" in reason(bench.stderr, text)
    if text == "64kb":
        assert parse_json(bench)["size"] == 64000


def test_bench_duration_1m30s_is_accepted_and_runs(start_echod, port):
    """`--duration 1m30s` was refused while the config file took it; --max-ops ends the run long before."""
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    r = run_bench(
        f"127.0.0.1:{port}",
        "--duration",
        "1m30s",
        "--max-ops",
        "2000",
        "--warmup",
        "0s",
        "--drain-timeout",
        "1s",
        "--json",
    )
    report = parse_json(r)
    assert r.returncode == 0, r.stderr
    assert report["ops"] >= 2000 and report["duration_s"] < 30, report


# --- UDP (--udp) ----------------------------------------------------------------------------------------------
# Against a Python UDP echo server until echod serves UDP itself.


@pytest.fixture
def udp_echo():
    """A loopback UDP echo server on a thread: (port, number of datagrams received so far)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stopped = threading.Event()
    count = [0]

    def serve():
        while not stopped.is_set():
            try:
                data, source = sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            count[0] += 1
            sock.sendto(data, source)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], lambda: count[0]
    stopped.set()
    thread.join(timeout=5)
    sock.close()


def test_bench_udp_against_a_udp_echo_server(udp_echo):
    port, received = udp_echo
    args = ("--udp", "--connections", "3", "--size", "1400", "--duration", "300ms", "--warmup", "0s", "--json")
    r = run_bench(f"127.0.0.1:{port}", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    report = parse_json(r)
    assert report["transport"] == "udp" and report["target"] == f"udp://127.0.0.1:{port}"
    assert report["ops"] > 0 and report["errors_total"] == 0 and report["late"] == 0
    assert report["bytes_received"] == report["ops"] * 1400
    assert received() >= report["ops_all"]  # every round trip is a datagram the server saw
    table = run_bench(f"127.0.0.1:{port}", "--udp", "--connections", "2", "--duration", "200ms", "--warmup", "0s")
    assert table.returncode == 0 and "2 sockets × 64 B" in table.stdout and " 0 lost, " in table.stdout, table.stdout


def test_bench_udp_nothing_listening_exits_2():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = run_bench(f"127.0.0.1:{dead}", "--udp", "--duration", "200ms")
    assert r.returncode == 2 and "port unreachable (ICMP)" in r.stderr, r.stdout + r.stderr


def test_bench_udp_rejects_what_udp_cannot_do():
    for args in (("--mode", "stream"), ("--mode", "connect"), ("--size", "65508"), ("--loss-timeout", "soon")):
        r = run_bench("127.0.0.1:7", "--udp", *args)
        assert r.returncode == 64 and r.stderr, f"{args}: {r.returncode} {r.stderr}"


def echod_serves_udp() -> bool:
    """Whether this echod has UDP echo (`--udp`); the live tests below wait for it."""
    r = subprocess.run([echod_binary(), "check-config", "--udp", "127.0.0.1:9"], capture_output=True, timeout=30)
    return r.returncode != 64  # 64: usage error, the option does not exist


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_udp_against_echod_opened_up_and_at_its_defaults(start_echod, port):
    """With the rate guards opened up (as the race runs it) every datagram comes back; at the defaults (1,000
    datagrams/s per source address, burst 2,000) bench --udp sees the per-source limit as lost datagrams."""
    if not echod_serves_udp():
        pytest.skip("this echod has no UDP echo yet")
    opened, default = free_udp_port(), free_udp_port()
    limits = "  source_rate: 100000000\n  source_burst: 100000000\n  global_rate: 100000000\n"
    start_echod(
        config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\nudp:\n  listen: ['127.0.0.1:{opened}']\n{limits}", ready=True
    )
    args = ("--udp", "--connections", "4", "--duration", "500ms", "--warmup", "0s", "--loss-timeout", "100ms", "--json")
    report = parse_json(run_bench(f"127.0.0.1:{opened}", *args))
    assert report["errors_total"] == 0 and report["ops"] > 0, report["error_details"]
    start_echod(
        config=f"listen: ['127.0.0.1:{free_port()}']\nthreads: 1\nudp:\n  listen: ['127.0.0.1:{default}']\n", ready=True
    )
    args = ("--udp", "--connections", "4", "--duration", "3s", "--warmup", "0s", "--loss-timeout", "50ms", "--json")
    r = run_bench(f"127.0.0.1:{default}", *args)
    report = parse_json(r)
    if report["errors"]["lost"] == 0:
        # Within the burst plus 1,000/s for the whole run (set-up and drain included) nothing need be dropped.
        assert report["ops_all"] <= 2000 + 1000 * 5, f"more round trips than the limit allows, none lost: {report}"
        pytest.skip(f"the machine was too slow to reach the per-source limit ({report['ops_all']} round trips)")
    assert r.returncode == 1 and report["errors"]["mismatch"] == 0, report
