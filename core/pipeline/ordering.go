package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/envelope"
	"github.com/hookbus/hookbus/core/queue"
)

// Per-key ordering (Sink.Ordering). Every hop an event takes to an
// ordered sink keeps the order of its key:
//
//   - The pipelines that send to an ordered sink read their sources with
//     ordered subscriptions (queue.Orderer): one event at a time, in the
//     order the source accepted them, across every instance. A step that
//     times out is tried again in place (a nack with a delay), never as a
//     copy behind later events.
//   - Each output that has a key goes to one of the sink's
//     envelope.Partitions partition topics, chosen by the key's hash;
//     outputs without one go to the sink's topic, delivered unordered.
//   - The sink reads each partition with an ordered subscription: the next
//     event of a partition is handed out once the one before was
//     delivered or dead-lettered. Retries wait in place (retryByNack). A
//     key whose event keeps failing holds up its partition, 1/64 of the
//     keys, and no other.
//   - The sink's topic keeps its unordered consumer beside them.
//
// A sink whose ordering is turned off (a reload, a restart) moves what its
// partitions still hold to its topic (retirePartitions): nothing waits on
// a partition nobody reads.

// errOrderingUnsupported is the error of an ordered sink on a driver that
// is no queue.Orderer (core/config names the key and the driver first).
var errOrderingUnsupported = errors.New("the queue driver cannot deliver in order (embedded and nats can)")

// checkOrdering refuses an ordered sink the engine cannot order.
func (e *Engine) checkOrdering(s Sink) error {
	if s.Ordering == nil {
		return nil
	}
	if e.orderer == nil {
		return fmt.Errorf("sink %q: ordering: %w", s.Name, errOrderingUnsupported)
	}
	if s.Fanout != nil {
		return fmt.Errorf("sink %q: ordering: not supported for fan-out (subscriptions) sinks", s.Name)
	}
	return nil
}

// orderedWindow is how many deliveries an ordered sink's partitions have
// in flight at most, together: its max_in_flight (0 for an unordered sink).
func orderedWindow(s Sink) int {
	if s.Ordering == nil {
		return 0
	}
	if s.MaxInFlight <= 0 {
		return 64
	}
	return s.MaxInFlight
}

// subscribeOrdered makes an ordered subscriber of group for topic, its
// subscription created in the broker before anything is published to it.
func (e *Engine) subscribeOrdered(group, topic string) (message.Subscriber, error) {
	if e.orderer == nil {
		return nil, errOrderingUnsupported
	}
	return initialized(topic)(e.orderer.OrderedSubscriber(group))
}

// subscribePartitions gives the ordered sink s's runner r a subscriber of
// its group for each partition topic.
func (e *Engine) subscribePartitions(r *sinkRunner, s Sink) error {
	r.ordering = slices.Clone(s.Ordering)
	r.partSem = make(chan struct{}, orderedWindow(s))
	for p := range envelope.Partitions {
		sub, err := e.subscribeOrdered("sink-"+s.Name, envelope.PartitionTopic(s.Name, p))
		if err != nil {
			for _, ps := range r.partSubs {
				_ = ps.Close()
			}
			r.partSubs = nil
			return err
		}
		r.partSubs = append(r.partSubs, sub)
	}
	return nil
}

// addPartitionConsumers adds the consumers of an ordered sink's
// partitions (nothing for an unordered sink). Callers hold e.mu.
func (e *Engine) addPartitionConsumers(r *sinkRunner, s Sink) error {
	if len(r.partSubs) == 0 || r.parts != nil {
		return nil
	}
	handler := e.partitionHandler(r)
	parts := make([]*consumer, 0, len(r.partSubs))
	for p, sub := range r.partSubs {
		c := &consumer{handler: e.handlerName("partition", fmt.Sprintf("%s/%d", s.Name, p)), topic: envelope.PartitionTopic(s.Name, p), sub: sub}
		if err := e.addConsumer(c, handler); err != nil {
			for _, pc := range parts {
				pc.abandon()
			}
			for _, rest := range r.partSubs[p:] {
				_ = rest.Close()
			}
			return err
		}
		parts = append(parts, c)
	}
	r.parts = parts
	return nil
}

// partitionHandler handles the messages of an ordered sink's partitions:
// as the sink's own topic's, each holding one of the slots that bound the
// partitions' deliveries in flight, and retried in place.
func (e *Engine) partitionHandler(r *sinkRunner) message.NoPublishHandlerFunc {
	deliver := e.sinkHandlerFor(r, true)
	return func(msg *message.Message) error {
		select {
		case r.partSem <- struct{}{}:
		case <-e.closing:
			return nackLater(msg, 0)
		}
		defer func() { <-r.partSem }()
		return deliver(msg)
	}
}

// stopParts stops a sink's partition consumers, or closes the subscribers
// of those never started.
func (e *Engine) stopParts(parts []*consumer, subs []message.Subscriber) {
	if parts == nil {
		for _, sub := range subs {
			_ = sub.Close()
		}
		return
	}
	done := make(chan struct{})
	for _, c := range parts {
		go func() {
			c.stop(e.opts.CloseTimeout)
			done <- struct{}{}
		}()
	}
	for range parts {
		<-done
	}
}

