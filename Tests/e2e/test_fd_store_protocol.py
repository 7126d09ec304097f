"""restart.keep_connections against a stand-in for systemd's fd store: what echod puts in, takes out and takes back.

The real thing is proven under a real systemd (test_fd_store.py); these tests pin down the protocol itself, and the
paths a real systemd makes hard to reach on purpose: a crash restart with any number of loops, a state memfd that
is malformed, fds in the store that are not what their names say. The stand-in is a datagram socket that keeps the
fds of FDSTORE=1 messages by FDNAME= and drops them at FDSTOREREMOVE=1, as systemd does, and a launcher that hands
the kept fds to a new echod with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, as systemd does at a restart.
Without D-Bus, echod cannot tell a restart from a stop, so SIGTERM always drains here: the orderly handover is
test_fd_store.py's; here its state is written by hand in the format HandoverState.swift documents.
"""

import array
import fcntl
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import echod_binary, echod_environ, free_port, recv_exactly, wait_for_port


class FakeStore:
    """systemd's notification socket and fd store, as far as echod uses them."""

    def __init__(self, directory: Path):
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.fds: dict[str, int] = {}
        self.messages: list[dict[str, str]] = []

    def pump(self, seconds: float = 0.3) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
            except BlockingIOError:
                time.sleep(0.01)
                continue
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            message = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(message)
            if message.get("FDSTORE") == "1" and len(fds) == 1:
                old = self.fds.pop(message["FDNAME"], None)
                if old is not None:
                    os.close(old)
                self.fds[message["FDNAME"]] = fds[0]
            else:
                for fd in fds:
                    os.close(fd)
                if message.get("FDSTOREREMOVE") == "1":
                    fd = self.fds.pop(message["FDNAME"], None)
                    if fd is not None:
                        os.close(fd)

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.05)
            if predicate():
                return True
        return False

    def connections(self) -> dict[str, int]:
        return {name: fd for name, fd in self.fds.items() if name.startswith("echod-conn-")}

    def put(self, name: str, fd: int) -> None:
        """An entry echod did not make (a test's)."""
        self.fds[name] = fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        self.sock.close()


# argv: the fds to hand over (comma-separated, in order), then echod's command line. Moves them to 3, 4, ... by way
# of copies above that range (a target may be another source's number), closes every other copy, sets LISTEN_PID to
# its own pid and execs echod, which keeps that pid.
LAUNCHER = """
import fcntl, os, sys
sources = [int(f) for f in sys.argv[1].split(",") if f]
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 3 + len(sources)) for f in sources]
for f in sources:
    os.close(f)
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
    os.close(f)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


class Instance:
    """One echod under the stand-in: NOTIFY_SOCKET, and the store's fds passed as systemd passes them."""

    def __init__(
        self,
        store: FakeStore,
        directory: Path,
        port: int | None,
        threads: int = 2,
        keep: str = "true",
        extra=(),
        env=None,
    ):
        """port None: the listeners are the configuration's (in `extra`)."""
        since = len(store.messages)
        self.log_path = directory / f"echod-{time.monotonic_ns()}.log"
        names = list(store.fds)
        fds = [store.fds[n] for n in names]
        env = echod_environ({"NOTIFY_SOCKET": str(store.path), "ECHOD_RESTART_KEEP_CONNECTIONS": keep, **(env or {})})
        if fds:
            env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))

        # As systemd does: the store's fds at 3, 4, ... and LISTEN_PID set to echod's own pid. A small Python
        # launcher moves them there and execs echod in its own place (so the pid is echod's). It gets the fds at
        # the numbers they have here: pass_fds must name open fds only (Popen fails with EBADF on a closed one), and
        # a preexec_fn moving fds onto 3, 4, ... could land on one Popen itself still uses in the child.
        cmd = [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), echod_binary()]
        cmd += ["--listen", f"127.0.0.1:{port}"] if port is not None else []
        cmd += ["--threads", str(threads), *extra]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=fds,
            )
        self.store = store
        assert store.wait_for(lambda: any(m.get("READY") == "1" for m in store.messages[since:]), 10), self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (log := self.log()):
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def store():
    with tempfile.TemporaryDirectory(prefix="echod-fdstore-") as d:
        s = FakeStore(Path(d))
        yield s, Path(d)
        s.close()


