# Neural Render Bridge. `make demo` and `make test` work on a fresh Debian machine (setup runs first).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
PY := $(VENV)/bin/python
CMAKE_GEN := -G Ninja
FUZZ_TIME ?= 20
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1

.PHONY: setup test demo bench fuzz lint clean distclean ruff cpp-test cpp-asan cpp-tsan cpp-fuzz fuzz-run fuzz-merge pytest

setup:
	bash tools/setup.sh

test: setup
	$(MAKE) --no-print-directory ruff
	$(MAKE) --no-print-directory cpp-test
	$(MAKE) --no-print-directory cpp-asan
	$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=20
	$(MAKE) --no-print-directory pytest

# `make demo DEMO_ARGS="--output-size 640x360"`: 640x360 output from 320x180 G-buffers, the 2x-upscaling model
# (docs/plugins.md, "The sample game and make demo"); any other nrb_panda3d.demo flag works the same way.
DEMO_ARGS ?=
demo: setup
	$(PY) -m nrb_panda3d.demo --out out/demo $(DEMO_ARGS)

bench: setup
	$(VENV)/bin/nrb bench all --out bench

# `make test` fuzzes for 20 s and runs the hypothesis decoder test with 400 examples; `make fuzz` runs the libFuzzer
# target for FUZZ_LONG seconds, merges inputs that add coverage into the checked-in corpus (tests/fuzz_corpus/,
# review and commit them), then runs the hypothesis decoder test, seeded from the same corpus, with FUZZ_EXAMPLES.
FUZZ_LONG ?= 300
FUZZ_EXAMPLES ?= 20000
fuzz: setup
	$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=$(FUZZ_LONG)
	$(MAKE) --no-print-directory fuzz-merge
	NRB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_protocol_codec.py \
	  -k decoder_never_fails

lint: setup
	$(VENV)/bin/ruff check bridge nrb_bench neural_renderer engine_plugins/panda3d tests
	$(VENV)/bin/mypy bridge nrb_bench

# --- building blocks (no setup dependency) -----------------------------------------------------------------
ruff:
	$(VENV)/bin/ruff check bridge nrb_bench neural_renderer engine_plugins/panda3d tests

pytest:
	$(PY) -m pytest -q

cpp-test:
	cmake -S . -B build/cpp-tests $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRB_BUILD_TESTS=ON
	cmake --build build/cpp-tests
	ctest --test-dir build/cpp-tests --output-on-failure --no-tests=error

cpp-asan:
	cmake -S . -B build/cpp-asan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRB_BUILD_TESTS=ON -DNRB_SANITIZE=ON
	cmake --build build/cpp-asan
	ctest --test-dir build/cpp-asan --output-on-failure --no-tests=error

# ThreadSanitizer build of libnrb and its tests (engine, I/O and nrb-pool threads). Not part of `make test` (CI time:
# TSan runs the tests 5-15x slower); run it after touching io_thread/pipeline/thread_pool. cpp/tsan.supp suppresses
# only what uninstrumented libraries (libzmq, libsodium) cause, each entry saying why.
cpp-tsan:
	cmake -S . -B build/cpp-tsan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRB_BUILD_TESTS=ON -DNRB_TSAN=ON
	cmake --build build/cpp-tsan
	TSAN_OPTIONS="$(TSAN_OPTIONS):suppressions=$(CURDIR)/cpp/tsan.supp" \
	  ctest --test-dir build/cpp-tsan --output-on-failure --no-tests=error

# Each cpp/fuzz/<name>.cpp runs for FUZZ_TIME seconds. Seeds are read from tests/fuzz_corpus/<name> and every shared
# vector (tests/vectors/*.bin, copied in each run, so a vector added later seeds the fuzzer without a corpus edit);
# new inputs go to build/cpp-fuzz/corpus/<name> and crash artifacts to build/cpp-fuzz/artifacts/, so the tree stays
# clean.
cpp-fuzz:
	CC=clang CXX=clang++ cmake -S . -B build/cpp-fuzz $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRB_BUILD_FUZZ=ON
	cmake --build build/cpp-fuzz

fuzz-run:
	@shopt -s nullglob; srcs=(cpp/fuzz/*.cpp); \
	if [ $${#srcs[@]} -eq 0 ]; then echo "[fuzz] no cpp/fuzz/*.cpp: skipping"; exit 0; fi; \
	$(MAKE) --no-print-directory cpp-fuzz; \
	mkdir -p build/cpp-fuzz/artifacts; \
	for src in "$${srcs[@]}"; do \
	  name=$$(basename "$$src" .cpp); \
	  mkdir -p "tests/fuzz_corpus/$$name" "build/cpp-fuzz/corpus/$$name"; \
	  cp tests/vectors/*.bin "build/cpp-fuzz/corpus/$$name/"; \
	  echo "[fuzz] $$name for $(FUZZ_TIME)s"; \
	  "build/cpp-fuzz/fuzz/$$name" -max_total_time=$(FUZZ_TIME) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix="build/cpp-fuzz/artifacts/$$name-" \
	    "build/cpp-fuzz/corpus/$$name" "tests/fuzz_corpus/$$name"; \
	done

# Keep what the fuzzer found: inputs of build/cpp-fuzz/corpus/<name> that reach code the checked-in corpus does not
# are copied into tests/fuzz_corpus/<name> (libFuzzer -merge=1 adds only coverage-increasing inputs).
fuzz-merge:
	@shopt -s nullglob; for src in cpp/fuzz/*.cpp; do \
	  name=$$(basename "$$src" .cpp); bin="build/cpp-fuzz/fuzz/$$name"; \
	  [ -x "$$bin" ] || { echo "[fuzz] $$bin not built: skipping merge"; continue; }; \
	  before=$$(ls "tests/fuzz_corpus/$$name" | wc -l); \
	  "$$bin" -merge=1 -timeout=10 "tests/fuzz_corpus/$$name" "build/cpp-fuzz/corpus/$$name" >/dev/null 2>&1; \
	  echo "[fuzz] $$name: corpus $$before -> $$(ls "tests/fuzz_corpus/$$name" | wc -l) files (tests/fuzz_corpus/$$name)"; \
	done

clean:
	rm -rf build _skbuild .pytest_cache .ruff_cache .mypy_cache
	find bridge nrb_bench neural_renderer tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
