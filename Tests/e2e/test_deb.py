"""The Debian package (`make deb`), installed for real: apt-get in a booted systemd (nspawn.py), lintian, byte-for-byte
reproducibility, and the package's contents against the repository's own files.

The package under test is dist/echod_VERSION-1_ARCH.deb, or $ECHOD_DEB (a package built from this checkout);
`make test-shipping` builds it with `make deb` first, and this module skips loudly when there is none. The module
builds two more from the same release binary with `make deb-package` (the packaging step alone, about 20 s, both at
once): revision 2, the "upgrade", and revision 1 again, whose bytes must equal the first build's.

In the container (the machine's own root file system, read-only under a tmpfs overlay, private network), the
package's directory is bound read-only and installed with `apt-get install /opt/deb/1/echod_*.deb`: the dependencies
must already be on the machine, and apt's output must show nothing fetched but the file itself (apt-get's
--no-download cannot say it: it refuses local .deb files). One container serves the install checks and then the whole
life cycle (upgrade, remove, purge), in file order.
"""

import email.utils
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import seeded_bytes
from nspawn import Container

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RELEASE_BIN = REPO / ".build" / "release" / "echod"
CONFIG = "/etc/echod/echod.yaml"
# The port of config/echod.yaml's default listen addresses (test_contents_come_from_the_repo checks it).
ECHO_PORT = 8888
MAX_EXPOSURE = 1.5
COMPLETIONS = {
    "bash": "/usr/share/bash-completion/completions/echod",
    "zsh": "/usr/share/zsh/vendor-completions/_echod",
    "fish": "/usr/share/fish/vendor_completions.d/echod.fish",
}


def upstream_version() -> str:
    text = (REPO / "Sources" / "EchodDaemon" / "Daemon.swift").read_text()
    match = re.search(r'static let version = "([^"]+)"', text)
    assert match, "no `static let version` in Daemon.swift"
    return match.group(1)


def deb_name(revision: int) -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    return f"echod_{upstream_version()}-{revision}_{arch}.deb"


@pytest.fixture(scope="module")
def deb() -> Path:
    path = Path(os.environ.get("ECHOD_DEB") or REPO / "dist" / deb_name(1))
    if not path.is_file():
        pytest.skip(f"Debian package tests skipped: no package at {path} (run `make deb`, or set ECHOD_DEB)")
    return path.resolve()


