// Command hookbus-webhook serves hookbus' built-in webhook sink out of
// process, as a plugin binary:
//
//	plugins:
//	  webhook-plugin: {path: ./bin/hookbus-webhook}
//	sinks:
//	  partner:
//	    type: webhook-plugin
//	    config: {url: https://partner.example/hooks, secret: whsec_...}
//
// The config block is the same as for `type: webhook`; hookbus takes the
// `retry` block out and keeps the retry schedule itself.
package main

import (
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

func main() {
	w := &webhook.Webhook{}
	sdk.Serve(sdk.ServeOptions{Sink: w, Manifest: w.Describe()})
}
