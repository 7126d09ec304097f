"""Started as root, echod binds, opens its log file, then becomes `--user` (or `user:`) for good, before it serves a
byte and before READY=1; without a user, outside systemd, it warns once that it runs as root.

These tests start the real binary as root (the tests run as root here) and read /proc/PID/status of every thread.
"""

import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest
from conftest import Echod, free_port, recv_exactly, wait_for_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED LOUDLY: needs root (switching users, port 7)")

NOBODY = 65534
ROOT_WARNING = "running as root"


def low_port_address() -> str:
    """127.x.y.1, port 7: a port below 1024 on an address of the loopback net that another run (another pid) does not
    hold; derived from the pid, so it is in every failure message and nothing here is random."""
    pid = os.getpid()
    return f"127.{(pid >> 8) % 254 + 1}.{pid % 254 + 1}.1"


def credentials(pid: int) -> dict[str, dict[str, str]]:
    """For every thread of `pid`: its Uid, Gid, Groups, CapPrm and CapEff lines of /proc/PID/task/TID/status."""
    keys = ("Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapAmb")
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        threads[task.name] = {k: " ".join(fields[k].split()) for k in keys}
    return threads


def echo_once(host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(payload)
        return recv_exactly(s, len(payload))


def wait_file(path: Path, text: str, timeout: float = 5.0) -> str:
    """The file's text once it contains `text` (log records are written asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} within {timeout}s:\n{path.read_text() if path.exists() else ''}")


def test_binds_port_7_then_serves_as_nobody_for_good(start_echod, tmp_path):
    host = low_port_address()
    # pytest's tmp_path is root's, mode 0700: after the switch only a descriptor opened before it can write there.
    os.chmod(tmp_path, 0o700)
    log_file = tmp_path / "echod.log"
    e = start_echod(
        ["--listen", f"{host}:7", "--threads", "2", "--log-format", "text"],
        config=f"user: nobody\nlog:\n  file: {log_file}\n",
    )
    wait_for_port(7, host=host, proc=e.proc)  # fails naming the address
    assert os.stat(log_file).st_uid == 0, "the log file was created by root, before the switch"
    payload = bytes(range(256)) * 400
    assert echo_once(host, 7, payload) == payload

    threads = credentials(e.pid)
    assert len(threads) >= 4, f"control, log writer and two loops: {threads}"
    for tid, c in threads.items():
        assert c["Uid"] == f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}", f"thread {tid}: real/effective/saved/fs uids {c}"
        assert c["Gid"] == f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}", f"thread {tid}: gids {c}"
        assert c["Groups"] == str(NOBODY), f"thread {tid}: supplementary groups {c}"
        assert int(c["CapPrm"], 16) == int(c["CapEff"], 16) == int(c["CapAmb"], 16) == 0, f"thread {tid}: {c}"

    # Written by the writer thread after the switch, through the descriptor root opened.
    text = wait_file(log_file, "connection closed")
    switched = text.index("switched to an unprivileged user")
    assert "user=nobody" in text[switched:].splitlines()[0]
    assert text.index("echod started") > switched, "the loops started serving after the switch"
    assert ROOT_WARNING not in text and ROOT_WARNING not in e.log()
    assert e.stop() == 0


def test_ready_is_sent_after_the_switch():
    """READY=1 (what systemd waits for) comes only once the process is no longer root. The notification socket is in
    a directory the user can reach and is writable by it, as systemd's /run/systemd/notify is."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="echod-notify-") as d:
        os.chmod(d, 0o755)
        path = Path(d) / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        os.chmod(path, 0o777)
        sock.settimeout(10)
        e = Echod(["--listen", f"127.0.0.1:{port}", "--user", "nobody"], env={"NOTIFY_SOCKET": str(path)})
        try:
            while b"READY=1" not in sock.recv(65536).split(b"\n"):
                pass
            uids = credentials(e.pid)
            assert all(c["Uid"] == f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}" for c in uids.values()), uids
            assert echo_once("127.0.0.1", port, b"after ready") == b"after ready"
            assert ROOT_WARNING not in e.log()
            assert e.stop() == 0
        finally:
            e.close()
            sock.close()


def test_unknown_user_stops_the_start_before_binding(start_echod):
    port = free_port()
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--user", "echod-no-such-user", "--log-format", "text"])
    assert e.proc.wait(timeout=10) == 78, e.log()
    log = e.log()
    assert 'cannot start error="user \\"echod-no-such-user\\": no such user"' in log, log
    assert "listening" not in log and "echod started" not in log


def test_a_user_given_by_number_is_refused_as_configuration(start_echod):
    e = start_echod(["--listen", f"127.0.0.1:{free_port()}", "--user", "65534", "--log-format", "text"])
    assert e.proc.wait(timeout=10) == 78, e.log()
    assert "a number, not a user name" in e.log()


def test_root_warning_once_outside_systemd_and_never_with_a_user_or_under_systemd(start_echod):
    plain = start_echod(["--listen", f"127.0.0.1:{free_port()}", "--log-format", "text"])
    log = plain.wait_log("echod started")
    assert log.count(ROOT_WARNING) == 1, log
    warning = next(line for line in log.splitlines() if ROOT_WARNING in line)
    assert " warning " in warning and "--user" in warning and "systemd" in warning, warning

    with_user = start_echod(["--listen", f"127.0.0.1:{free_port()}", "--user", "nobody", "--log-format", "text"])
    assert ROOT_WARNING not in with_user.wait_log("echod started")

    notify = start_echod(["--listen", f"127.0.0.1:{free_port()}", "--log-format", "text"], ready=True)
    assert ROOT_WARNING not in notify.wait_log("echod started")

    invocation = start_echod(
        ["--listen", f"127.0.0.1:{free_port()}", "--log-format", "text"], env={"INVOCATION_ID": "0" * 32}
    )
    assert ROOT_WARNING not in invocation.wait_log("echod started")
    for e in (plain, with_user, notify, invocation):
        assert e.stop() == 0


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_not_root_a_user_must_be_the_one_echod_runs_as(start_echod):
    """Switching needs root: asked to become another user, echod refuses to start rather than run as the wrong one;
    asked to become the user it already is (systemd's User= naming the same one), it starts."""
    other = start_echod(
        ["--listen", f"127.0.0.1:{free_port()}", "--user", "daemon", "--log-format", "text"], preexec_fn=as_nobody
    )
    assert other.proc.wait(timeout=10) == 78, other.log()
    assert "switching users needs root, and echod runs as uid 65534" in other.log()

    port = free_port()
    same = start_echod(
        ["--listen", f"127.0.0.1:{port}", "--user", "nobody", "--log-format", "text"], preexec_fn=as_nobody
    )
    assert "already running as the configured user" in same.wait_log("echod started")
    assert echo_once("127.0.0.1", port, b"same user") == b"same user"
    assert same.stop() == 0


def test_reload_keeps_the_user_and_a_reopen_the_user_cannot_do_keeps_the_old_file(start_echod, tmp_path):
    """A reload reads the file as the unprivileged user: one it cannot read is rejected and the running configuration
    kept. SIGHUP cannot change the user (a restart does). SIGUSR1 reopens the log file as the user, so in a directory
    only root can write the reopen fails, echod says so on stderr and keeps writing to the old file."""
    os.chmod(tmp_path, 0o700)
    log_file = tmp_path / "echod.log"
    port = free_port()
    config = f"user: nobody\nlog:\n  file: {log_file}\n"
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--log-format", "text"], config=config)
    wait_file(log_file, "echod started")  # serving: a SIGHUP before that is ignored

    e.config_path.write_text(config.replace("nobody", "daemon"))
    e.signal(signal.SIGHUP)
    rejected = wait_file(log_file, "reload rejected")
    assert "cannot open: Permission denied" in rejected, "echod's config directory is root's, mode 0700"
    os.chmod(e.dir, 0o755)
    os.chmod(e.config_path, 0o644)
    e.signal(signal.SIGHUP)
    wait_file(log_file, "configuration reloaded")
    assert "user changed: takes effect at the next restart" in log_file.read_text()
    assert credentials(e.pid)[str(e.pid)]["Uid"] == f"{NOBODY} {NOBODY} {NOBODY} {NOBODY}"

    rotated = tmp_path / "echod.log.1"
    os.rename(log_file, rotated)
    e.signal(signal.SIGUSR1)
    e.wait_log("logging continues to the old file")
    assert "cannot open log file" in e.log() and "Permission denied" in e.log(), e.log()
    assert echo_once("127.0.0.1", port, b"still logged") == b"still logged"
    wait_file(rotated, "connection closed")
    assert not log_file.exists()
    assert e.stop() == 0