@pytest.fixture
def instances(store):
    started = []
    fake, directory = store

    def start(port, **kwargs) -> Instance:
        i = Instance(fake, directory, port, **kwargs)
        started.append(i)
        return i

    yield start
    for i in started:
        i.close()


def connect(port: int, count: int) -> list[socket.socket]:
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for i, c in enumerate(clients):
        c.sendall(b"hello %d\n" % i)
    for i, c in enumerate(clients):
        assert recv_exactly(c, len(b"hello %d\n" % i)) == b"hello %d\n" % i
    return clients


def echoes(client: socket.socket, payload: bytes) -> bool:
    client.sendall(payload)
    return recv_exactly(client, len(payload)) == payload


def test_listener_and_connections_go_into_the_store(store, instances):
    fake, _ = store
    port = free_port()
    instances(port)
    assert fake.wait_for(lambda: any(n.startswith("echod-listen-") for n in fake.fds)), fake.messages
    (listener_name,) = [n for n in fake.fds if n.startswith("echod-listen-")]
    listener = fake.fds[listener_name]
    assert listener_name == f"echod-listen-{os.fstat(listener).st_ino}"
    assert socket.socket(fileno=os.dup(listener)).getsockname() == ("127.0.0.1", port)

    clients = connect(port, 5)
    assert fake.wait_for(lambda: len(fake.connections()) == 5), fake.messages
    mine = {c.getsockname() for c in clients}
    for name, fd in fake.connections().items():
        assert name == f"echod-conn-{os.fstat(fd).st_ino}"
        kept = socket.socket(fileno=os.dup(fd))
        assert kept.getpeername() in mine
        kept.detach()
    stores = [m for m in fake.messages if m.get("FDSTORE") == "1"]
    assert all(m.get("FDPOLL") == "0" for m in stores), stores
    for c in clients:
        c.close()


def test_a_closed_connection_leaves_the_store_and_its_peer_sees_eof(store, instances):
    """The store's copy keeps the socket open: echod must shut it down, or the peer would never see the close."""
    fake, directory = store
    config = directory / "idle.yaml"
    config.write_text("limits:\n  idle_timeout: 1s\n")
    port = free_port()
    instances(port, extra=("--config", str(config)))
    (client,) = connect(port, 1)
    assert fake.wait_for(lambda: len(fake.connections()) == 1)
    (name,) = fake.connections()
    # Idle for over a second: echod closes it, while the store still holds its copy.
    client.settimeout(5)
    started = time.monotonic()
    assert client.recv(16) == b"", "expected EOF from the idle timeout"
    assert time.monotonic() - started < 4
    assert fake.wait_for(lambda: name not in fake.fds), f"{name} not removed: {fake.messages[-5:]}"
    assert {"FDSTOREREMOVE": "1", "FDNAME": name} in fake.messages


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_closed_connection_the_store_still_holds_does_not_keep_the_loop_busy(store, instances):
    """epoll drops a registration only with the last descriptor of a socket: a kept connection closed with close(2)
    alone would stay in the loop's epoll set, ready (shut down) on every turn, while the store holds its copy."""
    fake, _ = store
    port = free_port()
    echod = instances(port, threads=1)
    clients = connect(port, 20)
    assert fake.wait_for(lambda: len(fake.connections()) == 20)
    for c in clients:
        c.close()
    # The store keeps its copies (nothing is pumped) while echod closes its own.
    time.sleep(0.3)
    before = cpu_seconds(echod.proc.pid)
    time.sleep(2.0)
    busy = cpu_seconds(echod.proc.pid) - before
    assert busy < 0.5, f"echod used {busy:.2f} s of CPU in 2 s with nothing to do"
    assert fake.wait_for(lambda: not fake.connections()), list(fake.fds)


def test_a_crash_restart_takes_every_connection_over_on_any_number_of_loops(store, instances):
    fake, _ = store
    port = free_port()
    first = instances(port, threads=1)
    clients = connect(port, 12)
    assert fake.wait_for(lambda: len(fake.connections()) == 12)
    first.kill()

    second = instances(port, threads=3)
    log = second.wait_log("taking over connections from the previous instance")
    assert "connections=12" in log and "loops=3" in log, log
    for i, c in enumerate(clients):
        assert echoes(c, b"again %d\n" % i), i
    # Served as they were, not greeted or logged as new.
    assert "connection opened" not in second.log()
    # New clients come in on the kept listener (no second bind of the port).
    new = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert echoes(new, b"new")
    for c in clients:
        c.close()
    assert fake.wait_for(lambda: len(fake.connections()) == 1), fake.connections()
    new.close()


