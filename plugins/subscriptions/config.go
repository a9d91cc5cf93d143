package subscriptions

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/hookbus/hookbus/core/spec"
	"github.com/hookbus/hookbus/core/statuspolicy"
)

// Defaults of the optional keys.
const (
	DefaultTimeout                 = 10 * time.Second
	DefaultMaxInFlight             = 256
	DefaultSubscriptionMaxInFlight = 8
	DefaultDisableAfter            = 120 * time.Hour
)

// Config is the `config` block of a `type: subscriptions` sink. In YAML,
// durations are strings such as "10s" or "120h". The struct's tags are the
// block's description (decoder, defaults, JSON Schema). The keys every
// sink shares (max_in_flight, here the whole sink's window, default 256;
// retry.schedule, applied to each (event, subscription) pair;
// max_retry_after) are taken out by hookbus before the block reaches the
// sink (see core/sinkopts).
type Config struct {
	// Broadcast (`broadcast`, default false) sends an event without an
	// `application` attribute to the matching subscriptions of every
	// application; without it such an event is dead-lettered as invalid.
	Broadcast bool `json:"broadcast" default:"false" doc:"Send events without an application attribute to every application's matching subscriptions."`
	// AllowPrivateNetworks (`allow_private_networks`, default false) lets
	// subscriptions reach loopback, private, link-local and metadata
	// addresses (the API accepts such URLs only then). Leave it off: the
	// URLs come from third parties.
	AllowPrivateNetworks bool `json:"allow_private_networks" default:"false" doc:"Allow subscription URLs on loopback, private, link-local and metadata addresses."`
	// Timeout (`timeout`, default 10s) bounds one attempt.
	Timeout time.Duration `json:"timeout" default:"10s" check:"positive" doc:"Bound on one attempt (Go duration)."`
	// SubscriptionMaxInFlight (`subscription_max_in_flight`, default 8) is
	// how many attempts may run at once to one subscription whose own
	// max_in_flight is 0.
	SubscriptionMaxInFlight int `json:"subscription_max_in_flight" default:"8" min:"1" max:"1000" doc:"Concurrent attempts per subscription (a subscription's own max_in_flight wins)."`
	// DisableAfter (`disable_after`, default 120h) disables a subscription
	// all of whose attempts have failed for this long.
	DisableAfter time.Duration `json:"disable_after" default:"120h" check:"positive" doc:"Disable a subscription whose attempts have all failed for this long (Go duration)."`
	// MaxTimeout (`max_timeout`, default 1m) is the longest timeout a
	// subscription may set for itself: the API refuses a longer one, and
	// one stored before the bound was lowered is cut to it.
	MaxTimeout time.Duration `json:"max_timeout" default:"1m" check:"positive" doc:"Longest timeout a subscription may set for itself (Go duration)."`
	// RetryOn and PermanentOn (`retry_on`, `permanent_on`) are the status
	// policy of the subscriptions that set none of their own, as for the
	// webhook sink (see statuspolicy): codes 400 to 599, "4xx", "5xx".
	RetryOn     statuspolicy.List `json:"retry_on" doc:"Answers retried for subscriptions without their own list: status codes and \"4xx\"/\"5xx\"."`
	PermanentOn statuspolicy.List `json:"permanent_on" doc:"Answers dead-lettered at once for subscriptions without their own list."`
}

// Validate checks the rules the tags cannot say: no status in both lists.
func (c Config) Validate() error { return errors.Join(c.Policy().Errors("")...) }

// Policy is the sink's status policy.
func (c Config) Policy() statuspolicy.Policy {
	return statuspolicy.Policy{RetryOn: c.RetryOn, PermanentOn: c.PermanentOn}
}

// configSpec describes Config: one description for decoding, validation
// and the JSON Schema.
var configSpec = spec.For[Config](spec.Title("subscriptions sink config"))

// ParseConfig decodes a `config` block (without the shared sink keys) and
// applies defaults. Every problem is a *sdk.ConfigError naming the key,
// joined with errors.Join.
func ParseConfig(raw json.RawMessage) (Config, error) { return configSpec.Decode(raw) }
