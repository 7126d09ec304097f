"""`echod probe`: exit codes and output against a live echod, a dead port, and fake servers that misbehave."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from conftest import echod_binary, free_port

OK_LINE = r"^ok {target} {size} bytes in \d+\.\d\d ms$"


def probe(*args, timeout=30):
    out = subprocess.run([echod_binary(), "probe", *args], capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


class FakeServer:
    """A loopback TCP server on a thread; `handle(conn)` decides how it misbehaves."""

    def __init__(self, handle):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                self.handle(conn, self.stopped)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def fake_server():
    servers = []

    def make(handle):
        s = FakeServer(handle)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def wrong_echo(conn, stopped):
    while not stopped.is_set():
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(bytes(b ^ 0x01 for b in data))


def silent(conn, stopped):
    while not stopped.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            pass


def http_responder(response: bytes):
    def handle(conn, stopped):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        assert data.startswith(b"GET /")
        conn.sendall(response)

    return handle


# --- echo mode ------------------------------------------------------------------------------------------------


def test_probe_live_echod_is_healthy(start_echod, port):
    start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\n", ready=True)
    rc, out, err = probe(f"127.0.0.1:{port}")
    assert rc == 0, out + err
    assert re.match(OK_LINE.format(target=re.escape(f"127.0.0.1:{port}"), size=64), out.strip()), out
    rc, out, _ = probe(f"127.0.0.1:{port}", "--payload-size", "300000", "--count", "5", "--timeout", "10s")
    assert rc == 0, out
    assert out.startswith(f"ok 127.0.0.1:{port} 5x300000 bytes in "), out


def test_probe_resolves_localhost(start_echod, port):
    start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\n", ready=True)
    rc, out, err = probe(f"localhost:{port}")
    assert rc == 0, out + err
    assert out.startswith(f"ok localhost:{port} 64 bytes in ")


def test_probe_json(start_echod, port):
    start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\n", ready=True)
    rc, out, _ = probe(f"127.0.0.1:{port}", "--json", "--payload-size", "16")
    assert rc == 0
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["mode"] == "echo"
    assert doc["bytes"] == 16 and doc["count"] == 1 and doc["address"] == f"127.0.0.1:{port}"
    assert doc["rtt_ms"] >= 0 and doc["error"] is None
    dead = free_port()
    rc, out, _ = probe(f"127.0.0.1:{dead}", "--json")
    doc = json.loads(out)
    assert rc == 2 and doc["ok"] is False and doc["exit_code"] == 2 and "cannot connect" in doc["error"]


def test_probe_dead_port_is_2():
    dead = free_port()
    t0 = time.monotonic()
    rc, out, _ = probe(f"127.0.0.1:{dead}")
    assert rc == 2
    assert out.startswith(f"fail 127.0.0.1:{dead}: cannot connect"), out
    assert time.monotonic() - t0 < 5


def test_probe_unresolvable_name_is_2():
    rc, out, _ = probe("no-such-host.invalid:7")
    assert rc == 2 and "cannot resolve" in out, out


def test_probe_wrong_echo_is_1(fake_server):
    s = fake_server(wrong_echo)
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == 1
    assert out.startswith(f"fail 127.0.0.1:{s.port}: echo mismatch at byte 0 of 64"), out


def test_probe_no_echo_times_out_with_1(fake_server):
    s = fake_server(silent)
    t0 = time.monotonic()
    rc, out, _ = probe(f"127.0.0.1:{s.port}", "--timeout", "500ms")
    elapsed = time.monotonic() - t0
    assert rc == 1 and "timed out" in out, out
    assert elapsed < 3, f"--timeout 500ms took {elapsed:.1f}s"


def test_probe_usage_errors():
    for args in (
        [],
        ["127.0.0.1"],
        ["127.0.0.1:7", "--http", "http://127.0.0.1:1/"],
        ["127.0.0.1:7", "--timeout", "soon"],
        ["--http", "https://127.0.0.1:1/"],
        ["127.0.0.1:7", "--payload-size", "0"],
    ):
        rc, out, err = probe(*args)
        assert rc not in (0, 1, 2), f"{args}: {rc} {out} {err}"
        assert err, args


# --- HTTP mode ------------------------------------------------------------------------------------------------


def test_probe_http_against_fake_servers(fake_server):
    ok = fake_server(http_responder(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"))
    rc, out, _ = probe("--http", f"http://127.0.0.1:{ok.port}/livez")
    assert rc == 0, out
    assert out.startswith(f"ok http://127.0.0.1:{ok.port}/livez 200 in "), out
    unready = fake_server(
        http_responder(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 14\r\n\r\nfailed: phase\n")
    )
    rc, out, _ = probe("--http", f"http://127.0.0.1:{unready.port}/readyz", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["status"] == 503 and doc["error"] == "status 503: failed: phase", out
    hung = fake_server(silent)
    rc, out, _ = probe("--http", f"http://127.0.0.1:{hung.port}/readyz", "--timeout", "500ms")
    assert rc == 1 and "timed out" in out, out
    rc, out, _ = probe("--http", f"http://127.0.0.1:{free_port()}/readyz")
    assert rc == 2, out


def test_probe_http_against_the_admin_endpoint(start_echod, port):
    admin = free_port()
    e = start_echod(
        config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\nadmin:\n  listen: '127.0.0.1:{admin}'\n"
        "shutdown:\n  drain_timeout: 20s\n",
        ready=True,
    )  # READY=1: admin listens too
    for path in ("/livez", "/healthz", "/readyz", "/metrics"):
        rc, out, _ = probe("--http", f"http://127.0.0.1:{admin}{path}")
        assert rc == 0, out
    rc, out, _ = probe("--http", f"http://localhost:{admin}/readyz?verbose", "--json")
    assert rc == 0 and json.loads(out)["status"] == 200
    rc, out, _ = probe("--http", f"http://127.0.0.1:{admin}/nope")
    assert rc == 1 and "status 404" in out
    # Draining: readiness fails, so does the probe; liveness still passes.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    e.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while True:
        rc, out, _ = probe("--http", f"http://127.0.0.1:{admin}/readyz")
        if rc == 1:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.1)
    assert "status 503" in out
    assert probe("--http", f"http://127.0.0.1:{admin}/livez")[0] == 0
    client.close()


# --- one grammar for the values a user types (test_bench_smoke.py checks bench, probe and the config agree) ---------


def test_probe_takes_durations_and_sizes_as_the_config_file_does(start_echod, port):
    start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\n", ready=True)
    rc, out, err = probe(f"127.0.0.1:{port}", "--timeout", "1m30s", "--payload-size", "4KiB")
    assert rc == 0, out + err
    assert re.match(OK_LINE.format(target=re.escape(f"127.0.0.1:{port}"), size=4096), out.strip()), out
    rc, out, err = probe(f"127.0.0.1:{port}", "--payload-size", "4kb", "--json")
    assert rc == 0 and json.loads(out)["bytes"] == 4000, out + err


def test_probe_refusals_give_the_grammars_reason():
    for args, reason in [
        (["--timeout", "1m 30s"], "no spaces between the parts of a duration"),
        (["--timeout", "2h"], "out of range; must be between 1ms and 1h"),
        (["--payload-size", "4k"], 'unknown size unit "k"; use B, KiB, MiB, GiB'),
        (["--payload-size", "17MiB"], "out of range; must be between 1 and 16MiB"),
    ]:
        rc, out, err = probe("127.0.0.1:7", *args)
        assert rc == 64 and f'invalid {args[0]} "{args[1]}": {reason}' in err, f"{args}: {rc} {out} {err}"
    rc, _, err = probe("[::1]7")
    assert rc == 64 and 'invalid target "[::1]7": missing port' in err, err


# --- UDP echo (udp://) ------------------------------------------------------------------------------------------
# Against a small Python UDP echo server until echod serves UDP itself; `reply` decides what goes back (None: nothing).


class UDPEchoServer:
    """A loopback UDP server on a thread that answers each datagram with `reply(data)` and records the sources."""

    def __init__(self, reply, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.sources = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            self.sources.append(source)
            answer = self.reply(data)
            if answer is not None:
                self.sock.sendto(answer, source)

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def udp_server():
    servers = []

    def make(reply=lambda data: data, family=socket.AF_INET):
        s = UDPEchoServer(reply, family)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_probe_udp_echo_is_healthy_from_an_ephemeral_port(udp_server):
    s = udp_server()
    rc, out, err = probe(f"udp://127.0.0.1:{s.port}")
    assert rc == 0, out + err
    assert re.match(OK_LINE.format(target=re.escape(f"udp://127.0.0.1:{s.port}"), size=64), out.strip()), out
    # The kernel's ephemeral port: never below 1024, which echod's low-source-port guard would not answer.
    assert len(s.sources) == 1 and s.sources[0][1] >= 1024
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}", "--payload-size", "65507", "--count", "3")
    assert rc == 0 and out.startswith(f"ok udp://127.0.0.1:{s.port} 3x65507 bytes in "), out


def test_probe_udp_json(udp_server):
    s = udp_server()
    rc, out, _ = probe(f"udp://localhost:{s.port}", "--json", "--payload-size", "16")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True and doc["mode"] == "udp" and doc["target"] == f"udp://localhost:{s.port}"
    assert doc["bytes"] == 16 and doc["count"] == 1 and doc["resent"] == 0 and doc["address"] == f"127.0.0.1:{s.port}"


def test_probe_udp_ipv6(udp_server):
    try:
        s = udp_server(family=socket.AF_INET6)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    rc, out, _ = probe(f"udp://[::1]:{s.port}")
    assert rc == 0 and out.startswith(f"ok udp://[::1]:{s.port} 64 bytes in "), out


def test_probe_udp_wrong_reply_is_1(udp_server):
    s = udp_server(lambda data: bytes([data[0] ^ 1]) + data[1:])
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}")
    assert rc == 1 and out.startswith(f"fail udp://127.0.0.1:{s.port}: reply differs at byte 0 of 64"), out
    s = udp_server(lambda data: data[:-1])
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}")
    assert rc == 1 and "reply of 63 bytes to a datagram of 64 bytes" in out, out


def test_probe_udp_no_reply_is_1_after_the_retries(udp_server):
    s = udp_server(lambda data: None)
    t0 = time.monotonic()
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}", "--timeout", "600ms")
    elapsed = time.monotonic() - t0
    assert rc == 1 and "no reply within 600 ms (3 datagram(s) of 64 bytes sent)" in out, out
    assert len(s.sources) == 3 and len(set(s.sources)) == 1  # one socket, three datagrams
    assert elapsed < 3
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}", "--timeout", "200ms", "--retries", "0")
    assert rc == 1 and "(1 datagram(s)" in out, out


def test_probe_udp_lost_datagram_is_resent(udp_server):
    seen = []

    def drop_first(data):
        seen.append(data)
        return None if len(seen) == 1 else data

    s = udp_server(drop_first)
    rc, out, _ = probe(f"udp://127.0.0.1:{s.port}", "--timeout", "900ms")
    assert rc == 0 and out.strip().endswith("(1 resent)"), out
    assert len(seen) == 2 and seen[0] != seen[1]  # new random bytes for the second datagram


def test_probe_udp_nothing_listening_is_2():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    rc, out, _ = probe(f"udp://127.0.0.1:{dead}")
    assert rc == 2 and "port unreachable (ICMP)" in out, out


def test_probe_udp_usage_errors():
    for args in (
        ["udp://127.0.0.1"],
        ["udp://127.0.0.1:7", "--payload-size", "65508"],
        ["udp://127.0.0.1:7", "--retries", "11"],
        ["udp://127.0.0.1:7", "--retries", "-1"],
    ):
        rc, out, err = probe(*args)
        assert rc == 64, f"{args}: {rc} {out} {err}"
        assert err, args


def echod_serves_udp() -> bool:
    """Whether this echod has UDP echo (`--udp`); the live tests below wait for it."""
    r = subprocess.run([echod_binary(), "check-config", "--udp", "127.0.0.1:9"], capture_output=True, timeout=30)
    return r.returncode != 64  # 64: usage error, the option does not exist


def test_probe_udp_live_echod(start_echod, port):
    if not echod_serves_udp():
        pytest.skip("this echod has no UDP echo yet")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp = s.getsockname()[1]
    start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\nudp:\n  listen: ['127.0.0.1:{udp}']\n", ready=True)
    rc, out, err = probe(f"udp://127.0.0.1:{udp}")
    assert rc == 0, out + err
    assert re.match(OK_LINE.format(target=re.escape(f"udp://127.0.0.1:{udp}"), size=64), out.strip()), out
    rc, out, _ = probe(f"udp://localhost:{udp}", "--payload-size", "1400", "--count", "5", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["count"] == 5 and doc["resent"] == 0, out
