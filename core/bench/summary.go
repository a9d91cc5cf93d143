package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Compare fills the same-round comparisons of a round's results: each
// result's events/s against the round's Direct run, and PluginSink's
// against Transform on the same driver.
func Compare(round []Result) {
	var direct float64
	transform := map[string]float64{}
	for _, r := range round {
		switch r.Scenario {
		case Direct:
			direct = r.EventsPerS
		case Transform:
			transform[r.Driver] = r.EventsPerS
		}
	}
	for i := range round {
		r := &round[i]
		if r.Scenario != Direct && direct > 0 {
			r.DirectEventsPerS = direct
			r.RatioToDirect = r.EventsPerS / direct
		}
		if b := transform[r.Driver]; r.Scenario == PluginSink && b > 0 {
			r.InProcessRatio = r.EventsPerS / b
		}
	}
	// The delivery log on against off, scenario by scenario.
	type key struct{ scenario, driver, sink string }
	off := map[key]float64{}
	for _, r := range round {
		if r.AttemptLog == "off" {
			off[key{r.Scenario, r.Driver, r.Sink}] = r.EventsPerS
		}
	}
	for i := range round {
		r := &round[i]
		if b := off[key{r.Scenario, r.Driver, r.Sink}]; r.AttemptLog != "off" && r.AttemptLog != "" && b > 0 {
			r.RelativeToLogOff = r.EventsPerS / b
		}
	}
}

// Summary is the median over runs of one scenario, driver and sink.
type Summary struct {
	Scenario string `json:"scenario"`
	Driver   string `json:"driver,omitempty"`
	Sink     string `json:"sink,omitempty"`
	Runs     int    `json:"runs"`
	// PartialRuns counts the runs that ended early (their figures count).
	PartialRuns int     `json:"partial_runs,omitempty"`
	EventsPerS  float64 `json:"events_per_s"`
	// DirectEventsPerS, RatioToDirect, InProcessRatio and RelativeToAlone
	// are medians of the per-run figures, not ratios of medians: each run
	// is compared with what ran in the same round.
	DirectEventsPerS float64 `json:"direct_events_per_s,omitempty"`
	RatioToDirect    float64 `json:"ratio_to_direct,omitempty"`
	InProcessRatio   float64 `json:"in_process_ratio,omitempty"`
	RelativeToAlone  float64 `json:"relative_to_alone,omitempty"`
	AloneEventsPerS  float64 `json:"alone_events_per_s,omitempty"`
	// AttemptLog is the runs' Options.AttemptLog; RelativeToLogOff the
	// median of their RelativeToLogOff.
	AttemptLog       string  `json:"attempt_log,omitempty"`
	RelativeToLogOff float64 `json:"relative_to_log_off,omitempty"`
	// DeliveriesPerS and AloneDeliveriesPerS are the medians of the runs'
	// (Subscriptions, SubscriptionsDead).
	DeliveriesPerS      float64       `json:"deliveries_per_s,omitempty"`
	AloneDeliveriesPerS float64       `json:"alone_deliveries_per_s,omitempty"`
	CPURelativeToAlone  float64       `json:"cpu_relative_to_alone,omitempty"`
	P50                 time.Duration `json:"p50_ns"`
	P99                 time.Duration `json:"p99_ns"`
	P999                time.Duration `json:"p999_ns"`
	CPUPerEvent         time.Duration `json:"cpu_per_event_ns"`
	PeakRSS             int64         `json:"peak_rss_bytes,omitempty"`
	PeakRSSBacklog      int64         `json:"peak_rss_backlog_bytes,omitempty"`
	PeakRSSDrain        int64         `json:"peak_rss_drain_bytes,omitempty"`
	RSSAfter            int64         `json:"rss_after_bytes,omitempty"`
	DrainEventsPerS     float64       `json:"drain_events_per_s,omitempty"`
	Lost                int           `json:"lost"`
}

