package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/deliveryformat"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// Rotation overlap: the default, and the longest an old secret may keep
// signing.
const (
	DefaultOverlap = 24 * time.Hour
	MaxOverlap     = 30 * 24 * time.Hour
)

// ErrTestUnavailable, in the chain of a TestSend error, means test sends
// cannot be made now (no subscriptions sink is configured): 503.
var ErrTestUnavailable = errors.New("test sends are unavailable")

// TestEventType is the type of the event POST …/test sends unless told otherwise.
const TestEventType = "hookbus.test"

// SubscriptionJSON is the API form of a subscription. Secret is there only
// in the answer that created it; GET …/secret reads it later.
type SubscriptionJSON struct {
	ID             string            `json:"id"`
	Application    string            `json:"application"`
	URL            string            `json:"url"`
	EventTypes     []string          `json:"event_types"`
	Description    string            `json:"description"`
	Headers        map[string]string `json:"headers"`
	RateLimit      float64           `json:"rate_limit"`
	MaxInFlight    int               `json:"max_in_flight"`
	Format         string            `json:"format"`
	Filter         string            `json:"filter"`
	Disabled       bool              `json:"disabled"`
	DisabledReason string            `json:"disabled_reason"`
	Metadata       map[string]any    `json:"metadata"`
	deliveryJSON
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	Secret    string `json:"secret,omitempty"`
	// Signing is "hmac" or "ed25519" (an Ed25519 key signs "v1a," beside
	// the secrets), and PublicKey the current key's "whpk_" public key.
	Signing   string `json:"signing"`
	PublicKey string `json:"public_key,omitempty"`
}

func subscriptionJSON(s subscription.Subscription) SubscriptionJSON {
	out := SubscriptionJSON{ID: s.ID, Application: s.App, URL: s.URL, EventTypes: s.EventTypes, Description: s.Description,
		Headers: s.Headers, RateLimit: s.RateLimit, MaxInFlight: s.MaxInFlight, Format: s.Format, Filter: s.Filter, Disabled: s.Disabled,
		DisabledReason: s.DisabledReason, Metadata: s.Metadata, deliveryJSON: deliveryOptionsJSON(s.Delivery),
		CreatedAt: timeJSON(s.Created), UpdatedAt: timeJSON(s.Updated)}
	if out.Format == "" {
		out.Format = string(deliveryformat.JSON)
	}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	if out.Metadata == nil {
		out.Metadata = map[string]any{}
	}
	signingJSON(&out, s)
	return out
}

// The members a subscription's body may give, and those only answers carry.
var (
	// Clipped: handlers append the read-only members to it.
	subscriptionFields = slices.Clip(slices.Concat([]string{"url", "event_types", "description", "secret", "headers", "rate_limit", "max_in_flight",
		"format", "filter", "disabled", "metadata", "signing"}, subscriptionDeliveryFields))
	subscriptionReadOnly = []string{"id", "application", "disabled_reason", "created_at", "updated_at", "public_key"}
)

// DisabledByAPI is the disabled_reason of a subscription disabled through the API.
const DisabledByAPI = "disabled through the API"

func subscriptionNotFound(app, id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "no subscription with id "+strconv.Quote(id)+" in application "+strconv.Quote(app))
}

// rules are the validation rules of the moment (whether private networks
// are allowed follows the configuration's subscriptions sinks).
func (s *Server) rules() subscription.Rules {
	r := subscription.Rules{CompileFilter: s.opts.CompileFilter}
	if r.CompileFilter == nil {
		r.CompileFilter = compileFilter
	}
	if s.opts.AllowPrivateNetworks != nil {
		r.AllowPrivateNetworks = s.opts.AllowPrivateNetworks()
	}
	if s.opts.SubscriptionMaxTimeout != nil {
		r.MaxTimeout = s.opts.SubscriptionMaxTimeout()
	}
	return r
}

// compileFilter compiles a filter script with the default script limits;
// the host passes Options.CompileFilter to apply the configured ones.
func compileFilter(src string) error {
	return CheckFilter(script.CompileSource("filter", src, script.Options{}))
}

