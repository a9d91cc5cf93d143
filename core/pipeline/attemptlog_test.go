package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
)

// attemptLog collects the entries the engine records.
type attemptLog struct {
	mu      sync.Mutex
	entries []attempt.Entry
}

func (l *attemptLog) Record(e attempt.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

// of returns the entries of one event (and subscription), by attempt number.
func (l *attemptLog) of(eventID, sub string) []attempt.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []attempt.Entry
	for _, e := range l.entries {
		if e.Attempt.EventID == eventID && e.Attempt.Subscription == sub {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b attempt.Entry) int { return a.Attempt.Number - b.Attempt.Number })
	return out
}

func (l *attemptLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// scriptedSink answers each event by its id: "ok" delivers, "flaky" fails
// once (503) then delivers, "bad" fails for good (400), "dead" always
// fails (503). It tells the detail of its attempts (DetailedSink) unless
// plain is set.
type scriptedSink struct {
	calls sync.Map // event id -> *atomic.Int32
	plain bool
}

func (s *scriptedSink) Init(context.Context, json.RawMessage) (sdk.SinkInfo, error) {
	return sdk.SinkInfo{}, nil
}
func (s *scriptedSink) Close(context.Context) error { return nil }

func (s *scriptedSink) answer(d sdk.Delivery) sdk.Result {
	n, _ := s.calls.LoadOrStore(d.Event.ID, new(atomic.Int32))
	call := n.(*atomic.Int32).Add(1)
	switch strings.SplitN(d.Event.ID, "-", 2)[0] {
	case "ok":
		return sdk.Result{Outcome: sdk.OK, StatusCode: 200}
	case "flaky":
		if call == 1 {
			return sdk.Result{Outcome: sdk.Retry, StatusCode: 503, Reason: "HTTP 503: busy"}
		}
		return sdk.Result{Outcome: sdk.OK, StatusCode: 204}
	case "bad":
		return sdk.Result{Outcome: sdk.Permanent, StatusCode: 400, Reason: "HTTP 400: " + strings.Repeat("x", 2*attempt.MaxErrorText)}
	}
	return sdk.Result{Outcome: sdk.Retry, StatusCode: 503, Reason: "HTTP 503"}
}

func (s *scriptedSink) Deliver(_ context.Context, batch []sdk.Delivery) []sdk.Result {
	out := make([]sdk.Result, len(batch))
	for i, d := range batch {
		out[i] = s.answer(d)
	}
	return out
}

// detailedSink is a scriptedSink that tells the detail of its attempts.
type detailedSink struct{ scriptedSink }

func (s *detailedSink) DeliverDetailed(_ context.Context, d sdk.Delivery) (sdk.Result, *attempt.Detail) {
	res := s.answer(d)
	return res, &attempt.Detail{URL: "http://receiver.test/hook", WebhookID: d.Event.ID,
		RequestHeaders:  http.Header{"Authorization": {"Bearer s3cret"}, "Webhook-Id": {d.Event.ID}},
		ResponseHeaders: http.Header{"X-Status": {fmt.Sprint(res.StatusCode)}, "Set-Cookie": {"session=abc"}},
		ResponseBody:    []byte(strings.Repeat("b", attempt.MaxResponseBody+100))}
}

// Every attempt of a sink is recorded with its number, outcome (retry
// while the schedule has another, failed when dead-lettered), status and
// error; the first carries the event as queued; a sink that tells the
// detail of its attempts has it recorded, credentials redacted.
func TestEveryAttemptRecorded(t *testing.T) {
	for _, drv := range testDrivers[:2] {
		t.Run(drv.name, func(t *testing.T) {
			q := drv.open(t)
			closeQueue(t, q)
			log := &attemptLog{}
			sink := &detailedSink{}
			e, _ := runEngine(t, Options{
				Queue: q, Attempts: log, DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
				Sinks: map[string]Sink{"out": {Name: "out", Sink: sink,
					Schedule: retry.Schedule{Delays: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}}}},
			})
			evs := []sdk.Event{
				{ID: "ok-1", Type: "order.paid", Data: json.RawMessage(`{"n":1}`), Extensions: map[string]json.RawMessage{"application": json.RawMessage(`"acme"`)}},
				{ID: "flaky-1", Type: "order.paid", Data: json.RawMessage(`{"n":2}`)},
				{ID: "bad-1", Type: "order.paid", Data: json.RawMessage(`{"n":3}`)},
				{ID: "dead-1", Type: "order.paid", Data: json.RawMessage(`{"n":4}`)},
			}
			before := time.Now()
			if err := e.Publish(context.Background(), "src", evs); err != nil {
				t.Fatal(err)
			}
			// 1 + 2 + 1 + 3 attempts.
			testenv.Eventually(t, 30*time.Second, "7 attempts recorded", func() bool { return log.count() >= 7 })

			type want struct {
				outcome attempt.Outcome
				status  int
				err     string
			}
			for id, ws := range map[string][]want{
				"ok-1":    {{attempt.Delivered, 200, ""}},
				"flaky-1": {{attempt.Retry, 503, "HTTP 503: busy"}, {attempt.Delivered, 204, ""}},
				"bad-1":   {{attempt.Failed, 400, "HTTP 400: " + strings.Repeat("x", attempt.MaxErrorText-len("HTTP 400: "))}},
				"dead-1":  {{attempt.Retry, 503, "HTTP 503"}, {attempt.Retry, 503, "HTTP 503"}, {attempt.Failed, 503, "HTTP 503"}},
			} {
				got := log.of(id, "")
				if len(got) != len(ws) {
					t.Fatalf("%s: %d attempts recorded, want %d: %+v", id, len(got), len(ws), got)
				}
				for i, w := range ws {
					a := got[i].Attempt
					if a.Number != i+1 || a.Outcome != w.outcome || a.StatusCode != w.status || a.Error != w.err {
						t.Errorf("%s attempt %d: number %d outcome %s status %d error %q, want %+v", id, i+1, a.Number, a.Outcome, a.StatusCode, a.Error, w)
					}
					if a.ID == "" || a.Sink != "out" || a.Pipeline != "p" || a.Source != "src" || a.EventType != "order.paid" {
						t.Errorf("%s attempt %d names %+v", id, i+1, a)
					}
					if a.ReceivedAt.Before(before.Add(-time.Second)) || a.StartedAt.Before(a.ReceivedAt) || a.Duration < 0 {
						t.Errorf("%s attempt %d times: received %v started %v took %v", id, i+1, a.ReceivedAt, a.StartedAt, a.Duration)
					}
					if a.URL != "http://receiver.test/hook" || a.WebhookID != id || a.RequestHeaders.Get("Authorization") != "[redacted]" ||
						a.ResponseHeaders.Get("Set-Cookie") != "[redacted]" ||
						a.RequestHeaders.Get("Webhook-Id") != id || a.ResponseHeaders.Get("X-Status") != fmt.Sprint(w.status) ||
						len(a.ResponseBody) != attempt.MaxResponseBody {
						t.Errorf("%s attempt %d detail: url %q webhook-id %q request %v response %v body %d bytes", id, i+1,
							a.URL, a.WebhookID, a.RequestHeaders, a.ResponseHeaders, len(a.ResponseBody))
					}
					ev := got[i].Event
					if (ev != nil) != (i == 0) {
						t.Fatalf("%s attempt %d: event on record %v, want only with attempt 1", id, i+1, ev != nil)
					}
					if ev == nil {
						continue
					}
					var rec sdk.Event
					if err := rec.UnmarshalJSON(ev.Payload); err != nil || rec.ID != id {
						t.Errorf("%s: payload on record %s (%v)", id, ev.Payload, err)
					}
					if ev.ID != id || ev.Sink != "out" || ev.Pipeline != "p" || ev.Source != "src" || ev.Type != "order.paid" || !ev.ReceivedAt.Equal(a.ReceivedAt) ||
						ev.Metadata[envelope.Source] != "src" || ev.Metadata[envelope.Pipeline] != "p" || ev.Metadata[envelope.ReceivedAt] == "" {
						t.Errorf("%s: event on record %+v", id, ev)
					}
				}
			}
			if a := log.of("ok-1", "")[0]; a.Attempt.Application != "acme" || a.Event.Application != "acme" {
				t.Errorf("the event's application attribute is not recorded: %q / %q", a.Attempt.Application, a.Event.Application)
			}
		})
	}
}

