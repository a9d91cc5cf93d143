package sdk

import (
	"errors"
	"fmt"
	"strings"
)

// Limits hookbus applies to the events a source hands it: the same for a
// plugin source's Emit as for HTTP ingest. A batch over a limit is
// rejected whole (a *RejectedError naming the limit).
const (
	// MaxBatchEvents is the most events in one Emit (or one HTTP ingest
	// request). Split larger batches.
	MaxBatchEvents = 1000
	// MaxEventBytes is the largest event, as its JSON envelope, in bytes
	// (1 MiB). HTTP ingest applies it to the whole request body.
	MaxEventBytes = 1 << 20
)

// ErrRejected is wrapped by the error Emit returns when hookbus refused the
// batch because of its events: an event without a type, one over
// MaxEventBytes, more than MaxBatchEvents events. Nothing of the batch was
// queued, and offering the same events again gets the same answer: drop or
// fix the events the *RejectedError names and emit the rest (see
// RejectedError.Remaining). Unlike ErrNotQueued it is not a transient failure.
var ErrRejected = errors.New("hookbus rejected the batch")

// Rejection is one reason hookbus refused a batch.
type Rejection struct {
	// Index is the event's position in the batch; -1 when the problem is the
	// batch as a whole (more than MaxBatchEvents events).
	Index int
	// ID is the event's id, when it has one.
	ID string
	// Field is the envelope member at fault, such as "type" or
	// "data.total"; "" when the problem is not one member's (the event is too
	// large, or not a JSON object).
	Field string
	// Reason says what is wrong.
	Reason string
}

func (r Rejection) String() string {
	var b strings.Builder
	if r.Index < 0 {
		b.WriteString("batch")
	} else {
		fmt.Fprintf(&b, "event %d", r.Index)
		if r.ID != "" {
			fmt.Fprintf(&b, " (id %q)", r.ID)
		}
	}
	if r.Field != "" {
		fmt.Fprintf(&b, ": field %q", r.Field)
	}
	b.WriteString(": ")
	b.WriteString(r.Reason)
	return b.String()
}

// RejectedError is the error of a batch hookbus refused for its events.
// errors.Is(err, ErrRejected) holds for it.
type RejectedError struct {
	// Rejections lists every problem found, in batch order.
	Rejections []Rejection
}

// maxShownRejections bounds the problems Error spells out.
const maxShownRejections = 5

func (e *RejectedError) Error() string {
	var b strings.Builder
	b.WriteString(ErrRejected.Error())
	b.WriteString(" (nothing of it was queued): ")
	for i, r := range e.Rejections {
		if i == maxShownRejections {
			fmt.Fprintf(&b, "; and %d more", len(e.Rejections)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// Remaining returns the events of batch (the batch Emit refused) that no
// rejection names, to emit again without the bad ones. It returns nil when
// the batch as a whole was refused (split it: it holds more than
// MaxBatchEvents events).
func (e *RejectedError) Remaining(batch []Event) []Event {
	bad := make(map[int]bool, len(e.Rejections))
	for _, r := range e.Rejections {
		if r.Index < 0 {
			return nil
		}
		bad[r.Index] = true
	}
	out := make([]Event, 0, len(batch))
	for i, ev := range batch {
		if !bad[i] {
			out = append(out, ev)
		}
	}
	return out
}

// CheckBatch returns a *RejectedError naming every problem hookbus refuses
// a batch for, or nil: more than MaxBatchEvents events, an event without a
// type, a number scripts cannot read (CheckNumbers). hookbus checks every
// source's batches with it (and the size of each event's envelope, which
// only the host sees); a source may call it to drop bad events before Emit.
func CheckBatch(events []Event) error {
	var rs []Rejection
	if len(events) > MaxBatchEvents {
		rs = append(rs, BatchTooLarge(len(events)))
	}
	for i := range events {
		rs = append(rs, checkEvent(i, &events[i])...)
	}
	if len(rs) == 0 {
		return nil
	}
	return &RejectedError{Rejections: rs}
}

// BatchTooLarge is the rejection of a batch of n events, over MaxBatchEvents.
func BatchTooLarge(n int) Rejection {
	return Rejection{Index: -1, Reason: fmt.Sprintf("%d events in one batch; the limit is %d (sdk.MaxBatchEvents): split it", n, MaxBatchEvents)}
}

// EventTooLarge is the rejection of event i, whose envelope is size bytes,
// over MaxEventBytes.
func EventTooLarge(i int, id string, size int) Rejection {
	return Rejection{Index: i, ID: id, Reason: fmt.Sprintf("the event is %d bytes as JSON; the limit is %d (sdk.MaxEventBytes)", size, MaxEventBytes)}
}

func checkEvent(i int, ev *Event) []Rejection {
	var rs []Rejection
	if ev.Type == "" {
		rs = append(rs, Rejection{Index: i, ID: ev.ID, Field: "type", Reason: "required"})
	}
	if err := ev.CheckNumbers(); err != nil {
		r := Rejection{Index: i, ID: ev.ID, Reason: err.Error()}
		var fe *FieldError
		if errors.As(err, &fe) {
			r.Field, r.Reason = fe.Field, fe.Err.Error()
		}
		rs = append(rs, r)
	}
	return rs
}
