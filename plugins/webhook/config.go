package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/deliveryformat"
	"github.com/hookbus/hookbus/core/deliveryheader"
	"github.com/hookbus/hookbus/core/netguard"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/sdk"
)

// Defaults for the optional keys.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMaxInFlight   = sinkopts.DefaultMaxInFlight
	DefaultMaxRetryAfter = sinkopts.DefaultMaxRetryAfter
)

// Config is the `config` block of a `type: webhook` sink. In YAML,
// durations are strings such as "10s", "5m" or "2h". The struct's tags are
// the block's only description: configSpec derives the decoder (ParseConfig),
// the defaults and the JSON Schema (Describe) from them, and Validate holds
// the rules a tag cannot say.
type Config struct {
	// URL (`url`, required) receives a POST per event. http or https; no
	// credentials in it (use headers).
	URL string `json:"url" required:"the receiver's http(s) URL" format:"uri" pattern:"^https?://" doc:"Receiver URL (http or https)."`
	// Secret (`secret`) is the Standard Webhooks signing secret, "whsec_"
	// followed by base64 of 24 to 64 random bytes, e.g.
	// "whsec_$(openssl rand -base64 32)". Give either secret or secrets.
	Secret string `json:"secret" pattern:"^whsec_" doc:"Standard Webhooks signing secret."`
	// Secrets (`secrets`) lists several secrets during a rotation: every one
	// signs each message (webhook-signature carries one "v1," entry per
	// secret), so the receiver can switch at its own pace.
	Secrets []string `json:"secrets" minItems:"1" pattern:"^whsec_" doc:"Several secrets during a rotation; each signs every message."`
	// SigningKey (`signing_key`) is a Standard Webhooks Ed25519 signing
	// key, "whsk_" followed by base64 of the 32-byte seed (`hookbus keygen`
	// makes one): every message then also carries a "v1a," entry, which
	// receivers check with the public key ("whpk_") published at
	// GET /v1/sinks/{sink}/public-keys. Alone or beside secret(s); give
	// either signing_key or signing_keys.
	SigningKey string `json:"signing_key" pattern:"^whsk_" doc:"Standard Webhooks Ed25519 signing key (whsk_...); adds a v1a signature."`
	// SigningKeys (`signing_keys`) lists several signing keys during a
	// rotation: each signs every message, as secrets do.
	SigningKeys []string `json:"signing_keys" minItems:"1" pattern:"^whsk_" doc:"Several Ed25519 signing keys during a rotation; each signs every message."`
	// Headers (`headers`) are extra request headers, e.g. an Authorization
	// token. They cannot replace content-type, host, content-length,
	// transfer-encoding, connection or any webhook-* header.
	Headers map[string]string `json:"headers" doc:"Extra request headers; cannot replace content-type or webhook-* headers."`
	// Timeout (`timeout`, default 10s) bounds one attempt: connecting,
	// sending and receiving the response. A timeout is retried.
	Timeout time.Duration `json:"timeout" default:"10s" check:"positive" doc:"Bound on one attempt (Go duration)."`
	// AllowPrivateNetworks (`allow_private_networks`, default false) lets
	// deliveries reach loopback, private, link-local and cloud metadata
	// addresses. Leave it off unless the URL is a trusted internal service:
	// the guard checks the address actually dialled, after DNS.
	AllowPrivateNetworks bool `json:"allow_private_networks" default:"false" doc:"Allow loopback, private, link-local and metadata addresses."`
	// RetryOn (`retry_on`) lists the answers retried: status codes (400
	// to 599) and the classes "4xx" and "5xx". PermanentOn
	// (`permanent_on`) lists those dead-lettered at once. An exact code
	// wins over a class; what neither names follows the default rule
	// (statuspolicy.Default: 408, 429 and 5xx retried, other 4xx
	// permanent). A code or class in both lists is an error.
	RetryOn     statuspolicy.List `json:"retry_on" doc:"Answers retried: status codes and \"4xx\"/\"5xx\" (an exact code wins over a class)."`
	PermanentOn statuspolicy.List `json:"permanent_on" doc:"Answers dead-lettered at once: status codes and \"4xx\"/\"5xx\"."`
	// Format (`format`, default json) is the body's format: json (the
	// event envelope, Content-Type application/json),
	// cloudevents-structured (a CloudEvents 1.0 JSON event, Content-Type
	// application/cloudevents+json) or cloudevents-binary (the event's
	// data as the body, its attributes in ce-* headers). The Standard
	// Webhooks headers sign the body sent in every format; see
	// core/deliveryformat.
	Format string `json:"format" default:"json" pattern:"^(json|cloudevents-structured|cloudevents-binary)$" doc:"Body format: json, cloudevents-structured or cloudevents-binary."`
	// Compression (`compression`, default none) is the request body's
	// content coding: gzip sends bodies of 1 KiB or more
	// (deliveryformat.GzipMinBytes) with Content-Encoding gzip, smaller
	// ones as they are. The signature covers the body before
	// compression, the bytes a receiver gets once it decoded the request.
	Compression string `json:"compression" default:"none" pattern:"^(none|gzip)$" doc:"Request body compression: none or gzip (bodies of 1 KiB or more; signed before compression)."`
	// Batch (`batch`), when set, sends the events in batches: one POST
	// carries a JSON array of up to batch.max_events events (default 100)
	// and batch.max_bytes bytes (default 1 MiB), sent when full or
	// batch.max_wait (default 1s) after its first event arrived. One
	// signature over the whole body, one webhook-id per batch (a digest
	// of the ids it carries, see core/batching); the answer applies to
	// every event of the batch. Not with format cloudevents-binary.
	Batch batching.Policy `json:"batch" doc:"Batched delivery: {max_events, max_bytes, max_wait}; one request carries a JSON array of events."`
	// Settings are the keys every sink shares: max_in_flight (default 64,
	// the concurrent requests to the URL and so the connections kept open
	// to it), retry.schedule and max_retry_after. hookbus takes them out of
	// the block and applies them itself (see core/sinkopts); a webhook run
	// as a plugin decodes them too, so its block reads the same.
	sinkopts.Settings
}

