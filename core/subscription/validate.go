package subscription

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookbus/hookbus/core/deliveryformat"
	"github.com/hookbus/hookbus/core/deliveryheader"
	"github.com/hookbus/hookbus/core/netguard"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/signing"
)

// Bounds of what an application or a subscription may hold.
const (
	MaxApplicationNameLength = 256
	MaxURLLength             = 2048
	MaxEventTypes            = 64
	// MaxEventTypeLength is the ingest endpoint's bound on an event's type.
	MaxEventTypeLength   = 256
	MaxDescriptionLength = 1024
	MaxHeaders           = 32
	// MaxInFlightLimit bounds max_in_flight: a subscription cannot ask for
	// more concurrent deliveries than a sink would ever run.
	MaxInFlightLimit = 1024
	// MaxRateLimit bounds rate_limit (deliveries per second), and
	// MinRateLimit bounds a positive one from below: at a rate near 0
	// every pair but the first would wait for centuries.
	MaxRateLimit = 1e6
	MinRateLimit = 0.001
	// MaxFilterBytes bounds a filter script's source.
	MaxFilterBytes = 64 << 10
	// MaxSecrets bounds the signing secrets kept at once (the current one
	// and those still in their rotation overlap).
	MaxSecrets = 10
	// MaxMetadataBytes bounds an application's or a subscription's
	// metadata, as compact JSON, and MaxMetadataDepth its nesting (the
	// metadata object itself is level 1): every instance keeps every
	// subscription in memory, and answers are indented.
	MaxMetadataBytes = 16 << 10
	MaxMetadataDepth = 8
	// MaxHeaderBytes bounds a subscription's headers, names and values
	// together: receivers refuse requests whose headers pass a few KiB.
	MaxHeaderBytes = 8 << 10
	// DefaultMaxTimeout is the bound on a subscription's own timeout when
	// the sink sets none (Rules.MaxTimeout, the subscriptions sink's
	// max_timeout).
	DefaultMaxTimeout = time.Minute
	// MaxRetryScheduleEntries bounds a subscription's retry_schedule, and
	// MaxRetryDelay each of its waits.
	MaxRetryScheduleEntries = 20
	MaxRetryDelay           = 48 * time.Hour
)

// applicationID is what a caller-chosen application ID may be: it travels
// in URL paths and in events' application attribute.
var applicationID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// CheckApplicationID returns what is wrong with an application ID, or "".
func CheckApplicationID(id string) string {
	switch {
	case !applicationID.MatchString(id):
		return "must be 1 to 128 characters of A-Z, a-z, 0-9 and _ . : -"
	case id == "." || id == "..":
		// HTTP clients and routers remove such a path segment: the
		// application's paths could not be reached.
		return `must not be "." or ".."`
	}
	return ""
}

// MaxIDLength bounds every id the API makes or takes.
const MaxIDLength = 256

// CouldBeID tells whether s could be the id of an application, a
// subscription or a token: 1 to MaxIDLength bytes of printable ASCII.
// Anything else (a path segment with invalid UTF-8 or a NUL, which
// PostgreSQL refuses as a parameter) names nothing, without asking the
// store.
func CouldBeID(s string) bool {
	if s == "" || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidateApplication checks an application's fields and returns every
// problem as a field error (none: valid).
func ValidateApplication(a Application) []problem.FieldError {
	var errs []problem.FieldError
	if msg := CheckApplicationID(a.ID); msg != "" {
		errs = append(errs, problem.FieldError{Field: "id", Message: msg})
	}
	if msg := CheckMetadata(a.Metadata); msg != "" {
		errs = append(errs, problem.FieldError{Field: "metadata", Message: msg})
	}
	switch {
	case strings.TrimSpace(a.Name) == "":
		errs = append(errs, problem.FieldError{Field: "name", Message: "is required"})
	case len(a.Name) > MaxApplicationNameLength:
		errs = append(errs, problem.FieldError{Field: "name", Message: fmt.Sprintf("is longer than %d bytes", MaxApplicationNameLength)})
	case hasControl(a.Name):
		errs = append(errs, problem.FieldError{Field: "name", Message: "must not contain control characters"})
	}
	return errs
}

// CheckMetadata returns what is wrong with metadata, or "".
func CheckMetadata(md map[string]any) string {
	if md == nil {
		return ""
	}
	if depth(md) > MaxMetadataDepth {
		return fmt.Sprintf("is nested more than %d levels deep", MaxMetadataDepth)
	}
	b, err := json.Marshal(md)
	if err != nil {
		return "must be a JSON object"
	}
	if len(b) > MaxMetadataBytes {
		return fmt.Sprintf("is %d bytes of JSON, more than %d", len(b), MaxMetadataBytes)
	}
	return ""
}

// depth is how deeply v nests objects and arrays (a scalar is 0). It
// stops counting past MaxMetadataDepth.
func depth(v any) int {
	var inner []any
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			inner = append(inner, e)
		}
	case []any:
		inner = x
	default:
		return 0
	}
	d := 0
	for _, e := range inner {
		if d = max(d, depth(e)); d > MaxMetadataDepth {
			break
		}
	}
	return d + 1
}

