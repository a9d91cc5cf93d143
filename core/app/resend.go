package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/subscription"
)

// Redeliverer queues deliveries again: the engine.
type Redeliverer interface {
	Redeliver(ctx context.Context, rs []pipeline.Redelivery) error
}

// Resender implements attempt.Resender: it sends events on record again
// through the engine, as new deliveries (attempt 1, the same event id and
// so the same webhook-id).
//
// Order of the steps, and why. A redelivery is published first, and only
// then marked queued (Store.MarkQueued). The other order loses
// deliveries: a crash (or a failed publish whose marker cannot be
// cleared again) between the mark and the publish leaves a delivery
// marked queued that is never sent, and every later recover skips it. In
// this order a crash between the two leaves a delivery sent but not
// marked: a later recover may send it once more, a duplicate with the same
// webhook-id (hookbus delivers at least once, and receivers deduplicate
// on webhook-id), never a loss. Each redelivery of a recover carries a
// dedup id derived from the delivery's state (its attempts on record), so
// a recover tried again, or two recovers run at once, publish the same
// message twice and the queue keeps one (within the queue's dedup window,
// on the drivers that deduplicate: embedded and nats); MarkQueued then
// hands each delivery to one of them, which alone counts it.
type Resender struct {
	attempts attempt.Store
	subs     subscription.Store
	index    Indexer
	engine   Redeliverer
	sinks    func() map[string]bool
	log      *slog.Logger
}

// Indexer finds a subscription by id alone (the live index).
type Indexer interface {
	Index() *subscription.Index
}

// NewResender returns a Resender over the delivery log, the subscriptions
// (store and live index) and the engine. sinks gives the running
// configuration's sinks, each true when it fans out (a subscriptions
// sink).
func NewResender(attempts attempt.Store, subs subscription.Store, index Indexer, engine Redeliverer, sinks func() map[string]bool, log *slog.Logger) *Resender {
	if log == nil {
		log = slog.Default()
	}
	return &Resender{attempts: attempts, subs: subs, index: index, engine: engine, sinks: sinks, log: log}
}

// notFound is an error wrapping attempt.ErrNotFound with msg.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", attempt.ErrNotFound, fmt.Sprintf(format, args...))
}

// refused is an error wrapping attempt.ErrRefused with msg.
func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", attempt.ErrRefused, fmt.Sprintf(format, args...))
}

// Resend implements attempt.Resender. With a subscription, each event is
// sent to it as a new delivery of the fan-out sink that has the event on
// record (r.Sink, when set with a subscription, names that sink); with a
// sink, each event goes on the sink's topic (a subscriptions sink fans it
// out to its matching subscriptions again) with the payload that sink
// was handed, or the first sink on record's when it was never handed the
// event. It checks every event before it queues any; on a scoped request
// (r.Application) the subscription and the events must be that
// application's. It answers how many deliveries it queued (an event
// resent to a subscriptions sink as a whole counts once: its fan-out makes
// the deliveries).
func (s *Resender) Resend(ctx context.Context, r attempt.ResendRequest) (int, error) {
	if len(r.EventIDs) == 0 {
		return 0, errors.New("resend: no event ids")
	}
	if r.Subscription == "" && r.Sink == "" {
		return 0, errors.New("resend: give a subscription or a sink")
	}
	if r.Application != "" && r.Subscription == "" {
		return 0, refused("an application resends to its own subscriptions only: give subscription")
	}
	sinks := s.sinks()
	if r.Sink != "" {
		fanout, ok := sinks[r.Sink]
		switch {
		case !ok:
			return 0, notFound("no sink named %q is configured", r.Sink)
		case r.Subscription != "" && !fanout:
			return 0, refused("sink %q is not a subscriptions sink: it has no subscription %q", r.Sink, r.Subscription)
		}
	}
	var sub subscription.Subscription
	if r.Subscription != "" {
		var err error
		if sub, err = s.subscription(ctx, r.Application, r.Subscription); err != nil {
			return 0, err
		}
		if sub.Disabled {
			return 0, refused("subscription %q is disabled: enable it first (PATCH {\"disabled\": false})", sub.ID)
		}
	}
	batch := "resend/" + watermill.NewULID()
	var rds []pipeline.Redelivery
	var marks []attempt.Delivery
	var missing []string
	for _, id := range r.EventIDs {
		recs, err := s.attempts.GetEvent(ctx, id)
		if errors.Is(err, attempt.ErrNotFound) || err == nil && len(recs) == 0 ||
			err == nil && r.Application != "" && !slices.ContainsFunc(recs, func(e attempt.Event) bool { return e.Application == r.Application }) {
			// Another application's event is not found, as if it did not exist.
			missing = append(missing, strconv.Quote(id))
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("event %q: %w", id, err)
		}
		var rd pipeline.Redelivery
		if r.Subscription != "" {
			rd, err = s.toSubscription(recs, r, sub, sinks)
		} else {
			rd = s.toSink(recs, r.Sink)
		}
		if err != nil {
			return 0, err
		}
		rd.ID = batch + "/" + rd.Sink + "/" + rd.Subscription + "/" + id
		rds = append(rds, rd)
		if rd.Subscription != "" || !sinks[rd.Sink] {
			// A sink that fans out makes deliveries of its own when it
			// does; their attempts record their state.
			marks = append(marks, attempt.Delivery{DeliveryKey: attempt.DeliveryKey{EventID: id, Sink: rd.Sink, Subscription: rd.Subscription},
				Application: rd.Application, EventType: rd.Event.Type, ReceivedAt: rd.Event.ReceivedAt})
		}
	}
	if len(missing) > 0 {
		return 0, notFound("no event %s on record", strings.Join(missing, ", "))
	}
	// The marks hold from before the publish: an attempt of a redelivery
	// recorded before its mark is written still ends the mark.
	queuedAt := time.Now()
	for i := range marks {
		marks[i].QueuedAt = queuedAt
	}
	if err := s.engine.Redeliver(ctx, rds); err != nil {
		return 0, redeliverError(err)
	}
	// The events are queued: a resend asked for is sent whether or not a
	// recover queued them too. The marks only keep a recover from
	// queueing them once more; their failure is logged, not the caller's.
	if len(marks) > 0 {
		if _, err := s.attempts.MarkQueued(ctx, marks); err != nil {
			s.log.Warn("resend: the deliveries are queued, but could not be marked so: a recover may queue them again", "deliveries", len(marks), "error", err)
		}
	}
	return len(rds), nil
}