// A sink that tells no detail (a plugin sink) has its attempts recorded
// with outcome, status and error only; without a Recorder the detailed
// path is not taken.
func TestAttemptsOfAPlainSink(t *testing.T) {
	log := &attemptLog{}
	e, _ := runEngine(t, Options{
		Queue: newTestMemory(t), Attempts: log, DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
		Sinks:     map[string]Sink{"out": {Name: "out", Sink: &scriptedSink{}, Schedule: retry.Schedule{Delays: []time.Duration{time.Millisecond}}}},
	})
	publishEvents(t, e, "flaky-2")
	testenv.Eventually(t, 30*time.Second, "2 attempts recorded", func() bool { return log.count() >= 2 })
	got := log.of("flaky-2", "")
	if got[0].Attempt.Outcome != attempt.Retry || got[0].Attempt.StatusCode != 503 || got[0].Attempt.URL != "" || got[0].Attempt.RequestHeaders != nil ||
		got[1].Attempt.Outcome != attempt.Delivered || got[1].Attempt.Number != 2 {
		t.Fatalf("attempts = %+v", got)
	}

	var detailed atomic.Int32
	sink := &countingDetailed{n: &detailed}
	e2, _ := runEngine(t, Options{
		Queue: newTestMemory(t), DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
		Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
		Sinks:     map[string]Sink{"out": {Name: "out", Sink: sink}},
	})
	publishEvents(t, e2, "ok-2")
	testenv.Eventually(t, 30*time.Second, "delivered", func() bool { return sink.delivered.Load() == 1 })
	if detailed.Load() != 0 {
		t.Fatal("DeliverDetailed called without a delivery log")
	}
}

