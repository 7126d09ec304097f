# echod — two commands do all set-up on a fresh Debian machine:
#   make run    build (release) and run echod in the foreground on its embedded default config
#   make test   install what is missing, build, and run every test
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the build and the tests need: libsystemd, http-parser, libyaml and liburing (linked; liburing for the
# io_uring backend), the tools the end-to-end tests drive, and gcc, for bench/tests (which build and check the race's C
# references, c-epoll and c-uring) and the end-to-end tests' seccomp helper.
# pytest and pexpect come from Debian too, so that a stock Debian python (which refuses pip installs, PEP 668) has
# them; a python that cannot see Debian's packages (pyenv, a venv) gets them from PyPI instead.
APT_PACKAGES := pkg-config libsystemd-dev libhttp-parser-dev libyaml-dev prometheus netcat-openbsd telnet socat curl systemd systemd-container iproute2 procps python3-pytest python3-pexpect haproxy gcc liburing-dev
PIP_PACKAGES := pytest pexpect
# The peers of the benchmark race (make bench only).
BENCH_APT_PACKAGES := gcc libuv1-dev golang-go xinetd linux-perf liburing-dev

# Installs those of the given Debian packages that are missing (apt-get, with sudo when not root).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

DEBUG_BIN := .build/debug/echod
RELEASE_BIN := .build/release/echod

.PHONY: all build release run test test-shipping deps bench-deps unit e2e bench lint lint-swift lint-python format repro-check clean
all: build

deps:
	$(call apt_install,$(APT_PACKAGES))
	@for p in $(PIP_PACKAGES); do $(PYTHON) -c "import $$p" 2>/dev/null || $(PYTHON) -m pip install -q $$p; done

bench-deps:
	$(call apt_install,$(BENCH_APT_PACKAGES))

build:
	$(SWIFT) build

# Release builds link the Swift runtime and FoundationEssentials statically: the installed binary runs under systemd's
# sandboxing without /opt/swift (or any Swift toolchain) on the host. Linked like a Debian package's binaries
# (lintian's hardening checks): -z now resolves every symbol at start-up so that the whole GOT can be read-only
# (full RELRO), and --disable-local-rpath drops SwiftPM's RUNPATH $ORIGIN, so echod in /usr/bin never loads a
# shared library from the directory it was installed in (it needs none from there: only the system's own).
#
# Reproducible (two builds of one commit, in one place, give the same bytes; make repro-check shows it): paths are
# written relative to the checkout (-file-prefix-map); no debug references to the build's clang module cache,
# whose signatures change per build (-no-clang-module-breadcrumbs); and each object's .swift_modhash, a per-build
# hash used only to skip code generation in incremental builds, stays zero (-disable-incremental-llvm-codegen).
RELEASE_FLAGS := -c release --static-swift-stdlib --disable-local-rpath -Xlinker -z -Xlinker now \
	-Xswiftc -file-prefix-map -Xswiftc $(CURDIR)=. -Xcc -ffile-prefix-map=$(CURDIR)=. \
	-Xswiftc -Xfrontend -Xswiftc -no-clang-module-breadcrumbs \
	-Xswiftc -Xfrontend -Xswiftc -disable-incremental-llvm-codegen
release:
	$(SWIFT) build $(RELEASE_FLAGS) --product echod

run: deps release
	$(RELEASE_BIN) $(ARGS)

unit: deps build
	$(SWIFT) test

# The end-to-end tests include the shipped artefacts: test_deb.py installs dist/'s package in a booted systemd,
# test_image.py runs localhost/echod with podman, test_kubernetes.py validates and plays deploy/kubernetes/.
SHIPPING := deb image kube-check

e2e: deps build $(SHIPPING)
	ECHOD_BIN=$(abspath $(DEBUG_BIN)) $(PYTHON) -m pytest -q Tests/e2e

# Checks beyond the unit and end-to-end tests that make test also runs (short, bounded versions), each added by the
# mk/*.mk file that defines it: TEST_CHECKS += its-target.
TEST_CHECKS :=

# make test stays within its 15-minute budget on a 2-core machine by leaving the shipped artefacts to make
# test-shipping (a release build and three artefacts, about 5 minutes cold), which CI (.ci/run) runs after it.
SHIPPING_TESTS := Tests/e2e/test_deb.py Tests/e2e/test_image.py Tests/e2e/test_kubernetes.py Tests/e2e/test_release_hooks.py
# make test's end-to-end selection (make test-e2e-uring runs it again on io_uring).
E2E_TESTS := Tests/e2e $(addprefix --ignore=,$(SHIPPING_TESTS))

test: deps build
	$(SWIFT) test
	$(PYTHON) -m pytest -q bench/tests
	ECHOD_BIN=$(abspath $(DEBUG_BIN)) $(PYTHON) -m pytest -q -rs $(E2E_TESTS)
	$(if $(strip $(TEST_CHECKS)),$(MAKE) --no-print-directory $(TEST_CHECKS))

test-shipping: deps build $(SHIPPING)
	ECHOD_BIN=$(abspath $(DEBUG_BIN)) $(PYTHON) -m pytest -q -rs $(SHIPPING_TESTS)

# The race against the other echo servers (bench/README.md); not part of make test. BENCH_ARGS=--quick for a smoke run.
# BENCH_T0 is when make started: the race's 10-minute budget counts the package installs and builds before it.
ifneq ($(filter bench,$(MAKECMDGOALS)),)
BENCH_T0 := $(shell date +%s.%N)
endif
bench: deps bench-deps release
	ECHOD_BENCH_T0=$(BENCH_T0) ECHOD_BIN=$(abspath $(RELEASE_BIN)) $(PYTHON) bench/run.py $(BENCH_ARGS)

# The style is kept by tools, not by reviewers: CI (.ci/run) runs make lint before make test.
lint: lint-swift lint-python

# Swift format and lint (.swift-format: 4 spaces, 160 columns, existing line breaks kept; the one rule turned off,
# OnlyOneTrailingClosureArgument, would turn the loops' `whenAllLoops({ ... }) { done }` into labelled closures that
# read worse). swift-format ships with the toolchain. `make format` rewrites the files in place.
SWIFT_FORMAT_PATHS := Sources Tests Package.swift
lint-swift:
	$(SWIFT) format lint --strict --recursive --parallel $(SWIFT_FORMAT_PATHS)

format: $(RUFF)
	$(SWIFT) format --in-place --recursive --parallel $(SWIFT_FORMAT_PATHS)
	$(RUFF) format .

# Python lint (ruff.toml): every finding of `ruff check`, and any file `ruff format` would change, fails. ruff is
# pinned (a newer one formats differently and would fail CI on unchanged code) and installed from PyPI into its own
# venv, since Debian 12 has no ruff package and its python refuses pip installs outside a venv (PEP 668).
RUFF_VERSION := 0.17.6
LINT_VENV := .build-lint/venv
RUFF := $(LINT_VENV)/bin/ruff
$(RUFF):
	$(call apt_install,python3-venv)
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q ruff==$(RUFF_VERSION)

lint-python: $(RUFF)
	$(RUFF) check .
	$(RUFF) format --check .

# Two clean release builds of the committed tree, in one fresh clone, each packaged by make deb-package: the
# binaries and the .debs must be byte-identical. About 5 minutes on 2 cores; not part of make test.
REPRO_DIR := .build-repro
repro-check:
	rm -rf $(REPRO_DIR) && git clone -q . $(REPRO_DIR)/src
	set -e; for i in 1 2; do \
	  rm -rf $(REPRO_DIR)/src/.build; \
	  $(MAKE) -C $(REPRO_DIR)/src --no-print-directory release deb-manual-tool >/dev/null; \
	  $(MAKE) -C $(REPRO_DIR)/src --no-print-directory deb-package DEB_DIST=../dist$$i DEB_STAGE=../stage$$i >/dev/null; \
	  cp $(REPRO_DIR)/src/.build/release/echod $(REPRO_DIR)/echod.$$i; \
	done
	cd $(REPRO_DIR) && sha256sum echod.1 echod.2 dist1/*.deb dist2/*.deb
	cmp $(REPRO_DIR)/echod.1 $(REPRO_DIR)/echod.2
	for f in $(REPRO_DIR)/dist1/*.deb; do cmp "$$f" "$(REPRO_DIR)/dist2/$${f##*/}"; done
	@echo "repro-check: two clean builds gave byte-identical binaries and packages"

clean:
	rm -rf .build .build-*

# make install / make uninstall (PREFIX, DESTDIR): binary, systemd units, /etc/echod/echod.yaml.
include deploy/install.mk
install: release

# Shipping: make deb (Debian package), make image (OCI image), make kube-check (Kubernetes manifests, offline).
# Each writes its artefacts to dist/ and installs the tools it needs.
include deploy/deb.mk
include deploy/image.mk
include deploy/kubernetes.mk

# Reliability and security checks (fuzzing, sanitizers, soak), one file each.
-include mk/*.mk
