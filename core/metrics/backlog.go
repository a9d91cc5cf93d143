package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/core/queue"
)

// backlogCollector asks the queue for its backlog at scrape time.
type backlogCollector struct {
	q                queue.BacklogReporter
	pending, unacked *prometheus.Desc
}

// RegisterBacklog exports hookbus_queue_pending and hookbus_queue_unacked
// per consumer group and topic, when the queue driver can report them.
func (m *Metrics) RegisterBacklog(q queue.Queue) {
	br, ok := q.(queue.BacklogReporter)
	if !ok {
		return
	}
	m.Registry.MustRegister(&backlogCollector{
		q:       br,
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
