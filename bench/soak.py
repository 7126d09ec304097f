"""Soak: echod at a steady mixed load for a while; fails if its memory or descriptors grow beyond noise.

make soak runs it (SOAK_MINUTES=, default 10). The load, all verified byte for byte by `echod bench`:
pingpong (16 connections, 64 B), stream (4 connections, 16 KiB messages), connect churn (2 connectors: connect,
one echo, close) and 64 idle connections held open by this script. Every SOAK_INTERVAL seconds (10) it samples
echod's RSS (smaps_rollup), open descriptors and CPU (bench/race/procfs.py) and prints a row.

Growth beyond noise, the verdict: the samples after the warm-up (the first 10% of the run, at least one sample) are
cut in thirds; the run fails if the last third's maximum exceeds the first third's maximum by more than the
tolerance: RSS by 10% + 2 MiB (allocator arenas settle in steps of a few hundred KiB; a leak of one small object per
connection or per echo grows without bound and crosses it within minutes at this rate), descriptors by 8 (the connect
churn has a few connections in flight at any instant). Maxima, not means, so that one quiet sample cannot hide
growth. The least-squares slope over the second half is printed too, for the reader. A bench that reports errors, or
an echod that exits, also fails the run.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from race.procfs import cpu_seconds, fd_count, is_alive, memory_kb
from race.procs import free_port

RSS_TOLERANCE = 0.10
RSS_SLACK_KB = 2048
FD_SLACK = 8
IDLE_CONNECTIONS = 64

LOADS = [
    ["--mode", "pingpong", "--connections", "16", "--size", "64"],
    ["--mode", "stream", "--connections", "4", "--size", "16KiB"],
    ["--mode", "connect", "--connections", "2", "--size", "64"],
]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"soak: echod exited at start-up with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"soak: echod does not listen on 127.0.0.1:{port} after {timeout} s")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / den


def verdict(samples: list[dict], warmup: int) -> list[str]:
    """The growth failures (empty: within noise)."""
    steady = samples[warmup:]
    if len(steady) < 3:
        return [f"too few samples after the warm-up ({len(steady)}): run longer"]
    third = len(steady) // 3
    first, last = steady[:third], steady[-third:]
    failures = []
    rss_first, rss_last = max(s["rss_kb"] for s in first), max(s["rss_kb"] for s in last)
    rss_limit = rss_first * (1 + RSS_TOLERANCE) + RSS_SLACK_KB
    if rss_last > rss_limit:
        failures.append(f"RSS grew: last third max {rss_last} KiB > {rss_limit:.0f} KiB (first third max {rss_first})")
    fd_first, fd_last = max(s["fds"] for s in first), max(s["fds"] for s in last)
    if fd_last > fd_first + FD_SLACK:
        failures.append(f"descriptors grew: last third max {fd_last} > first third max {fd_first} + {FD_SLACK}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.environ.get("ECHOD_BIN", ".build/release/echod"))
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--interval", type=float, default=float(os.environ.get("SOAK_INTERVAL", "10")))
    args = parser.parse_args()
    duration = args.minutes * 60
    binary = str(Path(args.binary).resolve())

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="echod-soak-"))
    config = work / "echod.yaml"
    config.write_text(
        f'listen: ["127.0.0.1:{port}"]\nthreads: 2\nlimits:\n  idle_timeout: 0s\nlog:\n  level: warning\n'
    )
    log = open(work / "echod.log", "wb")  # noqa: SIM115 (open for the whole run)
    echod = subprocess.Popen([binary, "run", "--config", str(config)], stdout=log, stderr=log)
    benches: list[subprocess.Popen] = []
    idle: list[socket.socket] = []
    failures: list[str] = []
    try:
        wait_listening(port, echod)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(IDLE_CONNECTIONS)]
        bench_seconds = int(duration) + 5  # outlasts the sampling; stopped with SIGINT, which still prints the summary
        for load in LOADS:
            benches.append(
                subprocess.Popen(
                    [binary, "bench", f"127.0.0.1:{port}", *load, "--duration", f"{bench_seconds}s", "--json"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        print(
            f"soak: echod pid {echod.pid} on 127.0.0.1:{port}, {args.minutes:g} min, a sample every {args.interval:g} s"
        )
        print(f"{'t (s)':>6} {'RSS (KiB)':>10} {'fds':>5} {'CPU %':>6}")
        samples = []
        start = time.monotonic()
        last_cpu, last_t = cpu_seconds(echod.pid), start
        while True:
            next_t = start + (len(samples) + 1) * args.interval
            if next_t - start > duration + 1e-6:
                break
            time.sleep(max(0.0, next_t - time.monotonic()))
            if not is_alive(echod.pid):
                failures.append(f"echod exited during the soak (status {echod.poll()})")
                break
            now, cpu = time.monotonic(), cpu_seconds(echod.pid)
            sample = {
                "t": round(now - start),
                "rss_kb": memory_kb(echod.pid, tree=False),
                "fds": fd_count(echod.pid),
                "cpu_pct": 100 * (cpu - last_cpu) / (now - last_t),
            }
            last_cpu, last_t = cpu, now
            samples.append(sample)
            print(f"{sample['t']:>6} {sample['rss_kb']:>10} {sample['fds']:>5} {sample['cpu_pct']:>6.1f}", flush=True)
        for b in benches:
            b.send_signal(signal.SIGINT)
        for b, load in zip(benches, LOADS, strict=True):
            out, err = b.communicate(timeout=30)
            mode = load[1]
            if b.returncode != 0:
                failures.append(f"bench {mode} exited {b.returncode}: {err.decode(errors='replace')[-500:]}")
                continue
            summary = json.loads(out)
            keys = ("ops_per_s", "mb_per_s_in", "errors_total")
            print(f"bench {mode}: " + ", ".join(f"{k} {summary.get(k)}" for k in keys))
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    failures.append("an idle connection was closed by echod")
                    break
            except BlockingIOError:
                pass
        warmup = max(1, len(samples) // 10)
        half = samples[len(samples) // 2 :]
        rss_slope = slope_per_minute([(s["t"], s["rss_kb"]) for s in half])
        fd_slope = slope_per_minute([(s["t"], s["fds"]) for s in half])
        print(f"second half: RSS {rss_slope:+.1f} KiB/min, descriptors {fd_slope:+.2f}/min (least squares)")
        if not failures:
            failures = verdict(samples, warmup)
    finally:
        for s in idle:
            s.close()
        for b in benches:
            if b.poll() is None:
                b.kill()
                b.wait()
        echod.send_signal(signal.SIGTERM)
        try:
            echod.wait(timeout=15)
        except subprocess.TimeoutExpired:
            echod.kill()
            echod.wait()
        log.close()
    for f in failures:
        print(f"soak FAILED: {f}")
    if failures:
        print(f"echod's log: {work / 'echod.log'}")
        return 1
    print(
        f"soak passed: RSS within {RSS_TOLERANCE:.0%} + {RSS_SLACK_KB} KiB and descriptors within {FD_SLACK} "
        "(last third's maximum against the first third's, after the warm-up)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
