"""What /proc says about a process and about the machine: the one implementation, imported by the race
(bench/race), bench/idle_rss.py and the end-to-end tests (Tests/e2e/conftest.py).

Every reader takes a PID the caller started; none signals or changes anything.
"""

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Fields of /proc/PID/stat after the ")" that ends the command name (stat(5) numbers them from 1 with pid first).
_STATE, _UTIME, _STIME, _CUTIME, _CSTIME = 0, 11, 12, 13, 14


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return stat_fields(pid)[_STATE] != "Z"
    except (OSError, IndexError):
        return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself (every thread), in seconds."""
    fields = stat_fields(pid)
    return (int(fields[_UTIME]) + int(fields[_STIME])) / CLK_TCK


def tree_cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of the process and of each live descendant, in clock ticks: the CPU of a
    fork-per-connection server, whose children (live or reaped) do the work. A process that is gone counts 0."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += sum(int(x) for x in stat_fields(p)[_UTIME : _CSTIME + 1])
        except (OSError, IndexError, ValueError):
            pass
    return total


def descendants(pid: int) -> list[int]:
    """Every descendant PID of pid, from /proc/PID/task/TID/children (children of every thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                kids = [int(x) for x in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
            except OSError:
                kids = []
            out.extend(kids)
            todo.extend(kids)
    return out


def status_kb(pid: int, key: str = "VmRSS") -> int:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM, ...). KeyError when the kernel does not report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def vm_rss_kib(pid: int) -> int:
    return status_kb(pid, "VmRSS")


def rollup_kb(pid: int, key: str) -> int | None:
    """A kB figure of /proc/PID/smaps_rollup (Rss, Pss, ...), or None when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_kb(pid: int, tree: bool) -> int:
    """Resident memory of a server. One process: Rss from smaps_rollup, which walks the page tables (VmRSS is the
    same quantity from per-CPU counters the kernel folds in lazily, off by up to a few hundred kB; it is the
    fallback). tree: Pss summed over the process and its descendants (fork-per-connection servers)."""
    if not tree:
        rss = rollup_kb(pid, "Rss")
        return rss if rss is not None else vm_rss_kib(pid)
    return sum(rollup_kb(p, "Pss") or 0 for p in [pid, *descendants(pid)])


def fd_count(pid: int) -> int:
    """Open file descriptors of the process (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine_ticks() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..., in ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_busy_ticks() -> int:
    """user + nice + system + steal of the whole machine. irq and softirq are left out (loopback traffic is
    processed in softirq context, not always charged to the processes that cause it); steal counts: the
    hypervisor gave the CPU to someone else."""
    v = machine_ticks()
    return v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)


def cpu_model() -> str | None:
    """The `model name` of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