// CheckEventType returns what is wrong with an event type (an exact type,
// as an event carries it), or "".
func CheckEventType(t string) string {
	switch {
	case t == "":
		return "must not be empty"
	case len(t) > MaxEventTypeLength:
		return fmt.Sprintf("is longer than %d bytes", MaxEventTypeLength)
	case !utf8.ValidString(t):
		return "must be valid UTF-8"
	case strings.ContainsFunc(t, unicode.IsSpace) || hasControl(t):
		return "must not contain spaces or control characters"
	case strings.Contains(t, "*"):
		return `must be an event type, without "*"`
	}
	return ""
}

// CheckEventTypePattern returns what is wrong with a subscription's event
// type pattern, or "": an exact type ("order.paid"), a prefix wildcard
// ("order.*": every type that starts with "order.") or "*" (every type).
func CheckEventTypePattern(p string) string {
	if p == "*" {
		return ""
	}
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		if prefix == "" || strings.Contains(prefix, "*") {
			return `"*" may only end a pattern, after a dot ("order.*") or alone ("*")`
		}
		return CheckEventType(prefix)
	}
	if strings.Contains(p, "*") {
		return `"*" may only end a pattern, after a dot ("order.*") or alone ("*")`
	}
	return CheckEventType(p)
}

// Rules are what validating a subscription depends on beyond its fields.
type Rules struct {
	// AllowPrivateNetworks accepts URLs whose host is a loopback, private,
	// link-local or metadata address (the sink delivering allows them).
	AllowPrivateNetworks bool
	// CompileFilter compiles a filter script, returning an error that
	// names the line of a syntax error; nil: filters are not checked
	// beyond their size.
	CompileFilter func(src string) error
	// MaxTimeout bounds a subscription's own timeout (0:
	// DefaultMaxTimeout).
	MaxTimeout time.Duration
}

