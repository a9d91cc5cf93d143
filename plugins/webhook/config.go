package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/hookbus/hookbus/core/netguard"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/sdk"
)

// Defaults for the optional keys.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMaxInFlight   = 64
	DefaultMaxRetryAfter = retry.DefaultMaxRetryAfter
	maxMaxInFlight       = 10000
	maxScheduleLen       = 100
)

// Config is the `config` block of a `type: webhook` sink. In YAML,
// durations are strings such as "10s", "5m" or "2h".
type Config struct {
	// URL (`url`, required) receives a POST per event. http or https; no
	// credentials in it (use headers).
	URL string
	// Secret (`secret`) is the Standard Webhooks signing secret, "whsec_"
	// followed by base64 of 24 to 64 random bytes, e.g.
	// "whsec_$(openssl rand -base64 32)". Give either secret or secrets.
	Secret string
	// Secrets (`secrets`) lists several secrets during a rotation: every one
	// signs each message (webhook-signature carries one "v1," entry per
	// secret), so the receiver can switch at its own pace.
	Secrets []string
	// Headers (`headers`) are extra request headers, e.g. an Authorization
	// token. They cannot replace content-type, host, content-length,
	// transfer-encoding, connection or any webhook-* header.
	Headers map[string]string
	// Timeout (`timeout`, default 10s) bounds one attempt: connecting,
	// sending and receiving the response. A timeout is retried.
	Timeout time.Duration
	// MaxInFlight (`max_in_flight`, default 64) bounds concurrent requests
	// to the URL, and so the connections kept open to it.
	MaxInFlight int
	// Retry (`retry`) is the retry schedule.
	Retry RetryConfig
	// AllowPrivateNetworks (`allow_private_networks`, default false) lets
	// deliveries reach loopback, private, link-local and cloud metadata
	// addresses. Leave it off unless the URL is a trusted internal service:
	// the guard checks the address actually dialled, after DNS.
	AllowPrivateNetworks bool
	// MaxRetryAfter (`max_retry_after`, default 1h) caps how long a
	// receiver's Retry-After header can postpone a retry.
	MaxRetryAfter time.Duration
}

// RetryConfig is the `retry` block.
type RetryConfig struct {
	// Schedule (`retry.schedule`, default [5s, 5m, 30m, 2h, 5h, 10h, 10h])
	// lists the waits before each retry; there are len(schedule)+1
	// attempts, then the event is dead-lettered. Each wait varies by ±20%
	// and stretches to a longer Retry-After. An empty list means no retry.
	// (In Go, nil means the default.)
	Schedule []time.Duration
}

// Schedule returns the retry schedule the config describes.
func (c Config) Schedule() retry.Schedule {
	delays := c.Retry.Schedule
	if delays == nil {
		delays = retry.DefaultDelays
	}
	mra := c.MaxRetryAfter
	if mra == 0 {
		mra = DefaultMaxRetryAfter
	}
	return retry.Schedule{
		Delays:        slices.Clone(delays),
		Jitter:        retry.DefaultJitter,
		MaxRetryAfter: mra,
	}
}

// keys of the config block, for unknown-key errors and the schema test.
var configKeys = []string{"url", "secret", "secrets", "headers", "timeout", "max_in_flight", "retry", "allow_private_networks", "max_retry_after"}

// ParseConfig decodes a `config` block and applies defaults. Every problem
// is reported, joined with errors.Join, as a *sdk.ConfigError naming the key.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &fields); err != nil {
			return c, &sdk.ConfigError{Message: "config must be an object: " + err.Error()}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		var err error
		switch k {
		case "url":
			err = decodeString(v, &c.URL)
		case "secret":
			err = decodeString(v, &c.Secret)
		case "secrets":
			err = json.Unmarshal(v, &c.Secrets)
			if err != nil {
				err = errors.New("must be a list of strings")
			}
		case "headers":
			err = json.Unmarshal(v, &c.Headers)
			if err != nil {
				err = errors.New("must be a map of header names to string values")
			}
		case "timeout":
			c.Timeout, err = decodeDuration(v)
		case "max_retry_after":
			c.MaxRetryAfter, err = decodeDuration(v)
		case "max_in_flight":
			c.MaxInFlight, err = decodeInt(v)
		case "allow_private_networks":
			c.AllowPrivateNetworks, err = decodeBool(v)
		case "retry":
			errs = append(errs, decodeRetry(v, &c.Retry)...)
		default:
			fail(k, "unknown key (known keys: %s)", strings.Join(configKeys, ", "))
			continue
		}
		if err != nil {
			fail(k, "%v", err)
		}
	}
	// Validate what decoded; a key whose value had the wrong shape already
	// has its error, so validation errors about it are left out.
	c.setDefaults()
	for _, e := range joined(c.Validate()) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) && badShape(errs, ce.Field) {
			continue
		}
		errs = append(errs, e)
	}
	return c, errors.Join(errs...)
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

