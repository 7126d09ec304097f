"""Test-only behaviour stays out of the release binary: the SIGUSR2 "wedge a loop" hook is compiled in debug builds
only (#if DEBUG in Sources/EchodDaemon/Signals.swift), so its switch, ECHOD_TEST_HOOKS, must not appear in the binary
that is packaged. make test-shipping builds that binary (make deb) and runs this module after it; run alone, the check
skips and says why."""

import os
from pathlib import Path

import pytest
from conftest import echod_binary

ROOT = Path(__file__).resolve().parents[2]
MARKER = b"ECHOD_TEST_HOOKS"


def release_binary():
    return Path(os.environ.get("ECHOD_RELEASE_BIN", ROOT / ".build" / "release" / "echod"))


def test_the_debug_binary_has_the_hook():
    # The marker is the right one to look for: the binary the tests run has it.
    assert MARKER in Path(echod_binary()).read_bytes()


def test_the_release_binary_has_no_test_hook():
    binary = release_binary()
    if not binary.exists():
        pytest.skip(
            f"no release binary at {binary}: run `make release` (make test-shipping builds it through make deb)"
        )
    assert MARKER not in binary.read_bytes(), f"{binary} contains the test hook switch {MARKER.decode()}"
