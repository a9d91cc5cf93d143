// Package pluginv1 is the generated code of the hookbus plugin protocol,
// version 1 (plugin.proto). Plugin authors use package sdk instead.
package pluginv1

// Regenerate with protoc (apt package protobuf-compiler) and the code
// generators pinned in tools/protogen.sh, fetched from the Go module proxy.
//go:generate sh ../../../../../tools/protogen.sh
