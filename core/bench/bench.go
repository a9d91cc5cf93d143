// Package bench measures hookbus end to end on this machine: events are
// POSTed to the ingest endpoint, go through the queue and a no-op transform
// script, and are delivered as signed webhooks to a local receiver.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
)

// Options of one run.
type Options struct {
	Driver      string // queue driver: embedded, memory, nats, ...
	QueueURL    string
	Events      int // events to send
	Concurrency int // concurrent producers
	Batch       int // events per ingest request
	// WebhookPlugin, when set, is the path of the hookbus-webhook plugin
	// binary: the sink then runs out of process instead of in process.
	WebhookPlugin string
	Logger        *slog.Logger
}

// Result of one run.
type Result struct {
	Driver     string
	Sink       string // "webhook" (in process) or "webhook-plugin"
	Events     int
	Delivered  int
	Duplicates int
	Elapsed    time.Duration
	EventsPerS float64
	P50, P99   time.Duration
	IngestP50  time.Duration // time for the 202
	IngestP99  time.Duration
	// CPUPerEvent is the CPU time of this process and its plugin
	// processes, generator and receiver included, divided by the events.
	CPUPerEvent time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%-9s %-14s %7d events  %8.0f events/s  delivery p50 %7.2fms  p99 %7.2fms  ingest p50 %6.2fms p99 %6.2fms  cpu/event %4dµs  dup %d",
		r.Driver, r.Sink, r.Delivered, r.EventsPerS, ms(r.P50), ms(r.P99), ms(r.IngestP50), ms(r.IngestP99), r.CPUPerEvent.Microseconds(), r.Duplicates)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Events <= 0 {
		o.Events = 20000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Batch <= 0 {
		o.Batch = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir, err := os.MkdirTemp("", "hookbus-bench-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)

	// Receiver.
	var mu sync.Mutex
	lat := make([]time.Duration, 0, o.Events)
	seen := make(map[string]bool, o.Events)
	dups := 0
	var delivered atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	rsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				Sent int64 `json:"sent"`
			} `json:"data"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &ev)
		now := time.Now()
		mu.Lock()
		if seen[ev.ID] {
			dups++
		} else {
			seen[ev.ID] = true
			lat = append(lat, now.Sub(time.Unix(0, ev.Data.Sent)))
			if delivered.Add(1) == int64(o.Events) {
				close(done)
			}
		}
		mu.Unlock()
		last.Store(now.UnixNano())
		w.WriteHeader(http.StatusNoContent)
	})}
	go rsrv.Serve(ln)
	defer rsrv.Close()

	script := filepath.Join(dir, "noop.js")
	if err := os.WriteFile(script, []byte("function transform(event, ctx) { return event; }\n"), 0o644); err != nil {
		return Result{}, err
	}
	cfg := config.Default()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Queue.Driver = o.Driver
	cfg.Queue.URL = o.QueueURL
	cfg.Queue.Namespace = "bench" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	cfg.Log.Level = "error"
	cfg.Sources["load"] = config.Component{Type: "http"}
	sinkType := "webhook"
	if o.WebhookPlugin != "" {
		sinkType = "webhook-plugin"
		cfg.Plugins[sinkType] = config.Plugin{Path: o.WebhookPlugin}
	}
	cfg.Sinks["receiver"] = config.Component{Type: sinkType, Config: map[string]any{
		"url": "http://" + ln.Addr().String() + "/", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"allow_private_networks": true, "max_in_flight": 64,
	}}
	cfg.Pipelines["load"] = config.Pipeline{From: []string{"load"}, Steps: []config.Step{{Transform: script}}, To: []string{"receiver"}}
	cpu0 := cpuTime()
	a, err := app.New(ctx, cfg, o.Logger)
	if err != nil {
		return Result{}, err
	}
	if err := a.Start(ctx); err != nil {
		_ = a.Shutdown(context.Background())
		return Result{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Shutdown(sctx)
	}()

	url := "http://" + a.Addr() + "/v1/sources/load/events"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency}}
	var next atomic.Int64
	var ingestMu sync.Mutex
	ingest := make([]time.Duration, 0, o.Events/o.Batch+1)
	errs := make(chan error, o.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			var buf bytes.Buffer
			for {
				first := next.Add(int64(o.Batch)) - int64(o.Batch)
				if first >= int64(o.Events) {
					return
				}
				n := min(int64(o.Batch), int64(o.Events)-first)
				buf.Reset()
				buf.WriteByte('[')
				sent := time.Now().UnixNano()
				for i := range n {
					if i > 0 {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"id":"ev-%d","type":"bench.event","data":{"sent":%d,"pad":"0123456789abcdef0123456789abcdef"}}`, first+i, sent)
				}
				buf.WriteByte(']')
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(buf.Bytes()))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("ingest: HTTP %d", resp.StatusCode)
					return
				}
				d := time.Since(t0)
				ingestMu.Lock()
				ingest = append(ingest, d)
				ingestMu.Unlock()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return Result{}, err
	default:
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return Result{}, fmt.Errorf("only %d of %d events delivered within 2 minutes", delivered.Load(), o.Events)
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	elapsed := time.Unix(0, last.Load()).Sub(start)
	// Stop now so the plugin processes are reaped and their CPU counted.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = a.Shutdown(sctx)
	cancel()
	cpu := cpuTime() - cpu0
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	slices.Sort(ingest)
	return Result{
		Driver: o.Driver, Sink: sinkType, Events: o.Events, Delivered: int(delivered.Load()), Duplicates: dups, Elapsed: elapsed,
		EventsPerS:  float64(delivered.Load()) / elapsed.Seconds(),
		CPUPerEvent: cpu / time.Duration(max(1, o.Events)),
		P50:         pct(lat, 0.50), P99: pct(lat, 0.99), IngestP50: pct(ingest, 0.5), IngestP99: pct(ingest, 0.99),
	}, nil
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// cpuTime is the user+system CPU time of this process and its reaped children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// Summary is the median of several runs of one driver and sink.
type Summary struct {
	Driver, Sink string
	Runs         int
	EventsPerS   float64
	P50, P99     time.Duration
	CPUPerEvent  time.Duration
	// Ratio is the median over runs of this sink's events/s divided by the
	// in-process webhook's on the same driver in the same run; 0 for the
	// in-process webhook itself or without one to compare.
	Ratio float64
}

