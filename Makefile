# Countersign. `make run` starts the listener with embedded NATS; `make test`
# runs every test (it installs what the tests need by itself).
SHELL := /bin/bash
GO ?= go
BIN := bin/listener
TOOLS := $(CURDIR)/.tools/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2

.PHONY: all build run sandbox demo test race lint chart-check fuzz bench bench-ingest bench-worker chaos sfdx-check clean deps

all: build

deps:
	$(GO) mod download

build: deps
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/listener

## run: the listener with config/dev.yaml (embedded NATS under ./data, tenant "demo")
run: build
	@echo "demo tenant: POST http://localhost:8080/v1/callbacks/demo"
	@echo "demo callback key (dev only): $${DEMO_CALLBACK_KEY:-dev-demo-callback-key}"
	$(BIN) serve --config config/dev.yaml --log-format text

## sandbox: the Salesforce and OneSpan emulators on 127.0.0.1:8081, with the demo tenant's credentials
sandbox: build
	$(BIN) sandbox --config config/dev.yaml

## demo: offline end to end: emulators, the real listener, five packages, the Salesforce records and files
demo: build
	$(GO) run ./cmd/demo -listener $(BIN)

## test: vet, unit and integration tests (embedded NATS, emulators, a NATS cluster, Chromium), chart checks
test: deps
	sh scripts/ensure-chromium.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 12m ./...
	$(MAKE) chart-check

## race: the concurrency-heavy packages under the race detector
race:
	$(GO) test -race -count=1 -timeout 10m ./internal/ingest/... ./internal/queue/... ./internal/auth/... ./internal/sfpush/...

lint: deps
	$(GO) vet ./...
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...

chart-check:
	bash scripts/chart-check.sh

## fuzz: the callback parser, longer than the seed run inside `make test`
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$${FUZZTIME:-2m} ./internal/callback/

## bench: every benchmark; figures go to bench/README.md
bench: bench-ingest bench-worker

bench-ingest: build
	bash bench/ingest/run.sh

bench-worker: build
	bash bench/worker/run.sh

## chaos: kills, NATS restarts, Salesforce faults and revocations under load (not in test; ~10 min)
chaos: build
	bash bench/chaos/run.sh

## sfdx-check: validate config/salesforce with the Salesforce CLI (npm; not part of test)
sfdx-check:
	bash scripts/sfdx-check.sh

clean:
	rm -rf bin data .tools/rendered
