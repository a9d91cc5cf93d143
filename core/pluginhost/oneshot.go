package pluginhost

import (
	"context"
	"encoding/json"

	"github.com/hookbus/hookbus/sdk"
)

// Describe starts the plugin briefly and returns its manifest (for
// `hookbus plugins describe PATH`).
func (h *Host) Describe(ctx context.Context, name string, spec Spec) (sdk.Manifest, error) {
	p, err := h.Start(ctx, name, spec)
	if err != nil {
		return sdk.Manifest{}, err
	}
	defer p.Close()
	return p.Describe(ctx)
}

// Validate starts the plugin briefly and checks a config block of the given
// kind ("source" or "sink") against its schema and its own ValidateConfig
// (for `hookbus validate`). See Plugin.Validate.
func (h *Host) Validate(ctx context.Context, name string, spec Spec, kind string, config json.RawMessage) error {
	p, err := h.Start(ctx, name, spec)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Validate(ctx, kind, config)
}
