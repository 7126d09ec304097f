"""The PROXY protocol headers `echod bench --proxy-protocol` and `echod probe --proxy-protocol` put on the wire.

The server here is a small Python listener, not echod: it reads the header and checks it against HAProxy's
specification (proxy-protocol.txt) on its own, strictly (signature, version and command, family, lengths, addresses
as inet_ntop writes them, ports without leading zeros, the CRLF within 107 bytes), then echoes the rest. So these tests
check the client side alone, whatever echod's server side does.
"""

import ipaddress
import re
import socket
import struct
import subprocess
import threading

import pytest
from conftest import echod_binary

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_LINE = re.compile(rb"PROXY (TCP4|TCP6) ([0-9a-fA-F.:]+) ([0-9a-fA-F.:]+) (\d+) (\d+)\r\n")
BENCH_V4 = ipaddress.ip_network("198.18.0.0/15")
BENCH_V6 = ipaddress.ip_network("2001:2::/48")


class HeaderError(Exception):
    pass


def recv_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise HeaderError(f"end of stream after {len(data)} of {n} header bytes")
        data += chunk
    return data


def canonical(family, text):
    """The address, which must be written as inet_ntop writes it (the specification's form for v1)."""
    try:
        packed = socket.inet_pton(family, text)
    except OSError as error:
        raise HeaderError(f"not a numeric address: {text!r}") from error
    if socket.inet_ntop(family, packed) != text:
        raise HeaderError(f"{text!r} is not inet_ntop's form {socket.inet_ntop(family, packed)!r}")
    return ipaddress.ip_address(packed)


def port_number(text):
    if (text != b"0" and text.startswith(b"0")) or int(text) > 65535:
        raise HeaderError(f"bad port {text!r}")
    return int(text)


def read_v1(conn, first):
    line = first
    while not line.endswith(b"\r\n"):
        if len(line) >= 107:
            raise HeaderError(f"no CRLF within 107 bytes: {line!r}")
        line += recv_exactly(conn, 1)  # a byte at a time: the client's data may follow in the same segment
    if line == b"PROXY UNKNOWN\r\n":
        return {"version": 1, "command": "proxy", "family": None, "raw": line}
    match = V1_LINE.fullmatch(line)
    if not match:
        raise HeaderError(f"not a v1 line: {line!r}")
    proto, source, destination, sport, dport = match.groups()
    family = socket.AF_INET if proto == b"TCP4" else socket.AF_INET6
    return {
        "version": 1,
        "command": "proxy",
        "family": family,
        "source": (canonical(family, source.decode()), port_number(sport)),
        "destination": (canonical(family, destination.decode()), port_number(dport)),
        "raw": line,
    }


