#!/usr/bin/env python3
"""Builds echod's container image FROM scratch with buildah: no Docker daemon, no base image, no registry.

The image holds the stripped echod binary, exactly the shared libraries it loads (with the dynamic loader), the
Debian copyright files of the packages those libraries come from, /etc/passwd and /etc/group naming the
non-root user 65532, and /etc/echod/echod.yaml generated from config/echod.yaml. Nothing else: no shell, no
package manager. `make image` (deploy/image.mk) runs this with the values it computes; see that file.

Libraries: the closure of DT_NEEDED entries of the binary, resolved in the target architecture's Debian
multiarch directories, each file traced to the installed Debian package that owns it (dpkg -S). For the
build machine's own architecture the closure must equal what `ldd` reports, or the build stops. For another
architecture (ARCH=arm64) the same code reads the libraries of that architecture's packages installed
side by side (Debian multiarch): what that takes is in the error message below and in the README.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGE_USER = "65532:65532"
# Where the loader finds libraries without an ld.so.cache: glibc's built-in trusted directories on Debian.
LIB_DIRS = ("/usr/lib/{triplet}", "/lib/{triplet}", "/usr/lib", "/lib")
BIN_PATH = "/usr/bin/echod"
CONFIG_PATH = "/etc/echod/echod.yaml"
# The ELF e_machine names readelf prints, per Debian architecture this build knows how to target.
ELF_MACHINE = {"amd64": "Advanced Micro Devices X86-64", "arm64": "AArch64"}


def log(msg: str) -> None:
    print(f"image: {msg}", flush=True)


def run(cmd: list[str], capture: bool = True, **kw) -> str:
    """Runs cmd, failing the build with its output when it fails; returns stdout."""
    p = subprocess.run(cmd, text=True, capture_output=capture, **kw)
    if p.returncode != 0:
        detail = f"\n{p.stdout}{p.stderr}" if capture else ""
        sys.exit(f"image: `{shlex.join(cmd)}` failed with exit status {p.returncode}{detail}")
    return p.stdout if capture else ""


def die(msg: str) -> None:
    sys.exit(f"image: {msg}")


# --- ELF inspection (readelf works on any architecture's binaries) ---------------------------------------


def elf_machine(path: Path) -> str:
    m = re.search(r"^\s*Machine:\s*(.+?)\s*$", run(["readelf", "-h", str(path)]), re.M)
    return m.group(1) if m else ""


def elf_interpreter(path: Path) -> str | None:
    m = re.search(r"\[Requesting program interpreter: (.+?)\]", run(["readelf", "-lW", str(path)]))
    return m.group(1) if m else None


def elf_needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", run(["readelf", "-dW", str(path)]))


def find_library(soname: str, triplet: str) -> Path | None:
    for d in LIB_DIRS:
        candidate = Path(d.format(triplet=triplet)) / soname
        if candidate.exists():
            return candidate
    return None


def library_closure(binary: Path, triplet: str, arch: str, native_triplet: str) -> dict[str, Path]:
    """soname -> path on this machine, for every library the binary needs directly or indirectly."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    queue = elf_needed(binary)
    while queue:
        soname = queue.pop(0)
        if soname in found or soname in missing:
            continue
        path = find_library(soname, triplet)
        if path is None:
            missing.append(soname)
            continue
        found[soname] = path
        queue.extend(elf_needed(path))
    if missing:
        # The packages that hold these sonames for this machine's architecture hold them for ARCH too.
        pkgs = sorted({owner(p)[0].split(":")[0] for s in missing if (p := find_library(s, native_triplet))})
        hint = (
            (
                f"dpkg --add-architecture {arch} && apt-get update && apt-get install "
                + " ".join(f"{p}:{arch}" for p in pkgs)
            )
            if pkgs
            else "install the packages that provide them"
        )
        die(
            f"libraries for {arch} not found in {', '.join(d.format(triplet=triplet) for d in LIB_DIRS)}: "
            f"{' '.join(missing)}; {hint}"
        )
    return found


def ldd_closure(binary: Path) -> set[str]:
    """The sonames `ldd` lists (the vDSO and the loader excluded): the cross-check for a native build."""
    names = set()
    for line in run(["ldd", str(binary)]).splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            names.add(m.group(1))
    return names


# --- Debian package ownership -------------------------------------------------------------------------------


