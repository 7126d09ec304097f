"""The PROXY protocol (v1 and v2) on echod's listeners, end to end: hand-made headers over real loopback sockets to the
real binary. The headers are written here, byte by byte, from HAProxy's proxy-protocol.txt (sections 2.1 and 2.2), not
with echod's own writer, so that a mistake shared by echod's parser and writer cannot hide.

Each test of a guard says which guard it tests (`guard:`): the assertion that fails when that guard is removed."""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import echod_binary, free_port, recv_exactly, seeded_bytes

# --- headers, per proxy-protocol.txt ------------------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # section 2.2: \x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A
PROXY, LOCAL = 0x21, 0x20  # version 2 in the high nibble, the command in the low one
TCP4, TCP6, UNIX_STREAM, UNSPEC = 0x11, 0x21, 0x31, 0x00  # family in the high nibble, transport in the low one
PP2_TYPE_CRC32C, PP2_TYPE_NOOP, PP2_TYPE_UNIQUE_ID = 0x03, 0x04, 0x05


def v1(protocol: str, src="", dst="", sport=0, dport=0) -> bytes:
    """`PROXY TCP4 SRC DST SPORT DPORT\\r\\n`; `PROXY UNKNOWN\\r\\n` for protocol UNKNOWN without addresses."""
    if protocol == "UNKNOWN" and not src:
        return b"PROXY UNKNOWN\r\n"
    return f"PROXY {protocol} {src} {dst} {sport} {dport}\r\n".encode()


def v2_addresses(family: int, src="", dst="", sport=0, dport=0) -> bytes:
    """The address block: 4+4+2+2 bytes for TCP over IPv4, 16+16+2+2 over IPv6, 108+108 for Unix paths."""
    if family == TCP4:
        return (
            socket.inet_pton(socket.AF_INET, src)
            + socket.inet_pton(socket.AF_INET, dst)
            + struct.pack("!HH", sport, dport)
        )
    if family == TCP6:
        return (
            socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!HH", sport, dport)
        )
    if family == UNIX_STREAM:
        return src.encode().ljust(108, b"\0") + dst.encode().ljust(108, b"\0")
    return b""


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(command=PROXY, family=TCP4, addresses=b"", tlvs=b"", length=None) -> bytes:
    """Signature, version/command, family/transport, the 16-bit length of what follows (unless `length` overrides it,
    to make a lying header), the addresses and the TLVs."""
    rest = addresses + tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(rest) if length is None else length) + rest


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C (RFC 3720, B.4)


def v2_with_crc32c(family=TCP4, addresses=b"", other_tlvs=b"", wrong=False) -> bytes:
    """A v2 PROXY header ending in a PP2_TYPE_CRC32C TLV: the checksum of the whole header with the checksum field set
    to zero (section 2.2.5); `wrong` flips one of its bits."""
    zeroed = v2(PROXY, family, addresses, other_tlvs + tlv(PP2_TYPE_CRC32C, b"\0\0\0\0"))
    checksum = crc32c(zeroed) ^ (1 if wrong else 0)
    return zeroed[:-4] + struct.pack("!I", checksum)


CLIENT4 = ("203.0.113.7", "192.0.2.1", 51234, 9000)
CLIENT6 = ("2001:db8::1", "2001:db8::2", 443, 9000)
# The longest v1 line the specification allows: 107 bytes, CRLF included.
V1_LONGEST = b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
assert len(V1_LONGEST) == 107


def v2_of_length(total: int) -> bytes:
    """A valid v2 TCP4 header of exactly `total` bytes, padded with one NOOP TLV."""
    addresses = v2_addresses(TCP4, *CLIENT4)
    pad = total - 16 - len(addresses) - 3
    return v2(PROXY, TCP4, addresses, tlv(PP2_TYPE_NOOP, b"\0" * pad))


