"""`io.backend` end to end: the command line, the environment and the file choose what the worker loops wait on; echod
starts, logs its choice and echoes on each backend; `io_uring` refuses to start where io_uring is not allowed and
`auto` falls back to epoll there, with one line giving the reason.

"Not allowed" is made here as a hardened host makes it: Tests/e2e/helpers/no_io_uring.c, compiled with gcc for this
run, installs a seccomp filter that fails io_uring_setup/enter/register with EPERM and then execs echod. The tests
that need io_uring itself are skipped where this host refuses it anyway (they say so); the refusals under the helper
run everywhere.
"""

import ctypes
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import echod_binary, free_port, recv_exactly
from test_admin import metric, scrape

HELPER_SOURCE = os.path.join(os.path.dirname(__file__), "helpers", "no_io_uring.c")
IO_URING_SETUP = 425  # the same number on every architecture
STARTED = re.compile(r"echod started.*\bio_backend=(\w+)")


# For the tests of what echod does without being told a backend (or told by its file): the run's own backend
# (ECHOD_E2E_IO_BACKEND, which conftest gives every echod as ECHOD_IO_BACKEND) left out.
DEFAULT_BACKEND = {"ECHOD_IO_BACKEND": None}


def host_allows_io_uring() -> bool:
    """Whether this process may make an io_uring (one io_uring_setup, closed at once)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd = libc.syscall(IO_URING_SETUP, 1, params)
    if fd < 0:
        return False
    os.close(fd)
    return True


HOST_ALLOWS_IO_URING = host_allows_io_uring()
needs_io_uring = pytest.mark.skipif(
    not HOST_ALLOWS_IO_URING,
    reason="this host refuses io_uring_setup (kernel.io_uring_disabled, or a seccomp filter around the tests)",
)


@pytest.fixture(scope="module")
def no_io_uring(tmp_path_factory):
    """The path of the compiled seccomp helper."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler (gcc) to build Tests/e2e/helpers/no_io_uring.c")
    binary = tmp_path_factory.mktemp("no-io-uring") / "no_io_uring"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary), HELPER_SOURCE], check=True)
    return str(binary)


def echo_once(port: int, payload: bytes = b"io backend\n\x00\xff") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        assert recv_exactly(s, len(payload)) == payload


def chosen_backend(echod) -> str:
    """The backend the 'echod started' line names."""
    log = echod.wait_log("echod started")
    match = STARTED.search(log)
    assert match, f"'echod started' without io_backend:\n{log}"
    return match.group(1)


