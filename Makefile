# Build, run, test and benchmark the Rust Rekor v2 tile log.
CARGO ?= cargo
STORAGE_DIR ?= ./rekor-data
HOSTNAME ?= localhost

.PHONY: all build run test lint fmt bench clean

all: build

build:
	$(CARGO) build --release --workspace

# Runs a complete log on the POSIX default: tiles, checkpoint and key under $(STORAGE_DIR).
run:
	$(CARGO) run --release -p rekor-server-posix -- serve --storage-dir $(STORAGE_DIR) --hostname $(HOSTNAME)

# The test command README gives and CI runs.
test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p rekor-entries --bench verify
	$(CARGO) bench -p rekor-tlog --bench append

clean:
	$(CARGO) clean
