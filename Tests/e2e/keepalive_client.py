"""Many echo connections that verify every byte while echod restarts, upgrades or crashes underneath them.

    client = KeepaliveClient(("127.0.0.1", 7), connections=1000)
    future = container.in_netns(client.run)       # or threading.Thread(target=client.run): one thread, selectors
    client.wait_ready(10)
    mark = client.marks(); ...restart echod...; client.wait_progress(mark, 3, timeout=15)
    report = client.stop()                        # drains every echo, half-closes, waits for the EOFs
    future.result()

Half the connections stream (keep at most `max_outstanding` bytes sent and not yet echoed), half play pingpong with
64-byte messages. Every connection sends its own pseudo-random stream (random.Random(seed).randbytes), so a byte
echoed twice, echoed on the wrong connection or skipped is a mismatch at a known offset. Per connection the client
records bytes sent and echoed, an EOF it did not ask for, an RST (ECONNRESET/EPIPE), a mismatch, and the waits for an
echo: from the moment it had bytes outstanding and nothing came, to the next echoed byte.

Crash mode (`crash_mode=True`): after a kill -9, echod loses what it had read and not yet written for a connection,
and the echo continues from a later point of the stream. The verifier accepts one such skip per connection: at a
mismatch it looks for the received bytes further ahead in what was sent and not yet echoed (at most `SKIP_WINDOW`
bytes ahead), counts the bytes skipped and goes on. A second skip, bytes that are nowhere ahead (a duplicate, say),
or more bytes than were sent is a mismatch. A pingpong connection whose message was lost would wait forever, so in
crash mode it sends another message after `RESEND_AFTER` s of silence.

Everything is bounded: each wait has a deadline, `run()` ends by itself after `max_duration` s, and the test thread
talks to the loop only through a queue of commands that the loop takes between polls.
"""

import contextlib
import errno
import queue
import random
import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

PINGPONG_SIZE = 64
STREAM_CHUNK = 4096
SKIP_WINDOW = 1 << 20
# Bytes that must agree before a place further ahead in the stream is taken as where the echo resumed: with random
# bytes, 16 of them match by chance somewhere in a 1 MiB window with a probability of about 2^-108.
SKIP_MATCH = 16
RESEND_AFTER = 2.0
HISTORY = 4096  # echoed bytes kept per connection, to tell a duplicate from garbage in a mismatch message
GAP_RECORDED = 0.02  # waits at least this long are kept with their start time, for attribution to an event
POLL = 0.02
PUMP_EVERY = 0.05  # how often every connection is offered a chance to send without an event of its own
RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


@dataclass
class Gap:
    start: float  # time.monotonic() when the connection began to wait
    seconds: float
    finished: bool = True  # False: still waiting when the report was made


@dataclass
class Conn:
    index: int
    kind: str  # "stream" or "pingpong"
    rng: random.Random
    sock: socket.socket | None = None
    connected: bool = False
    connect_error: str | None = None
    sent: int = 0
    echoed: int = 0  # bytes verified, skipped ones excluded
    skipped: int = 0
    skips: list = field(default_factory=list)  # (stream offset, bytes skipped, time)
    echo_events: int = 0  # receives that verified at least one byte: the progress a test waits for
    unechoed: bytearray = field(default_factory=bytearray)  # sent, not yet echoed: what the next echo must be
    outbuf: bytearray = field(default_factory=bytearray)  # generated, not yet accepted by send()
    history: bytearray = field(default_factory=bytearray)
    pending: bytearray | None = None  # received after a mismatch, not yet placed in the stream (crash mode)
    waiting_since: float | None = None
    last_sent_at: float = 0.0
    max_gap: float = 0.0
    gaps: list = field(default_factory=list)
    closing: bool = False  # we half-closed: an EOF is expected once everything is echoed
    closed: bool = False
    eof: bool = False
    eof_expected: bool = False
    eof_with_unechoed: int = 0  # bytes still owed when the EOF came
    eof_at: float | None = None
    rst: str | None = None
    mismatch: str | None = None
    interest: int = 0  # the selector events registered for it