// CheckFilter tells whether a compiled script is a subscription filter:
// it compiled, and defines filter(event) and not transform.
func CheckFilter(sc *script.Script, err error) error {
	if err != nil {
		return err
	}
	if !sc.HasFilter() {
		return errors.New("must define filter(event)")
	}
	if sc.HasTransform() {
		return errors.New("defines transform: a subscription filter defines filter(event) only")
	}
	return nil
}

// applySubscription sets the members o gives on sub. It answers a problem
// (403) only when an application token sets filter; field errors stay in o.
func (s *Server) applySubscription(r *http.Request, o *object, sub *subscription.Subscription) *problem.Problem {
	for _, k := range subscriptionReadOnly {
		if o.has(k) {
			o.fail(k, "is read-only")
		}
	}
	if o.has("filter") && !principalOf(r.Context()).admin {
		return problem.New(http.StatusForbidden, "only admin keys may set a subscription's filter").WithErrors(
			problem.FieldError{Field: "filter", Message: "only admin keys may set it; an application token cannot"})
	}
	o.get("url", &sub.URL, "a string")
	o.get("event_types", &sub.EventTypes, "an array of strings")
	o.get("description", &sub.Description, "a string")
	var secret string
	if o.get("secret", &secret, "a string") {
		if secret == "" {
			o.fail("secret", `must not be empty; leave it out to have one generated`)
		}
		sub.Secrets = []subscription.Secret{{Value: secret, Created: time.Now().UTC()}}
	}
	o.get("headers", &sub.Headers, "an object of string values")
	o.get("rate_limit", &sub.RateLimit, "a number (deliveries per second)")
	o.get("max_in_flight", &sub.MaxInFlight, "an integer")
	if o.get("format", &sub.Format, "a string: json, cloudevents-structured or cloudevents-binary") && sub.Format == string(deliveryformat.JSON) {
		sub.Format = "" // the default, stored as such
	}
	o.get("filter", &sub.Filter, "a string (JavaScript defining filter(event))")
	was := sub.Disabled
	if o.get("disabled", &sub.Disabled, "true or false") && sub.Disabled != was {
		if sub.Disabled {
			sub.DisabledReason = DisabledByAPI
		} else {
			sub.DisabledReason = ""
			sub.FailingSince = time.Time{}
		}
	}
	o.get("metadata", &sub.Metadata, "a JSON object")
	applyDelivery(o, &sub.Delivery)
	if err := s.applySigning(o, sub); err != nil {
		return problem.New(http.StatusInternalServerError, "internal error")
	}
	return nil
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, false, append(subscriptionFields, subscriptionReadOnly...)...)
	if p != nil {
		problem.Write(w, p)
		return
	}
	a, ok := s.application(w, r)
	if !ok {
		return
	}
	sub := subscription.Subscription{ID: newID("sub_"), App: a.ID}
	if p := s.applySubscription(r, o, &sub); p != nil {
		problem.Write(w, p)
		return
	}
	if !o.has("secret") {
		secret, err := signing.GenerateSecret()
		if err != nil {
			s.internal(w, err)
			return
		}
		sub.Secrets = []subscription.Secret{{Value: secret, Created: time.Now().UTC()}}
	}
	o.check(s.rules().Validate(sub))
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid subscription", o.errs...))
		return
	}
	created, err := s.opts.Subscriptions.CreateSubscription(r.Context(), sub)
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, applicationNotFound(a.ID))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	out := subscriptionJSON(created)
	out.Secret = created.Secrets[0].Value
	w.Header().Set("Location", "/v1/applications/"+a.ID+"/subscriptions/"+created.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	pg, p := page(r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	var q subscription.SubscriptionQuery
	var errs []problem.FieldError
	if v, ok := r.URL.Query()["event_type"]; ok {
		q.EventType = v[0]
		if msg := subscription.CheckEventType(q.EventType); msg != "" {
			errs = append(errs, problem.FieldError{Field: "event_type", Message: msg})
		}
	}
	if v := r.URL.Query().Get("disabled"); v != "" {
		switch v {
		case "true", "false":
			d := v == "true"
			q.Disabled = &d
		default:
			errs = append(errs, problem.FieldError{Field: "disabled", Message: "must be true or false"})
		}
	}
	if len(errs) > 0 {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid query parameter").WithErrors(errs...))
		return
	}
	a, ok := s.application(w, r)
	if !ok {
		return
	}
	subs, next, err := s.opts.Subscriptions.ListSubscriptions(r.Context(), a.ID, q, pg)
	if err != nil {
		s.listError(w, err)
		return
	}
	out := make([]SubscriptionJSON, 0, len(subs))
	for _, sub := range subs {
		out = append(out, subscriptionJSON(sub))
	}
	writeJSON(w, http.StatusOK, newList(out, next))
}

// subscription loads the {sub} of the path's {app}, answering 404 when
// either is absent.
func (s *Server) subscription(w http.ResponseWriter, r *http.Request) (subscription.Subscription, bool) {
	app, id := r.PathValue("app"), r.PathValue("sub")
	var sub subscription.Subscription
	err := subscription.ErrNotFound
	if subscription.CouldBeID(app) && subscription.CouldBeID(id) {
		sub, err = s.opts.Subscriptions.GetSubscription(r.Context(), app, id)
	}
	if errors.Is(err, subscription.ErrNotFound) {
		if _, aerr := s.getApplication(r, app); errors.Is(aerr, subscription.ErrNotFound) {
			problem.Write(w, applicationNotFound(app))
		} else {
			problem.Write(w, subscriptionNotFound(app, id))
		}
		return sub, false
	}
	if err != nil {
		s.internal(w, err)
		return sub, false
	}
	return sub, true
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	if sub, ok := s.subscription(w, r); ok {
		writeJSON(w, http.StatusOK, subscriptionJSON(sub))
	}
}

// updateSubscription changes the given members only. A new secret given
// here replaces every secret at once; rotate-secret keeps the old one
// signing for an overlap.
func (s *Server) updateSubscription(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, false, append(subscriptionFields, subscriptionReadOnly...)...)
	if p != nil {
		problem.Write(w, p)
		return
	}
	updated, ok := s.modifySubscription(w, r, func(sub *subscription.Subscription) *problem.Problem {
		o.errs = nil
		if p := s.applySubscription(r, o, sub); p != nil {
			return p
		}
		o.check(s.rules().Validate(*sub))
		if len(o.errs) > 0 {
			return problem.Validation("invalid subscription", o.errs...)
		}
		return nil
	})
	if ok {
		writeJSON(w, http.StatusOK, subscriptionJSON(updated))
	}
}

