"""The race's phases around the workloads: starting and checking the servers, the pinning calibration, start-up
timings and idle memory."""

import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

from . import clients
from .context import Race, Server
from .measure import measured_run
from .model import Calibration, CheckResult, IdleResult, PeerResult, StartupResult, Stats, from_json
from .peers import BENCH, PeerSpec
from .procs import free_port, run_cmd, wait_echoing_udp, wait_listening
from .report import fmt_num
from .workloads import CHECKS, UDP_CHECKS, Workload


def start_server(race: Race, spec: PeerSpec, pin_server: int | None) -> Server:
    """Start one server on its own port and wait until it listens (`check_server` checks it)."""
    port = free_port()
    argv = spec.argv(port)
    if pin_server is not None:
        argv = ["taskset", "-c", str(pin_server), *argv]
    result = PeerResult(spec.name, spec.desc, spec.threads, pin_server, argv=argv)
    proc = race.procs.start(spec.name, argv, race.logfile(f"{spec.name}.log"), env=spec.env)
    server = Server(spec, proc, port, result, pin_server)
    race.log(f"peer {spec.name}: {spec.desc} (port {port})")
    wait = wait_echoing_udp if spec.udp else wait_listening
    if not wait(port, proc, 60 if "uvloop" in spec.name else 20):
        result.status = f"did not start (exit {proc.poll()}); see logs/{spec.name}.log"
        race.log(f"  {spec.name}: {result.status}")
        race.procs.stop(proc)
        return server
    result.pid = proc.pid
    server.live = True
    return server


def check_server(race: Race, s: Server) -> None:
    """Correctness: every byte verified, no loss, close after EOF, partial writes with a slow reader. Safe to run
    for several servers at once (each has its own server and port; only clients are started here). UDP peers:
    datagrams of 1 B to 65,507 B, each verified, and no slow reader (UDP has no flow control to test)."""
    bad = []
    checks = UDP_CHECKS if s.spec.udp else CHECKS
    for c in checks:
        w = Workload("check", c.mode, c.connections, c.size, "")
        out, err = clients.run_client(
            clients.c_client_argv(race.tools, s.port, w, c.seconds, 0, c.extra), 30, race.pin_client
        )
        s.result.checks.append(
            CheckResult(c.mode, c.connections, c.size, out and out["ops"], out and out["errors"], err)
        )
        if err or out["errors_total"] or out.get("setup_failed") or not out["ops"]:
            bad.append(f"{c.mode}/{c.connections}x{c.size}: " + (err or json.dumps(out["errors"])))
    e = None if s.spec.udp else slow_reader_check(s.port)
    if not s.spec.udp:
        s.result.checks.append(CheckResult("slow-reader 16 MiB", failure=e))
    if e:
        bad.append(f"slow reader 16 MiB: {e}")
    if bad:
        s.result.status = "INCORRECT: " + "; ".join(bad)
        race.log(f"  {s.name}: correctness check FAILED: {'; '.join(bad)}")
    else:
        where = f" [server on CPU {s.pin_server}]" if s.pin_server is not None else " [server unpinned]"
        count = len(checks) + (0 if s.spec.udp else 1)
        race.log(f"  {s.name}: correctness OK ({count} checks, every byte verified){where}")
    s.live = s.proc.poll() is None


