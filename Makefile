# hookbus: `make run` starts the example configuration, `make test` runs every test,
# `make fuzz` runs every fuzz target for FUZZTIME each (`FUZZTIME=5m make fuzz`).
GO ?= go
FUZZTIME ?= 10s

.PHONY: build run test fuzz bench vet

build:
	$(GO) build -o bin/hookbus ./cmd/hookbus

run: build
	./bin/hookbus run --config config.yaml

test:
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) tools/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
