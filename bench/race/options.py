"""The command line of bench/run.py (documented in bench/README.md) and the options it gives."""

import argparse
from dataclasses import dataclass, field

from . import workloads
from .peers import ORDER, REFERENCE, UDP_PEERS, UDP_REFERENCE


@dataclass
class Options:
    quick: bool = False
    peers: list[str] = field(default_factory=lambda: list(ORDER))
    workloads: list[str] = field(default_factory=list)
    duration: float = 0.6
    warmup: float = 0.1
    repeats: int = 4
    echod: str | None = None
    client: str = "both"
    echod_client_repeats: int = 1
    pin: str = "auto"
    quiet_limit: float = 15.0
    quiet_wait: float = 15.0
    foreign_limit: float = 10.0
    retries: int = 2
    budget: float = 570.0
    no_perf: bool = False
    perf_duration: float = 0.3
    idle_connections: int = 10000
    idle_connections_fork: int = 500
    idle_settle: float = 0.5
    sweep: bool = True
    sweep_repeats: int = 2
    startup_runs: int = 5
    out: str | None = None
    retable: str | None = None


def parser() -> argparse.ArgumentParser:
    from . import cli

    ap = argparse.ArgumentParser(description=cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _what_to_race(ap.add_argument)
    _placement_and_load(ap.add_argument)
    _phases_and_output(ap)
    return ap


def _what_to_race(add) -> None:
    """Peers, workloads, durations and clients."""
    add("--quick", action="store_true", help="smoke test: 1 repeat, 1 s per workload, no sweep")
    add("--only", default="", help="comma-separated peers (the C reference is always added)")
    add(
        "--workloads",
        default="",
        help="comma-separated subset of: " + ",".join(w.name for w in workloads.ALL) + "," + workloads.IDLE,
    )
    add("--duration", type=float, default=None, help="seconds per workload run (default 0.6; quick 1)")
    add("--warmup", type=float, default=0.1, help="warm-up seconds before each measured run")
    add(
        "--repeats",
        type=int,
        default=None,
        help="repeats per workload with the C client (default 4; quick 1): the table shows their median",
    )
    add("--echod", default=None, help="echod binary (default: $ECHOD_BIN, then .build/release/echod)")
    add(
        "--client",
        choices=["c", "echod", "both"],
        default="both",
        help="load client: bench's C client, `echod bench` (when the binary has it), or both (default: "
        "the C client for the figures, `echod bench` beside it to show the two agree)",
    )
    add(
        "--echod-client-repeats",
        type=int,
        default=1,
        help="with --client both: rounds in which `echod bench` runs too (default 1)",
    )


def _placement_and_load(add) -> None:
    """Pinning, other work on the machine, the time budget."""
    add(
        "--pin",
        choices=["auto", "split", "none"],
        default="auto",
        help="split: client on the last CPU, single-threaded servers on CPU 0, multi-threaded servers "
        "unpinned; none: no taskset; auto (default): calibrate both on the C reference and keep the "
        "steadier (lower run-to-run spread)",
    )
    add(
        "--quiet-limit",
        type=float,
        default=15.0,
        help="background CPU %% above which to wait before a peer (other work on the machine)",
    )
    add("--quiet-wait", type=float, default=15.0, help="max seconds to wait for quiet before each peer")
    add(
        "--foreign-limit",
        type=float,
        default=10.0,
        help="a run during which other processes used more than this %% of the machine is re-run",
    )
    add("--retries", type=int, default=2, help="extra runs per workload allowed for such re-runs")
    add(
        "--budget",
        type=float,
        default=None,
        help="seconds the race may take (default 570, quick 300; 0 = unbounded; from the start of `make bench` "
        "when it sets ECHOD_BENCH_T0): waits for quiet and re-runs stop when a peer falls behind its share",
    )


def _phases_and_output(ap: argparse.ArgumentParser) -> None:
    """perf, idle memory, the sweep, start-up timings, where the results go."""
    add = ap.add_argument
    add("--no-perf", action="store_true", help="skip the perf syscall counts")
    add("--perf-duration", type=float, default=0.3)
    add("--idle-connections", type=int, default=10000)
    add(
        "--idle-connections-fork",
        type=int,
        default=500,
        help="idle connections for fork-per-connection peers (socat, xinetd)",
    )
    add("--idle-settle", type=float, default=0.5)
    add(
        "--no-sweep",
        dest="sweep",
        action="store_false",
        help="leave out pingpong 64 B at 10 and 200 connections (the middle and right points of the latency plot)",
    )
    add("--sweep", dest="sweep", action="store_true", help=argparse.SUPPRESS)
    add(
        "--sweep-repeats",
        type=int,
        default=2,
        help="repeats of the sweep's extra workloads (default 2: they are there for the plot)",
    )
    add(
        "--startup-runs",
        type=int,
        default=5,
        help="start-up timings per peer (exec to listening; echod also to READY=1); 0 = skip",
    )
    ap.set_defaults(sweep=None)
    add("--out", default=None, help="results directory (default bench/results/<date-time>)")
    add(
        "--retable",
        metavar="DIR",
        default=None,
        help="only re-render DIR/table.md and DIR/latency.svg from DIR/results.json (no race)",
    )


def parse(argv: list[str] | None = None) -> Options:
    """The options of a command line, with the defaults that depend on --quick; exits on a usage error."""
    ap = parser()
    a = ap.parse_args(argv)
    repeats = a.repeats if a.repeats is not None else (1 if a.quick else 4)
    sweep = a.sweep if a.sweep is not None else not a.quick
    known = [w.name for w in workloads.selected(sweep)] + [workloads.IDLE]
    chosen = [w for w in a.workloads.split(",") if w] or known
    for w in chosen:
        if w not in known:
            ap.error(f"unknown workload {w}")
    peers = [p for p in a.only.split(",") if p] or list(ORDER)
    for p in peers:
        if p not in ORDER:
            ap.error(f"unknown peer {p}; peers: {','.join(ORDER)}")
    if REFERENCE not in peers:
        peers = [REFERENCE, *peers]
    if any(p in UDP_PEERS for p in peers) and UDP_REFERENCE not in peers:
        peers = [*peers, UDP_REFERENCE]
    return Options(
        quick=a.quick,
        peers=peers,
        workloads=chosen,
        duration=a.duration if a.duration is not None else (1.0 if a.quick else 0.6),
        warmup=a.warmup,
        repeats=repeats,
        echod=a.echod,
        client=a.client,
        echod_client_repeats=a.echod_client_repeats if a.client == "both" else repeats,
        pin=a.pin,
        quiet_limit=a.quiet_limit,
        quiet_wait=a.quiet_wait,
        foreign_limit=a.foreign_limit,
        retries=a.retries,
        budget=a.budget if a.budget is not None else (300.0 if a.quick else 570.0),
        no_perf=a.no_perf,
        perf_duration=a.perf_duration,
        idle_connections=a.idle_connections,
        idle_connections_fork=a.idle_connections_fork,
        idle_settle=a.idle_settle,
        sweep=sweep,
        sweep_repeats=a.sweep_repeats,
        startup_runs=a.startup_runs,
        out=a.out,
        retable=a.retable,
    )
