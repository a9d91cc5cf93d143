package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookbus/hookbus/sdk"
)

// ValidateSchema checks config against a plugin's JSON Schema. Each problem
// is an *sdk.ConfigError naming the field (dotted path inside the config
// block); they come joined with errors.Join. An empty schema accepts all.
func ValidateSchema(schema, config json.RawMessage) error {
	if len(bytes.TrimSpace(schema)) == 0 {
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return fmt.Errorf("plugin config schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("config.schema.json", doc); err != nil {
		return fmt.Errorf("plugin config schema: %w", err)
	}
	sch, err := c.Compile("config.schema.json")
	if err != nil {
		return fmt.Errorf("plugin config schema: %w", err)
	}
	if len(bytes.TrimSpace(config)) == 0 {
		config = json.RawMessage("{}")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(config))
	if err != nil {
		return &sdk.ConfigError{Message: "not JSON: " + err.Error()}
	}
	err = sch.Validate(inst)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	var errs []error
	for _, u := range verr.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		field := strings.ReplaceAll(strings.TrimPrefix(u.InstanceLocation, "/"), "/", ".")
		errs = append(errs, &sdk.ConfigError{Field: field, Message: u.Error.String()})
	}
	if len(errs) == 0 {
		return &sdk.ConfigError{Message: verr.Error()}
	}
	return errors.Join(errs...)
}
