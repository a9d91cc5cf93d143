// Command file-sink serves hookbus' file sink out of process.
package main

import (
	"github.com/hookbus/hookbus/plugins/file"
	"github.com/hookbus/hookbus/sdk"
)

func main() {
	s := &file.Sink{}
	sdk.Serve(sdk.ServeOptions{Sink: s, Manifest: s.Describe()})
}
