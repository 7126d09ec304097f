"""The container image from `make image` (localhost/echod:latest), run for real with podman and runc.

What an operator relies on, checked through podman and the published ports as they would use them:
- `podman run -p` with no extra flags echoes through the published port (echod listens on every interface),
  also where IPv6 is switched off, and under a restricted context (read-only root, no capabilities);
- `podman healthcheck run` reports healthy; /livez and /readyz answer through the published admin port;
- echod runs as uid/gid 65532; the image holds the binary, exactly the libraries `ldd` names for it, their
  Debian copyright files, /etc/passwd, /etc/group and the config: no shell, nothing else;
- the config in the image is config/echod.yaml with only the listen addresses and the admin endpoint changed,
  and no ECHOD_* environment that would override a mounted ConfigMap;
- `podman stop` sends SIGTERM: readiness goes 503, an open connection keeps echoing, and once it closes the
  container exits 0 long before the SIGKILL timeout; logs go to stderr;
- the OCI archive in dist/ is a valid OCI layout with the labels and the run-time configuration.

Podman runs with runc (crun refuses a hybrid cgroup layout) and explicit ulimits (podman's default nofile of
1048576 fails where the hard limit is lower). Each container gets a unique name and is removed afterwards.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import free_port, recv_exactly, seeded_bytes

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/echod:latest"
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"]
REPO_CONFIG = (REPO / "config/echod.yaml").read_text()
REPO_LISTEN = re.search(r"^listen: .*$", REPO_CONFIG, re.M).group(0)
# The image keeps the repository's echo port (on every interface) and adds the admin endpoint on 9090.
ECHO_PORT = int(re.search(r":(\d+)\"", REPO_LISTEN).group(1))
ADMIN_PORT = 9090
STOP_TIMEOUT = 30  # podman stop's SIGKILL deadline: three times the drain timeout, so a kill is unmistakable


def podman(*args, check=True, timeout=60) -> subprocess.CompletedProcess:
    p = subprocess.run([*PODMAN, *args], text=True, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def setup_module():
    if shutil.which("podman") is None:
        pytest.skip("image tests SKIPPED: podman is not installed (make image installs it)", allow_module_level=True)
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(
            f"image tests SKIPPED: {IMAGE} is not in local container storage: run `make image` first",
            allow_module_level=True,
        )


def source_version() -> str:
    text = (REPO / "Sources/EchodDaemon/Daemon.swift").read_text()
    return re.search(r'static let version = "([^"]+)"', text).group(1)


class Running:
    """One `podman run -d` of the image with the echo and admin ports published on free loopback ports."""

    def __init__(self, *options: str):
        self.name = f"echod-image-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.echo_port, self.admin_port = free_port(), free_port()
        podman(
            "run",
            "-d",
            "--name",
            self.name,
            *LIMITS,
            *options,
            "-p",
            f"127.0.0.1:{self.echo_port}:{ECHO_PORT}",
            "-p",
            f"127.0.0.1:{self.admin_port}:{ADMIN_PORT}",
            IMAGE,
        )
        try:
            self.wait_serving()
        except BaseException:
            self.remove()  # the fixture never gets this object to clean up
            raise

    def wait_serving(self, timeout=15.0):
        """Until a round trip through the published echo port works (the port forward exists before echod)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.echo_port), timeout=1) as s:
                    s.sendall(b"ping")
                    if recv_exactly(s, 4, timeout=1) == b"ping":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"no echo through 127.0.0.1:{self.echo_port} within {timeout}s\n{self.logs()}")

    def inspect(self, fmt: str) -> str:
        return podman("inspect", "--format", fmt, self.name).stdout.strip()

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def remove(self):
        podman("rm", "--force", "--time", "0", self.name, check=False)


# What Kubernetes' restricted security context imposes: the image must need none of what it takes away.
RESTRICTED = ["--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges"]


@pytest.fixture(scope="module")
def container():
    c = Running(*RESTRICTED)
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture
def fresh_container():
    c = Running()
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """The image's root filesystem, exported from a created (never started) container."""
    name = f"echod-image-export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("image-root")
    podman("create", "--name", name, IMAGE)
    try:
        tar_path = root.parent / f"{name}.tar"
        podman("export", "--output", str(tar_path), name)
        with tarfile.open(tar_path) as t:
            t.extractall(root, filter="tar")
        tar_path.unlink()
    finally:
        podman("rm", "--force", name, check=False)
    return root


def test_echo_through_published_port_is_byte_exact(container):
    payload = bytes(range(256)) * 256 + b"\x00\r\n" + seeded_bytes(100_000, seed=169)
    with socket.create_connection(("127.0.0.1", container.echo_port), timeout=5) as s:
        # Send while reading, so that neither side's buffers fill up and stall the other.
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = recv_exactly(s, len(payload) + 1)  # one more than sent: the close must follow the last byte
        sender.join()
    assert got == payload


