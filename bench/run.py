#!/usr/bin/env python3
"""The echod race (`make bench`): echo servers on one machine, same client, same run.

    python3 bench/run.py [--quick] [--only PEER,...] [--duration SECS] [--repeats N]
                         [--echod PATH] [--client c|echod|both] [--workloads W,...]
                         [--pin auto|split|none] [--no-sweep] [--no-perf] [--budget SECS]
                         [--out DIR] [--retable DIR]

What it does, unattended (about 8 minutes for the full field on 2 cores; see bench/README.md):
  1. builds every peer (C epoll reference, libuv, Go, SwiftNIO, the C client),
     checks the Python peers (pip-installs uvloop if missing), socat, xinetd,
     and echod (ECHOD_BIN or --echod; skipped with a message when missing);
  2. starts every peer on its own free loopback port and checks it with
     bench/client/echoclient (every byte verified: small and large round
     trips, a 4 MiB window stream, connect/close) and a 16 MiB slow reader
     (partial writes); then runs each workload --repeats times over all
     peers, interleaved (rotated order per round), re-running runs that
     other work on the machine disturbed, within a time budget;
  3. measures client-side ops/s, MB/s, latency percentiles; server CPU time
     per echoed message from /proc/PID/stat (utime+stime, children included);
     syscalls per message with `perf stat -e raw_syscalls:sys_enter -p PID`
     in a separate short run when perf works; idle RSS per connection with
     bench/idle_rss.py on a fresh instance of each server;
  4. writes bench/results/<date>/table.md, results.json and latency.svg
     (bench/results/latest points at the newest run).

Only loopback traffic; every load loop is bounded in count and time; only the
processes this script started are signalled, by PID (try/finally).
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
BIN = os.path.join(RESULTS, "bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REFERENCE = "c-epoll"

# name, mode, connections, size, label
WORKLOADS = [
    ("pp64-c1", "pingpong", 1, 64, "pingpong 64 B, 1 conn"),
    ("pp64-c50", "pingpong", 50, 64, "pingpong 64 B, 50 conns"),
    ("pp1k-c50", "pingpong", 50, 1024, "pingpong 1 KiB, 50 conns"),
    ("pp16k-c10", "pingpong", 10, 16384, "pingpong 16 KiB, 10 conns"),
    ("st64k-c10", "stream", 10, 65536, "stream 64 KiB, 10 conns"),
    ("conn-c10", "connect", 10, 64, "connect+64 B echo+close, 10 connectors"),
]
SWEEP = [
    ("pp64-c10", "pingpong", 10, 64, "pingpong 64 B, 10 conns"),
    ("pp64-c200", "pingpong", 200, 64, "pingpong 64 B, 200 conns"),
]
IDLE_WORKLOAD = "idle-10k"

# correctness checks run before racing: (mode, connections, size, seconds, extra args)
CHECKS = [
    ("pingpong", 1, 1, 0.3, []),
    ("pingpong", 3, 100000, 0.5, []),
    ("stream", 2, 1 << 20, 0.5, ["--window", str(4 << 20)]),
    ("stream", 4, 7, 0.3, []),
    ("connect", 4, 64, 0.3, []),
]

START = time.monotonic()


LOGFILE = None


def log(msg):
    line = f"[{time.monotonic() - START:6.1f}s] {msg}"
    if LOGFILE:
        LOGFILE.write(line + "\n")
        LOGFILE.flush()
    try:
        print(line, flush=True)
    except (BrokenPipeError, OSError):
        pass  # stdout gone (e.g. piped into head): keep racing, run.log has everything


# ---------------------------------------------------------------- processes
class Procs:
    """Every process this script started, so that it signals only those, by PID."""

    def __init__(self):
        self.live = {}

    def start(self, name, argv, logfile, env=None, cwd=None, fast=False):
        """fast: no preexec_fn (and so no raised fd limit), which lets Python use vfork: what start-up timings
        need (with preexec_fn, fork + exec of this process alone takes about 10 ms)."""
        f = open(logfile, "ab")
        if fast:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=cwd, process_group=0)
        else:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=cwd, preexec_fn=_child_setup)
        f.close()
        self.live[p.pid] = (name, p)
        return p

    def stop(self, p, grace=2.0):
        """SIGTERM the process and the descendants it forked (by PID), then SIGKILL what is left."""
        if p.pid not in self.live:
            return
        kids = descendants(p.pid)
        for pid in [p.pid] + kids:
            _signal(pid, signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(p.pid, signal.SIGKILL)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for pid in kids:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        self.live.pop(p.pid, None)

    def stop_all(self):
        for _, p in list(self.live.values()):
            self.stop(p, grace=1.0)


def _child_setup():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.setpgrp()  # own process group: a Ctrl-C on the terminal reaches only run.py


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            out.extend(kids)
            todo.extend(kids)
    return out


def cpu_ticks(pid):
    """utime+stime+cutime+cstime of pid and of its live descendants (fork-per-connection servers)."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # fields 14..17 of stat(5)
        except (OSError, IndexError, ValueError):
            pass
    return total


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_busy(interval):
    """(busy %, steal %) of the whole machine over `interval` seconds, from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        steal = v[7] if len(v) > 7 else 0
        return sum(v[:8]), idle, steal
    t0, i0, s0 = snap()
    time.sleep(interval)
    t1, i1, s1 = snap()
    dt = max(t1 - t0, 1)
    return 100.0 * (dt - (i1 - i0)) / dt, 100.0 * (s1 - s0) / dt


def wait_quiet(limit_pct, max_wait):
    """Sample background CPU use (nothing of ours runs now); wait up to max_wait s for it to drop below limit."""
    deadline = time.monotonic() + max_wait
    busy, steal = cpu_busy(0.5)
    while busy > limit_pct and time.monotonic() < deadline:
        busy, steal = cpu_busy(1.0)
    return round(busy, 1), round(steal, 1)


def slow_reader_check(port, size=16 << 20, delay=0.5, timeout=20.0):
    """Send `size` bytes without reading for `delay` s (fills both socket buffers: the server must
    handle partial writes / stop reading), then read everything back and compare. Returns None or an error."""
    import threading
    data = bytes((i * 131 + 7) & 0xFF for i in range(65536)) * (size // 65536)
    err = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return f"connect: {e}"
    s.settimeout(timeout)

    def writer():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(f"send: {e}")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(delay)
    got = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            d = s.recv(1 << 20)
            if not d:
                break
            got += d
            if len(got) > size:
                break
    except OSError as e:
        err.append(f"recv after {len(got)} bytes: {e}")
    t.join(timeout=5)
    s.close()
    if err:
        return "; ".join(err)
    if len(got) != size:
        return f"echoed {len(got)} of {size} bytes before EOF/timeout"
    if bytes(got) != data:
        return "echoed bytes differ"
    return None


def run_cmd(argv, timeout, **kw):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        return -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    except OSError as e:
        return -1, "", str(e)


# ---------------------------------------------------------------- build
def build(args, logf):
    """Build / locate every peer. Returns {peer: (argv_factory, info)} and notes."""
    os.makedirs(BIN, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    notes, ok = {}, {}

    def sh(name, argv, env=None, cwd=None, timeout=600):
        t = time.monotonic()
        rc, out, err = run_cmd(argv, timeout, env=env, cwd=cwd)
        logf.write(f"$ {' '.join(argv)}\n{out}{err}\n(rc={rc}, {time.monotonic() - t:.1f}s)\n\n")
        logf.flush()
        if rc != 0:
            notes[name] = f"build failed (rc={rc}): {(err or out).strip().splitlines()[-1:] or ''}"
        return rc == 0

    client = os.path.join(BIN, "echoclient")
    if not sh("client", [cc, "-O2", "-Wall", "-pthread", "-o", client,
                         os.path.join(BENCH, "client", "echoclient.c"), "-lm"]):
        sys.exit("cannot build the client: see build.log")
    ok["client"] = client

    if sh("c-epoll", [cc, "-O2", "-Wall", "-o", os.path.join(BIN, "c-epoll-echo"),
                      os.path.join(BENCH, "peers", "c-epoll", "echo.c")]):
        ok["c-epoll"] = os.path.join(BIN, "c-epoll-echo")
    if sh("libuv", [cc, "-O2", "-Wall", "-o", os.path.join(BIN, "libuv-echo"),
                    os.path.join(BENCH, "peers", "libuv", "echo.c"), "-luv"]):
        ok["libuv"] = os.path.join(BIN, "libuv-echo")

    go = shutil.which("go")
    if go:
        # go.mod with no requirements; GOFLAGS (e.g. -mod=mod) unset, GOPROXY=off: never downloads.
        env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
        env.update(GOCACHE=os.path.join(RESULTS, "gocache"), GOPROXY="off", GOTOOLCHAIN="local")
        if sh("go", [go, "build", "-o", os.path.join(BIN, "go-echo"), "."], env=env,
              cwd=os.path.join(BENCH, "peers", "go")):
            ok["go"] = os.path.join(BIN, "go-echo")
    else:
        notes["go"] = "go not installed"

    swift = shutil.which("swift") or ("/opt/swift/usr/bin/swift" if os.path.exists("/opt/swift/usr/bin/swift") else None)
    if swift and any(p.startswith("nio") for p in args.peers):
        log("building SwiftNIO echo (first build takes ~70 s, then cached in bench/results/.build-nio)")
        scratch = os.path.join(RESULTS, ".build-nio")
        if sh("nio", [swift, "build", "-c", "release", "--package-path", os.path.join(BENCH, "peers", "nio-echo"),
                      "--scratch-path", scratch], timeout=900):
            ok["nio"] = os.path.join(scratch, "release", "nio-echo")
    elif not swift:
        notes["nio"] = "swift not found"

    if any("uvloop" in p for p in args.peers):
        rc, _, _ = run_cmd([sys.executable, "-c", "import uvloop"], 60)
        if rc != 0:
            log("uvloop missing: pip install uvloop")
            sh("uvloop", [sys.executable, "-m", "pip", "install", "--quiet", "uvloop"], timeout=300)
        rc, out, _ = run_cmd([sys.executable, "-c", "import uvloop; print(uvloop.__version__)"], 60)
        if rc == 0:
            ok["uvloop"] = out.strip()
        else:
            notes["uvloop"] = "uvloop not importable (pip install uvloop failed?)"

    for tool in ("socat", "xinetd", "taskset", "perf"):
        path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
        if path:
            ok[tool] = path
        else:
            notes[tool] = f"{tool} not installed"

    echod = args.echod or os.environ.get("ECHOD_BIN")
    if not echod:
        for cand in (os.path.join(ROOT, ".build", "release", "echod"),
                     os.path.join(ROOT, ".build-bench", "release", "echod")):
            if os.access(cand, os.X_OK):
                echod = cand
                break
    if echod and os.access(echod, os.X_OK):
        ok["echod"] = os.path.abspath(echod)
        rc, out, err = run_cmd([echod, "bench", "--help"], 10)
        ok["echod-bench"] = rc == 0 and "connections" in (out + err)
        if "/debug/" in echod:
            notes["echod"] = f"{echod} is a DEBUG build: figures are not representative"
    else:
        notes["echod"] = ("echod binary not found (set ECHOD_BIN or --echod; "
                          + (f"{echod} is not executable" if echod else "no .build/release/echod") + "): echod pending")
    return ok, notes


# ---------------------------------------------------------------- peers
def peer_table(ok, run_dir):
    """name -> dict(argv(port), threads, tree, desc). Only peers whose pieces exist."""
    py = sys.executable
    pydir = os.path.join(BENCH, "peers", "python")
    P = {}

    def add(name, argv, threads, desc, tree=False, env=None, **extra):
        P[name] = dict(argv=argv, threads=threads, desc=desc, tree=tree, env=env, **extra)

    if "c-epoll" in ok:
        add("c-epoll", lambda p: [ok["c-epoll"], str(p)], 1, "C, epoll LT, 1 thread, 64 KiB static buffer (reference)")
    if "echod" in ok:
        add("echod-1", lambda p: [ok["echod"], "--listen", f"127.0.0.1:{p}", "--threads", "1", "--log-level", "warning"],
            1, "echod --threads 1")
        add("echod", lambda p: [ok["echod"], "--listen", f"127.0.0.1:{p}", "--log-level", "warning"],
            os.cpu_count() or 1, "echod, default threads")
        # The log.reads target (>= 0.8x the throughput without): every read logged, asynchronously, to a real
        # file, which the race empties after each run (echod appends with O_APPEND, so it writes on at 0).
        reads_log = os.path.join(run_dir, "logs", "echod-1-reads.file.log")
        add("echod-1-reads", lambda p: [ok["echod"], "--listen", f"127.0.0.1:{p}", "--threads", "1",
                                        "--log-level", "info"],
            1, "echod --threads 1, `log.reads: true`: every read logged to a file (text)",
            env=dict(os.environ, ECHOD_LOG_READS="true", ECHOD_LOG_FILE=reads_log, ECHOD_LOG_FORMAT="text"),
            workloads=READS_WORKLOADS, idle=False, logfile=reads_log, baseline="echod-1")
    if "nio" in ok:
        add("nio-1", lambda p: [ok["nio"], str(p), "1"], 1, "SwiftNIO 2.101 echo, 1 event loop")
        add("nio", lambda p: [ok["nio"], str(p)], os.cpu_count() or 1, "SwiftNIO 2.101 echo, System.coreCount loops")
    if "libuv" in ok:
        add("libuv", lambda p: [ok["libuv"], str(p)], 1, "libuv uv_tcp echo, 1 thread")
    if "go" in ok:
        add("go", lambda p: [ok["go"], str(p)], os.cpu_count() or 1, "Go net, goroutine per connection")
    add("asyncio-streams", lambda p: [py, os.path.join(pydir, "asyncio_streams.py"), str(p)], 1,
        f"Python {platform.python_version()} asyncio streams")
    add("asyncio-protocol", lambda p: [py, os.path.join(pydir, "asyncio_protocol.py"), str(p)], 1,
        f"Python {platform.python_version()} asyncio Protocol")
    if "uvloop" in ok:
        add("uvloop-streams", lambda p: [py, os.path.join(pydir, "asyncio_streams.py"), str(p), "--uvloop"], 1,
            f"asyncio streams on uvloop {ok['uvloop']}")
        add("uvloop-protocol", lambda p: [py, os.path.join(pydir, "asyncio_protocol.py"), str(p), "--uvloop"], 1,
            f"asyncio Protocol on uvloop {ok['uvloop']}")
    if "socat" in ok:
        add("socat", lambda p: [ok["socat"], f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=4096", "EXEC:cat"],
            1, "socat fork + EXEC:cat (2 processes per connection)", tree=True)
    if "xinetd" in ok:
        def xinetd_argv(p):
            conf = os.path.join(run_dir, f"xinetd-{p}.conf")
            with open(conf, "w") as f:
                f.write(XINETD_CONF.format(port=p))
            return [ok["xinetd"], "-dontfork", "-filelog", os.path.join(run_dir, "logs", f"xinetd-{p}.log"), "-f", conf]
        add("xinetd", xinetd_argv, 1, "xinetd INTERNAL echo-stream (fork per connection)", tree=True)
    return P


# `type = INTERNAL UNLISTED`: with plain INTERNAL xinetd looks "echo" up in /etc/services and
# refuses any port but 7 ("Service echo expects port 7"). cps defaults to 50/s then a 10 s
# shutdown of the service; instances/per_source default limits would cap the idle test.
XINETD_CONF = """\
defaults
{{
	instances	= UNLIMITED
	per_source	= UNLIMITED
	cps		= 1000000 1
}}
service echo
{{
	disable		= no
	type		= INTERNAL UNLISTED
	id		= echo-stream
	socket_type	= stream
	protocol	= tcp
	user		= root
	wait		= no
	port		= {port}
	bind		= 127.0.0.1
	flags		= IPv4
}}
"""

# the workloads of the throughput targets, where echod-1-reads runs too (ratio to echod-1)
READS_WORKLOADS = ("pp64-c1", "pp64-c50", "pp1k-c50", "pp16k-c10", "st64k-c10")

ORDER = ["c-epoll", "echod-1", "echod-1-reads", "echod", "nio-1", "nio", "libuv", "go", "uvloop-protocol", "uvloop-streams",
         "asyncio-protocol", "asyncio-streams", "socat", "xinetd"]


# ---------------------------------------------------------------- clients
def c_client_argv(ok, port, mode, conns, size, duration, warmup, extra=()):
    return [ok["client"], f"127.0.0.1:{port}", "--mode", mode, "--connections", str(conns), "--size", str(size),
            "--duration", f"{duration:g}", "--warmup", f"{warmup:g}", "--json", *extra]


def echod_client_argv(ok, port, mode, conns, size, duration, warmup=0.0):
    return [ok["echod"], "bench", f"127.0.0.1:{port}", "--connections", str(conns), "--size", str(size),
            "--duration", f"{duration:g}s", "--warmup", f"{warmup:g}s", "--mode", mode, "--json"]


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}.".lower() if isinstance(v, dict) else f"{prefix}{k}".lower()))
    else:
        out[prefix.rstrip(".")] = d
    return out


def normalise_echod_json(raw):
    """Map `echod bench --json` onto the echoclient fields. Its JSON repeats echoclient's key names
    (ops_per_sec, ops_all, mb_per_sec, latency_us.{p50..max}, errors_total); the fallback below guesses
    for other shapes."""
    if isinstance(raw.get("latency_us"), dict) and "ops_per_sec" in raw:
        out = dict(raw)
        out.setdefault("errors_total", 0)
        out["raw"] = raw
        return out
    f = _flatten(raw)

    def pick(*names, scale=1.0):
        for n in names:
            for k, v in f.items():
                if (k == n or k.endswith("." + n)) and isinstance(v, (int, float)):
                    return v * scale
        return None

    res = {"ops_per_sec": pick("ops_per_sec", "ops_per_second", "opspersec", "rate", "throughput_ops"),
           "mb_per_sec": pick("mb_per_sec", "mbps", "mb_per_second", "megabytes_per_sec"),
           "ops": pick("ops", "operations", "count"),
           "errors_total": pick("errors_total", "errors", "error_count") or 0}
    lat = {}
    for p, names in (("p50", ("p50",)), ("p90", ("p90",)), ("p99", ("p99",)), ("p999", ("p999", "p99_9", "p99.9")),
                     ("max", ("max",))):
        v = pick(*[f"{n}_us" for n in names], *[f"latency_us.{n}" for n in names], *names)
        if v is None:
            v = pick(*[f"{n}_ns" for n in names], scale=1e-3)
        lat[p] = v
    res["latency_us"] = lat
    res["raw"] = raw
    return res


def run_client(argv, timeout, pin):
    if pin is not None:
        argv = ["taskset", "-c", str(pin)] + argv
    rc, out, err = run_cmd(argv, timeout)
    line = next((l for l in reversed(out.splitlines()) if l.strip().startswith("{")), None)
    if line is None:
        return None, f"rc={rc} {err.strip()[-300:]}"
    try:
        return json.loads(line), None
    except ValueError as e:
        return None, f"bad JSON ({e}): {line[:200]}"


# ---------------------------------------------------------------- perf
def perf_works(ok):
    if "perf" not in ok:
        return False, "perf not installed"
    rc, out, err = run_cmd([ok["perf"], "stat", "-x,", "-e", "instructions", "true"], 20)
    hw = "instructions" in err and "<not supported>" not in err
    rc2, out2, err2 = run_cmd([ok["perf"], "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"], 20)
    m = re.search(r"^(\d+),", err2, re.M)
    if rc2 == 0 and m:
        return True, ("raw_syscalls tracepoint works" + ("" if hw else "; hardware counters not supported (VM)"))
    return False, f"perf cannot count raw_syscalls:sys_enter: {err2.strip()[-200:]}"


def perf_start(ok, pid, path):
    return subprocess.Popen([ok["perf"], "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def perf_finish(p, path):
    _signal(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
    try:
        with open(path) as f:
            m = re.search(r"^(\d+),", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


class Schedule:
    """Time budget for the extras (waiting for a quiet machine, re-running disturbed runs). The race has a
    deadline (START + budget); `remaining` estimates the base time of the work still ahead (it is told as
    phases end). An extra is allowed only when it fits in deadline - now - remaining."""

    def __init__(self):
        self.deadline, self.remaining = float("inf"), 0.0

    def start(self, deadline, remaining):
        self.deadline, self.remaining = deadline, remaining

    def done(self, seconds):
        self.remaining = max(0.0, self.remaining - seconds)

    def slack_left(self):
        return max(0.0, self.deadline - time.monotonic() - self.remaining)


SCHEDULE = Schedule()


# ---------------------------------------------------------------- pinning
def calibrate_pinning(ok, procs, run_dir, cpus, foreign_limit, rounds=3, secs=0.5):
    """Race the C reference against itself with and without pinning, alternating, and keep the placement
    whose ops/s vary least between runs (pingpong 64 B at 1 and 50 connections). Runs that other work
    disturbed are left out; without enough clean runs, 'none' is kept: on a busy machine, pinning the
    server to one CPU makes it wait behind whatever else runs there."""
    import types
    port = free_port()
    p = procs.start("c-epoll-calibration", [ok["c-epoll"], str(port)], os.path.join(run_dir, "logs", "calibration.log"))
    if not wait_listening(port, p, 10):
        return {"choice": "none", "text": "calibration server did not start; left unpinned"}
    runs = {"split": {1: [], 50: []}, "none": {1: [], 50: []}}
    disturbed = 0
    a = types.SimpleNamespace(duration=secs, warmup=0.1)
    for _ in range(rounds):
        for cfg in ("split", "none"):
            run_cmd(["taskset", "-p", "-c", str(cpus[0]) if cfg == "split" else ",".join(map(str, cpus)),
                     str(p.pid)], 10)
            for conns in (1, 50):
                out, err = measured_run("c", ok, p.pid, port, "pingpong", conns, 64, a,
                                        cpus[-1] if cfg == "split" else None)
                if out and out["foreign_cpu_pct"] <= foreign_limit:
                    runs[cfg][conns].append(out["ops_per_sec"])
                elif out:
                    disturbed += 1
    procs.stop(p)

    def cv(v):
        return statistics.pstdev(v) / statistics.mean(v) * 100 if len(v) > 1 and statistics.mean(v) else None

    enough = all(len(runs[cfg][c]) >= 2 for cfg in runs for c in (1, 50))
    score = {cfg: statistics.mean([cv(runs[cfg][c]) for c in (1, 50)]) if enough else None for cfg in runs}
    choice = min(score, key=score.get) if enough else "none"
    parts = []
    for cfg in ("split", "none"):
        parts.append(f"{cfg}: " + ", ".join(
            f"{c} conn {fmt_num(statistics.median(runs[cfg][c]) if runs[cfg][c] else None)} ops/s "
            f"(cv {fmt_num(cv(runs[cfg][c]))}%)" for c in (1, 50)))
    why = "steadier on the C reference" if enough else (
        f"{disturbed} of {rounds * 4} calibration runs disturbed by other work, too few clean ones to compare")
    return {"choice": choice, "runs": runs, "cv_pct": score, "disturbed": disturbed,
            "text": f"chose {choice}, {why} ({'; '.join(parts)})"}


# ---------------------------------------------------------------- race
def start_peer(name, spec, args, ok, procs, run_dir, pin_server, pin_client):
    """Start one server on its own port and wait until it listens. Returns its context (`check_peer` checks it)."""
    res = {"peer": name, "desc": spec["desc"], "threads": spec["threads"], "pinned_cpu": pin_server,
           "workloads": {}, "checks": [], "status": "ok"}
    port = free_port()
    argv = spec["argv"](port)
    if pin_server is not None:
        argv = ["taskset", "-c", str(pin_server)] + argv
    res["argv"] = argv
    logfile = os.path.join(run_dir, "logs", f"{name}.log")
    proc = procs.start(name, argv, logfile, env=spec.get("env"))
    ctx = {"name": name, "spec": spec, "proc": proc, "port": port, "pid": proc.pid, "res": res, "live": False,
           "pin_server": pin_server}
    log(f"peer {name}: {spec['desc']} (port {port})")
    if not wait_listening(port, proc, 60 if "uvloop" in name else 20):
        res["status"] = f"did not start (exit {proc.poll()}); see logs/{name}.log"
        log(f"  {name}: {res['status']}")
        procs.stop(proc)
        return ctx
    res["pid"] = proc.pid
    ctx["live"] = True
    return ctx


def check_peer(ctx, ok, pin_client):
    """Correctness: every byte verified, no loss, close after EOF, partial writes with a slow reader.
    Safe to run for several peers at once (each has its own server and port; only clients are started here)."""
    name, res, port, proc, pin_server = ctx["name"], ctx["res"], ctx["port"], ctx["proc"], ctx["pin_server"]
    bad = []
    for mode, conns, size, secs, extra in CHECKS:
        out, err = run_client(c_client_argv(ok, port, mode, conns, size, secs, 0, extra), 30, pin_client)
        entry = {"mode": mode, "connections": conns, "size": size,
                 "ops": out and out["ops"], "errors": out and out["errors"], "failure": err}
        res["checks"].append(entry)
        if err or out["errors_total"] or out.get("setup_failed") or not out["ops"]:
            bad.append(f"{mode}/{conns}x{size}: " + (err or json.dumps(out["errors"])))
    e = slow_reader_check(port)
    res["checks"].append({"mode": "slow-reader 16 MiB", "failure": e})
    if e:
        bad.append(f"slow reader 16 MiB: {e}")
    if bad:
        res["status"] = "INCORRECT: " + "; ".join(bad)
        log(f"  {name}: correctness check FAILED: {'; '.join(bad)}")
    else:
        log(f"  {name}: correctness OK ({len(CHECKS) + 1} checks, every byte verified)"
            + (f" [server on CPU {pin_server}]" if pin_server is not None else " [server unpinned]"))
    ctx["live"] = proc.poll() is None


def run_workload(ctxs, workload, args, ok, run_dir, pin_client, use_perf):
    """One workload over every live peer, interleaved: repeat r runs the peers in an order rotated by r,
    so slow drifts in the machine's state (other work, thermal, caches) fall on all peers alike."""
    wname, mode, conns, size, label = workload
    ctxs = [c for c in ctxs if wname in c["spec"].get("workloads", (wname,))]
    clients = ["c"] if args.client == "c" or not ok.get("echod-bench") else (
        ["echod"] if args.client == "echod" else ["c", "echod"])
    for ctx in ctxs:
        ctx["res"]["workloads"][wname] = {"mode": mode, "connections": conns, "size": size, "label": label,
                                          "runs": [], "echod_runs": [], "discarded": []}
        ctx["retries"] = 0
    repeats = min(args.repeats, args.sweep_repeats) if wname in {x[0] for x in SWEEP} else args.repeats
    for rep in range(repeats):
        k = rep % max(len(ctxs), 1)
        for ctx in ctxs[k:] + ctxs[:k]:
            name, proc, w = ctx["name"], ctx["proc"], ctx["res"]["workloads"][wname]
            while ctx["live"]:
                if proc.poll() is not None:
                    ctx["live"] = False
                    ctx["res"]["status"] = f"server exited with {proc.poll()} during {wname}; see logs/{name}.log"
                    log(f"  {name}: {ctx['res']['status']}")
                    break
                tainted = False
                for cl in clients if rep < args.echod_client_repeats else clients[:1]:  # C client first
                    if ctx["spec"].get("logfile"):
                        drain_log_file(ctx["spec"]["logfile"])  # what checks and perf runs logged
                    out, err = measured_run(cl, ok, ctx["pid"], ctx["port"], mode, conns, size, args, pin_client)
                    if out is None:
                        w.setdefault("failures", []).append(err)
                        continue
                    if ctx["spec"].get("logfile"):
                        out["log"] = drain_log_file(ctx["spec"]["logfile"])
                    if cl == "c" or clients == ["echod"]:
                        tainted = (out["foreign_cpu_pct"] > args.foreign_limit and ctx["retries"] < args.retries
                                   and SCHEDULE.slack_left() > 2 * (args.duration + args.warmup + 0.3))
                        (w["discarded"] if tainted else w["runs"]).append(out)
                    else:
                        w["echod_runs"].append(out)
                if not tainted:
                    break
                ctx["retries"] += 1
                log(f"  {name:16s} {wname:10s} run discarded: other work used "
                    f"{w['discarded'][-1]['foreign_cpu_pct']:.0f}% of the machine during it; re-running")
                wait_quiet(args.quiet_limit, min(5.0, SCHEDULE.slack_left() - (args.duration + args.warmup + 0.3)))
    for ctx in ctxs:
        name, w = ctx["name"], ctx["res"]["workloads"][wname]
        if (use_perf and not ctx["spec"]["tree"] and ctx["live"] and ctx["proc"].poll() is None
                and wname not in {x[0] for x in SWEEP}):
            path = os.path.join(run_dir, "logs", f"perf-{name}-{wname}.txt")
            pp = perf_start(ok, ctx["pid"], path)
            time.sleep(0.15)  # let perf attach to every thread
            out, err = run_client(c_client_argv(ok, ctx["port"], mode, conns, size, args.perf_duration, 0),
                                  args.perf_duration + 40, pin_client)
            n = perf_finish(pp, path)
            if out and n and out.get("ops_all"):
                w["syscalls_per_op"] = n / out["ops_all"]
        summarise(w, args.foreign_limit)
        s = w.get("summary", {})
        log(f"  {name:16s} {wname:10s} {fmt_num(s.get('ops_per_sec'))} ops/s ±{s.get('spread_pct', 0):.1f}%  "
            f"p99 {fmt_num(s.get('p99'))} us  cpu {fmt_num(s.get('server_cpu_us_per_op'))} us/op  "
            f"sys/op {fmt_num(w.get('syscalls_per_op'))}  err {s.get('errors_total', '?')}  "
            f"other-load {fmt_num(s.get('foreign_cpu_pct'))}%")


