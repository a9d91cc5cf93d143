package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/remote"
)

// checker is how the suite reaches a plugin's Describe and ValidateConfig:
// on the Go value (which may implement neither) or over the wire.
type checker struct {
	kind string
	// describe returns the manifest; false when the plugin publishes none.
	describe func(t *testing.T) (sdk.Manifest, bool)
	// validate runs ValidateConfig; false when the plugin has none.
	validate func(t *testing.T, config json.RawMessage) (error, bool)
}

// inProcess checks the values newValue makes (a sink or a source).
func inProcess(kind string, newValue func() any) checker {
	return checker{
		kind: kind,
		describe: func(*testing.T) (sdk.Manifest, bool) {
			d, ok := newValue().(sdk.Describer)
			if !ok {
				return sdk.Manifest{}, false
			}
			return d.Describe(), true
		},
		validate: func(_ *testing.T, config json.RawMessage) (error, bool) {
			v, ok := newValue().(sdk.ConfigValidator)
			if !ok {
				return nil, false
			}
			return v.ValidateConfig(config), true
		},
	}
}

// overWire checks the plugin binary at path, started afresh for each call.
func overWire(kind, path string) checker {
	return checker{
		kind: kind,
		describe: func(t *testing.T) (sdk.Manifest, bool) {
			t.Helper()
			return Describe(t, path), true
		},
		validate: func(t *testing.T, config json.RawMessage) (error, bool) {
			t.Helper()
			err := startBinary(t, path).ValidateConfig(ctxFor(t), kind, config)
			if errors.Is(err, remote.ErrUnavailable) {
				t.Fatalf("ValidateConfig: %v", err)
			}
			return err, true
		},
	}
}

// runConfigChecks checks that the plugin's manifest holds a valid JSON
// Schema, and that the schema, ValidateConfig and Init agree on config
// and badConfig: what `hookbus validate` accepts, `hookbus run` must
// accept, and the other way round.
func runConfigChecks(t *testing.T, c checker, config, badConfig json.RawMessage) {
	var sch *jsonschema.Schema
	described := false
	t.Run("Describe", func(t *testing.T) {
		m, ok := c.describe(t)
		if !ok {
			t.Skipf("the %s does not implement sdk.Describer", c.kind)
		}
		described = true
		if len(m.Kinds) > 0 && !slices.Contains(m.Kinds, c.kind) {
			t.Errorf("Describe lists kinds %q, without %q", m.Kinds, c.kind)
		}
		var err error
		if sch, err = compileSchema(m.ConfigSchema); err != nil {
			t.Fatalf("Describe: ConfigSchema is not a valid JSON Schema (hookbus reads draft 2020-12 unless \"$schema\" names draft-04, -06, -07 or 2019-09), "+
				"so hookbus validate fails every config of this plugin: %v", err)
		}
	})
	t.Run("ConfigAgreement", func(t *testing.T) {
		if err := checkSchema(sch, config); err != nil {
			t.Errorf("Config does not pass the plugin's ConfigSchema, so hookbus validate refuses it: %v", err)
		}
		verr, validates := c.validate(t, config)
		if verr != nil {
			t.Errorf("ValidateConfig rejects Config, which Init must accept (hookbus validate and hookbus run would disagree): %v", verr)
		}
		if badConfig == nil {
			return
		}
		if checkSchema(sch, badConfig) != nil {
			return // hookbus validate refuses it on the schema
		}
		bverr, _ := c.validate(t, badConfig)
		if bverr != nil {
			return
		}
		if !validates && !described {
			t.Logf("note: the %s implements neither sdk.ConfigValidator nor sdk.Describer, so hookbus validate cannot catch BadConfig; "+
				"RunSinkBinary and RunSourceBinary fail such a plugin", c.kind)
			return
		}
		t.Errorf("hookbus validate accepts BadConfig %s, which Init must reject: neither the ConfigSchema nor ValidateConfig refuses it. "+
			"Make ValidateConfig (sdk.ConfigValidator) check what Init checks, e.g. by calling it from Init", badConfig)
	})
}

// ctxCancelled is a context that is already done.
func ctxCancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