def test_healthcheck_reports_healthy(container):
    test = json.loads(podman("image", "inspect", "--format", "{{json .HealthCheck}}", IMAGE).stdout)["Test"]
    assert test[:2] == ["CMD", "/usr/bin/echod"], f"the HEALTHCHECK must run echod itself (no shell): {test}"
    p = podman("healthcheck", "run", container.name, check=False)
    assert p.returncode == 0, f"podman healthcheck run: {p.returncode} {p.stdout}{p.stderr}\n{container.logs()}"
    assert container.inspect("{{.State.Health.Status}}") == "healthy"


def test_admin_endpoints_answer_through_published_port(container):
    for path in ("/livez", "/readyz"):
        status, body = container.http(path)
        assert (status, body.strip()) == (200, "ok"), f"{path}: {status} {body}"
    status, body = container.http("/metrics")
    assert status == 200 and "echod_connections_accepted_total" in body


def test_process_runs_as_65532(container):
    pid = container.inspect("{{.State.Pid}}")
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    gid = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
    assert uid == ["65532"] * 4 and gid == ["65532"] * 4, status
    assert Path(f"/proc/{pid}/exe").resolve().name == "echod"


def test_serves_where_ipv6_is_switched_off():
    """The image listens on [::] too (IPv6-only and dual-stack clusters need it). Where IPv6 is switched off
    by sysctl, the usual way, binding [::] still works and IPv4 is served. (A kernel booted with
    ipv6.disable=1 has no AF_INET6 at all: there echod skips [::] with a warning and serves IPv4;
    test_real_systemd.py checks that case.)"""
    off = [f"--sysctl=net.ipv6.conf.{i}.disable_ipv6=1" for i in ("all", "default", "lo")]
    c = Running(*off)
    try:
        assert "echo [::]:" in podman("logs", c.name).stderr
    finally:
        c.remove()


def test_image_holds_the_binary_and_exactly_the_libraries_ldd_names(image_files):
    files = sorted(
        str(p.relative_to(image_files)) for p in image_files.rglob("*") if p.is_file() and not p.is_symlink()
    )
    for shell in ("bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox", "usr/bin/busybox"):
        assert not (image_files / shell).exists(), f"{shell} is in the image"
    binaries = [f for f in files if f.startswith(("usr/bin/", "usr/sbin/", "bin/", "sbin/"))]
    assert binaries == ["usr/bin/echod"]

    # ldd on this machine resolves the image's binary to this machine's copies of the same Debian libraries.
    ldd = subprocess.run(["ldd", str(image_files / "usr/bin/echod")], text=True, capture_output=True, check=True)
    needed = set(re.findall(r"^\s*(\S+) => /", ldd.stdout, re.M))
    loader = re.search(r"^\s*(/\S*ld-linux\S*)", ldd.stdout, re.M).group(1)
    libs = {Path(f).name for f in files if "/lib/" in f"/{f}" and ".so" in f}
    assert libs == needed | {Path(loader).name}, f"image libraries {sorted(libs)} vs ldd {ldd.stdout}"
    assert (image_files / loader.lstrip("/")).resolve().is_file(), f"the loader {loader} does not resolve"

    docs = {f for f in files if f.startswith("usr/share/doc/")}
    assert docs and all(f.endswith("/copyright") for f in docs)
    rest = set(files) - set(binaries) - docs - {f for f in files if Path(f).name in libs}
    assert rest == {"etc/passwd", "etc/group", "etc/echod/echod.yaml"}
    assert "65532:65532" in (image_files / "etc/passwd").read_text()


def test_config_is_the_repository_default_listening_everywhere(image_files):
    ours = (image_files / "etc/echod/echod.yaml").read_text().splitlines()
    repo = REPO_CONFIG.splitlines()
    changed = [line for line in ours if line not in repo and not line.startswith("#")]
    assert changed == [f'listen: ["0.0.0.0:{ECHO_PORT}", "[::]:{ECHO_PORT}"]', f'  listen: "0.0.0.0:{ADMIN_PORT}"'], (
        changed
    )
    assert [line for line in repo if line not in ours] == [REPO_LISTEN, "  listen: null"]
    env = json.loads(podman("image", "inspect", "--format", "{{json .Config.Env}}", IMAGE).stdout) or []
    assert not [e for e in env if e.startswith("ECHOD_")], (
        f"ECHOD_* in the image environment would beat the file: {env}"
    )


