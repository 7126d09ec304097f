"""The peers: how each server (and the client) is built or located, and how each is started."""

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from . import workloads
from .log import Log
from .procs import free_port, run_cmd, signal_and_wait, wait_listening

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
BIN = os.path.join(RESULTS, "bin")
REFERENCE = "c-epoll"
# The reference of the UDP workloads (workloads.UDP), which only the UDP peers race.
UDP_REFERENCE = "c-udp"
UDP_PEERS = ("c-udp", "echod-udp", "socat-udp")
# Fork-per-connection peers (socat, xinetd) race workloads of at most this many connections: 1,000 connections would
# be 1,000 to 2,000 processes (the idle-memory phase gives them 500 for the same reason).
FORK_MAX_CONNECTIONS = 500

ORDER = (
    "c-epoll",
    "c-uring",
    "echod-1",
    "echod-uring-1",
    "echod-1-reads",
    "echod",
    "nio-1",
    "nio",
    "libuv",
    "go",
    "uvloop-protocol",
    "uvloop-streams",
    "asyncio-protocol",
    "asyncio-streams",
    "socat",
    "xinetd",
    *UDP_PEERS,
)


@dataclass
class Tools:
    """What the build found or made: a path per piece, None when missing (`notes` says why)."""

    client: str
    c_epoll: str | None = None
    c_uring: str | None = None  # None also where io_uring is unavailable (notes["c-uring"] says why)
    c_udp: str | None = None
    libuv: str | None = None
    go: str | None = None
    nio: str | None = None
    uvloop: str | None = None  # its version
    socat: str | None = None
    xinetd: str | None = None
    taskset: str | None = None
    perf: str | None = None
    echod: str | None = None
    echod_bench: bool = False  # the echod binary has `echod bench`
    echod_uring: bool = False  # `echod --io-backend io_uring` starts here (else notes["echod-uring-1"] says why)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerSpec:
    name: str
    argv: Callable[[int], list[str]]  # the command line for a port
    threads: int
    desc: str
    tree: bool = False  # fork per connection: CPU and memory are the process tree's
    env: dict[str, str] | None = None
    workloads: tuple[str, ...] | None = None  # None: every workload
    idle: bool = True  # measured in the idle-memory phase
    logfile: str | None = None  # a log file the race empties after each run and counts (echod-1-reads)
    udp: bool = False  # a UDP echo server: it races the UDP workloads only, and only UDP peers race those
    max_connections: int | None = None  # workloads with more connections are not raced (fork per connection)

    def runs(self, workload: str) -> bool:
        if (workload in workloads.UDP_NAMES) != self.udp:
            return False
        w = workloads.BY_NAME.get(workload)
        if self.max_connections is not None and w is not None and w.connections > self.max_connections:
            return False
        return self.workloads is None or workload in self.workloads


def reference(workload: workloads.Workload) -> str:
    """The peer a workload's ratios are taken to."""
    return UDP_REFERENCE if workload.udp else REFERENCE


@dataclass
class Builder:
    """Runs build commands into build.log; a failure becomes a note for the table."""

    logf: TextIO
    notes: dict[str, str]

    def sh(self, name, argv, env=None, cwd=None, timeout=600) -> bool:
        t = time.monotonic()
        rc, out, err = run_cmd(argv, timeout, env=env, cwd=cwd)
        self.logf.write(f"$ {' '.join(argv)}\n{out}{err}\n(rc={rc}, {time.monotonic() - t:.1f}s)\n\n")
        self.logf.flush()
        if rc != 0:
            self.notes[name] = f"build failed (rc={rc}): {(err or out).strip().splitlines()[-1:] or ''}"
        return rc == 0

    def cc(self, name, source, output, *libs) -> str | None:
        cc = os.environ.get("CC", "cc")
        path = os.path.join(BIN, output)
        ok = self.sh(name, [cc, "-O2", "-Wall", "-o", path, os.path.join(BENCH, *source), *libs])
        return path if ok else None


