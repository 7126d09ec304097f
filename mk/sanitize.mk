# Sanitizers (make sanitize): the unit tests, then the end-to-end tests against the sanitized echod, under
# ThreadSanitizer and AddressSanitizer (with LeakSanitizer). Each sanitizer builds in its own scratch path, so the
# normal .build keeps its cache. Any sanitizer report fails the run: every sanitized process writes its reports to
# SCRATCH/sanitizer-reports/ (log_path), including echod processes the end-to-end tests start (conftest passes the
# environment on), and any report there after the tests (an ASan/LSan ERROR, a TSan WARNING) is a failure, printed.
# Suppressions, each with its reason: mk/tsan.supp, mk/asan.supp, mk/lsan.supp.
#
# make test runs the ThreadSanitizer unit tests (sanitize-tsan-unit) when TEST_SANITIZE=1; see the note at the end.
TSAN_SCRATCH := .build-tsan
ASAN_SCRATCH := .build-asan
# The end-to-end tests that do not run ECHOD_BIN (the packaged artefacts: dist/'s .deb, the image, the manifests),
# and test_real_systemd.py, which runs ECHOD_BIN under the shipped unit's sandbox in a booted container: there the
# sanitizer runtimes cannot work (LeakSanitizer's stop-the-world fails under the unit's system call filter, and
# the environment that carries the sanitizer options is the unit's, not ours). make test runs it on the debug build.
SANITIZE_E2E_IGNORE := --ignore=Tests/e2e/test_deb.py --ignore=Tests/e2e/test_image.py \
	--ignore=Tests/e2e/test_kubernetes.py --ignore=Tests/e2e/test_release_hooks.py \
	--ignore=Tests/e2e/test_real_systemd.py

sanitizer_env = TSAN_OPTIONS="suppressions=$(CURDIR)/mk/tsan.supp log_path=$(CURDIR)/$(1)/sanitizer-reports/report \
	history_size=4 print_suppressions=0" \
	ASAN_OPTIONS="suppressions=$(CURDIR)/mk/asan.supp log_path=$(CURDIR)/$(1)/sanitizer-reports/report detect_leaks=1" \
	LSAN_OPTIONS="suppressions=$(CURDIR)/mk/lsan.supp print_suppressions=0"

# Empties the report directory of scratch path $(1).
define sanitizer_reset
	rm -rf $(1)/sanitizer-reports && mkdir -p $(1)/sanitizer-reports
endef

# Fails, printing them, if any process wrote a report (an ASan/LSan ERROR or a TSan WARNING) into scratch path $(1).
define sanitizer_check
	@reports=$$(grep -l -E "ERROR: |WARNING: ThreadSanitizer" $(1)/sanitizer-reports/* 2>/dev/null); \
	if [ -n "$$reports" ]; then \
	  for f in $$reports; do echo "== $$f"; cat "$$f"; done; \
	  echo "sanitizer reports in $(1)/sanitizer-reports: failing"; exit 1; \
	fi; echo "no sanitizer reports ($(1))"
endef

.PHONY: sanitize sanitize-tsan-unit sanitize-asan-unit sanitize-tsan-e2e sanitize-asan-e2e
sanitize: sanitize-tsan-unit sanitize-asan-unit sanitize-tsan-e2e sanitize-asan-e2e

# SWIFT_BACKTRACE=enable=no: a process that crashes under ThreadSanitizer (the exit tests' children, which must; a
# test process whose precondition fails) otherwise runs the Swift backtracer, whose clone from the signal handler trips
# TSan's fork handling (CHECK failed in ForkAfter, then often a segfault: seen here). A child or a backtracer stuck
# there would leave the parent waiting with no output; without the backtracer a crash is a plain SIGILL at once.
# --no-parallel: one test at a time (75 s here instead of 40). TSan still watches every thread a test starts (loops,
# the log writer, servers), which is where the product's races would be; what goes is the tests' interference with
# one another under TSan's slowdown (descriptor numbers, the process's umask, the 2 threads of Swift's pool held by
# blocking tests), which `make test` still runs in parallel. A CI run froze in this step's first seconds (stop 18).
sanitize-tsan-unit: deps
	$(call sanitizer_reset,$(TSAN_SCRATCH))
	$(call sanitizer_env,$(TSAN_SCRATCH)) SWIFT_BACKTRACE=enable=no \
	  $(SWIFT) test --sanitize=thread --scratch-path $(TSAN_SCRATCH) --no-parallel
	$(call sanitizer_check,$(TSAN_SCRATCH))

sanitize-asan-unit: deps
	$(call sanitizer_reset,$(ASAN_SCRATCH))
	$(call sanitizer_env,$(ASAN_SCRATCH)) $(SWIFT) test --sanitize=address --scratch-path $(ASAN_SCRATCH)
	$(call sanitizer_check,$(ASAN_SCRATCH))

# SWIFT_BACKTRACE=enable=no: on SIGABRT (the watchdog's abort, test_lifecycle.py) the Swift runtime's backtracer
# clones a helper from inside the signal handler, which trips a CHECK in TSan's runtime (tsan_rtl.cpp:261 in
# ForkAfter) and the process exits 66 instead of dying of SIGABRT; without the backtracer abort() is plain.
# test_bench_smoke.py is left out: its sub-second measurements record no operation at TSan's 5-15x slowdown (seen:
# ops 0); echod bench runs under TSan in the unit tests (EchodBenchTests) and against echod under ASan.
sanitize-tsan-e2e: deps
	$(SWIFT) build --sanitize=thread --scratch-path $(TSAN_SCRATCH) --product echod
	$(call sanitizer_reset,$(TSAN_SCRATCH))
	$(call sanitizer_env,$(TSAN_SCRATCH)) SWIFT_BACKTRACE=enable=no ECHOD_BIN=$(abspath $(TSAN_SCRATCH))/debug/echod \
	  $(PYTHON) -m pytest -q -rs Tests/e2e $(SANITIZE_E2E_IGNORE) --ignore=Tests/e2e/test_bench_smoke.py
	$(call sanitizer_check,$(TSAN_SCRATCH))

sanitize-asan-e2e: deps
	$(SWIFT) build --sanitize=address --scratch-path $(ASAN_SCRATCH) --product echod
	$(call sanitizer_reset,$(ASAN_SCRATCH))
	$(call sanitizer_env,$(ASAN_SCRATCH)) ECHOD_BIN=$(abspath $(ASAN_SCRATCH))/debug/echod \
	  $(PYTHON) -m pytest -q -rs Tests/e2e $(SANITIZE_E2E_IGNORE)
	$(call sanitizer_check,$(ASAN_SCRATCH))

# make test and the ThreadSanitizer unit tests: measured on this 2-core machine, a cold .build-tsan (what a fresh CI
# checkout has) took 271 s to build and run (with a release build running alongside; tests in parallel then), a
# warm one 75 s (one test at a time). Cold is over
# the ~4-minute budget this check has in make test, so make test runs them only when asked (TEST_SANITIZE=1, e.g. on
# a CI that keeps .build-tsan between runs); make sanitize always does.
ifeq ($(TEST_SANITIZE),1)
TEST_CHECKS += sanitize-tsan-unit
endif
