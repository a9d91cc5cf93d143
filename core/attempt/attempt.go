// Package attempt is hookbus' delivery-log domain: every delivery attempt
// of every sink (Attempt), the events kept on record so they can be looked
// at and sent again (Event), the state of each delivery of an event to a
// sink or subscription (Delivery), the figures operators ask for (Stats),
// the Store interface that keeps them, and the Writer that batches the
// log off the delivery path.
//
// It is a leaf: it imports no engine package (pipeline, store, api, app,
// the queue drivers). The engine records attempts through a Recorder, the
// store implements Store, the API and the CLI read through it.
package attempt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome is what became of one attempt. Its values are stored and shown
// by the API: they never change.
type Outcome string

// The outcomes of an attempt.
const (
	// Delivered: the endpoint accepted the event (a 2xx for webhooks).
	Delivered Outcome = "delivered"
	// Retry: the attempt failed and another one is scheduled.
	Retry Outcome = "retry"
	// Failed: the attempt failed and no other follows (a permanent
	// failure, or the last attempt of the schedule): the event was
	// dead-lettered.
	Failed Outcome = "failed"
)

// Valid tells whether o is one of the outcomes.
func (o Outcome) Valid() bool { return o == Delivered || o == Retry || o == Failed }

// MaxResponseBody is how much of a response body an attempt keeps.
const MaxResponseBody = 4 << 10

// MaxErrorText is how much of an attempt's error text is kept.
const MaxErrorText = 1 << 10

// Attempt is one delivery attempt of one event to one sink (and, for the
// subscriptions sink, one subscription).
type Attempt struct {
	// ID is unique per attempt: a ULID, so that ids sort by the time they
	// were made (lists are newest first by ID).
	ID        string
	EventID   string
	EventType string
	Sink      string
	Pipeline  string
	Source    string
	// Application and Subscription are set for a delivery of the
	// subscriptions sink (or of an event that names an application).
	Application  string
	Subscription string
	// Number is the attempt's number, 1 for the first.
	Number int
	// StartedAt is when the attempt began; Duration how long it took.
	StartedAt time.Time
	Duration  time.Duration
	// ReceivedAt is when hookbus accepted the event (zero when unknown):
	// StartedAt+Duration-ReceivedAt of a delivered attempt is the
	// event's delay.
	ReceivedAt time.Time
	Outcome    Outcome
	// StatusCode is the response status (0: no response).
	StatusCode int
	// Error says why the attempt failed ("" when delivered), at most
	// MaxErrorText bytes.
	Error string
	// URL is where the request went (webhook sinks and subscriptions).
	URL string
	// WebhookID is the request's webhook-id header.
	WebhookID string
	// RequestHeaders are the headers sent, with the values of headers
	// that may carry credentials redacted (Redact).
	RequestHeaders http.Header
	// ResponseHeaders are the response's headers.
	ResponseHeaders http.Header
	// ResponseBody is the start of the response body, at most
	// MaxResponseBody bytes.
	ResponseBody []byte
}

// Delay is the time from the event's ingest to the end of this attempt
// (zero when ReceivedAt is unknown).
func (a *Attempt) Delay() time.Duration {
	if a.ReceivedAt.IsZero() {
		return 0
	}
	return max(0, a.StartedAt.Add(a.Duration).Sub(a.ReceivedAt))
}

// Detail is what a sink that speaks HTTP tells about one attempt beyond
// its sdk.Result: the engine adds it to the attempt it records.
type Detail struct {
	URL             string
	WebhookID       string
	RequestHeaders  http.Header
	ResponseHeaders http.Header
	ResponseBody    []byte
	// Err is the transport error text when no response arrived.
	Err string
}

