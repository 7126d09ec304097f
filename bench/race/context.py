"""What every phase of a race shares: the options, the tools, the plan, the clock, and the servers it started."""

import os
import subprocess
import time
from dataclasses import dataclass, field

from .log import Log
from .model import PeerResult
from .options import Options
from .peers import PeerSpec, Tools
from .procs import Procs
from .workloads import Workload


@dataclass
class Schedule:
    """Time budget for the extras (waiting for a quiet machine, re-running disturbed runs). The race has a deadline;
    `remaining` estimates the base time of the work still ahead (it is told as phases end). An extra is allowed
    only when it fits in deadline - now - remaining."""

    deadline: float = float("inf")
    remaining: float = 0.0

    def start(self, deadline: float, remaining: float) -> None:
        self.deadline, self.remaining = deadline, remaining

    def done(self, seconds: float) -> None:
        self.remaining = max(0.0, self.remaining - seconds)

    def slack_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic() - self.remaining)


@dataclass
class Plan:
    """What the race runs once the budget is applied (see measure.fit_budget)."""

    workloads: list[Workload]
    repeats: int
    echod_client_repeats: int
    trimmed: list[str] = field(default_factory=list)


@dataclass
class Race:
    opts: Options
    tools: Tools
    log: Log
    run_dir: str
    procs: Procs = field(default_factory=Procs)
    schedule: Schedule = field(default_factory=Schedule)
    pin_client: int | None = None
    use_perf: bool = False

    def logfile(self, name: str) -> str:
        return os.path.join(self.run_dir, "logs", name)


@dataclass
class Server:
    """One raced server: its spec, its process and port, and its results."""

    spec: PeerSpec
    proc: subprocess.Popen
    port: int
    result: PeerResult
    pin_server: int | None = None
    live: bool = False
    retries: int = 0

    @property
    def name(self) -> str:
        return self.spec.name