# (name, versions it is, bytes)
VALID = [
    ("v1-tcp4", "v1", v1("TCP4", *CLIENT4)),
    ("v1-tcp6", "v1", v1("TCP6", *CLIENT6)),
    ("v1-unknown", "v1", v1("UNKNOWN")),
    ("v1-unknown-107-bytes", "v1", V1_LONGEST),
    ("v2-tcp4", "v2", v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4))),
    ("v2-tcp6", "v2", v2(PROXY, TCP6, v2_addresses(TCP6, *CLIENT6))),
    ("v2-unix", "v2", v2(PROXY, UNIX_STREAM, v2_addresses(UNIX_STREAM, "/run/client.sock", "/run/echod.sock"))),
    ("v2-local", "v2", v2(LOCAL, UNSPEC)),
    ("v2-local-with-addresses", "v2", v2(LOCAL, TCP4, v2_addresses(TCP4, *CLIENT4))),  # HAProxy's health check
    (
        "v2-tlvs-crc32c",
        "v2",
        v2_with_crc32c(
            TCP4,
            v2_addresses(TCP4, *CLIENT4),
            tlv(PP2_TYPE_NOOP, b"") + tlv(PP2_TYPE_UNIQUE_ID, b"id-42") + tlv(0xE0, b"x"),
        ),
    ),
    ("v2-4096-bytes", "v2", v2_of_length(4096)),  # the limit itself is accepted
]

# --- echod with PROXY listeners -------------------------------------------------------------------------------------


def yaml_scalar(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    text = str(value)
    plain = text and all(c.isalnum() or c in "./:_-@" for c in text)
    return text if plain else '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def config(*entries, extra="") -> str:
    """A config file: `listen` entries as plain strings or block mappings (spec13's syntax), one loop, text logs."""
    lines = ["listen:"]
    for entry in entries:
        if isinstance(entry, str):
            lines.append(f"  - {entry}")
            continue
        for i, (key, value) in enumerate(entry.items()):
            lines.append(f"  {'- ' if i == 0 else '  '}{key}: {yaml_scalar(value)}")
    return "\n".join(lines) + "\nthreads: 1\nlog:\n  format: text\n" + extra


def proxied(port, mode="any", trusted=("127.0.0.1/32",), **options) -> dict:
    entry = {"address": f"127.0.0.1:{port}", "proxy_protocol": mode}
    if trusted is not None:
        entry["proxy_protocol_from"] = list(trusted)
    entry.update(options)
    return entry


def admin_extra(admin_port) -> str:
    return f"admin:\n  listen: '127.0.0.1:{admin_port}'\n"


def header_errors(admin_port) -> dict[str, float]:
    """echod_proxy_header_errors_total by reason, summed over any other labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        body = response.read().decode()
    counts: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("echod_proxy_header_errors_total{"):
            labels, value = line.rsplit(" ", 1)
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = counts.get(reason, 0) + float(value)
    return counts


def wait_header_errors(admin_port, expected: dict[str, float], timeout=5.0) -> dict[str, float]:
    """The counters once they equal `expected` for its reasons (loops publish their counters asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = header_errors(admin_port)
        if all(counts.get(reason, 0) == n for reason, n in expected.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def connect(port, host="127.0.0.1", timeout=5.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_to_close(s: socket.socket, timeout=5.0) -> tuple[bytes, str]:
    """Everything the server sends until it closes, and how it closed: "eof", "reset" or "timeout" (still open)."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        return got, "reset"
    except TimeoutError:
        return got, "timeout"
    return got, "eof"


def echo_through(port, header: bytes, data: bytes, how="same", family=socket.AF_INET, path=None) -> tuple[bytes, str]:
    """Sends `header` then `data` ("same": one send; "later": two sends 50 ms apart; "bytewise": every byte of the
    header in a send of its own, then the data), half-closes, returns what came back until echod closed."""
    if path is not None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(path))
    else:
        s = connect(port, "::1" if family == socket.AF_INET6 else "127.0.0.1")
    with s:
        if how == "same":
            s.sendall(header + data)
        elif how == "later":
            s.sendall(header)
            time.sleep(0.05)
            s.sendall(data)
        else:
            for i in range(len(header)):
                s.sendall(header[i : i + 1])
                time.sleep(0.002)  # with TCP_NODELAY each byte leaves in a segment, and a read, of its own
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return read_to_close(s)


def keeper(port, header=None) -> socket.socket:
    """A well-behaved client on the listener, open across a test, that must keep its echo."""
    s = connect(port)
    s.sendall((header or v1("TCP4", "198.51.100.9", "192.0.2.1", 40000, 9000)) + b"keep")
    assert recv_exactly(s, 4, timeout=5) == b"keep"
    return s


def still_echoes(s: socket.socket, payload=b"still here") -> None:
    s.sendall(payload)
    assert recv_exactly(s, len(payload), timeout=5) == payload, "a good client lost its echo"


# --- valid headers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "later"])
@pytest.mark.parametrize("name,version,header", VALID, ids=[v[0] for v in VALID])
def test_valid_header_then_data_echoes_exactly_the_data(start_echod, name, version, header, how):
    """Each valid header on a listener of its version and on an `any` one: echod echoes the data and not one byte of
    the header, whether the data shares the header's send or comes later (guard: the header phase consumes exactly
    the header's bytes and hands the rest of the read to the echo)."""
    own, anyp = free_port(), free_port()
    start_echod(config=config(proxied(own, version), proxied(anyp, "any")), ready=True)
    data = b"data after the header\n\x00\xff" + name.encode()
    for port in (own, anyp):
        got, closed = echo_through(port, header, data, how)
        assert (got, closed) == (data, "eof"), f"port {port} ({'any' if port == anyp else version})"


@pytest.mark.parametrize(
    "header", [v1("TCP4", *CLIENT4), v2_with_crc32c(TCP6, v2_addresses(TCP6, *CLIENT6), tlv(PP2_TYPE_UNIQUE_ID, b"u"))]
)
def test_a_header_split_over_one_byte_sends(start_echod, port, header):
    """guard: the header phase keeps the bytes of earlier reads (the parser decides on everything received so far)."""
    start_echod(config=config(proxied(port, "any")), ready=True)
    assert echo_through(port, header, b"after", how="bytewise") == (b"after", "eof")


def test_a_large_payload_after_the_header_is_byte_exact(start_echod, port):
    start_echod(config=config(proxied(port, "v2")), ready=True)
    data = seeded_bytes(1 << 20, seed=1301)
    with connect(port, timeout=20) as s:
        sender = threading.Thread(target=lambda: s.sendall(v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4)) + data))
        sender.start()
        got = recv_exactly(s, len(data), timeout=20)
        sender.join(timeout=20)
    assert got == data


# --- malformed headers ----------------------------------------------------------------------------------------------

V2_TCP4 = v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4))

