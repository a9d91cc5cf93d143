package operational

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

func TestID(t *testing.T) {
	t.Parallel()
	a := ID(DeliveryExhausted, "shop", "orders", "partner", "", "e1", "")
	if a != ID(DeliveryExhausted, "shop", "orders", "partner", "", "e1", "") {
		t.Error("the same parts gave two ids")
	}
	if !regexp.MustCompile(`^op_[0-9a-f]{32}$`).MatchString(a) {
		t.Errorf("id %q is not op_ and 32 hex digits", a)
	}
	for _, other := range []string{
		ID(DeliveryFailing, "shop", "orders", "partner", "", "e1", ""),
		ID(DeliveryExhausted, "shop", "orders", "partner", "", "e1", "resend/1"),
		ID(DeliveryExhausted, "shoporders", "", "partner", "", "e1", ""),
	} {
		if other == a {
			t.Errorf("different parts gave the same id %s", a)
		}
	}
}

type recorder struct {
	source string
	events []sdk.Event
	err    error
}

func (r *recorder) Publish(_ context.Context, source string, evs []sdk.Event) error {
	if r.err != nil {
		return r.err
	}
	r.source = source
	r.events = append(r.events, evs...)
	return nil
}

// An Emitter publishes into its source, with the id, subject and data it
// is given; it emits nothing when nil, without a source, or in a Quiet
// context, and its settings change while it runs.
func TestEmitter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var none *Emitter
	if none.Enabled(ctx) || none.Emit(ctx, DeliveryFailing, "op_1", "sub_1", Data{}) != nil || none.FailingAfter() != DefaultFailingAfter {
		t.Error("a nil Emitter is not off")
	}
	pub := &recorder{}
	e := NewEmitter(pub, Settings{}, nil)
	if err := e.Emit(ctx, DeliveryFailing, "op_1", "sub_1", Data{Sink: "s"}); err != nil || len(pub.events) != 0 {
		t.Fatalf("without a source: %v, %d events", err, len(pub.events))
	}
	e.Configure(Settings{Source: "ops", FailingAfter: 3})
	if e.FailingAfter() != 3 || e.Source() != "ops" {
		t.Errorf("settings = %q %d", e.Source(), e.FailingAfter())
	}
	if err := e.Emit(Quiet(ctx), DeliveryFailing, "op_1", "sub_1", Data{Sink: "s"}); err != nil || len(pub.events) != 0 {
		t.Fatalf("in a quiet context: %v, %d events", err, len(pub.events))
	}
	if err := e.Emit(ctx, DeliveryFailing, "op_2", "sub_1", Data{Sink: "s", Subscription: "sub_1", Attempts: 3}); err != nil {
		t.Fatal(err)
	}
	if len(pub.events) != 1 || pub.source != "ops" {
		t.Fatalf("published %d events into %q", len(pub.events), pub.source)
	}
	ev := pub.events[0]
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	if ev.ID != "op_2" || ev.Type != DeliveryFailing || ev.Source != "ops" || ev.Subject != "sub_1" || ev.Time.IsZero() ||
		d["sink"] != "s" || d["subscription"] != "sub_1" || d["attempts"] != 3.0 || d["event_id"] != nil || d["failing_since"] != nil {
		t.Errorf("event = %+v, data %v", ev, d)
	}
	pub.err = errors.New("queue down")
	if err := e.Emit(ctx, DeliveryFailing, "op_3", "sub_1", Data{}); !errors.Is(err, pub.err) {
		t.Errorf("a failed publish: %v", err)
	}
}
