package deadletter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/sdk"
)

// publisher records what Replay publishes.
type publisher struct {
	topic string
	msgs  []*message.Message
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	p.topic, p.msgs = topic, append(p.msgs, msgs...)
	return nil
}

func TestReplay(t *testing.T) {
	ev := sdk.Event{ID: "ev1", Type: "order.paid", Data: []byte(`{"n":1}`)}
	for _, tc := range []struct {
		name      string
		dl        DeadLetter
		topic     string // "" = not replayable
		viaSteps  bool
		wantError error
	}{
		{"permanent goes to its sink", DeadLetter{ID: "d1", Kind: KindPermanent, Sink: "partner", Pipeline: "p", Source: "shop"}, envelope.SinkTopic("partner"), false, nil},
		{"exhausted goes to its sink", DeadLetter{ID: "d2", Kind: KindExhausted, Sink: "partner", Pipeline: "p"}, envelope.SinkTopic("partner"), false, nil},
		{"poison of a sink topic goes to its sink", DeadLetter{ID: "d3", Kind: KindPoison, Reason: "poison: delivered 11 times", Sink: "partner", Pipeline: "p", Source: "shop"}, envelope.SinkTopic("partner"), false, nil},
		{"script goes through the steps", DeadLetter{ID: "d4", Kind: KindScript, Sink: "partner", Pipeline: "p", Source: "shop"}, envelope.SourceTopic("shop"), true, nil},
		{"poison before the steps goes through them", DeadLetter{ID: "d5", Kind: KindPoison, Reason: ReasonPoisonBeforeSteps + ": delivered 11 times", Sink: "partner", Pipeline: "p", Source: "shop"}, envelope.SourceTopic("shop"), true, nil},
		{"script without a source", DeadLetter{ID: "d6", Kind: KindScript, Sink: "partner", Pipeline: "p"}, "", false, ErrNotReplayable},
		{"no sink", DeadLetter{ID: "d7", Kind: KindInvalid, Pipeline: "p", Source: "shop"}, "", false, ErrNotReplayable},
		{"a subscription's goes back to it only", DeadLetter{ID: "d8", Kind: KindExhausted, Sink: "partners", Pipeline: "p", Source: "shop", Application: "app_1", Subscription: "sub_1"}, envelope.DeliveriesTopic("partners"), false, nil},
		{"a subscription's filter error goes back to it, not through the steps", DeadLetter{ID: "d9", Kind: KindScript, Sink: "partners", Pipeline: "p", Source: "shop", Application: "app_1", Subscription: "sub_1"}, envelope.DeliveriesTopic("partners"), false, nil},
		{"discarded", DeadLetter{ID: "d10", Kind: KindDiscarded, Reason: "subscription deleted", Sink: "partners", Pipeline: "p", Source: "shop", Application: "app_1", Subscription: "sub_1"}, "", false, ErrNotReplayable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dl.Event = ev
			var p publisher
			err := Replay(context.Background(), &p, tc.dl)
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) || len(p.msgs) != 0 {
					t.Fatalf("err = %v, published %d; want %v and nothing published", err, len(p.msgs), tc.wantError)
				}
				return
			}
			if err != nil || p.topic != tc.topic || len(p.msgs) != 1 {
				t.Fatalf("err = %v, topic %q, %d messages; want topic %q, 1 message", err, p.topic, len(p.msgs), tc.topic)
			}
			m := p.msgs[0]
			md := m.Metadata
			if md.Get(envelope.Sink) != tc.dl.Sink || md.Get(envelope.Pipeline) != tc.dl.Pipeline || md.Get(envelope.Source) != tc.dl.Source ||
				md.Get(envelope.DedupID) != "replay/"+tc.dl.ID || md.Get(envelope.ReceivedAt) == "" {
				t.Fatalf("metadata = %v", md)
			}
			if md.Get(envelope.Application) != tc.dl.Application || md.Get(envelope.Subscription) != tc.dl.Subscription {
				t.Fatalf("target metadata = %v, want application %q subscription %q", md, tc.dl.Application, tc.dl.Subscription)
			}
			if got := md.Get(envelope.ReplayPipeline) != "" && md.Get(envelope.ReplaySink) == tc.dl.Sink; got != tc.viaSteps {
				t.Fatalf("marked for the pipeline's steps = %v, want %v (metadata %v)", got, tc.viaSteps, md)
			}
			var back sdk.Event
			if err := back.UnmarshalJSON(m.Payload); err != nil || back.ID != "ev1" || string(back.Data) != `{"n":1}` {
				t.Fatalf("payload %s: %v", m.Payload, err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	m := message.NewMessage("dl-1", []byte(`{"id":"ev1","type":"order.paid","data":{"n":1}}`))
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	m.Metadata.Set(envelope.Sink, "partner")
	m.Metadata.Set(envelope.Pipeline, "p")
	m.Metadata.Set(envelope.Source, "shop")
	m.Metadata.Set(envelope.Reason, "HTTP 400")
	m.Metadata.Set(envelope.ReasonKind, string(KindPermanent))
	m.Metadata.Set(envelope.Attempts, "3")
	m.Metadata.Set(envelope.Application, "app_1")
	m.Metadata.Set(envelope.Subscription, "sub_1")
	m.Metadata.Set(envelope.DeadAt, at.Format(time.RFC3339Nano))
	dl, err := Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if dl.ID != "dl-1" || dl.Sink != "partner" || dl.Pipeline != "p" || dl.Source != "shop" || dl.Reason != "HTTP 400" ||
		dl.Application != "app_1" || dl.Subscription != "sub_1" ||
		dl.Kind != KindPermanent || dl.Attempts != 3 || !dl.DeadAt.Equal(at) || dl.Event.ID != "ev1" || string(dl.Event.Data) != `{"n":1}` {
		t.Fatalf("decoded %+v", dl)
	}
	if _, err := Decode(message.NewMessage("bad", []byte("not json"))); err == nil {
		t.Fatal("an undecodable payload decoded")
	}
}