# (name, listener mode, bytes, whether the client half-closes after them, the guard it tests)
MALFORMED = [
    ("v1-truncated-then-close", "any", b"PROXY TCP4 203.0.113.7 19", True, "EOF in the header phase closes"),
    ("v2-truncated-then-close", "any", V2_TCP4[:20], True, "EOF in the header phase closes"),
    ("v1-longer-than-107", "v1", b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", False, "v1's 107-byte bound"),
    ("v1-bad-signature", "v1", b"PROXZ TCP4 203.0.113.7 192.0.2.1 51234 9000\r\n", False, "v1 signature"),
    ("v1-bad-protocol", "v1", b"PROXY UDP4 203.0.113.7 192.0.2.1 51234 9000\r\n", False, "v1 protocol"),
    ("v1-bad-address", "v1", b"PROXY TCP4 203.0.113.256 192.0.2.1 51234 9000\r\n", False, "v1 address"),
    ("v1-port-leading-zero", "v1", b"PROXY TCP4 203.0.113.7 192.0.2.1 051234 9000\r\n", False, "v1 port"),
    ("v1-lone-lf", "v1", b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 9000\n", False, "v1 CRLF"),
    ("v1-double-space", "v1", b"PROXY TCP4  203.0.113.7 192.0.2.1 51234 9000\r\n", False, "v1 single spaces"),
    ("v2-bad-signature", "v2", V2_SIGNATURE[:7] + b"QUIX\n" + V2_TCP4[12:], False, "v2 signature"),
    ("v2-over-4KiB", "v2", v2_of_length(4097), False, "v2's 4 KiB limit"),
    ("v2-over-4KiB-length-only", "v2", V2_TCP4[:14] + struct.pack("!H", 65535), False, "v2's 4 KiB limit, at 16 bytes"),
    ("v2-tcp4-address-too-short", "v2", V2_TCP4[:14] + struct.pack("!H", 8) + V2_TCP4[16:24], False, "family length"),
    ("v2-tcp6-address-too-short", "v2", v2(PROXY, TCP6, b"\0" * 12), False, "family length"),
    ("v2-unix-address-too-short", "v2", v2(PROXY, UNIX_STREAM, b"\0" * 108), False, "family length"),
    ("v2-tlv-overrun", "v2", v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4), b"\x04\x00\x0aab"), False, "TLV bounds"),
    ("v2-tlv-truncated", "v2", v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4), b"\x04\x00"), False, "TLV bounds"),
    ("v2-bad-crc32c", "v2", v2_with_crc32c(TCP4, v2_addresses(TCP4, *CLIENT4), wrong=True), False, "CRC32C check"),
    ("v2-version-1", "v2", V2_SIGNATURE + b"\x11" + V2_TCP4[13:], False, "v2 version"),
    ("v2-command-2", "v2", V2_SIGNATURE + b"\x22" + V2_TCP4[13:], False, "v2 command"),
    ("v2-dgram", "v2", V2_SIGNATURE + b"\x21\x12" + V2_TCP4[14:], False, "stream transports only"),
    ("v1-to-v2-only", "v2", v1("TCP4", *CLIENT4), False, "the listener's version"),
    ("v2-to-v1-only", "v1", V2_TCP4, False, "the listener's version"),
    ("plain-hello", "any", b"hello\n", False, "a header is required"),
    ("plain-hello-starting-with-P", "any", b"POST / HTTP/1.0\r\n\r\n", False, "v1 signature"),
]


