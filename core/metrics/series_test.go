package metrics

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hookbus/hookbus/sdk"
)

// gathered returns every series of family name on m, as "label=value,..."
// (sorted by label name, as the registry gives them) to its value.
func gathered(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			key := ""
			for i, l := range mt.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			out[key] = value(mf.GetType(), mt)
		}
	}
	return out
}

func value(typ dto.MetricType, mt *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return mt.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return mt.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(mt.GetHistogram().GetSampleCount())
	}
	return -1
}

// The outcome labels Declare creates are the names the SDK's outcomes
// go by (the label values the engine writes).
func TestAttemptOutcomesAreTheSDKs(t *testing.T) {
	want := []string{sdk.OK.String(), sdk.Retry.String(), sdk.Permanent.String()}
	if got := AttemptOutcomes(); !slices.Equal(got, want) {
		t.Fatalf("AttemptOutcomes() = %v, want %v", got, want)
	}
	for _, code := range []int{200, 301, 404, 503, 0} {
		if c := StatusClass(code); !slices.Contains(StatusClasses(), c) {
			t.Errorf("StatusClass(%d) = %q, not in StatusClasses() %v", code, c, StatusClasses())
		}
	}
}

// Declare creates every series of a topology at zero, keeps the values of
// those that exist, and keeps (frozen) those of components a later
// topology no longer has.
func TestDeclare(t *testing.T) {
	m := New()
	top := Topology{
		Sources:         []string{"shop"},
		Routes:          []Route{{"orders", "partner"}, {"orders", "subs"}},
		Sinks:           []string{"partner", "subs"},
		FanoutSinks:     []string{"subs"},
		Scripts:         []string{"only_paid.js"},
		DeadLetterKinds: []string{"permanent", "exhausted"},
	}
	m.Declare(top)
	checks := []struct {
		name string
		n    int
		one  string
	}{
		{"hookbus_events_received_total", 1, "source=shop"},
		{"hookbus_events_filtered_total", 2, "pipeline=orders,sink=subs"},
		{"hookbus_events_delivered_total", 2, "pipeline=orders,sink=partner"},
		{"hookbus_events_dead_lettered_total", 4, "kind=exhausted,pipeline=orders,sink=subs"},
		{"hookbus_delivery_attempts_total", 2 * 3 * 5, "outcome=retry,sink=partner,status_class=5xx"},
		{"hookbus_delivery_retries_total", 2, "sink=subs"},
		{"hookbus_delivery_not_tried_total", 2, "sink=partner"},
		{"hookbus_sink_circuit_open", 2, "sink=partner"},
		{"hookbus_deliveries_in_flight", 2, "sink=partner"},
		{"hookbus_delivery_delay_seconds", 2, "sink=partner"},
		{"hookbus_delivery_attempt_seconds", 2, "sink=subs"},
		{"hookbus_delivery_deferrals_total", 3, "reason=rate_limit,sink=subs"},
		{"hookbus_subscriptions_disabled_total", 2, "reason=gone,sink=subs"},
		{"hookbus_script_duration_seconds", 1, "script=only_paid.js"},
		{"hookbus_script_errors_total", 1, "script=only_paid.js"},
	}
	for _, c := range checks {
		got := gathered(t, m, c.name)
		if v, ok := got[c.one]; len(got) != c.n || !ok || v != 0 {
			t.Errorf("%s: %d series %v, want %d at 0 including {%s}", c.name, len(got), got, c.n, c.one)
		}
	}

	m.Delivered.WithLabelValues("orders", "partner").Add(3)
	m.Declare(Topology{Sources: []string{"shop", "files"}, Routes: []Route{{"orders", "other"}}, Sinks: []string{"other"}})
	got := gathered(t, m, "hookbus_events_delivered_total")
	if got["pipeline=orders,sink=partner"] != 3 || len(got) != 3 {
		t.Errorf("delivered after the second Declare = %v, want partner kept at 3, subs and other at 0", got)
	}
	if got := gathered(t, m, "hookbus_events_received_total"); len(got) != 2 {
		t.Errorf("received after adding a source = %v, want shop and files", got)
	}
	if got := m.declaredSinks(); !slices.Equal(got, []string{"other"}) {
		t.Errorf("declared sinks = %v, want [other]", got)
	}
}

// The delay histogram has the SLO boundaries and resolution below a second.
func TestDelayBuckets(t *testing.T) {
	for _, b := range []float64{0.1, 0.5, 1, 5, 30, 60, 300, 3600} {
		if !slices.Contains(DelayBuckets, b) {
			t.Errorf("DelayBuckets %v lack %v", DelayBuckets, b)
		}
	}
	if !slices.IsSorted(DelayBuckets) || !slices.IsSorted(AttemptBuckets) {
		t.Error("buckets not sorted")
	}
}

// The oldest waiting gauge reports every declared sink (0 with nothing
// waiting), the age at scrape time from a cached answer, the last answer
// while the reporter fails, and nothing before its first answer.
func TestOldestWaiting(t *testing.T) {
	m := New()
	m.Declare(Topology{Sinks: []string{"partner", "idle"}})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ingested := now.Add(-90 * time.Second)
	calls := 0
	var fail error = errors.New("store unreachable")
	var reported []error
	m.RegisterOldestWaiting(WaitingFunc(func(ctx context.Context) (map[string]time.Time, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("OldestWaiting called without a deadline")
		}
		if fail != nil {
			return nil, fail
		}
		return map[string]time.Time{"partner": ingested, "removed": ingested.Add(-time.Hour)}, nil
	}), WaitingOptions{CacheFor: 5 * time.Second, Now: func() time.Time { return now }, OnError: func(err error) { reported = append(reported, err) }})

	if got := gathered(t, m, "hookbus_oldest_waiting_seconds"); len(got) != 0 || calls != 1 || len(reported) != 1 {
		t.Fatalf("before a first answer: %v (calls %d, errors %v), want no series, 1 call, 1 error", got, calls, reported)
	}
	gathered(t, m, "hookbus_oldest_waiting_seconds")
	if calls != 1 {
		t.Fatalf("a failed call was repeated within CacheFor: %d calls", calls)
	}

	fail = nil
	now = now.Add(5 * time.Second)
	want := map[string]float64{"sink=partner": 95, "sink=idle": 0}
	if got := gathered(t, m, "hookbus_oldest_waiting_seconds"); !equal(got, want) || calls != 2 {
		t.Fatalf("oldest waiting = %v (calls %d), want %v after 2 calls", got, calls, want)
	}
	now = now.Add(4 * time.Second)
	want["sink=partner"] = 99
	if got := gathered(t, m, "hookbus_oldest_waiting_seconds"); !equal(got, want) || calls != 2 {
		t.Fatalf("within CacheFor: %v (calls %d), want %v from the cached answer", got, calls, want)
	}
	fail = errors.New("store unreachable")
	now = now.Add(time.Second)
	want["sink=partner"] = 100
	if got := gathered(t, m, "hookbus_oldest_waiting_seconds"); !equal(got, want) || calls != 3 || len(reported) != 2 {
		t.Fatalf("reporter failing: %v (calls %d, errors %v), want %v from the last answer", got, calls, reported, want)
	}
}

func equal(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
