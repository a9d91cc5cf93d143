// Command hookbus-http-source serves hookbus' built-in http source out of
// process, as a plugin binary, on its own listener:
//
//	plugins:
//	  http-plugin: {path: ./bin/hookbus-http-source}
//	sources:
//	  shop:
//	    type: http-plugin
//	    config: {listen: "127.0.0.1:8081"}
//
// Producers POST to http://127.0.0.1:8081/v1/sources/shop/events and get
// 202 once hookbus queued the events durably.
package main

import (
	httpsource "github.com/hookbus/hookbus/plugins/http"
	"github.com/hookbus/hookbus/sdk"
)

func main() {
	s := &httpsource.Source{Logger: sdk.Logger()}
	sdk.Serve(sdk.ServeOptions{Source: s, Manifest: s.Describe()})
}
