"""The admin HTTP endpoint (/livez, /healthz, /readyz, /metrics) of the real binary, in each daemon state."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time

import pytest
from conftest import echod_binary, free_port, recv_exactly, seeded_bytes

PATHS = ("/livez", "/healthz", "/readyz", "/metrics")


def config(port, admin_port, extra="", threads=2):
    return f"listen: ['127.0.0.1:{port}']\nthreads: {threads}\nadmin:\n  listen: '127.0.0.1:{admin_port}'\n{extra}"


def start_with_admin(start_echod, port, extra="", threads=2, **kwargs):
    admin_port = free_port()
    e = start_echod(config=config(port, admin_port, extra, threads), ready=True, **kwargs)
    # READY=1 came once every listener, the admin one too, was bound; /readyz must say the same.
    deadline = time.monotonic() + 10
    while curl(admin_port, "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "echod never became ready"
        time.sleep(0.02)
    return e, admin_port


def curl(admin_port, path, method="GET", timeout=5):
    """(status, body) through curl, as an operator would check."""
    args = ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}"]
    if method == "HEAD":
        args.append("-I")
    elif method != "GET":
        args += ["-X", method]
    out = subprocess.run(args + [f"http://127.0.0.1:{admin_port}{path}"], capture_output=True, timeout=timeout + 5)
    assert out.returncode == 0, f"curl {path} failed: {out.stderr.decode(errors='replace')}"
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body.decode(errors="replace")


def wait_status(admin_port, path, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    status, body = None, ""
    while time.monotonic() < deadline:
        try:
            status, body = curl(admin_port, path, timeout=2)
            if status == expected:
                return body
        except AssertionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{path}: expected {expected}, last saw {status}: {body}")


class RawHTTP:
    """A raw keep-alive connection, to send exactly the bytes a test needs and read exactly what comes back."""

    def __init__(self, admin_port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", admin_port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed by the server")
        self.buf += chunk

    def response(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body.decode(errors="replace")

    def get(self, path, extra=""):
        self.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        return self.response()

    def closed(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def scrape(admin_port):
    status, body = curl(admin_port, "/metrics")
    assert status == 200
    return body


def metric(text, name, labels=None):
    """The value of one series; labels as a dict (order-insensitive)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if got == (labels or {}):
            return float(m.group(4))
    raise AssertionError(f"no series {name}{labels or ''} in:\n{text}")


