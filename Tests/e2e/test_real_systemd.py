"""echod under a real systemd (booted in a container by nspawn.py), with the shipped units from deploy/.

What a user of the units relies on, checked through systemctl as they would do it:
- `systemctl start echod` returns only once echo answers (READY=1 only when serving), with a status line;
- an invalid configuration fails the start (exit 78) and is not restarted (RestartPreventExitStatus=78);
- the hardening is really applied to the running process, and systemd-analyze agrees inside;
- `systemctl reload` puts a changed configuration in force without dropping an open connection;
- `systemctl stop` drains (open connections still echo), then the unit is inactive with Result=success;
- a stalled event loop gets echod killed by the watchdog and restarted;
- echod.socket: the first connection starts echod; `systemctl restart echod` under load refuses no connection;
- the unit's system-call filter lets echod serve on io_uring (io.backend), and where a drop-in forbids io_uring,
  io.backend: auto falls back to epoll.

The binary under test is $ECHOD_BIN (default .build/debug/echod); its directory is bound read-only into the container
at /opt/echod and /usr/local/bin/echod (the unit's ExecStart=) is a symlink to it in the container's overlay.
One container serves the whole module (boot and halt take well under a second each); every test starts from
stopped units, the base configuration and no drop-in but the run's I/O backend's (ECHOD_E2E_IO_BACKEND, under /run).
"""

import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import IO_BACKEND, Echod, echod_knows_io_backend, free_port
from nspawn import Container

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DROP_IN_DIR = "/etc/systemd/system/echod.service.d"
# The run's I/O backend: under /run, which reset() leaves alone, and named to sort before any test's drop-in (systemd
# applies the drop-ins of every directory in the order of their names), so that a test's own ECHOD_IO_BACKEND wins.
RUN_DROP_IN = "/run/systemd/system/echod.service.d/00-e2e-io-backend.conf"
CONFIG_PATH = "/etc/echod/echod.yaml"
BASE_CONFIG = "listen: ['127.0.0.1:7']\nshutdown:\n  drain_timeout: 5s\n"
MAX_EXPOSURE = 1.5


def binary_under_test() -> Path:
    path = Path(os.environ.get("ECHOD_BIN") or REPO / ".build" / "debug" / "echod")
    if not os.access(path, os.X_OK):
        pytest.skip(f"real-systemd tests skipped: no echod binary at {path} (build it, or set ECHOD_BIN)")
    return path.resolve()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    binary = binary_under_test()
    units = tmp_path_factory.mktemp("units")
    for name in ("echod.service", "echod.socket"):
        shutil.copy(DEPLOY / name, units / name)
    with Container(units=units, binds={"/opt/echod": binary.parent}) as c:
        c.symlink("/usr/local/bin/echod", f"/opt/echod/{binary.name}")
        run_io_backend_drop_in(c)
        c.run("systemctl", "daemon-reload", check=True)
        yield c


def run_io_backend_drop_in(box):
    """Every start of echod.service in `box` on the run's I/O backend (conftest.IO_BACKEND), when it names one; the
    caller reloads systemd."""
    if IO_BACKEND:
        box.write(RUN_DROP_IN, f"[Service]\nEnvironment=ECHOD_IO_BACKEND={IO_BACKEND}\n")


@pytest.fixture
def c(box):
    """The container, with echod and echod.socket stopped, the base configuration and no drop-in."""
    reset(box)
    yield box
    reset(box)


def reset(box):
    box.run("systemctl", "stop", "echod.socket", "echod.service", timeout=30)
    box.run("systemctl", "reset-failed", "echod.socket", "echod.service")
    drop_ins = box.path(DROP_IN_DIR)
    if drop_ins.exists():
        shutil.rmtree(drop_ins)
        box.run("systemctl", "daemon-reload", check=True)
    box.write(CONFIG_PATH, BASE_CONFIG)


def journal(box) -> str:
    return "\n--- journal of echod.service ---\n" + box.journal("echod.service")[-6000:]


def start(box, unit="echod.service"):
    result = box.run("systemctl", "start", unit, timeout=30)
    assert result.returncode == 0, f"systemctl start {unit}: {result.stdout}{result.stderr}{journal(box)}"


def round_trip(box, port: int, payload: bytes, sock: socket.socket | None = None) -> bytes:
    own = sock is None
    s = box.connect(port) if own else sock
    try:
        s.settimeout(5)
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                break
            got += chunk
        return got
    finally:
        if own:
            s.close()


