"""The echod race (`make bench`): echo servers on one machine, same client, same run.

    python3 bench/run.py [--quick] [--only PEER,...] [--duration SECS] [--repeats N]
                         [--echod PATH] [--client c|echod|both] [--workloads W,...]
                         [--pin auto|split|none] [--no-sweep] [--no-perf] [--budget SECS]
                         [--out DIR] [--retable DIR]

What it does, unattended (about 9.5 minutes for the full field on 2 cores; see bench/README.md):
  1. builds every peer (C epoll and io_uring references, C UDP reference, libuv, Go, SwiftNIO, the C client),
     checks the Python peers (pip-installs uvloop if missing), socat, xinetd,
     and echod (ECHOD_BIN or --echod; skipped with a message when missing);
  2. starts every peer on its own free loopback port and checks it with
     bench/client/echoclient (every byte verified: small and large round
     trips, a 4 MiB window stream, connect/close) and a 16 MiB slow reader
     (partial writes); then runs each workload --repeats times over all
     peers, interleaved (rotated order per round), re-running runs that
     other work on the machine disturbed, within a time budget;
  3. measures client-side ops/s, MB/s, latency percentiles; server CPU time
     per echoed message from /proc/PID/stat (utime+stime, children included);
     syscalls per message with `perf stat -e raw_syscalls:sys_enter -p PID`
     in a separate short run when perf works; idle RSS per connection with
     bench/idle_rss.py on a fresh instance of each server;
  4. writes bench/results/<date>/table.md, results.json and latency.svg
     (bench/results/latest points at the newest run).

Only loopback traffic; every load loop is bounded in count and time; only the
processes this script started are signalled, by PID (try/finally).
"""

import concurrent.futures
import dataclasses
import datetime
import json
import os
import platform
import signal
import time

from . import measure, model, options, peers, phases, procfs, report, summary, workloads
from .clients import perf_works
from .context import Plan, Race, Server
from .log import Log
from .options import Options


def main(argv: list[str] | None = None) -> int:
    opts = options.parse(argv)
    if opts.retable:
        return retable(opts.retable, opts.foreign_limit)
    log = Log()
    run_dir = results_dir(opts.out)
    log.file = open(os.path.join(run_dir, "run.log"), "a")  # noqa: SIM115 (open for the whole race)
    try:
        return race(opts, log, run_dir)
    finally:
        log.file.close()


