#!/usr/bin/env python3
"""What restart.keep_connections costs, and how long a client waits across a restart, under a real systemd.

Boots systemd in a container (Tests/e2e/nspawn.py: needs root, systemd-nspawn and writable cgroups), installs the
shipped unit, and measures echod with keeping on and off, alternating, in the same run:

- pingpong (64 B, 50 connections) and connect (10 connectors) rates, with `echod bench` inside the container;
- the cost per long-lived connection: CPU time of echod and of systemd (PID 1 of the container) while 1,000
  connections open, echo once, stay open long enough to be stored, and close;
- the restart gap: 200 pingpong connections run while `systemctl restart echod` is repeated; for each connection,
  the longest wait for an echo that spanned a restart. Reported as p50, p99 and max over the connections.

Loopback only (the container's own network namespace); every loop is bounded in count and time.
Usage: sudo python3 bench/keep_connections.py [--echod PATH] [--rounds N] [--restarts N] [--json FILE]
"""

import argparse
import json
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "e2e"))
from nspawn import Container  # noqa: E402

PORT = 7
DROP_IN = "/etc/systemd/system/echod.service.d/keep.conf"


def set_keeping(c: Container, on: bool) -> None:
    # Many restarts in a row: without StartLimitIntervalSec=0 systemd refuses the sixth within 10 s.
    value = "true" if on else "false"
    c.write(
        DROP_IN, f"[Unit]\nStartLimitIntervalSec=0\n[Service]\nEnvironment=ECHOD_RESTART_KEEP_CONNECTIONS={value}\n"
    )
    c.run("systemctl", "daemon-reload", check=True)
    c.run("systemctl", "restart", "echod", check=True)


def bench(c: Container, *args: str) -> float:
    target = f"127.0.0.1:{PORT}"
    r = c.run("/opt/echod/echod", "bench", target, "--duration", "2s", "--warmup", "300ms", "--json", *args)
    if r.returncode != 0:
        raise RuntimeError(f"echod bench {args}: {r.returncode}\n{r.stdout}\n{r.stderr}")
    return float(json.loads(r.stdout)["ops_per_s"])


def cpu_seconds(c: Container, pid: int) -> float:
    fields = c.path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 10 ms


def main_pid(c: Container) -> int:
    return int(c.show("echod.service", "MainPID")["MainPID"])


def long_lived_cost(c: Container, count: int = 1000) -> tuple[float, float]:
    """CPU seconds of echod and of PID 1 while `count` connections open, echo, are held 0.5 s and close."""
    pid = main_pid(c)
    before = cpu_seconds(c, pid), cpu_seconds(c, 1)

    def run():
        socks = [socket.create_connection(("127.0.0.1", PORT), timeout=5) for _ in range(count)]
        for s in socks:
            s.sendall(b"x")
        for s in socks:
            assert s.recv(1) == b"x"
        time.sleep(0.5)
        for s in socks:
            s.close()
        time.sleep(0.5)

    c.in_netns(run).result()
    return cpu_seconds(c, pid) - before[0], cpu_seconds(c, 1) - before[1]