type countingDetailed struct {
	detailedSink
	n         *atomic.Int32
	delivered atomic.Int32
}

func (s *countingDetailed) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	s.delivered.Add(int32(len(batch)))
	return s.detailedSink.Deliver(ctx, batch)
}

func (s *countingDetailed) DeliverDetailed(ctx context.Context, d sdk.Delivery) (sdk.Result, *attempt.Detail) {
	s.n.Add(1)
	return s.detailedSink.DeliverDetailed(ctx, d)
}

// A fan-out sink's pairs are recorded with their application and
// subscription, the target's detail included; a pair not tried because
// its endpoint is failing is a failed attempt on record; deferrals and
// filtered pairs are not attempts.
func TestFanoutAttemptsRecorded(t *testing.T) {
	for _, drv := range testDrivers[:2] {
		t.Run(drv.name, func(t *testing.T) {
			q := drv.open(t)
			closeQueue(t, q)
			log := &attemptLog{}
			f := newScriptedFanout(func(ev sdk.Event) ([]Target, error) {
				var ts []Target
				for _, id := range []string{"ok", "circuit", "busy", "picky"} {
					ts = append(ts, Target{App: "app_1", ID: id})
				}
				return ts, nil
			}, func(tg Target, d sdk.Delivery, call int) TargetResult {
				switch tg.ID {
				case "circuit":
					if call == 1 {
						return TargetResult{NotTried: true, Result: sdk.Result{Outcome: sdk.Retry, Reason: "endpoint failing: not tried"}}
					}
				case "busy":
					if call <= 2 {
						return TargetResult{Defer: 5 * time.Millisecond, DeferReason: "rate_limit"}
					}
				case "picky":
					return TargetResult{Filtered: true}
				}
				return TargetResult{Result: sdk.Result{Outcome: sdk.OK, StatusCode: 200},
					Detail: &attempt.Detail{URL: "http://" + tg.ID + ".test/", WebhookID: d.Event.ID, RequestHeaders: http.Header{"X-Api-Key": {"k"}}}}
			})
			e, _ := runEngine(t, Options{
				Queue: q, Attempts: log, DeadLetters: &deadLetters{}, MaxDeliveries: 3, CloseTimeout: time.Second,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"subs"}}},
				Sinks: map[string]Sink{"subs": {Name: "subs", Fanout: f, MaxInFlight: 16,
					Schedule: retry.Schedule{Delays: []time.Duration{10 * time.Millisecond}}}},
			})
			publishEvents(t, e, "e1")
			testenv.Eventually(t, 30*time.Second, "4 attempts recorded", func() bool { return log.count() >= 4 })
			testenv.Eventually(t, 30*time.Second, "every pair settled", func() bool { return f.settled("e1/ok", "e1/circuit", "e1/busy", "e1/picky") })
			if got := log.of("e1", "picky"); len(got) != 0 {
				t.Errorf("a filtered pair is on record: %+v", got)
			}
			for sub, outcomes := range map[string][]attempt.Outcome{
				"ok":      {attempt.Delivered},
				"busy":    {attempt.Delivered},
				"circuit": {attempt.Retry, attempt.Delivered},
			} {
				got := log.of("e1", sub)
				if len(got) != len(outcomes) {
					t.Fatalf("%s: %d attempts, want %d: %+v", sub, len(got), len(outcomes), got)
				}
				for i, o := range outcomes {
					a := got[i].Attempt
					if a.Outcome != o || a.Number != i+1 || a.Application != "app_1" || a.Sink != "subs" {
						t.Errorf("%s attempt %d = %+v, want %s", sub, i+1, a, o)
					}
					if o == attempt.Delivered && (a.URL != "http://"+sub+".test/" || a.RequestHeaders.Get("X-Api-Key") != "[redacted]") {
						t.Errorf("%s attempt %d detail: %q %v", sub, i+1, a.URL, a.RequestHeaders)
					}
				}
				// The event names no application (the fan-out picked app_1's
				// subscriptions for it): its record is no application's.
				if ev := got[0].Event; ev == nil || ev.Sink != "subs" || ev.Application != "" {
					t.Errorf("%s: event on record %+v", sub, ev)
				}
			}
			if a := log.of("e1", "circuit")[0].Attempt; a.Error != "endpoint failing: not tried" || a.Duration != 0 || a.StatusCode != 0 {
				t.Errorf("not-tried attempt = %+v", a)
			}
		})
	}
}

