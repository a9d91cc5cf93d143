package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/problem"
)

// Bounds of resend and recover requests.
const (
	// MaxResendEvents is the most event ids one resend takes.
	MaxResendEvents = 1000
	// DefaultRecoverLimit and MaxRecoverLimit bound the deliveries one
	// recover call looks at (a page; the next call goes on from its cursor).
	DefaultRecoverLimit = 500
	MaxRecoverLimit     = 1000
)

// ResendJSON is the answer of POST …/resend.
type ResendJSON struct {
	Queued int `json:"queued"`
}

// RecoverJSON is the answer of POST …/recover: one page of a recover.
type RecoverJSON struct {
	// Queued counts the deliveries queued again by this call; Scanned
	// those it looked at.
	Queued  int `json:"queued"`
	Scanned int `json:"scanned"`
	// NextCursor, when not null, is the cursor to send (with the same
	// selection) for the next page; null when the range is done.
	NextCursor *string `json:"next_cursor"`
}

// checkSink names a field error when sink is not configured.
func (s *Server) checkSink(o *object, field, sink string) {
	if sink != "" && s.opts.SinkKnown != nil && !s.opts.SinkKnown(sink) {
		o.fail(field, "no sink named "+strconv.Quote(sink)+" is configured")
	}
}

// resendError answers a Resender's error: unknown events, subscriptions
// or sinks are 404 naming them; a resend that cannot be done as asked
// (attempt.ErrRefused: a disabled subscription, an event type it does not
// take) 409 saying what to change; anything else internal.
func (s *Server) resendError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, attempt.ErrNotFound):
		problem.Write(w, problem.New(http.StatusNotFound, err.Error()))
	case errors.Is(err, attempt.ErrRefused):
		problem.Write(w, problem.New(http.StatusConflict, err.Error()))
	case errors.Is(err, attempt.ErrBadCursor):
		problem.Write(w, problem.Validation("invalid recover", problem.FieldError{Field: "cursor",
			Message: "is not a cursor of this recover; pass the next_cursor of the previous call"}))
	default:
		s.internal(w, err)
	}
}

// resend serves POST /v1/resend and POST /v1/applications/{app}/resend
// (where the events and the subscription must be the application's, and
// only a subscription may be named).
func (s *Server) resend(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	o, p := readObject(w, r, false, "event_ids", "subscription", "sink")
	if p != nil {
		problem.Write(w, p)
		return
	}
	req := attempt.ResendRequest{Application: app}
	if o.get("event_ids", &req.EventIDs, "an array of event ids") {
		switch n := len(req.EventIDs); {
		case n == 0:
			o.fail("event_ids", "must name at least one event")
		case n > MaxResendEvents:
			o.fail("event_ids", fmt.Sprintf("has %d ids; at most %d per request", n, MaxResendEvents))
		}
		seen := make(map[string]int, len(req.EventIDs))
		for i, id := range req.EventIDs {
			field := fmt.Sprintf("event_ids[%d]", i)
			if id == "" || len(id) > maxFilterValue {
				o.fail(field, fmt.Sprintf("must be an event id of 1 to %d bytes", maxFilterValue))
			} else if j, ok := seen[id]; ok {
				o.fail(field, fmt.Sprintf("repeats event_ids[%d]", j))
			}
			seen[id] = i
		}
	} else if !o.has("event_ids") {
		o.fail("event_ids", "is required: the ids of the events to send again")
	}
	o.get("subscription", &req.Subscription, "a subscription id")
	o.get("sink", &req.Sink, "a sink name")
	switch {
	case app != "" && req.Sink != "":
		o.fail("sink", "an application resends to one of its subscriptions; give subscription instead")
	case req.Subscription != "" && req.Sink != "":
		o.fail("sink", "give subscription or sink, not both")
	case req.Subscription == "" && req.Sink == "":
		o.fail("subscription", "give subscription or sink: where the events go again")
	}
	s.checkSink(o, "sink", req.Sink)
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid resend", o.errs...))
		return
	}
	if app != "" {
		if _, ok := s.application(w, r); !ok {
			return
		}
	}
	n, err := s.opts.Resender.Resend(r.Context(), req)
	if err != nil {
		s.resendError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, ResendJSON{Queued: n})
}

