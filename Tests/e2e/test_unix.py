"""Unix-socket listeners end to end: real clients (Python AF_UNIX sockets, socat, nc -U, echod probe) against the
real binary: echo, permissions, stale files, exit clean-up, abstract names, systemd-passed sockets, per-uid limits,
reload."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import echod_binary, echod_environ, recv_exactly, seeded_bytes, socket_activate_setenv

NOBODY = 65534  # nobody:nogroup on Debian


@pytest.fixture
def sockdir():
    """A directory for socket files that every user may enter (the Echod fixture's own is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="echod-unix-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config(*listen, extra=""):
    items = ", ".join(f'"{item}"' for item in listen)
    return f"listen: [{items}]\nlog:\n  format: text\n{extra}"


def connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def echo_round_trip(path, payload):
    """Sends `payload` from a thread while reading (a client that only writes would meet echod's backpressure), then
    half-closes; returns everything echoed up to echod's close."""
    with connect(path, timeout=20) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = recv_exactly(s, len(payload) + 1, timeout=20)
        sender.join(timeout=20)
    return got


def probe(*args, preexec_fn=None):
    return subprocess.run(
        [echod_binary(), "probe", *args, "--timeout", "2s"],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=preexec_fn,
    )


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def run_failing(args=(), config_text=None, timeout=15):
    """Runs echod expecting it to refuse to start; returns (exit status, stderr)."""
    with tempfile.TemporaryDirectory(prefix="echod-e2e-") as tmp:
        cmd = [echod_binary(), *args]
        if config_text is not None:
            cfg = Path(tmp) / "echod.yaml"
            cfg.write_text(config_text)
            cmd += ["--config", str(cfg)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOD_", "NOTIFY_SOCKET", "LISTEN_"))}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        return done.returncode, done.stderr


# --- echo ------------------------------------------------------------------------------------------------------------


def test_echo_is_byte_exact_over_a_unix_socket(start_echod, sockdir):
    path = sockdir / "echo.sock"
    e = start_echod(config=config(f"unix:{path}"), ready=True)
    payload = seeded_bytes(1 << 20, seed=12)
    assert echo_round_trip(path, payload) == payload
    # socat and OpenBSD netcat, the tools an operator would reach for.
    out = subprocess.run(
        ["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"], input=b"\x00\xffsocat\n", capture_output=True, timeout=10
    )
    assert out.stdout == b"\x00\xffsocat\n"
    out = subprocess.run(["nc", "-N", "-U", str(path)], input=b"netcat\n", capture_output=True, timeout=10)
    assert out.stdout == b"netcat\n"
    log = e.wait_log("connection closed")
    assert f"unix:{path}" in log  # the listener is named by its path
    assert "peer=unix:uid:0,pid:" in log  # and the peer by its credentials


def test_abstract_names_echo_and_leave_no_file(start_echod, sockdir):
    name = f"echod-test-{os.getpid()}"
    e = start_echod(config=config(f"unix:@{name}"), ready=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect("\0" + name)
        s.sendall(b"abstract\x00")
        assert recv_exactly(s, 9) == b"abstract\x00"
    out = subprocess.run(
        ["socat", "-t", "5", "-", f"ABSTRACT-CONNECT:{name}"], input=b"socat", capture_output=True, timeout=10
    )
    assert out.stdout == b"socat"
    assert probe(f"unix:@{name}").returncode == 0
    assert e.stop() == 0
    assert not any(sockdir.iterdir())


def test_reads_are_logged_with_the_unix_peer(start_echod, sockdir):
    path = sockdir / "echo.sock"
    e = start_echod(config=config(f"unix:{path}", extra="  reads: true\n"), ready=True)
    with connect(path) as s:
        s.sendall(b"hello\n")
        assert recv_exactly(s, 6) == b"hello\n"
    log = e.wait_log('read bytes=6 data="hello\\n"')
    line = next(line for line in log.splitlines() if " read bytes=6 " in line)
    assert f"peer=unix:uid:0,pid:{os.getpid()}" in line


# --- permissions -----------------------------------------------------------------------------------------------------


def test_default_mode_is_0660_and_owner_unchanged(start_echod, sockdir):
    path = sockdir / "echo.sock"
    start_echod(config=config(f"unix:{path}"), ready=True)
    info = os.lstat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert (info.st_uid, info.st_gid) == (0, 0)


def test_mode_owner_and_group_are_applied(start_echod, sockdir):
    path = sockdir / "echo.sock"
    start_echod(
        config=config(f"unix:{path}", extra='unix:\n  mode: "0640"\n  owner: nobody\n  group: "65534"\n'), ready=True
    )
    info = os.lstat(path)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
    # 0640: the owner (nobody) may connect, others may not.
    assert probe(f"unix:{path}", preexec_fn=as_nobody).returncode == 0


def test_permission_denied_is_reported_by_probe(start_echod, sockdir):
    path = sockdir / "echo.sock"
    start_echod(config=config(f"unix:{path}", extra='unix:\n  mode: "0600"\n'), ready=True)
    denied = probe(f"unix:{path}", preexec_fn=as_nobody)
    assert denied.returncode == 2
    assert "Permission denied" in denied.stdout


def test_switching_user_gives_the_files_to_that_user_who_removes_them_at_exit(start_echod, sockdir):
    os.chown(sockdir, NOBODY, NOBODY)  # what RuntimeDirectory= does for the unit's user
    path = sockdir / "echo.sock"
    # Not ready=True: the fixture's notification socket is in a directory nobody cannot enter.
    e = start_echod(args=["--user", "nobody"], config=config(f"unix:{path}"))
    e.wait_log("echod started")
    info = os.lstat(path)
    assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
    assert probe(f"unix:{path}", preexec_fn=as_nobody).returncode == 0
    assert e.stop() == 0
    assert not path.exists(), e.log()


def test_unknown_owner_or_group_is_a_configuration_error(sockdir):
    path = sockdir / "echo.sock"
    status, err = run_failing(config_text=config(f"unix:{path}", extra="unix:\n  owner: no-such-user-echod\n"))
    assert status == 78 and 'unix.owner \\"no-such-user-echod\\": no such user' in err
    status, err = run_failing(config_text=config(f"unix:{path}", extra="unix:\n  group: no-such-group-echod\n"))
    assert status == 78 and 'unix.group \\"no-such-group-echod\\": no such group' in err
    assert not path.exists()


# --- stale files, live sockets, other files ---------------------------------------------------------------------------


def test_a_stale_socket_file_is_removed_and_bound_again(start_echod, sockdir):
    path = sockdir / "echo.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()  # the file stays, nothing listens: what a killed run leaves
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    e = start_echod(config=config(f"unix:{path}"), ready=True)
    log = e.wait_log("removed a stale socket file from an earlier run")
    assert str(path) in log
    assert echo_round_trip(path, b"fresh") == b"fresh"


def test_a_live_socket_is_refused_and_left_serving(sockdir):
    path = sockdir / "echo.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(8)
        status, err = run_failing(config_text=config(f"unix:{path}"))
        assert status == 1
        assert f"address in use: another process serves {path}" in err
        # The other process's socket is untouched: a client still reaches it (after echod's own check connection,
        # which waits closed in the backlog).
        with connect(path) as c:
            c.sendall(b"x")
            live.settimeout(5)
            got = b""
            for _ in range(2):
                conn, _ = live.accept()
                with conn:
                    conn.settimeout(5)
                    got = conn.recv(1)
                if got:
                    break
            assert got == b"x"


def test_a_path_that_is_not_a_socket_is_refused_and_never_removed(sockdir):
    path = sockdir / "echo.sock"
    path.write_text("precious\n")
    status, err = run_failing(config_text=config(f"unix:{path}"))
    assert status == 1
    assert "exists and is not a socket" in err
    assert path.read_text() == "precious\n"


def test_a_missing_directory_is_a_clear_error(sockdir):
    status, err = run_failing(config_text=config(f"unix:{sockdir}/missing/echo.sock"))
    assert status == 1
    assert f"the directory {sockdir}/missing does not exist" in err
    assert "RuntimeDirectory=" in err


def test_bad_unix_addresses_are_configuration_errors():
    status, err = run_failing(args=["--listen", "unix:/" + "a" * 120])
    assert status == 78 and "path too long (121 bytes, the limit is 107)" in err
    status, err = run_failing(args=["--listen", "unix:relative.sock"])
    assert status == 78 and "must be absolute" in err


# --- exit and reload -------------------------------------------------------------------------------------------------


def test_the_socket_file_is_removed_at_a_clean_exit(start_echod, sockdir):
    path = sockdir / "echo.sock"
    e = start_echod(config=config(f"unix:{path}"), ready=True)
    assert path.exists()
    assert e.stop() == 0
    assert not path.exists()


def test_reload_adds_keeps_and_removes_unix_listeners(start_echod, sockdir, port):
    kept = sockdir / "kept.sock"
    added = sockdir / "added.sock"
    e = start_echod(config=config(f"127.0.0.1:{port}", f"unix:{kept}"), ready=True)
    inode = os.lstat(kept).st_ino
    with connect(kept) as open_client:
        e.config_path.write_text(config(f"127.0.0.1:{port}", f"unix:{kept}", f"unix:{added}"))
        e.signal(signal.SIGHUP)
        e.wait_log("configuration reloaded")
        assert echo_round_trip(added, b"added") == b"added"
        assert os.lstat(kept).st_ino == inode  # kept: the same socket, not a new one
        e.config_path.write_text(config(f"127.0.0.1:{port}", f"unix:{added}"))
        e.signal(signal.SIGHUP)
        e.wait_log(f"stopped listening address=unix:{kept}")
        deadline = time.monotonic() + 5
        while kept.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not kept.exists()
        # The connection made before the reload keeps echoing.
        open_client.sendall(b"still")
        assert recv_exactly(open_client, 5) == b"still"
    assert echo_round_trip(added, b"ok") == b"ok"


# --- limits ----------------------------------------------------------------------------------------------------------


def test_max_connections_per_ip_counts_unix_peers_per_uid(start_echod, sockdir):
    path = sockdir / "echo.sock"
    e = start_echod(
        config=config(f"unix:{path}", extra='limits:\n  max_connections_per_ip: 1\nunix:\n  mode: "0666"\n'), ready=True
    )
    first = connect(path)
    first.sendall(b"a")
    assert recv_exactly(first, 1) == b"a"
    # A second connection of the same user (root), from another process, is over the limit: closed at once.
    same_user = probe(f"unix:{path}")
    assert same_user.returncode == 1, same_user.stdout  # connected, then closed: "closed by the server" or EPIPE
    e.wait_log("max_connections_per_ip reached")
    # Another user is another peer: nobody's connection is served while root's first one is open.
    other = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", echod_binary(), "probe", f"unix:{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other.returncode == 0, other.stdout + other.stderr
    first.sendall(b"b")
    assert recv_exactly(first, 1) == b"b"
    first.close()


# --- probe -----------------------------------------------------------------------------------------------------------


def test_probe_unix_exit_codes(start_echod, sockdir):
    path = sockdir / "echo.sock"
    start_echod(config=config(f"unix:{path}"), ready=True)
    ok = probe(f"unix:{path}", "--count", "3", "--payload-size", "4KiB")
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok unix:{path}"), ok.stdout
    missing = probe(f"unix:{sockdir}/none.sock")
    assert missing.returncode == 2 and "No such file or directory" in missing.stdout
    stale = sockdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    refused = probe(f"unix:{stale}")
    assert refused.returncode == 2 and "Connection refused" in refused.stdout
    usage = probe("unix:relative.sock")
    assert usage.returncode == 64 and "must be absolute" in usage.stderr


# --- systemd ---------------------------------------------------------------------------------------------------------


def test_a_unix_socket_passed_by_systemd_is_served_and_never_removed(sockdir):
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is missing (Debian package systemd; make test installs it)")
    path = sockdir / "passed.sock"
    env = echod_environ()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                "systemd-socket-activate",
                *socket_activate_setenv(),
                "-l",
                str(path),
                "--fdname=echo",
                echod_binary(),
                "--log-format",
                "text",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        try:
            deadline = time.monotonic() + 10
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            # systemd-socket-activate execs echod on the first connection; the payload waits in the backlog.
            assert echo_round_trip(path, b"activated") == b"activated"
            deadline = time.monotonic() + 5
            while b"echod started" not in (log.seek(0) or log.read()) and time.monotonic() < deadline:
                time.sleep(0.05)
            log.seek(0)
            text = log.read().decode(errors="replace")
            assert f"unix:{path} (from systemd)" in text, text
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # systemd made the file and owns it: echod left it in place.
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_check_config_shows_unix_entries(sockdir):
    done = subprocess.run(
        [
            echod_binary(),
            "check-config",
            "--listen",
            f"unix:{sockdir}/a.sock",
            "--listen",
            "unix:@echod",
            "--listen",
            "127.0.0.1:7",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f'listen: ["unix:{sockdir}/a.sock", "unix:@echod", "127.0.0.1:7"]' in done.stdout
    assert 'mode: "0660"' in done.stdout
