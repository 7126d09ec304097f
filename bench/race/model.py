"""The race's results, typed, and their results.json form.

results.json keeps the shape it always had (one object: meta, notes, peers; a run is echoclient's JSON with the
race's own figures added), so `run.py --retable` reads the files of earlier races too. `to_json` and `from_json`
map the dataclasses onto that shape: a field marked `optional()` is left out while it is None or empty, and a
field named `extra` holds the keys the class does not name (echoclient's other output), written back flat.
"""

import dataclasses
import statistics
import types
import typing
from dataclasses import dataclass, field


def optional(default=None):
    """A field left out of the JSON while it is None or empty (as the race always did for absent figures)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata={"omit": True})
    return field(default=default, metadata={"omit": True})


@dataclass
class Latency:
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    mean: float | None = None


@dataclass
class LogCount:
    """What echod-1-reads wrote to its log file during one run (see measure.drain_log_file)."""

    lines: int = 0
    dropped: int = 0
    bytes: int = 0
    error: str | None = optional()


@dataclass
class Run:
    """One client run: the client's own figures plus the server CPU and the other load measured around it."""

    ops_per_sec: float | None = None
    ops: int | None = None
    ops_all: int | None = optional()
    mb_per_sec: float | None = None
    latency_us: Latency = field(default_factory=Latency)
    errors: dict[str, int] = field(default_factory=dict)
    errors_total: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    foreign_cpu_pct: float = 0.0
    server_cpu_us_per_op: float | None = None
    log: LogCount | None = optional()
    extra: dict[str, typing.Any] = field(default_factory=dict)

    @property
    def ops_completed(self) -> int:
        """Every op of the run, warm-up and drain included (what the server's CPU was spent on)."""
        return self.ops_all or self.ops or 0


@dataclass
class Summary:
    """Medians over the runs of one peer in one workload that other work did not disturb."""

    n: int
    n_runs: int
    n_disturbed_left_out: int
    all_disturbed: bool
    ops_per_sec: float
    ops_min: float
    ops_max: float
    spread_pct: float
    mb_per_sec: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    server_cpu_us_per_op: float | None = None
    errors_total: int = 0
    foreign_cpu_pct: float | None = None
    discarded: int = 0


@dataclass
class EchodSummary:
    """The runs of `echod bench` (the second client) of one peer in one workload."""

    ops_per_sec: float | None
    errors_total: int
    p99: float | None


@dataclass
class SyscallCount:
    """The server's system calls (every thread) over the measured interval of one separate client run, and the ops
    the client completed in that interval (clients.perf_syscalls); or why there is no count."""

    syscalls: int | None = optional()
    ops: int | None = optional()
    seconds: float | None = optional()  # the client's measured interval
    error: str | None = optional()

    @property
    def per_op(self) -> float | None:
        return self.syscalls / self.ops if self.syscalls is not None and self.ops else None


@dataclass
class WorkloadResult:
    mode: str
    connections: int
    size: int
    label: str
    runs: list[Run] = field(default_factory=list)
    echod_runs: list[Run] = field(default_factory=list)
    discarded: list[Run] = field(default_factory=list)
    failures: list[str] = optional([])
    syscalls_per_op: float | None = optional()  # syscalls.per_op: system calls per message (round trip)
    syscalls: SyscallCount | None = optional()
    summary: Summary | None = optional()
    echod_summary: EchodSummary | None = optional()


@dataclass
class CheckResult:
    mode: str
    connections: int | None = optional()
    size: int | None = optional()
    ops: int | None = optional()
    errors: dict[str, int] | None = optional()
    failure: str | None = None


@dataclass
class IdleResult:
    """bench/idle_rss.py's JSON, or the reason it has none."""

    connections: int | None = optional()
    metric: str | None = optional()
    kb_before: int | None = optional()
    kb_idle: int | None = optional()
    kb_after_echo: int | None = optional()
    kb_after_close: int | None = optional()
    bytes_per_conn_idle: float | None = optional()
    bytes_per_conn_after_echo: float | None = optional()
    failure: str | None = optional()
    extra: dict[str, typing.Any] = field(default_factory=dict)


@dataclass
class Stats:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> "Stats | None":
        return cls(statistics.median(values), min(values), max(values)) if values else None


@dataclass
class StartupResult:
    runs: int
    accept_ms: Stats | None = None
    ready_ms: Stats | None = None
    failure: str | None = None


@dataclass
class Calibration:
    """The pinning calibration: which placement was kept and why (runs: ops/s per placement and connections)."""

    choice: str
    text: str
    runs: dict[str, dict[str, list[float]]] = optional({})
    cv_pct: dict[str, float | None] = optional({})
    disturbed: int | None = optional()
    background_busy_pct: float | None = optional()


@dataclass
class PeerResult:
    peer: str
    desc: str
    threads: int
    pinned_cpu: int | None = None
    workloads: dict[str, WorkloadResult] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    status: str = "ok"
    argv: list[str] = optional([])
    pid: int | None = optional()
    background_busy_pct: float | None = optional()
    idle: IdleResult | None = optional()
    other_load_median_pct: float | None = optional()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Meta:
    date: str
    cpu: str
    cores: int
    kernel: str
    repeats: int
    duration: float
    warmup: float
    client: str
    echod_client_repeats: int
    pinning: str
    perf: str
    python: str = ""
    args: dict[str, typing.Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    pin_calibration: Calibration | None = None
    trimmed: list[str] = field(default_factory=list)
    elapsed_s: float | None = optional()
    startup: dict[str, StartupResult] = optional({})


@dataclass
class Results:
    meta: Meta
    notes: dict[str, str]
    peers: list[PeerResult]


def to_json(obj):
    """The JSON value of a result (dataclasses, lists, dicts and scalars)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "extra":
                out.update(value)
            elif not (f.metadata.get("omit") and value in (None, [], {})):
                out[f.name] = to_json(value)
        return out
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def from_json(cls, data: dict):
    """A `cls` from its JSON object; keys the class does not name go to its `extra` (or are dropped)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs, extra = {}, {}
    for key, value in data.items():
        if key in names and key != "extra":
            kwargs[key] = _convert(hints[key], value)
        else:
            extra[key] = value
    if "extra" in names:
        kwargs["extra"] = extra
    return cls(**kwargs)


def _convert(tp, value):
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return _convert(kinds[0], value) if len(kinds) == 1 else value
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value)
    if origin is list:
        return [_convert(args[0], v) for v in value]
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value
