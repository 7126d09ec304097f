# The end-to-end suite again with every echod on the io_uring backend (ECHOD_E2E_IO_BACKEND=io_uring: the tests'
# echods get ECHOD_IO_BACKEND, the real-systemd units a drop-in; Tests/e2e/conftest.py). Where io_uring cannot run
# (an old kernel, kernel.io_uring_disabled, a container's seccomp profile) it says so in one line and succeeds: the
# probe is echod's own (mk/uring-probe.c), so it skips exactly where echod could not serve on io_uring.
URING_PROBE := .build-e2e-uring/uring-probe

.PHONY: test-e2e-uring
$(URING_PROBE): mk/uring-probe.c Sources/CEchodUring/uring.c Sources/CEchodUring/include/CEchodUring.h
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -I Sources/CEchodUring/include -o $@ mk/uring-probe.c Sources/CEchodUring/uring.c -luring

test-e2e-uring: deps build $(URING_PROBE)
	@if ! why=$$($(URING_PROBE) 2>&1); then \
	  echo "SKIPPED test-e2e-uring: io_uring is unavailable on this machine ($$why)"; \
	else \
	  ECHOD_E2E_IO_BACKEND=io_uring ECHOD_BIN=$(abspath $(DEBUG_BIN)) $(PYTHON) -m pytest -q -rs $(E2E_TESTS); \
	fi
