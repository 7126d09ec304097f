"""End-to-end fixtures: start the real echod binary on free loopback ports and talk to it as users do."""

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The /proc readers live once, in the race's package (bench/race/procfs.py), which bench/idle_rss.py uses too.
sys.path.insert(0, str(REPO / "bench"))
from race.procfs import cpu_seconds, vm_rss_kib  # noqa: E402, F401 (on the path above; the tests import them here)


def echod_binary() -> str:
    path = os.environ.get("ECHOD_BIN") or str(REPO / ".build" / "debug" / "echod")
    if not os.access(path, os.X_OK):
        pytest.fail(f"echod binary not found at {path}: build it first (make test does) or set ECHOD_BIN")
    return path


# The I/O backend every echod of this run serves on (io.backend): ECHOD_E2E_IO_BACKEND, epoll or io_uring (make
# test-e2e-uring sets it); unset, echod's own default. It reaches each echod as ECHOD_IO_BACKEND, through
# echod_environ() and socket_activate_setenv(), and each real-systemd test's unit through a drop-in
# (test_real_systemd.run_io_backend_drop_in).
IO_BACKENDS = ("epoll", "io_uring")
IO_BACKEND = os.environ.get("ECHOD_E2E_IO_BACKEND") or None

# What a child echod must not inherit from this process: its configuration (ECHOD_*: the run's own variables, e.g.
# ECHOD_BIN, and whatever the caller's shell has) and systemd's hand-over (a NOTIFY_SOCKET, LISTEN_FDS, a watchdog or
# a journal stream of pytest's own service would make echod believe systemd started it).
INHERITED_NOT = ("ECHOD_", "NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_", "JOURNAL_STREAM")


