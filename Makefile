# gandi-vm: build, test, demo and benchmarks.
# `make demo` and `make test` install what they need (scripts/install-deps).

CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
BIN := target/release/gandi-vm

.PHONY: all build deps test lint unit bench demo clean install

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

test: deps lint unit

demo: deps build
	BIN=$(BIN) ./scripts/demo

bench: deps build
	$(CARGO) bench --locked --bench map

clean:
	$(CARGO) clean