@pytest.mark.parametrize("name,mode,payload,half_close,guard", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_header_is_closed_with_nothing_echoed(start_echod, port, name, mode, payload, half_close, guard):
    """guard (per case, last column): the bad connection is closed by echod on its own (without waiting for the 10 s
    header timeout), not one byte of it is echoed (data after the bad header included), and a good client on the same
    listener keeps its echo."""
    e = start_echod(config=config(proxied(port, mode, proxy_protocol_timeout="10s")), ready=True)
    good = keeper(port)
    with connect(port) as bad:
        t0 = time.monotonic()
        bad.sendall(payload)
        if half_close:
            bad.shutdown(socket.SHUT_WR)
        else:
            time.sleep(0.05)
            try:
                bad.sendall(b"data that must not come back\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # already closed: as it should be
        got, closed = read_to_close(bad, timeout=8)
        elapsed = time.monotonic() - t0
    assert got == b"", f"{name}: echod sent {got!r} back ({guard})"
    assert closed in ("eof", "reset"), f"{name}: still open after 8 s ({guard})"
    assert elapsed < 5, f"{name}: closed after {elapsed:.1f} s: by the timeout, not by the check ({guard})"
    still_echoes(good)
    good.close()
    assert e.proc.poll() is None


def test_malformed_headers_are_counted_and_logged_rate_limited(start_echod, port):
    admin = free_port()
    e = start_echod(config=config(proxied(port, "v2"), extra=admin_extra(admin)), ready=True)
    assert header_errors(admin).get("invalid", 0) == 0
    bad = [m for m in MALFORMED if m[1] in ("v2", "any") and not m[3]]
    for _, _, payload, _, _ in bad:
        with connect(port) as s:
            s.sendall(payload)
            assert read_to_close(s)[0] == b""
    counts = wait_header_errors(admin, {"invalid": len(bad)})
    assert counts.get("invalid") == len(bad), counts
    time.sleep(0.5)  # log records are written asynchronously
    log = e.log()
    warnings = [line for line in log.splitlines() if " warning " in line and "proxy" in line.lower()]
    assert warnings, f"no warning about the refused headers:\n{log}"
    # guard: the warning is rate-limited: a burst of bad headers costs a line or a few, not one line each.
    assert len(warnings) < len(bad) // 2, "\n".join(warnings)


def test_v2_header_error_reason_is_logged(start_echod, port):
    e = start_echod(config=config(proxied(port, "v2")), ready=True)
    with connect(port) as s:
        s.sendall(v2_with_crc32c(TCP4, v2_addresses(TCP4, *CLIENT4), wrong=True))
        assert read_to_close(s)[0] == b""
    e.wait_log("CRC32C")


# --- trust ----------------------------------------------------------------------------------------------------------


def test_untrusted_source_is_refused_even_with_a_valid_header(start_echod, port):
    """guard: proxy_protocol_from. 127.0.0.1 is not in it, so a header from there, valid or not, gets nothing back."""
    admin = free_port()
    e = start_echod(
        config=config(proxied(port, "any", trusted=["10.0.0.0/8", "::1/128"]), extra=admin_extra(admin)), ready=True
    )
    for payload in (v1("TCP4", *CLIENT4) + b"forged\n", V2_TCP4 + b"forged\n", b"hello\n"):
        with connect(port) as s:
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            got, closed = read_to_close(s)
        assert got == b"" and closed in ("eof", "reset"), (payload, got, closed)
    counts = wait_header_errors(admin, {"untrusted": 3})
    assert counts.get("untrusted") == 3, counts
    assert e.proc.poll() is None


def test_untrusted_source_is_served_plainly_with_serve(start_echod, port):
    """proxy_protocol_untrusted: serve: the untrusted client gets a plain echo, and a header it sends is echoed like any
    other bytes (it is not parsed: its address is not believed)."""
    e = start_echod(
        config=config(proxied(port, "any", trusted=["10.0.0.0/8"], proxy_protocol_untrusted="serve")), ready=True
    )
    assert echo_through(port, b"", b"hello\n") == (b"hello\n", "eof")
    forged = v1("TCP4", *CLIENT4) + b"forged\n"
    assert echo_through(port, b"", forged) == (forged, "eof")
    log = e.wait_log("connection closed")
    assert "peer=203.0.113.7" not in log, "an untrusted client's header was believed"


def test_ipv6_trusted_source(start_echod):
    p6 = free_port(socket.AF_INET6)
    start_echod(
        config=config({"address": f"[::1]:{p6}", "proxy_protocol": "v1", "proxy_protocol_from": ["::1/128"]}),
        ready=True,
    )
    assert echo_through(p6, v1("TCP4", *CLIENT4), b"six", family=socket.AF_INET6) == (b"six", "eof")


# --- timeout --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partial", [b"", b"PROXY TCP4 203.0.113.7 ", V2_TCP4[:20]])
def test_a_slow_header_times_out(start_echod, port, partial):
    """guard: proxy_protocol_timeout (1 s). A client that sends part of a header (or nothing) and waits is closed
    after ~1-2 s, with nothing echoed; a good client meanwhile keeps its echo."""
    admin = free_port()
    e = start_echod(
        config=config(proxied(port, "any", proxy_protocol_timeout="1s"), extra=admin_extra(admin)), ready=True
    )
    good = keeper(port)
    with connect(port) as slow:
        t0 = time.monotonic()
        slow.sendall(partial)
        got, closed = read_to_close(slow, timeout=10)
        elapsed = time.monotonic() - t0
    assert got == b"" and closed in ("eof", "reset"), (got, closed)
    assert 0.9 <= elapsed <= 3.5, f"closed after {elapsed:.2f} s with proxy_protocol_timeout 1s"
    still_echoes(good)
    counts = wait_header_errors(admin, {"timeout": 1})
    assert counts.get("timeout") == 1, counts
    assert e.proc.poll() is None


# --- the client's address: logs and the per-IP limit ----------------------------------------------------------------


def opened_line(log: str, peer: str) -> str:
    lines = [line for line in log.splitlines() if "connection opened" in line and f"peer={peer}" in line]
    assert lines, f"no 'connection opened' line with peer={peer}:\n{log}"
    return lines[-1]


@pytest.mark.parametrize(
    "header,peer",
    [
        (v1("TCP4", *CLIENT4), "203.0.113.7:51234"),
        (v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4)), "203.0.113.7:51234"),
        (v2(PROXY, TCP6, v2_addresses(TCP6, *CLIENT6)), "[2001:db8::1]:443"),
    ],
    ids=["v1-tcp4", "v2-tcp4", "v2-tcp6"],
)
def test_logs_show_the_client_from_the_header_and_the_proxy(start_echod, port, header, peer):
    e = start_echod(config=config(proxied(port, "any")), ready=True)
    with connect(port) as s:
        proxy = f"127.0.0.1:{s.getsockname()[1]}"
        s.sendall(header + b"logged\n")
        assert recv_exactly(s, 7) == b"logged\n"
    line = opened_line(e.wait_log("connection closed"), peer)
    assert f"proxy={proxy}" in line, line
    closed = [ln for ln in e.log().splitlines() if "connection closed" in ln and f"peer={peer}" in ln]
    assert closed and f"proxy={proxy}" in closed[-1], e.log()