def owner(path: Path) -> tuple[str, str]:
    """(package:arch, version) of the installed package that ships path. Debian 12's dpkg database records
    some libraries under /lib and some under /usr/lib (the merged-/usr transition), so both spellings are tried."""
    real = Path(os.path.realpath(path))
    candidates = [str(path), str(real)]
    for p in list(candidates):
        if p.startswith("/usr/lib/"):
            candidates.append(p[len("/usr") :])
        elif p.startswith("/lib/"):
            candidates.append("/usr" + p)
    for c in dict.fromkeys(candidates):
        p = subprocess.run(["dpkg-query", "-S", c], text=True, capture_output=True)
        if p.returncode == 0:
            # "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6" (several owners are comma-separated).
            name = p.stdout.splitlines()[0].rsplit(": ", 1)[0].split(", ")[0]
            version = run(["dpkg-query", "-W", "-f=${Version}", name])
            return name, version
    die(f"{path} belongs to no installed Debian package: the image takes libraries from Debian packages only")
    raise AssertionError


# --- Container configuration --------------------------------------------------------------------------------


def container_config(source: str, admin_port: int) -> tuple[str, list[int]]:
    """config/echod.yaml with the echo listeners moved to every interface and the admin endpoint switched on.
    Returns the text and the echo ports. Fails if the file no longer has the lines this rewrites, so a change
    to config/echod.yaml cannot silently leave the image listening on loopback only."""
    listen = re.compile(r"^listen: \[(.*)\]$", re.M)
    matches = listen.findall(source)
    if len(matches) != 1:
        die("config/echod.yaml: expected exactly one top-level `listen: [...]` line")
    ports = list(dict.fromkeys(int(p) for p in re.findall(r":(\d+)\"", matches[0])))
    if not ports:
        die("config/echod.yaml: no port found in the top-level listen list")
    addresses = ", ".join(f'"0.0.0.0:{p}", "[::]:{p}"' for p in ports)
    text = listen.sub(f"listen: [{addresses}]", source)
    admin = re.compile(r"^(admin:\n(?:  #.*\n)*)  listen: null$", re.M)
    text, n = admin.subn(rf'\g<1>  listen: "0.0.0.0:{admin_port}"', text)
    if n != 1:
        die("config/echod.yaml: expected `admin:` followed by comments and `  listen: null`")
    header = (
        "# Generated for the container image from config/echod.yaml by deploy/container/build_image.py:\n"
        f"# echo on every interface, the admin endpoint on 0.0.0.0:{admin_port}. Replace this file (a\n"
        "# Kubernetes ConfigMap mounted at /etc/echod) to change anything; the rest is the documented default.\n"
    )
    return header + text, ports


# --- Root filesystem ----------------------------------------------------------------------------------------


