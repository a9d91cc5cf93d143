#!/bin/sh
# Regenerates sdk/proto/hookbus/plugin/v1 from plugin.proto. Needs protoc
# (apt-get install -y protobuf-compiler); the Go generators are installed
# pinned from the Go module proxy into tools/bin.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/tools/bin"
mkdir -p "$bin"
GOBIN="$bin" GOFLAGS=-mod=mod go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$bin" GOFLAGS=-mod=mod go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
cd "$root/sdk/proto"
protoc \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  hookbus/plugin/v1/plugin.proto
