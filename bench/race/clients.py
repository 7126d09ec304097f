"""The load clients (bench's echoclient and `echod bench`, which print the same JSON keys) and perf."""

import json
import os
import re
import select
import signal
import subprocess
import time

from .model import Run, SyscallCount, from_json
from .peers import Tools
from .procs import run_cmd, signal_and_wait
from .workloads import Workload


def c_client_argv(t: Tools, port, w: Workload, duration, warmup, extra=()) -> list[str]:
    return [
        t.client,
        f"127.0.0.1:{port}",
        "--mode",
        w.mode,
        "--connections",
        str(w.connections),
        "--size",
        str(w.size),
        "--duration",
        f"{duration:g}",
        "--warmup",
        f"{warmup:g}",
        "--json",
        *(("--udp",) if w.udp else ()),
        *extra,
    ]


def echod_client_argv(t: Tools, port, w: Workload, duration, warmup=0.0) -> list[str]:
    return [
        t.echod,
        "bench",
        f"127.0.0.1:{port}",
        "--connections",
        str(w.connections),
        "--size",
        str(w.size),
        "--duration",
        f"{duration:g}s",
        "--warmup",
        f"{warmup:g}s",
        "--mode",
        w.mode,
        "--json",
        *(("--udp",) if w.udp else ()),
    ]


def run_client(argv, timeout, pin: int | None) -> tuple[dict | None, str | None]:
    """The last JSON line a client printed, or (None, why)."""
    if pin is not None:
        argv = ["taskset", "-c", str(pin), *argv]
    rc, out, err = run_cmd(argv, timeout)
    line = next((x for x in reversed(out.splitlines()) if x.strip().startswith("{")), None)
    if line is None:
        return None, f"rc={rc} {err.strip()[-300:]}"
    try:
        return json.loads(line), None
    except ValueError as e:
        return None, f"bad JSON ({e}): {line[:200]}"


def client_run(raw: dict, echod: bool) -> Run:
    """A client's JSON as a Run. `echod bench --json` repeats echoclient's key names (test_bench_smoke.py holds it
    to that); its whole JSON is kept under `raw` too, as results.json always had it."""
    run = from_json(Run, raw)
    if echod:
        run.extra["raw"] = raw
    return run


