// Package aggregate is the domain of the pipeline's aggregate step: the
// windows that collect events by key until they close (by time, by count,
// or early when a step has too many open), the ids their output takes, the
// default digest a window closes into, and the Store the windows live in.
//
// A window belongs to one (pipeline, sink, key): the steps of a pipeline
// run once per sink, so each sink has windows of its own. Windows and
// their events are durable (core/store keeps them, on SQLite and
// PostgreSQL); the process holds only the windows it is closing.
package aggregate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/sdk"
)

// Defaults and bounds of Spec.
const (
	// DefaultMaxEvents is max_events when left out.
	DefaultMaxEvents = 1000
	// MaxMaxEvents bounds max_events: a closing window is loaded whole.
	MaxMaxEvents = 100000
	// DefaultMaxKeys is max_keys when left out.
	DefaultMaxKeys = 10000
	// MaxKeyLen is the longest key value (in bytes) an event may have; an
	// event with a longer one is dead-lettered as invalid.
	MaxKeyLen = 512
)

// Spec is an aggregate step's configuration.
type Spec struct {
	// Key is the event member whose value groups events into windows
	// (a dotted path: "data.customer_id", "subject", "metadata.tenant");
	// "" puts every event in one window.
	Key string
	// Window is how long a window stays open after its first event.
	Window time.Duration
	// MaxEvents closes a window as soon as it holds this many events.
	MaxEvents int
	// MaxKeys caps the open windows of the step (per sink); opening one
	// more closes the oldest at once.
	MaxKeys int
}

// WithDefaults returns s with zero fields defaulted.
func (s Spec) WithDefaults() Spec {
	if s.MaxEvents <= 0 {
		s.MaxEvents = DefaultMaxEvents
	}
	if s.MaxKeys <= 0 {
		s.MaxKeys = DefaultMaxKeys
	}
	return s
}

// Path is a parsed key path.
type Path []string

// ParsePath parses a dotted key path. The first segment is an envelope
// member (id, type, source, subject, time, data, metadata) or an
// extension attribute (application, ...); data.x.y walks into the payload
// and metadata.x reads one metadata entry.
func ParsePath(p string) (Path, error) {
	if p == "" {
		return nil, nil
	}
	segs := strings.Split(p, ".")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("%q has an empty segment (write a dotted path like data.customer_id)", p)
		}
		if strings.ContainsAny(s, "[]* \t") {
			return nil, fmt.Errorf("%q: segment %q: write a dotted path of member names, like data.customer_id", p, s)
		}
	}
	switch segs[0] {
	case "id", "type", "source", "subject", "time", "datacontenttype":
		if len(segs) > 1 {
			return nil, fmt.Errorf("%q: %s is a string, it has no members", p, segs[0])
		}
	case "metadata":
		if len(segs) != 2 {
			return nil, fmt.Errorf("%q: name one metadata entry, like metadata.tenant", p)
		}
	}
	return Path(segs), nil
}

// String is the path as written.
func (p Path) String() string { return strings.Join(p, ".") }

// ErrBadKey is returned by Key for a value that cannot be a window's key:
// over MaxKeyLen bytes, or holding a NUL.
var ErrBadKey = errors.New("unusable aggregate key")

// Key is the value of the path in ev: a string as it is, any other JSON
// value as its compact JSON text; "" when the member is missing or null
// (such events share the window of the empty key).
func (p Path) Key(ev sdk.Event) (string, error) {
	if len(p) == 0 {
		return "", nil
	}
	var s string
	switch p[0] {
	case "id":
		s = ev.ID
	case "type":
		s = ev.Type
	case "source":
		s = ev.Source
	case "subject":
		s = ev.Subject
	case "datacontenttype":
		s = ev.DataContentType
	case "time":
		if !ev.Time.IsZero() {
			s = ev.Time.UTC().Format(time.RFC3339Nano)
		}
	case "metadata":
		s = ev.Metadata[p[1]]
	case "data":
		v, err := walk(ev.Data, p[1:])
		if err != nil {
			return "", err
		}
		s = v
	default:
		v, err := walk(ev.Extensions[p[0]], p[1:])
		if err != nil {
			return "", err
		}
		s = v
	}
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("%w: %s holds a NUL character", ErrBadKey, p)
	}
	if len(s) > MaxKeyLen {
		return "", fmt.Errorf("%w: %s is %d bytes, over %d", ErrBadKey, p, len(s), MaxKeyLen)
	}
	return s, nil
}

