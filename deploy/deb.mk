# The Debian package, included by the top-level Makefile (`-include deploy/deb.mk`).
#
#   make deb            [DEB_REVISION=1] [DEB_DIST=dist] [DEB_MAINTAINER="Name <address>"] [SOURCE_DATE_EPOCH=] [DEB_COMMIT=]
#                       builds the release binary (make release), packages it with dpkg-buildpackage and debhelper,
#                       checks it with lintian (errors and warnings fail), and leaves
#                       $(DEB_DIST)/echod_VERSION-REVISION_ARCH.deb
#   make deb-package    the packaging step alone, from the binary and the generate-manual tool make deb built (no
#                       release build, no lintian): what the end-to-end test uses to build an "upgrade"
#                       (DEB_REVISION=2) and a second build to compare bytes with, each with its own DEB_DIST and
#                       DEB_STAGE.
#
# Swift is not a Debian package, so debian/rules cannot build echod: make builds it, generates the man pages and
# shell completions from it, and stages them in $(DEB_STAGE)/echod-VERSION/staged/, next to a debian/ directory
# made of deploy/debian/ plus what is generated per build (control's Maintainer, the changelog, the units).
#
# Every input comes from the repository's own files: the version from Daemon.swift, the units and the socket-only
# drop-in (an example in /usr/share/doc/echod/examples) from deploy/, the conffile from config/echod.yaml, echod(8)
# and the completions from the binary's command-line definitions, echod.yaml(5) from config/echod.yaml's comments.
# Two packagings of the same binary at the same commit give identical bytes: every date comes from
# SOURCE_DATE_EPOCH (the last commit's time by default), dpkg-deb sorts the files and clamps their times to it.
# (Two clean release builds of one commit, in different scratch directories, did not give identical binaries on
# 2026-12-02, even with SWIFT_DETERMINISTIC_HASHING=1: swiftc scheduled a few instructions of EchodConfig's
# Units.swift.o in another order, and every object's 16-byte .swift_modhash section differed.)

DEB_REVISION ?= 1
DEB_DIST ?= dist
DEB_STAGE ?= .build-deb
DEB_MAINTAINER ?= echod maintainers <echod@example.org>
DEB_BIN ?= $(RELEASE_BIN)
DEB_APT_PACKAGES := debhelper dpkg-dev lintian man-db git python3

DEB_VERSION_FILE := Sources/EchodDaemon/Daemon.swift
DEB_UPSTREAM_VERSION = $(shell sed -n 's/^.*static let version = "\([^"]*\)".*/\1/p' $(DEB_VERSION_FILE))
DEB_ARCH = $(shell dpkg --print-architecture)
DEB_FILE = echod_$(DEB_UPSTREAM_VERSION)-$(DEB_REVISION)_$(DEB_ARCH).deb
# dh_strip's automatic debug-symbol package (Debian names it .deb, not .ddeb): the debug information split off
# /usr/bin/echod, found by build ID, so that systemd-coredump's core dumps of echod can be read with symbols.
DEB_DBGSYM_FILE = echod-dbgsym_$(DEB_UPSTREAM_VERSION)-$(DEB_REVISION)_$(DEB_ARCH).deb
DEB_SOURCE_DATE_EPOCH = $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))
# The commit the changelog names (so that `zcat /usr/share/doc/echod/changelog.Debian.gz` says what was built).
DEB_COMMIT ?= $(or $(shell git rev-parse --short=12 HEAD 2>/dev/null),unknown)

# echod(8) is written by swift-argument-parser's generate-manual tool from `echod --experimental-dump-help`. The tool
# is built on its own, from the very swift-argument-parser checkout echod was built with (same dump format), in a
# scratch directory of its own. Not the `swift package generate-manual` plugin: it builds (see its source) every
# product of the package in release mode WITHOUT --static-swift-stdlib in .build, relinking (and replacing) .build/release/echod
# with a binary that needs the toolchain's shared libraries, and it would document that binary instead of the one
# shipped. The tool takes about 30 s to build once; it is rebuilt only when the checkout's commit changes.
DEB_ARGUMENT_PARSER := .build/checkouts/swift-argument-parser
DEB_TOOLS := .build-deb-tools
DEB_MANUAL_TOOL := $(DEB_TOOLS)/release/generate-manual

.PHONY: deb deb-deps deb-manual-tool deb-package deb-lint

deb: deb-deps release
	@$(MAKE) --no-print-directory deb-manual-tool
	@$(MAKE) --no-print-directory deb-package
	@$(MAKE) --no-print-directory deb-lint

deb-deps:
	$(call apt_install,$(DEB_APT_PACKAGES))

deb-manual-tool:
	@test -d "$(DEB_ARGUMENT_PARSER)" || { echo "deb: $(DEB_ARGUMENT_PARSER) is missing: run make release first" >&2; exit 1; }
	@rev=$$(git -C "$(DEB_ARGUMENT_PARSER)" rev-parse HEAD) && stamp="$(DEB_TOOLS)/generate-manual-$$rev.built" && \
	if [ ! -e "$$stamp" ] || [ ! -x "$(DEB_MANUAL_TOOL)" ]; then \
		echo "deb: building swift-argument-parser's generate-manual ($$rev)"; \
		rm -rf "$(DEB_TOOLS)" && mkdir -p "$(DEB_TOOLS)/src" && \
		git -C "$(DEB_ARGUMENT_PARSER)" archive "$$rev" | tar -x -C "$(DEB_TOOLS)/src" && \
		$(SWIFT) build -c release --package-path "$(DEB_TOOLS)/src" --scratch-path "$(DEB_TOOLS)" \
			--product generate-manual >"$(DEB_TOOLS)/build.log" 2>&1 || { cat "$(DEB_TOOLS)/build.log" >&2; exit 1; }; \
		touch "$$stamp"; \
	fi

