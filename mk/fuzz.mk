# Fuzzing with libFuzzer (Fuzz/README.md): one target per parser, each a folder Fuzz/FuzzNAME (listed here by that
# name) with seeds in Fuzz/corpus/FuzzNAME. Built in release with AddressSanitizer in its own scratch path, with
# ECHOD_FUZZ set (Package.swift declares the targets only then), so the normal build, tests and release never see it.
#   make fuzz          FUZZ_SECONDS (600) per target, FUZZ_WORKERS (2) processes sharing one corpus
#   make fuzz-short    FUZZ_SHORT_SECONDS (10) per target of FUZZ_SHORT_TARGETS, one process; part of make test
# Generated corpora, crash inputs and logs stay in .build-fuzz; only the seeds are committed.
FUZZ_TARGETS := $(patsubst Fuzz/%/,%,$(wildcard Fuzz/Fuzz*/))
FUZZ_BUILD := .build-fuzz
# ld.gold stops with an internal error (dwarf_reader.cc) on these sanitized objects; the toolchain's lld links them.
FUZZ_BUILD_FLAGS := -c release --scratch-path $(FUZZ_BUILD) -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
FUZZ_BIN := $(FUZZ_BUILD)/release
FUZZ_SECONDS ?= 600
FUZZ_WORKERS ?= 2
FUZZ_SHORT_SECONDS ?= 10
FUZZ_SHORT_TARGETS ?= $(FUZZ_TARGETS)
# The Swift runtime's backtracer would take over the crash from ASan and libFuzzer (and trip ASan itself): off, so
# that libFuzzer prints the stack and saves the input. FuzzConfig writes its input files under TMPDIR.
FUZZ_ENV = SWIFT_BACKTRACE=enable=no TMPDIR=$(abspath $(FUZZ_BUILD))/tmp
# -timeout: an input that takes this long is a hang and a finding (the admin target waits 5 s for the server itself).
FUZZ_ARGS := -timeout=10 -print_final_stats=1

.PHONY: fuzz fuzz-short fuzz-build
FUZZ_BUILD_TARGETS = $(FUZZ_TARGETS)
fuzz-short: FUZZ_BUILD_TARGETS = $(FUZZ_SHORT_TARGETS)
fuzz-build: deps
	@for t in $(FUZZ_BUILD_TARGETS); do \
	  ECHOD_FUZZ=1 $(SWIFT) build $(FUZZ_BUILD_FLAGS) --product $$t 2>&1 | grep -v "Cannot export local symbol"; \
	  test $${PIPESTATUS[0]} = 0 || exit 1; \
	done

# Each target: its own corpus in .build-fuzz (written), the committed seeds (read only); a crash leaves
# .build-fuzz/artifacts/TARGET-crash-* and fails make.
define fuzz_run
	@mkdir -p $(FUZZ_BUILD)/tmp $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/logs
	@set -e; for t in $(3); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "fuzz: $$t for $(1) s"; \
	  $(FUZZ_ENV) $(FUZZ_BIN)/$$t $(FUZZ_ARGS) -max_total_time=$(1) $(2) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	    $(FUZZ_BUILD)/corpus/$$t Fuzz/corpus/$$t > $(FUZZ_BUILD)/logs/$$t.log 2>&1 \
	    || { tail -60 $(FUZZ_BUILD)/logs/$$t.log; echo "fuzz: $$t failed; the input is in $(FUZZ_BUILD)/artifacts (Fuzz/README.md)"; exit 1; }; \
	  grep -h "stat::number_of_executed_units\|stat::average_exec_per_sec" $(FUZZ_BUILD)/logs/$$t.log | sed "s/^/  $$t /"; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS),-fork=$(FUZZ_WORKERS),$(FUZZ_TARGETS))

fuzz-short: fuzz-build
	$(call fuzz_run,$(FUZZ_SHORT_SECONDS),,$(FUZZ_SHORT_TARGETS))

TEST_CHECKS += fuzz-short
