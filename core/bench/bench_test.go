package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

func small(scenario, driver string) Options {
	return Options{Scenario: scenario, Driver: driver, Events: 300, Concurrency: 4, Batch: 3, Timeout: testenv.Timeout(2 * time.Minute)}
}

// TestRunScenarios runs each cheap scenario end to end in process, on the
// memory and embedded queues, with few events: every event arrives at every
// receiver and the figures are filled.
func TestRunScenarios(t *testing.T) {
	for _, driver := range []string{"memory", "embedded"} {
		for _, scenario := range []string{Direct, Passthrough, Transform, Fanout, SlowEndpoint} {
			t.Run(driver+"/"+scenario, func(t *testing.T) {
				var calls atomic.Int64
				o := small(scenario, driver)
				o.Progress = func(p Progress) {
					if p.Total != 300 || p.Scenario != scenario {
						t.Errorf("progress %+v", p)
					}
					calls.Add(1)
				}
				r, err := Run(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				if r.Partial || r.Delivered != 300 || r.Accepted != 300 || r.EventsPerS <= 0 || r.Lost != 0 {
					t.Fatalf("result = %+v", r)
				}
				if r.P50 <= 0 || r.P99 < r.P50 || r.P999 < r.P99 || r.IngestP50 <= 0 {
					t.Errorf("latencies not measured: %+v", r)
				}
				if calls.Load() == 0 {
					t.Error("no progress reported")
				}
				switch scenario {
				case Direct:
					if r.Process != "none" || r.Driver != "" || r.CPUPerEvent != 0 {
						t.Errorf("direct: %+v", r)
					}
				default:
					if r.Process != "in-process" || r.Driver != driver || r.Sink != "webhook" || r.CPUPerEvent <= 0 || r.PeakRSS <= 0 {
						t.Errorf("hookbus figures: %+v", r)
					}
				}
				if scenario == SlowEndpoint && (r.DeadAttempts == 0 || r.AloneEventsPerS <= 0 || r.RelativeToAlone <= 0) {
					t.Errorf("slow endpoint: %+v", r)
				}
			})
		}
	}
}

// TestPluginSinkRunsTheWebhookOutOfProcess measures the plugin-sink
// scenario with the real plugin binary.
func TestPluginSinkRunsTheWebhookOutOfProcess(t *testing.T) {
	o := small(PluginSink, "memory")
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "plugin") {
		t.Errorf("plugin-sink without the plugin: err = %v", err)
	}
	o.WebhookPlugin = testenv.BuildBinary(t, "../../plugins/webhook/cmd/hookbus-webhook")
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Partial || r.Delivered != 300 || r.Sink != "webhook-plugin" || r.CPUPerEvent <= 0 {
		t.Errorf("result = %+v", r)
	}
}

// TestBacklogDrainsInAChildProcess runs the backlog scenario against a
// built hookbus as a child process: the receiver refuses until every event
// is queued, then everything is delivered once, and the child's memory and
// CPU are read from /proc.
func TestBacklogDrainsInAChildProcess(t *testing.T) {
	// With profiles and a memory limit for the child, too.
	dir := t.TempDir()
	o := Options{Scenario: Backlog, Driver: "embedded", Events: 3000, Concurrency: 8, Batch: 10,
		Binary: testenv.BuildBinary(t, "../../cmd/hookbus"), Settle: 50 * time.Millisecond, Timeout: testenv.Timeout(3 * time.Minute),
		ProfileDir: dir, ProfileSeconds: 1, MemoryLimit: "128MiB"}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Partial || r.Delivered != 3000 || r.Lost != 0 || r.Duplicates != 0 || r.Process != "child" {
		t.Fatalf("result = %+v", r)
	}
	if r.Refused == 0 || r.DrainEventsPerS <= 0 || r.PeakRSSBacklog <= 0 || r.PeakRSSDrain <= 0 || r.RSSAfter <= 0 || r.CPUPerEvent <= 0 {
		t.Errorf("backlog figures: %+v", r)
	}
	for _, name := range []string{"start.cpu", "queued.heap", "end.heap", "settled.heap"} {
		m, _ := filepath.Glob(filepath.Join(dir, "backlog-*."+name+".pprof"))
		if len(m) != 1 {
			t.Errorf("profile %s: files %v", name, m)
			continue
		}
		if st, err := os.Stat(m[0]); err != nil || st.Size() == 0 {
			t.Errorf("profile %s is empty: %v", m[0], err)
		}
	}
}

// TestTimeoutReportsPartialResults: a receiver that never answers 2xx and
// a tiny timeout give the figures so far and the reason, not an error.
func TestTimeoutReportsPartialResults(t *testing.T) {
	o := small(Backlog, "memory")
	o.Events = 2000
	o.Timeout = 300 * time.Millisecond
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Partial || !strings.Contains(r.Reason, "timeout after 300ms") || !strings.Contains(r.Reason, "of 2000 events delivered") {
		t.Errorf("result = %+v", r)
	}
	if r.Delivered >= 2000 || r.Elapsed < 300*time.Millisecond || r.Lost != 2000-r.Delivered {
		t.Errorf("partial figures: %+v", r)
	}
	if s := r.String(); !strings.Contains(s, "PARTIAL: timeout after 300ms") {
		t.Errorf("line %q", s)
	}
}

