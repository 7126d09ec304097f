#!/usr/bin/env python3
"""What the PROXY protocol costs echod per connection: the connection rate of `echod bench --mode connect` against
one echod with two listeners, a plain one and one with `proxy_protocol: v2` (or v1), as a ratio.

    proxy_cost.py [--echod PATH] [--runs N] [--duration 3s] [--connections 4] [--version v2] [--plain-only] [--json]

Both listeners belong to one echod process (one loop thread, log level warning), so that both halves meet the same
server. The runs alternate (plain, proxied, proxied, plain, ...) so that a drift of the machine's load falls on both
halves alike; each run is `echod bench --mode connect` (connect, one 64-byte echo, close), with
`--proxy-protocol VERSION` against the proxied listener: every connection then starts with a header claiming its own
client address (198.18.0.0/15) and the connection's real port. Reported: the median connections/s of each half over N
runs, and their ratio (proxied / plain), with the median, lowest and highest ratio of the N adjacent pairs.

Loopback only (127.0.0.1); N at most 20 and each run at most 10 s; the echod started here is stopped by its PID.
`--plain-only` runs the plain half alone (for an echod without the PROXY protocol listener options).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from race.procs import free_port

REPO = Path(__file__).resolve().parents[1]


def find_echod(explicit):
    for candidate in (
        explicit,
        os.environ.get("ECHOD_BIN"),
        REPO / ".build/release/echod",
        REPO / ".build/debug/echod",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    sys.exit("proxy_cost: no echod binary: build it (make release) or give --echod PATH")


def config_text(plain, proxied, version, plain_only):
    lines = ["threads: 1", "log:", "  level: warning", "listen:", f'  - "127.0.0.1:{plain}"']
    if not plain_only:
        lines += [
            f'  - address: "127.0.0.1:{proxied}"',
            f"    proxy_protocol: {version}",
            '    proxy_protocol_from: ["127.0.0.1/32"]',
        ]
    return "\n".join(lines) + "\n"


def wait_listening(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            # A bare connect and close: on the proxied listener this is one connection closed in its header phase.
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def bench_once(echod, port, args, version=None):
    command = [echod, "bench", f"127.0.0.1:{port}", "--mode", "connect", "--json"]
    command += ["--connections", str(args.connections), "--duration", args.duration, "--warmup", args.warmup]
    if version:
        command += ["--proxy-protocol", version]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    report = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    if out.returncode != 0 or report.get("errors_total", 1) != 0:
        sys.exit(f"proxy_cost: bench against port {port} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return float(report["ops_per_s"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--echod", help="the echod binary (default: $ECHOD_BIN, .build/release/echod, .build/debug/echod)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each half, 1-20 (default 5)")
    parser.add_argument("--duration", default="3s", help="measured time of each run, at most 10s (default 3s)")
    parser.add_argument("--warmup", default="500ms", help="warm-up of each run (default 500ms)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connectors (default 4)")
    parser.add_argument("--version", choices=["v1", "v2"], default="v2", help="the header version (default v2)")
    parser.add_argument("--plain-only", action="store_true", help="the plain half only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    seconds = float(args.duration.rstrip("s")) if args.duration.endswith("s") and "m" not in args.duration else None
    if seconds is None or not 0 < seconds <= 10:
        parser.error("--duration must be in seconds, at most 10s (e.g. 3s)")

    echod = find_echod(args.echod)
    plain, proxied = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="proxy-cost-") as tmp, open(Path(tmp) / "echod.log", "w+") as log:
        config = Path(tmp) / "echod.yaml"
        config.write_text(config_text(plain, proxied, args.version, args.plain_only))
        server = subprocess.Popen([echod, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            ports = [plain] if args.plain_only else [plain, proxied]
            if not all(wait_listening(port, server) for port in ports):
                log.seek(0)
                sys.exit(
                    f"proxy_cost: echod did not listen on {ports}; its output:\n{log.read()}"
                    "(an echod without PROXY protocol listeners can still run --plain-only)"
                )
            results = {"plain": [], "proxied": []}
            for run in range(args.runs):
                halves = ["plain", "proxied"] if run % 2 == 0 else ["proxied", "plain"]
                for half in halves:
                    if half == "proxied" and args.plain_only:
                        continue
                    port, version = (plain, None) if half == "plain" else (proxied, args.version)
                    results[half].append(bench_once(echod, port, args, version))
                    if not args.json:
                        print(
                            f"run {run + 1}/{args.runs} {half:8} {results[half][-1]:>12,.1f} connections/s", flush=True
                        )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    summary = {
        "echod": echod,
        "runs": args.runs,
        "duration": args.duration,
        "connections": args.connections,
        "version": None if args.plain_only else args.version,
        "plain": results["plain"],
        "proxied": results["proxied"],
        "plain_median": statistics.median(results["plain"]),
    }
    if not args.plain_only:
        pairs = [p / q for p, q in zip(results["proxied"], results["plain"], strict=True)]
        summary |= {
            "proxied_median": statistics.median(results["proxied"]),
            "ratio": statistics.median(results["proxied"]) / summary["plain_median"],
            "pair_ratio_median": statistics.median(pairs),
            "pair_ratio_min": min(pairs),
            "pair_ratio_max": max(pairs),
        }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"plain    median {summary['plain_median']:>12,.1f} connections/s")
    if not args.plain_only:
        print(f"proxied  median {summary['proxied_median']:>12,.1f} connections/s (PROXY protocol {args.version})")
        print(
            f"ratio    {summary['ratio']:.3f} (per adjacent pair: median {summary['pair_ratio_median']:.3f}, "
            f"{summary['pair_ratio_min']:.3f}-{summary['pair_ratio_max']:.3f})"
        )


if __name__ == "__main__":
    main()
