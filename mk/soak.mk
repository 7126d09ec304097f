# Soak (make soak): the release echod at a steady mixed load (bench pingpong, stream and connect churn, idle
# connections) for SOAK_MINUTES (default 10); a table of RSS, open descriptors and CPU every 10 s; fails if RSS or
# descriptors grow beyond noise (bench/soak.py says what that is). Not part of make test; its verdict's own tests
# (bench/tests/test_soak.py) are.
SOAK_MINUTES ?= 10

.PHONY: soak
soak: deps release
	SOAK_MINUTES=$(SOAK_MINUTES) ECHOD_BIN=$(abspath $(RELEASE_BIN)) $(PYTHON) bench/soak.py
