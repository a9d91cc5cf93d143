package app

import (
	"context"
	"time"

	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
)

// handleStaleGroups deals with durable consumers that no pipeline or sink
// of the configuration uses any more. Under interest retention they keep
// their messages for ever (a removed pipeline's consumer on a live source
// keeps every new event too). The embedded queue belongs to this process
// alone, so they are deleted, with a warning that says how many undelivered
// messages went with them. On a shared NATS server another instance may
// still run a configuration that uses them: they are only reported.
func (a *App) handleStaleGroups(ctx context.Context) {
	js, ok := a.Queue.(queue.GroupLister)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stale, err := js.StaleGroups(ctx)
	if err != nil {
		a.log.Warn("could not check the queue for consumers of removed pipelines and sinks", "error", err)
	}
	sinks := map[string]bool{}
	for _, name := range a.rt.Load().cfg.SinkNames() {
		sinks[queue.SinkTopic(name)] = true
	}
	for _, g := range stale {
		// The partitions of a sink whose ordering is off are moved to its
		// topic by the engine, which then deletes their consumers.
		if st, _, ok := envelope.PartitionOf(g.Topic); ok && sinks[st] {
			continue
		}
		if a.boot.Queue.Driver == config.QueueNATS {
			a.log.Warn("a durable consumer no pipeline or sink of this configuration uses keeps its messages; delete it once no instance uses it",
				"consumer", g.Name, "stream", g.Stream, "undelivered", g.Pending+g.Unacked, "command", "nats consumer rm "+g.Stream+" "+g.Name)
			continue
		}
		if err := js.DropGroup(ctx, g); err != nil {
			a.log.Warn("could not delete the consumer of a removed pipeline or sink", "consumer", g.Name, "error", err)
			continue
		}
		a.log.Warn("deleted the durable consumer of a pipeline or sink no longer in the configuration; its undelivered messages are discarded",
			"consumer", g.Name, "stream", g.Stream, "discarded", g.Pending+g.Unacked)
	}
}
