"""The shipped unit files (deploy/) checked like code: `systemd-analyze verify` and `systemd-analyze security`.

No systemd needs to run: both work offline on the files. `verify` insists that ExecStart='s program exists, so the
units are checked from a temporary copy in which /usr/local/bin/echod is replaced by a real executable file (a copy
of /bin/true named echod); nothing else in them is changed.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALLED_PATH = "/usr/local/bin/echod"
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package: systemd): the unit files cannot be checked",
)


def run(*args, cwd=None, env=None):
    full_env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", SYSTEMD_LOG_COLOR="0", **(env or {}))
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def units(tmp_path):
    """A copy of deploy/'s units whose ExecStart= names an executable that exists."""
    program = tmp_path / "bin" / "echod"
    program.parent.mkdir()
    shutil.copy("/bin/true", program)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for name in ("echod.service", "echod.socket", "echod-udp.socket"):
        text = (DEPLOY / name).read_text()
        (unit_dir / name).write_text(text.replace(INSTALLED_PATH, str(program)))
    return unit_dir


def test_service_runs_the_installed_path():
    text = (DEPLOY / "echod.service").read_text()
    assert re.search(r"^ExecStart=/usr/local/bin/echod --config /etc/echod/echod.yaml$", text, re.M)


def test_verify_prints_nothing(units):
    # The socket together with its service: Service= and the trigger relation are only checked that way.
    result = run("systemd-analyze", "verify", str(units / "echod.socket"), str(units / "echod.service"))
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values; they only show up as output.
    assert result.stdout + result.stderr == ""


def test_verify_udp_socket_prints_nothing(units):
    result = run("systemd-analyze", "verify", str(units / "echod-udp.socket"), str(units / "echod.service"))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_udp_socket_passes_a_datagram_socket_named_udp():
    text = (DEPLOY / "echod-udp.socket").read_text()
    assert re.findall(r"^ListenDatagram=(\S+)$", text, re.M) == ["127.0.0.1:8888"]
    assert re.findall(r"^Listen\w+=", text, re.M) == ["ListenDatagram="]
    assert re.search(r"^FileDescriptorName=udp$", text, re.M)
    assert re.search(r"^Service=echod\.service$", text, re.M)


def test_verify_socket_only_drop_in_prints_nothing(units):
    drop_in = units / "echod.service.d"
    drop_in.mkdir()
    shutil.copy(DEPLOY / "echod-socket-only.conf", drop_in / "socket-only.conf")
    result = run("systemd-analyze", "verify", str(units / "echod.socket"), str(units / "echod.service"))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def exposure(unit_file):
    result = run("systemd-analyze", "security", "--offline=true", str(unit_file))
    match = re.search(r"Overall exposure level for echod\.service: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1)), result


def test_security_exposure_is_ok(units):
    score, result = exposure(units / "echod.service")
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{result.stdout}"


def test_security_threshold_exit_code(units):
    # --threshold uses the 0-100 scale: 15 is the printed 1.5.
    result = run("systemd-analyze", "security", "--offline=true", "--threshold=15", str(units / "echod.service"))
    assert result.returncode == 0, result.stdout
    # And the check can fail: a threshold below the score must give a non-zero exit.
    result = run("systemd-analyze", "security", "--offline=true", "--threshold=1", str(units / "echod.service"))
    assert result.returncode != 0


def test_socket_only_drop_in_lowers_exposure(units):
    base, _ = exposure(units / "echod.service")
    drop_in = units / "echod.service.d"
    drop_in.mkdir()
    shutil.copy(DEPLOY / "echod-socket-only.conf", drop_in / "socket-only.conf")
    hardened, result = exposure(units / "echod.service")
    assert hardened < base and hardened <= 0.5, result.stdout


def test_socket_passes_both_ports_named_echo():
    text = (DEPLOY / "echod.socket").read_text()
    assert re.findall(r"^ListenStream=(\S+)$", text, re.M) == ["7", "8888"]
    assert re.search(r"^FileDescriptorName=echo$", text, re.M)
    assert re.search(r"^Service=echod\.service$", text, re.M)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed: install.mk cannot be checked")
def test_install_mk_stages_units_with_prefix_and_keeps_config(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(DEPLOY, project / "deploy")
    (project / "config").mkdir()
    (project / "config" / "echod.yaml").write_text("shipped: true\n")
    (project / "Makefile").write_text("include deploy/install.mk\n")
    binary = tmp_path / "echod-build"
    shutil.copy("/bin/true", binary)
    stage = tmp_path / "stage"
    make = ["make", "-C", str(project), f"DESTDIR={stage}", "PREFIX=/opt/echod", f"ECHOD_BIN={binary}"]

    result = run(*make, "install")
    assert result.returncode == 0, result.stderr
    assert os.access(stage / "opt/echod/bin/echod", os.X_OK)
    service = (stage / "etc/systemd/system/echod.service").read_text()
    assert "ExecStart=/opt/echod/bin/echod --config /etc/echod/echod.yaml" in service
    assert INSTALLED_PATH not in service
    assert (stage / "etc/systemd/system/echod.socket").exists()
    assert (stage / "etc/echod/echod.yaml").read_text() == "shipped: true\n"

    (stage / "etc/echod/echod.yaml").write_text("edited: by the admin\n")
    assert run(*make, "install").returncode == 0
    assert (stage / "etc/echod/echod.yaml").read_text() == "edited: by the admin\n"

    assert run(*make, "uninstall").returncode == 0
    assert not (stage / "opt/echod/bin/echod").exists()
    assert not (stage / "etc/systemd/system/echod.service").exists()
    assert (stage / "etc/echod/echod.yaml").exists()
