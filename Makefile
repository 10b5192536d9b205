# Two commands do all set-up (see README.md):
#   make demo   bootstrap, build, run the platform on this machine with the demo alerts
#   make test   bootstrap, run the Rust and Python test suites
SHELL := /bin/bash
PYTHON ?= python3
# Build the runner against the same CPython that `pip` installs into (see docs/architecture.md).
export PYO3_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
CARGO ?= cargo

.PHONY: all bootstrap build demo test test-rust test-python fmt lint clean

all: build

bootstrap:
	@deploy/bootstrap.sh

build: bootstrap
	$(CARGO) build --locked -p tocsin-cli

demo: build
	TOCSIN_TELEMETRY__FILTER=$${TOCSIN_TELEMETRY__FILTER:-warn} target/debug/tocsin demo

test: bootstrap test-rust test-python

test-rust:
	$(CARGO) test --workspace --locked

# The phishing end-to-end test drives target/debug/tocsin (built by test-rust's cargo test).
test-python:
	@[ -x target/debug/tocsin ] || $(CARGO) build --locked -p tocsin-cli
	cd playbooks && $(PYTHON) -m pytest sdk/tests tests -q -p no:cacheprovider
	$(PYTHON) -m pytest deploy/tests -q -p no:cacheprovider

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

clean:
	$(CARGO) clean
	rm -rf .tocsin