def build(peers: list[str], echod: str | None, logf: TextIO, log: Log) -> Tools:
    """Build or locate every piece the wanted peers need; exits when the client itself cannot be built."""
    os.makedirs(BIN, exist_ok=True)
    b = Builder(logf, {})
    client = b.cc("client", ("client", "echoclient.c"), "echoclient", "-pthread", "-lm")
    if client is None:
        sys.exit("cannot build the client: see build.log")
    t = Tools(client=client, notes=b.notes)
    t.c_epoll = b.cc("c-epoll", ("peers", "c-epoll", "echo.c"), "c-epoll-echo")
    if "c-uring" in peers:
        t.c_uring = _build_uring(b, log)
    t.c_udp = b.cc("c-udp", ("peers", "c-udp", "echo.c"), "c-udp-echo", "-pthread")
    t.libuv = b.cc("libuv", ("peers", "libuv", "echo.c"), "libuv-echo", "-luv")
    t.go = _build_go(b)
    if any(p.startswith("nio") for p in peers):
        t.nio = _build_nio(b, log)
    if any("uvloop" in p for p in peers):
        t.uvloop = _find_uvloop(b, log)
    for tool in ("socat", "xinetd", "taskset", "perf"):
        path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
        setattr(t, tool, path)
        if path is None:
            b.notes[tool] = f"{tool} not installed"
    _find_echod(t, echod)
    if "echod-uring-1" in peers and t.echod:
        t.echod_uring = _probe_echod_uring(t.echod, b.notes, log)
    return t


def _build_uring(b: Builder, log: Log) -> str | None:
    """The io_uring reference, built against liburing (Debian liburing-dev), if io_uring can run it here."""
    path = b.cc("c-uring", ("peers", "c-uring", "echo.c"), "c-uring-echo", "-luring")
    if path is None:
        b.notes["c-uring"] += " (liburing-dev missing? `make bench-deps` installs it)"
        return None
    why = uring_unavailable(path)
    if why:
        b.notes["c-uring"] = f"io_uring unavailable on this machine, not raced: {why}"
        log(f"SKIPPING c-uring: {b.notes['c-uring']}")
        return None
    return path


def uring_unavailable(path: str) -> str | None:
    """None when the io_uring reference can run here (its `--probe` sets up a ring with a buffer ring and tries a
    multishot receive), else why not: kernel.io_uring_disabled, a seccomp filter, an old kernel."""
    rc, out, err = run_cmd([path, "--probe"], 20)
    if rc == 0:
        return None
    lines = (err or out).strip().splitlines()
    return lines[-1] if lines else f"--probe exited with {rc}"


# echod's io_uring backend, as echod-uring-1 runs it (plus the port).
ECHOD_URING_ARGS = ("--threads", "1", "--log-level", "warning", "--io-backend", "io_uring")


def _probe_echod_uring(echod: str, notes: dict[str, str], log: Log) -> bool:
    """Whether echod-uring-1 can race; when not, the reason goes to the notes and the log, as c-uring's does."""
    why = echod_uring_unavailable(echod)
    if why is None:
        return True
    notes["echod-uring-1"] = f"`echod --io-backend io_uring` did not start, not raced: {why}"
    log(f"SKIPPING echod-uring-1: {notes['echod-uring-1']}")
    return False


def echod_uring_unavailable(echod: str, timeout: float = 10.0) -> str | None:
    """None when `echod --io-backend io_uring` starts and listens here, else why not: the last line naming an error
    that it printed before exiting, else its last line (an echod without the option rejects it as unknown, then
    points at --help; with it, echod refuses to start where the kernel does not allow io_uring), or that it did not
    listen within `timeout` s. The probe is stopped by its PID."""
    port = free_port()
    argv = [echod, "--listen", f"127.0.0.1:{port}", *ECHOD_URING_ARGS]
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as e:
            return str(e)
        try:
            up = wait_listening(port, proc, timeout)
            exited = proc.poll()
        finally:
            _stop_probe(proc)
        if up:
            return None
        out.seek(0)
        lines = out.read().decode(errors="replace").strip().splitlines()
    if exited is None:
        return f"not listening after {timeout:g} s"
    errors = [line.strip() for line in lines if "error" in line.lower()]
    return (errors or [line.strip() for line in lines] or [f"exited with {exited}"])[-1]