// RetryConfig is the `retry` block.
type RetryConfig = sinkopts.Retry

// configSpec describes Config: one description for decoding, validation and
// the JSON Schema.
var configSpec = spec.For[Config](
	spec.Title("webhook sink config"),
	spec.Together("secret", "secrets", "signing_key", "signing_keys"),
	spec.SchemaExtra("anyOf", []any{
		map[string]any{"required": []string{"secret"}}, map[string]any{"required": []string{"secrets"}},
		map[string]any{"required": []string{"signing_key"}}, map[string]any{"required": []string{"signing_keys"}},
	}),
)

// ParseConfig decodes a `config` block and applies defaults. Every problem
// is reported, joined with errors.Join, as a *sdk.ConfigError naming the key.
func ParseConfig(raw json.RawMessage) (Config, error) {
	return configSpec.Decode(raw)
}

// joined splits an errors.Join result.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Validate checks the rules of a Config (with defaults applied) that its
// tags cannot say (the URL and the SSRF guard, secrets, headers) and
// reports every problem as a *sdk.ConfigError, joined with errors.Join.
// ParseConfig and New check the tags' rules as well.
func (c Config) Validate() error {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if c.URL == "" {
		fail("url", "required: the receiver's http(s) URL")
	} else if err := netguard.CheckURL(c.URL); err != nil {
		fail("url", "%v", err)
	} else if !c.AllowPrivateNetworks {
		u, _ := url.Parse(c.URL)
		var be *netguard.BlockedError
		if err := netguard.CheckHost(u.Hostname()); errors.As(err, &be) {
			fail("url", "%s is a %s; deliveries to it are refused unless allow_private_networks is true", be.Addr, be.Reason)
		}
	}
	hasKey := c.SigningKey != "" || len(c.SigningKeys) > 0
	switch {
	case c.Secret == "" && len(c.Secrets) == 0 && !hasKey:
		fail("secret", "required: a Standard Webhooks secret (whsec_...) or a list under secrets, or an Ed25519 signing_key (whsk_...)")
	case c.Secret == "" && len(c.Secrets) == 0:
	case c.Secret != "" && len(c.Secrets) > 0:
		fail("secrets", "give either secret or secrets, not both")
	case c.Secret != "":
		if _, err := signing.ParseSecret(c.Secret); err != nil {
			fail("secret", "%v", err)
		}
	default:
		for i, s := range c.Secrets {
			if _, err := signing.ParseSecret(s); err != nil {
				fail(fmt.Sprintf("secrets[%d]", i), "%v", err)
			}
		}
	}
	errs = append(errs, c.Policy().Errors("")...)
	if msg := deliveryformat.Check(c.Format); msg != "" {
		fail("format", "%s", msg)
	}
	if msg := deliveryformat.CheckCompression(c.Compression); msg != "" {
		fail("compression", "%s", msg)
	}
	for _, e := range c.Batch.Check() {
		fail("batch."+e.Field, "%s", e.Message)
	}
	if c.Batch.On() {
		if msg := deliveryformat.CheckBatch(deliveryformat.Format(c.Format)); msg != "" {
			fail("batch", "%s", msg)
		}
	}
	switch {
	case c.SigningKey != "" && len(c.SigningKeys) > 0:
		fail("signing_keys", "give either signing_key or signing_keys, not both")
	case c.SigningKey != "":
		if _, err := signing.ParseSigningKey(c.SigningKey); err != nil {
			fail("signing_key", "%v", err)
		}
	default:
		for i, k := range c.SigningKeys {
			if _, err := signing.ParseSigningKey(k); err != nil {
				fail(fmt.Sprintf("signing_keys[%d]", i), "%v", err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		if msg := deliveryheader.Check(name, c.Headers[name]); msg != "" {
			fail("headers."+name, "%s", msg)
		} else if msg := deliveryformat.CheckHeader(deliveryformat.Format(c.Format), name); msg != "" {
			fail("headers."+name, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

// Policy is the status policy of retry_on and permanent_on.
func (c Config) Policy() statuspolicy.Policy {
	return statuspolicy.Policy{RetryOn: c.RetryOn, PermanentOn: c.PermanentOn}
}

// secrets parses the configured secret(s); call after Validate.
func (c Config) secrets() ([]signing.Secret, error) {
	list := c.Secrets
	if c.Secret != "" {
		list = []string{c.Secret}
	}
	out := make([]signing.Secret, 0, len(list))
	for _, s := range list {
		sec, err := signing.ParseSecret(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
	return out, nil
}

// signingKeys parses the configured Ed25519 signing key(s); call after Validate.
func (c Config) signingKeys() ([]signing.SigningKey, error) {
	list := c.SigningKeys
	if c.SigningKey != "" {
		list = []string{c.SigningKey}
	}
	out := make([]signing.SigningKey, 0, len(list))
	for _, s := range list {
		k, err := signing.ParseSigningKey(s)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// PublicKeys returns the public keys of the configured signing keys, in
// their order (none without signing keys); call after Validate.
func (c Config) PublicKeys() ([]signing.PublicKey, error) {
	keys, err := c.signingKeys()
	if err != nil {
		return nil, err
	}
	out := make([]signing.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = k.PublicKey()
	}
	return out, nil
}