// walk follows segs into the JSON value raw and renders what it finds.
func walk(raw json.RawMessage, segs []string) (string, error) {
	raw = envelope.Member(raw, segs)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var str string
	if raw[0] == '"' && json.Unmarshal(raw, &str) == nil {
		return str, nil
	}
	// Compacted as written, not decoded: a number keeps every digit (two
	// 64-bit order ids must not meet in one float64).
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", fmt.Errorf("key value is not valid JSON: %w", err)
	}
	return buf.String(), nil
}

// Window is an open or closing window as the store keeps it.
type Window struct {
	// ID identifies the window's row (see WindowID).
	ID                  string
	Pipeline, Sink, Key string
	// Start is when the window's first event was added; End is when it
	// closes (Start + Window), or when it was closed early (max_events,
	// max_keys). Both are fixed once the window is closing, so a window
	// closed again after a crash is the same window.
	Start, End time.Time
	// Count is the number of events in it.
	Count int
	// Attempts counts the closes of the window that timed out.
	Attempts int
}

// OutputID is the id of the event a window closes into: the same for
// every close of the window (after a crash, by another instance), derived
// from the pipeline, the key and the window's start.
func (w Window) OutputID() string { return OutputID(w.Pipeline, w.Key, w.Start) }

// OutputID derives the id of a window's output event.
func OutputID(pipeline, key string, start time.Time) string {
	h := sha256.New()
	h.Write([]byte(pipeline))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(start.UnixNano(), 10)))
	return "agg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// WindowID derives the id of a window's row: its output id, told apart by
// sink (each sink of a pipeline has windows of its own).
func WindowID(pipeline, sink, key string, start time.Time) string {
	sum := sha256.Sum256([]byte(OutputID(pipeline, key, start) + "\x00" + sink))
	return "aw_" + hex.EncodeToString(sum[:16])
}

// Member is one event in a window, with what the engine needs to route
// the window's output and to dead-letter the event.
type Member struct {
	// Seq orders the window's events (1, 2, ...).
	Seq int
	// Event is the event as the steps before the aggregate step left it.
	Event sdk.Event
	// Source is the source it came from; ReceivedAt when it was received
	// (unix nanoseconds, as the queue's metadata has it).
	Source     string
	ReceivedAt int64
}

// Add is one event to add to its window.
type Add struct {
	Pipeline, Sink, Key string
	// Member identifies the event for deduplication: a source message
	// redelivered after a crash adds nothing twice.
	Member string
	Event  sdk.Event
	Source string
	// ReceivedAt is unix nanoseconds.
	ReceivedAt int64
	// Spec is the step's (for Window, MaxEvents and MaxKeys).
	Spec Spec
}

// Added tells what an Add did.
type Added struct {
	// Duplicate: the member was added before (and is in its window, or
	// its window closed already); nothing changed.
	Duplicate bool
	// Full: the window reached max_events (or a window was closed early
	// for max_keys): a window is due now, the closer should look.
	Full bool
	// Evicted counts the windows closed early for max_keys.
	Evicted int
}