@pytest.mark.parametrize("header", [v2(LOCAL, UNSPEC), v1("UNKNOWN")], ids=["v2-local", "v1-unknown"])
def test_local_and_unknown_are_the_proxys_own_connection(start_echod, port, header):
    e = start_echod(config=config(proxied(port, "any")), ready=True)
    with connect(port) as s:
        own = f"127.0.0.1:{s.getsockname()[1]}"
        s.sendall(header + b"health\n")
        assert recv_exactly(s, 7) == b"health\n"
    opened_line(e.wait_log("connection closed"), own)


def test_per_ip_limit_counts_the_headers_address(start_echod, port):
    """guard: limits.max_connections_per_ip counts the client from the header. All of these come from 127.0.0.1, so
    counting the TCP peer would refuse the second of two different clients; counting the header's address refuses
    the second of two connections claiming the same client."""
    e = start_echod(config=config(proxied(port, "any"), extra="limits:\n  max_connections_per_ip: 1\n"), ready=True)
    a = connect(port)
    a.sendall(v1("TCP4", "198.51.100.1", "192.0.2.1", 1001, 9000) + b"a")
    assert recv_exactly(a, 1) == b"a"
    b = connect(port)  # a different client through the same proxy address: served
    b.sendall(v2(PROXY, TCP4, v2_addresses(TCP4, "198.51.100.2", "192.0.2.1", 1002, 9000)) + b"b")
    assert recv_exactly(b, 1) == b"b"
    with connect(port) as again:  # the first client again, from another port: over its limit of one
        try:
            again.sendall(v1("TCP4", "198.51.100.1", "192.0.2.1", 1003, 9000) + b"c")
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, closed = read_to_close(again)
    assert got == b"" and closed in ("eof", "reset"), (got, closed)
    e.wait_log("max_connections_per_ip reached")
    still_echoes(a)
    still_echoes(b)
    a.close()
    b.close()