// updateTries is how many times a PATCH or a rotation is applied to a
// subscription that changed between its read and its write (a
// subscriptions sink records failing_since and disables subscriptions on
// its own) before the request is answered 409.
const updateTries = 5

// modifySubscription applies change to the path's subscription as the
// store holds it and saves it; when the subscription changed between the
// read and the write, it applies change again to what the store holds
// then, so neither write is lost. change may answer a problem (written,
// nothing saved). ok false: an answer was written.
func (s *Server) modifySubscription(w http.ResponseWriter, r *http.Request, change func(*subscription.Subscription) *problem.Problem) (subscription.Subscription, bool) {
	for try := 1; ; try++ {
		sub, ok := s.subscription(w, r)
		if !ok {
			return sub, false
		}
		if p := change(&sub); p != nil {
			problem.Write(w, p)
			return sub, false
		}
		updated, err := s.opts.Subscriptions.UpdateSubscription(r.Context(), sub)
		switch {
		case err == nil:
			return updated, true
		case errors.Is(err, subscription.ErrChanged) && try < updateTries:
			continue
		case errors.Is(err, subscription.ErrChanged):
			problem.Write(w, problem.New(http.StatusConflict, "the subscription kept changing while this request was applied; send it again"))
		case errors.Is(err, subscription.ErrNotFound):
			problem.Write(w, subscriptionNotFound(sub.App, sub.ID))
		default:
			s.internal(w, err)
		}
		return sub, false
	}
}

// deleteSubscription: 204, then 404 for a repeated DELETE.
func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("sub")
	err := subscription.ErrNotFound
	if subscription.CouldBeID(app) && subscription.CouldBeID(id) {
		err = s.opts.Subscriptions.DeleteSubscription(r.Context(), app, id)
	}
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, subscriptionNotFound(app, id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// secretJSON is the answer of GET …/secret and POST …/rotate-secret.
type secretJSON struct {
	Secret string `json:"secret"`
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscription(w, r)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, secretJSON{Secret: sub.Secrets[0].Value})
}

