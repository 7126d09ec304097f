"""UDP echo of the real binary with real clients (Python sockets, socat, nc -u): echo on IPv4 and IPv6, replies from
the address the request was sent to, every guard (reserved and privileged source ports, the per-source rate limit,
a chargen-like peer, many sources), reload, socket activation. Runs as root (source ports below 1024 are bound)."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from conftest import echod_binary, echod_environ, free_port, socket_activate_setenv, vm_rss_kib

LISTED_PORTS = (0, 7, 13, 17, 19, 37, 53, 123, 161, 1900, 11211, 69, 111, 137, 389, 520, 1434, 3702, 5353, 5683, 10001)


def free_udp_port(family=socket.AF_INET) -> int:
    return free_port(family, socket.SOCK_DGRAM)


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def start_udp(start_echod, udp_port, extra="", threads=2, udp=None):
    """echod with UDP echo on 0.0.0.0:udp_port (or the given list), TCP on a free port, and the admin endpoint."""
    admin = free_port()
    udp = udp or [f"0.0.0.0:{udp_port}"]
    config = (
        f"listen: ['127.0.0.1:{free_port()}']\nthreads: {threads}\nadmin:\n  listen: '127.0.0.1:{admin}'\n"
        f"udp:\n  listen: [{', '.join(repr(u) for u in udp)}]\n{extra}"
    )
    e = start_echod(config=config, ready=True)
    e.admin = admin
    return e


def metrics(admin_port) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(echod_udp_\w+)(\{reason=\"(\w+)\"\})? (\S+)$", line)
        if m:
            values[m.group(1) + (f":{m.group(3)}" if m.group(3) else "")] = float(m.group(4))
    return values


def wait_metric(admin_port, name, at_least, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(admin_port)
        if m.get(name, 0) >= at_least or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


def udp_client(family=socket.AF_INET, bind=None, timeout=2.0) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if bind:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(bind)
    s.settimeout(timeout)
    return s


def no_reply(s: socket.socket, wait=0.3) -> bool:
    s.settimeout(wait)
    try:
        s.recvfrom(65536)
        return False
    except TimeoutError:
        return True


def test_echo_ipv4_and_ipv6(start_echod):
    port = free_udp_port()
    six = has_ipv6()
    if not six:
        print("WARNING: this host has no IPv6: the IPv6 half of this test is skipped")
    e = start_udp(start_echod, port, udp=[f"127.0.0.1:{port}"] + ([f"[::1]:{port}"] if six else []))
    with udp_client() as s:
        payload = bytes(range(256)) * 4
        s.sendto(payload, ("127.0.0.1", port))
        assert s.recvfrom(65536) == (payload, ("127.0.0.1", port))
    if six:
        with udp_client(socket.AF_INET6) as s:
            s.sendto(b"over IPv6", ("::1", port))
            data, source = s.recvfrom(65536)
            assert data == b"over IPv6" and source[:2] == ("::1", port)
    m = wait_metric(e.admin, "echod_udp_datagrams_sent_total", 2 if six else 1)
    assert m["echod_udp_datagrams_received_total"] == m["echod_udp_datagrams_sent_total"] == (2 if six else 1)
    assert m["echod_udp_bytes_sent_total"] == 1024 + (9 if six else 0)
    assert e.stop() == 0


def test_reply_comes_from_the_address_it_was_sent_to(start_echod):
    """A 0.0.0.0 listener on a host with two loopback addresses: each reply's source is the request's destination."""
    port = free_udp_port()
    start_udp(start_echod, port)
    for destination in ("127.0.0.2", "127.0.0.1", "127.0.0.3"):
        with udp_client() as s:
            s.sendto(destination.encode(), (destination, port))
            data, source = s.recvfrom(65536)
            assert data == destination.encode()
            assert source == (destination, port)


def test_largest_and_empty_datagrams_echo_whole(start_echod):
    port = free_udp_port()
    start_udp(start_echod, port)
    with udp_client() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        big = os.urandom(65507)
        s.sendto(big, ("127.0.0.1", port))
        assert s.recvfrom(70000)[0] == big
        s.sendto(b"", ("127.0.0.1", port))
        data, source = s.recvfrom(70000)
        assert data == b"" and source == ("127.0.0.1", port)


def test_socat_and_nc_clients(start_echod):
    port = free_udp_port()
    start_udp(start_echod, port)
    if shutil.which("socat"):
        out = subprocess.run(
            ["socat", "-t", "2", "-", f"UDP:127.0.0.1:{port}"], input=b"via socat", capture_output=True, timeout=10
        )
        assert out.stdout == b"via socat"
    else:
        pytest.fail("socat is missing (make test installs it)")
    if shutil.which("nc"):
        out = subprocess.run(
            ["nc", "-u", "-w", "1", "127.0.0.1", str(port)], input=b"via nc\n", capture_output=True, timeout=10
        )
        assert out.stdout == b"via nc\n"


def test_no_reply_to_listed_or_privileged_source_ports(start_echod):
    port = free_udp_port()
    e = start_udp(start_echod, port)
    listed = [p for p in LISTED_PORTS if p != 0]  # port 0 cannot be bound: the kernel picks one
    sockets = []
    try:
        for p in [*listed, 1000]:
            s = udp_client(bind=("127.0.0.9", p))
            s.sendto(b"spoofed?", ("127.0.0.1", port))
            sockets.append(s)
        with udp_client(bind=("127.0.0.9", 0)) as control:
            control.sendto(b"control", ("127.0.0.1", port))
            assert control.recvfrom(100)[0] == b"control"  # replies flow; the guarded ones were read before it
        for s in sockets:
            assert no_reply(s, 0.05), f"a reply came to source port {s.getsockname()[1]}"
    finally:
        for s in sockets:
            s.close()
    m = wait_metric(e.admin, "echod_udp_dropped_total:reserved_port", len(listed))
    assert m["echod_udp_dropped_total:reserved_port"] == len(listed)
    assert m["echod_udp_dropped_total:privileged_port"] == 1
    assert m["echod_udp_datagrams_sent_total"] == 1
    assert "reason=reserved_port" in e.wait_log("UDP datagram not answered")


def test_min_source_port_can_be_lowered_but_not_below_the_list(start_echod):
    port = free_udp_port()
    start_udp(start_echod, port, extra="  min_source_port: 1\n")
    with udp_client(bind=("127.0.0.9", 1000)) as s:
        s.sendto(b"low port ok", ("127.0.0.1", port))
        assert s.recvfrom(100)[0] == b"low port ok"
    with udp_client(bind=("127.0.0.9", 7)) as s:
        s.sendto(b"echo port", ("127.0.0.1", port))
        assert no_reply(s)


def test_rate_limit_answers_exactly_the_burst(start_echod):
    port = free_udp_port()
    e = start_udp(start_echod, port, extra="  source_rate: 1\n  source_burst: 20\n")
    with udp_client() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for i in range(50):
            s.sendto(b"%d" % i, ("127.0.0.1", port))
        m = wait_metric(e.admin, "echod_udp_datagrams_received_total", 50)
    assert m["echod_udp_datagrams_sent_total"] == 20
    assert m["echod_udp_dropped_total:source_rate"] == 30
    # Another source address has a bucket of its own.
    with udp_client(bind=("127.0.0.8", 0)) as other:
        other.sendto(b"other", ("127.0.0.1", port))
        assert other.recvfrom(100)[0] == b"other"


def test_burst_replies_counted_at_the_client(start_echod):
    port = free_udp_port()
    start_udp(start_echod, port, extra="  source_rate: 1\n  source_burst: 10\n")
    with udp_client() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for i in range(40):
            s.sendto(b"%d" % i, ("127.0.0.1", port))
        got = []
        s.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(s.recvfrom(100)[0])
    assert got == [b"%d" % i for i in range(10)]


def test_chargen_like_peer_on_port_19_makes_no_loop(start_echod):
    """A peer on port 19 that answers every datagram (as chargen and echo do): echod never answers it, so nothing
    ping-pongs."""
    port = free_udp_port()
    e = start_udp(start_echod, port)
    with udp_client(bind=("127.0.0.1", 19)) as peer:
        peer.sendto(b"chargen says hi", ("127.0.0.1", port))
        answered = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                peer.settimeout(0.1)
                data, source = peer.recvfrom(65536)
            except TimeoutError:
                continue
            answered += 1
            peer.sendto(data, source)  # the peer answers whatever it gets
    m = wait_metric(e.admin, "echod_udp_dropped_total:reserved_port", 1)
    assert answered == 0
    assert m["echod_udp_datagrams_sent_total"] == 0
    assert m["echod_udp_datagrams_received_total"] == 1


def test_many_sources_keep_memory_flat(start_echod):
    """20,000 datagrams from 5,000 source addresses over 127.0.0.0/8, with a table of 1,024 entries: RSS stays
    flat (the table is allocated once; eviction, not growth)."""
    port = free_udp_port()
    e = start_udp(
        start_echod, port, threads=1, extra="  source_table_size: 1024\n  source_burst: 2\n  source_rate: 1\n"
    )
    with udp_client(bind=("127.1.0.1", 0)) as warm:
        for _ in range(50):
            warm.sendto(b"warm", ("127.0.0.1", port))
    wait_metric(e.admin, "echod_udp_datagrams_received_total", 50)
    before = vm_rss_kib(e.pid)
    sent = 0
    for i in range(5000):
        with udp_client(bind=(f"127.2.{i // 250}.{i % 250 + 1}", 0)) as s:
            for _ in range(4):
                s.sendto(b"from many", ("127.0.0.1", port))
                sent += 1
        if i % 50 == 49:
            # Let echod keep up (the point is the table, not the socket buffer): at most ~200 datagrams in flight,
            # well inside a default receive buffer, however busy the machine is. A sleep did not hold on a loaded CI
            # machine (10% of the datagrams dropped by the kernel).
            wait_metric(e.admin, "echod_udp_datagrams_received_total", 50 + sent, timeout=2.0)
    m = wait_metric(e.admin, "echod_udp_datagrams_received_total", 50 + sent)
    after = vm_rss_kib(e.pid)
    print(f"RSS before {before} KiB, after {after} KiB; metrics {m}")
    assert m["echod_udp_datagrams_received_total"] >= 50 + sent * 0.95
    # Each source's burst of 2 is answered and the next 2 dropped: evicted entries would come back full.
    assert m["echod_udp_dropped_total:source_rate"] >= sent * 0.45
    if "ASAN_OPTIONS" in os.environ:
        # Under AddressSanitizer (make sanitize-asan-e2e) RSS counts its shadow memory and freed-memory quarantine:
        # 5 to 33 MiB here. The same traffic makes 10 mallocs in all in the debug and release builds (perf probe).
        pytest.skip(f"RSS bound not checked under AddressSanitizer (grew by {after - before} KiB)")
    assert after - before < 4096, f"RSS grew by {after - before} KiB"


def test_reload_adds_and_removes_a_udp_listener(start_echod):
    first, second = free_udp_port(), free_udp_port()
    e = start_udp(start_echod, first, udp=[f"127.0.0.1:{first}"])
    with udp_client() as s:
        s.sendto(b"one", ("127.0.0.1", first))
        assert s.recvfrom(100)[0] == b"one"
    text = e.config_path.read_text().replace(f"'127.0.0.1:{first}'", f"'127.0.0.1:{second}'")
    e.config_path.write_text(text)
    e.signal(signal.SIGHUP)
    e.wait_log("configuration reloaded")
    e.wait_log("stopped serving UDP echo")
    with udp_client() as s:
        s.sendto(b"two", ("127.0.0.1", second))
        assert s.recvfrom(100)[0] == b"two"
        s.sendto(b"gone", ("127.0.0.1", first))
        assert no_reply(s)
    assert e.stop() == 0


def test_duplicate_udp_address_is_a_config_error():
    out = subprocess.run(
        [echod_binary(), "check-config", "--udp", "127.0.0.1:9999", "--udp", "127.0.0.1:9999"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "udp.listen" in out.stderr and "listed twice" in out.stderr
    out = subprocess.run([echod_binary(), "check-config"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    udp = out.stdout[out.stdout.index("\nudp:\n") :]
    for line in (
        "listen: []",
        "min_source_port: 1024",
        "source_rate: 1000",
        "source_burst: 2000",
        "global_rate: 100000",
    ):
        assert f"  {line} " in udp
    assert "global_bandwidth: 128MiB" in udp and "source_table_size: 65536" in udp


@contextlib.contextmanager
def socket_activated(args):
    if not shutil.which("systemd-socket-activate"):
        pytest.fail("systemd-socket-activate is missing (Debian package systemd; make test installs it)")
    env = echod_environ()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (echod's stderr while it runs; closed below)
    proc = subprocess.Popen(
        ["systemd-socket-activate", *socket_activate_setenv(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    try:
        time.sleep(0.3)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_passed_by_systemd_socket_activate(start_echod):
    port = free_udp_port()
    args = [
        "--datagram",
        "-l",
        f"127.0.0.1:{port}",
        "--fdname=udp",
        echod_binary(),
        "--listen",
        f"127.0.0.1:{free_port()}",
    ]
    with socket_activated(args) as (proc, log), udp_client(timeout=10) as s:
        s.sendto(b"activated", ("127.0.0.1", port))  # starts echod, which answers it from the queue
        assert s.recvfrom(100) == (b"activated", ("127.0.0.1", port))
        # The socket is served as soon as a loop has it, which can be before start-up has logged its listeners.
        wanted = f"udp 127.0.0.1:{port} (from systemd)"
        deadline = time.monotonic() + 10
        while True:
            log.seek(0)
            text = log.read().decode(errors="replace")
            if wanted in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert wanted in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_stream_socket_named_udp_is_refused(start_echod):
    port = free_port()
    with socket_activated(["-l", f"127.0.0.1:{port}", "--fdname=udp", echod_binary()]) as (proc, log):
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert proc.wait(timeout=10) != 0
        log.seek(0)
        text = log.read().decode(errors="replace")
        assert "named udp but is not a datagram socket" in text, text


def directed_broadcasts() -> list[str]:
    """The subnet-directed broadcast addresses of this host's IPv4 interfaces (lo's 127.255.255.255 included)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    found = re.findall(r" brd (\d+\.\d+\.\d+\.\d+)", out)
    return ["127.255.255.255", *found]


