"""Package.swift is the truth about the layers: every module a target imports is one it declares.

SwiftPM lets a target import any module that happens to be built before it (a dependency's dependency, say), so an
undeclared arrow between layers compiles and goes unseen. This reads the declared graph from SwiftPM itself
(`swift package dump-package`) and every `import` in Sources/ and Tests/, and fails on an import that the target does
not declare. Modules of the toolchain (the standard library's, Glibc, Foundation's, the test frameworks) need no
declaration.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLCHAIN_MODULES = {
    "Swift",
    "_Concurrency",
    "_StringProcessing",
    "RegexBuilder",
    "Synchronization",
    "Observation",
    "Distributed",
    "Glibc",
    "Musl",
    "Dispatch",
    "Foundation",
    "FoundationEssentials",
    "FoundationNetworking",
    "Testing",
    "XCTest",
}
IMPORT = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:public\s+|package\s+|internal\s+)?import\s+"
    r"(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)",
    re.MULTILINE,
)


def swift() -> str:
    for candidate in (shutil.which("swift"), "/opt/swift/usr/bin/swift"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no swift on PATH or at /opt/swift/usr/bin: cannot read the package graph")


def declared_graph() -> dict[str, tuple[Path, set[str]]]:
    dump = json.loads(
        subprocess.run(
            [swift(), "package", "dump-package"], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
        ).stdout
    )
    graph = {}
    for target in dump["targets"]:
        if target["type"] == "system":
            continue
        deps = set()
        for dependency in target["dependencies"]:
            ((kind, value),) = dependency.items()
            deps.add(value[0])  # byName / target: the module; product: its name (the module's, in every package here)
        folder = (
            REPO
            / (target.get("path") or ("Tests" if target["type"] == "test" else "Sources"))
            / ("" if target.get("path") else target["name"])
        )
        graph[target["name"]] = (folder, deps)
    return graph


def imports(folder: Path) -> dict[str, list[str]]:
    """Module name -> the files that import it."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.swift")):
        for module in IMPORT.findall(path.read_text()):
            found.setdefault(module, []).append(str(path.relative_to(REPO)))
    return found


def test_every_import_is_a_declared_dependency():
    graph = declared_graph()
    undeclared = []
    for name, (folder, deps) in sorted(graph.items()):
        assert folder.is_dir(), f"{name}: no folder {folder}"
        for module, files in sorted(imports(folder).items()):
            if module not in deps and module not in TOOLCHAIN_MODULES and module != name:
                undeclared.append(f"{name} imports {module} without declaring it ({', '.join(files)})")
    assert not undeclared, "Package.swift does not declare:\n" + "\n".join(undeclared)


def test_the_check_sees_imports():
    # The regular expression must find what the sources really hold, or the test above passes on nothing.
    graph = declared_graph()
    folder, deps = graph["EchodDaemon"]
    found = imports(folder)
    assert {"EchodEventLoop", "EchodConfig", "Logging"} <= set(found), sorted(found)
    assert IMPORT.findall(
        "@testable import EchodConfig\n@preconcurrency public import Glibc\nimport struct Foo.Bar\n"
    ) == ["EchodConfig", "Glibc", "Foo"]