// subscription looks up a subscription by id: in app when given (another
// application's is not found), else in the live index, then read fresh
// from the store.
func (s *Resender) subscription(ctx context.Context, app, id string) (subscription.Subscription, error) {
	if app == "" {
		found, ok := s.index.Index().Get(id)
		if !ok {
			return subscription.Subscription{}, notFound("no subscription %q", id)
		}
		app = found.App
	}
	sub, err := s.subs.GetSubscription(ctx, app, id)
	if errors.Is(err, subscription.ErrNotFound) {
		return subscription.Subscription{}, notFound("no subscription %q", id)
	}
	return sub, err
}

// toSubscription is the redelivery of an event (its records recs) to sub:
// through the fan-out sink r names, else the fan-out sink that has it on
// record, else the only fan-out sink configured.
func (s *Resender) toSubscription(recs []attempt.Event, r attempt.ResendRequest, sub subscription.Subscription, sinks map[string]bool) (pipeline.Redelivery, error) {
	id := recs[0].ID
	// Event ids come from producers, so records of one id may be of
	// different applications: only those of sub's application (and, for
	// an admin, those of none: a broadcast event) may go to its URL.
	var mine []attempt.Event
	for _, e := range recs {
		if e.Application == sub.App || e.Application == "" && r.Application == "" {
			mine = append(mine, e)
		}
	}
	if len(mine) == 0 {
		return pipeline.Redelivery{}, notFound("no event %q on record for application %q", id, sub.App)
	}
	recs = mine
	var rec *attempt.Event
	sink := r.Sink
	if sink != "" {
		rec = recordOf(recs, sink)
	} else {
		for i := range recs {
			if sinks[recs[i].Sink] && (rec == nil || recs[i].Sink < rec.Sink) {
				rec = &recs[i]
			}
		}
		if rec != nil {
			sink = rec.Sink
		}
	}
	if sink == "" {
		var fanouts []string
		for _, name := range slices.Sorted(maps.Keys(sinks)) {
			if sinks[name] {
				fanouts = append(fanouts, name)
			}
		}
		switch len(fanouts) {
		case 0:
			return pipeline.Redelivery{}, refused("no subscriptions sink is configured to deliver event %q to subscription %q", id, sub.ID)
		case 1:
			sink = fanouts[0]
		default:
			return pipeline.Redelivery{}, refused("event %q never went through a subscriptions sink, and several are configured (%s): give sink to choose one",
				id, strings.Join(fanouts, ", "))
		}
	}
	if rec == nil {
		rec = &recs[0]
	}
	if rec.Application != "" && rec.Application != sub.App {
		// Never another application's event to this application's URL.
		return pipeline.Redelivery{}, notFound("no event %q on record for application %q", id, sub.App)
	}
	if !sub.Matches(rec.Type) {
		return pipeline.Redelivery{}, refused("subscription %q does not take events of type %q (event %q; its event_types: %s)",
			sub.ID, rec.Type, id, strings.Join(sub.EventTypes, ", "))
	}
	return pipeline.Redelivery{Event: *rec, Sink: sink, Application: sub.App, Subscription: sub.ID}, nil
}

// toSink is the redelivery of an event (its records recs) to sink.
func (s *Resender) toSink(recs []attempt.Event, sink string) pipeline.Redelivery {
	rec := recordOf(recs, sink)
	if rec == nil {
		rec = &recs[0]
	}
	return pipeline.Redelivery{Event: *rec, Sink: sink}
}

