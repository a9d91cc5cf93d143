package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunMeasures runs the bench end to end on the memory and embedded
// queues with few events: every event arrives and the figures are filled.
func TestRunMeasures(t *testing.T) {
	for _, driver := range []string{"memory", "embedded"} {
		t.Run(driver, func(t *testing.T) {
			r, err := Run(context.Background(), Options{Driver: driver, Events: 300, Concurrency: 4, Batch: 3})
			if err != nil {
				t.Fatal(err)
			}
			if r.Delivered != 300 || r.Sink != "webhook" || r.EventsPerS <= 0 {
				t.Errorf("result = %+v", r)
			}
			if r.P50 <= 0 || r.P99 < r.P50 || r.IngestP50 <= 0 || r.CPUPerEvent <= 0 {
				t.Errorf("figures not measured: %+v", r)
			}
		})
	}
}

func TestSummarizeTakesMediansAndSameRunRatios(t *testing.T) {
	r := func(driver, sink string, eps float64, p50 time.Duration) Result {
		return Result{Driver: driver, Sink: sink, EventsPerS: eps, P50: p50, P99: 2 * p50, CPUPerEvent: p50 / 10}
	}
	runs := [][]Result{
		{r("embedded", "webhook", 1000, 4*time.Millisecond), r("embedded", "webhook-plugin", 900, 5*time.Millisecond), r("memory", "webhook", 3000, time.Millisecond)},
		// A slow run: the ratio within it still counts as measured.
		{r("embedded", "webhook", 500, 9*time.Millisecond), r("embedded", "webhook-plugin", 400, 9*time.Millisecond), r("memory", "webhook", 1000, time.Millisecond)},
		{r("embedded", "webhook", 1100, 3*time.Millisecond), r("embedded", "webhook-plugin", 1045, 4*time.Millisecond), r("memory", "webhook", 2000, 3*time.Millisecond)},
	}
	got := Summarize(runs)
	if len(got) != 3 {
		t.Fatalf("summaries %+v", got)
	}
	in, pl, mem := got[0], got[1], got[2]
	if in.Sink != "webhook" || in.EventsPerS != 1000 || in.P50 != 4*time.Millisecond || in.Ratio != 0 || in.Runs != 3 {
		t.Errorf("in process: %+v", in)
	}
	// Ratios per run 0.9, 0.8, 0.95: the median is 0.9, not 900/1000 of
	// the medians by chance.
	if pl.Sink != "webhook-plugin" || pl.EventsPerS != 900 || pl.Ratio != 0.9 || pl.P99 != 10*time.Millisecond {
		t.Errorf("plugin: %+v", pl)
	}
	if mem.Driver != "memory" || mem.EventsPerS != 2000 || mem.P50 != time.Millisecond || mem.Ratio != 0 {
		t.Errorf("memory: %+v", mem)
	}
	if s := pl.String(); !strings.Contains(s, "0.90× in process") {
		t.Errorf("summary line %q", s)
	}
	if median([]float64{4, 1, 3, 2}) != 2.5 || median(nil) != 0 {
		t.Error("median")
	}
}
