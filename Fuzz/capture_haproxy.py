#!/usr/bin/env python3
"""Captures the PROXY protocol headers a real HAProxy sends, as seeds for FuzzProxyProtocol and fixtures for the tests.

HAProxy (Debian's `haproxy`) runs in the foreground on loopback with one frontend per case; each frontend's backend is a
listener of this script that records every byte it receives. A client connects to the frontend, sends "hello\\n" and
closes; the recorded bytes (the header, then the client's data) go to Fuzz/corpus/FuzzProxyProtocol/haproxy-CASE, and
their hex is printed for Tests/EchodProxyProtocolTests/HAProxyCaptureTests.swift.

    python3 Fuzz/capture_haproxy.py            # needs haproxy and openssl on the PATH; writes the seeds

Ports are taken free from the kernel; everything listens on 127.0.0.1, ::1 or a temporary Unix socket; HAProxy is
ended by its PID at the end.
"""

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "FuzzProxyProtocol"
CLIENT_DATA = b"hello\n"


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Recorder:
    """A backend that records the bytes of each connection it accepts (the first connection is the one kept)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.captures: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := conn.recv(65536):
                        data += chunk
                self.captures.append(data)


def make_certificate(folder: Path) -> Path:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=echo.example",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = folder / "haproxy.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    return pem


def main():
    folder = Path(tempfile.mkdtemp(prefix="capture-haproxy-"))
    pem = make_certificate(folder)
    unix_v1, unix_v2 = folder / "v1.sock", folder / "v2.sock"
    # name: (bind line, server options, how the client connects)
    cases = {
        "v1-tcp4": (f"bind 127.0.0.1:{free_port()}", "send-proxy", "tcp4"),
        "v1-tcp6": (f"bind [::1]:{free_port(socket.AF_INET6, '::1')}", "send-proxy", "tcp6"),
        "v1-mapped": (f"bind :::{free_port(socket.AF_INET6, '::')} v4v6", "send-proxy", "tcp4"),
        "v1-unix": (f"bind unix@{unix_v1}", "send-proxy", "unix"),
        "v2-tcp4": (f"bind 127.0.0.1:{free_port()}", "send-proxy-v2", "tcp4"),
        "v2-tcp6": (f"bind [::1]:{free_port(socket.AF_INET6, '::1')}", "send-proxy-v2", "tcp6"),
        "v2-unix": (f"bind unix@{unix_v2}", "send-proxy-v2", "unix"),
        "v2-tlvs": (
            f"bind 127.0.0.1:{free_port()}",
            "send-proxy-v2 proxy-v2-options crc32c,unique-id",
            "tcp4",
        ),
        "v2-ssl": (
            f"bind 127.0.0.1:{free_port()} ssl crt {pem} alpn h2,http/1.1",
            "send-proxy-v2-ssl-cn proxy-v2-options crc32c,authority,unique-id,ssl-cipher",
            "tls",
        ),
    }
    recorders = {name: Recorder() for name in cases}
    config = [
        "global",
        "  maxconn 100",
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        "  timeout client 5s",
        "  timeout server 5s",
        '  unique-id-format "%{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt"',
    ]
    for name, (bind, options, _) in cases.items():
        config += [
            f"frontend fe-{name}",
            f"  {bind}",
            f"  default_backend be-{name}",
            f"backend be-{name}",
            f"  server s 127.0.0.1:{recorders[name].port} {options}",
        ]
    # A health check with the PROXY protocol: HAProxy marks its own connections LOCAL.
    local = Recorder()
    config += [
        "backend be-local",
        f"  server s 127.0.0.1:{local.port} send-proxy-v2 check check-send-proxy inter 60s",
    ]
    (folder / "haproxy.cfg").write_text("\n".join(config) + "\n")
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(folder / "haproxy.cfg")])
    try:
        wait_listening(cases["v1-tcp4"][0])
        for name, (bind, _, how) in cases.items():
            try:
                connect(bind, how)
            except OSError as e:
                sys.exit(f"{name}: cannot connect to {bind}: {e}")
        time.sleep(1.5)
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
    CORPUS.mkdir(parents=True, exist_ok=True)
    results = {name: recorder.captures[0] for name, recorder in recorders.items() if recorder.captures}
    if local.captures:
        results["v2-local"] = local.captures[0]
    for name, data in sorted(results.items()):
        (CORPUS / f"haproxy-{name}").write_bytes(data)
        print(f'("{name}", "{data.hex()}"),')
    missing = sorted(set(cases) - set(results))
    if missing:
        sys.exit(f"no capture for {missing}")


def wait_listening(bind: str):
    port = int(bind.rsplit(":", 1)[1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    sys.exit("haproxy is not listening after 20 s")


def connect(bind: str, how: str):
    target = bind.split()[1]
    if how == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target.removeprefix("unix@"))
    else:
        host, port = target.rsplit(":", 1)
        host = host.strip("[]")
        if how == "tcp6":
            s = socket.create_connection((host, int(port)))
        else:
            s = socket.create_connection(("127.0.0.1", int(port)))
    if how == "tls":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        s = context.wrap_socket(s, server_hostname="echo.example")
    s.sendall(CLIENT_DATA)
    time.sleep(0.2)
    s.close()


if __name__ == "__main__":
    os.umask(0o077)
    main()
