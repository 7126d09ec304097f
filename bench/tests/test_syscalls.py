"""echod-uring-1 (echod on its io_uring backend) and how the race registers or skips it, and the system calls per
message: perf switched on and off at the client's marks, the count of that interval divided by its messages, and
the table and results.json that show it. Fakes stand in for echod and perf; one test uses the real perf, where it
works, on the C epoll reference."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from race import cli, clients, options, peers, report, workloads
from race.model import Results, SyscallCount, WorkloadResult, from_json, to_json
from race.peers import Tools
from race.procs import free_port, wait_listening
from test_report import meta, peer, run, workload

PP1, PP300 = workloads.BY_NAME["pp64-c1"], workloads.BY_NAME["pp64-c300"]
CC = shutil.which(os.environ.get("CC", "cc"))


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


# echod-uring-1


def test_echod_uring_1_is_echod_1_on_the_io_uring_backend_and_races_by_default():
    specs = peers.specs(Tools(client="client", echod="/bin/echod", echod_uring=True), "/tmp")
    uring, one = specs["echod-uring-1"], specs["echod-1"]
    assert uring.argv(4242) == [*one.argv(4242), "--io-backend", "io_uring"]
    assert uring.threads == 1 and uring.workloads is None and uring.idle and not uring.udp
    assert peers.ORDER.index("echod-uring-1") == peers.ORDER.index("echod-1") + 1
    assert "echod-uring-1" in options.parse([]).peers
    assert options.parse(["--only", "echod-uring-1"]).peers == ["c-epoll", "echod-uring-1"]
    assert "echod-uring-1" not in peers.specs(Tools(client="client", echod="/bin/echod"), "/tmp")


def test_an_echod_without_the_option_skips_echod_uring_1_with_its_own_words(tmp_path):
    said = "Error: Unknown option '--io-backend'"
    help_line = "See 'echod run --help' for more information."
    fake = _script(
        tmp_path, "echod", f"import sys\nprint({said!r}, {help_line!r}, sep='\\n', file=sys.stderr)\nsys.exit(64)\n"
    )
    assert peers.echod_uring_unavailable(fake) == said
    notes, logged = {}, []
    assert not peers._probe_echod_uring(fake, notes, logged.append)
    assert notes["echod-uring-1"] == f"`echod --io-backend io_uring` did not start, not raced: {said}"
    assert logged == [f"SKIPPING echod-uring-1: {notes['echod-uring-1']}"]
    silent = _script(tmp_path, "echod-silent", "import sys\nsys.exit(3)\n")
    plain = _script(tmp_path, "echod-plain", "import sys\nprint('io_uring: not permitted')\nsys.exit(1)\n")
    assert peers.echod_uring_unavailable(plain) == "io_uring: not permitted"
    assert peers.echod_uring_unavailable(silent) == "exited with 3"


def test_an_echod_that_starts_on_io_uring_races_and_the_probe_is_stopped(tmp_path):
    pidfile = tmp_path / "pid"
    fake = _script(
        tmp_path,
        "echod",
        f"""\
        import os, socket, sys, time
        assert sys.argv[-2:] == ["--io-backend", "io_uring"], sys.argv
        host, port = sys.argv[sys.argv.index("--listen") + 1].rsplit(":", 1)
        s = socket.socket()
        s.bind((host, int(port)))
        s.listen()
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        time.sleep(30)
        """,
    )
    notes = {}
    assert peers._probe_echod_uring(fake, notes, lambda line: None) and notes == {}
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}")  # stopped and reaped


def test_a_skipped_peer_gives_its_own_reason_before_its_family_note():
    notes = {"echod": "/x/debug/echod is a DEBUG build", "echod-uring-1": "did not start, not raced: no io_uring"}
    r = types.SimpleNamespace(
        opts=types.SimpleNamespace(peers=["c-epoll", "echod-1", "echod-uring-1"]),
        tools=types.SimpleNamespace(notes=notes),
        log=lambda line: None,
    )
    specs = {"c-epoll": None, "echod-1": None}
    assert cli.wanted_peers(r, specs) == ["c-epoll", "echod-1"]
    assert notes["echod-uring-1"] == "did not start, not raced: no io_uring"


# System calls over the client's measured interval


def _fake_client(tmp_path, ops=1000, marks=("measuring", "draining"), gate=None):
    """Prints the marks on stderr (after the first, waits for `gate` to exist: proof that the race reacted to it
    while the client ran) and echoclient's JSON on stdout."""
    return _script(
        tmp_path,
        "client",
        f"""\
        import json, os, sys, time
        marks = {list(marks)!r}
        for i, m in enumerate(marks):
            print(m, file=sys.stderr, flush=True)
            if i == 0 and {gate!r}:
                deadline = time.monotonic() + 5
                while not os.path.exists({gate!r}) and time.monotonic() < deadline:
                    time.sleep(0.005)
        print("noise on stderr", file=sys.stderr)
        print(json.dumps({{"ops": {ops}, "ops_all": {ops + 50}, "duration_s": 0.3}}))
        """,
    )