def run_to_exit(args, env=None, timeout=20) -> subprocess.CompletedProcess:
    """echod (or the helper before it) run to its exit, for start-up refusals."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOD_", "NOTIFY_SOCKET", "LISTEN_"))}
    clean.update(env or {})
    return subprocess.run(args, env=clean, capture_output=True, text=True, timeout=timeout)


def expected_for(backend: str) -> str:
    if backend == "auto":
        return "io_uring" if HOST_ALLOWS_IO_URING else "epoll"
    return backend


@pytest.mark.parametrize("backend", ["epoll", pytest.param("io_uring", marks=needs_io_uring), "auto"])
def test_each_backend_starts_echoes_and_logs_its_choice(start_echod, port, backend):
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--log-format", "text", "--io-backend", backend], ready=True)
    echo_once(port)
    assert chosen_backend(e) == expected_for(backend)
    assert e.stop() == 0


@needs_io_uring
def test_environment_and_file_choose_like_the_flag_and_the_flag_wins(start_echod):
    port = free_port()
    by_env = start_echod(
        ["--listen", f"127.0.0.1:{port}", "--log-format", "text"], env={"ECHOD_IO_BACKEND": "io_uring"}, ready=True
    )
    echo_once(port)
    assert chosen_backend(by_env) == "io_uring"
    by_env.stop()

    port = free_port()
    by_file = start_echod(
        ["--log-format", "text"], config=f'listen: ["127.0.0.1:{port}"]\nio:\n  backend: io_uring\n', ready=True
    )
    echo_once(port)
    assert chosen_backend(by_file) == "io_uring"
    by_file.stop()

    port = free_port()
    flag_wins = start_echod(
        ["--listen", f"127.0.0.1:{port}", "--log-format", "text", "--io-backend", "epoll"],
        env={"ECHOD_IO_BACKEND": "io_uring"},
        ready=True,
    )
    echo_once(port)
    assert chosen_backend(flag_wins) == "epoll"


@needs_io_uring
def test_metrics_name_the_backend(start_echod, port):
    admin = free_port()
    e = start_echod(
        ["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--io-backend", "io_uring"], ready=True
    )
    echo_once(port)
    text = scrape(admin)
    assert metric(text, "echod_io_backend", {"backend": "io_uring"}) == 1
    assert 'echod_io_backend{backend="epoll"}' not in text
    assert e.stop() == 0


def test_metrics_say_epoll_by_default(start_echod, port):
    admin = free_port()
    # The default itself: not the backend a make test-e2e-uring run gives every echod.
    start_echod(["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"], ready=True, env=DEFAULT_BACKEND)
    assert metric(scrape(admin), "echod_io_backend", {"backend": "epoll"}) == 1


def test_check_config_shows_the_key_and_where_it_came_from():
    binary = echod_binary()
    default = run_to_exit([binary, "check-config"])
    assert default.returncode == 0, default.stderr
    assert re.search(r"\nio:\n  backend: epoll +# default\n", default.stdout), default.stdout

    flag = run_to_exit([binary, "check-config", "--io-backend", "io_uring"])
    assert re.search(r"\n  backend: io_uring +# command line --io-backend\n", flag.stdout), flag.stdout

    env = run_to_exit([binary, "check-config"], env={"ECHOD_IO_BACKEND": "AUTO"})
    assert re.search(r"\n  backend: auto +# environment ECHOD_IO_BACKEND\n", env.stdout), env.stdout


@pytest.mark.parametrize(
    "source",
    [["--io-backend", "iouring"], ["env", "ECHOD_IO_BACKEND", "iouring"]],
    ids=["flag", "environment"],
)
def test_a_bad_value_fails_with_the_choices_and_a_suggestion(source):
    binary = echod_binary()
    port = free_port()
    env = {source[1]: source[2]} if source[0] == "env" else {}
    args = [] if env else source
    check = run_to_exit([binary, "check-config", *args], env=env)
    assert check.returncode == 1
    assert 'io.backend: invalid value "iouring": expected one of epoll, io_uring, auto' in check.stderr, check.stderr
    assert '(did you mean "io_uring"?)' in check.stderr

    run = run_to_exit([binary, "--listen", f"127.0.0.1:{port}", "--log-format", "text", *args], env=env)
    assert run.returncode == 78, run.stderr
    problem = next(line for line in run.stderr.splitlines() if "invalid configuration" in line)
    assert "io.backend: invalid value" in problem and "iouring" in problem, run.stderr
    assert "refusing to start" in run.stderr


def test_the_helper_refuses_io_uring_setup(no_io_uring):
    """The filter itself: io_uring_setup fails with EPERM under the helper (and the helper passes arguments on)."""
    probe = (
        "import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
        f"r = libc.syscall({IO_URING_SETUP}, 1, ctypes.create_string_buffer(120)); "
        "print(r, ctypes.get_errno())"
    )
    result = run_to_exit([no_io_uring, sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-1", str(errno.EPERM)]


def test_io_uring_refuses_to_start_where_it_is_not_allowed(no_io_uring):
    """Exit 78 (a restart meets the same kernel) with one critical line naming the failed call and the ways out."""
    port = free_port()
    args = [echod_binary(), "--listen", f"127.0.0.1:{port}", "--log-format", "text", "--io-backend", "io_uring"]
    refused = run_to_exit([no_io_uring, *args])
    assert refused.returncode == 78, refused.stderr
    critical = [line for line in refused.stderr.splitlines() if " critical " in line]
    assert len(critical) == 1, refused.stderr
    line = critical[0]
    assert "cannot start" in line and "io.backend is io_uring" in line, line
    assert "io_uring_setup: Operation not permitted (errno 1)" in line, line
    assert "io.backend: epoll" in line and "auto" in line, line
    assert "kernel.io_uring_disabled" in line and "SystemCallFilter=" in line, line
    assert "echod started" not in refused.stderr


@needs_io_uring
def test_the_same_start_succeeds_without_the_helper(start_echod, port):
    """The refusal above is the filter's doing: the same command line without it serves."""
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--log-format", "text", "--io-backend", "io_uring"], ready=True)
    echo_once(port)
    assert chosen_backend(e) == "io_uring"


def test_auto_falls_back_to_epoll_with_one_line_giving_the_reason(start_echod, port, no_io_uring, monkeypatch):
    # conftest starts ECHOD_BIN with echod's arguments: the helper takes echod's path as its first one.
    real = echod_binary()
    monkeypatch.setenv("ECHOD_BIN", no_io_uring)
    e = start_echod(
        [real, "--listen", f"127.0.0.1:{port}", "--log-format", "text", "--io-backend", "auto"],
        ready=True,
    )
    echo_once(port)
    assert chosen_backend(e) == "epoll"
    log = e.log()
    mentions = [line for line in log.splitlines() if "io_uring" in line]
    assert len(mentions) == 1, log
    assert " warning " in mentions[0] and "io.backend auto" in mentions[0] and "epoll" in mentions[0], mentions[0]
    assert "io_uring_setup: Operation not permitted" in mentions[0], mentions[0]
    assert e.stop() == 0


def test_epoll_makes_no_io_uring_call(start_echod, port, no_io_uring, monkeypatch):
    """With the default, a filter against io_uring changes nothing: not even a warning."""
    real = echod_binary()
    monkeypatch.setenv("ECHOD_BIN", no_io_uring)
    e = start_echod([real, "--listen", f"127.0.0.1:{port}", "--log-format", "text"], ready=True, env=DEFAULT_BACKEND)
    echo_once(port)
    assert chosen_backend(e) == "epoll"
    assert "io_uring" not in e.log()


def test_a_reload_keeps_the_backend_and_says_a_change_needs_a_restart(start_echod, port):
    config = f'listen: ["127.0.0.1:{port}"]\nio:\n  backend: epoll\n'
    e = start_echod(["--log-format", "text"], config=config, ready=True, env=DEFAULT_BACKEND)
    e.config_path.write_text(config.replace("backend: epoll", "backend: auto"))
    e.signal(signal.SIGHUP)
    log = e.wait_log("configuration reloaded")
    line = next(line for line in log.splitlines() if "io.backend changed" in line)
    assert "takes effect at the next restart" in line and "running=epoll" in line and "configured=auto" in line, line
    echo_once(port)
    # A reload compares with what runs, as for threads: while the file differs from it, each reload says so again.
    e.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while e.log().count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert e.log().count("configuration reloaded") == 2
    assert e.log().count("io.backend changed") == 2
