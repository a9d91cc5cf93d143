// Command fakeplugin serves fake.Sink in the mode named by
// $PLUGINTEST_FAKE_MODE, for plugintest's own tests.
package main

import (
	"os"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest/internal/fake"
)

func main() {
	s := &fake.Sink{Mode: os.Getenv(fake.ModeEnv)}
	sdk.Serve(sdk.ServeOptions{Sink: s})
}
