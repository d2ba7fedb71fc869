# Parley's build, test and lint entry points. GNU make; run from the
# workspace root. There is no root go.mod: every target runs over the
# modules that go.work lists.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
# The workspace modules, as absolute directories.
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')
# One "./..." pattern per module: `go test ./...` does not cross modules.
PACKAGES := $(addsuffix /...,$(MODULES))

HTTP_ADDR ?= 127.0.0.1:8080
DATA_DIR ?= ./data
TEST_FLAGS ?= -race -count=1 -timeout 30m
# Runs before `make run` and `make bench`: installs ClickHouse where it can,
# explains how otherwise. Parley runs without it (analytics then reports not ready).
ENSURE_CLICKHOUSE ?= scripts/ensure-clickhouse.sh

.PHONY: help build web run demo test test-chdb test-web fuzz lint fmt-check vet build-modules bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: web ## build the front-end, then bin/parley with it embedded
	$(GO) build -o bin/parley ./cmd/parley

# The front-end (web/) is bundled into the gateway's embedded directory.
# npm ci installs what the lockfile pins when node_modules is missing or
# older than the lockfile (npm writes node_modules/.package-lock.json on
# each install). Without Node.js 20+ and npm the build stops and says what to
# install; NO_WEB=1 skips them (bin/parley then embeds what dist/ holds: on a
# fresh checkout only its README, and the gateway answers 404 for the pages).
# The Go tests need neither.
NO_WEB ?=

web: ## build the web pages into services/gateway/internal/web/dist (needs Node.js 20+ and npm; NO_WEB=1 skips them)
ifeq ($(NO_WEB),)
	@if ! command -v npm >/dev/null 2>&1 || [ "$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then \
		echo "The web pages (widget, console, privacy page, dashboard) need Node.js 20 or later with npm;" >&2; \
		echo "found node $$(node --version 2>/dev/null || echo none), npm $$(npm --version 2>/dev/null || echo none)." >&2; \
		echo "Install them (https://nodejs.org/en/download), or build without the pages: make $(or $(MAKECMDGOALS),build) NO_WEB=1" >&2; \
		exit 1; \
	fi
	cd web && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run --silent build
else
	@echo "NO_WEB is set: the web pages are not built; bin/parley embeds what services/gateway/internal/web/dist holds (on a fresh checkout only its README: the gateway answers 404 for the pages)"
endif

run: build ## build, then run every service in one process (HTTP_ADDR, DATA_DIR)
	$(ENSURE_CLICKHOUSE)
	./bin/parley all --http-addr $(HTTP_ADDR) --data-dir $(DATA_DIR)

# bin/parley is the one `make run` built and runs: demo talks to it, and
# reads the signing key under DATA_DIR to mint the agent's token.
demo: ## with `make run` running: seed the demo tenant with consenting visitors' chats, then print the pages to open and their tokens
	@[ -x bin/parley ] || $(MAKE) build
	./bin/parley demo --data-dir $(DATA_DIR) --gateway http://$(HTTP_ADDR)

test: test-chdb ## run every module's tests with the race detector (needs clickhouse-server), each Go benchmark once, then the browser tests
	$(GO) test $(TEST_FLAGS) $(PACKAGES)
	$(GO) test -run '^$$' -bench . -benchtime 1x $(BENCH_PACKAGES)
	$(MAKE) test-web

# ClickHouse 26.7 for the analytics store's tests (TestStore/chdb): chDB,
# ClickHouse's engine as a library, from npm (about 550 MB), installed as
# the lockfile pins it when node_modules is missing or older than the
# lockfile, as web does. `npm install --no-save` rather than `npm ci`: the
# lockfile holds the Linux x86-64 library only (the registry it was made
# from served no other), which `npm ci` refuses as out of sync; install
# still takes every locked version and leaves the lockfile as it is. Only
# `make test` needs it, never the build. Without Node.js 20+ and npm it is
# left out: the test then skips, and fails in CI.
CHDB_DIR := services/analytics/internal/clickhouse/testdata/chdb

test-chdb:
	@if ! command -v npm >/dev/null 2>&1 || [ "$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then \
		echo "No Node.js 20+ with npm: TestStore/chdb (the analytics store on ClickHouse 26.7) will skip." >&2; \
	else \
		cd $(CHDB_DIR) && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm install --no-save --no-audit --no-fund; }; \
	fi

test-web: build ## the widget's tests in Debian's chromium against bin/parley (needs node, npm, chromium)
	cd web && npm test

# The Go fuzz targets as dir:FuzzName, found by grep. Their seeds also run
# as tests in `make test`.
FUZZ_TARGETS = $(shell grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' $(MODULES) | sed -E 's|/[^/]*:func |:|')
FUZZTIME ?= 10s

fuzz: ## run each Go fuzz target for FUZZTIME (default 10s); a failing input is saved under the package's testdata/fuzz
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh $(FUZZ_TARGETS)

lint: fmt-check vet build-modules ## gofmt, go vet, and each module building alone

fmt-check:
	@unformatted="$$(gofmt -l $(MODULES))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

vet:
	$(GO) vet $(PACKAGES)

build-modules:
	@for m in $(MODULES); do echo "GOWORK=off go build in $$m"; (cd "$$m" && GOWORK=off $(GO) build ./...); done

# The packages with Go benchmarks: building the tests of every package to
# run none of them would take longer than the benchmarks.
BENCH_PACKAGES = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Benchmark' $(MODULES))))
# BENCH_QUICK=1 runs each Go benchmark for a tenth of a second, and skips
# the analytics lag one (five seconds a round): loadgen measures that lag
# end to end in the same run.
BENCH_FLAGS = -run '^$$' -bench . -benchmem $(if $(BENCH_QUICK),-benchtime 100ms -skip '^BenchmarkLag$$',-benchtime 1s)

bench: build ## measure end to end beside raw JetStream into BENCHMARKS.md and docs/bench (BENCH_QUICK=1: a minute or two), then the Go benchmarks
	$(ENSURE_CLICKHOUSE)
	$(GO) build -o bin/loadgen ./cmd/loadgen
	./bin/loadgen --parley ./bin/parley --out BENCHMARKS.md
	$(GO) test $(BENCH_FLAGS) $(BENCH_PACKAGES)

# The users and permissions of the shipped NATS configuration, generated from
# pkg/buspolicy; deploy/k8s_test.go fails when the file is out of date.
NATS_AUTH_CONF := deploy/k8s/base/nats/auth.conf
NATS_USERS := gateway,chat,privacy,analytics,admin

.PHONY: nats-config
nats-config: ## regenerate deploy/k8s/base/nats/auth.conf from pkg/buspolicy
	$(GO) run ./cmd/parley nats-config --users $(NATS_USERS) --env-prefix NATS_PASSWORD_ > $(NATS_AUTH_CONF).tmp
	mv $(NATS_AUTH_CONF).tmp $(NATS_AUTH_CONF)
