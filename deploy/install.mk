# Install rules for echod, included by the top-level Makefile (`include deploy/install.mk`).
#
#   make install   [PREFIX=/usr/local] [DESTDIR=] [ECHOD_BIN=.build/release/echod] [SYSTEMD_UNIT_DIR=/etc/systemd/system]
#   make uninstall (same variables)
#
# Where things go:
#   $(PREFIX)/bin/echod                        the binary, from $(ECHOD_BIN)
#   $(SYSTEMD_UNIT_DIR)/echod.{service,socket} the units, ExecStart= rewritten to $(PREFIX)/bin/echod
#   /etc/echod/echod.yaml                      config/echod.yaml, only if there is none yet (the admin's file)
# Every path is prefixed with $(DESTDIR) for staged installs (packaging).
#
# The units go to /etc/systemd/system, not $(PREFIX)/lib/systemd/system: this is a local, administrator-made install,
# and /etc/systemd/system is the directory systemd always searches for those, whatever PREFIX is (systemd searches
# /usr/local/lib/systemd/system but not, say, /opt/echod/lib/systemd/system). A distribution package would set
# SYSTEMD_UNIT_DIR to its vendor directory (pkg-config --variable=systemdsystemunitdir systemd).
#
# Nothing here talks to systemd: run `systemctl daemon-reload` and `systemctl enable --now echod` (or echod.socket)
# yourself. `uninstall` leaves /etc/echod/echod.yaml and /var/log/echod alone: they are the administrator's data.

PREFIX ?= /usr/local
DESTDIR ?=
ECHOD_BIN ?= .build/release/echod
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
ECHOD_CONFIG_DIR ?= /etc/echod

ECHOD_DEPLOY_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
ECHOD_UNITS := echod.service echod.socket

.PHONY: install uninstall

install:
	@test -x "$(ECHOD_BIN)" || { echo "install: $(ECHOD_BIN) is missing: build echod first (or set ECHOD_BIN)" >&2; exit 1; }
	install -D -m 0755 "$(ECHOD_BIN)" "$(DESTDIR)$(PREFIX)/bin/echod"
	install -d -m 0755 "$(DESTDIR)$(SYSTEMD_UNIT_DIR)"
	for unit in $(ECHOD_UNITS); do \
		sed 's|/usr/local/bin/echod|$(PREFIX)/bin/echod|g' "$(ECHOD_DEPLOY_DIR)/$$unit" > "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit.tmp" && \
		chmod 0644 "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit.tmp" && \
		mv -f "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit.tmp" "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit" || exit 1; \
	done
	@if [ -e "$(DESTDIR)$(ECHOD_CONFIG_DIR)/echod.yaml" ]; then \
		echo "install: keeping the existing $(DESTDIR)$(ECHOD_CONFIG_DIR)/echod.yaml"; \
	else \
		echo "install -D -m 0644 $(ECHOD_DEPLOY_DIR)/../config/echod.yaml $(DESTDIR)$(ECHOD_CONFIG_DIR)/echod.yaml"; \
		install -D -m 0644 "$(ECHOD_DEPLOY_DIR)/../config/echod.yaml" "$(DESTDIR)$(ECHOD_CONFIG_DIR)/echod.yaml"; \
	fi
	@echo "install: done; now: systemctl daemon-reload && systemctl enable --now echod.service (or echod.socket)"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/echod"
	for unit in $(ECHOD_UNITS); do rm -f "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit"; done
	@echo "uninstall: left $(DESTDIR)$(ECHOD_CONFIG_DIR)/echod.yaml and /var/log/echod in place; run systemctl daemon-reload"
