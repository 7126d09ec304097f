"""The race's report (bench/run.py): tables and plot rendered from raw runs, without racing anything.

`run.py --retable DIR` re-summarises DIR/results.json with the current code, so this checks the medians,
the ratios to the C reference, the second-client table and the latency plot on runs whose answers are known.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "bench", "run.py")


def _run(ops, p99=50.0, cpu=10.0, client="echoclient", errors=0):
    return {
        "client": client,
        "mode": "pingpong",
        "connections": 1,
        "size": 64,
        "ops": int(ops),
        "ops_per_sec": ops,
        "ops_all": int(ops),
        "bytes": int(ops) * 64,
        "mb_per_sec": ops * 64 / 1e6,
        "latency_us": {
            "p50": p99 / 2,
            "p90": p99 * 0.8,
            "p99": p99,
            "p999": p99 * 1.5,
            "max": p99 * 3,
            "mean": p99 / 2,
        },
        "errors": {"mismatch": errors},
        "errors_total": errors,
        "server_cpu_s": cpu * ops / 1e6,
        "client_cpu_s": 0.5,
        "wall_s": 0.8,
        "foreign_cpu_pct": 0.0,
        "server_cpu_us_per_op": cpu,
    }


def _peer(name, workloads, idle=None):
    return {
        "peer": name,
        "desc": name + " server",
        "threads": 1,
        "pinned_cpu": None,
        "workloads": workloads,
        "checks": [],
        "status": "ok",
        "idle": idle,
    }


def _workload(conns, runs, echod_runs=()):
    return {
        "mode": "pingpong",
        "connections": conns,
        "size": 64,
        "label": f"pingpong 64 B, {conns} conns",
        "runs": list(runs),
        "echod_runs": list(echod_runs),
        "discarded": [],
        "syscalls_per_op": 2.0,
    }


def _results(tmp_path):
    c = _peer(
        "c-epoll",
        {
            "pp64-c1": _workload(1, [_run(30000), _run(40000), _run(50000)], [_run(20000, client="echod-bench")]),
            "pp64-c50": _workload(50, [_run(100000, p99=400)] * 3),
        },
        idle={
            "connections": 10000,
            "metric": "Rss",
            "kb_before": 1000,
            "kb_idle": 1000,
            "kb_after_echo": 1000,
            "kb_after_close": 1000,
            "bytes_per_conn_idle": 0.0,
            "bytes_per_conn_after_echo": 0.0,
        },
    )
    e = _peer(
        "echod-1",
        {
            # median 44k against the reference's 40k; a slow outlier must not move it
            "pp64-c1": _workload(
                1,
                [_run(44000, cpu=9.0), _run(10000, cpu=30.0), _run(46000, cpu=9.5)],
                [_run(30000, client="echod-bench", errors=2)],
            ),
            "pp64-c50": _workload(50, [_run(120000, p99=300)] * 3),
        },
    )
    reads_runs = [
        dict(_run(36000, cpu=11.0), log={"lines": 36000, "dropped": 0, "bytes": 3_600_000}),
        dict(_run(35000, cpu=11.5), log={"lines": 30000, "dropped": 5000, "bytes": 3_000_000}),
        dict(_run(37000, cpu=10.5), log={"lines": 37000, "dropped": 0, "bytes": 3_700_000}),
    ]
    r = _peer("echod-1-reads", {"pp64-c1": _workload(1, reads_runs)})
    meta = {
        "date": "2026-11-25 10:00",
        "cpu": "test CPU",
        "cores": 2,
        "kernel": "test",
        "repeats": 3,
        "duration": 0.6,
        "warmup": 0.15,
        "client": "both",
        "echod_client_repeats": 1,
        "pinning": "none (test)",
        "perf": "test",
        "python": "3",
        "args": {"workloads": ["pp64-c1", "pp64-c50"]},
        "versions": {},
        "pin_calibration": None,
        "elapsed_s": 1.0,
        "startup": {
            "echod-1": {
                "runs": 5,
                "ready_ms": {"median": 9.5, "min": 8.0, "max": 12.0},
                "accept_ms": {"median": 10.0, "min": 8.5, "max": 12.5},
                "failure": None,
            },
            "c-epoll": {
                "runs": 5,
                "ready_ms": None,
                "accept_ms": {"median": 1.5, "min": 1.0, "max": 2.0},
                "failure": None,
            },
        },
    }
    d = tmp_path / "race"
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"meta": meta, "peers": [c, e, r], "notes": {}}))
    return d


def test_retable_gives_medians_ratios_and_both_clients(tmp_path):
    d = _results(tmp_path)
    r = subprocess.run([sys.executable, RUN, "--retable", str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    table = (d / "table.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    # summary: medians and ratios to c-epoll
    summary = table.split("## Throughput")[1].split("###")[0]
    assert "| c-epoll | 40.0k (1.00×) | 100.0k (1.00×) |" in summary
    assert "| echod-1 | 44.0k (1.10×) | 120.0k (1.20×) |" in summary
    # the second client's own table, ratios under that client, and its errors flagged
    second = table.split("### The same with `echod bench` as the client")[1].split("Workloads:")[0]
    assert "| c-epoll | 20.0k (1.00×) | – |" in second
    assert "| echod-1 | 30.0k (1.50×) ⚠ | – |" in second
    # detail: CPU per op is the median too (9.5, not the outlier's 30), p99 ratio 300/400
    detail = table.split("### pp64-c50")[0].split("### pp64-c1")[1]
    assert "| echod-1 | 44.0k |" in detail and "| 9.50 | 0.95× |" in detail
    assert "0.75×" in table.split("### pp64-c50")[1]
    assert "idle-10k" in table and "c-epoll" in rows
    # log.reads: 36k against echod-1's 44k, records per op over all runs, dropped records summed
    reads = table.split("### `log.reads: true`")[1].split("###")[0]
    assert "| pp64-c1 | 44.0k | 36.0k | 0.82× | 9.50 → 11.0 | 0.95 | 5000 |" in reads
    startup = table.split("### Start-up")[1].split("Workloads:")[0]
    assert "| echod-1 | 5 | 9.50 (8.00–12.0) | 10.0 (8.50–12.5) |" in startup
    assert "| c-epoll | 5 | – | 1.50 (1.00–2.00) |" in startup
    svg = (d / "latency.svg").read_text()
    assert svg.startswith("<svg") and "echod-1" in svg and "polyline" in svg