// Event is an event on record: the payload one sink was handed (after
// its pipeline's steps), kept for the event retention so that it can be
// looked at and sent again. An event that reached two sinks has two
// records, one per sink.
type Event struct {
	ID          string
	Sink        string
	Pipeline    string
	Source      string
	Type        string
	Application string
	ReceivedAt  time.Time
	// Payload is the event envelope as JSON, as the sink's queue held it.
	Payload json.RawMessage
	// Metadata is the queue metadata the sink's message carried that a
	// redelivery needs again (ingest time, source, pipeline), by key.
	Metadata map[string]string
}

// Entry is what the engine records per attempt: the attempt and, with the
// first attempt of a delivery (or any: the store keeps the first), the
// event on record.
type Entry struct {
	Attempt Attempt
	// Event, when not nil, is kept on record (once per event and sink).
	Event *Event
}

// Recorder takes attempts as they happen. Record must not block: the
// engine calls it on the delivery path (Writer queues and writes in
// batches).
type Recorder interface {
	Record(e Entry)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(e Entry)

// Record calls f.
func (f RecorderFunc) Record(e Entry) { f(e) }

// DeliveryKey names one delivery: an event to a sink and, for the
// subscriptions sink, one subscription.
type DeliveryKey struct {
	EventID      string
	Sink         string
	Subscription string
}

// Delivery is the state of one delivery, kept beside the events on
// record: its last outcome tells recover which ones failed.
type Delivery struct {
	DeliveryKey
	Application string
	EventType   string
	ReceivedAt  time.Time
	// Attempts counts the attempts recorded.
	Attempts    int
	LastOutcome Outcome
	LastAttempt time.Time
	// Queued is set when a resend or recover queued the delivery again
	// and no attempt of it has been recorded since: a second recover does
	// not queue it once more.
	Queued bool
	// QueuedAt, given to MarkQueued, is when the redelivery was published
	// (taken before publishing; zero: when MarkQueued runs). The mark
	// holds only while no attempt started after it: an attempt of the
	// redelivery recorded before the mark (a fast endpoint) does not leave
	// the delivery marked queued for good.
	QueuedAt time.Time
}

// Filter selects attempts. Zero fields select everything.
type Filter struct {
	Application  string
	Subscription string
	Sink         string
	EventID      string
	EventType    string
	// WebhookID selects the attempts of requests with this webhook-id:
	// every event a batch carried has an attempt with the batch's.
	WebhookID string
	Outcome   Outcome
	// Status, when not zero, is the exact response status.
	Status int
	// Since and Until bound StartedAt: Since <= started < Until.
	Since, Until time.Time
	// SubscriptionsOnly keeps only the attempts of deliveries to a
	// subscription (Subscription set): what an application's own view
	// shows, without the attempts of the operator's other sinks that its
	// events also reached.
	SubscriptionsOnly bool
	// Limit is the page size (the store caps it); Cursor the position a
	// previous page ended at.
	Limit  int
	Cursor string
}

// Scope names what figures are about: one subscription, one
// application (all its subscriptions), or a sink. When several are set
// the narrowest wins: Subscription, then Application, then Sink.
type Scope struct {
	Sink         string
	Subscription string
	// Application scopes the figures to the deliveries to the
	// application's subscriptions (attempts with both Application and
	// Subscription set): not the attempts of other sinks its events
	// reached, which are the operator's.
	Application string
}

// Point is one step of a Series: the figures of the attempts started in
// [Start, Start+step).
type Point struct {
	Start time.Time
	// Attempts = Delivered + Retried + Failed.
	Attempts, Delivered, Retried, Failed int64
	// DelayP99 is the 99th percentile of the time from ingest to the end
	// of the step's delivered attempts (0 when none was delivered).
	DelayP99 time.Duration
}

// Stats are the figures of a Scope over a window.
type Stats struct {
	Window time.Duration
	// Attempts = Delivered + Retried + Failed.
	Attempts, Delivered, Retried, Failed int64
	// SuccessRate is Delivered / Attempts (0 with no attempt): the share
	// of attempts that succeeded.
	SuccessRate float64
	// DeliverySuccessRate is Delivered / (Delivered + Failed): the share
	// of deliveries that ended (delivered or given up) that were delivered.
	DeliverySuccessRate float64
	// LatencyP50 and LatencyP99 are attempt durations; DelayP50 and
	// DelayP99 the time from ingest to a delivered attempt's end.
	LatencyP50, LatencyP99 time.Duration
	DelayP50, DelayP99     time.Duration
	// OldestWaiting is the ingest time of the oldest event whose last
	// attempt in this scope was a retry (zero when none waits).
	OldestWaiting time.Time
}

// RecoverQuery selects the deliveries a recover sends again.
type RecoverQuery struct {
	// One of Subscription, Application or Sink, or several (all apply).
	Application  string
	Subscription string
	Sink         string
	// Since and Until bound the events' ingest time: Since <= t < Until
	// (Until zero: now).
	Since, Until time.Time
	// All selects every delivery in range; otherwise only those whose
	// last outcome is Failed.
	All bool
	// Limit and Cursor page through the matches.
	Limit  int
	Cursor string
}

// Errors of a Store.
var (
	ErrNotFound  = errors.New("not found")
	ErrBadCursor = errors.New("invalid page cursor")
	// ErrRefused: a resend names what exists but cannot be done as asked
	// (a disabled subscription, an event type it does not take, a sink
	// to choose); the error's text says what to change.
	ErrRefused = errors.New("refused")
)

// Store keeps the delivery log. Implementations are safe for concurrent
// use.
type Store interface {
	// WriteAttempts records a batch of entries in one transaction: the
	// attempts, the events on record (an event already on record for its
	// sink is kept as it is), each delivery's state and the figures
	// Stats reads. Writing an attempt ID again is not an error and
	// changes nothing.
	WriteAttempts(ctx context.Context, entries []Entry) error
	// ListAttempts returns the attempts f selects, newest first, and the
	// cursor of the next page ("" at the end).
	ListAttempts(ctx context.Context, f Filter) ([]Attempt, string, error)
	// GetAttempt returns one attempt, or ErrNotFound.
	GetAttempt(ctx context.Context, id string) (Attempt, error)
	// GetEvent returns the records of event id (one per sink it reached),
	// or ErrNotFound.
	GetEvent(ctx context.Context, id string) ([]Event, error)
	// Stats computes the figures of scope over the window that ends at now.
	Stats(ctx context.Context, scope Scope, window time.Duration) (Stats, error)
	// Series returns the figures of scope over the window that ends at
	// now, step by step: a step of a minute for windows up to an hour, of
	// an hour above. Every step is present (zeros where nothing
	// happened), oldest first; the last is the step now is in, so far.
	// A window of one hour has 60 points, of 24 hours 24, of 7 days 168.
	Series(ctx context.Context, scope Scope, window time.Duration) ([]Point, error)
	// OldestWaiting returns, per sink, the ingest time of the oldest event
	// whose last attempt was a retry.
	OldestWaiting(ctx context.Context) (map[string]time.Time, error)
	// Deliveries returns the deliveries q selects that are not Queued,
	// oldest event first, with their events on record, and the cursor
	// of the next page.
	Deliveries(ctx context.Context, q RecoverQuery) ([]Delivery, []Event, string, error)
	// MarkQueued marks deliveries as queued again (Delivery.Queued) and
	// returns those it marked: a key already queued is left out, so two
	// recovers never both queue one delivery. A key with no state yet (a
	// resend to a subscription that never had the event) is created,
	// queued, and returned.
	MarkQueued(ctx context.Context, keys []Delivery) ([]DeliveryKey, error)
	// Prune deletes up to batch events on record (with their deliveries)
	// received before eventsBefore and up to batch attempts started before
	// attemptsBefore, and says how many rows went.
	Prune(ctx context.Context, eventsBefore, attemptsBefore time.Time, batch int) (int, error)
}

// Redact returns a copy of h in which the values of headers that may
// carry credentials (Authorization, cookies, API keys, tokens, secrets)
// read "[redacted]". The signature headers are kept: they prove nothing
// without the secret.
func Redact(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		if Sensitive(k) {
			out[k] = []string{"[redacted]"}
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Sensitive reports whether a header of that name may carry a credential
// (what Redact hides).
func Sensitive(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	case "webhook-signature", "webhook-id", "webhook-timestamp":
		return false
	}
	for _, w := range []string{"token", "secret", "key", "auth", "pass", "pwd", "credential", "jwt", "session", "signature", "cookie"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-4 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}

// ResendRequest asks for events on record to be delivered again now.
type ResendRequest struct {
	EventIDs []string
	// Exactly one of Subscription and Sink: a subscription gets the event
	// as a new delivery of its own (attempt 1, the same webhook-id); a
	// sink gets it on its topic (a subscriptions sink fans it out again).
	Subscription string
	Sink         string
	// Application, when set, is the caller's application (an application
	// token): the subscription and the events must be its own, or the
	// request fails with ErrNotFound.
	Application string
}

// RecoverResult is what one call of Recover did.
type RecoverResult struct {
	// Queued counts the deliveries queued again; Scanned the deliveries
	// looked at (queued or skipped because already queued).
	Queued, Scanned int
	// Cursor, when not empty, is where the next call goes on: a recover
	// of many events is a series of calls (the CLI shows their progress).
	Cursor string
}

// Resender queues deliveries again from the events on record.
type Resender interface {
	// Resend queues each event of r once and says how many deliveries
	// were queued. Unknown events, subscriptions or sinks fail with an
	// error wrapping ErrNotFound that names them.
	Resend(ctx context.Context, r ResendRequest) (int, error)
	// Recover queues again one page (q.Limit) of the deliveries q selects
	// that are not already queued (Store.MarkQueued), so running the same
	// recover twice queues each delivery once.
	Recover(ctx context.Context, q RecoverQuery) (RecoverResult, error)
}

// Validate tells whether e can be kept: its attempt has an ID, an event
// ID, a sink, a number of at least 1, a start time and one of the
// outcomes; its event, when there is one, is the attempt's event and
// sink (or leaves them empty). The error names the field.
func (e *Entry) Validate() error {
	a := &e.Attempt
	switch {
	case a.ID == "":
		return errors.New("attempt.id is empty")
	case a.EventID == "":
		return fmt.Errorf("attempt %s: event_id is empty", a.ID)
	case a.Sink == "":
		return fmt.Errorf("attempt %s: sink is empty", a.ID)
	case a.Number < 1:
		return fmt.Errorf("attempt %s: number is %d, not at least 1", a.ID, a.Number)
	case a.StartedAt.IsZero():
		return fmt.Errorf("attempt %s: started_at is not set", a.ID)
	case !a.Outcome.Valid():
		return fmt.Errorf("attempt %s: outcome %q is not one of delivered, retry, failed", a.ID, a.Outcome)
	}
	if ev := e.Event; ev != nil {
		if ev.ID != "" && ev.ID != a.EventID {
			return fmt.Errorf("attempt %s: event.id %q is not the attempt's event_id %q", a.ID, ev.ID, a.EventID)
		}
		if ev.Sink != "" && ev.Sink != a.Sink {
			return fmt.Errorf("attempt %s: event.sink %q is not the attempt's sink %q", a.ID, ev.Sink, a.Sink)
		}
		// Kept as text: JSON in UTF-8 (PostgreSQL refuses anything else).
		if len(ev.Payload) > 0 && (!json.Valid(ev.Payload) || !utf8.Valid(ev.Payload)) {
			return fmt.Errorf("attempt %s: event.payload is not JSON in UTF-8", a.ID)
		}
	}
	return nil
}