def read_v2(conn, first):
    fixed = first + recv_exactly(conn, 16 - len(first))
    if fixed[:12] != V2_SIGNATURE:
        raise HeaderError(f"bad v2 signature {fixed[:12]!r}")
    version, command = fixed[12] >> 4, fixed[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise HeaderError(f"version/command byte {fixed[12]:#x}")
    family, transport = fixed[13] >> 4, fixed[13] & 0x0F
    (length,) = struct.unpack("!H", fixed[14:16])
    body = recv_exactly(conn, length) if length else b""
    header = {"version": 2, "command": "local" if command == 0 else "proxy", "family": None, "raw": fixed + body}
    if fixed[13] == 0x00:
        header["tlvs"] = body
        return header
    if transport != 1 or family not in (1, 2):
        raise HeaderError(f"family/transport byte {fixed[13]:#x}: expected STREAM over AF_INET or AF_INET6")
    width = 4 if family == 1 else 16
    if length < 2 * width + 4:
        raise HeaderError(f"length {length} too short for the addresses")
    header["family"] = socket.AF_INET if family == 1 else socket.AF_INET6
    header["source"] = (ipaddress.ip_address(body[:width]), struct.unpack("!H", body[2 * width : 2 * width + 2])[0])
    header["destination"] = (
        ipaddress.ip_address(body[width : 2 * width]),
        struct.unpack("!H", body[2 * width + 2 : 2 * width + 4])[0],
    )
    header["tlvs"] = body[2 * width + 4 :]
    return header


class ProxyListener:
    """A loopback (or Unix) stream listener on a thread: each connection's PROXY header is read, checked and kept
    with the client's real address, and everything after it is echoed. `strip=False` echoes the header too (a
    listener that does not expect one)."""

    def __init__(self, family=socket.AF_INET, unix_path=None, strip=True):
        self.sock = socket.socket(socket.AF_UNIX if unix_path else family, socket.SOCK_STREAM)
        if unix_path:
            self.sock.bind(unix_path)
        else:
            self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.strip = strip
        self.headers = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def target(self):
        host, port = self.address[0], self.address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._connection, args=(conn, peer), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _connection(self, conn, peer):
        conn.settimeout(10)
        try:
            with conn:
                if self.strip:
                    first = recv_exactly(conn, 1)
                    if first == b"P":
                        header = read_v1(conn, first)
                    elif first == b"\r":
                        header = read_v2(conn, first)
                    else:
                        raise HeaderError(f"first byte {first!r} starts no PROXY header")
                    header["peer"] = peer
                    with self.lock:
                        self.headers.append(header)
                while data := conn.recv(65536):
                    conn.sendall(data)
        except (HeaderError, OSError) as error:
            with self.lock:
                self.errors.append(f"{peer}: {error}")

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        for thread in self.threads:
            thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    started = []

    def start(**kwargs):
        started.append(ProxyListener(**kwargs))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def echod(*args, timeout=60):
    return subprocess.run(
        [echod_binary(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def bench(target, *args):
    return echod(
        "bench", target, "--duration", "1s", "--warmup", "100ms", "--max-ops", "300", "--drain-timeout", "2s", *args
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("mode", ["pingpong", "stream", "connect"])
def test_bench_sends_one_valid_header_per_connection(listener, mode, version):
    server = listener()
    r = bench(server.target, "--mode", mode, "--connections", "3", "--threads", "2", "--proxy-protocol", version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"PROXY protocol {version} header first" in r.stdout
    assert not server.errors, server.errors
    assert server.headers, "no header received"
    listener_address = ipaddress.ip_address(server.address[0])
    sources = set()
    for header in server.headers:
        assert header["version"] == int(version[1]), header
        assert header["command"] == "proxy"
        assert header["family"] == socket.AF_INET
        if version == "v2":
            assert header["tlvs"] == b"", "no TLVs"
        source, source_port = header["source"]
        assert header["destination"] == (listener_address, server.address[1])
        assert source in BENCH_V4, source
        assert source_port == header["peer"][1], "the header claims the connection's own port"
        sources.add(source)
    # One client address per connection (connect mode: per connector, across its connections).
    assert len(sources) == 3, sources
    if mode == "connect":
        assert len(server.headers) > 3, "a header on every connect, not only the first"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bench_over_ipv6_claims_ipv6_clients(listener, version):
    server = listener(family=socket.AF_INET6)
    r = bench(server.target, "--mode", "connect", "--connections", "2", "--proxy-protocol", version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not server.errors, server.errors
    for header in server.headers:
        assert header["family"] == socket.AF_INET6
        assert header["source"][0] in BENCH_V6, header
        assert header["destination"] == (ipaddress.ip_address("::1"), server.address[1])
        if version == "v1":
            assert header["raw"].startswith(b"PROXY TCP6 2001:2::")


def test_bench_json_names_the_version(listener):
    server = listener()
    r = bench(server.target, "--proxy-protocol", "v2", "--json")
    assert r.returncode == 0, r.stderr
    assert '"proxy_protocol":"v2"' in r.stdout


def test_bench_against_a_listener_without_the_protocol_says_why(listener):
    server = listener(strip=False)
    r = bench(server.target, "--proxy-protocol", "v1")
    assert r.returncode != 0
    assert "the PROXY protocol header came back: is the listener set to proxy_protocol?" in r.stdout + r.stderr


@pytest.mark.parametrize(
    "version,expected",
    [("v1", b"PROXY UNKNOWN\r\n"), ("v2", V2_SIGNATURE + b"\x20\x00\x00\x00")],
)
def test_probe_sends_a_health_check_header(listener, version, expected):
    server = listener()
    r = echod("probe", server.target, "--proxy-protocol", version, "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"ok {server.target} 3x64 bytes in ")
    assert not server.errors, server.errors
    assert [h["raw"] for h in server.headers] == [expected]
    assert server.headers[0]["command"] == ("local" if version == "v2" else "proxy")


def test_probe_over_a_unix_socket(listener, tmp_path):
    path = str(tmp_path / "proxied.sock")
    server = listener(unix_path=path)
    r = echod("probe", f"unix:{path}", "--proxy-protocol", "v2", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"proxy_protocol":"v2"' in r.stdout
    assert [h["raw"] for h in server.headers] == [V2_SIGNATURE + b"\x20\x00\x00\x00"]


def test_probe_of_a_listener_without_the_protocol_says_why(listener):
    server = listener(strip=False)
    r = echod("probe", server.target, "--proxy-protocol", "v1")
    assert r.returncode == 1, r.stdout
    assert "the PROXY protocol header came back" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["bench", "127.0.0.1:1", "--udp", "--proxy-protocol", "v1"], "--proxy-protocol cannot be used with --udp"),
        (["probe", "udp://127.0.0.1:1", "--proxy-protocol", "v2"], "--proxy-protocol cannot be used with udp://"),
        (["probe", "--http", "http://127.0.0.1:1/readyz", "--proxy-protocol", "v2"], "cannot be used with --http"),
        (["bench", "127.0.0.1:1", "--proxy-protocol", "v3"], 'invalid --proxy-protocol "v3": expected v1 or v2'),
        (["probe", "127.0.0.1:1", "--proxy-protocol", "any"], 'invalid --proxy-protocol "any": expected v1 or v2'),
    ],
)
def test_refused_options(args, message):
    r = echod(*args)
    assert r.returncode == 64, r.stdout + r.stderr
    assert message in r.stderr


def test_the_listener_here_is_strict():
    # The checks above lean on this parser: it must refuse what the specification refuses.
    for bad in [
        b"PROXY TCP4 198.18.0.01 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 198.18.0.1 127.0.0.1 01 2\r\n",
        b"PROXY TCP6 2001:2:0:0::1 ::1 1 2\r\n",
        b"PROXY TCP4  198.18.0.1 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 198.18.0.1 127.0.0.1 1 2\n",
    ]:
        a, b = socket.socketpair()
        with a, b:
            a.sendall(bad[1:])
            a.shutdown(socket.SHUT_WR)
            with pytest.raises(HeaderError):
                read_v1(b, bad[:1])
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12))
        with pytest.raises(HeaderError):
            read_v2(b, b"\r")
