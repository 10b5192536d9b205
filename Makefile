# Two commands do all set-up (see README.md):
#   make demo   bootstrap, build, run the platform on this machine with the demo alerts
#   make test   bootstrap, run the Rust and Python test suites
SHELL := /bin/bash
PYTHON ?= python3
# Build the runner against the same CPython that `pip` installs into (see docs/architecture.md).
export PYO3_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
CARGO ?= cargo

.PHONY: all bootstrap build demo test test-rust test-python fmt lint fuzz clean

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

# Fuzz the ingest parsers (fuzz/, docs/fuzzing.md) for FUZZ_SECONDS each. Not part of `make
# test`: it needs the nightly toolchain and cargo-fuzz (installed here when missing).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= normalize hec signature shape mapping
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(CARGO) +nightly fuzz build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		case $$t in \
			normalize|shape) seeds=ingest/tests/fixtures ;; \
			hec|mapping|signature) seeds=fuzz/seeds/$$t ;; \
			*) seeds= ;; \
		esac; \
		$(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
	rm -rf .tocsin
