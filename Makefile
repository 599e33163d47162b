# Entry points for routine work. A newcomer needs two: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Extra arguments: `make run ARGS="serve --config my.yaml"`,
# `make test NEXTEST_ARGS="-E 'test(conformance)'"`.
ARGS ?=
NEXTEST_ARGS ?=

.PHONY: help run test check fmt bench bench-read bench-load bench-zonal fuzz clean-data setup services

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

run: ## Run a standalone instance (API + worker + scheduler) in release mode
	bash scripts/setup-system.sh
	cargo run --release -- $(ARGS)

test: ## Install what is missing, start the test services, build and run every test
	bash scripts/setup-system.sh
	bash scripts/setup-python.sh
	bash scripts/test-services.sh
	source scripts/test-env.sh && cargo build --workspace --bins && cargo nextest run --workspace --no-fail-fast $(NEXTEST_ARGS)

check: ## Formatting and lints, as CI runs them
	bash scripts/setup-system.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the whole workspace
	cargo fmt --all

bench: ## Run the benchmark harness (bench/run.sh)
	@test -f bench/run.sh || { echo "bench/run.sh does not exist yet" >&2; exit 1; }
	bash bench/run.sh

bench-read: ## Run the read-surface benchmarks (bench/read.sh: /zarr vs nginx, EDR, tiles)
	bash bench/read.sh

bench-load: ## Trivial runs through RabbitMQ (runs/s, p50/p99) and reads under wrk while ingesting (bench/load.py)
	bash scripts/setup-python.sh
	bash scripts/test-services.sh
	bash scripts/build-release.sh
	source scripts/test-env.sh && .venv/bin/python bench/load.py

bench-zonal: ## Zonal statistics: climate-compute against exactextract (bench/zonal.sh)
	bash bench/zonal.sh

FUZZ_SECONDS ?= 60
fuzz: ## Run every cargo-fuzz target for FUZZ_SECONDS each (nightly toolchain, cargo-fuzz)
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

clean-data: ## Remove the local data directory (./data)
	rm -rf ./data

setup: ## Install system packages and the Python venv only
	bash scripts/setup-system.sh
	bash scripts/setup-python.sh

services: ## Start the test services (PostgreSQL, Redis, RabbitMQ, S3) if not running
	bash scripts/setup-python.sh
	bash scripts/test-services.sh
