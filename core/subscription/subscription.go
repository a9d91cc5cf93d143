// Package subscription is hookbus' open-platform domain: applications (the
// third parties an event bus delivers to), their subscriptions (callback
// URLs with the event types they want, their signing secrets and limits),
// application tokens, the Store interface that keeps them, and the index
// that matches an event to the subscriptions it goes to.
//
// It is a leaf: it imports no engine package (pipeline, store, api, app,
// the queue drivers). The store implements Store; the API, the
// subscriptions sink and the CLI use it.
package subscription

import (
	"context"
	"errors"
	"time"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/statuspolicy"
)

// Application is a third party that receives events: it owns
// subscriptions and tokens.
type Application struct {
	// ID is chosen by the caller or generated ("app_" + a ULID). It is
	// what events name in their "application" attribute.
	ID       string
	Name     string
	Metadata map[string]any
	// Created and Updated are set by the store.
	Created, Updated time.Time
}

// Secret is one signing secret of a subscription.
type Secret struct {
	// Value is the "whsec_..." secret, in clear (the store encrypts it at
	// rest when an encryption key is configured).
	Value string
	// Created is when the secret was made.
	Created time.Time
	// Expires, when not zero, is when it stops signing: a rotated-out
	// secret signs beside its successor until then.
	Expires time.Time
}

// Subscription is one callback URL of an application and what it wants.
type Subscription struct {
	// ID is generated ("sub_" + a ULID).
	ID string
	// App is the owning application's ID.
	App string
	URL string
	// EventTypes are exact types ("order.paid"), prefix wildcards
	// ("order.*": every type that starts with "order.") or "*".
	EventTypes  []string
	Description string
	// Secrets sign every delivery; the current one first. Expired ones
	// are dropped by Signing.
	Secrets []Secret
	// SigningKeys, when any, are Ed25519 signing keys ("whsk_..."; the
	// current one first) that add a Standard Webhooks "v1a," signature to
	// every delivery beside the HMAC secrets' "v1," ones; they rotate like
	// Secrets (Expires). Their public keys are what receivers check with.
	SigningKeys []Secret
	// Headers are extra request headers (the webhook sink's rules).
	Headers map[string]string
	// RateLimit is the most deliveries per second (0: no limit).
	RateLimit float64
	// MaxInFlight bounds concurrent deliveries to the URL (0: the sink's default).
	MaxInFlight int
	// Delivery holds the subscription's own delivery options (a timeout,
	// a retry schedule, a status policy); its zero value takes every one
	// from the sink.
	Delivery DeliveryOptions
	// Format is the body's format (core/deliveryformat): "" or "json" for
	// the event envelope, "cloudevents-structured" or "cloudevents-binary".
	Format string
	// Filter is JavaScript defining filter(event); empty: every matching
	// event. Only admin keys may set it.
	Filter   string
	Disabled bool
	// DisabledReason says why a subscription was disabled (by whom or by
	// what: "410 Gone", "failing since ..."); empty while enabled.
	DisabledReason string
	Metadata       map[string]any
	// FailingSince, when not zero, is when the current run of failed
	// attempts began (cleared by a delivered attempt); the sink disables a
	// subscription failing for longer than its disable_after.
	FailingSince time.Time
	// Created and Updated are set by the store.
	Created, Updated time.Time
}

// DeliveryOptions are a subscription's overrides of its sink's delivery
// settings. Each unset one (zero, nil) is the sink's.
type DeliveryOptions struct {
	// Timeout bounds one attempt (0: the sink's timeout). The sink caps
	// it at its max_timeout.
	Timeout time.Duration
	// RetrySchedule lists the waits before each retry, len+1 attempts in
	// all (nil: the sink's schedule; empty: a single attempt).
	RetrySchedule []time.Duration
	// RetryOn and PermanentOn are the status policy (both nil: the
	// sink's). A subscription that sets either has its own policy in
	// place of the sink's, not merged with it.
	RetryOn, PermanentOn statuspolicy.List
	// Compression is the request body's content coding
	// (core/deliveryformat): "" (the sink's, none) or "none", or "gzip"
	// for bodies of 1 KiB or more, signed before compression.
	Compression string
	// Batch, when on, sends the subscription's events in batches: one
	// request carries a JSON array of events (core/batching).
	Batch batching.Policy
}

// Policy is the status policy of the options.
func (d DeliveryOptions) Policy() statuspolicy.Policy {
	return statuspolicy.Policy{RetryOn: d.RetryOn, PermanentOn: d.PermanentOn}
}

// IsZero tells whether every option is the sink's.
func (d DeliveryOptions) IsZero() bool {
	return d.Timeout == 0 && d.RetrySchedule == nil && d.RetryOn == nil && d.PermanentOn == nil && d.Compression == "" && !d.Batch.On()
}

// Signing returns the secrets that sign at now: the current one and those
// not yet expired.
func (s *Subscription) Signing(now time.Time) []Secret {
	out := make([]Secret, 0, len(s.Secrets))
	for _, sec := range s.Secrets {
		if sec.Expires.IsZero() || now.Before(sec.Expires) {
			out = append(out, sec)
		}
	}
	return out
}

