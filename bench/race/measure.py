"""Measuring: one client run with the server's CPU and the machine's other load around it, one workload over
every server (interleaved), and the time budget that decides what fits."""

import dataclasses
import os
import re
import time
from dataclasses import dataclass

from . import clients, procfs, workloads
from .context import Plan, Race, Server
from .model import LogCount, SyscallCount, WorkloadResult
from .options import Options
from .peers import PeerSpec
from .procs import children_cpu_s
from .report import fmt_num
from .summary import summarise_workload
from .workloads import Workload


def cpu_busy(interval: float) -> tuple[float, float]:
    """(busy %, steal %) of the whole machine over `interval` seconds, from /proc/stat."""

    def snap():
        v = procfs.machine_ticks()
        return sum(v[:8]), v[3] + v[4], v[7] if len(v) > 7 else 0

    t0, i0, s0 = snap()
    time.sleep(interval)
    t1, i1, s1 = snap()
    dt = max(t1 - t0, 1)
    return 100.0 * (dt - (i1 - i0)) / dt, 100.0 * (s1 - s0) / dt


def wait_quiet(limit_pct: float, max_wait: float) -> tuple[float, float]:
    """Sample background CPU use (nothing of ours runs now); wait up to max_wait s for it to drop below limit."""
    deadline = time.monotonic() + max_wait
    busy, steal = cpu_busy(0.5)
    while busy > limit_pct and time.monotonic() < deadline:
        busy, steal = cpu_busy(1.0)
    return round(busy, 1), round(steal, 1)


@dataclass
class Around:
    """CPU counters read before and after a client run."""

    server_ticks: int
    machine_ticks: int
    client_s: float
    at: float

    @classmethod
    def read(cls, pid: int) -> "Around":
        return cls(procfs.tree_cpu_ticks(pid), procfs.machine_busy_ticks(), children_cpu_s(), time.monotonic())


def measured_run(
    race: Race, client: str, pid: int, port: int, w: Workload, duration: float, warmup: float, pin: int | None
):
    """One client run (`client`: "c" or "echod", pinned to CPU `pin`), with the server's CPU (/proc/PID/stat
    deltas) and the CPU used by anything else on the machine meanwhile (machine busy - server - client), as a % of
    all CPUs. Returns (Run, None) or (None, why)."""
    t = race.tools
    before = Around.read(pid)
    if client == "c":
        argv = clients.c_client_argv(t, port, w, duration, warmup)
        raw, err = clients.run_client(argv, duration + warmup + 40, pin)
    else:
        argv = clients.echod_client_argv(t, port, w, duration, warmup)
        raw, err = clients.run_client(argv, duration + 40, pin)
    after = Around.read(pid)
    if raw is None:
        return None, err
    run = clients.client_run(raw, echod=client != "c")
    run.server_cpu_s = (after.server_ticks - before.server_ticks) / procfs.CLK_TCK
    run.client_cpu_s = after.client_s - before.client_s
    run.wall_s = after.at - before.at
    foreign = (after.machine_ticks - before.machine_ticks) / procfs.CLK_TCK - run.server_cpu_s - run.client_cpu_s
    run.foreign_cpu_pct = max(0.0, foreign / (run.wall_s * (os.cpu_count() or 1)) * 100)
    n = run.ops_completed
    run.server_cpu_us_per_op = run.server_cpu_s * 1e6 / n if n else None
    return run, None


def drain_log_file(path: str) -> LogCount:
    """Lines and `dropped N` counts in the log file since the last call, then empties it (see echod-1-reads)."""
    time.sleep(0.05)  # the writer thread lingers up to 1 ms; let it finish the run's last records
    count = LogCount()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                count.bytes += len(chunk)
                count.lines += chunk.count(b"\n")
                count.dropped += sum(int(m.group(1)) for m in re.finditer(rb"dropped (\d+) records", chunk))
        os.truncate(path, 0)
    except OSError as e:
        return LogCount(error=str(e))
    return count