// Store keeps the windows and their events. Implementations make each
// method atomic; several processes may share one store, and Claim hands a
// window to one of them at a time.
type Store interface {
	// AddToWindows adds each event to the open window of its key, opening
	// one (starting now, due now+Spec.Window) when there is none, all in
	// one transaction (nothing is added when it fails). A window takes no
	// more events once it holds Spec.MaxEvents: it is due at once; nor
	// once it is overdue. Opening a window when the (pipeline, sink) has
	// Spec.MaxKeys open closes the oldest early. Members are remembered
	// for dedupFor after they are added. The result has one Added per add.
	AddToWindows(ctx context.Context, adds []Add, dedupFor time.Duration) ([]Added, error)
	// ClaimWindows marks up to limit windows of the pipeline that are due
	// at now as closing (they take no more events), leased to owner until
	// now+lease, and returns them: windows no other owner holds a live
	// lease on. A window whose lease ran out (its owner died) is claimed
	// again, with the same start and end.
	ClaimWindows(ctx context.Context, pipeline, owner string, now time.Time, lease time.Duration, limit int) ([]Window, error)
	// WindowEvents returns a claimed window's events in the order they
	// were added.
	WindowEvents(ctx context.Context, windowID string) ([]Member, error)
	// DeleteWindow removes a closed window and its events, once its
	// output is published (or its events dead-lettered).
	DeleteWindow(ctx context.Context, windowID string) error
	// ReleaseWindow hands a claimed window back (to close again after
	// retryAt), counting one more attempt.
	ReleaseWindow(ctx context.Context, windowID, owner string, retryAt time.Time) error
	// NextDue returns when the pipeline's next window is due (ok false:
	// no window).
	NextDue(ctx context.Context, pipeline string) (due time.Time, ok bool, err error)
	// PruneDedup forgets members remembered until before now.
	PruneDedup(ctx context.Context, now time.Time) error
	// OpenWindows counts the open (not closing) windows of a pipeline.
	OpenWindows(ctx context.Context, pipeline string) (int, error)
}

// Batch is the event a window closes into without a script: its data is
// the array of the window's events (full envelopes, in the order they
// were added), and
//   - id: w.OutputID();
//   - type: "<type>.batch" when the events share a type, else the
//     longest dotted prefix they share + ".batch" (order.paid and
//     order.refunded: "order.batch"), else "batch";
//   - source: the events' source when they share one, else the pipeline;
//   - subject: the window's key ("" for none);
//   - time: the window's end;
//   - application: the events' application when they share one (the
//     subscriptions sink routes by it), else none;
//   - metadata: none.
func Batch(w Window, events []sdk.Event) (sdk.Event, error) {
	data, err := json.Marshal(events)
	if err != nil {
		return sdk.Event{}, fmt.Errorf("aggregate: encode the window's events: %w", err)
	}
	out := sdk.Event{ID: w.OutputID(), Type: batchType(events), Subject: w.Key, Time: w.End.UTC(), Data: data}
	out.Source = w.Pipeline
	if src, ok := shared(events, func(ev sdk.Event) string { return ev.Source }); ok && src != "" {
		out.Source = src
	}
	if app, ok := shared(events, func(ev sdk.Event) string { return string(ev.Extensions["application"]) }); ok && app != "" {
		out.Extensions = map[string]json.RawMessage{"application": json.RawMessage(app)}
	}
	return out, nil
}

// shared returns f's value when every event has the same one.
func shared(events []sdk.Event, f func(sdk.Event) string) (string, bool) {
	if len(events) == 0 {
		return "", false
	}
	v := f(events[0])
	for _, ev := range events[1:] {
		if f(ev) != v {
			return "", false
		}
	}
	return v, true
}

// batchType is the type of a default batch (see Batch).
func batchType(events []sdk.Event) string {
	if len(events) == 0 {
		return "batch"
	}
	prefix := strings.Split(events[0].Type, ".")
	for _, ev := range events[1:] {
		segs := strings.Split(ev.Type, ".")
		n := 0
		for n < len(prefix) && n < len(segs) && prefix[n] == segs[n] {
			n++
		}
		prefix = prefix[:n]
	}
	if len(prefix) == 0 || (len(prefix) == 1 && prefix[0] == "") {
		return "batch"
	}
	return strings.Join(prefix, ".") + ".batch"
}