def perf_works(t: Tools) -> tuple[bool, str]:
    """Whether `perf stat` can count the raw_syscalls tracepoint here, and what to say about it."""
    if not t.perf:
        return False, "perf not installed"
    _, _, err = run_cmd([t.perf, "stat", "-x,", "-e", "instructions", "true"], 20)
    hw = "instructions" in err and "<not supported>" not in err
    rc, _, err2 = run_cmd([t.perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"], 20)
    if rc == 0 and re.search(r"^(\d+),", err2, re.M):
        return True, "raw_syscalls tracepoint works" + ("" if hw else "; hardware counters not supported (VM)")
    return False, f"perf cannot count raw_syscalls:sys_enter: {err2.strip()[-200:]}"


def perf_finish(p: subprocess.Popen, path: str) -> int | None:
    """Stops perf (SIGINT makes it write its counts) and returns the syscall count it wrote."""
    signal_and_wait(p, signal.SIGINT)
    try:
        with open(path) as f:
            m = re.search(r"^(\d+),", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


# How long perf stat may take to attach to a server's threads and answer (about 0.1 s here).
PERF_READY_S = 10.0


def perf_syscalls(
    t: Tools, pid: int, client_argv: list[str], path: str, timeout: float, pin: int | None
) -> SyscallCount:
    """The server's system calls over the measured interval of one client run, and the ops of that interval.

    `perf stat -e raw_syscalls:sys_enter -p PID` (every thread of the server) starts with its counter off (`-D -1`)
    and the race switches it on and off through perf's control fd when the client, run with `--marks`, says
    `measuring` and `draining`: connection set-up, warm-up, drain and close fall outside the count, which is then
    divided by the client's `ops` (the round trips or messages of that same interval). perf acknowledges each
    switch in about 0.2 ms (measured here), late by the same at both ends of the interval."""
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    argv = [t.perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid), "-o", path]
    argv += ["-D", "-1", "--control", f"fd:{ctl_r},{ack_w}"]
    try:
        perf = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(ctl_r, ack_w),
        )
    except OSError as e:
        for fd in (ctl_w, ack_r):
            os.close(fd)
        return SyscallCount(error=f"perf did not start: {e}")
    finally:
        os.close(ctl_r)
        os.close(ack_w)
    ctl = PerfControl(ctl_w, ack_r)
    try:
        # perf answers once its counters are attached: only then may the client start.
        if not ctl.send("ping", PERF_READY_S):
            return SyscallCount(error="perf stat did not answer on its control fd (it needs --control: perf >= 5.10)")
        out, marks, err = run_marked(client_argv, timeout, pin, ctl.switch)
    finally:
        n = perf_finish(perf, path)
        ctl.close()
    return counted(n, out, marks, err or ctl.error, path)


def counted(n: int | None, out: dict | None, marks: list[str], err: str | None, path: str) -> SyscallCount:
    """The count of one marked run, or why there is none: the client failed, its marks or a switch went wrong (the
    count would cover some other interval), or perf wrote no count."""
    if out is None:
        return SyscallCount(error=f"client: {err}")
    if marks != ["measuring", "draining"]:
        return SyscallCount(error=f"client marks {marks}, not measuring then draining")
    if err:
        return SyscallCount(error=err)
    if n is None:
        return SyscallCount(error=f"perf wrote no count (see {os.path.basename(path)})")
    return SyscallCount(syscalls=n, ops=out.get("ops"), seconds=out.get("duration_s"))


class PerfControl:
    """The race's ends of perf's control fd (commands) and ack fd (perf's answers)."""

    def __init__(self, ctl: int, ack: int):
        self.ctl, self.ack = ctl, ack
        self.error: str | None = None

    def send(self, command: str, timeout: float = 5.0) -> bool:
        """Sends a command and waits for perf's ack (`ack\\n`, some versions add a NUL); False without one."""
        try:
            os.write(self.ctl, f"{command}\n".encode())
            ready, _, _ = select.select([self.ack], [], [], timeout)
            return bool(ready) and b"ack" in os.read(self.ack, 64)
        except OSError:
            return False

    def switch(self, mark: str) -> None:
        """The client's mark: `measuring` switches the count on, `draining` off."""
        command = "enable" if mark == "measuring" else "disable"
        if not self.send(command) and self.error is None:
            self.error = f"perf did not acknowledge `{command}`"

    def close(self) -> None:
        for fd in (self.ctl, self.ack):
            try:
                os.close(fd)
            except OSError:
                pass


MARKS = ("measuring", "draining")


def run_marked(argv, timeout, pin: int | None, on_mark) -> tuple[dict | None, list[str], str | None]:
    """Runs a client with `--marks`, calling on_mark(mark) the moment each mark arrives on its stderr. Returns the
    last JSON line it printed (or None), the marks in order, and why there is no JSON; killed (by its PID) after
    `timeout` s."""
    if pin is not None:
        argv = ["taskset", "-c", str(pin), *argv]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marks: list[str] = []
    other: list[str] = []
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stderr.fileno()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        chunk = os.read(fd, 4096) if ready else b""
        if ready and not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace").strip()
            if text in MARKS:
                marks.append(text)
                on_mark(text)
            elif text:
                other.append(text)
    else:
        p.kill()
    stdout = p.stdout.read().decode(errors="replace")
    rc = p.wait()
    p.stdout.close()
    p.stderr.close()
    line = next((x for x in reversed(stdout.splitlines()) if x.strip().startswith("{")), None)
    if line is None:
        why = "timeout" if rc < 0 and time.monotonic() >= deadline else " ".join(other)[-300:]
        return None, marks, f"rc={rc} {why}"
    try:
        return json.loads(line), marks, None
    except ValueError as e:
        return None, marks, f"bad JSON ({e}): {line[:200]}"
