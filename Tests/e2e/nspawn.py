"""Boot a real systemd in a throw-away container, for end-to-end tests of echod's units.

The recipe of shared/notes/real-systemd.md, as a context manager:

    with Container(units=DIR, binds={"/opt/echod": BIN_DIR}) as c:
        c.run("systemctl", "start", "echod")
        sock = c.connect(7)                       # a socket in the container's own network namespace

- The machine's own root file system, bound (non-recursively) into a private mount namespace and booted read-only
  with a tmpfs overlay (`--volatile=overlay`): writes inside vanish at exit.
- A cgroup of its own (there is no host systemd to make a scope), removed at exit.
- A private network (`--private-network`): its own loopback only, so nothing binds the machine's real ports.
- A minimal boot target of our own (sysinit.target only), not the image's default target.
- Units from `units` appear in /etc/systemd/system.attached (in systemd's search path); other directories are
  bound read-only where `binds` says.
- `run()` goes in through nsenter; `connect()` creates sockets from a thread that joined the container's network
  namespace (setns affects only the calling thread), so clients need no process of their own.
- The container is halted (SIGTERM to systemd-nspawn) in __exit__ whatever happened; anything left in the cgroup
  is killed by pid, the cgroups and the mount point are removed. The bind mount lives in a mount namespace that
  dies with the nspawn process, so it cannot leak.

Needs root, systemd-nspawn (Debian: systemd-container), nsenter/unshare (util-linux) and writable cgroup hierarchies;
`Container.unavailable()` says why not, and entering skips the calling test with that reason (pytest.skip).
"""

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_ROOT = Path("/sys/fs/cgroup")
BOOT_TARGET = "echod-e2e.target"
BOOT_TARGET_TEXT = """[Unit]
Description=Minimal boot target for echod's end-to-end tests
Requires=sysinit.target
After=sysinit.target
AllowIsolate=yes
"""
CLONE_NEWNET = 0x40000000


