package app

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/internal/testenv"
)

// scrape is one /metrics page, parsed: family name -> series (labels as
// `name="value",...` sorted by name) -> value (a histogram's count).
type scrape map[string]map[string]float64

// scrapeMetrics gets /metrics over HTTP and parses it with expfmt, as
// Prometheus reads it.
func scrapeMetrics(t *testing.T, a *App) (scrape, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := scrape{}
	for name, mf := range mfs {
		series := map[string]float64{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				v = float64(m.GetHistogram().GetSampleCount())
			default:
				v = m.GetUntyped().GetValue()
			}
			series[strings.Join(labels, ",")] = v
		}
		out[name] = series
	}
	return out, mfs
}

// value is one series' value; ok false when the series is absent.
func (s scrape) value(name, labels string) (float64, bool) {
	v, ok := s[name][labels]
	return v, ok
}

// mustBe fails unless the series exists with value want.
func (s scrape) mustBe(t *testing.T, name, labels string, want float64) {
	t.Helper()
	v, ok := s.value(name, labels)
	if !ok {
		t.Errorf("%s{%s} absent; the family has %v", name, labels, s[name])
	} else if v != want {
		t.Errorf("%s{%s} = %v, want %v", name, labels, v, want)
	}
}

// zeroSeries lists the series a configured component has at zero before
// any traffic: per source, per pipeline->sink route, per sink, per script.
func zeroSeries(sources []string, routes []metrics.Route, sinks, scripts []string) map[string][]string {
	want := map[string][]string{}
	add := func(name, labels string) { want[name] = append(want[name], labels) }
	for _, s := range sources {
		add("hookbus_events_received_total", fmt.Sprintf("source=%q", s))
	}
	for _, r := range routes {
		l := fmt.Sprintf("pipeline=%q,sink=%q", r.Pipeline, r.Sink)
		add("hookbus_events_delivered_total", l)
		add("hookbus_events_filtered_total", l)
		for _, k := range deadletter.Kinds() {
			add("hookbus_events_dead_lettered_total", fmt.Sprintf("kind=%q,", k)+l)
		}
	}
	for _, s := range sinks {
		for _, o := range metrics.AttemptOutcomes() {
			for _, c := range metrics.StatusClasses() {
				add("hookbus_delivery_attempts_total", fmt.Sprintf("outcome=%q,sink=%q,status_class=%q", o, s, c))
			}
		}
		for _, n := range []string{"hookbus_delivery_retries_total", "hookbus_deliveries_in_flight", "hookbus_delivery_not_tried_total",
			"hookbus_delivery_delay_seconds", "hookbus_delivery_attempt_seconds", "hookbus_oldest_waiting_seconds"} {
			add(n, fmt.Sprintf("sink=%q", s))
		}
	}
	for _, s := range scripts {
		add("hookbus_script_duration_seconds", fmt.Sprintf("script=%q", s))
		add("hookbus_script_errors_total", fmt.Sprintf("script=%q", s))
	}
	return want
}

func (s scrape) mustBeZero(t *testing.T, want map[string][]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		for _, l := range want[name] {
			s.mustBe(t, name, l, 0)
		}
	}
}

const seriesConfig = `version: 1
server: {listen: "127.0.0.1:0", shutdown_timeout: 5s}
data_dir: DIR/data
queue: {driver: embedded}
reload: {watch: false}
scripts: {timeout: 1s}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "URL", secret: ` + testSecret + `, timeout: 5s, allow_private_networks: true, retry: {schedule: [50ms, 50ms, 50ms]}}
pipelines:
  orders:
    from: [shop]
    steps:
      - filter: only_paid.js
    to: [partner]
`