def handover_state(records) -> bytes:
    """HandoverState.swift's format: magic, version 1, count; then per record inode, flags, bytes in/out, open time,
    peer and proxy (family u8, port u16, high u64, low u64), prefix and pending (u32 length + bytes)."""
    out = b"ECHODHS1" + struct.pack("<II", 1, len(records))
    for r in records:
        out += struct.pack(
            "<QHQQq", r["inode"], r.get("flags", 0), r.get("bytes_in", 0), r.get("bytes_out", 0), r.get("opened_at", 0)
        )
        for _ in range(2):
            out += struct.pack("<BHQQ", 0, 0, 0, 0)
        out += struct.pack("<I", 0)
        out += struct.pack("<I", len(r.get("pending", b""))) + r.get("pending", b"")
    return out


def memfd_with(data: bytes, sealed: bool = True) -> int:
    """A memfd holding `data`, sealed as echod seals its state (a writable one could change under the reader)."""
    fd = os.memfd_create("echod-state", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if sealed:
        fcntl.fcntl(
            fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        )
    return fd


def test_the_state_gives_a_connection_its_pending_echo_and_counters(store, instances):
    fake, _ = store
    port = free_port()
    first = instances(port, threads=1)
    (client,) = connect(port, 1)
    assert fake.wait_for(lambda: len(fake.connections()) == 1)
    first.kill()
    ((name, fd),) = fake.connections().items()
    inode = os.fstat(fd).st_ino
    # As if the old instance had read 7 bytes it had not written back when it handed over (announced: flag 1 << 3).
    fake.put(
        "echod-state",
        memfd_with(
            handover_state(
                [{"inode": inode, "flags": 1 << 3, "bytes_in": 1007, "bytes_out": 1000, "pending": b"PENDING"}]
            )
        ),
    )

    second = instances(port, threads=2)
    log = second.wait_log("taking over connections")
    assert "with_state=1" in log, log
    assert recv_exactly(client, 7) == b"PENDING"
    assert echoes(client, b"then this")
    assert fake.wait_for(lambda: "echod-state" not in fake.fds), "the state was not taken out of the store"
    client.close()
    log = second.wait_log("connection closed")
    assert "bytes_in=1016" in log and "bytes_out=1016" in log, log


def test_a_malformed_state_is_ignored_and_the_connections_still_taken_over(store, instances):
    fake, _ = store
    port = free_port()
    first = instances(port)
    clients = connect(port, 3)
    assert fake.wait_for(lambda: len(fake.connections()) == 3)
    first.kill()
    fake.put("echod-state", memfd_with(b"ECHODHS1" + struct.pack("<II", 1, 1000000) + b"\x00" * 10))
    second = instances(port)
    log = second.wait_log("the handover state is not valid")
    assert "taking over connections" in second.wait_log("taking over connections"), log
    for c in clients:
        assert echoes(c, b"still here")


def test_fds_that_are_not_what_their_names_say_are_closed_and_removed(store, instances):
    fake, _ = store
    port = free_port()
    first = instances(port)
    (client,) = connect(port, 1)
    assert fake.wait_for(lambda: len(fake.connections()) == 1)
    first.kill()
    # A pipe, a UDP socket and a real connection under another connection's name: none may be served.
    r, w = os.pipe()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.create_connection(("127.0.0.1", port), timeout=5)  # accepted by the kernel backlog only
    fake.put("echod-conn-12345", r)
    fake.put("echod-conn-23456", udp.detach())
    ((real_name, real_fd),) = [
        (n, f) for n, f in fake.connections().items() if n not in ("echod-conn-12345", "echod-conn-23456")
    ]
    fake.put("echod-conn-34567", os.dup(real_fd))
    second = instances(port)
    log = second.wait_log("not a connection echod can take over")
    for name in ("echod-conn-12345", "echod-conn-23456", "echod-conn-34567"):
        assert fake.wait_for(lambda name=name: name not in fake.fds), f"{name} still stored\n{log}"
        assert name in second.log()
    assert real_name in fake.fds
    assert echoes(client, b"the real one")
    os.close(w)
    other.close()


def test_with_keeping_off_the_next_instance_serves_what_the_store_held_and_releases_it(store, instances):
    fake, _ = store
    port = free_port()
    first = instances(port)
    clients = connect(port, 4)
    assert fake.wait_for(lambda: len(fake.connections()) == 4)
    first.kill()
    second = instances(port, keep="false")
    second.wait_log("restart.keep_connections is now off")
    assert fake.wait_for(lambda: not fake.fds), f"still stored: {list(fake.fds)}"
    for c in clients:
        assert echoes(c, b"served")
    # The kept listener was reused, not bound again (which would have failed: it is still bound).
    assert echoes(socket.create_connection(("127.0.0.1", port), timeout=5), b"new")


def test_without_systemd_keeping_says_so_once(start_echod, port):
    e = start_echod(["--listen", f"127.0.0.1:{port}"], env={"ECHOD_RESTART_KEEP_CONNECTIONS": "true"})
    wait_for_port(port, proc=e.proc)
    log = e.wait_log("echod started")
    assert log.count("not started by systemd (no NOTIFY_SOCKET)") == 1, log
    assert echoes(socket.create_connection(("127.0.0.1", port), timeout=5), b"plain")
    assert e.stop() == 0


def recv_until(sock: socket.socket, count: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_an_orderly_handover_carries_each_connections_state(store, instances):
    """SIGTERM of a restart (the stop hook's note says so) hands every connection over with its state: bytes a slow
    reader has not taken yet, a PROXY header half sent, the client a header named, a line half prefixed."""
    fake, directory = store
    plain, proxied = free_port(), free_port()
    config = directory / "handover.yaml"
    config.write_text(
        f"listen:\n  - 127.0.0.1:{plain}\n  - address: 127.0.0.1:{proxied}\n    proxy_protocol: v1\n"
        "    proxy_protocol_from: [127.0.0.1/32]\n    tag: prefix\n    tag_text: T\n"
    )
    runtime = directory / "run"
    runtime.mkdir()
    env = {"RUNTIME_DIRECTORY": str(runtime)}
    first = instances(None, threads=1, extra=("--config", str(config)), env=env)

    # A reader that does not read, with a small window: its echo backs up into echod's pending buffer.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.settimeout(5)
    slow.connect(("127.0.0.1", plain))
    stream = random.Random(14).randbytes(2 << 20)
    sender = threading.Thread(target=slow.sendall, args=(stream,))
    sender.start()
    prefixed = socket.create_connection(("127.0.0.1", proxied), timeout=5)
    prefixed.sendall(b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 9000\r\nhello wor")
    assert recv_until(prefixed, 11) == b"T hello wor"
    half = socket.create_connection(("127.0.0.1", proxied), timeout=5)
    half.sendall(b"PROXY TCP4 10.9.9.9 ")
    assert fake.wait_for(lambda: len(fake.connections()) == 3)
    time.sleep(0.5)  # the slow reader's echo backs up into echod's pending buffer

    (runtime / "stop-job").write_text("restart\n")
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=10) == 0, first.log()
    log = first.log()
    assert "restart queued: handing connections over" in log, log
    pending = re.search(r"handed connections over.*pending_bytes=(\d+)", log)
    assert pending and int(pending.group(1)) > 0, f"nothing was pending: the test proves less than it says\n{log}"
    assert "connection closed" not in log, log
    assert fake.wait_for(lambda: "echod-state" in fake.fds), list(fake.fds)

    second = instances(None, threads=2, extra=("--config", str(config)), env=env)
    assert "with_state=3" in second.wait_log("taking over connections"), second.log()
    # Mid-line: the rest of the line comes back without a prefix, the next line with one.
    prefixed.sendall(b"ld\nnext\n")
    assert recv_until(prefixed, 10) == b"ld\nT next\n"
    # The header half sent before the restart is completed after it.
    half.sendall(b"10.0.0.1 6666 9000\r\nhi\n")
    assert recv_until(half, 5) == b"T hi\n"
    # Every byte of the slow reader's stream, in order, though part of it was in the first echod's memory.
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = recv_until(slow, len(stream), timeout=20)
    sender.join(timeout=10)
    assert received == stream, f"{len(received)} of {len(stream)} bytes, first difference at " + str(
        next((i for i, (a, b) in enumerate(zip(received, stream, strict=False)) if a != b), len(received))
    )
    for s in (slow, prefixed, half):
        s.close()
    log = second.wait_log("peer=10.9.9.9:6666")
    assert "peer=10.1.2.3:5555" in second.wait_log("peer=10.1.2.3:5555"), log
