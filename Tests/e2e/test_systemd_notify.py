"""systemd integration without systemd: a test-only NOTIFY_SOCKET receiver, and systemd-socket-activate."""

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import echod_binary, echod_environ, free_port, recv_exactly, socket_activate_setenv, wait_for_port


class NotifyReceiver:
    """An AF_UNIX datagram socket standing in for systemd's notification socket."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="echod-notify-")
        self.path = str(Path(self.dir.name) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict] = []

    def next(self, timeout: float = 10.0, want: str | None = None) -> dict:
        """The next message (as a dict of its KEY=VALUE lines), or the next one containing key `want`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                raw = self.sock.recv(65536).decode()
            except TimeoutError:
                break
            msg = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
            msg["_at"] = time.monotonic()
            self.messages.append(msg)
            if want is None or want in msg:
                return msg
        raise AssertionError(f"no notification{' with ' + want if want else ''} within {timeout}s; got {self.messages}")

    def drain(self) -> list[dict]:
        got = []
        self.sock.settimeout(0.01)
        while True:
            try:
                raw = self.sock.recv(65536).decode()
            except (TimeoutError, BlockingIOError):
                return got
            got.append(dict(line.split("=", 1) for line in raw.splitlines() if "=" in line))

    def close(self):
        self.sock.close()
        self.dir.cleanup()


@pytest.fixture
def notify():
    r = NotifyReceiver()
    yield r
    r.close()


def test_ready_only_once_serving_with_mainpid_and_status(notify, port, start_echod):
    e = start_echod(["--listen", f"127.0.0.1:{port}"], env={"NOTIFY_SOCKET": notify.path})
    ready = notify.next(want="READY")
    # READY means a client can connect now, not in a moment.
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"r")
        assert recv_exactly(s, 1) == b"r"
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(e.pid)
    assert ready["STATUS"].startswith("serving 1 listener")
    # STATUS= follows the connection count (refreshed every few seconds, only when it changed).
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    status = notify.next(timeout=12, want="STATUS")
    while "3 connections" not in status["STATUS"]:
        status = notify.next(timeout=12, want="STATUS")
    for s in held:
        s.close()
    e.signal(signal.SIGTERM)
    stopping = notify.next(want="STOPPING")
    assert stopping["STOPPING"] == "1"
    assert e.proc.wait(timeout=10) == 0


def test_reload_valid_then_invalid(notify, start_echod):
    p1, p2 = free_port(), free_port()
    e = start_echod(config=f"listen: ['127.0.0.1:{p1}']\n", env={"NOTIFY_SOCKET": notify.path})
    notify.next(want="READY")
    kept = socket.create_connection(("127.0.0.1", p1), timeout=5)
    kept.sendall(b"1")
    assert recv_exactly(kept, 1) == b"1"
    # A valid new config: one more listener and a new limit.
    e.config_path.write_text(f"listen: ['127.0.0.1:{p1}', '127.0.0.1:{p2}']\nlimits:\n  idle_timeout: 1h\n")
    e.signal(signal.SIGHUP)
    reloading = notify.next(want="RELOADING")
    assert reloading["RELOADING"] == "1"
    mono = int(reloading["MONOTONIC_USEC"])
    assert abs(mono - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 10_000_000
    ready = notify.next(want="READY")
    assert "reload failed" not in ready.get("STATUS", "")
    with socket.create_connection(("127.0.0.1", p2), timeout=5) as s:
        s.sendall(b"new")
        assert recv_exactly(s, 3) == b"new"
    kept.sendall(b"2")
    assert recv_exactly(kept, 1) == b"2", "connection dropped by reload"
    # An invalid new config: rejected, old config stays, connection still alive.
    e.config_path.write_text("listen: ['127.0.0.1:1']\nlimits:\n  max_conections: 3\n")
    e.signal(signal.SIGHUP)
    notify.next(want="RELOADING")
    ready = notify.next(want="READY")
    assert "reload failed" in ready["STATUS"] and "max_conections" in ready["STATUS"]
    e.wait_log("max_conections")
    kept.sendall(b"3")
    assert recv_exactly(kept, 1) == b"3"
    with socket.create_connection(("127.0.0.1", p2), timeout=5) as s:
        s.sendall(b"still")
        assert recv_exactly(s, 5) == b"still"
    kept.close()
    assert e.stop() == 0


def test_reload_removes_a_listener_without_touching_its_connections(notify, start_echod):
    p1, p2 = free_port(), free_port()
    e = start_echod(config=f"listen: ['127.0.0.1:{p1}', '127.0.0.1:{p2}']\n", env={"NOTIFY_SOCKET": notify.path})
    notify.next(want="READY")
    on_p2 = socket.create_connection(("127.0.0.1", p2), timeout=5)
    e.config_path.write_text(f"listen: ['127.0.0.1:{p1}']\n")
    e.signal(signal.SIGHUP)
    notify.next(want="RELOADING")
    notify.next(want="READY")
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p2), timeout=1).close()
    on_p2.sendall(b"kept")
    assert recv_exactly(on_p2, 4) == b"kept"
    on_p2.close()
    assert e.stop() == 0