def results_dir(out: str | None) -> str:
    """--out, or bench/results/<date>_<time>, which bench/results/latest then points at."""
    run_dir = out or os.path.join(peers.RESULTS, datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S"))
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    if not out:
        latest = os.path.join(peers.RESULTS, "latest")
        try:
            if os.path.islink(latest):
                os.unlink(latest)
            os.symlink(os.path.basename(run_dir), latest)
        except OSError:
            pass
    return run_dir


def race(opts: Options, log: Log, run_dir: str) -> int:
    """The whole race: build, placement, servers, workloads, start-up, idle memory, then the outputs."""
    log(f"results -> {run_dir}")
    with open(os.path.join(run_dir, "build.log"), "w") as logf:
        tools = peers.build(opts.peers, opts.echod, logf, log)
    for k, v in tools.notes.items():
        log(f"note: {k}: {v}")
    if tools.echod:
        log(f"echod: {tools.echod} (echod bench client: {'yes' if tools.echod_bench else 'no'})")
    if opts.client != "c" and not tools.echod_bench:
        log(f"--client {opts.client}: `echod bench` not available; using the C client only")
    r = Race(opts, tools, log, run_dir)
    cpus = sorted(os.sched_getaffinity(0))
    pinning, calib = choose_pinning(r, cpus)
    r.use_perf, perf_note = perf_plan(r)
    specs = peers.specs(tools, run_dir)
    wanted = wanted_peers(r, specs)
    plan = Plan(workloads.in_table_order(opts.workloads), opts.repeats, opts.echod_client_repeats)
    meta = new_meta(r, pinning, perf_note, calib, cpus, plan)
    results = model.Results(meta, tools.notes, [])
    deadline = race_deadline(r)
    counts = measure.PeerCounts([specs[p] for p in wanted])
    r.schedule.start(deadline, len(wanted) * 1.2 + measure.estimate(plan, counts, opts))
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    try:
        run_phases(r, [specs[p] for p in wanted], cpus if r.pin_client is not None else None, plan, results)
    except KeyboardInterrupt:
        log("interrupted: stopping the servers this script started")
    finally:
        r.procs.stop_all()
        signal.signal(signal.SIGTERM, old_term)
    meta.elapsed_s = round(time.monotonic() - log.start, 1)
    return write_outputs(run_dir, results, log)


def choose_pinning(r: Race, cpus: list[int]) -> tuple[str, model.Calibration | None]:
    """The placement of servers and client (`--pin`), the sentence the table gives for it, and the calibration."""
    opts, calib = r.opts, None
    if opts.pin == "none" or not r.tools.taskset or len(cpus) < 2 or not r.tools.c_epoll:
        pin, why = False, "--pin none" if opts.pin == "none" else "taskset missing or a single CPU"
    elif opts.pin == "split":
        pin, why = True, "--pin split"
    else:
        busy, _ = measure.wait_quiet(opts.quiet_limit, opts.quiet_wait)
        try:
            calib = phases.calibrate_pinning(r, cpus)
        finally:
            r.procs.stop_all()
        calib.background_busy_pct = busy
        pin, why = calib.choice == "split", "auto: " + calib.text
    r.pin_client = cpus[-1] if pin else None
    text = (
        f"split — client `taskset -c {cpus[-1]}`; single-threaded servers `taskset -c {cpus[0]}` (their forks "
        f"inherit it); multi-threaded servers (threads > 1) unpinned, sharing all {len(cpus)} CPUs with the client"
        if pin
        else "none — server and client left to the scheduler"
    ) + f" ({why})"
    r.log(f"pinning: {text}")
    return text, calib


def perf_plan(r: Race) -> tuple[bool, str]:
    use, note = (False, "disabled (--no-perf)") if r.opts.no_perf else perf_works(r.tools)
    if use:
        note = (
            f"`perf stat -e raw_syscalls:sys_enter -p PID` (all server threads) over the measured "
            f"{r.opts.perf_duration} s of a separate run of each workload (switched on and off at the client's "
            f"marks: no connection set-up, warm-up or drain), divided by the messages the client completed in it; "
            f"n/a for fork-per-connection servers and the sweep points; {note}"
        )
    r.log(f"syscalls: {note}")
    return use, note


def wanted_peers(r: Race, specs: dict[str, peers.PeerSpec]) -> list[str]:
    """The wanted peers that can run, in table order; a note for each that cannot."""
    notes = r.tools.notes
    for p in (p for p in peers.ORDER if p in r.opts.peers and p not in specs):
        reason = notes.get(p) or notes.get(p.split("-")[0]) or "not available"
        if p.startswith("uvloop"):
            reason = notes.get("uvloop", reason)
        notes.setdefault(p, f"skipped: {reason}")
        r.log(f"skip {p}: {reason}")
    return [p for p in peers.ORDER if p in r.opts.peers and p in specs]


def new_meta(r: Race, pinning, perf_note, calib, cpus, plan: Plan) -> model.Meta:
    return model.Meta(
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        cpu=procfs.cpu_model() or platform.processor() or "?",
        cores=len(cpus),
        kernel=platform.release(),
        repeats=plan.repeats,
        duration=r.opts.duration,
        warmup=r.opts.warmup,
        client=r.opts.client if r.tools.echod_bench else "c",
        echod_client_repeats=plan.echod_client_repeats,
        pinning=pinning,
        perf=perf_note,
        python=platform.python_version(),
        args=dataclasses.asdict(r.opts),
        versions=peers.versions(r.tools),
        pin_calibration=calib,
    )


def race_deadline(r: Race) -> float:
    """When the race must end: the budget counted from the start of `make bench` (it passes ECHOD_BENCH_T0, so that
    the budget covers its builds too: a first run builds echod in release mode and SwiftNIO, about 3.5 minutes
    here), or from the start of run.py. --budget 0: no deadline."""
    before = 0.0
    try:
        before = max(0.0, time.time() - float(os.environ.get("ECHOD_BENCH_T0", "")))
    except ValueError:
        pass
    if before:
        r.log(
            f"`make bench` started {before:.0f} s before the race (packages and builds); budget "
            f"{r.opts.budget:.0f} s from then"
        )
    return r.log.start - before + (r.opts.budget or 1e9)


def run_phases(r: Race, specs: list[peers.PeerSpec], cpus: list[int] | None, plan: Plan, res: model.Results) -> None:
    """Servers up and checked, the budget applied, every workload, start-up timings, idle memory."""
    servers = start_servers(r, specs, cpus, res)
    live = [s for s in servers if s.live]
    counts = measure.PeerCounts([s.spec for s in live])
    plan = measure.fit_budget(plan, r.opts, counts, r.schedule.deadline - time.monotonic())
    for t in plan.trimmed:
        r.log(
            f"budget: {t} (about {r.schedule.deadline - time.monotonic():.0f} s left for the race, plan "
            f"estimated at {measure.estimate(plan, counts, r.opts) + 5.0:.0f} s)"
        )
    res.meta.trimmed, res.meta.repeats = plan.trimmed, plan.repeats
    res.meta.echod_client_repeats = plan.echod_client_repeats
    r.schedule.start(r.schedule.deadline, measure.estimate(plan, counts, r.opts))
    for w in plan.workloads:
        run_one_workload(r, live, w, plan, counts)
        dump(r.run_dir, res)
    if r.opts.startup_runs > 0:
        r.log(f"start-up: exec to listening (and to READY=1 for echod), {r.opts.startup_runs} runs per peer")
        res.meta.startup = phases.startup_phase(r, [s.spec for s in live], r.opts.startup_runs)
    if workloads.IDLE in r.opts.workloads:
        r.log(f"workload {workloads.IDLE}: server memory per idle connection")
        phases.idle_phase(r, live)
    for s in live:
        s.result.other_load_median_pct = summary.other_load_median(s.result)


def start_servers(r: Race, specs: list[peers.PeerSpec], cpus: list[int] | None, res: model.Results) -> list[Server]:
    """Every server started and checked; the checks only verify bytes (no timing), so they run four servers at a
    time: about 12 s instead of 34."""
    busy, _ = measure.wait_quiet(r.opts.quiet_limit, min(r.opts.quiet_wait, r.schedule.slack_left()))
    r.log(f"starting {len(specs)} servers (background CPU use {busy}%)")
    servers = []
    for spec in specs:
        s = phases.start_server(r, spec, cpus[0] if cpus and spec.threads == 1 else None)
        s.result.background_busy_pct = busy
        servers.append(s)
        res.peers.append(s.result)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda s: phases.check_server(r, s), [s for s in servers if s.live]))
    return servers