def clients_for(race: Race) -> list[str]:
    """The clients of a round, the C client first."""
    if race.opts.client == "c" or not race.tools.echod_bench:
        return ["c"]
    return ["echod"] if race.opts.client == "echod" else ["c", "echod"]


def run_workload(race: Race, servers: list[Server], w: Workload, plan: Plan) -> None:
    """One workload over every live server, interleaved: round r runs the servers in an order rotated by r, so slow
    drifts in the machine's state (other work, thermal, caches) fall on all servers alike."""
    servers = [s for s in servers if s.spec.runs(w.name)]
    for s in servers:
        s.result.workloads[w.name] = WorkloadResult(w.mode, w.connections, w.size, w.label)
        s.retries = 0
    repeats = min(plan.repeats, race.opts.sweep_repeats) if w.name in workloads.SWEEP_NAMES else plan.repeats
    for rep in range(repeats):
        k = rep % max(len(servers), 1)
        cls = clients_for(race)
        cls = cls if rep < plan.echod_client_repeats else cls[:1]
        for s in servers[k:] + servers[:k]:
            _run_until_clean(race, s, w, cls)
    for s in servers:
        result = s.result.workloads[w.name]
        if race.use_perf and not s.spec.tree and s.live and w.name not in workloads.SWEEP_NAMES:
            result.syscalls = _syscalls(race, s, w)
            result.syscalls_per_op = result.syscalls.per_op
        summarise_workload(result, race.opts.foreign_limit)
        _log_cell(race, s.name, w.name, result)


def _run_until_clean(race: Race, s: Server, w: Workload, cls: list[str]) -> None:
    """One round of one server: a run per client; a C-client run that other work disturbed is discarded and run
    again (after waiting for quiet) while retries and the budget allow."""
    opts, result = race.opts, s.result.workloads[w.name]
    one_run = opts.duration + opts.warmup + 0.3
    while s.live:
        if s.proc.poll() is not None:
            s.live = False
            s.result.status = f"server exited with {s.proc.poll()} during {w.name}; see logs/{s.name}.log"
            race.log(f"  {s.name}: {s.result.status}")
            return
        tainted = False
        for cl in cls:
            if s.spec.logfile:
                drain_log_file(s.spec.logfile)  # what checks and perf runs logged
            run, err = measured_run(race, cl, s.proc.pid, s.port, w, opts.duration, opts.warmup, race.pin_client)
            if run is None:
                result.failures.append(err)
                continue
            if s.spec.logfile:
                run.log = drain_log_file(s.spec.logfile)
            if cl == "c" or cls == ["echod"]:
                tainted = (
                    run.foreign_cpu_pct > opts.foreign_limit
                    and s.retries < opts.retries
                    and race.schedule.slack_left() > 2 * one_run
                )
                (result.discarded if tainted else result.runs).append(run)
            else:
                result.echod_runs.append(run)
        if not tainted:
            return
        s.retries += 1
        race.log(
            f"  {s.name:16s} {w.name:10s} run discarded: other work used "
            f"{result.discarded[-1].foreign_cpu_pct:.0f}% of the machine during it; re-running"
        )
        wait_quiet(opts.quiet_limit, min(5.0, race.schedule.slack_left() - one_run))


def _syscalls(race: Race, s: Server, w: Workload) -> SyscallCount:
    """System calls per message of the server (all threads): a separate short run, its measured interval counted
    under `perf stat` (clients.perf_syscalls), so that the measured runs carry no perf overhead."""
    if s.proc.poll() is not None:
        return SyscallCount(error="server exited")
    path = race.logfile(f"perf-{s.name}-{w.name}.txt")
    d, warmup = race.opts.perf_duration, race.opts.warmup
    argv = clients.c_client_argv(race.tools, s.port, w, d, warmup, ("--marks",))
    count = clients.perf_syscalls(race.tools, s.proc.pid, argv, path, d + warmup + 40, race.pin_client)
    if count.error:
        race.log(f"  {s.name:16s} {w.name:10s} no system call count: {count.error}")
    return count