def test_check_config_in_the_image_reads_the_file():
    p = podman("run", "--rm", *LIMITS, IMAGE, "check-config")
    assert p.returncode == 0, p.stdout + p.stderr
    origin = r"\s+# file /etc/echod/echod\.yaml$"
    assert re.search(rf'^listen: \["0\.0\.0\.0:{ECHO_PORT}", "\[::\]:{ECHO_PORT}"\]{origin}', p.stdout, re.M), p.stdout
    assert re.search(rf'^  listen: "0\.0\.0\.0:{ADMIN_PORT}"{origin}', p.stdout, re.M), p.stdout


def test_stop_drains_then_exits_zero_before_the_kill_timeout(fresh_container):
    c = fresh_container
    with socket.create_connection(("127.0.0.1", c.echo_port), timeout=5) as s:
        s.sendall(b"before")
        assert recv_exactly(s, 6) == b"before"
        started = time.monotonic()
        stop = subprocess.Popen(
            [*PODMAN, "stop", "--time", str(STOP_TIMEOUT), c.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 10
            while "draining connections" not in c.logs() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "signal=SIGTERM" in c.logs(), c.logs()
            assert c.http("/readyz")[0] == 503, "readiness must fail as soon as the drain begins"
            s.sendall(b"during the drain")
            assert recv_exactly(s, 16) == b"during the drain", "an open connection must keep echoing"
            assert stop.poll() is None, "the container stopped while a connection was still open"
        except BaseException:
            stop.kill()
            raise
    stop.wait(timeout=STOP_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    assert stop.returncode == 0, stop.stderr.read()
    assert c.inspect("{{.State.ExitCode}}") == "0", c.logs()
    assert elapsed < 10, f"podman stop took {elapsed:.1f}s: echod did not exit once its last connection closed"
    logs = podman("logs", c.name)
    assert logs.stdout == "", "echod logs to stderr only"
    assert "echod started" in logs.stderr and "echod stopped" in logs.stderr, logs.stderr


def test_oci_archive_is_a_valid_layout_with_labels(container):
    arch = subprocess.run(["dpkg", "--print-architecture"], text=True, capture_output=True, check=True).stdout.strip()
    version = source_version()
    archive = REPO / "dist" / f"echod_{version}_{arch}.oci.tar"
    assert archive.is_file(), f"{archive} missing: make image writes it"
    with tarfile.open(archive) as t:
        names = set(t.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.load(t.extractfile("index.json"))
    assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed: the archive's labels are not checked (make image installs it)")
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{archive}"], text=True, capture_output=True, check=True
        ).stdout
    )
    labels = info["Labels"]
    reported = podman("run", "--rm", *LIMITS, IMAGE, "--version").stdout.strip()
    assert labels["org.opencontainers.image.version"] == version and version in reported
    for key in ("revision", "source", "created", "title", "description", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"label {key} missing: {labels}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert info["Architecture"] == arch and info["Os"] == "linux"
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci-archive:{archive}"], text=True, capture_output=True, check=True
        ).stdout
    )["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/bin/echod"]
    assert config["StopSignal"] == "SIGTERM"
    assert set(config["ExposedPorts"]) == {f"{ECHO_PORT}/tcp", f"{ADMIN_PORT}/tcp"}


def test_rebuild_from_the_same_inputs_gives_the_same_image_id(tmp_path):
    """Two builds of one commit give one image ID: file times and the creation time come from
    SOURCE_DATE_EPOCH, and nothing of the build's own identity (buildah's working container) is kept."""
    arch = subprocess.run(["dpkg", "--print-architecture"], text=True, capture_output=True, check=True).stdout.strip()
    inventory_path = REPO / "dist" / f"echod_{source_version()}_{arch}.image.json"
    if not inventory_path.is_file():
        pytest.skip(f"reproducibility not checked: {inventory_path} is missing (make image writes it)")
    inventory = json.loads(inventory_path.read_text())
    args = inventory["build_args"]
    binary = REPO / args[args.index("--binary") + 1]
    if hashlib.sha256(binary.read_bytes()).hexdigest() != inventory["binary_sha256"]:
        pytest.skip(f"reproducibility not checked: {binary} changed since make image (run make image again)")
    name = f"localhost/echod-repro-check-{os.getpid()}"
    for option, value in (
        ("--name", name),
        ("--archive", str(tmp_path / "a.oci.tar")),
        ("--manifest", str(tmp_path / "inventory.json")),
    ):
        args[args.index(option) + 1] = value
    tag, latest = args[args.index("--tag") + 1], args[args.index("--latest-tag") + 1]
    try:
        subprocess.run(
            [sys.executable, str(REPO / "deploy/container/build_image.py"), *args],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=180,
        )
        rebuilt = json.loads((tmp_path / "inventory.json").read_text())["image_id"]
    finally:
        # Removes only these tags when the rebuild is the same image as make image's.
        podman("rmi", f"{name}:{tag}", f"{name}:{latest}", check=False)
    assert rebuilt == inventory["image_id"]