def wait_until(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def main_pid(box) -> int:
    return int(box.show("echod.service", "MainPID")["MainPID"])


# -- start and status -------------------------------------------------------------------------------------------


def test_start_returns_only_once_echo_answers(c):
    start(c)
    # No retry: READY=1 must mean the listener is open.
    assert round_trip(c, 7, b"first words\n") == b"first words\n", journal(c)
    props = c.show("echod.service", "ActiveState", "SubState", "StatusText", "Type")
    assert (props["ActiveState"], props["SubState"], props["Type"]) == ("active", "running", "notify")
    assert "serving" in props["StatusText"], f"StatusText={props['StatusText']!r}"


def test_invalid_config_fails_start_and_is_not_restarted(c):
    c.write(CONFIG_PATH, "listen: ['127.0.0.1:7']\nlimits:\n  max_conections: 5\n")  # misspelt key

    result = c.run("systemctl", "start", "echod", timeout=30)

    assert result.returncode != 0, "start succeeded with an invalid configuration" + journal(c)
    time.sleep(1.5)  # RestartSec=1s: a restart would have happened by now
    props = c.show("echod.service", "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78", "NRestarts": "0"}, str(
        props
    ) + journal(c)


def test_host_without_ipv6_serves_ipv4_and_warns(c):
    # A kernel without IPv6 as the unit sees it: RestrictAddressFamilies= without AF_INET6 makes socket(AF_INET6)
    # fail with EAFNOSUPPORT, as on a host booted with ipv6.disable=1. The IPv6 address is skipped with a warning;
    # refusing to start would make the default configuration (127.0.0.1 and ::1) fail on such hosts.
    c.write(CONFIG_PATH, "listen: ['127.0.0.1:7', '[::1]:7']\n")
    c.write(
        f"{DROP_IN_DIR}/no-ipv6.conf", "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_INET AF_UNIX\n"
    )
    c.run("systemctl", "daemon-reload", check=True)

    start(c)

    assert round_trip(c, 7, b"over IPv4\n") == b"over IPv4\n", journal(c)
    warnings = [r for r in journal_records(c) if r.get("MESSAGE", "").startswith("this host has no IPv6")]
    assert [(r.get("ECHOD_ADDRESS"), "Address family not supported" in r.get("ECHOD_ERROR", "")) for r in warnings] == [
        ("[::1]:7", True)
    ], str(warnings) + journal(c)

    # With nothing but IPv6 configured, nothing can be served: that stays an error.
    c.run("systemctl", "stop", "echod", check=True)
    c.write(CONFIG_PATH, "listen: ['[::1]:7']\n")
    result = c.run("systemctl", "start", "echod", timeout=30)
    assert result.returncode != 0, "started with no address it could serve" + journal(c)
    assert any(
        "this host has no IPv6, and no other address is configured" in r.get("ECHOD_ERROR", "")
        for r in journal_records(c)
    ), journal(c)


def journal_records(box) -> list[dict]:
    """echod.service's journal entries with every field: the journal sink writes metadata as fields of their own
    (ECHOD_ADDRESS=, ECHOD_ERROR=), which the short output leaves out."""
    out = box.run("journalctl", "--no-pager", "-o", "json", "-u", "echod.service", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


# -- hardening --------------------------------------------------------------------------------------------------


def test_hardening_is_applied_to_the_running_process(c):
    start(c)
    pid = main_pid(c)
    status = dict(line.split(":", 1) for line in c.run("cat", f"/proc/{pid}/status", check=True).stdout.splitlines())
    fields = {k: v.split() for k, v in status.items()}
    assert fields["Uid"][0] != "0" and fields["Gid"][0] != "0", status["Uid"]  # DynamicUser
    assert fields["NoNewPrivs"] == ["1"]
    assert fields["Seccomp"] == ["2"]  # a filter, not strict mode
    cap_net_bind_service = 1 << 10
    assert int(fields["CapEff"][0], 16) == cap_net_bind_service  # port 7, and nothing else
    assert int(fields["CapBnd"][0], 16) == cap_net_bind_service
    # MemoryDenyWriteExecute= and the system-call filter did not stop the Swift binary from serving.
    assert round_trip(c, 7, b"hardened") == b"hardened", journal(c)


def test_systemd_analyze_security_inside(c):
    result = c.run("systemd-analyze", "security", "echod.service")
    match = re.search(r"Overall exposure level for echod\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


# -- reload -----------------------------------------------------------------------------------------------------


def test_reload_applies_changed_config_and_keeps_connection(c):
    start(c)
    held = c.connect(7)
    try:
        assert round_trip(c, 7, b"before reload", held) == b"before reload"
        pid = main_pid(c)
        c.write(CONFIG_PATH, "listen: ['127.0.0.1:7', '127.0.0.1:7777']\nshutdown:\n  drain_timeout: 5s\n")

        result = c.run("systemctl", "reload", "echod", timeout=30)

        assert result.returncode == 0, result.stdout + result.stderr + journal(c)

        def new_listener_answers():
            try:
                return round_trip(c, 7777, b"new listener") == b"new listener"
            except OSError:
                return False

        assert wait_until(new_listener_answers, timeout=5), "the listener added by the reload never answered" + journal(
            c
        )
        assert round_trip(c, 7, b"after reload", held) == b"after reload", journal(c)
        assert main_pid(c) == pid  # reloaded in place, not restarted
        props = c.show("echod.service", "ActiveState", "StatusText")
        assert props["ActiveState"] == "active"
        assert wait_until(
            lambda: "serving 2 listeners" in c.show("echod.service", "StatusText")["StatusText"], timeout=7
        ), c.show("echod.service", "StatusText")
    finally:
        held.close()


# -- stop -------------------------------------------------------------------------------------------------------


def test_stop_drains_open_connections_then_succeeds(c):
    start(c)
    held = c.connect(7)
    try:
        assert round_trip(c, 7, b"before stop", held) == b"before stop"

        stopping = c.popen("systemctl", "stop", "echod")

        deactivating = wait_until(
            lambda: c.show("echod.service", "ActiveState")["ActiveState"] == "deactivating", 3, 0.05
        )
        assert deactivating, "echod did not drain: " + str(c.show("echod.service", "ActiveState")) + journal(c)
        assert round_trip(c, 7, b"while draining", held) == b"while draining", journal(c)
    finally:
        held.close()
    closed_at = time.monotonic()
    out, _ = stopping.communicate(timeout=30)
    drained_in = time.monotonic() - closed_at
    assert stopping.returncode == 0, out
    props = c.show("echod.service", "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, props
    # The drain ends when the last connection is gone, not at drain_timeout (5 s).
    assert drained_in < 3, f"stop took {drained_in:.1f}s after the last connection closed"


# -- watchdog ---------------------------------------------------------------------------------------------------


def test_watchdog_restarts_a_stalled_echod(c):
    c.write(f"{DROP_IN_DIR}/watchdog.conf", "[Service]\nWatchdogSec=3\nEnvironment=ECHOD_TEST_HOOKS=1\nLimitCORE=0\n")
    c.run("systemctl", "daemon-reload", check=True)
    start(c)
    stalled_pid = main_pid(c)
    assert round_trip(c, 7, b"alive") == b"alive"

    # Test hook: SIGUSR2 makes event loop 0 sleep forever; the pings must stop, systemd must kill and restart.
    c.run("systemctl", "kill", "--kill-who=main", "--signal=SIGUSR2", "echod", check=True)

    results = set()

    def restarted():
        props = c.show("echod.service", "Result", "NRestarts", "MainPID", "ActiveState")
        results.add(props["Result"])
        return (
            int(props["NRestarts"]) >= 1
            and props["MainPID"] not in ("0", str(stalled_pid))
            and props["ActiveState"] == "active"
        )

    assert wait_until(restarted, timeout=15, interval=0.2), f"not restarted; Results seen: {results}" + journal(c)
    log = c.journal("echod.service")
    assert "watchdog" in results or "Failed with result 'watchdog'" in log, f"Results seen: {results}\n{log[-3000:]}"
    assert "Watchdog timeout" in log, log[-3000:]
    assert round_trip(c, 7, b"back") == b"back", journal(c)


# -- socket activation ------------------------------------------------------------------------------------------


def test_first_connection_starts_echod_through_the_socket(c):
    start(c, "echod.socket")
    assert c.show("echod.service", "ActiveState")["ActiveState"] == "inactive"

    assert round_trip(c, 8888, b"wake up") == b"wake up", journal(c)

    assert c.show("echod.service", "ActiveState")["ActiveState"] == "active"
    assert round_trip(c, 7, b"port seven too") == b"port seven too", journal(c)


def test_restart_with_the_socket_refuses_no_connection(c):
    start(c, "echod.socket")
    assert round_trip(c, 8888, b"warm") == b"warm", journal(c)
    first_pid = main_pid(c)
    done = threading.Event()
    outcome = {"ok": 0, "failures": []}

    def client_loop():  # runs on a thread inside the container's network namespace
        n = 0
        while n < 200 or not done.is_set():
            n += 1
            payload = f"connection {n}\n".encode()
            try:
                with socket.create_connection(("127.0.0.1", 8888), timeout=10) as s:
                    s.settimeout(10)
                    s.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        got += chunk
                if got == payload:
                    outcome["ok"] += 1
                else:
                    outcome["failures"].append((n, f"got {got!r}"))
            except OSError as error:
                outcome["failures"].append((n, repr(error)))
            time.sleep(0.005)
            if n >= 2000:
                break

    loop = c.in_netns(client_loop)
    time.sleep(0.2)
    restart = c.run("systemctl", "restart", "echod", timeout=30)
    time.sleep(0.3)  # and some more connections to the new instance
    done.set()
    loop.result(timeout=60)

    assert restart.returncode == 0, restart.stdout + restart.stderr + journal(c)
    assert outcome["failures"] == [], f"{len(outcome['failures'])} failed, {outcome['ok']} ok" + journal(c)
    assert outcome["ok"] >= 200
    assert main_pid(c) not in (0, first_pid), "echod was not restarted" + journal(c)


def test_socket_only_drop_in_still_serves(c):
    """deploy/echod-socket-only.conf: no network namespace of its own, no AF_INET, no capability; passed sockets
    still accept."""
    c.write(f"{DROP_IN_DIR}/socket-only.conf", (DEPLOY / "echod-socket-only.conf").read_text())
    c.run("systemctl", "daemon-reload", check=True)
    start(c, "echod.socket")

    assert round_trip(c, 8888, b"from afar") == b"from afar", journal(c)

    status = c.run("cat", f"/proc/{main_pid(c)}/status", check=True).stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert c.run("readlink", f"/proc/{main_pid(c)}/ns/net").stdout != c.run("readlink", "/proc/1/ns/net").stdout


# -- io_uring ---------------------------------------------------------------------------------------------------


def io_uring_rings(box, pid: int) -> int:
    """How many io_uring instances the process holds open (one per event loop on that backend)."""
    fds = box.run("ls", "-l", f"/proc/{pid}/fd", check=True).stdout
    return fds.count("anon_inode:[io_uring]")


def started_record(box) -> dict:
    """The start-up record ("echod started") of the running echod.service, its own fields only (systemd's
    trusted fields, _*, left out)."""
    invocation = box.show("echod.service", "InvocationID")["InvocationID"]
    started = [
        r
        for r in journal_records(box)
        if r.get("_SYSTEMD_INVOCATION_ID") == invocation and r.get("MESSAGE") == "echod started"
    ]
    assert started, "no start-up record of this invocation" + journal(box)
    return {k: v for k, v in started[-1].items() if not k.startswith("_")}


def io_uring_unavailable_here() -> str | None:
    """None when the echod under test serves on io_uring on this host outside any unit (so that a failure under the
    unit is the unit's), else why not: an echod without the io.backend key, or a kernel, sysctl or seccomp filter of
    the host's own that refuses io_uring."""
    binary = str(binary_under_test())
    if not echod_knows_io_backend(binary):
        return f"{binary} has no io.backend key yet (no --io-backend in `echod run --help`)"
    try:
        e = Echod(["--listen", f"127.0.0.1:{free_port()}", "--io-backend", "io_uring"], ready=True)
    except AssertionError as error:
        return f"echod --io-backend io_uring does not start on this host: {str(error)[-500:]}"
    try:
        rings = sum(os.readlink(f) == "anon_inode:[io_uring]" for f in Path(f"/proc/{e.pid}/fd").iterdir())
        return None if rings else f"echod --io-backend io_uring runs without a ring on this host:\n{e.log()[-500:]}"
    finally:
        e.close()


def test_the_unit_lets_echod_serve_on_io_uring(c):
    # The shipped filter (@system-service, which holds @aio and with it io_uring_setup/_enter/_register, minus
    # @privileged and @resources) must not refuse what io.backend: io_uring needs.
    why = io_uring_unavailable_here()
    if why:
        pytest.skip(f"io_uring under the unit not tested: {why}")
    c.write(f"{DROP_IN_DIR}/io-uring.conf", "[Service]\nEnvironment=ECHOD_IO_BACKEND=io_uring\n")
    c.run("systemctl", "daemon-reload", check=True)

    start(c)

    assert round_trip(c, 7, b"through the ring\n") == b"through the ring\n", journal(c)
    assert io_uring_rings(c, main_pid(c)) >= 1, "echod runs without a ring" + journal(c)
    record = started_record(c)
    assert "io_uring" in " ".join(map(str, record.values())), f"start-up record: {record}"


def test_io_uring_forbidden_by_a_drop_in_falls_back_to_epoll(c):
    # An operator who forbids io_uring (as some hardening guides do) with io.backend: auto still gets an echo service.
    c.write(
        f"{DROP_IN_DIR}/no-io-uring.conf",
        "[Service]\nSystemCallFilter=~io_uring_setup io_uring_enter io_uring_register\n"
        "Environment=ECHOD_IO_BACKEND=auto\n",
    )
    c.run("systemctl", "daemon-reload", check=True)

    start(c)

    assert round_trip(c, 7, b"on epoll\n") == b"on epoll\n", journal(c)
    assert io_uring_rings(c, main_pid(c)) == 0, "echod holds a ring that the filter forbids" + journal(c)
    if not echod_knows_io_backend(str(binary_under_test())):
        pytest.skip(f"the start-up record's backend not checked: {binary_under_test()} has no io.backend key yet")
    record = started_record(c)
    assert "epoll" in " ".join(map(str, record.values())), f"start-up record: {record}"