def estimate_workload(n, n_fork, args, sweep=False):
    """Seconds one workload takes over n peers (measured here: 58 s for 14 peers at the defaults)."""
    repeats = min(args.repeats, args.sweep_repeats) if sweep else args.repeats
    runs = repeats + (min(args.echod_client_repeats, repeats) if args.client == "both" else 0)
    perf = 0 if (sweep or args.no_perf) else (n - n_fork) * (args.perf_duration + 0.3)
    return n * runs * (args.duration + args.warmup + 0.06) + perf


def estimate_idle(n, n_fork, args):
    """Seconds of the idle-RSS phase (measured: 46 s for 12 single-process peers, 3 at a time, and 2 forking)."""
    return (-(-(n - n_fork) // 3) * 9.0 + n_fork * 5.0) if IDLE_WORKLOAD in args.workloads else 0.0


def fit_budget(workloads, args, n, n_fork, left):
    """Trims the plan until its estimate fits in the `left` seconds of the budget, least valuable first: the
    sweep points (they only add points to the latency plot), the 4th repeat, the `echod bench` round. Never
    below 3 repeats (a median needs them): a plan that still does not fit runs over. Returns the workloads to
    run and what was trimmed (said in the table)."""
    sweep = {x[0] for x in SWEEP}

    def total(wls):
        return (sum(estimate_workload(n, n_fork, args, w[0] in sweep) for w in wls)
                + estimate_idle(n, n_fork, args) + 3.0 + 5.0)
    trimmed = []
    if total(workloads) <= left:
        return workloads, trimmed
    if any(w[0] in sweep for w in workloads):
        workloads = [w for w in workloads if w[0] not in sweep]
        trimmed.append("left out the sweep points pp64-c10 and pp64-c200")
    if total(workloads) > left and args.repeats > 3:
        args.repeats = 3
        trimmed.append("3 repeats instead of 4")
    if total(workloads) > left and args.client == "both" and args.echod_client_repeats > 0:
        args.echod_client_repeats = 0
        trimmed.append("no `echod bench` round")
    for t in trimmed:
        log(f"budget: {t} (about {left:.0f} s left for the race, plan estimated at {total(workloads):.0f} s)")
    return workloads, trimmed


def startup_phase(names, peers, procs, run_dir, runs):
    """Exec to serving, per peer: time from just before Popen to the first connect that succeeds (tried every
    0.5 ms), and for echod to READY=1 on a NOTIFY_SOCKET this script listens on. Fresh processes, one at a
    time; Python peers get fewer runs (their start-up is ~10x longer and not in question)."""
    import tempfile
    out = {}
    for name in names:
        spec = peers[name]
        n = runs if not name.startswith(("asyncio", "uvloop")) else max(1, min(runs, 3))
        ready, listening, failure = [], [], None
        for _ in range(n):
            port = free_port()
            env = dict(spec.get("env") or os.environ)
            nsock, tmp = None, None
            if name.startswith("echod"):
                tmp = tempfile.mkdtemp(prefix="echod-race-")
                nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                nsock.bind(os.path.join(tmp, "notify"))
                nsock.setblocking(False)
                env["NOTIFY_SOCKET"] = os.path.join(tmp, "notify")
            t0 = time.monotonic()
            proc = procs.start(name + "-startup", spec["argv"](port),
                               os.path.join(run_dir, "logs", f"{name}-startup.log"), env=env, fast=True)
            t_ready = t_listen = None
            try:
                deadline = t0 + 15
                while time.monotonic() < deadline and (t_listen is None or (nsock and t_ready is None)):
                    if proc.poll() is not None:
                        failure = f"exited with {proc.returncode} while starting"
                        break
                    if nsock and t_ready is None:
                        try:
                            if b"READY=1" in nsock.recv(4096).split(b"\n"):
                                t_ready = time.monotonic()
                        except BlockingIOError:
                            pass
                    if t_listen is None:
                        try:
                            socket.create_connection(("127.0.0.1", port), timeout=1).close()
                            t_listen = time.monotonic()
                        except OSError:
                            pass
                    time.sleep(0.0005)
            finally:
                procs.stop(proc)
                if nsock:
                    nsock.close()
                    shutil.rmtree(tmp, ignore_errors=True)
            if t_listen is not None:
                listening.append((t_listen - t0) * 1000)
            if t_ready is not None:
                ready.append((t_ready - t0) * 1000)
            if failure:
                break

        def stats(v):
            return {"median": statistics.median(v), "min": min(v), "max": max(v)} if v else None
        out[name] = {"runs": n, "accept_ms": stats(listening), "ready_ms": stats(ready), "failure": failure}
        r, a = out[name]["ready_ms"], out[name]["accept_ms"]
        log(f"  {name:16s} start-up: " + (f"READY=1 {r['median']:.1f} ms, " if r else "")
            + (f"listening {a['median']:.1f} ms" if a else "not listening") + f" (median of {n})"
            + (f"; {failure}" if failure else ""))
    return out


def drain_log_file(path):
    """Lines and `dropped N` counts in the log file since the last call, then empties it (see echod-1-reads)."""
    time.sleep(0.05)  # the writer thread lingers up to 1 ms; let it finish the run's last records
    lines = dropped = size = 0
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                size += len(chunk)
                lines += chunk.count(b"\n")
                for m in re.finditer(rb"dropped (\d+) records", chunk):
                    dropped += int(m.group(1))
        os.truncate(path, 0)
    except OSError as e:
        return {"error": str(e)}
    return {"lines": lines, "dropped": dropped, "bytes": size}


def idle_phase(live, args, procs, run_dir, pin_client):
    """Idle memory of every peer, each on a FRESH instance (see `idle_start`). Single-process servers are
    measured three at a time: Rss of one process does not depend on what else runs (unlike time), and the
    connections are opened and held, not driven. Fork-per-connection servers come after, one at a time:
    their figure is Pss, which other processes mapping the same libraries would dilute."""
    live = [c for c in live if c["spec"].get("idle", True)]
    solo = [c for c in live if not c["spec"]["tree"]]
    tree = [c for c in live if c["spec"]["tree"]]
    for batch in [solo[i:i + 3] for i in range(0, len(solo), 3)] + [[c] for c in tree]:
        started = [(c, idle_start(c, procs, run_dir)) for c in batch]  # Popen stays on the main thread
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(lambda cp: idle_measure(cp[0], cp[1], args, pin_client), started))
        finally:
            for _, (proc, _) in started:
                if proc is not None:
                    procs.stop(proc)


def idle_start(ctx, procs, run_dir):
    """A FRESH instance of the server: one that already served the workloads has freed heap it keeps
    resident, which new connections reuse without growing RSS (that would understate the cost)."""
    spec, name = ctx["spec"], ctx["name"]
    port = free_port()
    argv = spec["argv"](port)
    if ctx.get("pin_server") is not None:
        argv = ["taskset", "-c", str(ctx["pin_server"])] + argv
    return procs.start(name + "-idle", argv, os.path.join(run_dir, "logs", f"{name}-idle.log"),
                       env=spec.get("env")), port


def idle_measure(ctx, started, args, pin_client):
    spec, name, res = ctx["spec"], ctx["name"], ctx["res"]
    proc, port = started
    if not wait_listening(port, proc, 60 if "uvloop" in name else 20):
        res["idle"] = {"failure": f"fresh instance did not start (exit {proc.poll()})"}
        return
    time.sleep(0.3)  # let a runtime finish starting up (threads, GC) before the first reading
    n = args.idle_connections if not spec["tree"] else min(args.idle_connections, args.idle_connections_fork)
    cmd = [sys.executable, os.path.join(BENCH, "idle_rss.py"), "--pid", str(proc.pid), "--port", str(port),
           "-n", str(n), "--settle", str(args.idle_settle), "--json"] + (["--tree"] if spec["tree"] else [])
    out, err = run_client(cmd, 180, pin_client)
    res["idle"] = out or {"failure": err}
    if out:
        log(f"  {name:16s} idle: {out['connections']} conns, {out['bytes_per_conn_idle']} B/conn idle, "
            f"{out['bytes_per_conn_after_echo']} B/conn after one echo ({out['metric']})")
    else:
        log(f"  {name}: idle RSS failed: {err}")


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user+nice+system+steal: irq/softirq are left out (our own loopback traffic is processed in softirq
    # context, not always charged to our processes); steal counts: the hypervisor gave the CPU to someone else
    return v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)


def children_cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured_run(cl, ok, pid, port, mode, conns, size, args, pin_client):
    """One client run; adds server CPU (/proc/PID/stat deltas) and the CPU used by anything else on
    the machine meanwhile (machine busy - server - client), as a % of all CPUs."""
    c0, b0, k0, t0 = cpu_ticks(pid), machine_busy_ticks(), children_cpu_s(), time.monotonic()
    if cl == "c":
        out, err = run_client(c_client_argv(ok, port, mode, conns, size, args.duration, args.warmup),
                              args.duration + args.warmup + 40, pin_client)
    else:
        raw, err = run_client(echod_client_argv(ok, port, mode, conns, size, args.duration, args.warmup),
                              args.duration + 40, pin_client)
        out = normalise_echod_json(raw) if raw else None
    c1, b1, k1, t1 = cpu_ticks(pid), machine_busy_ticks(), children_cpu_s(), time.monotonic()
    if out is None:
        return None, err
    out["server_cpu_s"] = (c1 - c0) / CLK_TCK
    out["client_cpu_s"] = k1 - k0
    out["wall_s"] = t1 - t0
    ncpu = os.cpu_count() or 1
    foreign = (b1 - b0) / CLK_TCK - out["server_cpu_s"] - out["client_cpu_s"]
    out["foreign_cpu_pct"] = max(0.0, foreign / (out["wall_s"] * ncpu) * 100)
    n_all = out.get("ops_all") or out.get("ops") or 0
    out["server_cpu_us_per_op"] = (out["server_cpu_s"] * 1e6 / n_all) if n_all else None
    return out, None


def summarise(w, foreign_limit):
    """Medians over the runs that other work did not disturb (other load <= limit); over all runs, flagged,
    when none was clean."""
    all_runs = w["runs"]
    if not all_runs:
        return
    clean = [r for r in all_runs if r.get("foreign_cpu_pct", 0) <= foreign_limit]
    runs = clean or all_runs

    def med(key, sub=None):
        vals = [(r[sub][key] if sub else r[key]) for r in runs]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    ops = [r["ops_per_sec"] for r in runs]
    m = statistics.median(ops)
    w["summary"] = {
        "n": len(runs),
        "n_runs": len(all_runs),
        "n_disturbed_left_out": len(all_runs) - len(runs),
        "all_disturbed": not clean,
        "ops_per_sec": m,
        "ops_min": min(ops),
        "ops_max": max(ops),
        "spread_pct": (max(ops) - min(ops)) / m * 100 if m else 0,
        "mb_per_sec": med("mb_per_sec"),
        "p50": med("p50", "latency_us"), "p90": med("p90", "latency_us"), "p99": med("p99", "latency_us"),
        "p999": med("p999", "latency_us"), "max": med("max", "latency_us"),
        "server_cpu_us_per_op": med("server_cpu_us_per_op"),
        "errors_total": sum(r.get("errors_total", 0) or 0 for r in all_runs),
        "foreign_cpu_pct": med("foreign_cpu_pct"),
        "discarded": len(w.get("discarded", [])),
    }
    if w.get("echod_runs"):
        e = w["echod_runs"]
        vals = [r["ops_per_sec"] for r in e if r.get("ops_per_sec")]
        w["echod_summary"] = {"ops_per_sec": statistics.median(vals) if vals else None,
                              "errors_total": sum(r.get("errors_total", 0) or 0 for r in e),
                              "p99": statistics.median([r["latency_us"]["p99"] for r in e
                                                        if r["latency_us"].get("p99") is not None] or [0]) or None}


# ---------------------------------------------------------------- output
def fmt_num(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits - 1}f}"