// Summarize takes the results of each round (runs[i] holds round i's
// results, after Compare) and returns one Summary per scenario, driver and
// sink, in first-seen order.
func Summarize(runs [][]Result) []Summary {
	type key struct{ scenario, driver, sink, log string }
	var order []key
	by := map[key][]Result{}
	for _, run := range runs {
		for _, r := range run {
			k := key{r.Scenario, r.Driver, r.Sink, r.AttemptLog}
			if _, ok := by[k]; !ok {
				order = append(order, k)
			}
			by[k] = append(by[k], r)
		}
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		rs := by[k]
		med := func(f func(Result) float64) float64 {
			var v []float64
			for _, r := range rs {
				if x := f(r); x != 0 {
					v = append(v, x)
				}
			}
			return median(v)
		}
		dur := func(f func(Result) time.Duration) time.Duration {
			return time.Duration(med(func(r Result) float64 { return float64(f(r)) }))
		}
		byt := func(f func(Result) int64) int64 {
			return int64(med(func(r Result) float64 { return float64(f(r)) }))
		}
		s := Summary{
			Scenario: k.scenario, Driver: k.driver, Sink: k.sink, AttemptLog: k.log, Runs: len(rs),
			RelativeToLogOff:    med(func(r Result) float64 { return r.RelativeToLogOff }),
			EventsPerS:          med(func(r Result) float64 { return r.EventsPerS }),
			DirectEventsPerS:    med(func(r Result) float64 { return r.DirectEventsPerS }),
			RatioToDirect:       med(func(r Result) float64 { return r.RatioToDirect }),
			InProcessRatio:      med(func(r Result) float64 { return r.InProcessRatio }),
			RelativeToAlone:     med(func(r Result) float64 { return r.RelativeToAlone }),
			AloneEventsPerS:     med(func(r Result) float64 { return r.AloneEventsPerS }),
			DeliveriesPerS:      med(func(r Result) float64 { return r.DeliveriesPerS }),
			AloneDeliveriesPerS: med(func(r Result) float64 { return r.AloneDeliveriesPerS }),
			CPURelativeToAlone:  med(func(r Result) float64 { return r.CPURelativeToAlone }),
			P50:                 dur(func(r Result) time.Duration { return r.P50 }),
			P99:                 dur(func(r Result) time.Duration { return r.P99 }),
			P999:                dur(func(r Result) time.Duration { return r.P999 }),
			CPUPerEvent:         dur(func(r Result) time.Duration { return r.CPUPerEvent }),
			PeakRSS:             byt(func(r Result) int64 { return r.PeakRSS }),
			PeakRSSBacklog:      byt(func(r Result) int64 { return r.PeakRSSBacklog }),
			PeakRSSDrain:        byt(func(r Result) int64 { return r.PeakRSSDrain }),
			RSSAfter:            byt(func(r Result) int64 { return r.RSSAfter }),
			DrainEventsPerS:     med(func(r Result) float64 { return r.DrainEventsPerS }),
		}
		for _, r := range rs {
			if r.Partial {
				s.PartialRuns++
			}
			s.Lost = max(s.Lost, r.Lost)
		}
		out = append(out, s)
	}
	return out
}

// median of v (the mean of the middle two for an even count); 0 when empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func cpuText(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%dµs", d.Microseconds())
}

func label(scenario, driver, sink string) string {
	if scenario == Direct {
		return fmt.Sprintf("%-18s %-9s %-14s", scenario, "-", "-")
	}
	return fmt.Sprintf("%-18s %-9s %-14s", scenario, driver, sink)
}

// logLabel names the delivery log's setting of a run, when it was set.
func logLabel(setting string) string {
	if setting == "" {
		return ""
	}
	return fmt.Sprintf(" log %-3s", setting)
}

