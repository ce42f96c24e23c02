# Build, run, test and benchmark the Rust Rekor v2 tile log.
CARGO ?= cargo
STORAGE_DIR ?= ./rekor-data
HOSTNAME ?= localhost

.PHONY: all build run test test-rust lint fmt bench bench-smoke bench-scale clean

all: build

build:
	$(CARGO) build --release --workspace

# Runs a complete log on the POSIX default: tiles, checkpoint and key under $(STORAGE_DIR).
run:
	$(CARGO) run --release -p rekor-server-posix -- serve --storage-dir $(STORAGE_DIR) --hostname $(HOSTNAME)

# The test command README gives and CI runs: installs the emulators the cloud backend tests start
# on 127.0.0.1 (tests/emulators/setup.sh), then the Rust suites, then interop with sigstore-python.
test: emulators test-rust test-interop

# fake-gcs-server and moto in a venv under ~/.cache/rekor-rs/, MariaDB from Debian when root.
# The Cloud Spanner emulator comes with the Google Cloud SDK. Missing emulators make those tests
# skip with a message, unless REKOR_REQUIRE_EMULATORS=1 (CI), which makes them fail.
.PHONY: emulators
emulators:
	bash tests/emulators/setup.sh

test-rust:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Benchmarks against this machine's own limits in one run (see BENCHMARKS.md); the last line is
# `entries_per_s=.. p256_verify_per_s=.. ratio=.. p50_ms=.. p99_ms=..`.
bench:
	CARGO="$(CARGO)" bash bench/run.sh full

# A tiny load over HTTP and gRPC with every response verified; fails on any error (CI).
bench-smoke:
	CARGO="$(CARGO)" bash bench/run.sh smoke

# Opt-in: SCALE_ENTRIES entries (default 10,000,000): RSS, restart time, bytes per entry.
bench-scale:
	CARGO="$(CARGO)" bash bench/run.sh scale

# Opt-in, the search benchmark of issue #20: a log of SEARCH_ENTRIES entries (default 1,000,000;
# about 600 MB per million under TMPDIR, deleted after) built in-process, its index built from
# zero, bytes per entry, and GET /api/v2/search p50/p99 over SEARCH_QUERIES queries per class.
SEARCH_ENTRIES ?= 1000000
SEARCH_QUERIES ?= 2000
.PHONY: bench-search
bench-search:
	CARGO="$(CARGO)" SEARCH_ENTRIES="$(SEARCH_ENTRIES)" SEARCH_QUERIES="$(SEARCH_QUERIES)" bash bench/run.sh search

# The server alone on core 0, the generator on core 1 (taskset; needs 2 CPUs): writes/s over
# single-core verify/s, server CPU per entry, the ceiling, p50 at c=256 (see BENCHMARKS.md).
.PHONY: bench-pinned
bench-pinned:
	CARGO="$(CARGO)" bash bench/run.sh pinned

# Opt-in: the pinned write load under perf, and where the server's CPU per entry goes against
# the ceiling's (needs perf and python3).
.PHONY: bench-profile
bench-profile:
	CARGO="$(CARGO)" bash bench/run.sh profile

clean:
	$(CARGO) clean

# Interop with sigstore-python, a third-party Rekor v2 client (tests/interop/). Needs python3 and
# the package registry the first time; the venv is kept in $(INTEROP_VENV) and reused.
INTEROP_VENV ?= $(HOME)/.cache/rekor-rs/interop-venv
.PHONY: test-interop
test-interop:
	INTEROP_VENV="$(INTEROP_VENV)" CARGO="$(CARGO)" bash tests/interop/run.sh

# Fuzzing (fuzz/README.md): builds every cargo-fuzz target, then runs each for FUZZ_SECONDS on a
# scratch corpus seeded from fuzz/corpus/<target> and fuzz/regressions/<target>. Needs
# `cargo install cargo-fuzz`; RUSTC_BOOTSTRAP=1 lets the stable toolchain take its sanitizer flags.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= tile_path entry_bundle signed_note checkpoint create_entry_protobuf create_entry_json log_keys client_keys
.PHONY: fuzz
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p work/$$t regressions/$$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t work/$$t corpus/$$t regressions/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 || exit 1; \
	done