def other_load_cell(s):
    notes = []
    if s.get("discarded"):
        notes.append(f"{s['discarded']} re-run")
    if s.get("n_disturbed_left_out"):
        notes.append(f"{s['n_disturbed_left_out']} of {s['n_runs']} left out")
    if s.get("all_disturbed"):
        notes.append("⚠ all disturbed")
    return f"{fmt_num(s['foreign_cpu_pct'])}%" + (f" ({', '.join(notes)})" if notes else "")


def ratio(v, ref):
    if v is None or not ref:
        return "–"
    return f"{v / ref:.2f}×"


def write_table(path, meta, peers_res, notes):
    ref = next((r for r in peers_res if r["peer"] == REFERENCE), None)
    L = []
    L.append(f"# echod race — {meta['date']}")
    L.append("")
    L.append(f"Machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}. "
             f"{meta['repeats']} repeat(s) × {meta['duration']} s per workload (+{meta['warmup']} s warm-up), median shown, "
             f"spread = (max−min)/median; repeats interleaved across peers. Client: bench/client/echoclient "
             f"(C, epoll, 1 thread, every byte verified)"
             + (f"; `echod bench` (echod's own load generator, every byte verified too) ran beside it in "
                f"{meta.get('echod_client_repeats', meta['repeats'])} of the rounds, second table"
                if meta.get("client") == "both" else "")
             + f". Race took {meta.get('elapsed_s', '?')} s.")
    if meta.get("trimmed"):
        L.append("Trimmed to fit the time budget (`--budget`; `make bench` counts its builds): "
                 + "; ".join(meta["trimmed"]) + ".")
    L.append(f"Pinning: {meta['pinning']}")
    L.append(f"Syscalls: {meta['perf']}")
    L.append("")
    present = [r["peer"] for r in peers_res]
    for name, note in notes.items():
        L.append(f"- **{name}**: {note}")
    if "echod" not in notes and not any(p.startswith("echod") and r["status"] == "ok"
                                        for p, r in zip(present, peers_res)):
        L.append("- **echod**: pending (no working echod binary raced in this run)")
    L.append("")
    # summary ratios
    wl = [w for w in WORKLOADS if any(w[0] in r["workloads"] for r in peers_res)]
    L.append("## Throughput (ops/s, ratio to the C epoll reference; higher is better)")
    L.append("")
    L.append("| peer | " + " | ".join(w[0] for w in wl) + " |")
    L.append("|---|" + "---:|" * len(wl))
    for r in peers_res:
        cells = []
        for w in wl:
            s = r["workloads"].get(w[0], {}).get("summary")
            rs = ref and ref["workloads"].get(w[0], {}).get("summary")
            if not s:
                cells.append("–")
                continue
            flag = " ⚠" if s["errors_total"] or s.get("all_disturbed") else ""
            cells.append(f"{fmt_num(s['ops_per_sec'])} ({ratio(s['ops_per_sec'], rs and rs['ops_per_sec'])}){flag}")
        status = "" if r["status"] == "ok" else " ⚠"
        L.append(f"| {r['peer']}{status} | " + " | ".join(cells) + " |")
    L.append("")
    if any(r["workloads"].get(w[0], {}).get("echod_summary") for r in peers_res for w in wl):
        L.append("### The same with `echod bench` as the client")
        L.append("")
        L.append("Same servers, same round, the other client; ratios to c-epoll under this client. Where the two "
                 "tables agree, neither client is what limits the figures.")
        L.append("")
        L.append("| peer | " + " | ".join(w[0] for w in wl) + " |")
        L.append("|---|" + "---:|" * len(wl))
        for r in peers_res:
            cells = []
            for w in wl:
                e = r["workloads"].get(w[0], {}).get("echod_summary")
                re_ = ref and ref["workloads"].get(w[0], {}).get("echod_summary")
                cells.append(f"{fmt_num(e['ops_per_sec'])} ({ratio(e['ops_per_sec'], re_ and re_['ops_per_sec'])})"
                             + (" ⚠" if e.get("errors_total") else "") if e and e.get("ops_per_sec") else "–")
            L.append(f"| {r['peer']} | " + " | ".join(cells) + " |")
        L.append("")
    reads = next((r for r in peers_res if r["peer"] == "echod-1-reads"), None)
    base = next((r for r in peers_res if r["peer"] == "echod-1"), None)
    if reads and base and any(reads["workloads"].get(w[0], {}).get("summary") for w in wl):
        L.append("### `log.reads: true`: every read logged to a file")
        L.append("")
        L.append("echod-1-reads is echod-1 with `log.reads: true`, `log.level: info`, text to a file (emptied after "
                 "each run). Target: at least 0.8× the throughput without. records = lines the file received per "
                 "op (reads, plus each connection's open and close lines); dropped = records the full log queue "
                 "refused (so that logging never blocks the loop), from the `dropped N records` lines.")
        L.append("")
        L.append("| workload | echod-1 ops/s | echod-1-reads ops/s | ratio | CPU µs/op without → with | records/op | "
                 "dropped |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for w in wl:
            wr = reads["workloads"].get(w[0], {})
            sr, sb = wr.get("summary"), base["workloads"].get(w[0], {}).get("summary")
            if not sr or not sb:
                continue
            logs = [(r.get("log") or {}, r.get("ops_all") or 0) for r in wr.get("runs", [])]
            lines = sum(x.get("lines", 0) for x, _ in logs)
            ops_all = sum(n for _, n in logs)
            dropped = sum(x.get("dropped", 0) for x, _ in logs)
            L.append(f"| {w[0]} | {fmt_num(sb['ops_per_sec'])} | {fmt_num(sr['ops_per_sec'])} | "
                     f"{ratio(sr['ops_per_sec'], sb['ops_per_sec'])} | {fmt_num(sb['server_cpu_us_per_op'])} → "
                     f"{fmt_num(sr['server_cpu_us_per_op'])} | {fmt_num(lines / ops_all if ops_all else None)} | "
                     f"{dropped} |")
        L.append("")
    if meta.get("startup"):
        L.append("### Start-up: exec to serving")
        L.append("")
        L.append("Median (min–max) over the runs, ms: from just before the spawn to listening (the first connect "
                 "that succeeds, tried every 0.5 ms), and for echod to `READY=1` on a NOTIFY_SOCKET. Target for "
                 "echod: under 50 ms.")
        L.append("")
        L.append("| peer | runs | to READY=1 | to listening |")
        L.append("|---|---:|---:|---:|")
        for name, st in meta["startup"].items():
            def cell(v):
                return f"{fmt_num(v['median'])} ({fmt_num(v['min'])}–{fmt_num(v['max'])})" if v else "–"
            L.append(f"| {name} | {st.get('runs', 0)} | {cell(st.get('ready_ms'))} | {cell(st.get('accept_ms'))} |"
                     + (f" {st['failure']}" if st.get("failure") else ""))
        L.append("")
    L.append("Workloads: " + "; ".join(f"`{w[0]}` = {w[4]}" for w in wl) +
             ". ops = round trips (stream: SIZE-byte messages echoed; connect: connections opened, echoed once "
             "and closed). ⚠ = errors, a failed check, or every run disturbed by other work. Server CPU µs/op = (utime+stime of the server and its "
             "children over the client run) / every op completed in it. other load = CPU used meanwhile by "
             "processes outside the race, % of the whole machine (runs above the limit are re-run).")
    L.append("")
    # per workload detail
    for w in wl:
        rs = ref and ref["workloads"].get(w[0], {}).get("summary")
        L.append(f"### {w[0]}: {w[4]}")
        L.append("")
        L.append("| peer | ops/s | ±spread | ×C | MB/s | p50 µs | p99 µs | p99.9 µs | max µs | p99 ×C | "
                 "server CPU µs/op | CPU ×C | syscalls/op | errors | other load |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in peers_res:
            ww = r["workloads"].get(w[0])
            s = ww and ww.get("summary")
            if not s:
                continue
            L.append(f"| {r['peer']} | {fmt_num(s['ops_per_sec'])} | {s['spread_pct']:.1f}% | "
                     f"{ratio(s['ops_per_sec'], rs and rs['ops_per_sec'])} | {fmt_num(s['mb_per_sec'])} | "
                     f"{fmt_num(s['p50'])} | {fmt_num(s['p99'])} | {fmt_num(s['p999'])} | {fmt_num(s['max'])} | "
                     f"{ratio(s['p99'], rs and rs['p99'])} | {fmt_num(s['server_cpu_us_per_op'])} | "
                     f"{ratio(s['server_cpu_us_per_op'], rs and rs['server_cpu_us_per_op'])} | "
                     f"{fmt_num(ww.get('syscalls_per_op'))} | {s['errors_total']} | "
                     f"{other_load_cell(s)} |")
            if ww.get("echod_summary"):
                e = ww["echod_summary"]
                L.append(f"| ↳ {r['peer']} (echod bench client) | {fmt_num(e['ops_per_sec'])} | | | | | "
                         f"{fmt_num(e['p99'])} | | | | | | | | |")
        L.append("")
    # idle
    if any(r.get("idle") for r in peers_res):
        L.append(f"### {IDLE_WORKLOAD}: server memory per idle connection")
        L.append("")
        L.append("| peer | connections | metric | before kB | idle kB | B/conn idle | B/conn after one echo | "
                 "after close kB |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|")
        for r in peers_res:
            i = r.get("idle")
            if not i:
                continue
            if "failure" in i:
                L.append(f"| {r['peer']} | failed: {i['failure']} | | | | | | |")
                continue
            L.append(f"| {r['peer']} | {i['connections']} | {i['metric']} | {i['kb_before']} | {i['kb_idle']} | "
                     f"{fmt_num(i['bytes_per_conn_idle'])} | {fmt_num(i['bytes_per_conn_after_echo'])} | "
                     f"{i['kb_after_close']} |")
        L.append("")
        L.append("Measured on a fresh instance of each server. idle = accepted, no byte exchanged; after one echo = "
                 "each connection echoed 16 bytes once. Rss from /proc/PID/smaps_rollup (what VmRSS reports, without "
                 "its per-CPU counter lag) for single-process servers; fork-per-connection servers (socat, xinetd): "
                 "sum of Pss over the process tree, with fewer connections (one or two processes per connection).")
        L.append("")
    bad = [r for r in peers_res if r["status"] != "ok"]
    if bad:
        L.append("### Problems")
        L.append("")
        for r in bad:
            L.append(f"- {r['peer']}: {r['status']}")
        L.append("")
    L.append("### Peers")
    L.append("")
    L.append("| peer | what | threads | server CPU | other load (median over its runs) | status |")
    L.append("|---|---|---:|---|---:|---|")
    for r in peers_res:
        ol = r.get("other_load_median_pct")
        L.append(f"| {r['peer']} | {r['desc']} | {r['threads']} | "
                 f"{'pinned ' + str(r['pinned_cpu']) if r.get('pinned_cpu') is not None else 'unpinned'} | "
                 f"{'–' if ol is None else str(ol) + '%'} | {'ok' if r['status'] == 'ok' else r['status']} |")
    L.append("")
    L.append("other load = CPU used by processes outside the race during a peer's runs, in % of the machine "
             "(machine busy time from /proc/stat minus server and client CPU): well above 0 means other work "
             "shared the machine and disturbed the figures. The peers are interleaved (each repeat runs every "
             "peer, in a rotated order), so such disturbances tend to fall on all peers alike.")
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return "\n".join(L)


PALETTE = ["#000000", "#d62728", "#ff7f0e", "#1f77b4", "#17becf", "#2ca02c", "#8c564b", "#9467bd", "#e377c2",
           "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39"]


def write_svg(path, peers_res):
    """Latency percentiles (p50, p99, p99.9) against connection count, pingpong 64 B, log-log, hand-written SVG."""
    pts = {}
    for r in peers_res:
        for w in WORKLOADS:
            if w[1] != "pingpong" or w[3] != 64:
                continue
            s = r["workloads"].get(w[0], {}).get("summary")
            if s:
                pts.setdefault(r["peer"], []).append((w[2], s["p50"], s["p99"], s["p999"]))
    if not pts:
        return False
    conns = sorted({c for v in pts.values() for c, *_ in v})
    ys = [y for v in pts.values() for _, *yy in v for y in yy if y]
    import math
    ylo = 10 ** math.floor(math.log10(max(min(ys), 1e-3)))
    yhi = 10 ** math.ceil(math.log10(max(ys)))
    xlo, xhi = 0.7, max(conns) * 1.4
    W, H, PW, PH, ML, MT = 1260, 440, 290, 320, 60, 50
    panels = [("p50", 1), ("p99", 2), ("p99.9", 3)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{ML}" y="22" font-size="15" font-weight="bold">Round-trip latency vs connections '
           f'(pingpong 64 B, echoclient, µs, log-log)</text>']
    for pi, (pname, idx) in enumerate(panels):
        x0 = ML + pi * (PW + 60)
        y0 = MT

        def X(c):
            return x0 + (math.log10(c) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) * PW

        def Y(v):
            v = max(v, ylo)
            return y0 + PH - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) * PH

        out.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#444"/>')
        out.append(f'<text x="{x0 + PW / 2}" y="{y0 - 8}" text-anchor="middle" font-weight="bold">{pname}</text>')
        d = ylo
        while d <= yhi * 1.0001:
            yy = Y(d)
            out.append(f'<line x1="{x0}" x2="{x0 + PW}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
            label = f"{d / 1000:g} ms" if d >= 1000 else f"{d:g} µs"
            out.append(f'<text x="{x0 - 4}" y="{yy + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
            d *= 10
        for c in conns:
            xx = X(c)
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + PH}" stroke="#eee"/>')
            out.append(f'<text x="{xx:.1f}" y="{y0 + PH + 16}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x0 + PW / 2}" y="{y0 + PH + 34}" text-anchor="middle">connections</text>')
        for k, (peer, v) in enumerate(pts.items()):
            col = PALETTE[k % len(PALETTE)]
            v = sorted(v)
            coords = [(X(c), Y(t[idx - 1])) for c, *t in v if t[idx - 1]]
            if len(coords) > 1:
                out.append('<polyline fill="none" stroke="{}" stroke-width="{}" points="{}"/>'.format(
                    col, 2.5 if peer == REFERENCE else 1.5, " ".join(f"{a:.1f},{b:.1f}" for a, b in coords)))
            for a, b in coords:
                out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{col}"/>')
    lx = ML + 3 * (PW + 60) - 30
    for k, peer in enumerate(pts):
        col = PALETTE[k % len(PALETTE)]
        yy = MT + 10 + k * 18
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{yy}" y2="{yy}" stroke="{col}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 24}" y="{yy + 4}">{peer}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))
    return True


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 1 s per workload, no sweep")
    ap.add_argument("--only", default="", help="comma-separated peers (the C reference is always added)")
    ap.add_argument("--workloads", default="", help="comma-separated subset of: "
                    + ",".join(w[0] for w in WORKLOADS) + "," + IDLE_WORKLOAD)
    ap.add_argument("--duration", type=float, default=None, help="seconds per workload run (default 0.6; quick 1)")
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up seconds before each measured run")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per workload with the C client (default 4; quick 1): the table shows their median")
    ap.add_argument("--echod", default=None, help="echod binary (default: $ECHOD_BIN, then .build/release/echod)")
    ap.add_argument("--client", choices=["c", "echod", "both"], default="both",
                    help="load client: bench's C client, `echod bench` (when the binary has it), or both (default: "
                         "the C client for the figures, `echod bench` beside it to show the two agree)")
    ap.add_argument("--echod-client-repeats", type=int, default=1,
                    help="with --client both: rounds in which `echod bench` runs too (default 1)")
    ap.add_argument("--pin", choices=["auto", "split", "none"], default="auto",
                    help="split: client on the last CPU, single-threaded servers on CPU 0, multi-threaded servers "
                         "unpinned; none: no taskset; auto (default): calibrate both on the C reference and keep the "
                         "steadier (lower run-to-run spread)")
    ap.add_argument("--quiet-limit", type=float, default=15.0,
                    help="background CPU %% above which to wait before a peer (other work on the machine)")
    ap.add_argument("--quiet-wait", type=float, default=15.0, help="max seconds to wait for quiet before each peer")
    ap.add_argument("--foreign-limit", type=float, default=10.0,
                    help="a run during which other processes used more than this %% of the machine is re-run")
    ap.add_argument("--retries", type=int, default=2, help="extra runs per workload allowed for such re-runs")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds the race may take (default 570, quick 300; 0 = unbounded; from the start of `make bench` when it sets "
                         "ECHOD_BENCH_T0): waits for quiet and re-runs stop "
                         "when a peer falls behind its share")
    ap.add_argument("--no-perf", action="store_true", help="skip the perf syscall counts")
    ap.add_argument("--perf-duration", type=float, default=0.3)
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--idle-connections-fork", type=int, default=500,
                    help="idle connections for fork-per-connection peers (socat, xinetd)")
    ap.add_argument("--idle-settle", type=float, default=0.5)
    ap.add_argument("--no-sweep", dest="sweep", action="store_false",
                    help="leave out pingpong 64 B at 10 and 200 connections (the middle and right points of the "
                         "latency plot)")
    ap.add_argument("--sweep", dest="sweep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sweep-repeats", type=int, default=2,
                    help="repeats of the sweep's extra workloads (default 2: they are there for the plot)")
    ap.add_argument("--startup-runs", type=int, default=5,
                    help="start-up timings per peer (exec to listening; echod also to READY=1); 0 = skip")
    ap.set_defaults(sweep=None)
    ap.add_argument("--out", default=None, help="results directory (default bench/results/<date-time>)")
    ap.add_argument("--retable", metavar="DIR", default=None,
                    help="only re-render DIR/table.md and DIR/latency.svg from DIR/results.json (no race)")
    args = ap.parse_args()
    if args.retable:
        return retable(args.retable, args.foreign_limit)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 4
    if args.duration is None:
        args.duration = 1.0 if args.quick else 0.6
    if args.client != "both":
        args.echod_client_repeats = args.repeats
    if args.sweep is None:
        args.sweep = not args.quick
    if args.sweep:
        WORKLOADS.insert(1, SWEEP[0])  # pp64: 1, 10, 50, 200 connections
        WORKLOADS.insert(3, SWEEP[1])
    all_workloads = [w[0] for w in WORKLOADS] + [IDLE_WORKLOAD]
    args.workloads = [w for w in args.workloads.split(",") if w] or all_workloads
    for w in args.workloads:
        if w not in all_workloads:
            ap.error(f"unknown workload {w}")
    args.peers = [p for p in args.only.split(",") if p] or ORDER
    for p in args.peers:
        if p not in ORDER:
            ap.error(f"unknown peer {p}; peers: {','.join(ORDER)}")
    if REFERENCE not in args.peers:
        args.peers = [REFERENCE] + args.peers

    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    run_dir = args.out or os.path.join(RESULTS, stamp)
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    latest = os.path.join(RESULTS, "latest")
    if not args.out:
        try:
            if os.path.islink(latest):
                os.unlink(latest)
            os.symlink(os.path.basename(run_dir), latest)
        except OSError:
            pass
    global LOGFILE
    LOGFILE = open(os.path.join(run_dir, "run.log"), "a")
    log(f"results -> {run_dir}")

    with open(os.path.join(run_dir, "build.log"), "w") as logf:
        ok, notes = build(args, logf)
    for k, v in notes.items():
        log(f"note: {k}: {v}")
    if ok.get("echod"):
        log(f"echod: {ok['echod']} (echod bench client: {'yes' if ok.get('echod-bench') else 'no'})")
    if args.client != "c" and not ok.get("echod-bench"):
        log(f"--client {args.client}: `echod bench` not available; using the C client only")

    ncpu = len(os.sched_getaffinity(0))
    cpus = sorted(os.sched_getaffinity(0))
    calib = None
    procs = Procs()
    if args.pin == "none" or "taskset" not in ok or ncpu < 2 or "c-epoll" not in ok:
        pin = False
        why = "--pin none" if args.pin == "none" else "taskset missing or a single CPU"
    elif args.pin == "split":
        pin, why = True, "--pin split"
    else:
        busy, steal = wait_quiet(args.quiet_limit, args.quiet_wait)
        try:
            calib = calibrate_pinning(ok, procs, run_dir, cpus, args.foreign_limit)
        finally:
            procs.stop_all()
        calib["background_busy_pct"] = busy
        pin = calib["choice"] == "split"
        why = "auto: " + calib["text"]
    pin_client = cpus[-1] if pin else None
    pinning = (f"split — client `taskset -c {cpus[-1]}`; single-threaded servers `taskset -c {cpus[0]}` (their forks "
               f"inherit it); multi-threaded servers (threads > 1) unpinned, sharing all {ncpu} CPUs with the client"
               if pin else "none — server and client left to the scheduler")
    pinning += f" ({why})"
    log(f"pinning: {pinning}")
    use_perf, perf_note = (False, "disabled (--no-perf)") if args.no_perf else perf_works(ok)
    if use_perf:
        perf_note = (f"`perf stat -e raw_syscalls:sys_enter -p PID` over a separate {args.perf_duration} s run "
                     f"of each workload, divided by the ops in it (all server threads; n/a for fork-per-connection "
                     f"servers); {perf_note}")
    log(f"syscalls: {perf_note}")

    peers = peer_table(ok, run_dir)
    wanted = [p for p in ORDER if p in args.peers]
    for p in wanted:
        if p not in peers:
            reason = notes.get(p.split("-")[0]) or notes.get(p) or "not available"
            if p.startswith("uvloop"):
                reason = notes.get("uvloop", reason)
            notes.setdefault(p, f"skipped: {reason}")
            log(f"skip {p}: {reason}")
    wanted = [p for p in wanted if p in peers]

    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": _cpu_model(), "cores": ncpu,
            "kernel": platform.release(), "repeats": args.repeats, "duration": args.duration, "warmup": args.warmup,
            "client": args.client if ok.get("echod-bench") else "c", "echod_client_repeats": args.echod_client_repeats,
            "pinning": pinning, "perf": perf_note, "python": platform.python_version(), "args": vars(args),
            "versions": _versions(ok), "pin_calibration": calib}
    budget = args.budget if args.budget is not None else (300.0 if args.quick else 570.0)
    # `make bench` passes the time it started, so that the budget covers its builds too (a first run builds
    # echod in release mode and SwiftNIO: about 3.5 minutes here); run alone, the budget starts with run.py.
    before = 0.0
    try:
        before = max(0.0, time.time() - float(os.environ.get("ECHOD_BENCH_T0", "")))
    except ValueError:
        pass
    deadline = START - before + (budget or 1e9)
    if before:
        log(f"`make bench` started {before:.0f} s before the race (packages and builds); budget {budget:.0f} s "
            f"from then")
    workloads = [w for w in WORKLOADS if w[0] in args.workloads]
    n = len(wanted)
    n_fork = sum(1 for p in wanted if peers[p]["tree"])
    est_start = n * 1.2
    SCHEDULE.start(deadline, est_start + len(workloads) * estimate_workload(n, n_fork, args)
                   + estimate_idle(n, n_fork, args) + 3.0)
    results = []
    old_int = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _sigterm)
    ctxs = []
    try:
        busy, steal = wait_quiet(args.quiet_limit, min(args.quiet_wait, SCHEDULE.slack_left()))
        log(f"starting {len(wanted)} servers (background CPU use {busy}%)")
        for p in wanted:
            spec = peers[p]
            pin_server = cpus[0] if (pin and spec["threads"] == 1) else None
            ctx = start_peer(p, spec, args, ok, procs, run_dir, pin_server, pin_client)
            ctx["res"]["background_busy_pct"] = busy
            ctxs.append(ctx)
            results.append(ctx["res"])
        # The checks only verify bytes (no timing), so they run four peers at a time: about 12 s instead of 34.
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda c: check_peer(c, ok, pin_client), [c for c in ctxs if c["live"]]))
        live = [c for c in ctxs if c["live"]]
        n, n_fork = len(live), sum(1 for c in live if c["spec"]["tree"])
        workloads, trimmed = fit_budget(workloads, args, n, n_fork, deadline - time.monotonic())
        meta["trimmed"] = trimmed
        meta["repeats"] = args.repeats
        meta["echod_client_repeats"] = args.echod_client_repeats
        SCHEDULE.start(deadline, sum(estimate_workload(n, n_fork, args, w[0] in {x[0] for x in SWEEP})
                                     for w in workloads) + estimate_idle(n, n_fork, args) + 3.0)
        for wl in workloads:
            busy, steal = wait_quiet(args.quiet_limit, min(args.quiet_wait, SCHEDULE.slack_left()))
            is_sweep = wl[0] in {x[0] for x in SWEEP}
            log(f"workload {wl[0]}: {wl[4]} — "
                f"{min(args.repeats, args.sweep_repeats) if is_sweep else args.repeats} round(s) over {len(live)} peers"
                + (f" (warning: background CPU use {busy}%)" if busy > args.quiet_limit else ""))
            run_workload(live, wl, args, ok, run_dir, pin_client, use_perf)
            SCHEDULE.done(estimate_workload(n, n_fork, args, is_sweep))
            _dump(run_dir, meta, results, notes)
        if args.startup_runs > 0:
            log(f"start-up: exec to listening (and to READY=1 for echod), {args.startup_runs} runs per peer")
            meta["startup"] = startup_phase([c["name"] for c in live], peers, procs, run_dir, args.startup_runs)
        if IDLE_WORKLOAD in args.workloads:
            log(f"workload {IDLE_WORKLOAD}: server memory per idle connection")
            idle_phase(live, args, procs, run_dir, pin_client)
        for ctx in live:
            fo = [r["foreign_cpu_pct"] for w in ctx["res"]["workloads"].values() for r in w["runs"]]
            ctx["res"]["other_load_median_pct"] = round(statistics.median(fo), 1) if fo else None
    except KeyboardInterrupt:
        log("interrupted: stopping the servers this script started")
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, old_int)
    meta["elapsed_s"] = round(time.monotonic() - START, 1)
    _dump(run_dir, meta, results, notes)
    table = write_table(os.path.join(run_dir, "table.md"), meta, results, notes)
    svg = write_svg(os.path.join(run_dir, "latency.svg"), results)
    try:
        print()
        print(table)
    except (BrokenPipeError, OSError):
        pass
    log(f"done in {meta['elapsed_s']} s: {run_dir}/table.md, results.json" + (", latency.svg" if svg else ""))
    return 0 if all(r["status"] == "ok" for r in results) else 1


