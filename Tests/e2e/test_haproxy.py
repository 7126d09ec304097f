"""Real load balancers in front of echod, on loopback: Debian's HAProxy (`send-proxy-v2` to one echod, `send-proxy` to
another, health checks with `check-send-proxy`) and nginx's stream module (`proxy_protocol on;`). A client through the
balancer sees its echo byte-exact and both instances' names (round robin), and echod sees the client, not the
balancer: in its log, in `{client}`, and in `limits.max_connections_per_ip`.

The clients connect from their own loopback addresses (127.0.0.2, 127.0.0.3) while the balancer connects to echod from
127.0.0.1, so that "the client's address" and "the balancer's address" differ; the source port is checked as well.
HAProxy and nginx run in the foreground, are ended by their PIDs, and listen on loopback only."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port, recv_exactly, seeded_bytes
from test_proxy_protocol import config, read_to_close
from test_tagging import read_line

NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


def wait_until(what, predicate, timeout=15.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last})")


def client(port, source="127.0.0.2", timeout=5.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def echod_behind(start_echod, instance, mode, extra=""):
    port = free_port()
    entry = {
        "address": f"127.0.0.1:{port}",
        "proxy_protocol": mode,
        "proxy_protocol_from": ["127.0.0.1/32"],
        "tag": "banner",
        "tag_text": "{instance} {client}",
    }
    e = start_echod(config=config(entry, extra=f"instance: {instance}\n{extra}"), ready=True)
    return e, port


class Balancer:
    """A balancer process of this test's own, in the foreground, its output in a file; ended by its PID."""

    def __init__(self, name, args, workdir: Path):
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (written by the balancer until close())
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, port):
        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(f"balancer listening on {port}", listening)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


HAPROXY_CFG = """global
    maxconn 200
    stats socket {stats} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend both
    bind 127.0.0.1:{both}
    default_backend both
frontend one
    bind 127.0.0.1:{only_one}
    default_backend one
backend both
    balance roundrobin
    default-server check check-send-proxy inter 200ms fall 2 rise 1
    server one 127.0.0.1:{one} send-proxy-v2
    server two 127.0.0.1:{two} send-proxy
backend one
    server one 127.0.0.1:{one} send-proxy-v2
"""