def test_the_race_hears_each_mark_while_the_client_still_runs(tmp_path):
    gate = str(tmp_path / "gate")
    heard = []

    def on_mark(m):
        heard.append((m, os.path.exists(gate)))
        open(gate, "w").close()

    out, marks, err = clients.run_marked([_fake_client(tmp_path, gate=gate)], 10, None, on_mark)
    assert err is None and out["ops"] == 1000 and marks == ["measuring", "draining"]
    assert heard == [("measuring", False), ("draining", True)]


def test_a_client_that_hangs_is_killed_at_the_timeout(tmp_path):
    body = "import sys, time\nprint('measuring', file=sys.stderr, flush=True)\ntime.sleep(60)\n"
    hang = _script(tmp_path, "hang", body)
    out, marks, err = clients.run_marked([hang], 0.5, None, lambda m: None)
    assert out is None and marks == ["measuring"] and "timeout" in err


def _fake_perf(tmp_path):
    """Speaks perf stat's control protocol (-D -1 --control fd:CTL,ACK -o PATH): acks every command, counts 100
    system calls per enable-disable pair, writes the count (or <not counted>) to PATH on SIGINT as `-x,` does."""
    return _script(
        tmp_path,
        "perf",
        """\
        import os, signal, sys
        a = sys.argv
        ctl, ack = (int(x) for x in a[a.index("--control") + 1].removeprefix("fd:").split(","))
        path = a[a.index("-o") + 1]
        assert a[a.index("-D") + 1] == "-1" and "raw_syscalls:sys_enter" in a and "-p" in a
        state = {"n": 0, "on": False, "ever": False}

        def done(*_):
            n = f"{state['n']}" if state["ever"] else "<not counted>"
            open(path, "w").write(f"# started\\n\\n{n},,raw_syscalls:sys_enter,1000,100.00,,\\n")
            sys.exit(0)

        signal.signal(signal.SIGINT, done)
        buf = b""
        while chunk := os.read(ctl, 64):
            buf += chunk
            while b"\\n" in buf:
                cmd, buf = buf.split(b"\\n", 1)
                if cmd == b"enable":
                    state.update(on=True, ever=True)
                elif cmd == b"disable" and state["on"]:
                    state["n"] += 100
                    state["on"] = False
                os.write(ack, b"ack\\n\\0")
        signal.pause()
        """,
    )


def test_perf_counts_between_the_marks_and_divides_by_the_ops_of_that_interval(tmp_path):
    t = Tools(client="client", perf=_fake_perf(tmp_path))
    path = str(tmp_path / "perf.txt")
    c = clients.perf_syscalls(t, os.getpid(), [_fake_client(tmp_path, ops=400)], path, 10, None)
    assert c == SyscallCount(syscalls=100, ops=400, seconds=0.3) and c.per_op == 0.25
    unmarked = clients.perf_syscalls(t, os.getpid(), [_fake_client(tmp_path, marks=())], path, 10, None)
    assert unmarked.syscalls is None and "not measuring then draining" in unmarked.error


