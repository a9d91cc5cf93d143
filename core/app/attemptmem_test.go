package app

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// memAttempts is the part of an attempt.Store the Resender uses, in
// memory, following the Store's contract: events on record by id,
// deliveries with their state, Deliveries leaving out the queued ones,
// MarkQueued marking each key once.
type memAttempts struct {
	attempt.Store // the rest: not used by the Resender

	mu         sync.Mutex
	events     map[string][]attempt.Event
	deliveries []*attempt.Delivery
}

func newMemAttempts() *memAttempts { return &memAttempts{events: map[string][]attempt.Event{}} }

func (m *memAttempts) add(ev attempt.Event, d *attempt.Delivery) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events[ev.ID] = append(m.events[ev.ID], ev)
	if d != nil {
		m.deliveries = append(m.deliveries, d)
	}
}

func (m *memAttempts) GetEvent(_ context.Context, id string) ([]attempt.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events[id]) == 0 {
		return nil, attempt.ErrNotFound
	}
	return slices.Clone(m.events[id]), nil
}

func (m *memAttempts) Deliveries(_ context.Context, q attempt.RecoverQuery) ([]attempt.Delivery, []attempt.Event, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until := q.Until
	if until.IsZero() {
		until = time.Now()
	}
	// The cursor is the ingest time of the last delivery of the page
	// (keyset paging: deliveries marked meanwhile move no one).
	var after time.Time
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil {
			return nil, nil, "", attempt.ErrBadCursor
		}
		after = time.Unix(0, n)
	}
	var sel []*attempt.Delivery
	for _, d := range m.deliveries {
		if q.Application != "" && d.Application != q.Application || q.Subscription != "" && d.Subscription != q.Subscription ||
			q.Sink != "" && d.Sink != q.Sink || d.ReceivedAt.Before(q.Since) || !d.ReceivedAt.Before(until) ||
			!q.All && d.LastOutcome != attempt.Failed || d.Queued || !after.IsZero() && !d.ReceivedAt.After(after) {
			continue
		}
		sel = append(sel, d)
	}
	slices.SortStableFunc(sel, func(a, b *attempt.Delivery) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	next := ""
	if q.Limit > 0 && len(sel) > q.Limit {
		sel = sel[:q.Limit]
		next = strconv.FormatInt(sel[len(sel)-1].ReceivedAt.UnixNano(), 10)
	}
	var ds []attempt.Delivery
	var evs []attempt.Event
	for _, d := range sel {
		ds = append(ds, *d)
		for _, ev := range m.events[d.EventID] {
			if ev.Sink == d.Sink {
				evs = append(evs, ev)
			}
		}
	}
	return ds, evs, next, nil
}

func (m *memAttempts) MarkQueued(_ context.Context, keys []attempt.Delivery) ([]attempt.DeliveryKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []attempt.DeliveryKey
	for _, k := range keys {
		i := slices.IndexFunc(m.deliveries, func(d *attempt.Delivery) bool { return d.DeliveryKey == k.DeliveryKey })
		switch {
		case i < 0:
			d := k
			d.Queued = true
			m.deliveries = append(m.deliveries, &d)
		case m.deliveries[i].Queued:
			continue
		default:
			m.deliveries[i].Queued = true
		}
		out = append(out, k.DeliveryKey)
	}
	return out, nil
}

func (m *memAttempts) queued(key attempt.DeliveryKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.deliveries, func(d *attempt.Delivery) bool { return d.DeliveryKey == key })
	return i >= 0 && m.deliveries[i].Queued
}