def install(src: Path | None, dest: Path, mode: int, text: str | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        dest.write_text(text)
    else:
        shutil.copyfile(src, dest)
    dest.chmod(mode)


def build_rootfs(root: Path, args, triplet: str, native_triplet: str) -> dict:
    binary = Path(args.binary)
    want = ELF_MACHINE.get(args.arch)
    got = elf_machine(binary)
    if want is None:
        die(f"ARCH={args.arch}: this build knows {', '.join(ELF_MACHINE)}")
    if got != want:
        die(
            f"{binary} is built for {got}, not {args.arch}: an {args.arch} image needs an echod built on (or for) "
            f"{args.arch}; see the README"
        )
    native = args.arch == args.native_arch

    interp = elf_interpreter(binary)
    if interp is None:
        die(f"{binary} names no program interpreter")
    libs = library_closure(binary, triplet, args.arch, native_triplet)
    libs.pop(Path(interp).name, None)  # libc needs the loader; it is installed below as the interpreter
    if native:
        from_ldd = ldd_closure(binary)
        if from_ldd != set(libs):
            die(f"the DT_NEEDED closure {sorted(libs)} differs from ldd's {sorted(from_ldd)}")

    # The binary, stripped: symbols and DWARF are for debuggers and have no use in the image.
    strip = "strip" if native else f"{triplet}-strip"
    (root / "usr/bin").mkdir(parents=True)
    run([strip, "--strip-all", "-o", str(root / BIN_PATH.lstrip("/")), str(binary)])
    (root / BIN_PATH.lstrip("/")).chmod(0o755)

    # Libraries under their soname in /usr/lib/TRIPLET, a directory the loader searches without an
    # ld.so.cache; the loader at the path written in the binary (/lib64/... on amd64) through the merged-/usr
    # symlinks Debian has (/lib -> usr/lib), so the /lib/TRIPLET spelling that ldd prints resolves too.
    packages: dict[str, str] = {}
    inventory = []
    for soname, path in sorted(libs.items()) + [(Path(interp).name, Path(interp))]:
        pkg, version = owner(path)
        packages[pkg] = version
        mode = 0o755 if soname == Path(interp).name else 0o644
        install(Path(os.path.realpath(path)), root / f"usr/lib/{triplet}" / soname, mode)
        inventory.append(
            {"soname": soname, "package": pkg, "version": version, "bytes": os.path.getsize(os.path.realpath(path))}
        )
    (root / "lib").symlink_to("usr/lib")
    interp_dir, interp_name = Path(interp).parent, Path(interp).name
    if interp_dir != Path(f"/lib/{triplet}"):  # /lib64/ld-linux-x86-64.so.2, /lib/ld-linux-aarch64.so.1
        if interp_dir.parent != Path("/") or interp_dir.name not in ("lib", "lib64"):
            die(f"unexpected program interpreter {interp}")
        if interp_dir.name != "lib":
            (root / interp_dir.name).symlink_to(f"usr/{interp_dir.name}")
            (root / "usr" / interp_dir.name).mkdir(parents=True)
        (root / "usr" / interp_dir.name / interp_name).symlink_to(f"../lib/{triplet}/{interp_name}")

    # The licences of what the image redistributes (the libraries' Debian copyright files).
    for pkg in packages:
        name = pkg.split(":")[0]
        copyright_file = Path(f"/usr/share/doc/{name}/copyright")
        if not copyright_file.exists():
            die(f"{copyright_file} is missing: cannot ship {pkg} without its licence")
        install(copyright_file, root / f"usr/share/doc/{name}/copyright", 0o644)

    uid, gid = IMAGE_USER.split(":")
    install(
        None,
        root / "etc/passwd",
        0o644,
        text=f"root:x:0:0:root:/root:/sbin/nologin\nechod:x:{uid}:{gid}:echod:/nonexistent:/sbin/nologin\n",
    )
    install(None, root / "etc/group", 0o644, text=f"root:x:0:\nechod:x:{gid}:\n")
    config, echo_ports = container_config(Path(args.config).read_text(), args.admin_port)
    install(None, root / CONFIG_PATH.lstrip("/"), 0o644, text=config)
    if native:
        # The file must pass echod's own validation, or the image would exit 78 on start.
        run([str(binary), "check-config", "--config", str(root / CONFIG_PATH.lstrip("/"))])

    # Directories 0755, and every mtime at SOURCE_DATE_EPOCH, so two builds of one commit give one layer.
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            if not p.is_symlink():
                p.chmod(0o755)
        for f in dirnames + filenames:
            os.utime(Path(dirpath) / f, (args.epoch, args.epoch), follow_symlinks=False)
    root.chmod(0o755)
    os.utime(root, (args.epoch, args.epoch))
    return {
        "libraries": inventory,
        "packages": packages,
        "echo_ports": echo_ports,
        "interpreter": interp,
        "binary_bytes": (root / BIN_PATH.lstrip("/")).stat().st_size,
    }


# --- Image ------------------------------------------------------------------------------------------------


def build_image(root: Path, facts: dict, args) -> str:
    created = datetime.datetime.fromtimestamp(args.epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.title": "echod",
        "org.opencontainers.image.description": "TCP echo server daemon (RFC 862) with health and metrics endpoint",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": args.source,
        "org.opencontainers.image.licenses": args.licenses,
    }
    for key, value in labels.items():
        if not value:
            die(f"label {key} has no value")
    # Docker format throughout: HEALTHCHECK exists only there (the OCI image config has no such field).
    os.environ["BUILDAH_FORMAT"] = "docker"
    previous = subprocess.run(
        ["buildah", "images", "--quiet", "--no-trunc", f"{args.name}:{args.tag}"], text=True, capture_output=True
    ).stdout.split()
    ctr = run(["buildah", "from", "--arch", args.arch, "scratch"]).strip()
    try:
        run(["buildah", "copy", "--quiet", "--chown", "0:0", ctr, str(root), "/"])
        config = [
            "--arch",
            args.arch,
            "--os",
            "linux",
            "--user",
            IMAGE_USER,
            "--workingdir",
            "/",
            "--entrypoint",
            json.dumps([BIN_PATH]),
            "--stop-signal",
            "SIGTERM",
            "--created-by",
            "deploy/container/build_image.py: buildah copy of an assembled root filesystem",
            # The admin endpoint's liveness check: silent (requests are logged at debug level), and it
            # fails when any event loop stalls. An echo probe would log a connection every interval.
            # buildah splits "CMD ..." at spaces into the exec form (no shell: the image has none).
            "--healthcheck",
            f"CMD {BIN_PATH} probe --http http://127.0.0.1:{args.admin_port}/livez --timeout 2s",
            "--healthcheck-interval",
            "10s",
            "--healthcheck-timeout",
            "3s",
            "--healthcheck-start-period",
            "5s",
            "--healthcheck-retries",
            "3",
        ]
        for port in facts["echo_ports"] + [args.admin_port]:
            config += ["--port", f"{port}/tcp"]
        for key, value in labels.items():
            config += ["--label", f"{key}={value}"]
        run(["buildah", "config", *config, ctr])
        # No io.buildah.version label: the image should not change with the builder's version.
        image_id = run(
            [
                "buildah",
                "commit",
                "--quiet",
                "--format",
                "docker",
                "--timestamp",
                str(args.epoch),
                "--identity-label=false",
                "--rm",
                ctr,
                f"{args.name}:{args.tag}",
            ]
        ).strip()
        ctr = None
    finally:
        if ctr:
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
    image_id = without_build_identity(f"{args.name}:{args.tag}", image_id)
    run(["buildah", "tag", image_id, f"{args.name}:{args.latest_tag}"])
    for old in previous:
        # The image these tags named before, now untagged; kept (the removal fails) while a container uses it.
        if old.removeprefix("sha256:") != image_id:
            subprocess.run(["buildah", "rmi", old], capture_output=True)
    return image_id


def without_build_identity(ref: str, committed_id: str) -> str:
    """Buildah's Docker-format config records the ID and hostname of the throw-away working container, so
    each build of the same files got a new image ID. Rewrites the config without them (nothing reads either)
    and stores the image again under ref: its ID is then the digest of content only. Returns that ID."""
    with tempfile.TemporaryDirectory(prefix="echod-image-config-") as tmp:
        d = Path(tmp)
        run(["skopeo", "copy", "--quiet", f"containers-storage:{ref}", f"dir:{d}"])
        manifest = json.loads((d / "manifest.json").read_text())
        old = d / manifest["config"]["digest"].split(":", 1)[1]
        config = json.loads(old.read_text())
        config.pop("container", None)
        for section in ("config", "container_config"):
            if section in config:
                config[section]["Hostname"] = ""
        data = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        old.unlink()
        (d / digest).write_bytes(data)
        manifest["config"].update({"digest": f"sha256:{digest}", "size": len(data)})
        (d / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
        run(["skopeo", "copy", "--quiet", f"dir:{d}", f"containers-storage:{ref}"])
    if committed_id != digest:
        run(["buildah", "rmi", committed_id])
    return digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the release echod binary (make release)")
    ap.add_argument("--config", required=True, help="config/echod.yaml")
    ap.add_argument("--arch", required=True, help="Debian architecture of the image (amd64, arm64)")
    ap.add_argument("--native-arch", required=True, help="Debian architecture of this machine")
    ap.add_argument("--name", required=True, help="image name, e.g. localhost/echod")
    ap.add_argument("--tag", required=True, help="the version tag (VERSION, or VERSION-ARCH for another architecture)")
    ap.add_argument("--latest-tag", required=True, help="latest, or latest-ARCH for another architecture")
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--licenses", required=True)
    ap.add_argument("--epoch", type=int, required=True, help="SOURCE_DATE_EPOCH")
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--archive", required=True, help="OCI archive to write")
    ap.add_argument("--manifest", required=True, help="JSON inventory to write (libraries, packages, sizes)")
    args = ap.parse_args()

    def triplet_of(arch: str) -> str:
        return run(["dpkg-architecture", "-a", arch, "-q", "DEB_HOST_MULTIARCH"]).strip()

    triplet, native_triplet = triplet_of(args.arch), triplet_of(args.native_arch)
    with tempfile.TemporaryDirectory(prefix="echod-image-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        facts = build_rootfs(root, args, triplet, native_triplet)
        image_id = build_image(root, facts, args)

    archive = Path(args.archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    # An OCI archive for registries and other hosts (skopeo copy oci-archive:... docker://...). Converting to
    # OCI drops HEALTHCHECK; local storage keeps the Docker-format image with it.
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"containers-storage:{args.name}:{args.tag}",
            f"oci-archive:{archive}:{args.name}:{args.tag}",
        ]
    )
    size = int(run(["podman", "image", "inspect", "--format", "{{.Size}}", image_id]).strip())
    # The arguments and the binary's digest let a later check rebuild from the same inputs (reproducibility).
    facts.update(
        {
            "image_id": image_id,
            "image_bytes": size,
            "archive": str(archive),
            "archive_bytes": archive.stat().st_size,
            "build_args": sys.argv[1:],
            "binary_sha256": hashlib.sha256(Path(args.binary).read_bytes()).hexdigest(),
        }
    )
    Path(args.manifest).write_text(json.dumps(facts, indent=2) + "\n")
    log(
        f"{args.name}:{args.tag} and :{args.latest_tag} = {image_id[:12]}, {size / 1e6:.1f} MB "
        f"({len(facts['libraries'])} libraries from {len(facts['packages'])} Debian packages); "
        f"{archive} {archive.stat().st_size / 1e6:.1f} MB"
    )
    for lib in facts["libraries"]:
        log(f"  {lib['soname']:<28} {lib['bytes']:>9}  {lib['package']} {lib['version']}")


if __name__ == "__main__":
    main()