def listening_sockets(pid):
    """Local ports the process listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


# --- states ---------------------------------------------------------------------------------------------------


def test_serving_all_paths(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    for path in ("/livez", "/healthz", "/readyz"):
        status, body = curl(admin, path)
        assert (status, body) == (200, "ok\n"), path
    status, body = curl(admin, "/livez?verbose")
    assert status == 200
    assert "[+]loop-0 ok" in body and "[+]loop-1 ok" in body and body.endswith("livez check passed\n"), body
    status, body = curl(admin, "/readyz?verbose")
    assert status == 200 and body.endswith("readyz check passed\n"), body
    assert "echod_connections_accepted_total" in scrape(admin)
    # HEAD works for every path, including unknown ones.
    for path in PATHS + ("/nope",):
        out = subprocess.run(
            ["curl", "-sS", "-I", "--max-time", "5", f"http://127.0.0.1:{admin}{path}"], capture_output=True, timeout=10
        )
        head = out.stdout.decode()
        assert head.startswith("HTTP/1.1 200" if path != "/nope" else "HTTP/1.1 404"), head
        assert "Content-Length:" in head
    # Echo still works beside it.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello")
        assert recv_exactly(s, 5) == b"hello"


def test_admin_is_off_unless_configured(start_echod, port):
    e = start_echod(config=f"listen: ['127.0.0.1:{port}']\nthreads: 1\n", ready=True)
    assert listening_sockets(e.pid) == [port]


def test_admin_from_the_command_line(start_echod, port):
    help_text = subprocess.run([echod_binary(), "run", "--help"], capture_output=True, text=True, timeout=10).stdout
    flag = "--admin-listen" if "--admin-listen" in help_text else "--admin"
    assert flag in help_text, help_text
    admin = free_port()
    e = start_echod(args=["--listen", f"127.0.0.1:{port}", flag, f"127.0.0.1:{admin}"], ready=True)
    assert curl(admin, "/livez") == (200, "ok\n")
    assert sorted(listening_sockets(e.pid)) == sorted([port, admin])


def test_stalled_loop_fails_liveness(start_echod, port):
    e, admin = start_with_admin(start_echod, port, env={"ECHOD_TEST_HOOKS": "1"})
    assert curl(admin, "/livez")[0] == 200
    t0 = time.monotonic()
    e.signal(signal.SIGUSR2)  # wedges event loop 0 forever
    body = wait_status(admin, "/livez", 503, timeout=5)
    assert time.monotonic() - t0 < 4, "a stalled loop took too long to show in /livez"
    assert "loop-0" in body
    assert curl(admin, "/healthz")[0] == 503
    status, verbose = curl(admin, "/livez?verbose")
    assert status == 503
    assert "[-]loop-0 failed" in verbose and "[+]loop-1 ok" in verbose, verbose
    # The admin endpoint does not run on the wedged loop: metrics are still served.
    assert "echod_loop_turns_total" in scrape(admin)


def test_draining_fails_readiness_not_liveness(start_echod, port):
    e, admin = start_with_admin(start_echod, port, extra="shutdown:\n  drain_timeout: 20s\n")
    assert curl(admin, "/readyz")[0] == 200
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"x")
    assert recv_exactly(client, 1) == b"x"
    e.signal(signal.SIGTERM)
    t0 = time.monotonic()
    body = wait_status(admin, "/readyz", 503, timeout=3)
    assert time.monotonic() - t0 < 2
    assert body.startswith("failed:"), body
    status, verbose = curl(admin, "/readyz?verbose")
    assert status == 503 and "draining" in verbose, verbose
    assert curl(admin, "/livez") == (200, "ok\n")
    # The open connection is still served during the drain.
    client.sendall(b"y")
    assert recv_exactly(client, 1) == b"y"
    client.close()
    assert e.proc.wait(timeout=15) == 0


def test_descriptor_exhaustion_fails_readiness(start_echod, port):
    limit = 64

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    e, admin = start_with_admin(start_echod, port, threads=1, preexec_fn=low_fd_limit)
    keep = RawHTTP(admin)  # an admin connection made before the descriptors run out
    assert keep.get("/readyz")[0] == 200
    time.sleep(0.2)
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(limit + 20)]
    time.sleep(1.0)
    status, _, body = keep.get("/readyz?verbose")
    assert status == 503, body
    assert "[-]" in body and "readyz check failed" in body, body
    assert keep.get("/livez")[0] == 200, "running out of descriptors must not fail liveness"
    # A new admin connection is still answered (from the spare descriptor), within the accept back-off.
    assert curl(admin, "/readyz", timeout=5)[0] == 503
    # Freed descriptors: accepting resumes (on the next connection) and readiness comes back.
    for c in conns:
        c.close()
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"z")
            assert recv_exactly(s, 1) == b"z"
        if keep.get("/readyz")[0] == 200:
            break
        assert time.monotonic() < deadline, "readiness did not come back after descriptors were freed"
        time.sleep(0.2)
    keep.close()


# --- metrics --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_metrics_pass_promtool(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"some traffic")
        recv_exactly(s, 12)
    time.sleep(0.2)
    text = scrape(admin)
    out = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b"", (
        (out.stdout + out.stderr).decode() + "\n" + text
    )
    status, headers, _ = RawHTTP(admin).get("/metrics")
    assert headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metric_names_and_build_info(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    text = scrape(admin)
    version = subprocess.run([echod_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    assert metric(text, "echod_build_info", {"version": version}) == 1
    for name in (
        "echod_connections_accepted_total",
        "echod_connections_active",
        "echod_received_bytes_total",
        "echod_sent_bytes_total",
        "echod_reads_total",
        "echod_accept_pauses_total",
        "echod_log_records_written_total",
        "echod_log_records_dropped_total",
        "echod_process_resident_memory_bytes",
        "echod_process_open_fds",
        "echod_process_cpu_seconds_total",
        "echod_process_start_time_seconds",
    ):
        metric(text, name)
    for reason in ("peer_closed", "reset", "idle_timeout", "drain_timeout", "connection_limit", "per_ip_limit"):
        metric(text, "echod_connections_closed_total", {"reason": reason})
    for result in ("success", "failure"):
        metric(text, "echod_config_reloads_total", {"result": result})
    for loop in ("0", "1"):
        metric(text, "echod_loop_events_total", {"loop": loop})
        assert metric(text, "echod_loop_turns_by_duration_total", {"loop": loop, "upper_bound": "+Inf"}) >= 1
    assert abs(metric(text, "echod_process_start_time_seconds") - time.time()) < 60
    assert metric(text, "echod_process_resident_memory_bytes") > 1 << 20
    # Loops keep turning while idle: their turn counters grow between scrapes.
    first = metric(text, "echod_loop_turns_total", {"loop": "0"})
    time.sleep(0.6)
    assert metric(scrape(admin), "echod_loop_turns_total", {"loop": "0"}) > first


def test_echo_counters_grow_by_exactly_what_was_echoed(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    before = scrape(admin)
    payloads = [b"a" * 1000, seeded_bytes(70_000, seed=314), b"xyz"]
    total = 0
    for p in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(p)
            assert recv_exactly(s, len(p)) == p
            total += len(p)
    deadline = time.monotonic() + 5
    while True:
        after = scrape(admin)
        closed = metric(after, "echod_connections_closed_total", {"reason": "peer_closed"}) - metric(
            before, "echod_connections_closed_total", {"reason": "peer_closed"}
        )
        if closed >= len(payloads) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert metric(after, "echod_received_bytes_total") - metric(before, "echod_received_bytes_total") == total
    assert metric(after, "echod_sent_bytes_total") - metric(before, "echod_sent_bytes_total") == total
    assert metric(after, "echod_connections_accepted_total") - metric(
        before, "echod_connections_accepted_total"
    ) == len(payloads)
    assert closed == len(payloads)
    assert metric(after, "echod_reads_total") - metric(before, "echod_reads_total") >= len(payloads)
    assert metric(after, "echod_connections_active") == 0


def test_rejections_and_reloads_are_counted(start_echod, port):
    e, admin = start_with_admin(start_echod, port, extra="limits:\n  max_connections: 1\n")
    time.sleep(0.3)
    kept = socket.create_connection(("127.0.0.1", port), timeout=5)
    kept.sendall(b"k")
    assert recv_exactly(kept, 1) == b"k"
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    extra.settimeout(5)
    try:
        assert extra.recv(1) == b""
    except ConnectionResetError:
        pass
    e.config_path.write_text(config(port, admin, "limits:\n  max_connections: 2\n"))
    e.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while metric(scrape(admin), "echod_config_reloads_total", {"result": "success"}) < 1:
        assert time.monotonic() < deadline, "the reload was not counted"
        time.sleep(0.1)
    e.config_path.write_text("limits: [not valid\n")
    e.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while metric(scrape(admin), "echod_config_reloads_total", {"result": "failure"}) < 1:
        assert time.monotonic() < deadline, "the failed reload was not counted"
        time.sleep(0.1)
    text = scrape(admin)
    assert metric(text, "echod_connections_rejected_total", {"limit": "max_connections"}) == 1
    assert metric(text, "echod_connections_closed_total", {"reason": "connection_limit"}) == 1
    kept.close()


# --- HTTP handling --------------------------------------------------------------------------------------------


def test_methods_paths_and_keep_alive(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    c = RawHTTP(admin)
    for path in PATHS:
        status, headers, _ = c.get(path)
        assert status == 200 and "connection" not in headers
    for method in ("POST", "PUT", "DELETE"):
        c.send(f"{method} /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        status, headers, _ = c.response()
        assert status == 405 and headers["allow"] == "GET, HEAD"
    assert c.get("/nope")[0] == 404
    c.send(b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
    status, headers, _ = c.response(head=True)
    assert status == 200 and headers["content-length"] == "3"
    status, _, body = c.response()
    assert (status, body) == (200, "ok\n")
    status, headers, _ = c.get("/livez", "Connection: close\r\n")
    assert status == 200 and headers["connection"] == "close"
    assert c.closed()


def test_http10_closes_by_default(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    c = RawHTTP(admin)
    c.send(b"GET /livez HTTP/1.0\r\n\r\n")
    status, headers, body = c.response()
    assert (status, body) == (200, "ok\n") and headers["connection"] == "close"
    assert c.closed()


@pytest.mark.parametrize(
    "request_bytes,expected",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + seeded_bytes(64, seed=406), 400),  # a TLS ClientHello
        (b"\x00\xff\xfe garbage\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET /livez HTTP/1.1\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 1000) for i in range(9)) + b"\r\n", 431),
    ],
)
def test_malformed_requests_are_rejected_and_closed(start_echod, port, request_bytes, expected):
    e, admin = start_with_admin(start_echod, port)
    c = RawHTTP(admin)
    c.send(request_bytes)
    status, headers, _ = c.response()
    assert status == expected and headers["connection"] == "close"
    assert c.closed()
    assert curl(admin, "/livez")[0] == 200
    assert e.proc.poll() is None


def test_slow_sender_gets_408(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    c = RawHTTP(admin, timeout=20)
    t0 = time.monotonic()
    c.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # never finished
    status, headers, _ = c.response()
    elapsed = time.monotonic() - t0
    assert status == 408 and headers["connection"] == "close"
    assert 9 <= elapsed <= 14, f"408 after {elapsed:.1f}s (the limit is 10s)"
    assert c.closed()


def test_many_admin_connections_do_not_break_it(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    conns = []
    for _ in range(100):  # more than the 64 admin connections allowed: each beyond displaces the oldest idle one
        try:
            conns.append(socket.create_connection(("127.0.0.1", admin), timeout=5))
        except OSError:
            pass
    time.sleep(0.3)
    for c in conns:
        c.close()
    time.sleep(0.3)
    assert curl(admin, "/livez") == (200, "ok\n")
    assert e.proc.poll() is None


def test_health_probes_are_not_logged(start_echod, port):
    e, admin = start_with_admin(start_echod, port)
    for _ in range(20):
        for path in PATHS:
            curl(admin, path)
    curl(admin, "/nope")
    time.sleep(0.5)
    log = e.log()
    assert "/livez" not in log and "/readyz" not in log and "/metrics" not in log and "/nope" not in log, log
