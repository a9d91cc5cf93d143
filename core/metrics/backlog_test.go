package metrics

import (
	"context"
	"errors"
	"testing"
)

// The backlog a reporter gives at scrape time is exported per group and
// topic, also beside an error (the figures a driver could read).
func TestRegisterBacklog(t *testing.T) {
	m := New()
	calls := 0
	m.RegisterBacklog(BacklogFunc(func(ctx context.Context) ([]Backlog, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Backlog called without a deadline")
		}
		return []Backlog{{Group: "sink-a", Topic: "hookbus.out.a", Pending: 3, Unacked: 2}}, errors.New("group sink-b: unreachable")
	}))
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if n := mf.GetName(); n == "hookbus_queue_pending" || n == "hookbus_queue_unacked" {
			for _, mt := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range mt.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				got[n+" "+labels["group"]+" "+labels["topic"]] = mt.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{"hookbus_queue_pending sink-a hookbus.out.a": 3, "hookbus_queue_unacked sink-a hookbus.out.a": 2}
	if len(got) != len(want) || got["hookbus_queue_pending sink-a hookbus.out.a"] != 3 || got["hookbus_queue_unacked sink-a hookbus.out.a"] != 2 || calls != 1 {
		t.Fatalf("backlog series = %v (calls %d), want %v", got, calls, want)
	}
}