def make(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "-s", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def rebuilds(deb, tmp_path_factory) -> dict[str, Path]:
    """{"upgrade": revision 2, "again": revision 1 once more}, packaged from the binary dist's package was made of."""
    if RELEASE_BIN.exists() and RELEASE_BIN.stat().st_mtime > deb.stat().st_mtime:
        pytest.fail(f"{deb} is older than {RELEASE_BIN}: it was not built from this binary; run `make deb` again")
    # The other builds take the date and the commit the changelog names from dist's package, so that the comparison
    # holds while HEAD moves on (the package's inputs are the binary, the repository's files, the date and the commit).
    changelog = subprocess.run(
        f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/share/doc/echod/changelog.Debian.gz | gzip -dc",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commit = re.search(r"built from commit (\S+)\.", changelog)
    date = re.search(r"^ -- .*>  (.+)$", changelog, re.M)
    assert commit and date, changelog
    inputs = [
        f"DEB_COMMIT={commit.group(1)}",
        f"SOURCE_DATE_EPOCH={int(email.utils.parsedate_to_datetime(date.group(1)).timestamp())}",
    ]
    jobs = {"upgrade": ("2", tmp_path_factory.mktemp("deb-rev2")), "again": ("1", tmp_path_factory.mktemp("deb-again"))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                make, "deb-package", f"DEB_REVISION={revision}", f"DEB_DIST={out}", f"DEB_STAGE={out}/stage", *inputs
            )
            for name, (revision, out) in jobs.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    for name, result in results.items():
        assert result.returncode == 0, f"make deb-package ({name}) failed:\n{result.stdout}{result.stderr}"
    return {name: out / deb_name(int(revision)) for name, (revision, out) in jobs.items()}


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_man(page: Path) -> str:
    """The page as `man` shows it, wide enough that no option name is hyphenated across lines."""
    result = subprocess.run(
        ["man", "-l", "-P", "cat", str(page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "250", "MAN_KEEP_FORMATTING": ""},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def dotted_keys(rendered_config: str) -> list[str]:
    """Every leaf key of `echod check-config`'s YAML-shaped output, as a dotted path (limits.max_connections)."""
    keys, path = [], []
    for line in rendered_config.splitlines():
        match = re.match(r"^( *)([A-Za-z0-9_]+):(.*)$", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        del path[depth:]
        value = match.group(3).split("#", 1)[0].strip()
        if value:
            keys.append(".".join(path + [match.group(2)]))
        else:
            path.append(match.group(2))
    return keys


# -- the package as built ---------------------------------------------------------------------------------------


def test_lintian_reports_no_errors_or_warnings(deb):
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (Debian package lintian; make deb installs it)")
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True, timeout=180
    )
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


def test_lintian_overrides_each_say_why():
    lines = (DEPLOY / "debian" / "echod.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("# "), f"override without a reason above it: {line}"


def test_two_builds_from_one_commit_are_byte_identical(deb, rebuilds):
    assert sha256(rebuilds["again"]) == sha256(deb), (
        f"{rebuilds['again']} differs from {deb}: run diffoscope on the two to see where"
    )


def test_contents_come_from_the_repo(unpacked):
    for unit in ("echod.service", "echod.socket"):
        expected = (DEPLOY / unit).read_text().replace("/usr/local/bin/echod", "/usr/bin/echod")
        assert (unpacked / "lib/systemd/system" / unit).read_text() == expected, unit
    assert "ExecStart=/usr/bin/echod " in (unpacked / "lib/systemd/system/echod.service").read_text()
    assert (unpacked / CONFIG.lstrip("/")).read_text() == (REPO / "config" / "echod.yaml").read_text()
    assert (unpacked / "usr/share/doc/echod/examples/echod-socket-only.conf").read_text() == (
        DEPLOY / "echod-socket-only.conf"
    ).read_text()
    assert (unpacked / "DEBIAN" / "conffiles").read_text().split() == [CONFIG]
    listen = re.search(r"^listen: (.*)$", (REPO / "config" / "echod.yaml").read_text(), re.M).group(1)
    assert f"127.0.0.1:{ECHO_PORT}" in listen, f"the test expects echo on {ECHO_PORT}; config/echod.yaml has {listen}"
    result = subprocess.run([str(unpacked / "usr/bin/echod"), "--version"], capture_output=True, text=True, timeout=10)
    assert result.stdout.strip() == upstream_version()


def test_every_config_key_is_in_echod_yaml_5(unpacked):
    result = subprocess.run(
        [str(unpacked / "usr/bin/echod"), "check-config", "--config", str(REPO / "config" / "echod.yaml")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    keys = dotted_keys(result.stdout)
    assert len(keys) >= 10 and "limits.max_connections" in keys, result.stdout
    page = render_man(unpacked / "usr/share/man/man5/echod.yaml.5.gz")
    missing = [key for key in keys if not re.search(rf"^\s+{re.escape(key)} \(default: ", page, re.M)]
    assert not missing, f"keys echod check-config prints but echod.yaml(5) does not document: {missing}\n{page}"


def test_echod_8_documents_every_subcommand_and_option(unpacked):
    dump = subprocess.run(
        [str(unpacked / "usr/bin/echod"), "--experimental-dump-help"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    page = render_man(unpacked / "usr/share/man/man8/echod.8.gz")
    missing = []

    def walk(command):
        for argument in command.get("arguments", []):
            for name in argument.get("names", []):
                if name["kind"] == "long" and f"--{name['name']}" not in page:
                    missing.append(f"{command['commandName']} --{name['name']}")
        for sub in command.get("subcommands", []):
            if not re.search(rf"^\s+{re.escape(sub['commandName'])}\s", page, re.M):
                missing.append(sub["commandName"])
            walk(sub)

    walk(json.loads(dump)["command"])
    assert not missing, f"not in echod(8): {missing}"


def test_copyright_names_every_pinned_swift_package():
    resolved = REPO / "Package.resolved"
    if not resolved.exists():
        pytest.skip("no Package.resolved (SwiftPM writes it at the first build): nothing to compare with")
    pins = [pin["identity"] for pin in json.loads(resolved.read_text())["pins"]]
    copyright_text = (DEPLOY / "debian" / "copyright").read_text().lower()
    missing = [pin for pin in pins if f".build/checkouts/{pin.lower()}/" not in copyright_text]
    assert not missing, f"linked into echod but not in deploy/debian/copyright: {missing}"


# -- installed in a booted systemd ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box(deb, rebuilds, tmp_path_factory):
    units = tmp_path_factory.mktemp("deb-units")  # nspawn.py puts its boot target here; the package brings the units
    with Container(units=units, binds={"/opt/deb/1": deb.parent, "/opt/deb/2": rebuilds["upgrade"].parent}) as c:
        # This machine's image was built by Docker, whose /usr/sbin/policy-rc.d ("exit 101") forbids maintainer
        # scripts to start services; a Debian host has none. Removed in the container's overlay only.
        policy = c.path("/usr/sbin/policy-rc.d")
        if policy.exists():
            policy.unlink()
        state = c.run("dpkg-query", "-W", "-f=${Status}", "echod").stdout
        assert "installed" not in state, f"echod is already installed here ({state}): cannot test a fresh install"
        yield c


def apt_get(c, *args: str) -> str:
    result = c.run("apt-get", "-y", "-q", *args, env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"apt-get {' '.join(args)} exited {result.returncode}\n{output}"
    # No network in the container, but say it plainly: every "Get:" is the local file, and nothing is left to fetch.
    remote = [line for line in output.splitlines() if line.startswith("Get:") and not re.match(r"Get:\d+ /", line)]
    assert not remote, f"apt-get fetched from a repository:\n{output}"
    assert "Need to get" not in output or "Need to get 0 B" in output, output
    return output


def echo_roundtrip(c, payload: bytes) -> bytes:
    with c.connect(ECHO_PORT) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def wait_active(c, unit: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.run("systemctl", "is-active", unit).stdout.strip() == "active":
            return
        time.sleep(0.1)
    raise AssertionError(f"{unit} not active after {timeout}s\n{c.journal(unit)[-4000:]}")


@pytest.fixture(scope="module")
def installed(box, deb):
    output = apt_get(box, "install", f"/opt/deb/1/{deb.name}")
    assert box.run("dpkg-query", "-W", "-f=${Status}", "echod").stdout == "install ok installed", output
    return box


def test_install_enables_and_starts_the_service_and_it_echoes(installed):
    c = installed
    wait_active(c, "echod.service")
    assert c.run("systemctl", "is-enabled", "echod.service").stdout.strip() == "enabled"
    assert c.show("echod.service", "ExecStart")["ExecStart"].startswith("{ path=/usr/bin/echod ")
    payload = seeded_bytes(4096, seed=301) + b"hello from apt\n"
    assert echo_roundtrip(c, payload) == payload


def test_socket_unit_is_installed_but_not_enabled_or_started(installed):
    c = installed
    assert c.run("systemctl", "is-enabled", "echod.socket").stdout.strip() == "disabled"
    assert c.run("systemctl", "is-active", "echod.socket").stdout.strip() == "inactive"


def test_man_shows_both_pages(installed):
    c = installed
    page8 = c.run("man", "-P", "cat", "echod", env={"MANWIDTH": "120"}, check=True).stdout
    assert re.search(r"^ECHOD\(8\)", page8, re.M) and "check-config" in page8, page8[:2000]
    page5 = c.run("man", "-P", "cat", "5", "echod.yaml", env={"MANWIDTH": "120"}, check=True).stdout
    assert re.search(r"^ECHOD\.YAML\(5\)", page5, re.M) and "shutdown.drain_timeout" in page5, page5[:2000]


def test_completions_are_where_each_shell_looks(installed):
    c = installed
    for shell, path in COMPLETIONS.items():
        assert c.path(path).is_file() and c.path(path).stat().st_size > 0, f"{shell}: {path} missing"
    assert c.path(COMPLETIONS["zsh"]).read_text().startswith("#compdef echod")
    assert "complete -c 'echod'" in c.path(COMPLETIONS["fish"]).read_text()
    # `echod <TAB>` in bash: load the file the way bash-completion does and ask its function for the first word.
    script = (
        f"source {COMPLETIONS['bash']} && COMP_WORDS=(echod '') COMP_CWORD=1 COMP_LINE='echod ' COMP_POINT=6 "
        "&& $(complete -p echod | sed -E 's/.*-F ([^ ]+) .*/\\1/') echod '' echod && printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    words = c.run("bash", "-c", script, check=True).stdout.split()
    assert {"run", "check-config", "probe", "bench"} <= set(words), words


def test_systemd_analyze_security_of_the_installed_service(installed):
    result = installed.run("systemd-analyze", "security", "echod.service")
    match = re.search(r"Overall exposure level for echod\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_upgrade_keeps_the_edited_config_and_restarts_the_service(installed, rebuilds):
    c = installed
    wait_active(c, "echod.service")
    edited = c.path(CONFIG).read_text().replace("max_connections: 50000", "max_connections: 1234")
    assert "max_connections: 1234" in edited, "config/echod.yaml changed: update the line this test edits"
    c.path(CONFIG).write_text(edited)
    before = c.show("echod.service", "InvocationID", "MainPID")

    # apt-get runs an upgrade as dpkg's two phases; run them one by one to see the service in between. Unpacking the
    # new files must not stop it (no downtime while dpkg works); configuring restarts it on the new binary.
    c.run("dpkg", "--unpack", f"/opt/deb/2/{rebuilds['upgrade'].name}", check=True, timeout=120)
    assert c.show("echod.service", "InvocationID", "MainPID") == before, "the service was stopped for the unpack"
    assert echo_roundtrip(c, b"during the upgrade\n") == b"during the upgrade\n"
    c.run("dpkg", "--configure", "echod", check=True, timeout=120)

    assert c.run("dpkg-query", "-W", "-f=${Status} ${Version}", "echod").stdout == (
        f"install ok installed {upstream_version()}-2"
    )
    assert c.path(CONFIG).read_text() == edited, "the upgrade replaced the locally edited conffile"
    leftovers = [p.name for p in c.path("/etc/echod").iterdir() if p.name != "echod.yaml"]
    assert not leftovers, f"the upgrade left {leftovers} next to the conffile"
    wait_active(c, "echod.service")
    after = c.show("echod.service", "InvocationID", "MainPID")
    assert after["InvocationID"] != before["InvocationID"] and after["MainPID"] != before["MainPID"], (before, after)
    effective = c.run("echod", "check-config", "--config", CONFIG, check=True).stdout
    assert re.search(r"max_connections: 1234\b", effective), effective
    assert echo_roundtrip(c, b"after the upgrade\n") == b"after the upgrade\n"


def test_operator_opts_in_to_the_socket(installed):
    """README's switch to socket activation, on the packaged units; it leaves the socket running for the removal."""
    c = installed
    c.run("systemctl", "disable", "--now", "echod.service", check=True, timeout=30)
    c.run("systemctl", "enable", "--now", "echod.socket", check=True, timeout=30)
    assert echo_roundtrip(c, b"socket-activated\n") == b"socket-activated\n"
    wait_active(c, "echod.service")
    assert c.show("echod.service", "TriggeredBy")["TriggeredBy"] == "echod.socket"


def test_remove_stops_the_service_and_socket_and_keeps_the_config(installed):
    c = installed
    assert c.path("/var/log/private/echod").is_dir(), "LogsDirectory= made no /var/log/private/echod to purge later"
    apt_get(c, "remove", "echod")
    assert c.run("dpkg-query", "-W", "-f=${Status}", "echod").stdout == "deinstall ok config-files"
    for unit in ("echod.service", "echod.socket"):
        assert c.run("systemctl", "is-active", unit).stdout.strip() != "active", f"{unit} still active after remove"
    with pytest.raises(ConnectionRefusedError):
        c.connect(ECHO_PORT).close()
    assert c.path(CONFIG).is_file(), "remove (not purge) deleted the configuration"
    assert not c.path("/usr/bin/echod").exists()


def test_purge_removes_the_config_and_logs(installed):
    c = installed
    apt_get(c, "purge", "echod")
    assert c.run("dpkg-query", "-W", "-f=${Status}", "echod").stdout in ("", "unknown ok not-installed")
    for path in ("/etc/echod", "/var/log/echod", "/var/log/private/echod"):
        assert not c.path(path).exists() and not c.path(path).is_symlink(), f"purge left {path}"
