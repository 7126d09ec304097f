"""Echo semantics through the real binary: nc, telnet, asyncio, raw sockets, IPv6, half-close."""

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import threading

import pexpect
import pytest
from conftest import free_port, recv_exactly, seeded_bytes


def test_nc_half_close_echoes_line(start_echod, port):
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    out = subprocess.run(f"printf 'hello\\n' | nc -N 127.0.0.1 {port}", shell=True, capture_output=True, timeout=10)
    assert out.stdout == b"hello\n"


def test_telnet_session_echoes_typed_line(start_echod, port):
    if not shutil.which("telnet"):
        pytest.fail("telnet is not installed (make test installs it)")
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    child = pexpect.spawn("telnet", ["127.0.0.1", str(port)], timeout=10)
    try:
        child.expect("Escape character")
        child.sendline("typed by a person")
        # The terminal shows the line once as typed (local echo) and once echoed back by echod.
        child.expect("typed by a person")
        child.expect("typed by a person")
        child.sendcontrol("]")
        child.expect("telnet>")
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_asyncio_client_on_embedded_defaults(start_echod):
    """The classic asyncio echo client against `echod` with no arguments: localhost:8888."""
    if os.path.exists("/etc/echod/echod.yaml"):
        pytest.skip("/etc/echod/echod.yaml exists here, so echod would not run on its embedded defaults")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8888)) == 0:
            pytest.skip("something else already listens on 127.0.0.1:8888")
    e = start_echod([], ready=True)

    async def client(message: str) -> str:
        reader, writer = await asyncio.open_connection("localhost", 8888)
        writer.write(message.encode())
        await writer.drain()
        data = await reader.readexactly(len(message.encode()))
        writer.close()
        await writer.wait_closed()
        return data.decode()

    assert asyncio.run(client("Hello World!")) == "Hello World!"
    # And over IPv6 loopback, which the defaults listen on too.
    with socket.create_connection(("::1", 8888), timeout=5) as s:
        s.sendall(b"v6")
        assert recv_exactly(s, 2) == b"v6"
    assert e.stop() == 0


def _blast(port: int, host: str, size: int, seed: int, errors: list):
    try:
        data = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
        data = bytes((b ^ (i * 31)) & 0xFF for i, b in enumerate(data[: 1 << 16])) + data[(1 << 16) :]
        received = bytearray()
        with socket.create_connection((host, port), timeout=20) as s:

            def reader():
                while len(received) < len(data):
                    chunk = s.recv(1 << 18)
                    if not chunk:
                        break
                    received.extend(chunk)

            t = threading.Thread(target=reader)
            t.start()
            view = memoryview(data)
            for off in range(0, len(data), 65536):
                s.sendall(view[off : off + 65536])
            t.join(timeout=60)
        if bytes(received) != data:
            errors.append(
                f"conn {seed}: got {len(received)} of {len(data)} bytes, first mismatch at "
                f"{next((i for i, (a, b) in enumerate(zip(received, data, strict=False)) if a != b), len(received))}"
            )
    except Exception as exc:
        errors.append(f"conn {seed}: {exc!r}")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_megabytes_of_random_binary_on_many_connections(start_echod, port, threads):
    e = start_echod(["--listen", f"127.0.0.1:{port}", "--threads", threads], ready=True)
    errors: list = []
    workers = [threading.Thread(target=_blast, args=(port, "127.0.0.1", 4 << 20, i, errors)) for i in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    assert e.proc.poll() is None


def test_binary_and_nul_bytes_round_trip(start_echod, port):
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    payload = bytes(range(256)) * 64 + b"\0\0\0\r\n\xff"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        assert recv_exactly(s, len(payload)) == payload


def test_ipv6_and_ipv4_listeners_at_once(start_echod):
    p4, p6 = free_port(), free_port(socket.AF_INET6)
    start_echod(["--listen", f"127.0.0.1:{p4}", "--listen", f"[::1]:{p6}"], ready=True)  # READY=1: both listen
    for host, p in (("127.0.0.1", p4), ("::1", p6)):
        with socket.create_connection((host, p), timeout=5) as s:
            s.sendall(host.encode())
            assert recv_exactly(s, len(host)) == host.encode()


def test_half_close_echoes_everything_pending_then_closes(start_echod, port):
    start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    data = seeded_bytes(8 << 20, seed=128)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        received = bytearray()

        def reader():
            while True:
                chunk = s.recv(1 << 18)
                if not chunk:
                    return
                received.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(timeout=60)
        assert not t.is_alive(), "echod did not close after echoing everything"
    assert bytes(received) == data


def test_peer_reset_does_not_disturb_others(start_echod, port):
    e = start_echod(["--listen", f"127.0.0.1:{port}"], ready=True)
    keep = socket.create_connection(("127.0.0.1", port), timeout=5)
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(seeded_bytes(100_000, seed=153))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST with data in flight
    keep.sendall(b"still here")
    assert recv_exactly(keep, 10) == b"still here"
    keep.close()
    assert e.proc.poll() is None
