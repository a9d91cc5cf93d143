package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WaitingReporter tells, per sink, the ingest time of the oldest event
// waiting for a retry (whose last attempt was a retry); a sink with
// nothing waiting may be left out. The attempt store implements it; the
// metrics package defines it so that it does not depend on the store.
type WaitingReporter interface {
	OldestWaiting(ctx context.Context) (map[string]time.Time, error)
}

// WaitingFunc adapts a function to WaitingReporter.
type WaitingFunc func(ctx context.Context) (map[string]time.Time, error)

// OldestWaiting calls f.
func (f WaitingFunc) OldestWaiting(ctx context.Context) (map[string]time.Time, error) { return f(ctx) }

// WaitingOptions tune RegisterOldestWaiting.
type WaitingOptions struct {
	// CacheFor is how long the reporter's answer is used before it is
	// asked again (default 5s): scrapes stay cheap however often they
	// come. The age is computed at each scrape from the cached time.
	CacheFor time.Duration
	// Timeout bounds one call of the reporter (default 2s).
	Timeout time.Duration
	// OnError, when set, is told every failed call (the gauge then
	// reports the last answer while it has one, and nothing before).
	OnError func(error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RegisterOldestWaiting exports hookbus_oldest_waiting_seconds{sink}: the
// age of the oldest event waiting for a retry, for every sink of the
// declared topology (see Declare); 0 for a sink with nothing waiting.
// Sinks r reports that are not configured are left out.
func (m *Metrics) RegisterOldestWaiting(r WaitingReporter, o WaitingOptions) {
	if o.CacheFor <= 0 {
		o.CacheFor = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m.Registry.MustRegister(&waitingCollector{
		m: m, r: r, o: o,
		desc: prometheus.NewDesc("hookbus_oldest_waiting_seconds", "Age of the oldest event waiting for a retry, per sink (0 when none waits).", []string{"sink"}, nil),
	})
}

// waitingCollector asks the reporter at most once per CacheFor.
type waitingCollector struct {
	m    *Metrics
	r    WaitingReporter
	o    WaitingOptions
	desc *prometheus.Desc

	mu      sync.Mutex
	asked   time.Time // when the reporter was last asked; zero: never
	oldest  map[string]time.Time
	haveAny bool // a call succeeded: oldest is its answer
}

func (c *waitingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *waitingCollector) Collect(ch chan<- prometheus.Metric) {
	oldest, ok := c.current()
	if !ok {
		return
	}
	now := c.o.Now()
	for _, sink := range c.m.declaredSinks() {
		age := 0.0
		if t, waiting := oldest[sink]; waiting && !t.IsZero() {
			age = max(now.Sub(t).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age, sink)
	}
}

// current returns the cached answer, asking the reporter again when it
// is older than CacheFor; ok is false while no call has succeeded.
func (c *waitingCollector) current() (map[string]time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if c.asked.IsZero() || now.Sub(c.asked) >= c.o.CacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
		got, err := c.r.OldestWaiting(ctx)
		cancel()
		if err != nil {
			if c.o.OnError != nil {
				c.o.OnError(err)
			}
		} else {
			c.oldest, c.haveAny = got, true
		}
		// A failed call is not repeated before CacheFor either: a store
		// that is down is not asked at every scrape.
		c.asked = now
	}
	return c.oldest, c.haveAny
}