def test_no_reply_to_broadcast_destinations(start_echod):
    """255.255.255.255 and each subnet-directed broadcast reach a 0.0.0.0 socket; none is answered. A directed
    broadcast such as 127.255.255.255 is a unicast-looking address: only pktinfo (ipi_spec_dst != ipi_addr) tells."""
    port = free_udp_port()
    e = start_udp(start_echod, port)
    destinations = ["255.255.255.255", *directed_broadcasts()]
    print(f"broadcast destinations: {destinations}")
    with udp_client() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for d in destinations:
            s.sendto(b"to all", (d, port))
        m = wait_metric(e.admin, "echod_udp_dropped_total:broadcast_destination", len(destinations), timeout=3)
        assert no_reply(s)
    assert m["echod_udp_dropped_total:broadcast_destination"] == len(destinations)
    assert m["echod_udp_datagrams_sent_total"] == 0


def test_global_rate_caps_all_sources(start_echod):
    port = free_udp_port()
    e = start_udp(start_echod, port, threads=1, extra="  global_rate: 10\n")
    for i in range(40):
        with udp_client(bind=(f"127.3.0.{i + 1}", 0)) as s:
            s.sendto(b"g", ("127.0.0.1", port))
    m = wait_metric(e.admin, "echod_udp_datagrams_received_total", 40)
    # 40 datagrams within well under a second: 10, and at most a few refilled meanwhile at 10/s.
    assert 10 <= m["echod_udp_datagrams_sent_total"] <= 13
    assert m["echod_udp_dropped_total:global_rate"] == 40 - m["echod_udp_datagrams_sent_total"]


def test_reload_applies_changed_limits(start_echod):
    port = free_udp_port()
    e = start_udp(start_echod, port, udp=[f"127.0.0.1:{port}"])
    with udp_client(bind=("127.0.0.9", 1000)) as s:
        s.sendto(b"before", ("127.0.0.1", port))
        assert no_reply(s)
        e.config_path.write_text(e.config_path.read_text() + "  min_source_port: 1000\n")
        e.signal(signal.SIGHUP)
        e.wait_log("configuration reloaded")
        s.settimeout(2)
        s.sendto(b"after", ("127.0.0.1", port))
        assert s.recvfrom(100)[0] == b"after"