// badShape reports whether errs already holds an error for field, for the
// key it sits under (e.g. "secrets" for "secrets[1]"), or for the block.
func badShape(errs []error, field string) bool {
	if field == "secret" && badShape(errs, "secrets") {
		return true // "secret or secrets required" when secrets was malformed
	}
	for _, e := range errs {
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			continue
		}
		if ce.Field == field || ce.Field == "" || strings.HasPrefix(field, ce.Field+".") || strings.HasPrefix(field, ce.Field+"[") {
			return true
		}
	}
	return false
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Retry.Schedule == nil {
		c.Retry.Schedule = slices.Clone(retry.DefaultDelays)
	}
}

// Validate checks a Config (with defaults applied) and reports every
// problem as a *sdk.ConfigError, joined with errors.Join.
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
	switch {
	case c.Secret == "" && len(c.Secrets) == 0:
		fail("secret", "required: a Standard Webhooks secret (whsec_...), or a list under secrets")
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
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		field := "headers." + name
		if !validHeaderName(name) {
			fail(field, "invalid header name")
			continue
		}
		if reservedHeader(name) {
			fail(field, "hookbus sets this header itself; it cannot be overridden")
			continue
		}
		// The same rule net/http applies when sending: a value it refuses
		// would fail every delivery instead of the configuration.
		if !httpguts.ValidHeaderFieldValue(c.Headers[name]) {
			fail(field, "header value must not contain line breaks or other control characters")
		}
	}
	if c.Timeout <= 0 {
		fail("timeout", "must be positive, got %s", c.Timeout)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > maxMaxInFlight {
		fail("max_in_flight", "must be between 1 and %d, got %d", maxMaxInFlight, c.MaxInFlight)
	}
	if c.MaxRetryAfter < 0 {
		fail("max_retry_after", "must not be negative, got %s", c.MaxRetryAfter)
	}
	if len(c.Retry.Schedule) > maxScheduleLen {
		fail("retry.schedule", "at most %d delays, got %d", maxScheduleLen, len(c.Retry.Schedule))
	}
	for i, d := range c.Retry.Schedule {
		if d <= 0 {
			fail(fmt.Sprintf("retry.schedule[%d]", i), "must be positive, got %s", d)
		}
	}
	return errors.Join(errs...)
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

func decodeRetry(v json.RawMessage, rc *RetryConfig) []error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return []error{&sdk.ConfigError{Field: "retry", Message: "must be an object like {schedule: [5s, 5m]}"}}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != "schedule" {
			errs = append(errs, &sdk.ConfigError{Field: "retry." + k, Message: "unknown key (known keys: schedule)"})
			continue
		}
		var items []json.RawMessage
		if err := json.Unmarshal(m[k], &items); err != nil || items == nil {
			errs = append(errs, &sdk.ConfigError{Field: "retry.schedule", Message: `must be a list of durations like ["5s", "5m"]`})
			continue
		}
		rc.Schedule = make([]time.Duration, 0, len(items))
		for i, item := range items {
			d, err := decodeDuration(item)
			if err != nil {
				errs = append(errs, &sdk.ConfigError{Field: fmt.Sprintf("retry.schedule[%d]", i), Message: err.Error()})
			}
			rc.Schedule = append(rc.Schedule, d)
		}
	}
	return errs
}

func decodeString(v json.RawMessage, dst *string) error {
	if err := json.Unmarshal(v, dst); err != nil {
		return errors.New("must be a string")
	}
	return nil
}

func decodeDuration(v json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, fmt.Errorf(`must be a duration string like "10s", "5m" or "2h", got %s`, v)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q: use a number with a unit, like "10s", "5m" or "2h"`, s)
	}
	return d, nil
}

// decodeInt accepts a JSON integer only: a string such as "32" is a type
// error (hookbus types environment values before they get here).
func decodeInt(v json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, fmt.Errorf("must be an integer, got %s", v)
	}
	return n, nil
}

// decodeBool accepts a JSON boolean only.
func decodeBool(v json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("must be true or false, got %s", v)
	}
	return b, nil
}

func reservedHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "content-type", "content-length", "host", "transfer-encoding", "connection", "te", "upgrade", "trailer", "keep-alive", "proxy-connection":
		return true
	}
	return strings.HasPrefix(n, "webhook-")
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
