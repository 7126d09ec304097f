"""Medians of the runs (pure: runs in, summaries out)."""

import statistics
from collections.abc import Callable, Iterable

from .model import EchodSummary, PeerResult, Run, Summary, WorkloadResult


def median_of(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None, or None."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: list[Run], discarded: int, foreign_limit: float) -> Summary | None:
    """Medians over the runs that other work did not disturb (other load <= limit); over all runs, flagged, when
    none was clean. errors_total counts every run."""
    if not runs:
        return None
    clean = [r for r in runs if r.foreign_cpu_pct <= foreign_limit]
    used = clean or runs

    def med(get: Callable[[Run], float | None]) -> float | None:
        return median_of(get(r) for r in used)

    ops = [r.ops_per_sec for r in used]
    m = statistics.median(ops)
    return Summary(
        n=len(used),
        n_runs=len(runs),
        n_disturbed_left_out=len(runs) - len(used),
        all_disturbed=not clean,
        ops_per_sec=m,
        ops_min=min(ops),
        ops_max=max(ops),
        spread_pct=(max(ops) - min(ops)) / m * 100 if m else 0,
        mb_per_sec=med(lambda r: r.mb_per_sec),
        p50=med(lambda r: r.latency_us.p50),
        p90=med(lambda r: r.latency_us.p90),
        p99=med(lambda r: r.latency_us.p99),
        p999=med(lambda r: r.latency_us.p999),
        max=med(lambda r: r.latency_us.max),
        server_cpu_us_per_op=med(lambda r: r.server_cpu_us_per_op),
        errors_total=sum(r.errors_total or 0 for r in runs),
        foreign_cpu_pct=med(lambda r: r.foreign_cpu_pct),
        discarded=discarded,
    )


def summarise_echod(runs: list[Run]) -> EchodSummary | None:
    """The `echod bench` runs (one or two per cell: no spread, no disturbance filter)."""
    if not runs:
        return None
    return EchodSummary(
        ops_per_sec=median_of(r.ops_per_sec or None for r in runs),
        errors_total=sum(r.errors_total or 0 for r in runs),
        p99=median_of(r.latency_us.p99 for r in runs) or None,
    )


def summarise_workload(w: WorkloadResult, foreign_limit: float) -> None:
    """Sets the summaries of one peer's workload from its runs."""
    w.summary = summarise(w.runs, len(w.discarded), foreign_limit)
    w.echod_summary = summarise_echod(w.echod_runs)


def other_load_median(peer: PeerResult) -> float | None:
    """The median other load over every measured run of a peer, % of the machine, 1 decimal."""
    loads = [r.foreign_cpu_pct for w in peer.workloads.values() for r in w.runs]
    return round(statistics.median(loads), 1) if loads else None
