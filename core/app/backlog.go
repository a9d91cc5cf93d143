package app

import (
	"context"

	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/queue"
)

// registerBacklog exports q's backlog figures, when its driver can tell
// them (queue.BacklogReporter). metrics defines its own Backlog so it
// need not import the queue drivers; this is where the two meet.
func registerBacklog(m *metrics.Metrics, q queue.Queue) {
	br, ok := q.(queue.BacklogReporter)
	if !ok {
		return
	}
	m.RegisterBacklog(metrics.BacklogFunc(func(ctx context.Context) ([]metrics.Backlog, error) {
		bl, err := br.Backlog(ctx)
		out := make([]metrics.Backlog, len(bl))
		for i, b := range bl {
			out[i] = metrics.Backlog{Group: b.Group, Topic: b.Topic, Pending: b.Pending, Unacked: b.Unacked}
		}
		return out, err
	}))
}
