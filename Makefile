# The README's commands. Every target that needs tools depends on `deps`,
# which installs them idempotently.
SHELL := /bin/bash
CARGO ?= cargo
export MESHGUARD_VENV ?= $(CURDIR)/.venv
CARGO_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: help deps demo test lint fmt crds bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

deps: ## Install system packages and the Python test tools (.venv/)
	@scripts/deps.sh

demo: deps ## The local mesh (root): examples/ enforced in namespaces, a measured matrix, a live quarantine
	$(CARGO) build -q -p meshguard-operator -p meshguard-agent -p meshguard-e2e --bins
	$(CARGO_TARGET)/debug/meshguard-demo --examples examples

test: deps lint ## Format check, clippy, then every test
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate crds/*.yaml and their copies from the Rust types
	$(CARGO) run -q -p meshguard-crds --bin crdgen

bench: deps ## Benchmarks: compiler (criterion + figures), operator (mock API), then the agent's dataplane (root); docs/benchmarks.md
	$(CARGO) bench -p meshguard-operator --bench compile
	$(CARGO) run --release -q -p meshguard-operator --example compile_scale
	$(CARGO) run --release -q -p meshguard-operator --example operator_scale
	$(CARGO) build --release -q -p meshguard-operator -p meshguard-agent -p meshguard-e2e --bins
	$(CARGO_TARGET)/release/dataplane-bench
