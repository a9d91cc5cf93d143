package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/hookbus/hookbus/sdk"
)

// ValidateSchema checks config against a plugin's JSON Schema. Each problem
// is an *sdk.ConfigError naming the field (dotted path inside the config
// block); they come joined with errors.Join. A key the schema does not
// allow (additionalProperties) is reported at its own path ("colour:
// unknown key"), a missing required key likewise ("path: required"). An
// empty schema accepts all.
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
	// Keys named at their own path, from the leaves of the error tree.
	var errs []error
	keyed := map[string]bool{} // instance locations whose key errors are listed
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := ""
		for _, seg := range e.InstanceLocation {
			loc += "/" + seg
		}
		switch k := e.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			keyed[loc+"|additionalProperties"] = true
			for _, p := range slices.Sorted(slices.Values(k.Properties)) {
				errs = append(errs, &sdk.ConfigError{Field: joinField(e.InstanceLocation, p), Message: "unknown key"})
			}
		case *kind.Required:
			keyed[loc+"|required"] = true
			for _, p := range slices.Sorted(slices.Values(k.Missing)) {
				errs = append(errs, &sdk.ConfigError{Field: joinField(e.InstanceLocation, p), Message: "required"})
			}
		}
	}
	walk(verr)
	for _, u := range verr.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		kw := u.KeywordLocation[strings.LastIndexByte(u.KeywordLocation, '/')+1:]
		if keyed[u.InstanceLocation+"|"+kw] {
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

func joinField(loc []string, key string) string {
	return strings.Join(append(slices.Clone(loc), key), ".")
}

// configProblems flattens err into its *sdk.ConfigError values; an error
// without any becomes one for the whole block with its message.
func configProblems(err error) []*sdk.ConfigError {
	var out []*sdk.ConfigError
	var walk func(error) bool
	walk = func(err error) bool {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			found := false
			for _, e := range j.Unwrap() {
				found = walk(e) || found
			}
			return found
		}
		var ce *sdk.ConfigError
		if errors.As(err, &ce) {
			out = append(out, ce)
			return true
		}
		return false
	}
	if !walk(err) {
		out = append(out, &sdk.ConfigError{Message: err.Error()})
	}
	return out
}