def cgroup_hierarchies() -> list[Path]:
    """The hierarchies a run needs a cgroup in: the unified one, and on a hybrid layout also name=systemd."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        return [CGROUP_ROOT]
    return [p for p in (CGROUP_ROOT / "systemd", CGROUP_ROOT / "unified") if p.is_dir()]


class Container:
    def __init__(
        self, units: Path, binds: dict[str, Path] | None = None, name: str | None = None, boot_timeout: float = 30.0
    ):
        self.name = name or f"echod-e2e-{uuid.uuid4().hex[:8]}"
        self.units = Path(units)
        self.binds = {k: Path(v) for k, v in (binds or {}).items()}
        self.boot_timeout = boot_timeout
        self.work = None
        self.process = None
        self.pid1 = None
        self.cgroups: list[Path] = []
        self._netns = None
        self._net_thread = None
        self.console_log = None

    # -- availability -------------------------------------------------------------------------------------------

    @staticmethod
    def unavailable() -> str | None:
        """Why a container cannot be booted here, or None when it can."""
        if os.geteuid() != 0:
            return "booting systemd in a container needs root (systemd-nspawn, unshare, cgroups)"
        for tool, package in (
            ("systemd-nspawn", "systemd-container"),
            ("nsenter", "util-linux"),
            ("unshare", "util-linux"),
            ("systemctl", "systemd"),
        ):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (Debian package: {package})"
        hierarchies = cgroup_hierarchies()
        if not hierarchies:
            return f"no cgroup hierarchy under {CGROUP_ROOT}"
        for hierarchy in hierarchies:
            probe = hierarchy / f"echod-e2e-probe-{os.getpid()}"
            try:
                probe.mkdir()
                probe.rmdir()
            except OSError as error:
                return f"cgroup hierarchy {hierarchy} is not writable ({error}); inside Docker it usually is not"
        return None

    # -- life cycle ---------------------------------------------------------------------------------------------

    def __enter__(self):
        reason = self.unavailable()
        if reason:
            pytest.skip(f"real-systemd tests skipped: {reason}")
        try:
            self._boot()
        except BaseException:
            self._tear_down()
            raise
        return self

    def __exit__(self, *exc):
        self._tear_down()
        return False

    def _boot(self):
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        root = self.work / "root"
        root.mkdir()
        (self.units / BOOT_TARGET).write_text(BOOT_TARGET_TEXT)
        for hierarchy in cgroup_hierarchies():
            group = hierarchy / self.name
            group.mkdir()
            self.cgroups.append(group)
        nspawn = [
            "systemd-nspawn",
            "-q",
            "-D",
            str(root),
            "--volatile=overlay",
            "--boot",
            f"--machine={self.name}",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=read-only",
            f"--bind-ro={self.units}:/etc/systemd/system.attached",
            *[f"--bind-ro={source}:{target}" for target, source in self.binds.items()],
            "--",
            f"systemd.unit={BOOT_TARGET}",
        ]
        # The shell joins the run's cgroups, binds / (not recursively: nspawn refuses a populated /dev, and / itself)
        # in the private mount namespace unshare made, and becomes systemd-nspawn: one pid from Popen to nspawn.
        joins = " ".join(f"echo $$ > {g}/cgroup.procs &&" for g in self.cgroups)
        script = f'{joins} mount --bind / "$0" && exec "$@"'
        env = {"PATH": PATH, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "SYSTEMD_SECCOMP": "0"}
        self.console_log = self.work / "console.log"
        with open(self.console_log, "wb") as console:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *nspawn],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + self.boot_timeout
        self.pid1 = self._wait_for_pid1(deadline)
        while not Path(f"/proc/{self.pid1}/root/run/systemd/private").exists():
            self._check_alive(deadline, "systemd's private socket")
            time.sleep(0.05)
        state = self.run(
            "systemctl", "is-system-running", "--wait", timeout=max(1.0, deadline - time.monotonic())
        ).stdout.strip()
        if state not in ("running", "degraded"):
            raise RuntimeError(f"container booted into state {state!r}\n{self.console()}")
        self.state = state
        self._netns = os.open(f"/proc/{self.pid1}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._net_thread = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=f"{self.name}-net", initializer=self._join_netns
        )

    def _wait_for_pid1(self, deadline: float) -> int:
        while True:
            self._check_alive(deadline, "the container's PID 1")
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                if ppid == self.process.pid and comm == "systemd":
                    return int(entry.name)
            time.sleep(0.05)

    def _check_alive(self, deadline: float, waiting_for: str):
        if self.process.poll() is not None:
            raise RuntimeError(
                f"systemd-nspawn exited ({self.process.returncode}) while waiting for {waiting_for}\n{self.console()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {self.boot_timeout}s waiting for {waiting_for}\n{self.console()}")

    def _tear_down(self):
        if self._net_thread is not None:
            self._net_thread.shutdown(wait=True, cancel_futures=True)
        if self._netns is not None:
            os.close(self._netns)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nspawn halts the container cleanly (about 1.3 s)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for _ in range(50):  # whatever survived in our cgroups (only ever our own processes): kill by pid
            pids = self._cgroup_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for group in self.cgroups:
            for directory in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir(directory)
            _rmdir(group)
        self.cgroups = [g for g in self.cgroups if g.exists()]
        if self.work is not None:
            (self.units / BOOT_TARGET).unlink(missing_ok=True)
            root = self.work / "root"
            if root.exists() and not os.path.ismount(root):  # never recurse into a still-bound root
                shutil.rmtree(self.work, ignore_errors=True)
        if self.cgroups:
            raise RuntimeError(f"cgroups left behind: {self.cgroups}")

    def _cgroup_pids(self) -> set[int]:
        pids = set()
        for group in self.cgroups:
            for procs in group.rglob("cgroup.procs"):
                try:
                    pids.update(int(line) for line in procs.read_text().split())
                except OSError:
                    pass
        return pids

    # -- driving it ---------------------------------------------------------------------------------------------

    def run(
        self,
        *cmd: str,
        check: bool = False,
        timeout: float = 30.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Runs a command inside the container (all its namespaces), with a clean environment."""
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = [
            "nsenter",
            "-t",
            str(self.pid1),
            "-a",
            "env",
            "-i",
            f"PATH={PATH}",
            "SYSTEMD_COLORS=0",
            "SYSTEMD_PAGER=",
            "SYSTEMD_LOG_COLOR=0",
            *extra,
            *cmd,
        ]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def popen(self, *cmd: str) -> subprocess.Popen:
        """Starts a command inside the container without waiting (output captured as text)."""
        argv = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", f"PATH={PATH}", "SYSTEMD_COLORS=0", *cmd]
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def path(self, inside: str) -> Path:
        """A path inside the container, as seen from here (through /proc/PID1/root; writes land in the overlay)."""
        return Path(f"/proc/{self.pid1}/root") / inside.lstrip("/")

    def symlink(self, inside: str, target: str):
        """Makes `inside` (e.g. the unit's ExecStart= path) a symbolic link to `target`, replacing what is there."""
        link = self.path(inside)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)

    def write(self, inside: str, text: str, mode: int = 0o644):
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def in_netns(self, fn, *args, **kwargs):
        """Runs fn on a thread that joined the container's network namespace; sockets made there live in it."""
        return self._net_thread.submit(fn, *args, **kwargs)

    def connect(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        import socket

        return self.in_netns(socket.create_connection, (host, port), timeout=timeout).result()

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *[f"--property={p}" for p in properties], check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit).stdout

    def console(self) -> str:
        if self.console_log is None or not self.console_log.exists():
            return ""
        return self.console_log.read_text(errors="replace")[-4000:]

    def _join_netns(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(self._netns, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) into the container")


def _rmdir(path: Path):
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
