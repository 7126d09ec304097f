"""Per-listener options (issue 13) where listeners come and go: sockets systemd passes in (matched by
FileDescriptorName= or by address) and reloads that change a listener's options under open connections."""

import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from conftest import echod_binary, echod_environ, free_port, recv_exactly, socket_activate_setenv


def v1(source: str, sport: int) -> bytes:
    return f"PROXY TCP4 {source} 192.0.2.1 {sport} 9000\r\n".encode()


def read_line(s: socket.socket, timeout: float = 5.0) -> bytes:
    s.settimeout(timeout)
    out = b""
    while not out.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        out += chunk
    return out


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_passed_sockets_take_the_options_of_the_entry_named_or_addressed(tmp_path):
    """guard: ListenerPolicies.entry(for:in:) — a passed socket takes its entry's options by FileDescriptorName= (the
    first socket) or by its address (the second); without the match both would be plain echo listeners."""
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is missing (Debian package systemd; make test installs it)")
    named, addressed = free_port(), free_port()
    cfg = tmp_path / "echod.yaml"
    cfg.write_text(
        "listen:\n"
        "  - address: 127.0.0.1:1\n"  # never bound: the socket comes from systemd, found by its name
        "    name: proxied\n"
        "    proxy_protocol: v1\n"
        "    proxy_protocol_from: [127.0.0.1/32]\n"
        f"  - address: 127.0.0.1:{addressed}\n"
        "    tag: banner\n"
        '    tag_text: "by-address"\n'
    )
    env = echod_environ()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                "systemd-socket-activate",
                *socket_activate_setenv(),
                "-l",
                f"127.0.0.1:{named}",
                "-l",
                f"127.0.0.1:{addressed}",
                "--fdname=proxied:other",
                echod_binary(),
                "--config",
                str(cfg),
                "--log-format",
                "text",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )

        def text() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            deadline = time.monotonic() + 10
            s = None
            while s is None:
                try:
                    s = socket.create_connection(("127.0.0.1", named), timeout=5)
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            with s:
                s.sendall(v1("198.51.100.20", 40123) + b"through")
                assert recv_exactly(s, 7) == b"through"
            with socket.create_connection(("127.0.0.1", addressed), timeout=5) as s:
                assert read_line(s) == b"by-address\n"
                s.sendall(b"x")
                assert recv_exactly(s, 1) == b"x"
            assert wait_for(lambda: "peer=198.51.100.20:40123" in text() and "echod started" in text()), text()
            assert "(proxy_protocol v1)" in text() and "(tag banner)" in text(), text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_reload_changes_options_for_new_connections_only(start_echod, tmp_path):
    """guard: Worker.changePolicy and the policy index a connection keeps — after a reload switches the listener from
    prefix to banner, a connection opened before keeps its prefix and a new one gets the banner."""
    port = free_port()

    def write(tag: str, text: str) -> str:
        return f"listen:\n  - address: 127.0.0.1:{port}\n    tag: {tag}\n    tag_text: {text}\n"

    e = start_echod(config=write("prefix", "old"), ready=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as before:
        before.sendall(b"a\n")
        assert recv_exactly(before, 6) == b"old a\n"
        with open(e.config_path, "w") as f:
            f.write(write("banner", "new"))
        e.signal(signal.SIGHUP)
        e.wait_log("listener options changed")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as after:
            assert read_line(after) == b"new\n"
            after.sendall(b"b\n")
            assert recv_exactly(after, 2) == b"b\n"
        before.sendall(b"c\n")
        assert recv_exactly(before, 6) == b"old c\n"
