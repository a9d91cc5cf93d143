package config

import (
	"errors"
	"reflect"
	"strings"

	"github.com/knadh/koanf/maps"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "HOOKBUS_"

// envString is a value that came from the environment: a HOOKBUS_
// override or a string holding a ${VAR} reference. Environment values are
// always strings, so the decode hooks convert an envString to a number or
// a boolean field; a plain string written in YAML ("32") is a type error.
type envString string

// envProvider is a koanf.Provider over an explicit environment (koanf's env
// provider reads only os.Environ, and tests pass their own). It keeps the
// flat keys it produced and the variable behind each, so errors can name it.
type envProvider struct {
	flat map[string]any    // "sinks.partner.config.url" -> value
	vars map[string]string // "sinks.partner.config.url" -> "HOOKBUS_SINKS__PARTNER__CONFIG__URL"
}

// topLevelKeys are the koanf names of Config's fields. Only HOOKBUS_
// variables whose first level is one of them are overrides, so variables
// such as HOOKBUS_API_KEY stay free for ${VAR} expansion.
var topLevelKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("koanf"); tag != "" && tag != "-" {
			keys[tag] = true
		}
	}
	return keys
}()

// envKey turns HOOKBUS_SERVER__MAX_BODY into "server.max_body"; ok is false
// for variables that are not overrides.
func envKey(name string) (string, bool) {
	rest, found := strings.CutPrefix(name, EnvPrefix)
	if !found || rest == "" {
		return "", false
	}
	key := strings.ReplaceAll(strings.ToLower(rest), "__", ".")
	first, _, _ := strings.Cut(key, ".")
	if !topLevelKeys[first] {
		return "", false
	}
	return key, true
}

func newEnvProvider(environ []string) *envProvider {
	p := &envProvider{flat: map[string]any{}, vars: map[string]string{}}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		key, ok := envKey(name)
		if !ok {
			continue
		}
		p.flat[key] = envValue(strings.Split(key, "."), value)
		p.vars[key] = name
	}
	return p
}

// envValue types an environment value. Values inside a source's or sink's
// free-form config block are read as YAML values, so 64 is a number, true
// a boolean, [a, b] a list and "64" (quoted) a string; elsewhere the value
// stays a string (an envString) and the decode hooks convert it to the
// field's type.
func envValue(path []string, value string) any {
	if !inConfigBlock(path) {
		return envString(value)
	}
	var v any
	if err := yaml.Unmarshal([]byte(value), &v); err != nil {
		return value
	}
	switch v.(type) {
	case bool, int, int64, uint64, float64:
		return v
	case []any, map[string]any:
		t := strings.TrimSpace(value)
		if strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
			return v
		}
	case string:
		// A quoted string: use what the quotes held.
		if t := strings.TrimSpace(value); strings.HasPrefix(t, `"`) || strings.HasPrefix(t, `'`) {
			return v
		}
	}
	return value
}

// inConfigBlock tells whether path lies inside a source's or sink's
// free-form config block (sources.<name>.config...).
func inConfigBlock(path []string) bool {
	return len(path) >= 3 && (path[0] == "sources" || path[0] == "sinks") && path[2] == "config"
}

// ReadBytes is not supported.
func (p *envProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("env provider does not support ReadBytes")
}

// Read returns the overrides as a nested map.
func (p *envProvider) Read() (map[string]any, error) {
	out := make(map[string]any, len(p.flat))
	for k, v := range p.flat {
		out[k] = v
	}
	return maps.Unflatten(out, "."), nil
}

// source returns the environment variable that set path or one of its
// parents, "" when none did.
func (p *envProvider) source(path string) string {
	if p == nil {
		return ""
	}
	for key, name := range p.vars {
		if key == path || strings.HasPrefix(path, key+".") || strings.HasPrefix(path, key+"[") {
			return name
		}
	}
	return ""
}

// setsInside reports whether an environment variable set a key inside path.
func (p *envProvider) setsInside(path string) bool {
	for key := range p.vars {
		if path == "" || strings.HasPrefix(key, path+".") {
			return true
		}
	}
	return false
}

// expand replaces ${NAME} with the value of NAME (empty when unset) and
// ${NAME:-default} with default when NAME is unset or empty. "$$" is a
// literal "$"; any other "$" is kept as is, so secrets containing "$"
// survive. An unterminated "${" is kept literally.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			val, ok := lookup(name)
			if hasDef && (!ok || val == "") {
				val = def
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// expandAll expands every string in a merged configuration tree, in place
// for maps and slices. Keys are not expanded. Outside the free-form config
// blocks, a string that held a ${VAR} reference becomes an envString, so
// `pool_size: ${POOL}` still decodes into an integer; inside them it stays
// a string, since the block's schema is the component's.
func expandAll(v any, lookup func(string) (string, bool)) any {
	return expandAt(v, nil, lookup)
}

func expandAt(v any, path []string, lookup func(string) (string, bool)) any {
	switch t := v.(type) {
	case string:
		e := expand(t, lookup)
		if strings.Contains(t, "${") && !inConfigBlock(path) {
			return envString(e)
		}
		return e
	case envString:
		return envString(expand(string(t), lookup))
	case map[string]any:
		for k, e := range t {
			t[k] = expandAt(e, append(path[:len(path):len(path)], k), lookup)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = expandAt(e, path, lookup)
		}
		return t
	case []string:
		for i, e := range t {
			t[i] = expand(e, lookup)
		}
		return t
	}
	return v
}

func envLookup(environ []string) func(string) (string, bool) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}