func (s Summary) String() string {
	ratio := ""
	if s.Ratio > 0 {
		ratio = fmt.Sprintf(" (%.2f× in process)", s.Ratio)
	}
	return fmt.Sprintf("%-9s %-14s median of %d: %8.0f events/s%s  delivery p50 %7.2fms  p99 %7.2fms  cpu/event %4dµs",
		s.Driver, s.Sink, s.Runs, s.EventsPerS, ratio, ms(s.P50), ms(s.P99), s.CPUPerEvent.Microseconds())
}

// Summarize takes the results of each run (runs[i] holds run i's results)
// and returns one Summary per driver and sink, in first-seen order.
func Summarize(runs [][]Result) []Summary {
	type key struct{ driver, sink string }
	var order []key
	by := map[key][]Result{}
	ratios := map[key][]float64{}
	for _, run := range runs {
		base := map[string]float64{}
		for _, r := range run {
			if r.Sink == "webhook" {
				base[r.Driver] = r.EventsPerS
			}
		}
		for _, r := range run {
			k := key{r.Driver, r.Sink}
			if _, ok := by[k]; !ok {
				order = append(order, k)
			}
			by[k] = append(by[k], r)
			if b := base[r.Driver]; r.Sink != "webhook" && b > 0 {
				ratios[k] = append(ratios[k], r.EventsPerS/b)
			}
		}
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		rs := by[k]
		med := func(f func(Result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		out = append(out, Summary{
			Driver: k.driver, Sink: k.sink, Runs: len(rs),
			EventsPerS:  med(func(r Result) float64 { return r.EventsPerS }),
			P50:         time.Duration(med(func(r Result) float64 { return float64(r.P50) })),
			P99:         time.Duration(med(func(r Result) float64 { return float64(r.P99) })),
			CPUPerEvent: time.Duration(med(func(r Result) float64 { return float64(r.CPUPerEvent) })),
			Ratio:       median(ratios[k]),
		})
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
