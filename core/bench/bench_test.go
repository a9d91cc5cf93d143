package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/pprof/profile"

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
		for _, scenario := range []string{Direct, Passthrough, Transform, Fanout, Subscriptions, SlowEndpoint} {
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
				case Subscriptions:
					if r.Sink != "subscriptions" || r.DeliveriesPerS != r.EventsPerS*SubscriptionsPerEvent || r.AloneEventsPerS <= 0 || r.RelativeToAlone <= 0 {
						t.Errorf("subscriptions: %+v", r)
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
	if r.ProfileError != "" || r.Profile != filepath.Join(dir, "backlog-embedded.cpu.pprof") {
		t.Errorf("profile %q, error %q, files %v", r.Profile, r.ProfileError, r.Profiles)
	}
	for _, name := range []string{"cpu", "queued.heap", "end.heap", "settled.heap"} {
		path := filepath.Join(dir, "backlog-embedded."+name+".pprof")
		if !slices.Contains(r.Profiles, path) {
			t.Errorf("profile %s not in %v", path, r.Profiles)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("profile %s: %v", name, err)
			continue
		}
		if _, err := profile.ParseData(b); err != nil {
			t.Errorf("profile %s: %v", path, err)
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

// With the delivery log on and off in each round, each "on" run is
// compared with the "off" run of its round, and the summaries keep the
// two settings apart with the median of the per-round ratios.
func TestCompareTheDeliveryLogOnAndOff(t *testing.T) {
	r := func(log string, eps float64) Result {
		return Result{Scenario: Passthrough, Driver: "embedded", Sink: "webhook", AttemptLog: log, EventsPerS: eps}
	}
	runs := [][]Result{
		{{Scenario: Direct, EventsPerS: 10000}, r("off", 1000), r("on", 900)},
		{{Scenario: Direct, EventsPerS: 10000}, r("on", 800), r("off", 1000)},
		{{Scenario: Direct, EventsPerS: 10000}, r("off", 2000), r("on", 1900)},
	}
	for _, round := range runs {
		Compare(round)
	}
	if got := runs[1][1].RelativeToLogOff; got != 0.8 || runs[1][2].RelativeToLogOff != 0 {
		t.Fatalf("round 2: %+v", runs[1])
	}
	got := Summarize(runs)
	if len(got) != 3 || got[1].AttemptLog != "off" || got[2].AttemptLog != "on" {
		t.Fatalf("summaries %+v", got)
	}
	// Ratios 0.9, 0.8, 0.95: the median is 0.9.
	if on := got[2]; on.RelativeToLogOff != 0.9 || on.EventsPerS != 900 || !strings.Contains(on.String(), "0.90× log off: the delivery log costs 10.0%") {
		t.Errorf("on: %+v %q", on, on.String())
	}
	if off := got[1]; off.RelativeToLogOff != 0 || !strings.Contains(off.String(), "log off") {
		t.Errorf("off: %+v %q", off, off.String())
	}
}

// TestSubscriptionsDeadScenario runs subscriptions-dead small, in
// process, in both orders (rounds 1 and 2): the subscriptions are created
// through the API, every event reaches each healthy subscription of its
// application once in both runs, the dead endpoints are tried, and the
// two runs' healthy deliveries/s and CPU per delivery are compared.
func TestSubscriptionsDeadScenario(t *testing.T) {
	for _, round := range []int{1, 2} {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			var phases sync.Map
			o := Options{Scenario: SubscriptionsDead, Driver: "embedded", Events: 200, Concurrency: 4, Batch: 2, Round: round,
				Subscriptions: 50, DeadSubscriptions: 5, Timeout: testenv.Timeout(2 * time.Minute)}
			o.Progress = func(p Progress) {
				if p.Scenario != SubscriptionsDead || p.Total != 200 {
					t.Errorf("progress %+v", p)
				}
				phases.Store(strings.HasPrefix(p.Phase, "without the dead: "), true)
			}
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Partial || r.Delivered != 200 || r.Accepted != 200 || r.Duplicates != 0 || r.Sink != "subscriptions" {
				t.Fatalf("result = %+v", r)
			}
			// 5 applications of 10 subscriptions, one of them dead: 9
			// healthy deliveries per event.
			if r.Subscriptions != 50 || r.DeadSubscriptions != 5 || r.Deliveries != 200*9 {
				t.Errorf("layout: %+v", r)
			}
			if r.DeadAttempts == 0 || r.DeliveriesPerS <= 0 || r.AloneDeliveriesPerS <= 0 || r.AloneEventsPerS <= 0 || r.RelativeToAlone <= 0 {
				t.Errorf("figures: %+v", r)
			}
			if want := r.DeliveriesPerS / r.AloneDeliveriesPerS; r.RelativeToAlone != want {
				t.Errorf("ratio %v, want %v", r.RelativeToAlone, want)
			}
			if r.CPUPerDelivery <= 0 || r.AloneCPUPerDelivery <= 0 || r.CPURelativeToAlone != float64(r.AloneCPUPerDelivery)/float64(r.CPUPerDelivery) {
				t.Errorf("cpu figures: %+v", r)
			}
			for _, without := range []bool{true, false} {
				if _, ok := phases.Load(without); !ok {
					t.Errorf("no progress with without-the-dead = %v", without)
				}
			}
			line := r.String()
			for _, s := range []string{"50 subscriptions, 5 dead", "healthy deliveries/s", "without the dead", "cpu/delivery"} {
				if !strings.Contains(line, s) {
					t.Errorf("line %q lacks %q", line, s)
				}
			}
			s := Summarize([][]Result{{r}})[0]
			if s.DeliveriesPerS != r.DeliveriesPerS || s.AloneDeliveriesPerS != r.AloneDeliveriesPerS || s.RelativeToAlone != r.RelativeToAlone ||
				s.CPURelativeToAlone != r.CPURelativeToAlone {
				t.Errorf("summary %+v", s)
			}
		})
	}
}

// TestDeadLayoutSpreadsTheDeadOverTheApplications: with the defaults each
// application has one dead subscription of 10, and the run without the
// dead keeps exactly the healthy ones.
func TestDeadLayoutSpreadsTheDeadOverTheApplications(t *testing.T) {
	l := newDeadLayout(1000, 100, "http://ok/", "http://dead/", false)
	if len(l.apps) != 100 || len(l.subs) != 1000 || l.dead != 100 {
		t.Fatalf("apps %d subs %d dead %d", len(l.apps), len(l.subs), l.dead)
	}
	dead := map[string]int{}
	for _, s := range l.subs {
		if strings.HasPrefix(s.URL, "http://dead/") {
			dead[s.App]++
		}
	}
	for _, app := range l.apps {
		if dead[app] != 1 || l.perApp[app] != 9 {
			t.Errorf("%s: %d dead, %d healthy", app, dead[app], l.perApp[app])
		}
	}
	w := newDeadLayout(1000, 100, "http://ok/", "http://dead/", true)
	if len(w.subs) != 900 || w.dead != 0 {
		t.Errorf("without the dead: %d subs, %d dead", len(w.subs), w.dead)
	}
	for i, s := range w.subs {
		if strings.HasPrefix(s.URL, "http://dead/") || w.perApp[s.App] != 9 {
			t.Errorf("without the dead, subscription %d: %+v", i, s)
		}
	}
	for _, c := range []struct {
		subs, dead int
		field      string
	}{{55, 5, "--subscriptions"}, {0, 0, "--subscriptions"}, {50, 46, "--dead-subscriptions"}, {50, -1, "--dead-subscriptions"}} {
		if err := CheckDeadLayout(c.subs, c.dead); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("CheckDeadLayout(%d, %d) = %v, want an error naming %s", c.subs, c.dead, err, c.field)
		}
	}
	if err := CheckDeadLayout(50, 45); err != nil {
		t.Errorf("9 dead of 10 per application: %v", err)
	}
}

// TestProfileWritesTheCPUProfileOfTheRun: with Options.ProfileDir hookbus
// serves its profiles and the run writes the merged CPU profile of its
// measurement and a heap profile at its end.
func TestProfileWritesTheCPUProfileOfTheRun(t *testing.T) {
	o := small(Passthrough, "memory")
	o.ProfileDir, o.Round = t.TempDir(), 1
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(o.ProfileDir, "run1-passthrough-memory.cpu.pprof")
	heap := filepath.Join(o.ProfileDir, "run1-passthrough-memory.end.heap.pprof")
	if r.Partial || r.Profile != want || r.ProfileError != "" || !slices.Equal(r.Profiles, []string{heap, want}) {
		t.Fatalf("result = %+v", r)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.ParseData(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.SampleType) == 0 || p.SampleType[0].Type != "samples" {
		t.Errorf("not a CPU profile: %v", p.SampleType)
	}
	if !strings.Contains(r.String(), "profile "+want) {
		t.Errorf("line %q", r.String())
	}
}

// TestOrderedScenario measures the ordered scenario on the embedded queue:
// both runs deliver every event and the ratio is filled.
func TestOrderedScenario(t *testing.T) {
	o := small(Ordered, "embedded")
	o.Keys = 50
	o.ReceiverDelay = time.Millisecond
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Partial || r.Delivered != 300 || r.Keys != 50 || r.AloneEventsPerS <= 0 || r.RelativeToAlone <= 0 {
		t.Fatalf("result = %+v", r)
	}
	if !strings.Contains(r.String(), "50 keys: ordered") {
		t.Errorf("line: %s", r)
	}
	// The memory driver cannot order: the run says so.
	if _, err := Run(context.Background(), small(Ordered, "memory")); err == nil || !strings.Contains(err.Error(), "ordering") {
		t.Errorf("memory: %v", err)
	}
}