// recordOf is the record of sink among recs (nil when none).
func recordOf(recs []attempt.Event, sink string) *attempt.Event {
	for i := range recs {
		if recs[i].Sink == sink {
			return &recs[i]
		}
	}
	return nil
}

// redeliverError is the engine's refusal as the Resender's error.
func redeliverError(err error) error {
	if errors.Is(err, pipeline.ErrUnknownSink) || errors.Is(err, pipeline.ErrNotFanout) {
		return fmt.Errorf("%w: %w", attempt.ErrNotFound, err)
	}
	return err
}

// Recover implements attempt.Resender: one page of the deliveries q
// selects (those not queued already), each sent again from its event on
// record. A delivery whose subscription was deleted or disabled since,
// whose sink is no longer configured or whose event is no longer on
// record is skipped: counted in Scanned, not in Queued.
func (s *Resender) Recover(ctx context.Context, q attempt.RecoverQuery) (attempt.RecoverResult, error) {
	ds, evs, next, err := s.attempts.Deliveries(ctx, q)
	if err != nil {
		return attempt.RecoverResult{}, err
	}
	res := attempt.RecoverResult{Scanned: len(ds), Cursor: next}
	records := make(map[[2]string]attempt.Event, len(evs))
	for _, ev := range evs {
		records[[2]string{ev.ID, ev.Sink}] = ev
	}
	sinks := s.sinks()
	var rds []pipeline.Redelivery
	var picked []attempt.Delivery
	for _, d := range ds {
		ok, err := s.recoverable(ctx, d, sinks)
		if err != nil {
			return attempt.RecoverResult{}, err
		}
		rec, onRecord := records[[2]string{d.EventID, d.Sink}]
		if !ok || !onRecord {
			continue
		}
		if rec.Application != "" && rec.Application != d.Application {
			// Event ids come from producers: another application's event
			// with this id is on record for the sink. Its payload never goes
			// to this delivery's URL.
			s.log.Warn("recover: skipped a delivery whose event on record is another application's (two events share an id)",
				"sink", d.Sink, "event_id", d.EventID, "subscription", d.Subscription)
			continue
		}
		rds = append(rds, pipeline.Redelivery{Event: rec, Sink: d.Sink, Application: d.Application, Subscription: d.Subscription, ID: recoverID(d)})
		picked = append(picked, d)
	}
	if len(rds) == 0 {
		return res, nil
	}
	// Published first, then marked: see Resender.
	queuedAt := time.Now() // see Resend
	for i := range picked {
		picked[i].QueuedAt = queuedAt
	}
	if err := s.engine.Redeliver(ctx, rds); err != nil {
		return attempt.RecoverResult{}, redeliverError(err)
	}
	marked, err := s.attempts.MarkQueued(ctx, picked)
	if err != nil {
		return attempt.RecoverResult{}, fmt.Errorf("recover: %d deliveries queued but not marked so (a recover tried again queues them once, within the queue's dedup window): %w", len(rds), err)
	}
	res.Queued = len(marked)
	return res, nil
}

// recoverable tells whether delivery d may be sent again: its sink is
// configured (a fan-out sink for a subscription's) and its subscription
// still exists and is enabled.
func (s *Resender) recoverable(ctx context.Context, d attempt.Delivery, sinks map[string]bool) (bool, error) {
	fanout, ok := sinks[d.Sink]
	if !ok || d.Subscription != "" && !fanout {
		s.log.Info("recover: skipped a delivery whose sink is no longer configured", "sink", d.Sink, "event_id", d.EventID, "subscription", d.Subscription)
		return false, nil
	}
	if d.Subscription == "" {
		return true, nil
	}
	sub, err := s.subs.GetSubscription(ctx, d.Application, d.Subscription)
	switch {
	case errors.Is(err, subscription.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("recover: subscription %q: %w", d.Subscription, err)
	}
	// A delivery the subscription would no longer take is filtered when
	// it arrives, with no attempt to end its mark: it is not queued.
	return !sub.Disabled && sub.Matches(d.EventType), nil
}

// recoverID names the redelivery of d by the delivery and its state: the
// same recover run again before another attempt is recorded publishes
// the same id, which the queue deduplicates.
func recoverID(d attempt.Delivery) string {
	return "recover/" + d.Sink + "/" + d.Subscription + "/" + d.EventID + "/" + strconv.Itoa(d.Attempts) + "/" + strconv.FormatInt(d.LastAttempt.UnixNano(), 10)
}

// Interface guard.
var _ attempt.Resender = (*Resender)(nil)

// resender is the Resender over a's delivery log, store and engine.
func (a *App) resender() *Resender {
	return NewResender(a.Attempts, a.Store, a.Subscriptions, a.Engine, a.sinkKinds, a.log)
}

// sinkKinds names the running configuration's sinks, each true when it
// fans out (a subscriptions sink).
func (a *App) sinkKinds() map[string]bool {
	rt := a.rt.Load()
	if rt == nil {
		return nil
	}
	out := make(map[string]bool, len(rt.sinks))
	for name, si := range rt.sinks {
		out[name] = si.spec.Fanout != nil
	}
	return out
}