def restart_gaps(c: Container, connections: int, restarts: int) -> dict:
    """Per connection, the longest wait for an echo; pingpong runs throughout `restarts` restarts."""
    stop = threading.Event()
    longest = [0.0] * connections
    errors = []

    def clients():
        sel = selectors.DefaultSelector()
        socks = [socket.create_connection(("127.0.0.1", PORT), timeout=5) for _ in range(connections)]
        sent_at = [0.0] * connections
        got = [b""] * connections
        for i, s in enumerate(socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
            s.send(b"%08d" % i)
            sent_at[i] = time.monotonic()
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                i = key.data
                data = socks[i].recv(64)
                if not data:
                    errors.append(f"connection {i} closed")
                    sel.unregister(socks[i])
                    continue
                got[i] += data
                if len(got[i]) >= 8:
                    if got[i][:8] != b"%08d" % i:
                        errors.append(f"connection {i}: {got[i]!r}")
                    got[i] = got[i][8:]
                    now = time.monotonic()
                    longest[i] = max(longest[i], now - sent_at[i])
                    socks[i].send(b"%08d" % i)
                    sent_at[i] = now
        for s in socks:
            s.close()

    t = threading.Thread(target=lambda: c.in_netns(clients).result())
    t.start()
    time.sleep(1.0)
    durations = []
    for _ in range(restarts):
        started = time.monotonic()
        c.run("systemctl", "restart", "echod", check=True)
        durations.append(time.monotonic() - started)
        time.sleep(0.5)
    stop.set()
    t.join()
    ordered = sorted(longest)
    return {
        "connections": connections,
        "restarts": restarts,
        "gap_ms_p50": 1000 * ordered[len(ordered) // 2],
        "gap_ms_p99": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "gap_ms_max": 1000 * ordered[-1],
        "systemctl_restart_s_median": statistics.median(durations),
        "errors": errors[:10],
        "error_count": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--echod", default=str(REPO / ".build" / "release" / "echod"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    problem = Container.unavailable()
    if problem:
        print(f"keep_connections bench skipped: {problem}", file=sys.stderr)
        return 2
    binary = Path(args.echod).resolve()
    units = Path(tempfile.mkdtemp(prefix="echod-keep-units-"))
    for name in ("echod.service", "echod.socket"):
        shutil.copy(REPO / "deploy" / name, units / name)
    result: dict = {"echod": str(binary), "date": time.strftime("%Y-%m-%d")}
    with Container(units=units, binds={"/opt/echod": binary.parent}) as c:
        c.symlink("/usr/local/bin/echod", f"/opt/echod/{binary.name}")
        c.write("/etc/echod/echod.yaml", f"listen: ['127.0.0.1:{PORT}']\nthreads: 1\n")
        c.run("systemctl", "daemon-reload", check=True)
        c.run("systemctl", "start", "echod", check=True)
        samples: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                set_keeping(c, mode == "on")
                s = samples[mode]
                s.setdefault("pingpong_c50", []).append(bench(c, "--connections", "50"))
                s.setdefault("connect_c10", []).append(bench(c, "--mode", "connect", "--connections", "10"))
                echod_cpu, pid1_cpu = long_lived_cost(c)
                s.setdefault("long_lived_echod_cpu_s", []).append(echod_cpu)
                s.setdefault("long_lived_pid1_cpu_s", []).append(pid1_cpu)
        for key in samples["on"]:
            on, off = statistics.median(samples["on"][key]), statistics.median(samples["off"][key])
            result[key] = {"on": on, "off": off, "ratio_on_off": on / off if off else None, "samples": samples}
            del result[key]["samples"]
        per_connection = {
            "echod_us": 1e6 * (result["long_lived_echod_cpu_s"]["on"] - result["long_lived_echod_cpu_s"]["off"]) / 1000,
            "systemd_us": 1e6 * (result["long_lived_pid1_cpu_s"]["on"] - result["long_lived_pid1_cpu_s"]["off"]) / 1000,
        }
        result["per_long_lived_connection_cpu"] = per_connection
        set_keeping(c, True)
        result["restart_gap"] = restart_gaps(c, connections=200, restarts=args.restarts)
    for key in ("pingpong_c50", "connect_c10"):
        r = result[key]
        ratio = r["ratio_on_off"]
        print(f"{key}: on {r['on']:.0f}/s, off {r['off']:.0f}/s, ratio {ratio:.3f} (median of {args.rounds})")
    print(
        f"per long-lived connection: echod {per_connection['echod_us']:.1f} us, "
        f"systemd {per_connection['systemd_us']:.1f} us of CPU "
        "(open, store, close, remove; 10 ms tick resolution over 1,000 connections)"
    )
    g = result["restart_gap"]
    print(
        f"restart gap: p50 {g['gap_ms_p50']:.0f} ms, p99 {g['gap_ms_p99']:.0f} ms, max {g['gap_ms_max']:.0f} ms "
        f"over {g['connections']} connections, {g['restarts']} restarts (systemctl restart median "
        f"{g['systemctl_restart_s_median'] * 1000:.0f} ms); errors: {g['error_count']}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if g["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
