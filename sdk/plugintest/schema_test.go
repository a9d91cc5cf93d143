package plugintest

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCompileSchemaDrafts: 2020-12 without "$schema", the named draft with it.
func TestCompileSchemaDrafts(t *testing.T) {
	const exclusive = `"type": "number", "maximum": 5, "exclusiveMaximum": true`
	if _, err := compileSchema(json.RawMessage(`{` + exclusive + `}`)); err == nil {
		t.Fatal("a draft-04 boolean exclusiveMaximum compiled as draft 2020-12")
	}
	sch, err := compileSchema(json.RawMessage(`{"$schema": "http://json-schema.org/draft-04/schema#", ` + exclusive + `}`))
	if err != nil {
		t.Fatalf("draft-04 schema: %v", err)
	}
	if checkSchema(sch, json.RawMessage(`5`)) == nil || checkSchema(sch, json.RawMessage(`4`)) != nil {
		t.Fatal("draft-04 exclusiveMaximum not applied")
	}
	if _, err := compileSchema(json.RawMessage(`{"type": `)); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("truncated schema: %v", err)
	}
	if sch, err := compileSchema(nil); sch != nil || err != nil {
		t.Fatalf("empty schema: %v, %v", sch, err)
	}
}

// TestCheckSchemaNamesFields: each problem names its dotted path.
func TestCheckSchemaNamesFields(t *testing.T) {
	sch, err := compileSchema(json.RawMessage(`{"type": "object", "required": ["url"],
		"properties": {"tls": {"properties": {"port": {"type": "integer"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = checkSchema(sch, json.RawMessage(`{"tls": {"port": "x"}}`))
	if err == nil || !strings.Contains(err.Error(), "tls.port: ") || !strings.Contains(err.Error(), "(the block): missing property 'url'") {
		t.Fatalf("got %v", err)
	}
	if err := checkSchema(sch, json.RawMessage(`{"url": "x"}`)); err != nil {
		t.Fatal(err)
	}
}
