package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	yamlparser "github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"

	"github.com/hookbus/hookbus/core/registry"
)

// LoadOptions tunes Load.
type LoadOptions struct {
	// Env is the environment as "NAME=value" entries, used both for
	// HOOKBUS_ overrides and for ${VAR} expansion. Nil means os.Environ().
	Env []string
	// Checkers validate what this package cannot know about.
	Checkers Checkers
}

// Checkers validate component configurations and scripts. They are
// supplied by the caller so that config does not import the components.
type Checkers struct {
	// Registry knows the component types and queue drivers, with their
	// config specs (the composition root passes registry.Default). A
	// source's or sink's `config` block is checked by its type's spec; a
	// sink's shared settings (retry, max_in_flight, max_retry_after) are
	// checked for every sink, plugin sinks included. Each *sdk.ConfigError's
	// Field is appended to the block's key path ("sinks.partner.config.url").
	//
	// A type that is neither registered nor a plugin name is an "unknown
	// type" error, and queue.driver must name a registered driver. A nil
	// Registry disables type and driver checking altogether.
	Registry *registry.Registry
	// Script checks that a script file compiles; it gets the absolute path.
	// Nil means scripts are only checked to exist.
	Script func(path string) error
}

// Load reads the configuration: built-in defaults, then the YAML file at
// path (skipped when path is ""), then HOOKBUS_ environment overrides, then
// ${VAR} expansion of every string value. It then validates the result.
//
// Relative paths (data_dir, plugin paths, script paths) are resolved
// against the file's directory (the working directory without a file) and
// stored back as absolute paths.
//
// When the configuration is invalid, Load returns *Errors with every
// problem found, sorted by line then key path. A file that cannot be read
// gives an error wrapping the os error (errors.Is(err, fs.ErrNotExist)).
func Load(path string, opts LoadOptions) (*Config, error) {
	environ := opts.Env
	if environ == nil {
		environ = os.Environ()
	}

	ko := koanf.New(".")
	if err := ko.Load(confmap.Provider(defaults(), ""), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}

	var (
		lines   lineIndex
		absFile string
	)
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if absFile, err = filepath.Abs(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if lines, err = parseLines(data); err != nil {
			return nil, &Errors{yamlError(path, err)}
		}
		// Parse the bytes read once, under the size cap, not the file again.
		if err := ko.Load(bytesProvider(data), yamlparser.Parser()); err != nil {
			return nil, &Errors{yamlError(path, err)}
		}
	}

	env := newEnvProvider(environ)
	if err := ko.Load(env, nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}

	merged := expandAll(ko.Raw(), envLookup(environ)).(map[string]any)
	expanded := koanf.New(".")
	if err := expanded.Load(confmap.Provider(merged, ""), nil); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}

	cfg := &Config{}
	dc := &mapstructure.DecoderConfig{
		DecodeHook:       DecodeHook(),
		ErrorUnused:      true,
		WeaklyTypedInput: false,
		TagName:          "koanf",
	}
	decodeErr := expanded.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{Tag: "koanf", DecoderConfig: dc})
	cfg.File = absFile
	if decodeErr != nil {
		recoverEntries(merged, cfg)
	}
	cfg.normalize()

	var errs []Error
	var failed []string
	for _, p := range decodeProblems(decodeErr) {
		if p.unknown != nil {
			for _, key := range p.unknown {
				full := joinPath(p.path, key)
				errs = append(errs, Error{Path: full, Message: unknownKeyMessage(p.path, key)})
			}
			continue
		}
		failed = append(failed, p.path)
		errs = append(errs, Error{Path: p.path, Message: p.message})
	}
	for _, e := range cfg.validate(opts.Checkers) {
		if !related(e.Path, failed) {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return cfg, nil
	}

	for i := range errs {
		e := &errs[i]
		if path != "" {
			e.File = path
		}
		if name := env.source(e.Path); name != "" {
			e.Message += " (from environment variable " + name + ")"
			continue
		}
		line, exact := lines.line(e.Path)
		if exact || !env.setsInside(e.Path) {
			// Not in the file: point at the nearest parent that is, unless
			// the environment made this entry.
			e.Line = line
		}
	}
	out := Errors(sortErrors(errs))
	return nil, &out
}

