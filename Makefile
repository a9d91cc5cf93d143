# hookbus: `make run` starts the example configuration, `make test` runs every test.
GO ?= go

.PHONY: build run test bench vet

build:
	$(GO) build -o bin/hookbus ./cmd/hookbus

run: build
	./bin/hookbus run --config config.yaml

test:
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