def echod_environ(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment for an echod this suite starts: this process's without INHERITED_NOT, plus the run's I/O
    backend (ECHOD_IO_BACKEND), then `env` on top. A name `env` maps to None is left out: a test of echod's own
    default backend passes {"ECHOD_IO_BACKEND": None}."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_NOT)}
    if IO_BACKEND:
        full["ECHOD_IO_BACKEND"] = IO_BACKEND
    full.update(env or {})
    return {k: v for k, v in full.items() if v is not None}


def socket_activate_setenv() -> list[str]:
    """systemd-socket-activate's --setenv flags for what the echod it starts must see, since it gives that program
    only the variables it is told to: the sanitizer options set here (make sanitize; without its suppressions a
    sanitized echod exits 66) and the run's I/O backend."""
    names = ("TSAN_OPTIONS", "ASAN_OPTIONS", "LSAN_OPTIONS", "SWIFT_BACKTRACE")
    flags = [f"--setenv={name}" for name in names if name in os.environ]
    return flags + ([f"--setenv=ECHOD_IO_BACKEND={IO_BACKEND}"] if IO_BACKEND else [])


def echod_knows_io_backend(path: str) -> bool:
    """Whether the echod at `path` has the io.backend key (its flag, --io-backend, is in `echod run --help`); one
    without it ignores ECHOD_IO_BACKEND and serves on epoll."""
    done = subprocess.run([path, "run", "--help"], capture_output=True, text=True, timeout=30, env=echod_environ())
    return "--io-backend" in done.stdout


def pytest_configure(config):
    """A run asked for a backend echod cannot be given stops here: its tests would pass on epoll under another
    name."""
    if IO_BACKEND is None:
        return
    if IO_BACKEND not in IO_BACKENDS:
        raise pytest.UsageError(f"ECHOD_E2E_IO_BACKEND={IO_BACKEND!r}: expected one of {', '.join(IO_BACKENDS)}")
    path = os.environ.get("ECHOD_BIN") or str(REPO / ".build" / "debug" / "echod")
    if os.access(path, os.X_OK) and not echod_knows_io_backend(path):
        raise pytest.UsageError(
            f"ECHOD_E2E_IO_BACKEND={IO_BACKEND}, but {path} has no io.backend key (no --io-backend in `echod run "
            "--help`): every echod would serve on its default backend"
        )


def io_backend_line() -> str:
    if IO_BACKEND:
        return f"echod I/O backend: {IO_BACKEND} (ECHOD_E2E_IO_BACKEND)"
    return "echod I/O backend: echod's default (ECHOD_E2E_IO_BACKEND unset)"


def pytest_report_header(config):
    return io_backend_line()


def pytest_terminal_summary(terminalreporter):
    """Again at the end: make test's pytest -q prints no header."""
    terminalreporter.write_line(io_backend_line())


_handed_out: set[tuple[int, int]] = set()


def free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on loopback (bound and released by the kernel's choice), and never handed
    out before in this run: a test asking for two ports (echo and admin, say) before binding either must get two,
    and the kernel, once a port is released, may choose it again."""
    while True:
        with socket.socket(family, kind) as s:
            s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            port = s.getsockname()[1]
        if (kind, port) not in _handed_out:
            _handed_out.add((kind, port))
            return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"echod exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on {host}:{port} after {timeout}s")


class Echod:
    """One echod process. Its stderr goes to a file (or a pipe the caller controls)."""

    def __init__(self, args=(), config: str | None = None, env=None, stderr=None, preexec_fn=None, ready=False):
        """env: on top of echod_environ() (a name mapped to None is removed). ready: wait until echod says READY=1 on
        a NOTIFY_SOCKET of this test's own (it does once every listener is bound and every loop serves); the test
        then starts on a serving daemon with no probe connection of ours open. A test that passes its own
        NOTIFY_SOCKET reads it itself."""
        self.tmp = tempfile.TemporaryDirectory(prefix="echod-e2e-")
        self.dir = Path(self.tmp.name)
        self.log_path = self.dir / "stderr.log"
        cmd = [echod_binary()]
        if config is not None:
            cfg = self.dir / "echod.yaml"
            cfg.write_text(config)
            self.config_path = cfg
            cmd += ["--config", str(cfg)]
        cmd += list(args)
        full_env = echod_environ(env)
        self.notify = None
        if ready:
            if "NOTIFY_SOCKET" in full_env:
                raise ValueError("ready=True uses its own NOTIFY_SOCKET: read the one you pass instead")
            self.notify = ReadySocket(self.dir / "notify.sock")
            full_env["NOTIFY_SOCKET"] = str(self.notify.path)
        self._log_file = None
        if stderr is None:
            self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (open while echod runs; closed in close())
            stderr = self._log_file
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=full_env, preexec_fn=preexec_fn
        )
        self.pid = self.proc.pid
        if self.notify is not None:
            try:
                self.notify.wait_ready(self)
            except AssertionError:
                self.close()  # no fixture holds this instance yet
                raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it contains `text` (records are written asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s; log:\n{self.log()}")

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"echod did not stop within {timeout}s after SIGTERM\n{self.log()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log_file:
            self._log_file.close()
        if self.notify is not None:
            self.notify.close()
        self.tmp.cleanup()


class ReadySocket:
    """An AF_UNIX datagram socket standing in for systemd's notification socket, for `Echod(ready=True)`. It stays
    open while echod runs, so that echod's later notifications (STATUS=, STOPPING=1) are delivered as under
    systemd; they are never read (a few small datagrams, far below the socket's buffer)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait_ready(self, echod: "Echod", timeout: float = 10.0) -> None:
        """Returns at the first datagram with a READY=1 line; fails with echod's stderr if it exits first or stays
        silent for `timeout` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if echod.proc.poll() is not None:
                raise AssertionError(f"echod exited with {echod.proc.returncode} before READY=1\n{echod.log()}")
            self.sock.settimeout(min(0.05, left))
            try:
                message = self.sock.recv(65536)
            except TimeoutError:
                continue
            if b"READY=1" in message.split(b"\n"):
                return
        raise AssertionError(f"echod did not send READY=1 within {timeout}s\n{echod.log()}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def start_echod():
    started = []

    def start(*args, **kwargs) -> Echod:
        e = Echod(*args, **kwargs)
        started.append(e)
        return e

    yield start
    for e in started:
        e.close()


@pytest.fixture
def port():
    return free_port()


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(min(1 << 20, n - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def seeded_bytes(count, seed):
    """`count` pseudo-random bytes from a fixed `seed`, printed (pytest shows it with a failure) so that the same
    payload can be replayed; os.urandom would give a failure nobody can reproduce."""
    print(f"random payload: {count} bytes from seed {seed}")
    return random.Random(seed).randbytes(count)