def retable(run_dir, foreign_limit):
    """Re-summarise the raw runs of an earlier race and render its table and plot with the current code."""
    with open(os.path.join(run_dir, "results.json")) as f:
        data = json.load(f)
    for w in data["meta"]["args"].get("workloads", []):
        if w.startswith("pp64-c") and w not in [x[0] for x in WORKLOADS]:
            WORKLOADS[:] = sorted(WORKLOADS + [x for x in SWEEP if x[0] == w], key=lambda x: (x[3], x[1], x[2]))
    for r in data["peers"]:
        fo = []
        for w in r["workloads"].values():
            summarise(w, foreign_limit)
            fo += [x.get("foreign_cpu_pct", 0) for x in w["runs"]]
        r["other_load_median_pct"] = round(statistics.median(fo), 1) if fo else None
    print(write_table(os.path.join(run_dir, "table.md"), data["meta"], data["peers"], data["notes"]))
    write_svg(os.path.join(run_dir, "latency.svg"), data["peers"])
    return 0


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def _dump(run_dir, meta, results, notes):
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "notes": notes, "peers": results}, f, indent=1, default=str)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _versions(ok):
    v = {}
    for name, argv in (("cc", [os.environ.get("CC", "cc"), "--version"]), ("go", ["go", "version"]),
                       ("socat", ["socat", "-V"]), ("xinetd", [ok.get("xinetd", "xinetd"), "-version"]),
                       ("swift", [shutil.which("swift") or "/opt/swift/usr/bin/swift", "--version"])):
        rc, out, err = run_cmd(argv, 30)
        text = (out + err).strip().splitlines()
        v[name] = next((l for l in text if l.strip() and "version" in l.lower()), text[0] if text else "?")[:120]
    try:
        with open("/usr/include/uv/version.h") as f:
            m = re.findall(r"#define UV_VERSION_(MAJOR|MINOR|PATCH) (\d+)", f.read())
            v["libuv"] = ".".join(x[1] for x in m)
    except OSError:
        pass
    if ok.get("uvloop"):
        v["uvloop"] = ok["uvloop"]
    v["python"] = platform.python_version()
    return v


if __name__ == "__main__":
    sys.exit(main())