def slow_reader_check(port: int, size: int = 16 << 20, delay: float = 0.5, timeout: float = 20.0) -> str | None:
    """Send `size` bytes without reading for `delay` s (fills both socket buffers: the server must handle partial
    writes and stop reading), then read everything back and compare. None, or what went wrong."""
    data = bytes((i * 131 + 7) & 0xFF for i in range(65536)) * (size // 65536)
    err = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return f"connect: {e}"
    s.settimeout(timeout)

    def writer():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(f"send: {e}")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(delay)
    got = _read_all(s, size, timeout, err)
    t.join(timeout=5)
    s.close()
    if err:
        return "; ".join(err)
    if len(got) != size:
        return f"echoed {len(got)} of {size} bytes before EOF/timeout"
    return "echoed bytes differ" if bytes(got) != data else None


def _read_all(s: socket.socket, size: int, timeout: float, err: list[str]) -> bytearray:
    """What the server echoes until EOF, more than `size` bytes, an error (appended to err) or the timeout."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) <= size:
            d = s.recv(1 << 20)
            if not d:
                break
            got += d
    except OSError as e:
        err.append(f"recv after {len(got)} bytes: {e}")
    return got


def calibrate_pinning(race: Race, cpus: list[int], rounds: int = 3, secs: float = 0.5) -> Calibration:
    """Race the C reference against itself with and without pinning, alternating, and keep the placement whose
    ops/s vary least between runs (pingpong 64 B at 1 and 50 connections). Runs that other work disturbed are left
    out; without enough clean runs, 'none' is kept: on a busy machine, pinning the server to one CPU makes it wait
    behind whatever else runs there."""
    port = free_port()
    p = race.procs.start("c-epoll-calibration", [race.tools.c_epoll, str(port)], race.logfile("calibration.log"))
    if not wait_listening(port, p, 10):
        return Calibration("none", "calibration server did not start; left unpinned")
    runs = {cfg: {"1": [], "50": []} for cfg in ("split", "none")}
    disturbed = 0
    for _ in range(rounds):
        for cfg in ("split", "none"):
            disturbed += _calibration_round(race, p.pid, port, cfg, cpus, secs, runs[cfg])
    race.procs.stop(p)
    return _calibration_choice(runs, disturbed, rounds)


def _calibration_round(race: Race, pid, port, cfg, cpus, secs, runs: dict[str, list[float]]) -> int:
    """Both connection counts under one placement; returns how many runs other work disturbed."""
    run_cmd(["taskset", "-p", "-c", str(cpus[0]) if cfg == "split" else ",".join(map(str, cpus)), str(pid)], 10)
    pin = cpus[-1] if cfg == "split" else None
    disturbed = 0
    for conns in (1, 50):
        run, _ = measured_run(race, "c", pid, port, Workload("calibration", "pingpong", conns, 64, ""), secs, 0.1, pin)
        if run and run.foreign_cpu_pct <= race.opts.foreign_limit:
            runs[str(conns)].append(run.ops_per_sec)
        elif run:
            disturbed += 1
    return disturbed


def _cv(v: list[float]) -> float | None:
    return statistics.pstdev(v) / statistics.mean(v) * 100 if len(v) > 1 and statistics.mean(v) else None


def _calibration_choice(runs: dict[str, dict[str, list[float]]], disturbed: int, rounds: int) -> Calibration:
    enough = all(len(runs[cfg][c]) >= 2 for cfg in runs for c in ("1", "50"))
    score = {cfg: statistics.mean([_cv(runs[cfg][c]) for c in ("1", "50")]) if enough else None for cfg in runs}
    choice = min(score, key=score.get) if enough else "none"
    parts = [
        f"{cfg}: "
        + ", ".join(
            f"{c} conn {fmt_num(statistics.median(runs[cfg][c]) if runs[cfg][c] else None)} ops/s "
            f"(cv {fmt_num(_cv(runs[cfg][c]))}%)"
            for c in ("1", "50")
        )
        for cfg in ("split", "none")
    ]
    too_few = f"{disturbed} of {rounds * 4} calibration runs disturbed by other work, too few clean ones to compare"
    why = "steadier on the C reference" if enough else too_few
    return Calibration(choice, f"chose {choice}, {why} ({'; '.join(parts)})", runs, score, disturbed)


def startup_phase(race: Race, specs: list[PeerSpec], runs: int) -> dict[str, StartupResult]:
    """Exec to serving, per peer: time from just before the spawn to the first connect that succeeds (tried every
    0.5 ms), and for echod to READY=1 on a NOTIFY_SOCKET the race listens on. Fresh processes, one at a time;
    Python peers get fewer runs (their start-up is ~10x longer and not in question)."""
    out = {}
    for spec in (s for s in specs if not s.udp):  # timed to the first TCP connect: not defined for UDP peers
        n = runs if not spec.name.startswith(("asyncio", "uvloop")) else max(1, min(runs, 3))
        ready, listening, failure = [], [], None
        for _ in range(n):
            t_ready, t_listen, failure = _time_startup(race, spec)
            listening += [t_listen] if t_listen is not None else []
            ready += [t_ready] if t_ready is not None else []
            if failure:
                break
        out[spec.name] = r = StartupResult(n, Stats.of(listening), Stats.of(ready), failure)
        race.log(
            f"  {spec.name:16s} start-up: "
            + (f"READY=1 {r.ready_ms.median:.1f} ms, " if r.ready_ms else "")
            + (f"listening {r.accept_ms.median:.1f} ms" if r.accept_ms else "not listening")
            + f" (median of {n})"
            + (f"; {failure}" if failure else "")
        )
    return out


def _time_startup(race: Race, spec: PeerSpec) -> tuple[float | None, float | None, str | None]:
    """One start of a fresh instance: (ms to READY=1 or None, ms to listening or None, failure or None)."""
    port = free_port()
    env = dict(spec.env or os.environ)
    tmp = tempfile.mkdtemp(prefix="echod-race-")
    nsock = None
    if spec.name.startswith("echod"):
        nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        nsock.bind(os.path.join(tmp, "notify"))
        nsock.setblocking(False)
        env["NOTIFY_SOCKET"] = os.path.join(tmp, "notify")
    t0 = time.monotonic()
    proc = race.procs.start(
        spec.name + "-startup", spec.argv(port), race.logfile(f"{spec.name}-startup.log"), env=env, fast=True
    )
    try:
        return _wait_serving(proc, port, nsock, t0)
    finally:
        race.procs.stop(proc)
        if nsock:
            nsock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_serving(proc, port, nsock, t0) -> tuple[float | None, float | None, str | None]:
    t_ready = t_listen = None
    deadline = t0 + 15
    while time.monotonic() < deadline and (t_listen is None or (nsock and t_ready is None)):
        if proc.poll() is not None:
            return t_ready, t_listen, f"exited with {proc.returncode} while starting"
        if nsock and t_ready is None:
            try:
                if b"READY=1" in nsock.recv(4096).split(b"\n"):
                    t_ready = (time.monotonic() - t0) * 1000
            except BlockingIOError:
                pass
        if t_listen is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                t_listen = (time.monotonic() - t0) * 1000
            except OSError:
                pass
        time.sleep(0.0005)
    return t_ready, t_listen, None


def idle_phase(race: Race, servers: list[Server]) -> None:
    """Idle memory of every server, each on a FRESH instance (see `_idle_start`). Single-process servers are
    measured three at a time: Rss of one process does not depend on what else runs (unlike time), and the
    connections are opened and held, not driven. Fork-per-connection servers come after, one at a time: their
    figure is Pss, which other processes mapping the same libraries would dilute."""
    servers = [s for s in servers if s.spec.idle]
    solo = [s for s in servers if not s.spec.tree]
    batches = [solo[i : i + 3] for i in range(0, len(solo), 3)] + [[s] for s in servers if s.spec.tree]
    for batch in batches:
        started = [(s, *_idle_start(race, s)) for s in batch]  # Popen stays on the main thread
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(lambda sp: _idle_measure(race, *sp), started))
        finally:
            for _, proc, _ in started:
                race.procs.stop(proc)


def _idle_start(race: Race, s: Server):
    """A FRESH instance of the server: one that already served the workloads has freed heap it keeps resident,
    which new connections reuse without growing RSS (that would understate the cost)."""
    port = free_port()
    argv = s.spec.argv(port)
    if s.pin_server is not None:
        argv = ["taskset", "-c", str(s.pin_server), *argv]
    return race.procs.start(s.name + "-idle", argv, race.logfile(f"{s.name}-idle.log"), env=s.spec.env), port


def _idle_measure(race: Race, s: Server, proc, port: int) -> None:
    if not wait_listening(port, proc, 60 if "uvloop" in s.name else 20):
        s.result.idle = IdleResult(failure=f"fresh instance did not start (exit {proc.poll()})")
        return
    time.sleep(0.3)  # let a runtime finish starting up (threads, GC) before the first reading
    opts = race.opts
    n = opts.idle_connections if not s.spec.tree else min(opts.idle_connections, opts.idle_connections_fork)
    cmd = [
        sys.executable,
        os.path.join(BENCH, "idle_rss.py"),
        "--pid",
        str(proc.pid),
        "--port",
        str(port),
        "-n",
        str(n),
        "--settle",
        str(opts.idle_settle),
        "--json",
    ] + (["--tree"] if s.spec.tree else [])
    out, err = clients.run_client(cmd, 180, race.pin_client)
    s.result.idle = from_json(IdleResult, out) if out else IdleResult(failure=err)
    if out:
        race.log(
            f"  {s.name:16s} idle: {out['connections']} conns, {out['bytes_per_conn_idle']} B/conn idle, "
            f"{out['bytes_per_conn_after_echo']} B/conn after one echo ({out['metric']})"
        )
    else:
        race.log(f"  {s.name}: idle RSS failed: {err}")
