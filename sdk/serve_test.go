package sdk

import (
	"errors"
	"fmt"
	"testing"

	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

func TestWireErrorKeepsConfigErrors(t *testing.T) {
	err := fmt.Errorf("init: %w", errors.Join(
		&ConfigError{Field: "url", Message: "required"},
		errors.New("other"),
		&ConfigError{Field: "timeout", Message: "not a duration"},
	))
	w := wireError(pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG, err)
	if w.Message != err.Error() || w.Code != pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG {
		t.Fatalf("error = %v", w)
	}
	if len(w.Fields) != 2 || w.Fields[0].Field != "url" || w.Fields[1].Message != "not a duration" {
		t.Fatalf("fields = %v", w.Fields)
	}
}

func TestManifestOf(t *testing.T) {
	tests := []struct {
		name      string
		opts      ServeOptions
		wantName  string
		wantKinds []string
	}{
		{"sink only", ServeOptions{Sink: nopSink{}}, "plugin", []string{KindSink}},
		{"both, named", ServeOptions{Sink: nopSink{}, Source: nopSource{}, Manifest: Manifest{Name: "acme"}}, "acme", []string{KindSource, KindSink}},
		{"explicit kinds", ServeOptions{Sink: nopSink{}, Manifest: Manifest{Kinds: []string{"sink"}}}, "plugin", []string{KindSink}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := manifestOf(tt.opts)
			if m.Name != tt.wantName || fmt.Sprint(m.Kinds) != fmt.Sprint(tt.wantKinds) {
				t.Fatalf("manifest = %+v", m)
			}
		})
	}
}
