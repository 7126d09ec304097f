"""The race's UDP parts: which peer races which workload, the UDP reference, the per-core table, the estimates."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from race import clients, measure, options, peers, report, workloads
from race.model import Results
from race.peers import PeerSpec, Tools
from test_report import meta, peer, run, workload

UDP1, UDP50, UDP1400 = workloads.UDP
PP1 = workloads.ALL[0]


def spec(name, udp=False, tree=False, idle=True):
    return PeerSpec(name, lambda p: [name, str(p)], 1, name, tree=tree, udp=udp, idle=idle)


def test_udp_peers_race_only_udp_workloads_and_tcp_peers_only_tcp_ones():
    tcp, udp = spec("c-epoll"), spec("c-udp", udp=True)
    assert tcp.runs(PP1.name) and not tcp.runs(UDP1.name)
    assert udp.runs(UDP1.name) and udp.runs(UDP1400.name) and not udp.runs(PP1.name)
    limited = PeerSpec("x", lambda p: [], 1, "x", udp=True, workloads=(UDP50.name,))
    assert limited.runs(UDP50.name) and not limited.runs(UDP1.name)


def test_udp_workloads_take_their_ratios_to_the_c_udp_reference():
    assert peers.reference(UDP50) == "c-udp" and peers.reference(PP1) == "c-epoll"
    c = peer("c-epoll", {PP1.name: workload(PP1, [run(40000)] * 3)})
    cu = peer("c-udp", {UDP50.name: workload(UDP50, [run(100000, cpu=5.0)] * 3)})
    so = peer("socat-udp", {UDP50.name: workload(UDP50, [run(20000, cpu=25.0)] * 3)})
    race = Results(meta(), {}, [c, cu, so])
    rows = [x for x in report.throughput(race.peers, report.References(race.peers), [PP1, UDP50]) if x[2:6] != "peer"]
    assert "| socat-udp | – | 20.0k (0.20×) |" in rows
    assert "| c-udp | – | 100.0k (1.00×) |" in rows
    table = report.render_table(race)
    assert "### udp64-c50: UDP pingpong 64 B, 50 sockets" in table


def test_datagrams_per_second_per_core_from_the_cpu_per_round_trip():
    cu = peer("c-udp", {UDP50.name: workload(UDP50, [run(100000, cpu=5.0)] * 3)})
    so = peer("socat-udp", {UDP50.name: workload(UDP50, [run(20000, cpu=25.0)] * 3)})
    c = peer("c-epoll", {PP1.name: workload(PP1, [run(40000)] * 3)})
    lines = report.udp_per_core([c, cu, so], [PP1, UDP50])
    assert "| c-udp | 200.0k |" in lines and "| socat-udp | 40.0k |" in lines
    assert not any(line.startswith("| c-epoll") for line in lines)
    assert report.udp_per_core([c], [PP1]) == []


def test_clients_add_udp_for_udp_workloads_only():
    t = Tools(client="echoclient", echod="echod")
    assert "--udp" in clients.c_client_argv(t, 7, UDP1, 1, 0)
    assert "--udp" not in clients.c_client_argv(t, 7, PP1, 1, 0)
    assert "--udp" in clients.echod_client_argv(t, 7, UDP1400, 1)
    assert "--udp" not in clients.echod_client_argv(t, 7, PP1, 1)


def test_choosing_a_udp_peer_brings_its_reference():
    o = options.parse(["--only", "socat-udp", "--workloads", "udp64-c1"])
    assert set(o.peers) == {"c-epoll", "socat-udp", "c-udp"}
    assert "c-udp" not in options.parse(["--only", "echod-1"]).peers


def test_estimates_count_only_the_peers_that_run_each_workload():
    specs = [spec("c-epoll"), spec("socat", tree=True), spec("c-udp", udp=True, idle=False)]
    counts = measure.PeerCounts(specs)
    assert counts.of(PP1) == (2, 1) and counts.of(UDP1) == (1, 0) and counts.idle() == (2, 1)


def test_echod_udp_runs_with_its_guards_opened_up(tmp_path):
    t = Tools(client="echoclient", echod="/bin/echod", socat="/bin/socat", c_udp="/bin/c-udp")
    found = peers.specs(t, str(tmp_path))
    assert all(found[n].udp and not found[n].idle for n in peers.UDP_PEERS)
    argv = found["echod-udp"].argv(4444)
    assert argv[argv.index("--udp") + 1] == "127.0.0.1:4444" and argv[argv.index("--threads") + 1] == "1"
    with open(argv[argv.index("--config") + 1]) as f:
        conf = f.read()
    for key in ("source_rate: 100000000", "global_rate: 100000000", "global_bandwidth: 100GiB"):
        assert key in conf
    assert "PIPE" in found["socat-udp"].argv(4444) and found["socat-udp"].tree