class HAProxy(Balancer):
    def __init__(self, workdir: Path, one: int, two: int):
        self.both, self.only_one = free_port(), free_port()
        self.stats = workdir / "haproxy.sock"
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(stats=self.stats, both=self.both, only_one=self.only_one, one=one, two=two))
        super().__init__("haproxy", ["haproxy", "-db", "-f", str(cfg)], workdir)

        def started():
            # Its stats socket, not a connection to a frontend: that would reach an echod as a connection that
            # closes before (or without) its header, which the health-check test would see as a refused header.
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
            return self.stats.exists()

        wait_until("HAProxy's stats socket", started)

    def servers(self) -> dict[str, dict]:
        """`show stat` of backend `both`: server name -> its row (status, check_status, ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        header, *rows = [line for line in out.decode().splitlines() if line]
        keys = header.lstrip("# ").split(",")
        stats = [dict(zip(keys, row.split(","), strict=False)) for row in rows]
        return {r["svname"]: r for r in stats if r["pxname"] == "both" and r["svname"] in ("one", "two")}


@pytest.fixture
def haproxy_and_two_echods(start_echod, tmp_path):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (Debian package haproxy; make deps installs it)")
    one, one_port = echod_behind(start_echod, "one", "v2", "limits:\n  max_connections_per_ip: 1\n")
    two, two_port = echod_behind(start_echod, "two", "any")
    h = HAProxy(tmp_path, one_port, two_port)
    try:
        wait_until("both servers UP", lambda: all(s["status"] == "UP" for s in h.servers().values()) or h.servers())
        yield h, one, two
    finally:
        h.close()


def test_through_haproxy_echo_instances_and_the_clients_address(haproxy_and_two_echods):
    h, one, two = haproxy_and_two_echods
    seen = {}
    payload = seeded_bytes(64 << 10, seed=1313)
    for i in range(4):
        source = f"127.0.0.{10 + i}"  # one address each: echod one's per-IP limit of 1 never comes into play here
        with client(h.both, source) as s:
            sport = s.getsockname()[1]
            instance, shown = read_line(s).decode().split()
            # guard: {client} is the header's client (the real one), not HAProxy's connection to echod.
            assert shown == f"{source}:{sport}", f"connection {i}: banner says {shown}, the client is {source}:{sport}"
            s.sendall(payload)
            assert recv_exactly(s, len(payload)) == payload, "echo through HAProxy is not byte-exact"
            seen.setdefault(instance, []).append(f"{source}:{sport}")
    assert sorted(seen) == ["one", "two"], f"round robin over both instances: {seen}"
    # Each echod logs the client (its address and port) as peer, and HAProxy's own connection as proxy.
    for name, e in (("one", one), ("two", two)):
        log = e.wait_log("connection closed")
        for peer in seen[name]:
            lines = [ln for ln in log.splitlines() if "connection opened" in ln and f"peer={peer} " in ln + " "]
            assert lines, f"echod {name}: no 'connection opened' for peer={peer}:\n{log}"
            proxy = lines[0].split("proxy=", 1)[1].split()[0]
            assert proxy.startswith("127.0.0.1:") and proxy != peer, lines[0]


def test_haproxy_health_checks_keep_both_backends_up(haproxy_and_two_echods):
    """HAProxy's `check` with `check-send-proxy` (a v2 LOCAL header for send-proxy-v2, a v1 header for send-proxy):
    echod accepts them, so the servers stay UP over many check intervals, and none is logged as a bad header."""
    h, one, two = haproxy_and_two_echods
    deadline = time.monotonic() + 3  # 15 check intervals of 200 ms
    while time.monotonic() < deadline:
        servers = h.servers()
        assert all(s["status"] == "UP" for s in servers.values()), {n: s["status"] for n, s in servers.items()}
        time.sleep(0.2)
    for e in (one, two):
        refused = [ln for ln in e.log().splitlines() if " warning " in ln and "proxy" in ln.lower()]
        assert not refused, "\n".join(refused)


def test_per_ip_limit_through_haproxy_counts_the_client(haproxy_and_two_echods):
    """guard: max_connections_per_ip (1 on echod `one`) counts the client from the header. HAProxy connects from
    127.0.0.1 for every client, so counting HAProxy would refuse 127.0.0.3 while 127.0.0.2 is connected."""
    h, one, _ = haproxy_and_two_echods
    first = client(h.only_one, "127.0.0.2")
    other = client(h.only_one, "127.0.0.3")
    for s, source in ((first, "127.0.0.2"), (other, "127.0.0.3")):
        assert read_line(s).decode() == f"one {source}:{s.getsockname()[1]}\n"
        s.sendall(b"served")
        assert recv_exactly(s, 6) == b"served"
    with client(h.only_one, "127.0.0.2") as again:
        got, closed = read_to_close(again)
    assert got == b"" and closed in ("eof", "reset"), (got, closed)
    one.wait_log("max_connections_per_ip reached")
    first.close()
    other.close()


NGINX_CONF = """load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{
    worker_connections 64;
}}
stream {{
    server {{
        listen 127.0.0.1:{port};
        proxy_pass 127.0.0.1:{echod};
        proxy_protocol on;
    }}
}}
"""


def test_through_nginx_stream_with_proxy_protocol(start_echod, tmp_path):
    if shutil.which("nginx") is None or not NGINX_STREAM_MODULE.exists():
        pytest.skip(
            "nginx stream test SKIPPED: nginx or its stream module is not installed (Debian packages nginx and "
            "libnginx-mod-stream; make deps installs them)"
        )
    e, echod_port = echod_behind(start_echod, "solo", "v1")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=NGINX_STREAM_MODULE, dir=tmp_path, port=port, echod=echod_port))
    nginx = Balancer("nginx", ["nginx", "-p", str(tmp_path), "-c", str(conf)], tmp_path)
    try:
        nginx.wait_listening(port)
        payload = seeded_bytes(64 << 10, seed=1314)
        with client(port) as s:
            sport = s.getsockname()[1]
            assert read_line(s).decode() == f"solo 127.0.0.2:{sport}\n"
            s.sendall(payload)
            assert recv_exactly(s, len(payload)) == payload
        log = e.wait_log("connection closed")
        assert any("connection opened" in ln and f"peer=127.0.0.2:{sport}" in ln for ln in log.splitlines()), log
    finally:
        nginx.close()
