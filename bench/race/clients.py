"""The load clients (bench's echoclient and `echod bench`, which print the same JSON keys) and perf."""

import json
import re
import signal
import subprocess

from .model import Run, from_json
from .peers import Tools
from .procs import run_cmd, send_signal
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


def perf_start(t: Tools, pid: int, path: str) -> subprocess.Popen:
    argv = [t.perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid), "-o", path]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def perf_finish(p: subprocess.Popen, path: str) -> int | None:
    """Stops perf (SIGINT makes it write its counts) and returns the syscall count it wrote."""
    send_signal(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        send_signal(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
    try:
        with open(path) as f:
            m = re.search(r"^(\d+),", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None