# The stage is rebuilt from nothing each time, so a file removed from deploy/debian/ cannot linger in a package.
deb-package: DEB_SRC = $(DEB_STAGE)/echod-$(DEB_UPSTREAM_VERSION)
deb-package:
	@test -x "$(DEB_BIN)" || { echo "deb: $(DEB_BIN) is missing: run make release (or set DEB_BIN)" >&2; exit 1; }
	@test -x "$(DEB_MANUAL_TOOL)" || { echo "deb: $(DEB_MANUAL_TOOL) is missing: run make deb-manual-tool" >&2; exit 1; }
	@test -n "$(DEB_UPSTREAM_VERSION)" || { echo "deb: no version in $(DEB_VERSION_FILE)" >&2; exit 1; }
	@test -n "$(DEB_SOURCE_DATE_EPOCH)" || { echo "deb: set SOURCE_DATE_EPOCH (not a git checkout)" >&2; exit 1; }
	rm -rf "$(DEB_SRC)"
	mkdir -p "$(DEB_SRC)/staged/man" "$(DEB_SRC)/staged/completions/bash" "$(DEB_SRC)/staged/completions/zsh" \
		"$(DEB_SRC)/staged/completions/fish"
	cp -R deploy/debian "$(DEB_SRC)/debian"
	rm "$(DEB_SRC)/debian/config-manpage.py"
	sed -i 's|@DEB_MAINTAINER@|$(DEB_MAINTAINER)|' "$(DEB_SRC)/debian/control"
	{ printf 'echod (%s-%s) unstable; urgency=medium\n\n' "$(DEB_UPSTREAM_VERSION)" "$(DEB_REVISION)"; \
	  printf '  * echod %s, built from commit %s.\n\n' "$(DEB_UPSTREAM_VERSION)" "$(DEB_COMMIT)"; \
	  printf ' -- %s  %s\n' "$(DEB_MAINTAINER)" "$$(date -u -R -d @$(DEB_SOURCE_DATE_EPOCH))"; } > "$(DEB_SRC)/debian/changelog"
	for unit in echod.service echod.socket; do \
		sed 's|/usr/local/bin/echod|/usr/bin/echod|g' "deploy/$$unit" > "$(DEB_SRC)/debian/$$unit" || exit 1; \
	done
	install -m 0755 "$(DEB_BIN)" "$(DEB_SRC)/staged/echod"
	install -m 0644 config/echod.yaml "$(DEB_SRC)/staged/echod.yaml"
	@# The drop-in for a socket-only setup (README, "Running under systemd"): documentation, not installed as a unit.
	install -D -m 0644 deploy/echod-socket-only.conf "$(DEB_SRC)/staged/examples/echod-socket-only.conf"
	@# bash-completion sources the file, never runs it: the generated script's "#!/bin/bash" line is dropped.
	"$(DEB_SRC)/staged/echod" --generate-completion-script bash | sed '1{/^#!/d}' > "$(DEB_SRC)/staged/completions/bash/echod"
	"$(DEB_SRC)/staged/echod" --generate-completion-script zsh > "$(DEB_SRC)/staged/completions/zsh/_echod"
	"$(DEB_SRC)/staged/echod" --generate-completion-script fish > "$(DEB_SRC)/staged/completions/fish/echod.fish"
	"$(DEB_MANUAL_TOOL)" "$(DEB_SRC)/staged/echod" --section 8 --date "$$(date -u -d @$(DEB_SOURCE_DATE_EPOCH) +%F)" \
		--output-directory "$(DEB_SRC)/staged/man"
	@# generate-manual passes a discussion's paragraph breaks through as empty lines, which roff prints as literal
	@# blank lines (groff warns); .Pp is mdoc's paragraph break.
	sed -i 's/^$$/.Pp/' "$(DEB_SRC)/staged/man/echod.8"
	$(PYTHON) deploy/debian/config-manpage.py config/echod.yaml --version "$(DEB_UPSTREAM_VERSION)" \
		--date "$$(date -u -d @$(DEB_SOURCE_DATE_EPOCH) +%F)" > "$(DEB_SRC)/staged/man/echod.yaml.5"
	cd "$(DEB_SRC)" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL SOURCE_DATE_EPOCH=$(DEB_SOURCE_DATE_EPOCH) \
		dpkg-buildpackage -b -us -uc --no-pre-clean >../dpkg-buildpackage.log 2>&1 \
		|| { cat ../dpkg-buildpackage.log >&2; exit 1; }
	mkdir -p "$(DEB_DIST)"
	mv -f "$(DEB_STAGE)/$(DEB_FILE)" "$(DEB_DIST)/$(DEB_FILE)"
	mv -f "$(DEB_STAGE)/$(DEB_DBGSYM_FILE)" "$(DEB_DIST)/$(DEB_DBGSYM_FILE)"
	@echo "deb: $(DEB_DIST)/$(DEB_FILE) ($$(du -k "$(DEB_DIST)/$(DEB_FILE)" | cut -f1) KiB)"

deb-lint:
	lintian --fail-on error,warning --display-info "$(DEB_DIST)/$(DEB_FILE)" "$(DEB_DIST)/$(DEB_DBGSYM_FILE)"
	@echo "deb: lintian reports no errors and no warnings for $(DEB_FILE) and $(DEB_DBGSYM_FILE)"
