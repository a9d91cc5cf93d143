// Command file-source serves hookbus' file source out of process.
package main

import (
	"github.com/hookbus/hookbus/plugins/file"
	"github.com/hookbus/hookbus/sdk"
)

func main() {
	s := file.NewSource(nil)
	sdk.Serve(sdk.ServeOptions{Source: s, Manifest: s.Describe()})
}
