"""Instance tagging (`tag: banner | prefix | hostname-only`) through the real binary, with OpenBSD nc (as an operator
would check it) and raw sockets; plain listeners next to tagged ones stay byte-exact RFC 862 echo.

Each test of a guard says which guard it tests (`guard:`)."""

import os
import socket
import subprocess
import threading
import time

from conftest import free_port, recv_exactly, seeded_bytes, vm_rss_kib
from test_proxy_protocol import CLIENT4, config, connect, read_to_close, v1

HOST = socket.gethostname()


def tagged(port, tag, text=None, **options) -> dict:
    entry = {"address": f"127.0.0.1:{port}", "tag": tag}
    if text is not None:
        entry["tag_text"] = text
    entry.update(options)
    return entry


def nc(port, data: bytes, *flags) -> bytes:
    """OpenBSD netcat: `printf DATA | nc -N 127.0.0.1 PORT` (-N: half-close at the end of stdin, as busybox's nc in
    istio's sample does; without it OpenBSD nc waits for the server to close first)."""
    out = subprocess.run(["nc", "-N", *flags, "127.0.0.1", str(port)], input=data, capture_output=True, timeout=10)
    return out.stdout


def read_line(s: socket.socket, timeout=5.0) -> bytes:
    s.settimeout(timeout)
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def nothing_yet(s: socket.socket, wait=0.3) -> bool:
    s.settimeout(wait)
    try:
        s.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    return False


def listener_label(log: str, needle: str) -> str:
    """The label of the echo listener containing `needle`, as the `echod started` line lists it (`listeners="echo
    127.0.0.1:9000, echo unix:/run/x.sock"`): what `{listener}` expands to."""
    for line in log.splitlines():
        if "echod started" in line and 'listeners="' in line:
            for item in line.split('listeners="', 1)[1].split('"', 1)[0].split(", echo "):
                # `echo 127.0.0.1:9000 (proxy_protocol any, tag banner)`: the label without the options
                label = item.removeprefix("echo ").split(" (proxy_protocol", 1)[0].split(" (tag ", 1)[0]
                if needle in label:
                    return label
    raise AssertionError(f"no listener with {needle} in the 'echod started' line:\n{log}")


# --- banner ---------------------------------------------------------------------------------------------------------


def test_banner_default_is_the_host_name_then_byte_exact_echo(start_echod, port):
    start_echod(config=config(tagged(port, "banner")), ready=True)
    assert nc(port, b"hello\n") == HOST.encode() + b"\nhello\n"
    payload = seeded_bytes(64 << 10, seed=13)
    with connect(port) as s:
        assert read_line(s) == HOST.encode() + b"\n"
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got, closed = read_to_close(s, timeout=10)
        sender.join(timeout=10)
    assert (got, closed) == (payload, "eof"), "after the banner the echo is byte-exact, with nothing added"


def test_banner_template_with_every_placeholder(start_echod, port):
    text = "{hostname}|{instance}|{listener}|{client}|{pid}|{pod}|{node}|{{literal}}"
    e = start_echod(
        config=config(tagged(port, "banner", text), extra="instance: web-1\n"),
        env={"POD_NAME": "echod-7d9c-xk2p", "NODE_NAME": "node-3"},
        ready=True,
    )
    listener = listener_label(e.wait_log("echod started"), f":{port}")
    with connect(port) as s:
        client = f"127.0.0.1:{s.getsockname()[1]}"
        line = read_line(s)
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
    assert listener == f"127.0.0.1:{port}"
    expected = f"{HOST}|web-1|{listener}|{client}|{e.pid}|echod-7d9c-xk2p|node-3|{{literal}}\n"
    assert line.decode() == expected


def test_banner_pod_and_node_are_empty_when_unset(start_echod, port):
    assert "POD_NAME" not in os.environ and "NODE_NAME" not in os.environ, "run without POD_NAME/NODE_NAME set"
    start_echod(config=config(tagged(port, "banner", "[{pod}][{node}] {instance}")), ready=True)
    # instance defaults to the host name.
    assert nc(port, b"") == f"[][] {HOST}\n".encode()


def test_banner_expansion_is_cut_at_1024_bytes(start_echod):
    """A template has at most 1024 bytes, and the line echod sends at most 1024, newline included (the bound keeps a tag
    inside any connection's pending buffer). {pod} (5 bytes of template) expands to all of POD_NAME: 1000 bytes come
    whole, 3000 are cut to 1023 and the newline."""
    for length in (1000, 3000):
        p = free_port()
        start_echod(config=config(tagged(p, "banner", "{pod}")), env={"POD_NAME": "p" * length}, ready=True)
        line = nc(p, b"")
        assert line.endswith(b"\n") and set(line[:-1]) == {ord("p")}, line[:64]
        shown = len(line) - 1
        expected = length if length < 1024 else 1023
        assert shown == expected, f"POD_NAME of {length} bytes gave a banner of {shown} bytes (+ newline)"


def test_banner_that_ends_in_a_newline_gets_no_second_one(start_echod, port):
    start_echod(config=config(tagged(port, "banner", "one\n")), ready=True)
    assert nc(port, b"x") == b"one\nx"


def test_banner_client_is_the_headers_client_and_comes_after_the_header(start_echod, port):
    """guard: the banner waits for the PROXY header (so that {client} is the real client): nothing arrives before
    it, then the header's client."""
    start_echod(
        config=config(tagged(port, "banner", "{client}", proxy_protocol="v1", proxy_protocol_from=["127.0.0.1/32"])),
        ready=True,
    )
    with connect(port) as s:
        assert nothing_yet(s), "the banner came before the PROXY header"
        s.sendall(v1("TCP4", *CLIENT4))
        assert read_line(s) == b"203.0.113.7:51234\n"
        s.sendall(b"after\n")
        s.shutdown(socket.SHUT_WR)
        assert read_to_close(s) == (b"after\n", "eof")