def _stop_probe(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        signal_and_wait(proc, signal.SIGTERM)


def _build_go(b: Builder) -> str | None:
    go = shutil.which("go")
    if not go:
        b.notes["go"] = "go not installed"
        return None
    # go.mod with no requirements; GOFLAGS (e.g. -mod=mod) unset, GOPROXY=off: never downloads.
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    env.update(GOCACHE=os.path.join(RESULTS, "gocache"), GOPROXY="off", GOTOOLCHAIN="local")
    path = os.path.join(BIN, "go-echo")
    ok = b.sh("go", [go, "build", "-o", path, "."], env=env, cwd=os.path.join(BENCH, "peers", "go"))
    return path if ok else None


def swift_path() -> str | None:
    return shutil.which("swift") or ("/opt/swift/usr/bin/swift" if os.path.exists("/opt/swift/usr/bin/swift") else None)


def _build_nio(b: Builder, log: Log) -> str | None:
    swift = swift_path()
    if not swift:
        b.notes["nio"] = "swift not found"
        return None
    log("building SwiftNIO echo (first build takes ~70 s, then cached in bench/results/.build-nio)")
    scratch = os.path.join(RESULTS, ".build-nio")
    package = os.path.join(BENCH, "peers", "nio-echo")
    argv = [swift, "build", "-c", "release", "--package-path", package, "--scratch-path", scratch]
    return os.path.join(scratch, "release", "nio-echo") if b.sh("nio", argv, timeout=900) else None


def _find_uvloop(b: Builder, log: Log) -> str | None:
    rc, _, _ = run_cmd([sys.executable, "-c", "import uvloop"], 60)
    if rc != 0:
        log("uvloop missing: pip install uvloop")
        b.sh("uvloop", [sys.executable, "-m", "pip", "install", "--quiet", "uvloop"], timeout=300)
    rc, out, _ = run_cmd([sys.executable, "-c", "import uvloop; print(uvloop.__version__)"], 60)
    if rc == 0:
        return out.strip()
    b.notes["uvloop"] = "uvloop not importable (pip install uvloop failed?)"
    return None


def _find_echod(t: Tools, echod: str | None) -> None:
    """--echod, else $ECHOD_BIN, else the release builds in the checkout."""
    echod = echod or os.environ.get("ECHOD_BIN")
    if not echod:
        candidates = [os.path.join(ROOT, d, "release", "echod") for d in (".build", ".build-bench")]
        echod = next((c for c in candidates if os.access(c, os.X_OK)), None)
    if not (echod and os.access(echod, os.X_OK)):
        why = f"{echod} is not executable" if echod else "no .build/release/echod"
        t.notes["echod"] = f"echod binary not found (set ECHOD_BIN or --echod; {why}): echod pending"
        return
    t.echod = os.path.abspath(echod)
    rc, out, err = run_cmd([echod, "bench", "--help"], 10)
    t.echod_bench = rc == 0 and "connections" in (out + err)
    if "/debug/" in echod:
        t.notes["echod"] = f"{echod} is a DEBUG build: figures are not representative"


def specs(t: Tools, run_dir: str) -> dict[str, PeerSpec]:
    """Every peer whose pieces exist, by name."""
    found = [*_native(t), *_echod(t, run_dir), *_python(t), *_forking(t, run_dir), *_udp(t, run_dir)]
    return {s.name: s for s in found}


def _native(t: Tools) -> list[PeerSpec]:
    cores = os.cpu_count() or 1
    out = []
    if t.c_epoll:
        c = t.c_epoll
        desc = "C, epoll LT, 1 thread, 256 KiB static buffer (reference)"
        out.append(PeerSpec("c-epoll", lambda p: [c, str(p)], 1, desc))
    if t.c_uring:
        r = t.c_uring
        desc = "C, io_uring (liburing): multishot accept and receive, provided buffers, 1 thread"
        out.append(PeerSpec("c-uring", lambda p: [r, str(p)], 1, desc))
    if t.nio:
        n = t.nio
        out.append(PeerSpec("nio-1", lambda p: [n, str(p), "1"], 1, "SwiftNIO 2.101 echo, 1 event loop"))
        out.append(PeerSpec("nio", lambda p: [n, str(p)], cores, "SwiftNIO 2.101 echo, System.coreCount loops"))
    if t.libuv:
        u = t.libuv
        out.append(PeerSpec("libuv", lambda p: [u, str(p)], 1, "libuv uv_tcp echo, 1 thread"))
    if t.go:
        g = t.go
        out.append(PeerSpec("go", lambda p: [g, str(p)], cores, "Go net, goroutine per connection"))
    return out


def _echod(t: Tools, run_dir: str) -> list[PeerSpec]:
    if not t.echod:
        return []
    e = t.echod

    def argv(*more):
        return lambda p: [e, "--listen", f"127.0.0.1:{p}", *more]

    # The log.reads target (>= 0.8x the throughput without): every read logged, asynchronously, to a real file,
    # which the race empties after each run (echod appends with O_APPEND, so it writes on at 0).
    reads_log = os.path.join(run_dir, "logs", "echod-1-reads.file.log")
    reads_env = dict(os.environ, ECHOD_LOG_READS="true", ECHOD_LOG_FILE=reads_log, ECHOD_LOG_FORMAT="text")
    return [
        PeerSpec("echod-1", argv("--threads", "1", "--log-level", "warning"), 1, "echod --threads 1"),
        *(
            [PeerSpec("echod-uring-1", argv(*ECHOD_URING_ARGS), 1, "echod --threads 1 --io-backend io_uring")]
            if t.echod_uring
            else []
        ),
        PeerSpec(
            "echod-1-reads",
            argv("--threads", "1", "--log-level", "info"),
            1,
            "echod --threads 1, `log.reads: true`: every read logged to a file (text)",
            env=reads_env,
            workloads=workloads.READS,
            idle=False,
            logfile=reads_log,
        ),
        PeerSpec("echod", argv("--log-level", "warning"), os.cpu_count() or 1, "echod, default threads"),
    ]


def _python(t: Tools) -> list[PeerSpec]:
    py, pydir, version = sys.executable, os.path.join(BENCH, "peers", "python"), platform.python_version()

    def argv(script, *more):
        return lambda p: [py, os.path.join(pydir, script), str(p), *more]

    out = [
        PeerSpec("asyncio-streams", argv("asyncio_streams.py"), 1, f"Python {version} asyncio streams"),
        PeerSpec("asyncio-protocol", argv("asyncio_protocol.py"), 1, f"Python {version} asyncio Protocol"),
    ]
    if t.uvloop:
        out += [
            PeerSpec(
                "uvloop-streams", argv("asyncio_streams.py", "--uvloop"), 1, f"asyncio streams on uvloop {t.uvloop}"
            ),
            PeerSpec(
                "uvloop-protocol", argv("asyncio_protocol.py", "--uvloop"), 1, f"asyncio Protocol on uvloop {t.uvloop}"
            ),
        ]
    return out


def _forking(t: Tools, run_dir: str) -> list[PeerSpec]:
    out = []
    if t.socat:
        s = t.socat
        out.append(
            PeerSpec(
                "socat",
                lambda p: [s, f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=4096", "EXEC:cat"],
                1,
                "socat fork + EXEC:cat (2 processes per connection)",
                tree=True,
                max_connections=FORK_MAX_CONNECTIONS,
            )
        )
    if t.xinetd:
        x = t.xinetd

        def xinetd_argv(p):
            conf = os.path.join(run_dir, f"xinetd-{p}.conf")
            with open(conf, "w") as f:
                f.write(XINETD_CONF.format(port=p))
            return [x, "-dontfork", "-filelog", os.path.join(run_dir, "logs", f"xinetd-{p}.log"), "-f", conf]

        desc = "xinetd INTERNAL echo-stream (fork per connection)"
        out.append(PeerSpec("xinetd", xinetd_argv, 1, desc, tree=True, max_connections=FORK_MAX_CONNECTIONS))
    return out


def _udp(t: Tools, run_dir: str) -> list[PeerSpec]:
    """The UDP peers: the C reference, echod with its guards opened up, socat."""
    out = []
    if t.c_udp:
        c = t.c_udp
        desc = "C, blocking recvmmsg/sendmmsg, batches of 64, 1 thread (UDP reference)"
        out.append(PeerSpec("c-udp", lambda p: [c, str(p)], 1, desc, idle=False, udp=True))
    if t.echod:
        e = t.echod
        conf = os.path.join(run_dir, "echod-udp.yaml")

        def echod_argv(p):
            with open(conf, "w") as f:
                f.write(ECHOD_UDP_CONF)
            # echod also serves TCP (its listen list cannot be empty): on a free port of its own, never raced.
            tcp = f"127.0.0.1:{free_port()}"
            return [e, "--config", conf, "--listen", tcp, "--udp", f"127.0.0.1:{p}", "--threads", "1"]

        desc = "echod --threads 1 --udp, guards opened up (rates 100000000/s, bandwidth 100GiB/s)"
        out.append(PeerSpec("echod-udp", echod_argv, 1, desc, idle=False, udp=True))
    if t.socat:
        s = t.socat
        out.append(
            PeerSpec(
                "socat-udp",
                lambda p: [s, "-T", "2", "-b65536", f"UDP4-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork", "PIPE"],
                1,
                "socat UDP4-LISTEN fork + PIPE (a child per client socket, exits after 2 s of quiet)",
                tree=True,
                idle=False,
                udp=True,
            )
        )
    return out


# echod as a UDP benchmark peer: every rate and bandwidth guard raised to its maximum, so that the race measures the
# echo path and not the limits (the guards' defaults are for the internet: 1000/s per source, 100000/s in all).
ECHOD_UDP_CONF = """\
log:
  level: warning
udp:
  source_rate: 100000000
  source_burst: 100000000
  global_rate: 100000000
  global_bandwidth: 100GiB
"""


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


def versions(t: Tools) -> dict[str, str]:
    """The version line of each tool and runtime, for the results."""
    v = {}
    for name, argv in (
        ("cc", [os.environ.get("CC", "cc"), "--version"]),
        ("go", ["go", "version"]),
        ("socat", ["socat", "-V"]),
        ("xinetd", [t.xinetd or "xinetd", "-version"]),
        ("swift", [swift_path() or "/opt/swift/usr/bin/swift", "--version"]),
    ):
        _, out, err = run_cmd(argv, 30)
        text = (out + err).strip().splitlines()
        v[name] = next((line for line in text if line.strip() and "version" in line.lower()), text[0] if text else "?")
        v[name] = v[name][:120]
    try:
        with open("/usr/include/uv/version.h") as f:
            m = re.findall(r"#define UV_VERSION_(MAJOR|MINOR|PATCH) (\d+)", f.read())
            v["libuv"] = ".".join(x[1] for x in m)
    except OSError:
        pass
    if t.uvloop:
        v["uvloop"] = t.uvloop
    v["python"] = platform.python_version()
    return v
