package webhook

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/hookbus/hookbus/sdk"
)

// FuzzParseConfig feeds the webhook sink's config decoder arbitrary JSON:
// never a panic; every problem is a *sdk.ConfigError with a message; and a
// config it accepts can really be used (a request to the URL with the
// headers can be sent) and reads back the same after encoding it again.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://partner.example/hooks","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`,
		`{"url":"https://p.example/h","secrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"headers":{"Authorization":"Bearer x"},"timeout":"2s","max_in_flight":"8","retry":{"schedule":["1s","1m"]},"allow_private_networks":"true","max_retry_after":"10m"}`,
		`{"url":"http://127.0.0.1:9000/hooks","secret":"whsec_AA==","allow_private_networks":true,"retry":{"schedule":[]}}`,
		`{"url":"http://[::ffff:0:7f00:1]/","secret":"whsec_AA=="}`,
		`{"url":"ftp://x","secret":"x","headers":{"webhook-id":"1","Bad Name":"v","X":"a\u0001b"},"timeout":5,"retry":{"schedule":"5s","x":1}}`,
		`{"url":"https://p.example/h","secret":"whsec_AA==","headers":{"X-Token":"a\u007fb"}}`,
		`[]`, ``, `null`, `{"url":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig(raw)
		if err != nil {
			for _, e := range joined(err) {
				var ce *sdk.ConfigError
				if !errors.As(e, &ce) || ce.Message == "" {
					t.Fatalf("ParseConfig(%q): problem %v is not a *sdk.ConfigError with a message", raw, e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig(%q) accepted a config that Validate refuses: %v", raw, err)
		}
		if _, err := c.secrets(); err != nil {
			t.Fatalf("ParseConfig(%q) accepted unusable secrets: %v", raw, err)
		}
		// net/http refuses to send invalid header names or values; a config
		// that passes must not fail every delivery later.
		if _, err := http.NewRequest(http.MethodPost, c.URL, nil); err != nil {
			t.Fatalf("ParseConfig(%q) accepted URL %q that cannot be requested: %v", raw, c.URL, err)
		}
		for k, v := range c.Headers {
			if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("ParseConfig(%q) accepted header %q: %q that net/http would refuse to send", raw, k, v)
			}
		}
		for _, d := range c.Schedule().Delays {
			if d <= 0 {
				t.Fatalf("ParseConfig(%q) gives a retry delay of %v", raw, d)
			}
		}

		// Encode the decoded config with the documented keys and decode again.
		m := map[string]any{
			"url": c.URL, "headers": c.Headers, "timeout": c.Timeout.String(),
			"max_in_flight": c.MaxInFlight, "allow_private_networks": c.AllowPrivateNetworks,
			"max_retry_after": c.MaxRetryAfter.String(),
		}
		if c.Secret != "" {
			m["secret"] = c.Secret
		} else {
			m["secrets"] = c.Secrets
		}
		if c.Retry.Schedule != nil {
			s := make([]string, len(c.Retry.Schedule))
			for i, d := range c.Retry.Schedule {
				s[i] = d.String()
			}
			m["retry"] = map[string]any{"schedule": s}
		}
		again, _ := json.Marshal(m)
		c2, err := ParseConfig(again)
		if err != nil {
			t.Fatalf("re-encoded config %s is refused: %v", again, err)
		}
		if len(c.Headers) == 0 && len(c2.Headers) == 0 {
			c.Headers, c2.Headers = nil, nil
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("config changes when encoded again:\n%+v\n%+v", c, c2)
		}
	})
}