def run_one_workload(
    r: Race, live: list[Server], w: workloads.Workload, plan: Plan, counts: measure.PeerCounts
) -> None:
    busy, _ = measure.wait_quiet(r.opts.quiet_limit, min(r.opts.quiet_wait, r.schedule.slack_left()))
    sweep = w.name in workloads.SWEEP_NAMES
    rounds = min(plan.repeats, r.opts.sweep_repeats) if sweep else plan.repeats
    warning = f" (warning: background CPU use {busy}%)" if busy > r.opts.quiet_limit else ""
    r.log(f"workload {w.name}: {w.label} — {rounds} round(s) over {len(live)} peers{warning}")
    measure.run_workload(r, live, w, plan)
    r.schedule.done(measure.estimate_workload(*counts.of(w), r.opts, plan, sweep, w.connections))


def write_outputs(run_dir: str, res: model.Results, log: Log) -> int:
    dump(run_dir, res)
    table = report.render_table(res)
    with open(os.path.join(run_dir, "table.md"), "w") as f:
        f.write(table)
    svg = report.render_svg(res.peers)
    if svg:
        with open(os.path.join(run_dir, "latency.svg"), "w") as f:
            f.write(svg)
    try:
        print()
        print(table)
    except OSError:
        pass
    log(f"done in {res.meta.elapsed_s} s: {run_dir}/table.md, results.json" + (", latency.svg" if svg else ""))
    return 0 if all(p.ok for p in res.peers) else 1


def retable(run_dir: str, foreign_limit: float) -> int:
    """Re-summarise the raw runs of an earlier race and render its table and plot with the current code."""
    with open(os.path.join(run_dir, "results.json")) as f:
        res = model.from_json(model.Results, json.load(f))
    for p in res.peers:
        for w in p.workloads.values():
            summary.summarise_workload(w, foreign_limit)
        p.other_load_median_pct = summary.other_load_median(p)
    table = report.render_table(res)
    with open(os.path.join(run_dir, "table.md"), "w") as f:
        f.write(table)
    print(table)
    svg = report.render_svg(res.peers)
    if svg:
        with open(os.path.join(run_dir, "latency.svg"), "w") as f:
            f.write(svg)
    return 0


def dump(run_dir: str, res: model.Results) -> None:
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(model.to_json(res), f, indent=1, default=str)


def _sigterm(signum, frame):
    raise KeyboardInterrupt