// failingStore is an attempt.Store whose writes all fail.
type failingStore struct {
	attempt.Store
	writes atomic.Int32
}

func (s *failingStore) WriteAttempts(context.Context, []attempt.Entry) error {
	s.writes.Add(1)
	return errors.New("store unreachable")
}

// While the delivery log's store fails, deliveries go on: a webhook
// sink delivers every event to a receiver on loopback while the Writer
// buffers what it can and drops (and counts) the rest.
func TestFailingAttemptStoreHoldsNothingUp(t *testing.T) {
	for _, drv := range testDrivers[:2] {
		t.Run(drv.name, func(t *testing.T) {
			var got sync.Map
			var received atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, dup := got.LoadOrStore(r.Header.Get("Webhook-Id"), true); !dup {
					received.Add(1)
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			hook, err := webhook.New(webhook.Config{URL: srv.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", AllowPrivateNetworks: true})
			if err != nil {
				t.Fatal(err)
			}
			st := &failingStore{}
			w := attempt.NewWriter(st, attempt.WriterOptions{Buffer: 8, Batch: 4, RetryDelay: time.Hour})
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = w.Close(ctx)
			})
			q := drv.open(t)
			closeQueue(t, q)
			e, _ := runEngine(t, Options{
				Queue: q, Attempts: w, DeadLetters: &deadLetters{}, CloseTimeout: time.Second,
				Pipelines: []Pipeline{{Name: "p", From: []string{"src"}, To: []string{"out"}}},
				Sinks:     map[string]Sink{"out": {Name: "out", Sink: hook, MaxInFlight: 16}},
			})
			const n = 200
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("e%d", i)
			}
			publishEvents(t, e, ids...)
			testenv.Eventually(t, 60*time.Second, "every event delivered while the log's store fails", func() bool { return received.Load() == n })
			if st.writes.Load() == 0 || w.Dropped() == 0 || w.Written() != 0 {
				t.Fatalf("writes tried %d, dropped %d, written %d", st.writes.Load(), w.Dropped(), w.Written())
			}
		})
	}
}

func newTestMemory(t *testing.T) queue.Queue {
	q := queue.NewMemoryWith(queue.MemoryOptions{CloseGrace: 50 * time.Millisecond})
	closeQueue(t, q)
	return q
}

// BenchmarkRecordAttempt measures what building one attempt's entry costs
// the delivery path (the detail of an HTTP sink, the event on record).
func BenchmarkRecordAttempt(b *testing.B) {
	var n atomic.Int64
	e := &Engine{opts: Options{Attempts: attempt.RecorderFunc(func(attempt.Entry) { n.Add(1) })}}
	msg := message.NewMessage("m1", []byte(`{"id":"e1","type":"order.paid","application":"acme","data":{"n":1}}`))
	msg.Metadata.Set(envelope.ReceivedAt, "1764680000000000000")
	msg.Metadata.Set(envelope.Source, "shop")
	msg.Metadata.Set(envelope.Pipeline, "p")
	d := &sinkDelivery{msg: msg, pipeline: "p", attempt: 1}
	if err := d.ev.UnmarshalJSON(msg.Payload); err != nil {
		b.Fatal(err)
	}
	detail := &attempt.Detail{URL: "https://partner.example/hooks", WebhookID: "e1",
		RequestHeaders:  http.Header{"Content-Type": {"application/json"}, "Webhook-Id": {"e1"}, "Webhook-Signature": {"v1,x"}, "Webhook-Timestamp": {"1"}, "User-Agent": {"hookbus/1"}},
		ResponseHeaders: http.Header{"Content-Length": {"2"}}, ResponseBody: []byte("ok")}
	at := attemptTiming{start: time.Now(), duration: time.Millisecond}
	res := sdk.Result{Outcome: sdk.OK, StatusCode: 200}
	b.ReportAllocs()
	for b.Loop() {
		e.recordAttempt("out", d, at, attempt.Delivered, res, detail)
	}
}
