package file

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/hookbus/hookbus/sdk"
)

// decodeConfig decodes a config block into dst (a pointer to a struct with
// json tags) and reports every problem at once, each at its own field: an
// unknown key, a value of the wrong type. encoding/json stops at the first.
func decodeConfig(config json.RawMessage, dst any) []error {
	if len(config) == 0 {
		config = json.RawMessage("{}")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(config, &keys); err != nil {
		return []error{&sdk.ConfigError{Message: "config must be a JSON object: " + err.Error()}}
	}
	v := reflect.ValueOf(dst).Elem()
	fields := map[string]reflect.Value{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = v.Field(i)
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []error
	for _, k := range names {
		f, ok := fields[k]
		if !ok {
			errs = append(errs, &sdk.ConfigError{Field: k, Message: "unknown key"})
			continue
		}
		if err := json.Unmarshal(keys[k], f.Addr().Interface()); err != nil {
			errs = append(errs, &sdk.ConfigError{Field: k, Message: fmt.Sprintf("want %s, got %s", f.Type(), keys[k])})
		}
	}
	return errs
}