class KeepaliveClient:
    def __init__(
        self,
        address: tuple[str, int],
        connections: int = 1000,
        seed: int = 14,
        crash_mode: bool = False,
        max_outstanding: int = 64 * 1024,
        stream_rate: float | None = 64 * 1024,
        pingpong_interval: float = 0.0,
        max_duration: float = 600.0,
        resend_after: float = RESEND_AFTER,
    ):
        """stream_rate: bytes per second per streaming connection (None: as fast as echod echoes).
        pingpong_interval: the least time between the starts of two messages of one pingpong connection.
        resend_after: in crash mode, the silence after which a pingpong connection sends another message."""
        self.resend_after = resend_after
        self.address = address
        self.crash_mode = crash_mode
        self.max_outstanding = max_outstanding
        self.stream_rate = stream_rate
        self.pingpong_interval = pingpong_interval
        self.max_duration = max_duration
        self.conns = [
            Conn(i, "stream" if i % 2 == 0 else "pingpong", random.Random(seed * 1_000_003 + i))
            for i in range(connections)
        ]
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.paused = False
        self.started_at = 0.0
        self.error: BaseException | None = None
        self._commands: queue.Queue = queue.Queue()
        self._sel: selectors.BaseSelector | None = None
        self._stopping = False
        self._next_pump = 0.0

    # -- the loop (one thread) ------------------------------------------------------------------------------------

    def run(self):
        """Connects every connection, then echoes until stop() or abort(), or `max_duration` s have passed."""
        self._sel = selectors.DefaultSelector()
        try:
            self._connect_all(deadline=time.monotonic() + 30)
            self.started_at = time.monotonic()
            self.ready.set()
            end = self.started_at + self.max_duration
            while not self._stopping and time.monotonic() < end:
                self._turn()
        except BaseException as error:
            self.error = error
            raise
        finally:
            for c in self.conns:
                self._close(c)
            self._sel.close()
            self.ready.set()
            self.finished.set()

    def _connect_all(self, deadline: float, batch: int = 200):
        for first in range(0, len(self.conns), batch):
            waiting = {}
            for c in self.conns[first : first + batch]:
                c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.sock.setblocking(False)
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                code = c.sock.connect_ex(self.address)
                if code not in (0, errno.EINPROGRESS):
                    c.connect_error = errno.errorcode.get(code, str(code))
                    self._close(c)
                    continue
                waiting[c.sock.fileno()] = c
                self._sel.register(c.sock, selectors.EVENT_WRITE, c)
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    for c in waiting.values():
                        c.connect_error = "timed out"
                        self._close(c)
                    break
                for key, _ in self._sel.select(min(left, 0.5)):
                    c = key.data
                    if c.sock is None or c.sock.fileno() not in waiting:
                        continue
                    del waiting[c.sock.fileno()]
                    code = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        c.connect_error = errno.errorcode.get(code, str(code))
                        self._close(c)
                        continue
                    c.connected = True
                    c.interest = selectors.EVENT_READ
                    self._sel.modify(c.sock, c.interest, c)

    def _turn(self):
        for key, mask in self._sel.select(POLL):
            c = key.data
            if mask & selectors.EVENT_READ:
                self._read(c)
            if mask & selectors.EVENT_WRITE and not c.closed:
                self._flush(c, time.monotonic())
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            command()
        now = time.monotonic()
        if now >= self._next_pump:  # rate-limited streams, pingpong intervals and resends have no event to wait on
            self._next_pump = now + PUMP_EVERY
            for c in self.conns:
                if not c.closed:
                    self._pump(c, now)

    def _read(self, c: Conn):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            c.rst = errno.errorcode.get(error.errno, str(error))
            self._close(c)
            return
        now = time.monotonic()
        if not data:
            c.eof = True
            c.eof_at = now
            c.eof_with_unechoed = len(c.unechoed) + len(c.pending or b"")
            c.eof_expected = c.closing
            self._close(c)
            return
        self._verify(c, data, now)
        if not c.closed:
            self._pump(c, now)

    def _pump(self, c: Conn, now: float):
        """Generates what the connection may send now, sends what the socket takes, and keeps write interest only
        while something is left."""
        if not self.paused and not c.closing and not c.outbuf and c.pending is None:
            if c.kind == "pingpong":
                if not c.unechoed and now - c.last_sent_at >= self.pingpong_interval:
                    c.outbuf += c.rng.randbytes(PINGPONG_SIZE)
                elif (
                    self.crash_mode
                    and c.unechoed
                    and now - max(c.last_sent_at, c.waiting_since or 0) >= self.resend_after
                    and len(c.unechoed) < self.max_outstanding
                ):
                    c.outbuf += c.rng.randbytes(PINGPONG_SIZE)  # the message may have died with echod
            else:
                room = self.max_outstanding - len(c.unechoed)
                if self.stream_rate is not None:
                    room = min(room, int(self.stream_rate * (now - self.started_at) + STREAM_CHUNK) - c.sent)
                if room >= STREAM_CHUNK // 4:
                    c.outbuf += c.rng.randbytes(min(room, STREAM_CHUNK))
        if c.outbuf:
            self._flush(c, now)
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outbuf else 0)
        if not c.closed and want != c.interest:
            c.interest = want
            self._sel.modify(c.sock, want, c)

    def _flush(self, c: Conn, now: float):
        try:
            n = c.sock.send(c.outbuf)
        except BlockingIOError:
            return
        except OSError as error:
            c.rst = errno.errorcode.get(error.errno, str(error)) if error.errno in RESET_ERRNOS else repr(error)
            self._close(c)
            return
        if n:
            if not c.unechoed:
                c.waiting_since = now
            c.unechoed += c.outbuf[:n]
            del c.outbuf[:n]
            c.sent += n
            c.last_sent_at = now

    # -- verification -----------------------------------------------------------------------------------------------

    def _verify(self, c: Conn, data: bytes, now: float):
        if c.pending is not None:
            c.pending += data
            self._place_after_skip(c, now)
            return
        n = len(data)
        if n <= len(c.unechoed) and c.unechoed.startswith(data):
            self._accept(c, n, now)
            return
        same = _common_prefix(c.unechoed, data)
        if same:
            self._accept(c, same, now)
        rest = data[same:]
        if same == len(c.unechoed):
            self._fail(c, f"{len(rest)} bytes echoed beyond the {c.sent} sent", rest)
        elif self.crash_mode and not c.skips:
            c.pending = bytearray(rest)
            self._place_after_skip(c, now)
        else:
            self._fail(c, "mismatch" + (" after a skip" if c.skips else ""), rest)

    def _place_after_skip(self, c: Conn, now: float):
        """Finds where the bytes received after a mismatch are in the unechoed stream, or waits for enough of them
        to tell, or fails."""
        got = bytes(c.pending)
        window = bytes(c.unechoed[:SKIP_WINDOW])
        probe = got[:SKIP_MATCH]
        at = window.find(probe, 1)  # at 0 it would have matched
        if at < 0:
            if len(got) > len(window):
                self._fail(c, f"{len(got)} bytes received after a mismatch, {len(window)} were outstanding", got)
            else:
                self._fail(c, f"received bytes are nowhere in the next {len(window)} unechoed bytes", got)
            return
        if len(probe) < SKIP_MATCH:
            # Too few bytes to place them for sure, unless they are the very end of what was sent: then nothing more
            # can come to tell (the sender waits while a mismatch is unresolved), and the end is the only place that
            # leaves no byte unechoed after them. Anywhere else, the rest of the stream is still to come.
            if not (window.endswith(probe) and len(window) > len(probe)):
                return
            at = len(window) - len(probe)
        elif window.find(probe, at + 1) >= 0:
            self._fail(c, "received bytes match the unechoed stream at two places", got)
            return
        c.pending = None
        c.skips.append((c.echoed + c.skipped, at, now))
        c.skipped += at
        del c.unechoed[:at]
        self._verify(c, got, now)

    def _accept(self, c: Conn, n: int, now: float):
        c.history += c.unechoed[max(0, n - HISTORY) : n]
        if len(c.history) > HISTORY:
            del c.history[: len(c.history) - HISTORY]
        del c.unechoed[:n]
        c.echoed += n
        c.echo_events += 1
        if c.waiting_since is not None:
            wait = now - c.waiting_since
            c.max_gap = max(c.max_gap, wait)
            if wait >= GAP_RECORDED:
                c.gaps.append(Gap(c.waiting_since, wait))
        c.waiting_since = now if c.unechoed else None

    def _fail(self, c: Conn, what: str, got: bytes):
        offset = c.echoed + c.skipped
        where = ""
        if got and (seen := bytes(c.history).rfind(got[:SKIP_MATCH])) >= 0:
            where = f"; they were echoed before ({len(c.history) - seen} bytes back: a duplicate)"
        c.mismatch = (
            f"{c.kind} connection {c.index} at stream offset {offset}: {what}; expected "
            f"{bytes(c.unechoed[:16]).hex()}, got {bytes(got[:16]).hex()}{where}"
        )
        self._close(c)

    def _close(self, c: Conn):
        if c.sock is None or c.closed:
            return
        c.closed = True
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(c.sock)
        c.sock.close()

    # -- control, from the test's thread --------------------------------------------------------------------------

    def _call(self, fn, timeout: float = 10.0):
        """Runs fn on the loop's thread between two polls and returns its result."""
        done = threading.Event()
        box = {}

        def command():
            try:
                box["value"] = fn()
            except BaseException as error:
                box["error"] = error
            done.set()

        self._commands.put(command)
        if not done.wait(timeout):
            state = "ended" if self.finished.is_set() else "running"
            raise TimeoutError(f"the client's loop ({state}) did not answer within {timeout}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def wait_ready(self, timeout: float = 30.0):
        if not self.ready.wait(timeout):
            raise TimeoutError(f"{len(self.conns)} connections not made within {timeout}s")
        if self.error is not None:
            raise self.error
        failed = [(c.index, c.connect_error) for c in self.conns if not c.connected]
        if failed:
            raise AssertionError(f"{len(failed)} of {len(self.conns)} connections failed: {failed[:10]}")

    def marks(self) -> list[int]:
        """Each connection's progress so far, for wait_progress."""
        return [c.echo_events for c in self.conns]

    def wait_progress(self, marks: list[int], echoes: int, timeout: float) -> list[int]:
        """Waits until every connection still open has verified `echoes` more receives than at `marks`; returns the
        indexes of the open connections that did not (empty: all did)."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [c.index for c in self.conns if not c.closed and c.echo_events < marks[c.index] + echoes]
            if not behind or time.monotonic() > deadline or self.finished.is_set():
                return behind
            time.sleep(0.02)

    def pause(self):
        """Sends nothing new (bytes already outstanding are still echoed)."""
        self._call(lambda: setattr(self, "paused", True))

    def resume(self):
        def go():
            self.paused = False
            now = time.monotonic()
            for c in self.conns:  # a pause is not a wait for echod: gaps start again from now
                if c.waiting_since is not None:
                    c.waiting_since = now

        self._call(go)

    def failures(self) -> int:
        """Connections that saw an EOF they did not ask for, an RST or a mismatch so far."""
        return sum(c.rst is not None or c.mismatch is not None or (c.eof and not c.eof_expected) for c in self.conns)

    def wait_quiescent(self, timeout: float) -> list[int]:
        """Waits until no open connection has a byte outstanding; returns those that still have (empty: none)."""
        deadline = time.monotonic() + timeout
        while True:
            owing = [c.index for c in self.conns if not c.closed and (c.unechoed or c.pending)]
            if not owing or time.monotonic() > deadline or self.finished.is_set():
                return owing
            time.sleep(0.02)

    def close_connections(self, indexes, timeout: float = 10.0) -> list[int]:
        """Half-closes the given connections (nothing more is sent after what is outstanding), then waits for each to
        see the server's EOF; returns those that did not (empty: all did)."""
        indexes = list(indexes)

        def half_close():
            for i in indexes:
                c = self.conns[i]
                if c.closed:
                    continue
                c.closing = True
                c.outbuf.clear()  # never sent: not part of the stream
                c.interest = selectors.EVENT_READ
                self._sel.modify(c.sock, c.interest, c)
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError as error:
                    c.rst = errno.errorcode.get(error.errno, str(error))
                    self._close(c)

        self._call(half_close)
        deadline = time.monotonic() + timeout
        while True:
            waiting = [i for i in indexes if not self.conns[i].closed]
            if not waiting or time.monotonic() > deadline or self.finished.is_set():
                return waiting
            time.sleep(0.02)

    def stop(self, timeout: float = 20.0) -> "Report":
        """Stops sending, waits for every outstanding echo, takes the report (connections still open then), then
        half-closes every connection, waits for the server's EOFs (recorded in the report), and ends the loop."""
        if self.finished.is_set():
            report = Report.take(self)
        else:
            self.pause()
            self.wait_quiescent(timeout / 2)
            report = self._call(lambda: Report.take(self))
        if not self.finished.is_set():
            report.not_closed = self.close_connections(
                [c.index for c in self.conns if not c.closed], timeout=timeout / 2
            )
            self._call(lambda: setattr(self, "_stopping", True))
        self.finished.wait(timeout)
        report.closes = [(c.index, c.eof, c.eof_expected, c.eof_with_unechoed, c.rst) for c in self.conns]
        return report

    def abort(self):
        """Ends the loop at once (a test that failed); run() closes every socket."""
        self._stopping = True
        self.finished.wait(10)


@dataclass
class Report:
    connections: int
    open: int
    sent: int
    echoed: int
    skipped: int
    eofs: list  # (index, eof_with_unechoed): EOFs the client did not ask for
    rsts: list  # (index, errno name)
    mismatches: list  # messages
    skips: list  # (index, kind, stream offset, bytes skipped, time)
    owing: list  # (index, bytes sent and not echoed) of connections still open
    max_gaps: list  # per connection (open or not), seconds
    gaps: dict  # index -> list[Gap]
    not_closed: list = field(default_factory=list)  # open at stop() and no EOF after the half-close
    closes: list = field(default_factory=list)  # (index, eof seen, eof asked for, bytes owed at the EOF, rst)

    @classmethod
    def take(cls, client: KeepaliveClient) -> "Report":
        now = time.monotonic()
        conns = client.conns
        gaps = {}
        for c in conns:
            gaps[c.index] = list(c.gaps)
            if c.waiting_since is not None and not c.closed:
                gaps[c.index].append(Gap(c.waiting_since, now - c.waiting_since, finished=False))
        return cls(
            connections=len(conns),
            open=sum(not c.closed for c in conns),
            sent=sum(c.sent for c in conns),
            echoed=sum(c.echoed for c in conns),
            skipped=sum(c.skipped for c in conns),
            eofs=[(c.index, c.eof_with_unechoed) for c in conns if c.eof and not c.eof_expected],
            rsts=[(c.index, c.rst) for c in conns if c.rst is not None],
            mismatches=[c.mismatch for c in conns if c.mismatch is not None],
            skips=[(c.index, c.kind, off, n, t) for c in conns for off, n, t in c.skips],
            owing=[(c.index, len(c.unechoed)) for c in conns if not c.closed and c.unechoed],
            max_gaps=[max([c.max_gap] + [g.seconds for g in gaps[c.index]]) for c in conns],
            gaps=gaps,
        )

    def problems(self) -> list[str]:
        """Every way in which this run broke the promise "each connection open, each byte echoed exactly once":
        EOF, RST, mismatch, a byte still owed; skips count only outside crash mode (the caller judges them)."""
        out = []
        if self.eofs:
            out.append(f"{len(self.eofs)} connections saw an EOF they did not ask for: {self.eofs[:10]}")
        if self.rsts:
            out.append(f"{len(self.rsts)} connections were reset: {self.rsts[:10]}")
        if self.mismatches:
            out.append(f"{len(self.mismatches)} mismatches: " + " | ".join(self.mismatches[:5]))
        if self.owing:
            out.append(f"{len(self.owing)} open connections still owed bytes at the end: {self.owing[:10]}")
        return out

    def close_problems(self) -> list[str]:
        """The final half-close: every connection open at the end must have seen a clean EOF after all its echo."""
        bad = [c for c in self.closes if c[4] is not None or (c[2] and c[3])]
        out = []
        if bad:
            out.append(f"{len(bad)} connections ended badly at the close (index, eof, asked, owed, rst): {bad[:10]}")
        if self.not_closed:
            out.append(f"{len(self.not_closed)} connections saw no EOF after the half-close: {self.not_closed[:10]}")
        return out

    def summary(self) -> str:
        return (
            f"{self.open}/{self.connections} open, {self.sent} bytes sent, {self.echoed} echoed, "
            f"{self.skipped} skipped on {len(self.skips)} connections, {len(self.eofs)} EOF, {len(self.rsts)} RST, "
            f"{len(self.mismatches)} mismatches"
        )


def gap_stats(seconds: list[float]) -> dict:
    """p50, p99 and max of a list of waits, in milliseconds."""
    if not seconds:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "n": 0}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


def _common_prefix(a: bytearray, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n  # the longest prefix that agrees, by halving (slices compare in C)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