# --- Unix listeners -------------------------------------------------------------------------------------------------


@pytest.fixture
def sockdir():
    path = Path(tempfile.mkdtemp(prefix="echod-pp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unix_listener_with_v2(start_echod, sockdir):
    path = sockdir / "pp.sock"
    e = start_echod(config=config({"address": f"unix:{path}", "proxy_protocol": "v2"}), ready=True)
    header = v2(PROXY, TCP4, v2_addresses(TCP4, *CLIENT4))
    assert echo_through(None, header, b"over unix\n", path=path) == (b"over unix\n", "eof")
    assert echo_through(None, v2(LOCAL, UNSPEC), b"local\n", path=path) == (b"local\n", "eof")
    # guard: the version check holds on Unix listeners too.
    got, closed = echo_through(None, v1("TCP4", *CLIENT4), b"no\n", path=path)
    assert got == b"" and closed in ("eof", "reset")
    line = opened_line(e.wait_log("connection closed"), "203.0.113.7:51234")
    assert "proxy=unix:uid:" in line, line


# --- configuration errors that keep a listener from being open to forged addresses ----------------------------------


def check_config(text: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="echod-pp-") as tmp:
        cfg = Path(tmp) / "echod.yaml"
        cfg.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOD_")}
        return subprocess.run(
            [echod_binary(), "check-config", "--config", str(cfg)], capture_output=True, text=True, timeout=30, env=env
        )


def test_a_tcp_proxy_listener_must_name_its_proxies(port):
    done = check_config(config(proxied(port, "v2", trusted=None)))
    assert done.returncode != 0
    assert "proxy_protocol_from" in done.stdout + done.stderr


def test_proxy_protocol_from_is_refused_on_a_unix_listener(sockdir):
    path = sockdir / "x.sock"
    done = check_config(
        config({"address": f"unix:{path}", "proxy_protocol": "v2", "proxy_protocol_from": ["127.0.0.1/32"]})
    )
    assert done.returncode != 0
    assert "proxy_protocol_from" in done.stdout + done.stderr
