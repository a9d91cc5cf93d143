package plugintest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema compiles a plugin's config schema as hookbus does (with
// github.com/santhosh-tekuri/jsonschema/v6): JSON Schema draft 2020-12
// unless the schema's "$schema" names draft-04, -06, -07 or 2019-09. The
// schema itself is checked against its draft's meta-schema, so a keyword
// with a value of the wrong kind (e.g. "type": "strin") is an error.
// An empty schema compiles to nil: every config passes.
func compileSchema(schema json.RawMessage) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(schema)) == 0 {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("config.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("config.schema.json")
}

// checkSchema returns nil when config passes sch, else one line per
// problem, each naming the field as a dotted path ("" is the block).
func checkSchema(sch *jsonschema.Schema, config json.RawMessage) error {
	if sch == nil {
		return nil
	}
	if len(bytes.TrimSpace(config)) == 0 {
		config = json.RawMessage("{}")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(config))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	err = sch.Validate(inst)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	var lines []string
	for _, u := range verr.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		field := strings.ReplaceAll(strings.TrimPrefix(u.InstanceLocation, "/"), "/", ".")
		if field == "" {
			field = "(the block)"
		}
		lines = append(lines, field+": "+u.Error.String())
	}
	if len(lines) == 0 {
		return verr
	}
	return errors.New(strings.Join(lines, "; "))
}