// recoverEntries puts back the named entries that mapstructure leaves out
// of a map when their value had an error (an unknown key, a bad type), so
// that validation still sees them: otherwise a sink with a typo in one key
// would also be reported as missing by every pipeline naming it. The
// entries are decoded leniently; the errors were already collected.
func recoverEntries(raw map[string]any, cfg *Config) {
	recoverMap(raw["plugins"], &cfg.Plugins)
	recoverMap(raw["sources"], &cfg.Sources)
	recoverMap(raw["sinks"], &cfg.Sinks)
	recoverMap(raw["pipelines"], &cfg.Pipelines)
}

func recoverMap[V any](raw any, dst *map[string]V) {
	entries, ok := raw.(map[string]any)
	if !ok {
		return
	}
	for name, v := range entries {
		if _, ok := (*dst)[name]; ok {
			continue
		}
		var entry V
		d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: DecodeHook(), TagName: "koanf", Result: &entry})
		if err != nil {
			continue
		}
		_ = d.Decode(v) // partial results are what we want; errors are already reported
		if *dst == nil {
			*dst = map[string]V{}
		}
		(*dst)[name] = entry
	}
}

// normalize finishes decoding: empty API keys and old encryption keys are
// dropped and nil maps made empty.
func (c *Config) normalize() {
	keys := c.Server.APIKeys[:0]
	for _, k := range c.Server.APIKeys {
		if strings.TrimSpace(k) != "" {
			keys = append(keys, k)
		}
	}
	c.Server.APIKeys = keys
	var old []string
	for _, k := range c.Store.OldEncryptionKeys {
		if strings.TrimSpace(k) != "" {
			old = append(old, k)
		}
	}
	c.Store.OldEncryptionKeys = old
	if c.Plugins == nil {
		c.Plugins = map[string]Plugin{}
	}
	if c.Sources == nil {
		c.Sources = map[string]Component{}
	}
	if c.Sinks == nil {
		c.Sinks = map[string]Component{}
	}
	if c.Pipelines == nil {
		c.Pipelines = map[string]Pipeline{}
	}
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a YAML parse error into an Error with its line.
func yamlError(path string, err error) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := Error{File: path}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = strings.Replace(msg, m[0]+":", "", 1)
	}
	msg = strings.TrimPrefix(strings.Join(strings.Fields(msg), " "), "unmarshal errors: ")
	if strings.HasPrefix(msg, "cannot unmarshal !!") && strings.HasSuffix(msg, "into map[string]interface {}") {
		msg = "the file must be a mapping of keys such as version, server, sources, sinks and pipelines"
	}
	e.Message = msg
	return e
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// related reports whether path is a failed path, inside one, or holds one:
// a value that failed to decode is zero, so checks on it or its parent
// would only repeat the decoding error.
func related(path string, failed []string) bool {
	if under(path, failed) {
		return true
	}
	if path == "" {
		return false
	}
	for _, f := range failed {
		if under(f, []string{path}) {
			return true
		}
	}
	return false
}

// under reports whether path is one of roots or inside one of them.
func under(path string, roots []string) bool {
	for _, r := range roots {
		if path == r || r == "" || strings.HasPrefix(path, r+".") || strings.HasPrefix(path, r+"[") {
			return true
		}
	}
	return false
}

// unknownKeyMessage says a key is unknown and suggests the nearest valid one.
func unknownKeyMessage(parent, key string) string {
	t := typeAt(parent)
	if t == nil || t.Kind() != reflect.Struct {
		return "unknown key"
	}
	var valid []string
	best, bestDist := "", 3
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		valid = append(valid, tag)
		if d := editDistance(key, tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", best)
	}
	sort.Strings(valid)
	return "unknown key (valid keys: " + strings.Join(valid, ", ") + ")"
}

// typeAt returns the Go type a key path decodes into, nil when unknown.
func typeAt(path string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, seg := range splitPath(path) {
		switch {
		case t.Kind() == reflect.Struct && seg.index < 0:
			t = fieldType(t, seg.key)
		case t.Kind() == reflect.Map, t.Kind() == reflect.Slice:
			t = t.Elem()
		default:
			return nil
		}
		if t == nil {
			return nil
		}
	}
	return t
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
