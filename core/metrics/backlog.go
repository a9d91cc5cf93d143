package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backlog is one consumer group's position on one topic of the queue.
type Backlog struct {
	Group, Topic string
	// Pending counts messages not yet handed to the group.
	Pending uint64
	// Unacked counts messages handed out and not yet acknowledged,
	// including those waiting for a delayed retry.
	Unacked uint64
}

// BacklogReporter tells the queue's backlog. Backlog is called at every
// scrape, with a deadline of a few seconds; figures it returns beside an
// error are exported too (a driver may know some groups and not others).
// The metrics package defines it, rather than importing the queue, so
// that it does not depend on the queue drivers; the composition root
// adapts the queue to it.
type BacklogReporter interface {
	Backlog(ctx context.Context) ([]Backlog, error)
}

// BacklogFunc adapts a function to BacklogReporter.
type BacklogFunc func(ctx context.Context) ([]Backlog, error)

// Backlog calls f.
func (f BacklogFunc) Backlog(ctx context.Context) ([]Backlog, error) { return f(ctx) }

// backlogCollector asks the queue for its backlog at scrape time.
type backlogCollector struct {
	q                BacklogReporter
	pending, unacked *prometheus.Desc
}

// RegisterBacklog exports hookbus_queue_pending and hookbus_queue_unacked
// per consumer group and topic, as r reports them.
func (m *Metrics) RegisterBacklog(r BacklogReporter) {
	m.Registry.MustRegister(&backlogCollector{
		q:       r,
		pending: prometheus.NewDesc("hookbus_queue_pending", "Messages queued for a consumer group and not yet handed out.", []string{"group", "topic"}, nil),
		unacked: prometheus.NewDesc("hookbus_queue_unacked", "Messages handed to a consumer group and not yet acknowledged, including retries waiting for their time.", []string{"group", "topic"}, nil),
	})
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.unacked
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bl, _ := c.q.Backlog(ctx)
	for _, b := range bl {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.Pending), b.Group, b.Topic)
		ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(b.Unacked), b.Group, b.Topic)
	}
}
