"""The promises the layer map in Package.swift makes, checked on the sources.

- Every declared dependency is used: an arrow in Package.swift that no `import` needs is a false statement about
  the layers (test_package_graph.py checks the other direction).
- The bottom layers stay at the bottom: EchodText imports nothing of echod's, EchodSystem only the C shim,
  EchodProxyProtocol (the PROXY protocol parser) only EchodText, and neither of the pure two libc or Foundation.
- One implementation per concept where a grep can tell: EINTR is handled, the monotonic clock read, threads
  started, names resolved and the kernel's write loop written only in EchodSystem (its header says so).
"""

import re
from pathlib import Path

from test_package_graph import TOOLCHAIN_MODULES, declared_graph, imports

REPO = Path(__file__).resolve().parents[2]


def test_every_declared_dependency_is_imported():
    unused = []
    for name, (folder, deps) in sorted(declared_graph().items()):
        used = set(imports(folder))
        for dep in sorted(deps - used):
            unused.append(f"{name} declares {dep} but no file of it imports {dep}")
    assert not unused, "Package.swift declares arrows nothing uses:\n" + "\n".join(unused)


def test_bottom_layers_import_nothing_above_them():
    graph = declared_graph()
    echod_modules = set(graph)
    text_folder, _ = graph["EchodText"]
    system_folder, _ = graph["EchodSystem"]
    assert set(imports(text_folder)) & echod_modules == set(), "EchodText must stay pure"
    assert set(imports(system_folder)) & echod_modules <= {"CEchodLinux"}, "EchodSystem may use only the C shim"
    assert set(imports(text_folder)) <= TOOLCHAIN_MODULES - {"Glibc", "Foundation", "FoundationEssentials"}, (
        "EchodText uses no libc and no Foundation"
    )
    proxy_folder, _ = graph["EchodProxyProtocol"]
    proxy_imports = set(imports(proxy_folder))
    assert proxy_imports & echod_modules == {"EchodText"}, "the PROXY protocol parser stands on EchodText only"
    pure = TOOLCHAIN_MODULES - {"Glibc", "Foundation", "FoundationEssentials"}
    assert proxy_imports - {"EchodText"} <= pure, "the PROXY protocol parser uses no libc and no Foundation"


# Each concept with its one home; the pattern finds a second implementation anywhere else in Sources/.
ONE_HOME = {
    "EINTR handling": (r"\bEINTR\b", "Sources/EchodSystem/"),
    "the monotonic clock": (r"\bContinuousClock\b|\bSuspendingClock\b|CLOCK_MONOTONIC\b", "Sources/EchodSystem/"),
    "starting a thread": (r"\bpthread_create\b", "Sources/EchodSystem/"),
    "naming a thread": (r"thread-self/comm|echod_set_thread_name\b", "Sources/EchodSystem/"),
    "name resolution": (r"\bgetaddrinfo\b", "Sources/EchodSystem/"),
    "strerror text": (r"\bstrerror\b", "Sources/EchodSystem/"),
}


def test_each_concept_has_one_home():
    found = []
    for concept, (pattern, home) in ONE_HOME.items():
        regex = re.compile(pattern)
        for path in sorted((REPO / "Sources").rglob("*.swift")):
            relative = str(path.relative_to(REPO))
            if relative.startswith(home):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("//", 1)[0]
                if regex.search(code):
                    found.append(f"{concept} outside {home}: {relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_concept_check_sees_code():
    # The patterns must match what a second implementation would look like, or the test above passes on nothing.
    syscall = (REPO / "Sources/EchodSystem/Syscall.swift").read_text()
    assert re.search(ONE_HOME["EINTR handling"][0], syscall)
    assert re.search(ONE_HOME["the monotonic clock"][0], syscall)
    assert re.search(ONE_HOME["starting a thread"][0], (REPO / "Sources/EchodSystem/SystemThread.swift").read_text())
    assert re.search(ONE_HOME["name resolution"][0], (REPO / "Sources/EchodSystem/Resolver.swift").read_text())
