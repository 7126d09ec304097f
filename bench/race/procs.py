"""The processes the race starts, and the small process tools it needs. Only processes started here are
signalled, by PID, with their own descendants (fork-per-connection servers)."""

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from . import procfs


@dataclass
class Procs:
    """Every process this race started and has not stopped yet, by PID."""

    live: dict[int, tuple[str, subprocess.Popen]] = field(default_factory=dict)

    def start(self, name, argv, logfile, env=None, cwd=None, fast=False) -> subprocess.Popen:
        """Start argv with its output appended to logfile. fast: no preexec_fn (so no raised fd limit), which lets
        Python use vfork, as start-up timings need (with a preexec_fn, fork + exec alone takes about 10 ms)."""
        with open(logfile, "ab") as f:
            setup = {"process_group": 0} if fast else {"preexec_fn": _child_setup}
            p = subprocess.Popen(
                argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd, **setup
            )
        self.live[p.pid] = (name, p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 2.0) -> None:
        """SIGTERM the process and the descendants it forked (by PID), then SIGKILL what is left."""
        if p.pid not in self.live:
            return
        kids = procfs.descendants(p.pid)
        for pid in [p.pid, *kids]:
            send_signal(pid, signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            send_signal(p.pid, signal.SIGKILL)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for pid in kids:
            if procfs.is_alive(pid):
                send_signal(pid, signal.SIGKILL)
        self.live.pop(p.pid, None)

    def stop_all(self) -> None:
        for _, p in list(self.live.values()):
            self.stop(p, grace=1.0)


def _child_setup() -> None:
    """In the child before exec: the fd limit as high as allowed (idle memory opens 10,000 connections), and an own
    process group, so that a Ctrl-C on the terminal reaches only run.py (which stops its servers itself)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.setpgrp()


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def signal_and_wait(proc: subprocess.Popen, sig: int, timeout: float = 5.0) -> None:
    """Sends `sig` to one process this script started and waits for it to exit; SIGKILL after `timeout` s."""
    send_signal(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send_signal(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago (bound and released by the kernel's choice), and never handed out
    before by this process: two ports asked for before either is bound must differ, and the kernel may choose a
    released port again."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """True once 127.0.0.1:port accepts a connection; False when proc exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_echoing_udp(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """True once a datagram sent to 127.0.0.1:port comes back unchanged (a UDP server cannot be seen listening any
    other way); False when proc exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.05)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                s.send(b"race")
                if s.recv(16) == b"race":
                    return True
            except OSError:  # nothing yet (timeout), or port unreachable (ECONNREFUSED): ask again
                time.sleep(0.02)
    return False


def run_cmd(argv, timeout, **kw) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command; -1 when it timed out or could not start."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -1, out, "timeout"
    except OSError as e:
        return -1, "", str(e)


def children_cpu_s() -> float:
    """CPU seconds of every child of this process that has been waited for (the clients)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