def _log_cell(race: Race, name: str, wname: str, r: WorkloadResult) -> None:
    v = dataclasses.asdict(r.summary) if r.summary else {}
    race.log(
        f"  {name:16s} {wname:10s} {fmt_num(v.get('ops_per_sec'))} ops/s ±{v.get('spread_pct', 0):.1f}%  "
        f"p99 {fmt_num(v.get('p99'))} us  cpu {fmt_num(v.get('server_cpu_us_per_op'))} us/op  "
        f"syscalls/msg {fmt_num(r.syscalls_per_op)}  err {v.get('errors_total', '?')}  "
        f"other-load {fmt_num(v.get('foreign_cpu_pct'))}%"
    )


class PeerCounts:
    """How many of the raced peers run a workload, and how many of those fork per connection (the estimates' n)."""

    def __init__(self, specs: list[PeerSpec]):
        self.specs = specs

    def of(self, w: Workload) -> tuple[int, int]:
        runs = [s for s in self.specs if s.runs(w.name)]
        return len(runs), sum(1 for s in runs if s.tree)

    def idle(self) -> tuple[int, int]:
        idle = [s for s in self.specs if s.idle]
        return len(idle), sum(1 for s in idle if s.tree)


def estimate_workload(
    n: int, n_fork: int, opts: Options, plan: Plan, sweep: bool = False, connections: int = 0
) -> float:
    """Seconds one workload takes over n servers (measured here: 58 s for 14 peers at the defaults). Each run also
    opens its connections one by one and drains them: about 0.2 s more per run at 1,000 connections (measured)."""
    repeats = min(plan.repeats, opts.sweep_repeats) if sweep else plan.repeats
    runs = repeats + (min(plan.echod_client_repeats, repeats) if opts.client == "both" else 0)
    perf_run = opts.perf_duration + opts.warmup + 0.3 + connections * 2e-4
    perf = 0 if (sweep or opts.no_perf) else (n - n_fork) * perf_run
    return n * runs * (opts.duration + opts.warmup + 0.06 + connections * 2e-4) + perf


def estimate_idle(n: int, n_fork: int, opts: Options) -> float:
    """Seconds of the idle-memory phase (measured: 46 s for 12 single-process peers, 3 at a time, and 2 forking)."""
    return (-(-(n - n_fork) // 3) * 9.0 + n_fork * 5.0) if workloads.IDLE in opts.workloads else 0.0


def estimate(plan: Plan, counts: PeerCounts, opts: Options) -> float:
    """Seconds of the whole plan: every workload, idle memory, and a few seconds of start and stop."""
    wl = sum(
        estimate_workload(*counts.of(w), opts, plan, w.name in workloads.SWEEP_NAMES, w.connections)
        for w in plan.workloads
    )
    return wl + estimate_idle(*counts.idle(), opts) + 3.0


def fit_budget(plan: Plan, opts: Options, counts: PeerCounts, left: float) -> Plan:
    """The plan trimmed until its estimate fits in the `left` seconds of the budget, least valuable first: the sweep
    points (they only add points to the latency plot), the 4th repeat, the `echod bench` round. Never below 3
    repeats (a median needs them): a plan that still does not fit runs over. `trimmed` says what was cut."""

    def fits(p: Plan) -> bool:
        return estimate(p, counts, opts) + 5.0 <= left

    if fits(plan):
        return plan
    p = Plan(list(plan.workloads), plan.repeats, plan.echod_client_repeats, list(plan.trimmed))
    if any(w.name in workloads.SWEEP_NAMES for w in p.workloads):
        p.workloads = [w for w in p.workloads if w.name not in workloads.SWEEP_NAMES]
        p.trimmed.append("left out the sweep points pp64-c10 and pp64-c200")
    if not fits(p) and p.repeats > 3:
        p.repeats = 3
        p.trimmed.append("3 repeats instead of 4")
    if not fits(p) and opts.client == "both" and p.echod_client_repeats > 0:
        p.echod_client_repeats = 0
        p.trimmed.append("no `echod bench` round")
    return p