// SigningKeysAt returns the Ed25519 signing keys that sign at now: the
// current one and those not yet expired.
func (s *Subscription) SigningKeysAt(now time.Time) []Secret {
	var out []Secret
	for _, k := range s.SigningKeys {
		if k.Expires.IsZero() || now.Before(k.Expires) {
			out = append(out, k)
		}
	}
	return out
}

// Token is an application token: a bearer credential that reaches only
// its application's routes. The token itself ("hbat_...") is shown once;
// the store keeps its SHA-256 hash.
type Token struct {
	ID   string
	App  string
	Hash []byte
	// Name is the caller's label for the token.
	Name     string
	Created  time.Time
	LastUsed time.Time
	// Kind is what the token was made for: "" or TokenKindAPI for an
	// ordinary token, TokenKindPortal for the token of a portal link.
	// Both reach the same routes.
	Kind string
	// ExpiresAt, when not zero, is when the token stops working.
	ExpiresAt time.Time
}

// The kinds of application token.
const (
	TokenKindAPI    = "api"
	TokenKindPortal = "portal"
)

// Bounds of a portal link's lifetime (console.portal.link_ttl and the
// ttl of POST /v1/applications/{app}/portal), and its default.
const (
	PortalLinkMinTTL     = time.Minute
	PortalLinkMaxTTL     = 24 * time.Hour
	DefaultPortalLinkTTL = time.Hour
)

// Expired reports whether the token has stopped working at now.
func (t Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Page asks for one page of a list: at most Limit items after Cursor (an
// opaque value from a previous page's next cursor; empty for the first).
type Page struct {
	Limit  int
	Cursor string
}

// SubscriptionQuery narrows a list of one application's subscriptions.
type SubscriptionQuery struct {
	// EventType, when set, keeps the subscriptions an event of this type matches.
	EventType string
	// Disabled, when set, keeps the disabled (true) or enabled (false) ones.
	Disabled *bool
}

// ChangeKind says what a Change did.
type ChangeKind string

// The kinds of change.
const (
	ChangeUpserted ChangeKind = "upserted"
	ChangeDeleted  ChangeKind = "deleted"
)

// Change is one entry of the store's change feed: subscription Sub of App
// was created or updated (ChangeUpserted) or deleted (ChangeDeleted; an
// application's deletion records one per subscription it had).
type Change struct {
	Seq  int64
	Kind ChangeKind
	App  string
	Sub  string
}

// Errors of a Store.
var (
	// ErrNotFound: no such application, subscription or token (of that application).
	ErrNotFound = errors.New("not found")
	// ErrConflict: an application with that ID exists.
	ErrConflict = errors.New("already exists")
	// ErrChanged: the subscription was changed since the copy given to
	// UpdateSubscription was read; read it again and apply the change
	// to what it is now.
	ErrChanged = errors.New("changed since it was read")
	// ErrFeedGap: the changes after a sequence number were pruned; the
	// reader must load everything again (Snapshot).
	ErrFeedGap = errors.New("change feed pruned past the given sequence")
)

// Store keeps applications, subscriptions and tokens. Every write that
// changes a subscription (its application's deletion included) records a
// Change in the same transaction, so every instance sharing the store sees
// it through Changes.
type Store interface {
	CreateApplication(ctx context.Context, a Application) (Application, error)
	GetApplication(ctx context.Context, id string) (Application, error)
	// ListApplications returns a page ordered by ID and the cursor of the
	// next page ("" after the last).
	ListApplications(ctx context.Context, p Page) ([]Application, string, error)
	UpdateApplication(ctx context.Context, a Application) (Application, error)
	// DeleteApplication deletes the application with its subscriptions and tokens.
	DeleteApplication(ctx context.Context, id string) error

	CreateSubscription(ctx context.Context, s Subscription) (Subscription, error)
	GetSubscription(ctx context.Context, app, id string) (Subscription, error)
	ListSubscriptions(ctx context.Context, app string, q SubscriptionQuery, p Page) ([]Subscription, string, error)
	// UpdateSubscription replaces every field of s.ID (of s.App) but
	// Created; its Secrets are replaced too. When s.Updated is set (s was
	// read from the store), only while the store holds that version:
	// otherwise ErrChanged, and nothing written meanwhile is overwritten
	// with the older copy.
	UpdateSubscription(ctx context.Context, s Subscription) (Subscription, error)
	DeleteSubscription(ctx context.Context, app, id string) error

	CreateToken(ctx context.Context, t Token) (Token, error)
	ListTokens(ctx context.Context, app string) ([]Token, error)
	DeleteToken(ctx context.Context, app, id string) error
	// TokenByHash finds a token by the SHA-256 of its value.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)

	// Snapshot returns every subscription (of every application) and the
	// sequence number of the last change it includes.
	Snapshot(ctx context.Context) ([]Subscription, int64, error)
	// Changes returns the changes after seq, oldest first (at most limit),
	// or ErrFeedGap when some were pruned.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
}

// TestResult is the outcome of a test send: one attempt made now, outside
// the queue.
type TestResult struct {
	// Outcome is "delivered", "retry" (a failure that would be retried) or "failed".
	Outcome    string `json:"outcome"`
	StatusCode int    `json:"status_code"`
	LatencyMS  int64  `json:"latency_ms"`
	// Response is the first bytes of the response body (or the error).
	Response string `json:"response"`
}
