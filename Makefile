# gandi-vm: build, test, demo and benchmarks.
# `make demo` and `make test` install what they need (scripts/install-deps).

CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
BIN := target/release/gandi-vm

.PHONY: all build deps test lint unit verify-units bench demo clean

all: build

deps:
	./scripts/install-deps

build:
	$(CARGO) build --release --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked

# systemd-analyze verify on the shipped units (with the test build's binary).
verify-units:
	$(CARGO) build --locked
	./scripts/verify-units target/debug/gandi-vm

test: deps lint unit verify-units

demo: deps build
	BIN=$(BIN) ./scripts/demo

bench: deps build
	$(CARGO) bench --locked --bench map
	$(CARGO) bench --locked --bench boot

clean:
	$(CARGO) clean