def test_watchdog_pings_only_while_every_loop_turns(notify, port, start_echod):
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "600000", "ECHOD_TEST_HOOKS": "1"}
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--threads", "2"], env=env)
    notify.next(want="READY")
    pings = [notify.next(want="WATCHDOG", timeout=3) for _ in range(3)]
    assert all(p["WATCHDOG"] == "1" for p in pings)
    e.signal(signal.SIGUSR2)  # test hook: wedges event loop 0
    time.sleep(1.0)  # the stall is noticed within the stall threshold (here 500 ms)
    notify.drain()
    time.sleep(1.5)
    late = [m for m in notify.drain() if "WATCHDOG" in m]
    assert not late, f"watchdog pings went on while a loop was stalled: {late}"
    e.wait_log("event loop stalled")


def test_no_notify_socket_means_no_notifications_and_no_errors(port, start_echod):
    e = start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    assert e.stop() == 0
    assert "error" not in e.log().lower()


@contextlib.contextmanager
def _socket_activate(ports, names, extra_args=(), env=None):
    """systemd-socket-activate running echod on the given ports; killed (by PID) if still running at the end."""
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is missing (Debian package systemd; make test installs it)")
    cmd = ["systemd-socket-activate", *socket_activate_setenv()]
    for p in ports:
        cmd += ["-l", f"127.0.0.1:{p}"]
    cmd += [f"--fdname={':'.join(names)}", echod_binary(), *extra_args]
    full_env = echod_environ(env)
    log = tempfile.TemporaryFile()  # noqa: SIM115 (echod's stderr while it runs; closed below)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=full_env)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _read(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def test_socket_activation_serves_on_the_passed_socket(port):
    unused = free_port()
    with _socket_activate([port], ["echo"], ["--listen", f"127.0.0.1:{unused}"]) as (proc, log):
        wait_for_port(port, proc=proc)  # systemd-socket-activate listens; echod starts at the first connection
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"activated")
            assert recv_exactly(s, 9) == b"activated"
        # echod used the passed socket and did not bind its configured address.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", unused), timeout=1).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        # Read after exit: log records are written asynchronously and flushed at the latest on the way out.
        assert "from systemd" in _read(log)


def test_socket_activation_two_echo_sockets(port):
    p2 = free_port()
    with _socket_activate([port, p2], ["echo", "echo"]) as (proc, log):
        wait_for_port(port, proc=proc)
        for p in (port, p2):
            with socket.create_connection(("127.0.0.1", p), timeout=10) as s:
                s.sendall(b"two")
                assert recv_exactly(s, 3) == b"two"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_passed_datagram_socket_is_refused_clearly(port):
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is missing")
    cmd = [
        "systemd-socket-activate",
        *socket_activate_setenv(),
        "--datagram",
        "-l",
        f"127.0.0.1:{port}",
        "--fdname=echo",
        echod_binary(),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"wake", ("127.0.0.1", port))
        _, err = proc.communicate(timeout=10)
        assert proc.returncode != 0
        assert b"SOCK_DGRAM" in err or b"datagram" in err.lower()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_socket_activation_echo_and_admin_sockets(port):
    admin_port = free_port()
    with _socket_activate([port, admin_port], ["echo", "admin"]) as (proc, log):
        wait_for_port(port, proc=proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"echo role")
            assert recv_exactly(s, 9) == b"echo role"
        out = subprocess.run(
            ["curl", "-sS", "-o", "-", "-w", "%{http_code}", f"http://127.0.0.1:{admin_port}/readyz"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert out.stdout.endswith("200") and out.stdout.startswith("ok"), out
        # The admin socket is not an echo listener.
        with socket.create_connection(("127.0.0.1", admin_port), timeout=10) as s:
            s.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
            assert recv_exactly(s, 12).startswith(b"HTTP/1.")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
