package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/sdk"
)

// DetailedSink is implemented by a sink that can tell more of one attempt
// than its sdk.Result (an HTTP sink: the URL, the headers, the start of
// the response body). When the delivery log is on, the engine calls
// DeliverDetailed instead of Deliver for each single delivery (a sink
// whose Batch is at most 1) and records the Detail with the attempt.
//
// DeliverDetailed follows the contract of sdk.Sink.Deliver for a batch of
// one. The Detail may be nil. Its RequestHeaders are the headers as sent
// and its ResponseHeaders as received: the engine redacts both
// (attempt.Redact) before they are recorded, so a sink need not copy them.
type DetailedSink interface {
	DeliverDetailed(ctx context.Context, d sdk.Delivery) (sdk.Result, *attempt.Detail)
}

// attemptTiming is when an attempt began and how long it took.
type attemptTiming struct {
	start    time.Time
	duration time.Duration
}

// recordAttempt adds one attempt of d to the delivery log (when there is
// one): outcome is what became of it, detail what an HTTP sink told of
// it. The first attempt carries the event as the sink's queue holds it,
// for the events on record. Nothing is encoded here: the payload is the
// message's own bytes.
func (e *Engine) recordAttempt(sink string, d *sinkDelivery, at attemptTiming, outcome attempt.Outcome, res sdk.Result, detail *attempt.Detail) {
	rec := e.opts.Attempts
	if rec == nil {
		return
	}
	md := d.msg.Metadata
	a := attempt.Attempt{
		ID:           watermill.NewULID(),
		EventID:      d.ev.ID,
		EventType:    d.ev.Type,
		Sink:         sink,
		Pipeline:     d.pipeline,
		Source:       md.Get(envelope.Source),
		Application:  md.Get(envelope.Application),
		Subscription: md.Get(envelope.Subscription),
		Number:       d.attempt,
		StartedAt:    at.start,
		Duration:     at.duration,
		Outcome:      outcome,
		StatusCode:   res.StatusCode,
	}
	evApp := applicationOf(d.ev)
	if a.Application == "" {
		a.Application = evApp
	}
	if ns, err := strconv.ParseInt(md.Get(envelope.ReceivedAt), 10, 64); err == nil {
		a.ReceivedAt = time.Unix(0, ns)
	}
	if outcome != attempt.Delivered {
		a.Error = res.Reason
	}
	if detail != nil {
		a.URL = detail.URL
		a.WebhookID = detail.WebhookID
		a.RequestHeaders = attempt.Redact(detail.RequestHeaders)
		// A receiver's own credentials (Set-Cookie, a token it hands
		// back) are not kept either.
		a.ResponseHeaders = attempt.Redact(detail.ResponseHeaders)
		a.ResponseBody = detail.ResponseBody
		if len(a.ResponseBody) > attempt.MaxResponseBody {
			a.ResponseBody = a.ResponseBody[:attempt.MaxResponseBody]
		}
		if a.Error == "" && outcome != attempt.Delivered {
			a.Error = detail.Err
		}
	}
	a.Error = attempt.Truncate(a.Error, attempt.MaxErrorText)
	entry := attempt.Entry{Attempt: a}
	if d.attempt == 1 {
		entry.Event = &attempt.Event{
			ID:       d.ev.ID,
			Sink:     sink,
			Pipeline: d.pipeline,
			Source:   a.Source,
			Type:     d.ev.Type,
			// The event's own application, not the pair's: a broadcast
			// event is no one application's.
			Application: evApp,
			ReceivedAt:  a.ReceivedAt,
			Payload:     json.RawMessage(d.msg.Payload),
			Metadata:    redeliveryMetadata(md),
		}
	}
	rec.Record(entry)
}

// redeliveryMetadata is the part of a sink message's metadata that a
// redelivery of the event from the record needs again.
func redeliveryMetadata(md map[string]string) map[string]string {
	out := make(map[string]string, 3)
	for _, k := range []string{envelope.ReceivedAt, envelope.Source, envelope.Pipeline} {
		if v := md[k]; v != "" {
			out[k] = v
		}
	}
	return out
}

// applicationOf is the event's `application` attribute when it is a
// string ("" otherwise). A plain string is read without the JSON decoder.
func applicationOf(ev sdk.Event) string {
	raw, ok := ev.Extensions["application"]
	if !ok || len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	if s := raw[1 : len(raw)-1]; raw[len(raw)-1] == '"' && bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	var app string
	if json.Unmarshal(raw, &app) != nil {
		return ""
	}
	return app
}

// failedOutcome is the outcome of a failed attempt: Retry when the
// schedule has another attempt, Failed when the delivery is dead-lettered.
func failedOutcome(more bool) attempt.Outcome {
	if more {
		return attempt.Retry
	}
	return attempt.Failed
}