// TestRefusedIngestReportsPartialResults: an ingest endpoint that answers
// 503 ends the run at once with the reason.
func TestRefusedIngestReportsPartialResults(t *testing.T) {
	rcv, err := newReceiver(100, answer503)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.close()
	o := small(Direct, "")
	o.Events = 100
	o.setDefaults()
	var res Result
	measure(context.Background(), o, run{url: rcv.url(), targets: []*receiver{rcv}}, &res)
	if !res.Partial || !strings.Contains(res.Reason, "ingest: HTTP 503") || res.Delivered != 0 || res.Accepted != 0 {
		t.Errorf("result = %+v", res)
	}
}

// TestRateIsOpenLoop: with --rate the requests go out on a schedule, so
// the run lasts at least the schedule, and latency counts from it.
func TestRateIsOpenLoop(t *testing.T) {
	o := Options{Scenario: Direct, Events: 100, Concurrency: 4, Rate: 400}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Partial || r.Delivered != 100 || r.OfferedRate != 400 {
		t.Fatalf("result = %+v", r)
	}
	if min := 99 * time.Second / 400; r.Elapsed < min {
		t.Errorf("elapsed %s, want at least the schedule's %s", r.Elapsed, min)
	}
}

func TestDefaultTimeoutScalesWithEventsAndRate(t *testing.T) {
	a := DefaultTimeout(Transform, 20000, 0)
	if b := DefaultTimeout(Transform, 200000, 0); b <= a {
		t.Errorf("more events: %s <= %s", b, a)
	}
	if b := DefaultTimeout(Transform, 20000, 10); b < a+30*time.Minute {
		t.Errorf("slow rate: %s", b)
	}
	if b := DefaultTimeout(Backlog, 20000, 0); b <= a {
		t.Errorf("backlog: %s", b)
	}
}

func TestCompareAndSummarizeTakeSameRoundRatiosAndMedians(t *testing.T) {
	r := func(scenario, sink string, eps float64, p50 time.Duration) Result {
		driver := "embedded"
		if scenario == Direct {
			driver, sink = "", ""
		}
		return Result{Scenario: scenario, Driver: driver, Sink: sink, EventsPerS: eps, P50: p50, P99: 2 * p50, CPUPerEvent: p50 / 10}
	}
	runs := [][]Result{
		{r(Direct, "", 10000, time.Millisecond), r(Transform, "webhook", 1000, 4*time.Millisecond), r(PluginSink, "webhook-plugin", 900, 5*time.Millisecond)},
		// A slow round: the ratios within it still count as measured.
		{r(Direct, "", 4000, time.Millisecond), r(Transform, "webhook", 500, 9*time.Millisecond), r(PluginSink, "webhook-plugin", 400, 9*time.Millisecond)},
		{r(Direct, "", 11000, time.Millisecond), r(Transform, "webhook", 1100, 3*time.Millisecond), r(PluginSink, "webhook-plugin", 1045, 4*time.Millisecond)},
	}
	for _, round := range runs {
		Compare(round)
	}
	if got := runs[1][1].RatioToDirect; got != 0.125 || runs[1][1].DirectEventsPerS != 4000 || runs[1][0].RatioToDirect != 0 {
		t.Errorf("round 2: %+v", runs[1])
	}
	got := Summarize(runs)
	if len(got) != 3 {
		t.Fatalf("summaries %+v", got)
	}
	d, tr, pl := got[0], got[1], got[2]
	if d.Scenario != Direct || d.EventsPerS != 10000 || d.RatioToDirect != 0 || d.Runs != 3 || d.CPUPerEvent != 100*time.Microsecond {
		t.Errorf("direct: %+v", d)
	}
	// Per-round ratios 0.1, 0.125, 0.1: the median is 0.1, whatever the
	// ratio of the medians.
	if tr.EventsPerS != 1000 || tr.RatioToDirect != 0.1 || tr.P50 != 4*time.Millisecond || tr.InProcessRatio != 0 {
		t.Errorf("transform: %+v", tr)
	}
	// Ratios to in process 0.9, 0.8, 0.95: the median is 0.9.
	if pl.Sink != "webhook-plugin" || pl.EventsPerS != 900 || pl.InProcessRatio != 0.9 || pl.P99 != 10*time.Millisecond {
		t.Errorf("plugin: %+v", pl)
	}
	if s := pl.String(); !strings.Contains(s, "0.90× in process") || !strings.Contains(s, "direct") {
		t.Errorf("summary line %q", s)
	}
	if median([]float64{4, 1, 3, 2}) != 2.5 || median(nil) != 0 {
		t.Error("median")
	}
}