// updateKeys publishes the key paths of the ordered sinks to the
// pipelines. Callers hold e.mu.
func (e *Engine) updateKeys() {
	keys := map[string][]string{}
	for name, r := range e.sinks {
		if r.ordering != nil {
			keys[name] = r.ordering
		}
	}
	e.keys.Store(&keys)
}

// orderedPipeline tells whether p sends to an ordered sink. Callers hold
// e.mu.
func (e *Engine) orderedPipeline(p Pipeline) bool {
	for _, to := range p.To {
		if r := e.sinks[to]; r != nil && r.ordering != nil {
			return true
		}
	}
	return false
}

// reorderPipelines makes the pipelines whose sinks' ordering changed read
// their sources ordered, or unordered again. Callers hold e.applyMu.
func (e *Engine) reorderPipelines(ctx context.Context) error {
	e.mu.Lock()
	var changed []Pipeline
	for _, pr := range e.pipes {
		p := *pr.cur.Load()
		if e.orderedPipeline(p) != pr.ordered {
			changed = append(changed, p)
		}
	}
	e.mu.Unlock()
	var errs []error
	for _, p := range changed {
		errs = append(errs, e.setPipeline(ctx, p))
	}
	return errors.Join(errs...)
}

// partitionOf returns the topic an output for sink goes to: one of its
// partitions when the sink is ordered and the output has a key, else the
// sink's topic.
func (e *Engine) partitionOf(sink string, payload []byte) string {
	path := (*e.keys.Load())[sink]
	if path == nil {
		return queue.SinkTopic(sink)
	}
	key, ok := orderingKey(payload, path)
	if !ok {
		return queue.SinkTopic(sink)
	}
	return envelope.PartitionTopic(sink, envelope.Partition(key))
}

// orderingKey reads the value at path in a JSON event: a string, or a
// number (as written); ok is false when the path is absent or holds
// anything else.
func orderingKey(payload []byte, path []string) (string, bool) {
	raw := bytes.TrimSpace(envelope.Member(payload, path))
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw), true
	}
	return "", false
}

// publishOrdered queues msgs for sink, each on the topic partitionOf
// gives it, keeping their order: consecutive messages for one topic in
// one publish.
func (e *Engine) publishOrdered(sink string, msgs []*message.Message) error {
	if (*e.keys.Load())[sink] == nil {
		return e.q.Publish(queue.SinkTopic(sink), msgs...)
	}
	start, topic := 0, ""
	for i, m := range msgs {
		t := e.partitionOf(sink, m.Payload)
		if i > 0 && t != topic {
			if err := e.q.Publish(topic, msgs[start:i]...); err != nil {
				return err
			}
			start = i
		}
		topic = t
	}
	return e.q.Publish(topic, msgs[start:]...)
}

// startRetire has an unordered sink move what an ordered version of it
// left on its partitions to its topic, in the background (drivers that
// can order and retire topics only). Callers hold e.mu.
func (e *Engine) startRetire(r *sinkRunner) {
	tr, ok := e.q.(queue.TopicRetirer)
	if !ok || e.orderer == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.retireCancel, r.retireDone = cancel, make(chan struct{})
	go func() {
		defer close(r.retireDone)
		e.retirePartitions(ctx, tr, r.name)
	}()
}

// endRetire stops a sink's retirePartitions and waits for it (once it is
// stopped, later calls return at once).
func (e *Engine) endRetire(r *sinkRunner) {
	e.mu.Lock()
	cancel, done := r.retireCancel, r.retireDone
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// retirePartitions moves every message left on sink's partition topics to
// the sink's topic, where its unordered consumer delivers it, and removes
// the partitions' consumers (queue.TopicRetirer). A partition that has no
// consumer costs a lookup. A failure is tried again every few seconds
// until ctx ends; the messages wait meanwhile.
func (e *Engine) retirePartitions(ctx context.Context, tr queue.TopicRetirer, sink string) {
	moved := 0
	for p := range envelope.Partitions {
		topic := envelope.PartitionTopic(sink, p)
		for {
			n, err := tr.Retire(ctx, "sink-"+sink, topic, func(msg *message.Message) error {
				rm := requeueCopy(msg, queue.MetaAttempt, queue.MetaDeliveries, queue.MetaNackDelay)
				// The original's key would be taken for a repeat of it.
				if id := msg.Metadata.Get(queue.MetaDedupID); id != "" {
					rm.Metadata.Set(queue.MetaDedupID, "unordered/"+id)
				}
				return e.q.Publish(queue.SinkTopic(sink), rm)
			})
			moved += n
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			e.log.Error("moving the events of an ordered sink's partition to its topic failed; trying again", "sink", sink, "topic", topic, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(3 * time.Second):
			}
		}
	}
	if moved > 0 {
		e.log.Info("ordering is off: moved the events still queued on the sink's partitions to its topic (delivered unordered)", "sink", sink, "events", moved)
	}
}
