package httpsource

import (
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/spec"
)

// noConfig is the `config` block of the built-in http source: it has no
// settings of its own (its limits are server.*), and a key that does
// nothing must not pass for a setting.
type noConfig struct{}

// BuiltinName is the built-in source type served on hookbus's own
// listener (`type: http`).
const BuiltinName = "http"

func init() {
	registry.RegisterSource(registry.Source{
		Name: BuiltinName,
		Spec: spec.For[noConfig](spec.Title("http source config"),
			spec.UnknownKeyHint("the built-in http source takes no config (its limits are server.max_body and the server.* keys)")),
		Ingest: true,
	})
}