def test_no_count_without_an_answer_from_perf_or_a_count_in_its_output(tmp_path, monkeypatch):
    monkeypatch.setattr(clients, "PERF_READY_S", 0.3)
    mute = _script(tmp_path, "perf-mute", "import time\ntime.sleep(60)\n")
    t = Tools(client="client", perf=mute)
    c = clients.perf_syscalls(t, os.getpid(), ["/bin/false"], str(tmp_path / "p.txt"), 10, None)
    assert c.syscalls is None and "did not answer on its control fd" in c.error
    assert clients.counted(None, {"ops": 5}, ["measuring", "draining"], None, "/x/perf.txt").error == (
        "perf wrote no count (see perf.txt)"
    )
    assert "client: rc=1" in clients.counted(None, None, [], "rc=1 refused", "p").error
    assert SyscallCount(syscalls=10, ops=0).per_op is None


@pytest.mark.skipif(not CC, reason="no C compiler")
def test_real_perf_counts_three_calls_per_round_trip_of_the_c_epoll_reference(tmp_path):
    t = Tools(client="client", perf=shutil.which("perf"))
    works, why = clients.perf_works(t)
    if not works:
        pytest.skip(why)
    src = os.path.join(peers.BENCH, "peers", "c-epoll", "echo.c")
    server, client = str(tmp_path / "c-epoll"), str(tmp_path / "echoclient")
    subprocess.run([CC, "-O2", "-o", server, src], check=True)
    csrc = os.path.join(peers.BENCH, "client", "echoclient.c")
    subprocess.run([CC, "-O2", "-o", client, csrc, "-pthread", "-lm"], check=True)
    t.client = client
    port = free_port()
    proc = subprocess.Popen([server, str(port)], stdout=subprocess.DEVNULL)
    try:
        assert wait_listening(port, proc, 10)
        argv = clients.c_client_argv(t, port, PP1, 0.3, 0.1, ("--marks",))
        c = clients.perf_syscalls(t, proc.pid, argv, str(tmp_path / "perf.txt"), 30, None)
    finally:
        proc.kill()
        proc.wait(timeout=5)
    # level-triggered epoll at one connection: epoll_wait, read, send per round trip, and nothing else in the
    # measured interval (no accept, no close): within the few calls perf's switching lets in at its ends (an
    # absolute slack, so that a busy machine, with fewer round trips in the interval, does not fail it).
    assert c.error is None and c.ops > 200 and abs(c.syscalls - 3 * c.ops) <= 30, c


# The table and results.json


def _race_with_counts():
    def w(wl, ops, per_op):
        r = workload(wl, [run(ops)])
        r.syscalls = SyscallCount(syscalls=int(per_op * 1000), ops=1000, seconds=0.3)
        r.syscalls_per_op = r.syscalls.per_op
        return r

    c = peer("c-epoll", {PP1.name: w(PP1, 20000, 3.0), PP300.name: w(PP300, 90000, 2.1)})
    u = peer("c-uring", {PP1.name: w(PP1, 21000, 1.0), PP300.name: w(PP300, 95000, 0.152)})
    e = peer("echod-uring-1", {PP1.name: workload(PP1, [run(20000)])})
    return Results(meta(perf="perf over the measured interval"), {}, [c, u, e])


def test_the_table_gives_system_calls_per_message_per_peer_and_workload():
    r = _race_with_counts()
    out = report.syscalls(r.peers, [PP1, PP300], r.meta)
    assert out[0].startswith("### System calls per message") and "perf over the measured interval" in out[2]
    assert out[4:] == [
        "| peer | pp64-c1 | pp64-c300 |",
        "|---|---:|---:|",
        "| c-epoll | 3.00 | 2.10 |",
        "| c-uring | 1.00 | 0.15 |",
        "",
    ]
    table = report.render_table(r)
    assert "| syscalls/msg |" in table and "### System calls per message" in table
    assert report.syscalls([r.peers[2]], [PP1], r.meta) == []


def test_results_json_keeps_the_count_and_reads_races_from_before_it():
    r = _race_with_counts()
    w = to_json(r)["peers"][1]["workloads"]["pp64-c300"]
    assert w["syscalls_per_op"] == 0.152 and w["syscalls"] == {"syscalls": 152, "ops": 1000, "seconds": 0.3}
    assert from_json(Results, json.loads(json.dumps(to_json(r)))) == r
    old = {"mode": "pingpong", "connections": 1, "size": 64, "label": "x", "syscalls_per_op": 3.0}
    assert from_json(WorkloadResult, old).syscalls is None
    assert to_json(SyscallCount(error="server exited")) == {"error": "server exited"}
