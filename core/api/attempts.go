package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// Body encodings of an attempt's response excerpt.
const (
	// BodyText: the excerpt is valid UTF-8 and given as it is.
	BodyText = "text"
	// BodyBase64: the excerpt is not UTF-8 (binary, or cut inside a
	// character by the endpoint's own encoding) and given in standard
	// base64 with padding.
	BodyBase64 = "base64"
)

// AttemptJSON is the API form of a delivery attempt. Lists leave out the
// headers and the response body (RequestHeaders, ResponseHeaders,
// ResponseBody are null there); GET …/attempts/{id} and the attempts of
// GET …/events/{id} carry them.
type AttemptJSON struct {
	ID           string `json:"id"`
	EventID      string `json:"event_id"`
	EventType    string `json:"event_type"`
	Sink         string `json:"sink"`
	Pipeline     string `json:"pipeline,omitempty"`
	Source       string `json:"source,omitempty"`
	Application  string `json:"application,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	// Number is 1 for the first attempt of a delivery.
	Number  int    `json:"number"`
	Outcome string `json:"outcome"`
	// StatusCode is the response status; null when no response came.
	StatusCode *int   `json:"status_code"`
	Error      string `json:"error,omitempty"`
	StartedAt  string `json:"started_at"`
	// DurationMS is the attempt's duration in milliseconds (to the microsecond).
	DurationMS float64 `json:"duration_ms"`
	// ReceivedAt is when hookbus accepted the event; null when unknown.
	ReceivedAt *string `json:"received_at"`
	URL        string  `json:"url,omitempty"`
	WebhookID  string  `json:"webhook_id,omitempty"`

	RequestHeaders  map[string][]string `json:"request_headers,omitempty"`
	ResponseHeaders map[string][]string `json:"response_headers,omitempty"`
	// ResponseBody is the start of the response body (at most 4 KiB), in
	// the encoding ResponseBodyEncoding names: "text" or "base64".
	ResponseBody         *string `json:"response_body,omitempty"`
	ResponseBodyEncoding string  `json:"response_body_encoding,omitempty"`
}

// AttemptToJSON converts an attempt to its API form; full adds the
// headers and the response body.
func AttemptToJSON(a attempt.Attempt, full bool) AttemptJSON {
	out := AttemptJSON{ID: a.ID, EventID: a.EventID, EventType: a.EventType, Sink: a.Sink, Pipeline: a.Pipeline,
		Source: a.Source, Application: a.Application, Subscription: a.Subscription, Number: a.Number,
		Outcome: string(a.Outcome), Error: a.Error, StartedAt: timeJSON(a.StartedAt), DurationMS: millis(a.Duration),
		URL: a.URL, WebhookID: a.WebhookID}
	if a.StatusCode != 0 {
		code := a.StatusCode
		out.StatusCode = &code
	}
	if !a.ReceivedAt.IsZero() {
		t := timeJSON(a.ReceivedAt)
		out.ReceivedAt = &t
	}
	if full {
		out.RequestHeaders = headerJSON(a.RequestHeaders)
		out.ResponseHeaders = headerJSON(a.ResponseHeaders)
		body, enc := bodyJSON(a.ResponseBody)
		out.ResponseBody, out.ResponseBodyEncoding = &body, enc
	}
	return out
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// headerJSON is h as a JSON object (an empty one when there is none, so
// the full form always has both members).
func headerJSON(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[k] = slices.Clone(v)
	}
	return out
}

// bodyJSON gives a response excerpt as text when it is UTF-8, else in base64.
func bodyJSON(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), BodyText
	}
	return base64.StdEncoding.EncodeToString(b), BodyBase64
}

// attemptQueryParams are the query parameters of the attempt lists.
var attemptQueryParams = []string{"application", "subscription", "sink", "event_id", "event_type", "webhook_id", "outcome", "status",
	"since", "until", "limit", "cursor"}

// maxFilterValue bounds a filter's value: no id, name or type is longer.
const maxFilterValue = 256

// queryErrors collects a query's field errors.
type queryErrors []problem.FieldError

func (e *queryErrors) add(field, msg string) {
	*e = append(*e, problem.FieldError{Field: field, Message: msg})
}

// unknownParams reports query parameters that are not in known: a
// misspelt filter must not be silently ignored (it would widen the list).
func (e *queryErrors) unknownParams(q url.Values, known []string) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			e.add(k, "unknown query parameter; known: "+strings.Join(known, ", "))
		}
	}
}

// text reads a string parameter: given, it must be one non-empty value of
// at most maxFilterValue bytes.
func (e *queryErrors) text(q url.Values, name string) string {
	vs, ok := q[name]
	if !ok {
		return ""
	}
	switch v := vs[0]; {
	case len(vs) > 1:
		e.add(name, "is given more than once")
	case v == "":
		e.add(name, "must not be empty; leave it out to select all")
	case len(v) > maxFilterValue:
		e.add(name, fmt.Sprintf("is longer than %d bytes", maxFilterValue))
	default:
		return v
	}
	return ""
}

// time reads an RFC 3339 time parameter.
func (e *queryErrors) time(q url.Values, name string) time.Time {
	v := e.text(q, name)
	if v == "" {
		return time.Time{}
	}
	t, err := parseTime(v)
	if err != nil {
		e.add(name, `must be an RFC 3339 time such as "2026-01-02T15:04:05Z"`)
	}
	return t
}

// parseTime reads an RFC 3339 time (fractional seconds allowed).
func parseTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	return t.UTC(), err
}

// attemptFilter reads the filters, limit and cursor of an attempt list.
// app, when not empty, is the path's application: the list is held to
// its deliveries to its subscriptions (the attempts of the operator's
// other sinks its events reached are not its business).
func attemptFilter(r *http.Request, app string) (attempt.Filter, []problem.FieldError) {
	q := r.URL.Query()
	var errs queryErrors
	errs.unknownParams(q, attemptQueryParams)
	f := attempt.Filter{
		Application:  errs.text(q, "application"),
		Subscription: errs.text(q, "subscription"),
		Sink:         errs.text(q, "sink"),
		EventID:      errs.text(q, "event_id"),
		EventType:    errs.text(q, "event_type"),
		WebhookID:    errs.text(q, "webhook_id"),
		Cursor:       errs.text(q, "cursor"),
		Since:        errs.time(q, "since"),
		Until:        errs.time(q, "until"),
		Limit:        DefaultLimit,
	}
	if app != "" {
		if f.Application != "" && f.Application != app {
			errs.add("application", fmt.Sprintf("is %q, the path's application, here; leave it out", app))
		}
		f.Application, f.SubscriptionsOnly = app, true
	}
	if f.EventType != "" {
		if msg := subscription.CheckEventType(f.EventType); msg != "" {
			errs.add("event_type", msg)
		}
	}
	if v := errs.text(q, "outcome"); v != "" {
		if f.Outcome = attempt.Outcome(v); !f.Outcome.Valid() {
			errs.add("outcome", "must be delivered, retry or failed")
		}
	}
	if v := errs.text(q, "status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			errs.add("status", "must be an HTTP status code, 100 to 599")
		}
		f.Status = n
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		errs.add("until", "must be after since")
	}
	if v := errs.text(q, "limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			errs.add("limit", fmt.Sprintf("must be an integer between 1 and %d", MaxLimit))
		}
		f.Limit = n
	}
	return f, errs
}

// badCursor is the answer to a cursor the store did not make.
func badCursor() *problem.Problem {
	return problem.Validation("invalid query parameter", problem.FieldError{Field: "cursor",
		Message: "is not a cursor of this list; pass the next_cursor of the previous page"})
}

// listAttempts serves GET /v1/attempts and GET /v1/applications/{app}/attempts.
func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	f, errs := attemptFilter(r, app)
	if len(errs) > 0 {
		problem.Write(w, problem.Validation("invalid query parameter", errs...))
		return
	}
	if app != "" {
		if _, ok := s.application(w, r); !ok {
			return
		}
	}
	as, next, err := s.opts.Attempts.ListAttempts(r.Context(), f)
	if errors.Is(err, attempt.ErrBadCursor) {
		problem.Write(w, badCursor())
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	out := make([]AttemptJSON, 0, len(as))
	for _, a := range as {
		out = append(out, AttemptToJSON(a, false))
	}
	writeJSON(w, http.StatusOK, newList(out, next))
}

// ownAttempt tells whether a is one of app's own: a delivery to one of
// its subscriptions.
func ownAttempt(a attempt.Attempt, app string) bool {
	return a.Application == app && a.Subscription != ""
}

func attemptNotFound(id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "no attempt with id "+strconv.Quote(id))
}

// getAttempt serves GET /v1/attempts/{id} and its application-scoped
// form, where an attempt that is not a delivery to one of the
// application's subscriptions is not found.
func (s *Server) getAttempt(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("id")
	if app != "" {
		if _, ok := s.application(w, r); !ok {
			return
		}
	}
	a, err := s.opts.Attempts.GetAttempt(r.Context(), id)
	if errors.Is(err, attempt.ErrNotFound) || (err == nil && app != "" && !ownAttempt(a, app)) {
		problem.Write(w, attemptNotFound(id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, AttemptToJSON(a, true))
}