// rotateSecret makes a new current secret (given, or generated); the
// secrets signing now keep signing beside it until now+overlap (or their
// own earlier expiry), and those already expired are dropped.
func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, true, "secret", "overlap")
	if p != nil {
		problem.Write(w, p)
		return
	}
	var secret string
	if o.get("secret", &secret, "a string") && secret != "" {
		if _, err := signing.ParseSecret(secret); err != nil {
			o.fail("secret", err.Error())
		}
	}
	overlap := parseOverlap(o)
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid rotation", o.errs...))
		return
	}
	if secret == "" {
		var err error
		if secret, err = signing.GenerateSecret(); err != nil {
			s.internal(w, err)
			return
		}
	}
	now := time.Now().UTC()
	updated, ok := s.modifySubscription(w, r, func(sub *subscription.Subscription) *problem.Problem {
		sub.Secrets = Rotate(sub.Secrets, subscription.Secret{Value: secret, Created: now}, overlap, now)
		return nil
	})
	if ok {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, secretJSON{Secret: updated.Secrets[0].Value})
	}
}

// parseOverlap reads the "overlap" member of a rotation (DefaultOverlap
// when absent), recording a field error in o when it is not a duration
// between 0s and MaxOverlap.
func parseOverlap(o *object) time.Duration {
	var text string
	if !o.get("overlap", &text, `a duration such as "24h" or "0s"`) || text == "" {
		return DefaultOverlap
	}
	d, err := time.ParseDuration(text)
	switch {
	case err != nil:
		o.fail("overlap", `must be a duration such as "24h", "90m" or "0s"`)
	case d < 0 || d > MaxOverlap:
		o.fail("overlap", fmt.Sprintf("must be between 0s (the old one stops at once) and %s", MaxOverlap))
	default:
		return d
	}
	return DefaultOverlap
}

// Rotate returns the secrets after a rotation at now: next first, then the
// secrets of old still signing at now, each expiring at now+overlap or at
// its own earlier expiry; at most subscription.MaxSecrets in all (the
// oldest dropped first). A zero overlap keeps none of the old ones.
func Rotate(old []subscription.Secret, next subscription.Secret, overlap time.Duration, now time.Time) []subscription.Secret {
	out := []subscription.Secret{next}
	if overlap <= 0 {
		return out
	}
	until := now.Add(overlap)
	for _, sec := range old {
		if !sec.Expires.IsZero() && !now.Before(sec.Expires) {
			continue
		}
		if sec.Expires.IsZero() || sec.Expires.After(until) {
			sec.Expires = until
		}
		if len(out) == subscription.MaxSecrets {
			break
		}
		out = append(out, sec)
	}
	return out
}

// testRequest is the body of POST …/test.
type testRequest struct {
	Type string
	Data json.RawMessage
}

// testSubscription posts a test event to the subscription now, outside
// the queue, and answers with what the attempt got.
func (s *Server) testSubscription(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, true, "type", "data")
	if p != nil {
		problem.Write(w, p)
		return
	}
	req := testRequest{Type: TestEventType}
	if o.get("type", &req.Type, "a string") {
		if msg := subscription.CheckEventType(req.Type); msg != "" {
			o.fail("type", msg)
		}
	}
	o.get("data", &req.Data, "JSON")
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid test event", o.errs...))
		return
	}
	sub, ok := s.subscription(w, r)
	if !ok {
		return
	}
	if s.opts.TestSend == nil {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "test sends need a subscriptions sink; none is configured"))
		return
	}
	if len(req.Data) == 0 {
		req.Data = json.RawMessage(`{"message":"a test event from hookbus"}`)
	}
	appJSON, _ := json.Marshal(sub.App)
	ev := sdk.Event{ID: newID(""), Type: req.Type, Source: "hookbus", Time: time.Now().UTC(), Data: req.Data,
		Extensions: map[string]json.RawMessage{"application": appJSON}}
	res, err := s.opts.TestSend(r.Context(), sub, ev)
	if errors.Is(err, ErrTestUnavailable) {
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "test sends need a subscriptions sink; none is configured"))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
