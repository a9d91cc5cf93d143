package script

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

const digestJS = `function aggregate(events, ctx) {
  let total = 0;
  for (const e of events) total += e.data.amount;
  return {
    type: "orders.digest",
    subject: ctx.key,
    data: {customer: ctx.key, orders: ctx.count, total: total, from: ctx.window_start, to: ctx.window_end, ids: events.map(e => e.id)},
  };
}
`

func windowEvents() []sdk.Event {
	return []sdk.Event{
		{ID: "o1", Type: "order.paid", Data: json.RawMessage(`{"amount":5}`)},
		{ID: "o2", Type: "order.paid", Data: json.RawMessage(`{"amount":7}`)},
	}
}

func TestAggregate(t *testing.T) {
	s := compile(t, digestJS, Options{})
	if !s.HasAggregate() || s.HasFilter() || s.HasTransform() {
		t.Fatal("aggregate not found")
	}
	start := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	c := AggregateContext{Pipeline: "p", Sink: "k", Key: "c-1", WindowStart: start, WindowEnd: start.Add(time.Minute), Count: 2, OutputID: "agg_x"}
	out, err := s.Aggregate(context.Background(), windowEvents(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].ID != "agg_x" || out[0].Type != "orders.digest" || out[0].Subject != "c-1" {
		t.Fatalf("out %+v", out)
	}
	want := `{"customer":"c-1","orders":2,"total":12,"from":"2026-01-02T03:04:00Z","to":"2026-01-02T03:05:00Z","ids":["o1","o2"]}`
	if string(out[0].Data) != want {
		t.Fatalf("data %s, want %s", out[0].Data, want)
	}
}

func TestAggregateResults(t *testing.T) {
	ctx := context.Background()
	c := AggregateContext{OutputID: "agg_y", Count: 2}
	for _, tc := range []struct {
		name, src string
		ids       []string
		err       string
	}{
		{"null", `function aggregate(events) { return null }`, nil, ""},
		{"array", `function aggregate(events) { return events.map(e => ({type: "x", data: e.data})) }`, []string{"agg_y-0", "agg_y-1"}, ""},
		{"own id", `function aggregate(events) { return {id: "mine", type: "x"} }`, []string{"mine"}, ""},
		{"events returned", `function aggregate(events) { return events }`, []string{"o1", "o2"}, ""},
		{"throws", "function aggregate(events) {\n  throw new Error(\"boom\")\n}", nil, "test.js:2:"},
		{"bad return", "function aggregate(events) {\n  return 3\n}", nil, "aggregate must return an event object"},
		{"no type", "function aggregate(events) {\n  return {data: 1}\n}", nil, "aggregate result.type must be a non-empty string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compile(t, tc.src, Options{})
			out, err := s.Aggregate(ctx, windowEvents(), c)
			if tc.err != "" {
				var se *Error
				if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ev := range out {
				ids = append(ids, ev.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
				t.Fatalf("ids %v, want %v", ids, tc.ids)
			}
		})
	}
}

func TestAggregateCases(t *testing.T) {
	s := compile(t, digestJS, Options{})
	c := Case{Name: "two orders", Events: []json.RawMessage{
		json.RawMessage(`{"id":"o1","type":"order.paid","time":"2026-01-02T03:04:00Z","data":{"amount":5}}`),
		json.RawMessage(`{"id":"o2","type":"order.paid","time":"2026-01-02T03:04:30Z","data":{"amount":7}}`),
	}, Ctx: &CaseContext{Key: "c-1"}}
	r := s.Check(context.Background(), c)
	if r.Pass || !strings.Contains(string(r.Got), `"total":12`) || !strings.Contains(string(r.Got), `"to":"2026-01-02T03:04:30Z"`) {
		t.Fatalf("a case without expectation: %+v %s", r, r.Got)
	}
	c.Expect = r.Got
	if r := s.Check(context.Background(), c); !r.Pass {
		t.Fatalf("recorded expectation fails: %+v", r)
	}
	nul := compile(t, `function aggregate() { return null }`, Options{})
	if r := nul.Check(context.Background(), Case{Name: "n", Events: c.Events, ExpectFiltered: true}); !r.Pass {
		t.Fatalf("expect_filtered: %+v", r)
	}
}