// String is one line: the figures, the comparisons and, for a partial
// run, why it ended.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s %7d/%d events  %8.0f events/s", label(r.Scenario, r.Driver, r.Sink), logLabel(r.AttemptLog), r.Delivered, r.Events, r.EventsPerS)
	if r.RelativeToLogOff > 0 {
		fmt.Fprintf(&b, " (%.2f× log off)", r.RelativeToLogOff)
	}
	if r.RatioToDirect > 0 {
		fmt.Fprintf(&b, " (%.2f× direct %.0f/s)", r.RatioToDirect, r.DirectEventsPerS)
	}
	if r.InProcessRatio > 0 {
		fmt.Fprintf(&b, " (%.2f× in process)", r.InProcessRatio)
	}
	fmt.Fprintf(&b, "  p50 %.2fms p99 %.2fms p999 %.2fms  ingest p50 %.2fms p99 %.2fms  cpu/event %s",
		ms(r.P50), ms(r.P99), ms(r.P999), ms(r.IngestP50), ms(r.IngestP99), cpuText(r.CPUPerEvent))
	if r.PeakRSS > 0 {
		fmt.Fprintf(&b, "  rss peak %.0fMB", mb(r.PeakRSS))
	}
	if r.Scenario == SlowEndpoint {
		fmt.Fprintf(&b, "  alone %.0f/s: %.2f× alone, %d dead attempts", r.AloneEventsPerS, r.RelativeToAlone, r.DeadAttempts)
		if r.Circuit != "" {
			fmt.Fprintf(&b, " (circuit %s)", r.Circuit)
		}
	}
	if r.Scenario == Subscriptions {
		fmt.Fprintf(&b, "  %.0f deliveries/s: %.2f× one webhook sink (%.0f/s)", r.DeliveriesPerS, r.RelativeToAlone, r.AloneEventsPerS)
	}
	if r.Scenario == Ordered {
		fmt.Fprintf(&b, "  %d keys: ordered %.0f/s, unordered %.0f/s: %.2f× unordered", r.Keys, r.EventsPerS, r.AloneEventsPerS, r.RelativeToAlone)
	}
	if r.Scenario == SubscriptionsDead {
		fmt.Fprintf(&b, "  %d subscriptions, %d dead: %.0f healthy deliveries/s, without the dead %.0f/s: %.2f×; cpu/delivery %s, without the dead %s: %.2f×; %d dead attempts",
			r.Subscriptions, r.DeadSubscriptions, r.DeliveriesPerS, r.AloneDeliveriesPerS, r.RelativeToAlone,
			cpuText(r.CPUPerDelivery), cpuText(r.AloneCPUPerDelivery), r.CPURelativeToAlone, r.DeadAttempts)
	}
	if r.Deferrals > 0 || r.NotTried > 0 {
		fmt.Fprintf(&b, "  %d deferred, %d not tried", r.Deferrals, r.NotTried)
	}
	if r.Scenario == Backlog {
		fmt.Fprintf(&b, "  backlog rss peak %.0fMB, drain peak %.0fMB, after %.0fMB, drain %.0f events/s, %d refused, lost %d",
			mb(r.PeakRSSBacklog), mb(r.PeakRSSDrain), mb(r.RSSAfter), r.DrainEventsPerS, r.Refused, r.Lost)
	}
	fmt.Fprintf(&b, "  dup %d", r.Duplicates)
	switch {
	case r.Profile != "":
		fmt.Fprintf(&b, "  profile %s", r.Profile)
	case r.ProfileError != "":
		fmt.Fprintf(&b, "  no profile: %s", r.ProfileError)
	}
	if r.Partial {
		fmt.Fprintf(&b, "  PARTIAL: %s", r.Reason)
	}
	return b.String()
}

// String is one line with the medians.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s median of %d: %8.0f events/s", label(s.Scenario, s.Driver, s.Sink), logLabel(s.AttemptLog), s.Runs, s.EventsPerS)
	if s.RelativeToLogOff > 0 {
		fmt.Fprintf(&b, " (%.2f× log off: the delivery log costs %.1f%%)", s.RelativeToLogOff, 100*(1-s.RelativeToLogOff))
	}
	if s.RatioToDirect > 0 {
		fmt.Fprintf(&b, " (%.2f× direct %.0f/s)", s.RatioToDirect, s.DirectEventsPerS)
	}
	if s.InProcessRatio > 0 {
		fmt.Fprintf(&b, " (%.2f× in process)", s.InProcessRatio)
	}
	fmt.Fprintf(&b, "  p50 %.2fms p99 %.2fms p999 %.2fms  cpu/event %s", ms(s.P50), ms(s.P99), ms(s.P999), cpuText(s.CPUPerEvent))
	if s.PeakRSS > 0 {
		fmt.Fprintf(&b, "  rss peak %.0fMB", mb(s.PeakRSS))
	}
	if s.Scenario == SlowEndpoint {
		fmt.Fprintf(&b, "  %.2f× alone (%.0f/s)", s.RelativeToAlone, s.AloneEventsPerS)
	}
	if s.Scenario == Subscriptions {
		fmt.Fprintf(&b, "  deliveries %.2f× one webhook sink (%.0f/s)", s.RelativeToAlone, s.AloneEventsPerS)
	}
	if s.Scenario == Ordered {
		fmt.Fprintf(&b, "  ordered %.0f/s, unordered %.0f/s: %.2f× unordered", s.EventsPerS, s.AloneEventsPerS, s.RelativeToAlone)
	}
	if s.Scenario == SubscriptionsDead {
		fmt.Fprintf(&b, "  healthy deliveries %.0f/s, without the dead %.0f/s: %.2f×; per CPU second %.2f×",
			s.DeliveriesPerS, s.AloneDeliveriesPerS, s.RelativeToAlone, s.CPURelativeToAlone)
	}
	if s.Scenario == Backlog {
		fmt.Fprintf(&b, "  backlog rss peak %.0fMB, drain peak %.0fMB, after %.0fMB, drain %.0f events/s, lost %d",
			mb(s.PeakRSSBacklog), mb(s.PeakRSSDrain), mb(s.RSSAfter), s.DrainEventsPerS, s.Lost)
	}
	if s.PartialRuns > 0 {
		fmt.Fprintf(&b, "  (%d partial)", s.PartialRuns)
	}
	return b.String()
}
