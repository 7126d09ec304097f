"""The race's workloads, the correctness checks every server passes first, and the order of the table."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    mode: str  # pingpong | stream | connect (echoclient --mode)
    connections: int
    size: int
    label: str
    udp: bool = False  # connected UDP sockets, one datagram in flight each (echoclient --udp)


MAIN = (
    Workload("pp64-c1", "pingpong", 1, 64, "pingpong 64 B, 1 conn"),
    Workload("pp64-c50", "pingpong", 50, 64, "pingpong 64 B, 50 conns"),
    # Many connections, where completion-based I/O (c-uring) is expected to pull ahead of epoll.
    Workload("pp64-c300", "pingpong", 300, 64, "pingpong 64 B, 300 conns"),
    Workload("pp64-c1000", "pingpong", 1000, 64, "pingpong 64 B, 1,000 conns"),
    Workload("pp1k-c50", "pingpong", 50, 1024, "pingpong 1 KiB, 50 conns"),
    Workload("pp16k-c10", "pingpong", 10, 16384, "pingpong 16 KiB, 10 conns"),
    Workload("st64k-c10", "stream", 10, 65536, "stream 64 KiB, 10 conns"),
    Workload("conn-c10", "connect", 10, 64, "connect+64 B echo+close, 10 connectors"),
)
# The sweep: the middle points of the latency plot (pingpong 64 B at 1, 10, 50, 200 connections).
SWEEP = (
    Workload("pp64-c10", "pingpong", 10, 64, "pingpong 64 B, 10 conns"),
    Workload("pp64-c200", "pingpong", 200, 64, "pingpong 64 B, 200 conns"),
)
SWEEP_NAMES = frozenset(w.name for w in SWEEP)
# UDP echo, raced only by the UDP peers (their reference is the C recvmmsg/sendmmsg server): request/response
# datagrams at 1 and 50 sockets, and 1,400 B (a datagram that fits a 1,500 B Ethernet MTU) at 10 sockets.
UDP = (
    Workload("udp64-c1", "pingpong", 1, 64, "UDP pingpong 64 B, 1 socket", udp=True),
    Workload("udp64-c50", "pingpong", 50, 64, "UDP pingpong 64 B, 50 sockets", udp=True),
    Workload("udp1400-c10", "pingpong", 10, 1400, "UDP pingpong 1,400 B, 10 sockets", udp=True),
)
UDP_NAMES = frozenset(w.name for w in UDP)
# Every workload in table order: the sweep points sit among the pingpong 64 B ones; UDP last.
ALL = (MAIN[0], SWEEP[0], MAIN[1], SWEEP[1], *MAIN[2:], *UDP)
BY_NAME = {w.name: w for w in ALL}
IDLE = "idle-10k"

# The workloads of the throughput targets, where echod-1-reads runs too (its ratio to echod-1).
READS = ("pp64-c1", "pp64-c50", "pp1k-c50", "pp16k-c10", "st64k-c10")


def selected(sweep: bool) -> tuple[Workload, ...]:
    """The workloads a race runs, in table order: all of them, or without the sweep points."""
    return ALL if sweep else tuple(w for w in ALL if w.name not in SWEEP_NAMES)


def in_table_order(names) -> list[Workload]:
    """The known workloads among `names`, in table order."""
    present = set(names)
    return [w for w in ALL if w.name in present]


@dataclass(frozen=True)
class Check:
    """A correctness check run before racing (no timing): echoclient with every byte verified."""

    mode: str
    connections: int
    size: int
    seconds: float
    extra: tuple[str, ...] = ()


# The checks of a UDP peer: single bytes, 1,400 B datagrams on several sockets, and the largest IPv4 datagram.
UDP_CHECKS = (
    Check("pingpong", 1, 1, 0.3, ("--udp",)),
    Check("pingpong", 4, 1400, 0.3, ("--udp",)),
    Check("pingpong", 2, 65507, 0.3, ("--udp",)),
)

CHECKS = (
    Check("pingpong", 1, 1, 0.3),
    Check("pingpong", 3, 100000, 0.5),
    Check("stream", 2, 1 << 20, 0.5, ("--window", str(4 << 20))),
    Check("stream", 4, 7, 0.3),
    Check("connect", 4, 64, 0.3),
)
