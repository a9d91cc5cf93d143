package sdk_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
)

// TestLogSinkConformance: the example sink of the docs passes the suite.
func TestLogSinkConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	plugintest.RunSink(t, func() sdk.Sink { return &LogSink{} }, plugintest.SinkOptions{
		Config:    json.RawMessage(fmt.Sprintf(`{"path": %q}`, path)),
		BadConfig: json.RawMessage(`{}`),
	})
}