// recoverDeliveries serves POST /v1/recover and POST
// /v1/applications/{app}/recover (held to that application, and to one of
// its subscriptions): one page of the deliveries in range.
func (s *Server) recoverDeliveries(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	o, p := readObject(w, r, false, "subscription", "application", "sink", "since", "until", "outcome", "limit", "cursor")
	if p != nil {
		problem.Write(w, p)
		return
	}
	q := attempt.RecoverQuery{Limit: DefaultRecoverLimit}
	o.get("subscription", &q.Subscription, "a subscription id")
	o.get("application", &q.Application, "an application id")
	o.get("sink", &q.Sink, "a sink name")
	if app != "" {
		if q.Application != "" && q.Application != app {
			o.fail("application", fmt.Sprintf("is %q, the path's application, here; leave it out", app))
		}
		q.Application = app
	}
	switch {
	case app != "" && q.Subscription == "":
		// An application recovers its own deliveries, to its subscriptions,
		// not those of the operator's other sinks its events reached.
		o.fail("subscription", "an application recovers the deliveries of one of its subscriptions; give subscription")
	case q.Subscription == "" && q.Application == "" && q.Sink == "":
		o.fail("subscription", "give subscription, application or sink: whose deliveries to recover")
	}
	if app != "" && q.Sink != "" {
		// Which sinks the operator runs is not an application's business.
		o.fail("sink", "an application recovers by subscription; leave sink out")
	} else {
		s.checkSink(o, "sink", q.Sink)
	}
	q.Since = o.time("since")
	if q.Since.IsZero() && !o.failed("since") {
		o.fail("since", "is required: the start of the range (RFC 3339), by the events' ingest time")
	}
	q.Until = o.time("until")
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		o.fail("until", "must be after since")
	}
	outcome := "failed"
	if o.get("outcome", &outcome, `"failed" or "all"`) {
		switch outcome {
		case "failed":
		case "all":
			q.All = true
		default:
			o.fail("outcome", `must be "failed" (the deliveries whose last attempt failed) or "all"`)
		}
	}
	if o.get("limit", &q.Limit, "an integer") && (q.Limit < 1 || q.Limit > MaxRecoverLimit) {
		o.fail("limit", fmt.Sprintf("must be between 1 and %d", MaxRecoverLimit))
	}
	o.get("cursor", &q.Cursor, "a string (the next_cursor of the previous call)")
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid recover", o.errs...))
		return
	}
	if app != "" {
		if _, ok := s.application(w, r); !ok {
			return
		}
	}
	res, err := s.opts.Resender.Recover(r.Context(), q)
	if err != nil {
		s.resendError(w, err)
		return
	}
	out := RecoverJSON{Queued: res.Queued, Scanned: res.Scanned}
	if res.Cursor != "" {
		out.NextCursor = &res.Cursor
	}
	writeJSON(w, http.StatusAccepted, out)
}

// time decodes member k as an RFC 3339 time (zero when absent or null).
func (o *object) time(k string) time.Time {
	var v string
	if !o.get(k, &v, `an RFC 3339 time such as "2026-01-02T15:04:05Z"`) || v == "" {
		return time.Time{}
	}
	t, err := parseTime(v)
	if err != nil {
		o.fail(k, `must be an RFC 3339 time such as "2026-01-02T15:04:05Z"`)
	}
	return t
}

// failed reports whether member k already has a field error.
func (o *object) failed(k string) bool {
	for _, e := range o.errs {
		if e.Field == k {
			return true
		}
	}
	return false
}