// Validate checks every field of s and returns every problem as a field
// error named as in the API's JSON (none: valid). Secrets are checked as
// "secret" (the current one) and "secrets[i]" (those rotated out).
func (r Rules) Validate(s Subscription) []problem.FieldError {
	var errs []problem.FieldError
	fail := func(field, format string, args ...any) {
		errs = append(errs, problem.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if msg := r.CheckURL(s.URL); msg != "" {
		fail("url", "%s", msg)
	}
	switch {
	case len(s.EventTypes) == 0:
		fail("event_types", `is required: at least one event type ("order.paid"), prefix ("order.*") or "*"`)
	case len(s.EventTypes) > MaxEventTypes:
		fail("event_types", "has more than %d entries", MaxEventTypes)
	default:
		seen := map[string]int{}
		for i, p := range s.EventTypes {
			field := fmt.Sprintf("event_types[%d]", i)
			if msg := CheckEventTypePattern(p); msg != "" {
				fail(field, "%s", msg)
			} else if j, dup := seen[p]; dup {
				fail(field, "repeats event_types[%d]", j)
			}
			seen[p] = i
		}
	}
	if len(s.Description) > MaxDescriptionLength {
		fail("description", "is longer than %d bytes", MaxDescriptionLength)
	} else if !utf8.ValidString(s.Description) {
		fail("description", "must be valid UTF-8")
	} else if strings.ContainsRune(s.Description, 0) {
		fail("description", "must not contain NUL characters")
	}
	switch {
	case len(s.Secrets) == 0:
		fail("secret", "is required")
	case len(s.Secrets) > MaxSecrets:
		fail("secrets", "more than %d secrets at once", MaxSecrets)
	default:
		for i, sec := range s.Secrets {
			field := "secret"
			if i > 0 {
				field = fmt.Sprintf("secrets[%d]", i)
			}
			if _, err := signing.ParseSecret(sec.Value); err != nil {
				fail(field, "%v", err)
			}
		}
	}
	if len(s.SigningKeys) > MaxSecrets {
		fail("signing", "more than %d signing keys at once", MaxSecrets)
	}
	for i, k := range s.SigningKeys {
		if _, err := signing.ParseSigningKey(k.Value); err != nil {
			fail(fmt.Sprintf("signing_keys[%d]", i), "%v", err)
		}
	}
	if len(s.Headers) > MaxHeaders {
		fail("headers", "has more than %d headers", MaxHeaders)
	}
	headerBytes := 0
	if msg := deliveryformat.Check(s.Format); msg != "" {
		fail("format", "%s", msg)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		if msg := deliveryheader.Check(name, s.Headers[name]); msg != "" {
			fail("headers."+name, "%s", msg)
		} else if msg := deliveryformat.CheckHeader(deliveryformat.Format(s.Format), name); msg != "" {
			fail("headers."+name, "%s", msg)
		}
		headerBytes += len(name) + len(s.Headers[name])
	}
	if headerBytes > MaxHeaderBytes {
		fail("headers", "names and values are %d bytes together, more than %d", headerBytes, MaxHeaderBytes)
	}
	if msg := CheckMetadata(s.Metadata); msg != "" {
		fail("metadata", "%s", msg)
	}
	if s.RateLimit < 0 || math.IsNaN(s.RateLimit) || s.RateLimit > MaxRateLimit || s.RateLimit > 0 && s.RateLimit < MinRateLimit {
		fail("rate_limit", "must be 0 (no limit) or between %g (one delivery every %g s) and %g deliveries per second",
			MinRateLimit, 1/MinRateLimit, float64(MaxRateLimit))
	}
	if s.MaxInFlight < 0 || s.MaxInFlight > MaxInFlightLimit {
		fail("max_in_flight", "must be between 0 (the sink's default) and %d", MaxInFlightLimit)
	}
	for _, e := range r.checkDelivery(s.Delivery) {
		fail(e.Field, "%s", e.Message)
	}
	if s.Delivery.Batch.On() {
		if msg := deliveryformat.CheckBatch(deliveryformat.Format(s.Format)); msg != "" {
			fail("batch", "%s", msg)
		}
	}
	if s.Filter != "" {
		switch {
		case len(s.Filter) > MaxFilterBytes:
			fail("filter", "is longer than %d bytes", MaxFilterBytes)
		case strings.ContainsRune(s.Filter, 0):
			fail("filter", "must not contain NUL characters (write \\0 in a string literal)")
		case r.CompileFilter != nil:
			if err := r.CompileFilter(s.Filter); err != nil {
				fail("filter", "%v", err)
			}
		}
	}
	return errs
}

// checkDelivery checks a subscription's delivery options against their
// bounds: the timeout at most MaxTimeout, the schedule at most
// MaxRetryScheduleEntries positive waits of at most MaxRetryDelay, and a
// status policy without a code in both lists.
func (r Rules) checkDelivery(d DeliveryOptions) []problem.FieldError {
	var errs []problem.FieldError
	fail := func(field, format string, args ...any) {
		errs = append(errs, problem.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	maxTimeout := r.MaxTimeout
	if maxTimeout <= 0 {
		maxTimeout = DefaultMaxTimeout
	}
	switch {
	case d.Timeout < 0:
		fail("timeout", "must not be negative (null or leave it out for the sink's timeout)")
	case d.Timeout > maxTimeout:
		fail("timeout", "must be at most %s (the sink's max_timeout), got %s", maxTimeout, d.Timeout)
	case d.Timeout > 0 && d.Timeout < time.Millisecond:
		fail("timeout", "must be at least 1ms, got %s", d.Timeout)
	}
	if len(d.RetrySchedule) > MaxRetryScheduleEntries {
		fail("retry_schedule", "at most %d waits (%d attempts), got %d", MaxRetryScheduleEntries, MaxRetryScheduleEntries+1, len(d.RetrySchedule))
	} else {
		for i, w := range d.RetrySchedule {
			if w <= 0 || w > MaxRetryDelay {
				fail(fmt.Sprintf("retry_schedule[%d]", i), "must be a wait above 0 and at most %s, got %s", MaxRetryDelay, w)
			}
		}
	}
	for _, p := range d.Policy().Check("") {
		fail(p.Field, "%s", p.Message)
	}
	if msg := deliveryformat.CheckCompression(d.Compression); msg != "" {
		fail("compression", "%s (null: none)", msg)
	}
	for _, e := range d.Batch.Check() {
		fail("batch."+e.Field, "%s", e.Message)
	}
	return errs
}

// CheckURL returns what is wrong with a callback URL, or "": the webhook
// sink's rules (absolute http or https, a host, no credentials) and, unless
// private networks are allowed, no IP literal the SSRF guard refuses. A
// hostname is checked again at every dial, after DNS.
func (r Rules) CheckURL(u string) string {
	if u == "" {
		return "is required: the receiver's http(s) URL"
	}
	if len(u) > MaxURLLength {
		return fmt.Sprintf("is longer than %d bytes", MaxURLLength)
	}
	if err := netguard.CheckURL(u); err != nil {
		return err.Error()
	}
	if !r.AllowPrivateNetworks {
		p, _ := url.Parse(u)
		var be *netguard.BlockedError
		if err := netguard.CheckHost(p.Hostname()); errors.As(err, &be) {
			return fmt.Sprintf("%s is a %s; deliveries to it are refused (private networks are not allowed for subscriptions)", be.Addr, be.Reason)
		}
	}
	return ""
}

// CheckTokenName returns what is wrong with an application token's name, or "".
func CheckTokenName(name string) string {
	switch {
	case len(name) > MaxApplicationNameLength:
		return fmt.Sprintf("is longer than %d bytes", MaxApplicationNameLength)
	case hasControl(name):
		return "must not contain control characters"
	}
	return ""
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
