"""Start-up, configuration errors, check-config, SIGTERM drain and logging through the real binary."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from conftest import Echod, echod_binary, echod_environ, free_port, recv_exactly


def run(args, env=None, timeout=20):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOD_")}
    full_env.update(env or {})
    return subprocess.run([echod_binary(), *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def test_version_and_help():
    out = run(["--version"])
    assert out.returncode == 0 and out.stdout.strip()[0].isdigit()
    out = run(["--help"])
    assert out.returncode == 0 and "check-config" in out.stdout
    out = run(["help", "run"])
    assert out.returncode == 0 and "--listen" in out.stdout and "--config" in out.stdout


def test_invalid_config_refuses_to_start_with_exit_78(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen: ['127.0.0.1:1']\nlimits:\n  max_conections: 5\n")
    out = run(["--config", str(cfg)])
    assert out.returncode == 78
    assert "max_conections" in out.stderr and str(cfg) in out.stderr


def test_unparsable_address_names_key_and_value(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen: ['127.0.0.1:99999']\n")
    out = run(["--config", str(cfg)])
    assert out.returncode == 78
    assert "listen" in out.stderr and "99999" in out.stderr


def test_check_config_prints_effective_values_and_origins(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("limits:\n  idle_timeout: 45s\n")
    out = run(["check-config", "--config", str(cfg), "--threads", "3"], env={"ECHOD_LOG_LEVEL": "debug"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for key in (
        "listen",
        "threads",
        "max_connections",
        "max_connections_per_ip",
        "idle_timeout",
        "max_pending_bytes",
        "drain_timeout",
        "level",
        "format",
        "reads",
        "queue_capacity",
    ):
        assert key in text, f"{key} missing from check-config output"
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if ":" in line}
    assert "45s" in lines["idle_timeout"] and str(cfg) in lines["idle_timeout"]
    assert "3" in lines["threads"] and "command line" in lines["threads"]
    assert "debug" in lines["level"] and "ECHOD_LOG_LEVEL" in lines["level"]


def test_check_config_reports_every_problem(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("threads: zero\nlimits:\n  idle_timeout: soon\n  max_conections: 1\n")
    out = run(["check-config", "--config", str(cfg)])
    assert out.returncode == 1
    for word in ("threads", "idle_timeout", "max_conections"):
        assert word in out.stderr


def test_environment_overrides_file(start_echod, port):
    other = free_port()
    e = start_echod(config=f"listen: ['127.0.0.1:{other}']\n", env={"ECHOD_LISTEN": f"127.0.0.1:{port}"}, ready=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"env")
        assert recv_exactly(s, 3) == b"env"
    assert e.stop() == 0


def test_sigterm_drains_open_connections_then_exits_0(start_echod, port):
    e = start_echod(config=f"listen: ['127.0.0.1:{port}']\nshutdown:\n  drain_timeout: 10s\n", ready=True)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"before")
    assert recv_exactly(s, 6) == b"before"
    e.signal(signal.SIGTERM)
    time.sleep(0.5)
    # Still echoing during the drain...
    s.sendall(b"during")
    assert recv_exactly(s, 6) == b"during"
    # ...but no longer accepting.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert e.proc.poll() is None
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b""
    s.close()
    assert e.proc.wait(timeout=5) == 0
    assert "drain" in e.log()


def test_drain_timeout_closes_the_rest(start_echod, port):
    e = start_echod(config=f"listen: ['127.0.0.1:{port}']\nshutdown:\n  drain_timeout: 1s\n", ready=True)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    t0 = time.monotonic()
    e.signal(signal.SIGTERM)
    assert e.proc.wait(timeout=10) == 0
    assert 0.8 < time.monotonic() - t0 < 5
    s.settimeout(2)
    assert s.recv(1) == b""


def test_bind_failure_is_a_clear_error(start_echod, port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = run(["--listen", f"127.0.0.1:{port}"])
    assert out.returncode == 1
    assert f"127.0.0.1:{port}" in out.stderr and "Address already in use" in out.stderr


# The embedded defaults listen on 127.0.0.1:8888 and [::1]:8888. Where IPv6 is switched off
# (net.ipv6.conf.*.disable_ipv6=1), [::1] cannot be bound: echod must serve IPv4 and say why, not refuse to start,
# or the defaults (and the Debian package's start on install) fail on such hosts. Run in a network namespace of
# the test's own, with its own loopback, so that nothing of the machine's is touched.
NO_IPV6_SCRIPT = r"""
ip link set lo up
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1
"$0" --log-format text 2>"$1" &
pid=$!
for i in $(seq 200); do nc -z 127.0.0.1 8888 2>/dev/null && break; sleep 0.05; done
printf 'hello over IPv4\n' | nc -N -w 5 127.0.0.1 8888
kill -TERM $pid
wait $pid
echo "exit=$?"
"""


def test_defaults_serve_ipv4_where_ipv6_is_switched_off(tmp_path):
    missing = [tool for tool in ("unshare", "ip", "sysctl", "nc") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {', '.join(missing) or 'nothing else'} for a private network namespace")
    log = tmp_path / "stderr.log"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", NO_IPV6_SCRIPT, echod_binary(), str(log)],
        capture_output=True,
        text=True,
        timeout=30,
        env=echod_environ(),
    )
    text = log.read_text()
    assert result.stdout.splitlines() == ["hello over IPv4", "exit=0"], result.stdout + result.stderr + text
    assert "this host has no IPv6: not listening on this address address=[::1]:8888" in text, text
    assert 'listeners="echo 127.0.0.1:8888"' in text, text


def test_json_log_lines_and_connection_records(start_echod, port):
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--log-format", "json"], ready=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"json please")
        assert recv_exactly(s, 11) == b"json please"
    time.sleep(0.3)
    assert e.stop() == 0
    records = [json.loads(line) for line in e.log().splitlines() if line.strip()]
    messages = [r.get("msg") or r.get("message") for r in records]
    assert "echod started" in messages
    closed = [r for r in records if (r.get("msg") or r.get("message")) == "connection closed"]
    assert closed, messages
    flat = json.dumps(closed[0])
    assert "11" in flat and "peer_closed" in flat


def test_probes_without_data_are_not_logged_at_info(start_echod, port):
    e = start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    for _ in range(20):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    time.sleep(0.3)
    assert e.stop() == 0
    assert "connection closed" not in e.log()


def test_log_reads_logs_every_read_with_preview(start_echod, port):
    e = start_echod(config=f"listen: ['127.0.0.1:{port}']\nlog:\n  reads: true\n", ready=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"line one\n")
        assert recv_exactly(s, 9) == b"line one\n"
    time.sleep(0.3)
    assert e.stop() == 0
    log = e.log()
    read_lines = [line for line in log.splitlines() if " read " in line]
    assert len(read_lines) == 1, log
    # The preview is escaped once by echod (\n) and its backslash quoted again by the text format.
    assert "bytes=9" in read_lines[0] and 'data="line one\\n"' in read_lines[0]


def test_blocked_log_sink_never_stalls_echo(port):
    """stderr is a pipe nobody reads: once it is full, log records are dropped, and echo goes on."""
    r, w = os.pipe()
    e = Echod(config=f"listen: ['127.0.0.1:{port}']\nlog:\n  reads: true\n  queue_capacity: 64\n", stderr=w, ready=True)
    os.close(w)
    try:
        deadline = time.monotonic() + 60
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for i in range(20000):  # each read logs: the 64 KiB pipe fills within a few hundred
                s.sendall(b"%08d" % i)
                assert recv_exactly(s, 8, timeout=5) == b"%08d" % i
                assert time.monotonic() < deadline
        assert e.proc.poll() is None
        # Unblock the sink: the writer resumes and reports what it dropped.
        os.set_blocking(r, False)
        e.proc.send_signal(signal.SIGTERM)
        text = b""
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                chunk = os.read(r, 1 << 16)
                if not chunk and e.proc.poll() is not None:
                    break
                text += chunk
            except BlockingIOError:
                time.sleep(0.05)
        assert e.proc.wait(timeout=10) == 0
        assert b"dropped" in text
    finally:
        os.close(r)
        e.close()


def test_log_file_reopened_on_sigusr1(start_echod, port, tmp_path):
    log = tmp_path / "echod.log"
    e = start_echod(config=f"listen: ['127.0.0.1:{port}']\nlog:\n  file: {log}\n", ready=True)

    def one_connection(tag: bytes):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(tag)
            assert recv_exactly(s, len(tag)) == tag

    one_connection(b"first")
    time.sleep(0.3)
    assert "echod started" in log.read_text()
    rotated = tmp_path / "echod.log.1"
    log.rename(rotated)
    e.signal(signal.SIGUSR1)
    time.sleep(0.3)
    one_connection(b"second")
    time.sleep(0.3)
    assert log.exists(), "SIGUSR1 did not reopen the log file"
    assert "connection closed" in log.read_text()
    assert e.stop() == 0


def test_sigabrt_from_outside_really_ends_the_process(start_echod, port):
    """systemd's watchdog timeout sends SIGABRT: echod must die (and be restarted), not print a backtrace and go on."""
    e = start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    e.signal(signal.SIGABRT)
    assert e.proc.wait(timeout=20) == -signal.SIGABRT
    assert "SIGABRT received" in e.log()


def test_ready_wait_fails_with_echods_stderr_when_it_exits_first(port):
    """The fixtures' wait for READY=1 gives up as soon as echod exits, with what echod said, not after a timeout."""
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        Echod(["--listen", f"127.0.0.1:{port}", "--threads", "0"], ready=True).close()
    assert "echod exited with 78 before READY=1" in str(failure.value)  # EX_CONFIG
    assert "between 1 and 1024" in str(failure.value)  # echod's own message, from its stderr
    assert time.monotonic() - t0 < 5