// Every series of a configured source, route, sink and script exists at
// zero before any traffic, and after a reload for the components it adds;
// after events to a receiver that fails a known share, the counters,
// histograms and the ratios the README's PromQL computes are right.
func TestMetricsSeriesFromStartAndRatios(t *testing.T) {
	rcv := newReceiver(t)
	cfg := strings.ReplaceAll(seriesConfig, "URL", rcv.srv.URL)
	r := startWithScripts(t, cfg, "only_paid.js", "reshape.js")

	s, mfs := scrapeMetrics(t, r.a)
	s.mustBeZero(t, zeroSeries([]string{"shop"}, []metrics.Route{{Pipeline: "orders", Sink: "partner"}}, []string{"partner"}, []string{"only_paid.js"}))
	// The delay histogram has the SLO boundaries.
	var bounds []float64
	for _, b := range mfs["hookbus_delivery_delay_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	for _, b := range []float64{0.1, 1, 5, 30, 60, 300, 3600} {
		if !slices.Contains(bounds, b) {
			t.Errorf("hookbus_delivery_delay_seconds buckets %v lack %v", bounds, b)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 10 paid events: 2 answered 400 (permanent: dead-lettered), 3
	// answered 503 once, then delivered; 2 unpaid ones are filtered.
	for i := range 10 {
		id := fmt.Sprintf("m%d", i)
		switch {
		case i < 2:
			rcv.answer(id, response{status: http.StatusBadRequest})
		case i < 5:
			rcv.answer(id, response{status: http.StatusServiceUnavailable})
		}
		mustPost(t, r.a, "shop", id)
	}
	for i := range 2 {
		if code, _ := post(t, r.a, "shop", "application/json", fmt.Sprintf(`{"id":"u%d","type":"order.created"}`, i)); code != http.StatusAccepted {
			t.Fatalf("POST u%d: %d", i, code)
		}
	}
	const delivered, dead, retried, filtered = 8, 2, 3, 2
	testenv.Eventually(t, 30*time.Second, "every event delivered, dead-lettered or filtered", func() bool {
		s, _ := scrapeMetrics(t, r.a)
		d, _ := s.value("hookbus_events_delivered_total", `pipeline="orders",sink="partner"`)
		dl, _ := s.value("hookbus_events_dead_lettered_total", `kind="permanent",pipeline="orders",sink="partner"`)
		f, _ := s.value("hookbus_events_filtered_total", `pipeline="orders",sink="partner"`)
		return d == delivered && dl == dead && f == filtered
	})
	s, _ = scrapeMetrics(t, r.a)
	s.mustBe(t, "hookbus_events_received_total", `source="shop"`, 12)
	s.mustBe(t, "hookbus_delivery_attempts_total", `outcome="ok",sink="partner",status_class="2xx"`, delivered)
	s.mustBe(t, "hookbus_delivery_attempts_total", `outcome="retry",sink="partner",status_class="5xx"`, retried)
	s.mustBe(t, "hookbus_delivery_attempts_total", `outcome="permanent",sink="partner",status_class="4xx"`, dead)
	s.mustBe(t, "hookbus_delivery_retries_total", `sink="partner"`, retried)
	s.mustBe(t, "hookbus_delivery_delay_seconds", `sink="partner"`, delivered)
	s.mustBe(t, "hookbus_delivery_attempt_seconds", `sink="partner"`, delivered+retried+dead)
	s.mustBe(t, "hookbus_deliveries_in_flight", `sink="partner"`, 0)
	s.mustBe(t, "hookbus_script_duration_seconds", `script="only_paid.js"`, 12)
	for _, k := range deadletter.Kinds() {
		if k != deadletter.KindPermanent {
			s.mustBe(t, "hookbus_events_dead_lettered_total", fmt.Sprintf(`kind=%q,pipeline="orders",sink="partner"`, k), 0)
		}
	}
	// The ratios of the README's PromQL, over the counters since start.
	attempts, okAttempts, deadLettered := 0.0, 0.0, 0.0
	for l, v := range s["hookbus_delivery_attempts_total"] {
		if strings.Contains(l, `sink="partner"`) {
			attempts += v
			if strings.Contains(l, `outcome="ok"`) {
				okAttempts += v
			}
		}
	}
	for l, v := range s["hookbus_events_dead_lettered_total"] {
		if strings.Contains(l, `sink="partner"`) {
			deadLettered += v
		}
	}
	if share := okAttempts / attempts; share != 8.0/13 {
		t.Errorf("attempt success share = %v/%v, want 8/13", okAttempts, attempts)
	}
	if share := delivered / (delivered + deadLettered); share != 0.8 {
		t.Errorf("delivery success share = %v, want 0.8", share)
	}

	// A reload adds a source, a sink, a pipeline and a script: their
	// series are there at zero; partner's keep their values.
	rcv2 := newReceiver(t)
	added := cfg + `  audit:
    from: [shop, billing]
    steps:
      - transform: reshape.js
    to: [partner, archive]
`
	added = strings.Replace(added, "  shop: {type: http}\n", "  shop: {type: http}\n  billing: {type: http}\n", 1)
	added = strings.Replace(added, "pipelines:\n", `  archive:
    type: webhook
    config: {url: "`+rcv2.srv.URL+`", secret: `+testSecret+`, allow_private_networks: true}
pipelines:
`, 1)
	r.mustReload(added)
	s, _ = scrapeMetrics(t, r.a)
	s.mustBeZero(t, zeroSeries([]string{"billing"}, []metrics.Route{{Pipeline: "audit", Sink: "partner"}, {Pipeline: "audit", Sink: "archive"}},
		[]string{"archive"}, []string{"reshape.js"}))
	s.mustBe(t, "hookbus_events_delivered_total", `pipeline="orders",sink="partner"`, delivered)
}

// startWithScripts starts a reloadable instance from y, with the named
// scripts of testdata beside its configuration file (so that they are
// measured by their names).
func startWithScripts(t *testing.T, y string, scripts ...string) *reloadable {
	t.Helper()
	r := &reloadable{t: t, dir: t.TempDir(), tag: "series"}
	r.path = filepath.Join(r.dir, "config.yaml")
	for _, name := range scripts {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.write(y)
	cfg, err := LoadConfig(r.path, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	r.a = startApp(t, cfg)
	return r
}
