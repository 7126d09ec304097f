"""The race's pure parts on results whose answers are known: medians, ratios, table cells, the plot, results.json."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from race import report, summary, workloads
from race.model import (
    IdleResult,
    Latency,
    LogCount,
    Meta,
    PeerResult,
    Results,
    Run,
    StartupResult,
    Stats,
    WorkloadResult,
    from_json,
    to_json,
)

PP1, PP50 = workloads.ALL[0], workloads.ALL[2]


def run(ops, p99=50.0, cpu=10.0, errors=0, foreign=0.0, ops_all=None, log=None):
    return Run(
        ops_per_sec=ops,
        ops=int(ops),
        ops_all=ops_all or int(ops),
        mb_per_sec=ops * 64 / 1e6,
        latency_us=Latency(p99 / 2, p99 * 0.8, p99, p99 * 1.5, p99 * 3, p99 / 2),
        errors={"mismatch": errors},
        errors_total=errors,
        foreign_cpu_pct=foreign,
        server_cpu_us_per_op=cpu,
        log=log,
    )


def workload(w, runs, echod_runs=(), discarded=()):
    r = WorkloadResult(w.mode, w.connections, w.size, w.label, list(runs), list(echod_runs), list(discarded))
    summary.summarise_workload(r, foreign_limit=10.0)
    return r


def peer(name, wls, status="ok", idle=None):
    return PeerResult(name, name + " server", 1, None, wls, status=status, idle=idle)


def meta(**kw):
    base = {
        "date": "2026-12-02 08:00",
        "cpu": "test CPU",
        "cores": 2,
        "kernel": "test",
        "repeats": 3,
        "duration": 0.6,
        "warmup": 0.1,
        "client": "c",
        "echod_client_repeats": 0,
        "pinning": "none (test)",
        "perf": "test",
    }
    return Meta(**{**base, **kw})


def test_fmt_num_three_significant_digits_and_units():
    assert [report.fmt_num(v) for v in (None, 0.5, 9.5, 12.34, 123.4, 12345, 1_234_567)] == [
        "–",
        "0.50",
        "9.50",
        "12.3",
        "123",
        "12.3k",
        "1.23M",
    ]
    assert report.fmt_num("n/a") == "n/a"


def test_ratio_to_reference_and_missing_reference():
    assert report.ratio(44000, 40000) == "1.10×"
    assert report.ratio(44000, None) == "–" and report.ratio(44000, 0) == "–" and report.ratio(None, 1) == "–"


def test_summary_takes_medians_of_undisturbed_runs_and_counts_every_error():
    runs = [run(44000, cpu=9.0), run(10000, cpu=30.0, foreign=50.0, errors=3), run(46000, cpu=9.5), run(42000)]
    s = summary.summarise(runs, discarded=1, foreign_limit=10.0)
    assert (s.n, s.n_runs, s.n_disturbed_left_out, s.all_disturbed) == (3, 4, 1, False)
    assert s.ops_per_sec == 44000 and (s.ops_min, s.ops_max) == (42000, 46000)
    assert s.server_cpu_us_per_op == 9.5 and s.errors_total == 3 and s.discarded == 1
    assert round(s.spread_pct, 3) == round(4000 / 44000 * 100, 3)
    assert report.other_load_cell(s) == "0.00% (1 re-run, 1 of 4 left out)"


def test_summary_of_all_disturbed_runs_uses_them_flagged():
    s = summary.summarise([run(1000, foreign=20.0), run(3000, foreign=30.0)], 0, foreign_limit=10.0)
    assert s.all_disturbed and s.n == 2 and s.ops_per_sec == 2000 and s.foreign_cpu_pct == 25.0
    assert report.other_load_cell(s) == "25.0% (⚠ all disturbed)"
    assert report.throughput_cell(s, s) == "2000 (1.00×) ⚠"
    assert summary.summarise([], 0, 10.0) is None


def two_peer_race():
    c = peer(
        "c-epoll",
        {
            PP1.name: workload(PP1, [run(30000), run(40000), run(50000)], [run(20000)]),
            PP50.name: workload(PP50, [run(100000, p99=400)] * 3),
        },
    )
    e = peer(
        "echod-1",
        {
            PP1.name: workload(
                PP1, [run(44000, cpu=9.0), run(10000, cpu=30.0), run(46000, cpu=9.5)], [run(30000, errors=2)]
            ),
            PP50.name: workload(PP50, [run(120000, p99=300)] * 3),
        },
        status="INCORRECT: lost",
    )
    return Results(meta(), {}, [c, e])


def rows(lines):
    return [line for line in lines if line.startswith("| ") and not line.startswith("| peer")]


def test_throughput_table_cells_and_ratios():
    r = two_peer_race()
    assert rows(report.throughput(r.peers, report.References(r.peers), [PP1, PP50])) == [
        "| c-epoll | 40.0k (1.00×) | 100.0k (1.00×) |",
        "| echod-1 ⚠ | 44.0k (1.10×) | 120.0k (1.20×) |",
    ]


def test_echod_client_table_has_its_own_ratios_and_error_flags():
    r = two_peer_race()
    assert rows(report.echod_client(r.peers, report.References(r.peers), [PP1, PP50])) == [
        "| c-epoll | 20.0k (1.00×) | – |",
        "| echod-1 | 30.0k (1.50×) ⚠ | – |",
    ]
    c = peer("c-epoll", {PP1.name: workload(PP1, [run(1)])})
    assert report.echod_client([c], report.References([c]), [PP1]) == []


def test_detail_row_gives_every_column_against_the_reference():
    r = two_peer_race()
    ref = r.peers[0].workloads[PP50.name].summary
    r.peers[1].workloads[PP50.name].syscalls_per_op = 2.5
    assert report.detail_row(r.peers[1], PP50, ref) == [
        "| echod-1 | 120.0k | 0.0% | 1.20× | 7.68 | 150 | 300 | 450 | 900 | 0.75× | 10.0 | 1.00× | 2.50 | 0 | 0.00% |"
    ]
    second = report.detail_row(r.peers[1], PP1, r.peers[0].workloads[PP1.name].summary)[1]
    assert second == "| ↳ echod-1 (echod bench client) | 30.0k | | | | | 50.0 | | | | | | | | |"


def test_log_reads_row_records_per_op_over_all_runs_and_dropped_summed():
    base = peer("echod-1", {PP1.name: workload(PP1, [run(44000, cpu=9.5)] * 3)})
    reads_runs = [
        run(36000, cpu=11.0, log=LogCount(36000, 0, 1)),
        run(35000, cpu=11.5, log=LogCount(30000, 5000, 1)),
        run(37000, cpu=10.5, log=LogCount(37000, 0, 1)),
    ]
    reads = peer("echod-1-reads", {PP1.name: workload(PP1, reads_runs)})
    assert report.log_reads_row(PP1, reads, base) == "| pp64-c1 | 44.0k | 36.0k | 0.82× | 9.50 → 11.0 | 0.95 | 5000 |"
    assert report.log_reads_row(PP50, reads, base) is None


def test_startup_and_idle_rows():
    m = meta(
        startup={
            "echod-1": StartupResult(5, Stats(10.0, 8.5, 12.5), Stats(9.5, 8.0, 12.0), None),
            "go": StartupResult(5, None, None, "exited with 1 while starting"),
        }
    )
    assert rows(report.startup(m)) == [
        "| echod-1 | 5 | 9.50 (8.00–12.0) | 10.0 (8.50–12.5) |",
        "| go | 5 | – | – | exited with 1 while starting",
    ]
    ok = IdleResult(10000, "Rss", 17168, 18104, 18120, 18108, 95.8, 96.3)
    assert report.idle_row("echod-1", ok) == "| echod-1 | 10000 | Rss | 17168 | 18104 | 95.8 | 96.3 | 18108 |"
    assert report.idle_row("go", IdleResult(failure="no")) == "| go | failed: no | | | | | | |"


def test_table_order_puts_the_sweep_among_the_pingpong_points():
    names = ["conn-c10", "pp64-c200", "pp64-c1", "nope", "pp64-c10"]
    assert [w.name for w in workloads.in_table_order(names)] == ["pp64-c1", "pp64-c10", "pp64-c200", "conn-c10"]


def test_whole_table_names_problems_and_pending_echod():
    r = two_peer_race()
    r.peers = r.peers[:1]
    table = report.render_table(r)
    assert "- **echod**: pending (no working echod binary raced in this run)" in table
    assert "### Problems" not in table
    assert "- echod-1: INCORRECT: lost" in report.render_table(two_peer_race())


def test_svg_plots_each_peer_over_its_connection_counts():
    svg = report.render_svg(two_peer_race().peers)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 6  # 2 peers x 3 panels, 2 points each
    assert ">echod-1</text>" in svg and ">c-epoll</text>" in svg
    assert report.render_svg([peer("c-epoll", {})]) is None


def test_results_json_keeps_its_shape_both_ways():
    raw = {
        "ops_per_sec": 100.0,
        "ops": 60,
        "ops_all": 70,
        "mb_per_sec": 0.1,
        "errors": {"lost": 0},
        "errors_total": 0,
        "latency_us": {"p50": 1, "p90": 2, "p99": 3, "p999": 4, "max": 5, "mean": 1.5},
        "mode": "pingpong",
        "threads": 1,
    }
    r = from_json(Run, raw)
    assert r.extra == {"mode": "pingpong", "threads": 1} and r.latency_us.p99 == 3
    out = to_json(r)
    assert out["mode"] == "pingpong" and "log" not in out and out["ops_all"] == 70
    race = two_peer_race()
    race.peers[0].idle = IdleResult(failure="x")
    again = from_json(Results, json.loads(json.dumps(to_json(race))))
    assert again == race
    w = to_json(race)["peers"][0]["workloads"]["pp64-c1"]
    assert "syscalls_per_op" not in w and "failures" not in w and w["summary"]["ops_per_sec"] == 40000


def test_header_names_the_second_client_only_when_it_ran():
    said = "`echod bench` (echod's own load generator, every byte verified too) ran beside it in 1 of the rounds"
    assert said in "\n".join(report.header(meta(client="both", echod_client_repeats=1), {}, []))
    trimmed = "\n".join(report.header(meta(client="both", echod_client_repeats=0, trimmed=["no round"]), {}, []))
    assert "ran beside it" not in trimmed and "Trimmed to fit the time budget" in trimmed