def test_banner_on_a_unix_listener_names_the_peer_as_the_log_does(start_echod, tmp_path):
    path = tmp_path / "tag.sock"
    e = start_echod(
        config=config({"address": f"unix:{path}", "tag": "banner", "tag_text": "{client} on {listener}"}), ready=True
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        line = read_line(s).decode()
        s.sendall(b"u")
        assert recv_exactly(s, 1) == b"u"
    peer = f"unix:uid:{os.getuid()},pid:{os.getpid()}"
    assert line == f"{peer} on {listener_label(e.wait_log('echod started'), str(path))}\n"
    assert f"peer={peer}" in e.wait_log("connection opened")


# --- prefix ---------------------------------------------------------------------------------------------------------


def test_prefix_istio_sample(start_echod, port):
    """istio's tcp-echo sample: `echo world | nc HOST 9000` gives `one world`."""
    start_echod(config=config(tagged(port, "prefix", "one")), ready=True)
    out = subprocess.run(f"echo world | nc -N 127.0.0.1 {port}", shell=True, capture_output=True, timeout=10)
    assert out.stdout == b"one world\n"


def test_prefix_several_lines_in_one_send_and_lines_across_sends(start_echod, port):
    """guard: the prefix goes before the first byte of each line, not before each read."""
    start_echod(config=config(tagged(port, "prefix", "one")), ready=True)
    with connect(port) as s:
        s.sendall(b"a\nbb\nccc\n")
        assert recv_exactly(s, 21) == b"one a\none bb\none ccc\n"
        for part in (b"hel", b"lo\nwor", b"ld\n"):
            s.sendall(part)
            time.sleep(0.05)
        assert recv_exactly(s, 20) == b"one hello\none world\n"
        s.sendall(b"\n\n")  # empty lines are lines
        assert recv_exactly(s, 10) == b"one \none \n"


def test_prefix_final_fragment_without_newline_when_the_client_half_closes(start_echod, port):
    """guard: a final fragment is echoed prefixed (unlike istio's sample, which drops it)."""
    start_echod(config=config(tagged(port, "prefix", "one")), ready=True)
    assert nc(port, b"x\ny") == b"one x\none y"
    assert nc(port, b"no newline at all") == b"one no newline at all"


def test_prefix_template_expands(start_echod, port):
    start_echod(config=config(tagged(port, "prefix", "{instance}:"), extra="instance: two\n"), ready=True)
    assert nc(port, b"a\nb\n") == b"two: a\ntwo: b\n"


def test_prefix_streams_a_long_line_without_holding_it_back(start_echod, port):
    """guard: bytes stream out as they come (no line buffer): 16 MiB without a newline come back, prefixed once,
    before the client sends a newline or closes, and echod's RSS does not grow by the line."""
    e = start_echod(config=config(tagged(port, "prefix", "one")), ready=True)
    base = vm_rss_kib(e.pid)
    data = b"x" * (16 << 20)  # 1 MiB is what a line may be in practice; 16 would show in RSS if it were kept
    with connect(port, timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        got = recv_exactly(s, 4 + len(data), timeout=60)
        sender.join(timeout=30)
        growth = vm_rss_kib(e.pid) - base
        assert got[:4] == b"one " and got[4:] == data, "the long line did not stream back prefixed once"
        s.sendall(b"\nnext\n")
        assert recv_exactly(s, 10) == b"\none next\n"
    assert growth < 8 * 1024, f"RSS grew by {growth} KiB while a 16 MiB line streamed through"


# --- hostname-only --------------------------------------------------------------------------------------------------


def test_hostname_only_sends_the_host_name_then_fin(start_echod, port):
    start_echod(config=config(tagged(port, "hostname-only")), ready=True)
    assert nc(port, b"") == HOST.encode() + b"\n"
    assert nc(port, b"ignored\n") == HOST.encode() + b"\n"


def test_hostname_only_discards_what_the_client_sends_without_reset(start_echod, port):
    """guard: after its FIN echod keeps reading (and discarding) until the client closes: the client's later sends
    meet no RST (a full close with unread data would reset the connection)."""
    e = start_echod(config=config(tagged(port, "hostname-only", "{instance}"), extra="instance: edge-1\n"), ready=True)
    with connect(port) as s:
        got, closed = read_to_close(s)
        assert (got, closed) == (b"edge-1\n", "eof")
        for _ in range(5):
            s.sendall(b"discard me " * 1000)  # ECONNRESET/EPIPE here would be the RST
            time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
        assert read_to_close(s) == (b"", "eof")
    assert e.proc.poll() is None


# --- plain listeners next to tagged ones ----------------------------------------------------------------------------


def test_plain_listeners_next_to_tagged_ones_are_byte_exact(start_echod):
    plain, bare, banner, prefix = (free_port() for _ in range(4))
    start_echod(
        config=config(
            f"127.0.0.1:{plain}",
            {"address": f"127.0.0.1:{bare}"},  # a mapping without options: the same as a plain string
            tagged(banner, "banner", "tagged"),
            tagged(prefix, "prefix", "tagged"),
        ),
        ready=True,
    )
    payload = b"line one\nline two\n" + bytes(range(256)) + b"no newline"
    for port in (plain, bare):
        assert nc(port, payload) == payload, f"port {port}"
        with connect(port) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            assert read_to_close(s) == (payload, "eof")
    assert nc(banner, payload) == b"tagged\n" + payload
    lines = payload.split(b"\n")
    assert nc(prefix, payload) == b"\n".join(b"tagged " + line for line in lines)
