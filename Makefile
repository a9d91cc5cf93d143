# hookbus: `make run` starts the example configuration, `make test` runs every test,
# `make fuzz` runs every fuzz target for FUZZTIME each (`FUZZTIME=5m make fuzz`),
# `make screenshots` regenerates docs/screenshots from the console's browser test (needs chromium).
GO ?= go
FUZZTIME ?= 10s

.PHONY: build run test fuzz bench vet screenshots

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

# The console's end-to-end test writes its screenshots where HOOKBUS_SCREENSHOTS says
# (default test-artifacts/screenshots, not committed); here into the README's images.
screenshots:
	HOOKBUS_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestConsole' ./core/console/
