package webhook

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/spec/spectest"
	"github.com/hookbus/hookbus/sdk"
)

// configErrors flattens a joined error into its *sdk.ConfigError parts.
func configErrors(t *testing.T, err error) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("error %v (%T) is not a *sdk.ConfigError", e, e)
		}
		out[ce.Field] = ce.Message
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig(json.RawMessage(`{"url": "https://partner.example/hooks", "secret": "` + testSecret + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 10*time.Second || c.MaxInFlight != 64 || c.MaxRetryAfter != time.Hour || c.AllowPrivateNetworks {
		t.Fatalf("defaults: %+v", c)
	}
	if !slices.Equal(c.Retry.Schedule, retry.DefaultDelays) {
		t.Fatalf("schedule = %v", c.Retry.Schedule)
	}
	s := c.Schedule()
	if !slices.Equal(s.Delays, retry.DefaultDelays) || s.Jitter != 0.2 || s.MaxRetryAfter != time.Hour || s.MaxAttempts() != 8 {
		t.Fatalf("Schedule() = %+v", s)
	}
}

func TestParseConfigFull(t *testing.T) {
	t.Parallel()
	raw := `{
		"url": "http://10.0.0.5:8080/in",
		"secrets": ["` + testSecret + `", "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"],
		"headers": {"Authorization": "Bearer t"},
		"timeout": "3s",
		"max_in_flight": 16,
		"retry": {"schedule": ["1s", "1m"]},
		"allow_private_networks": true,
		"max_retry_after": "10m"
	}`
	c, err := ParseConfig(json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 3*time.Second || c.MaxInFlight != 16 || !c.AllowPrivateNetworks || c.MaxRetryAfter != 10*time.Minute ||
		len(c.Secrets) != 2 || c.Headers["Authorization"] != "Bearer t" {
		t.Fatalf("config = %+v", c)
	}
	s := c.Schedule()
	if !slices.Equal(s.Delays, []time.Duration{time.Second, time.Minute}) || s.MaxRetryAfter != 10*time.Minute {
		t.Fatalf("Schedule() = %+v", s)
	}
	// An explicit empty schedule means a single attempt.
	c, err = ParseConfig(json.RawMessage(`{"url": "https://a.example", "secret": "` + testSecret + `", "retry": {"schedule": []}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Schedule(); s.MaxAttempts() != 1 {
		t.Fatalf("empty schedule: %+v", s)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	ok := `"url": "https://partner.example/hooks", "secret": "` + testSecret + `"`
	tests := []struct {
		name string
		raw  string
		want map[string]string // field -> message substring
	}{
		{"empty", ``, map[string]string{"url": "required", "secret": "required"}},
		{"null", `null`, map[string]string{"url": "required", "secret": "required"}},
		{"not an object", `[1]`, map[string]string{"": "must be an object"}},
		{"unknown keys", `{` + ok + `, "tiemout": "1s", "rety": {}}`, map[string]string{"tiemout": "unknown key", "rety": "unknown key"}},
		{"unknown retry key", `{` + ok + `, "retry": {"schedule": ["1s"], "max": 3}}`, map[string]string{"retry.max": "unknown key"}},
		{"bad url scheme", `{"url": "ftp://x.example", "secret": "` + testSecret + `"}`, map[string]string{"url": `scheme "ftp"`}},
		{"url not a string", `{"url": 5, "secret": "` + testSecret + `"}`, map[string]string{"url": "must be a string"}},
		{"max_in_flight a string", `{` + ok + `, "max_in_flight": "32"}`, map[string]string{"max_in_flight": `must be an integer, got "32"`}},
		{"allow_private_networks a string", `{` + ok + `, "allow_private_networks": "true"}`, map[string]string{"allow_private_networks": `must be true or false, got "true"`}},
		{"url loopback literal", `{"url": "http://127.0.0.1:9000/", "secret": "` + testSecret + `"}`,
			map[string]string{"url": "127.0.0.1 is a loopback address; deliveries to it are refused unless allow_private_networks is true"}},
		{"url metadata literal", `{"url": "http://169.254.169.254/latest", "secret": "` + testSecret + `"}`, map[string]string{"url": "metadata"}},
		{"url ipv6 loopback", `{"url": "http://[::1]:80/", "secret": "` + testSecret + `"}`, map[string]string{"url": "loopback"}},
		{"bad secret prefix", `{"url": "https://a.example", "secret": "abc"}`, map[string]string{"secret": "whsec_"}},
		{"bad secret base64", `{"url": "https://a.example", "secret": "whsec_!!"}`, map[string]string{"secret": "base64"}},
		{"both secret and secrets", `{` + ok + `, "secrets": ["` + testSecret + `"]}`, map[string]string{"secrets": "not both"}},
		{"bad secret in list", `{"url": "https://a.example", "secrets": ["` + testSecret + `", "nope"]}`, map[string]string{"secrets[1]": "whsec_"}},
		{"secrets not a list", `{"url": "https://a.example", "secrets": "x"}`, map[string]string{"secrets": "list of strings"}},
		{"signing key prefix", `{"url": "https://a.example", "signing_key": "whsec_AAAA"}`, map[string]string{"signing_key": "whsk_"}},
		{"signing key length", `{"url": "https://a.example", "signing_key": "whsk_QUJD"}`, map[string]string{"signing_key": "32-byte Ed25519 seed"}},
		{"both signing_key and signing_keys", `{` + ok + `, "signing_key": "` + testSigningKey + `", "signing_keys": ["` + testSigningKey + `"]}`,
			map[string]string{"signing_keys": "not both"}},
		{"bad signing key in list", `{"url": "https://a.example", "signing_keys": ["` + testSigningKey + `", "whsk_!!"]}`,
			map[string]string{"signing_keys[1]": "base64"}},
		{"reserved headers", `{` + ok + `, "headers": {"Webhook-Signature": "x", "content-type": "text/plain", "Host": "h", "X-Ok": "1"}}`,
			map[string]string{"headers.Webhook-Signature": "cannot be overridden", "headers.content-type": "cannot be overridden", "headers.Host": "cannot be overridden"}},
		{"bad header", `{` + ok + `, "headers": {"Bad Name": "x", "X-Inject": "a\r\nB: c"}}`,
			map[string]string{"headers.Bad Name": "invalid header name", "headers.X-Inject": "line breaks"}},
		{"control character in header value", `{` + ok + `, "headers": {"X-Token": "a\u007fb", "X-Tab": "a\tb"}}`, // found by FuzzParseConfig
			map[string]string{"headers.X-Token": "control characters"}},
		{"headers not strings", `{` + ok + `, "headers": {"X-N": 1}}`, map[string]string{"headers": "string values"}},
		{"bad durations", `{` + ok + `, "timeout": 10, "max_retry_after": "1 hour"}`,
			map[string]string{"timeout": `duration string like "10s"`, "max_retry_after": `invalid duration "1 hour"`}},
		{"bad schedule items", `{` + ok + `, "retry": {"schedule": ["5s", "soon", 3]}}`,
			map[string]string{"retry.schedule[1]": "invalid duration", "retry.schedule[2]": "duration string"}},
		{"schedule not a list", `{` + ok + `, "retry": {"schedule": "5s"}}`, map[string]string{"retry.schedule": "list of durations"}},
		{"retry not an object", `{` + ok + `, "retry": [1]}`, map[string]string{"retry": "must be an object"}},
		{"ranges", `{` + ok + `, "timeout": "-1s", "max_in_flight": 0.5, "max_retry_after": "-1m"}`,
			map[string]string{"max_in_flight": "integer", "timeout": "positive", "max_retry_after": "negative"}},
		{"range values", `{` + ok + `, "timeout": "-1s", "max_in_flight": 20000, "max_retry_after": "-1m", "retry": {"schedule": ["1s", "0s"]}}`,
			map[string]string{"timeout": "positive", "max_in_flight": "between 1 and 10000", "max_retry_after": "negative", "retry.schedule[1]": "positive"}},
		{"bool", `{` + ok + `, "allow_private_networks": "yes please"}`, map[string]string{"allow_private_networks": "true or false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig(json.RawMessage(tt.raw))
			if err == nil {
				t.Fatalf("no error, want %v", tt.want)
			}
			got := configErrors(t, err)
			for field, sub := range tt.want {
				msg, ok := got[field]
				if !ok {
					t.Fatalf("no error for field %q; got %v", field, got)
				}
				if !strings.Contains(msg, sub) {
					t.Fatalf("field %q: message %q, want containing %q", field, msg, sub)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors = %v, want exactly the fields of %v", got, tt.want)
			}
			// ValidateConfig and Init report the same.
			if verr := (&Webhook{}).ValidateConfig(json.RawMessage(tt.raw)); verr == nil || verr.Error() != err.Error() {
				t.Fatalf("ValidateConfig = %v", verr)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	m := (&Webhook{}).Describe()
	if m.Name != "webhook" || !slices.Equal(m.Kinds, []string{"sink"}) {
		t.Fatalf("manifest = %+v", m)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(m.ConfigSchema, &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	for _, k := range configSpec.Keys() {
		if _, ok := schema.Properties[k]; !ok {
			t.Errorf("schema lacks key %q", k)
		}
	}
	if len(schema.Properties) != len(configSpec.Keys()) {
		t.Errorf("schema has %d keys, config %d", len(schema.Properties), len(configSpec.Keys()))
	}
}

// The schema Describe publishes and the decoder agree: every key of the
// schema is accepted, others refused, url is required, wrong types are
// refused and the schema's defaults are accepted.
func TestSchemaMatchesDecoder(t *testing.T) {
	t.Parallel()
	spectest.Conformance(t, configSpec,
		`{"url": "https://a.example/h", "secret": "`+testSecret+`", "headers": {"X-A": "1"}, "timeout": "3s", "max_in_flight": 8,
		  "retry": {"schedule": ["1s"]}, "allow_private_networks": true, "max_retry_after": "5m",
		  "circuit": {"enabled": true, "failures": 3, "cooldown": "1s", "max_cooldown": "1m"},
		  "retry_on": [401, "5xx"], "permanent_on": [503], "ordering": {"key": "data.order_id"}}`,
		`{"url": "https://a.example/h", "secrets": ["`+testSecret+`"]}`,
		`{"url": "https://a.example/h", "secret": "`+testSecret+`", "format": "cloudevents-structured"}`,
		`{"url": "https://a.example/h", "secret": "`+testSecret+`", "compression": "gzip", "batch": {"max_events": 10, "max_bytes": 65536, "max_wait": "250ms"}}`,
		`{"url": "https://a.example/h", "signing_key": "`+testSigningKey+`"}`,
		`{"url": "https://a.example/h", "secret": "`+testSecret+`", "signing_keys": ["`+testSigningKey+`"]}`)
}

func TestConfigFormat(t *testing.T) {
	t.Parallel()
	base := `"url": "https://a.example/h", "secret": "` + testSecret + `"`
	c, err := ParseConfig(json.RawMessage(`{` + base + `}`))
	if err != nil || c.Format != "json" {
		t.Fatalf("default format %q, %v", c.Format, err)
	}
	for _, tt := range []struct{ block, field, msg string }{
		{`{` + base + `, "format": "cloudevents"}`, "format", "must be one of json, cloudevents-structured or cloudevents-binary"},
		{`{` + base + `, "format": "cloudevents-binary", "headers": {"ce-source": "x"}}`, "headers.ce-source", "ce-* headers carry"},
	} {
		_, err := ParseConfig(json.RawMessage(tt.block))
		if got := configErrors(t, err)[tt.field]; !strings.Contains(got, tt.msg) {
			t.Errorf("%s: %s = %q, want %q (all: %v)", tt.block, tt.field, got, tt.msg, err)
		}
	}
	// A ce-* header is only the binary mode's.
	if _, err := ParseConfig(json.RawMessage(`{` + base + `, "format": "cloudevents-structured", "headers": {"Ce-Custom": "x"}}`)); err != nil {
		t.Fatal(err)
	}
}

// The batch and compression keys: defaults, and every problem named by
// its key path inside the block.
func TestConfigBatchAndCompression(t *testing.T) {
	t.Parallel()
	base := `"url": "https://a.example/h", "secret": "` + testSecret + `"`
	c, err := ParseConfig(json.RawMessage(`{` + base + `}`))
	if err != nil || c.Batch.On() || c.Compression != "none" {
		t.Fatalf("defaults: batch %+v on=%v, compression %q, %v", c.Batch, c.Batch.On(), c.Compression, err)
	}
	c, err = ParseConfig(json.RawMessage(`{` + base + `, "batch": {}}`))
	if err != nil || !c.Batch.On() || c.Batch.MaxEvents != 100 || c.Batch.MaxBytes != 1<<20 || c.Batch.MaxWait != time.Second {
		t.Fatalf("batch {} = %+v on=%v, %v", c.Batch, c.Batch.On(), err)
	}
	c, err = ParseConfig(json.RawMessage(`{` + base + `, "batch": {"max_events": 5, "max_wait": "0s"}}`))
	if err != nil || c.Batch.MaxEvents != 5 || c.Batch.MaxWait != 0 || c.Batch.MaxBytes != 1<<20 {
		t.Fatalf("batch = %+v, %v", c.Batch, err)
	}
	for _, tt := range []struct{ block, field, msg string }{
		{`"compression": "br"`, "compression", "must be none or gzip"},
		{`"batch": {"max_events": 0}`, "batch.max_events", "must be 1 to 1000"},
		{`"batch": {"max_events": 5000}`, "batch.max_events", "must be 1 to 1000"},
		{`"batch": {"max_bytes": 10}`, "batch.max_bytes", "must be 1024 to 16777216"},
		{`"batch": {"max_wait": "2h"}`, "batch.max_wait", "must be 0s to 10s"},
		{`"batch": {"max_wait": "soon"}`, "batch.max_wait", "invalid duration"},
		{`"batch": {"max_events": "ten"}`, "batch.max_events", "must be a whole number"},
		{`"batch": {"size": 3}`, "batch.size", "unknown key"},
		{`"batch": 3`, "batch", "must be an object"},
		{`"batch": {}, "format": "cloudevents-binary"`, "batch", "cloudevents-binary carries one event per request"},
		{`"headers": {"Content-Encoding": "br"}`, "headers.Content-Encoding", "cannot"},
	} {
		_, err := ParseConfig(json.RawMessage(`{` + base + `, ` + tt.block + `}`))
		if got := configErrors(t, err)[tt.field]; !strings.Contains(got, tt.msg) {
			t.Errorf("%s: %s = %q, want %q (all: %v)", tt.block, tt.field, got, tt.msg, err)
		}
	}
}
